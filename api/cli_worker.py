"""(being written)"""

from __future__ import annotations

import typer

worker_app = typer.Typer(help="background work", no_args_is_help=True)
