"""`gridops report ...`: spatial reports (boundary disputes)."""

from __future__ import annotations

import typer

report_app = typer.Typer(help="Spatial reports (boundary disputes).", no_args_is_help=True)
