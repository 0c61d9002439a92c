"""`gridops plans ...`: grid plans from the command line."""

from __future__ import annotations

import typer

plans_app = typer.Typer(help="Grid plans (网格调整方案).", no_args_is_help=True)
