"""The `gridops` command line: database lifecycle, imports/exports, server."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from api.cli_catalog import catalog_app
from api.cli_db import db_app
from api.cli_demo import demo_app
from api.cli_import import export, import_app
from api.cli_open311 import open311_app
from api.cli_report import report_app
from api.cli_users import users_app
from api.cli_worker import worker_app
from api.cli_zones import zones_app
from gis.errors import GridOpsError

app = typer.Typer(
    help="GridOps: GIS grid management and dispatch (网格化管理).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(db_app, name="db")
app.add_typer(import_app, name="import")
app.command(name="export")(export)
app.add_typer(demo_app, name="demo")
app.add_typer(users_app, name="users")
app.add_typer(catalog_app, name="catalog")
app.add_typer(zones_app, name="zones")
app.add_typer(open311_app, name="open311")
app.add_typer(worker_app, name="worker")
app.add_typer(report_app, name="report")
err = Console(stderr=True)


@app.command()
def serve(
    host: str | None = typer.Option(None, help="bind address (default GRIDOPS_HOST or 127.0.0.1)"),
    port: int | None = typer.Option(None, help="port (default GRIDOPS_PORT or 8000)"),
    workers: int = typer.Option(1, min=1, help="uvicorn worker processes"),
    reload: bool = typer.Option(False, help="reload on code changes (development)"),
) -> None:
    """Run the HTTP API and pages with uvicorn."""
    import uvicorn

    from api.settings import Settings

    settings = Settings()
    uvicorn.run(
        "api.app:app_from_env",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers,
        reload=reload,
        # a busy machine can take longer than uvicorn's 5 s to answer a new worker's health
        # check (the app imports the road graph and geometry stacks); open live-feed streams
        # are closed by the app at shutdown, this bounds anything else still running
        timeout_worker_healthcheck=30,
        timeout_graceful_shutdown=5,
    )


def main() -> None:
    """Console-script entry point: domain errors become a one-line message and exit 1."""
    try:
        app()
    except GridOpsError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
