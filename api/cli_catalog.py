"""`gridops catalog ...`: load the event catalog (classes, 属地管理事项清单, time limits, work
calendar) from a file, and show the loaded one."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from gis import catalog
from gis.audit import Actor
from gis.database import engine_for
from gis.errors import InvalidInput

catalog_app = typer.Typer(help="The event catalog.", no_args_is_help=True)
out = Console(highlight=False)


@catalog_app.command()
def load(
    file: Annotated[Path, typer.Argument(help="catalog JSON (format gridops-event-catalog/1)")],
) -> None:
    """Validate FILE and make it the loaded catalog (a bad file loads nothing)."""
    try:
        parsed = catalog.load_catalog(file)
    except InvalidInput as exc:
        raise InvalidInput(f"{file}: {exc.message}", field=exc.field, detail=exc.detail) from exc
    with engine_for(Settings().live_db_url()) as engine:
        with engine.begin() as conn:
            counts = catalog.load_into_db(conn, parsed, by=Actor(f"cli:{getpass.getuser()}"))
    out.print(f"[green]catalog loaded[/]: {parsed.name} — {counts['classes']} classes: "
              f"{counts['added']} added, {counts['updated']} updated, "
              f"{counts['unchanged']} unchanged, {counts['deactivated']} deactivated")


@catalog_app.command()
def show() -> None:
    """Print the loaded catalog and its classes per kind and major."""
    with engine_for(Settings().live_db_url()) as engine:
        with engine.connect() as conn:
            info = catalog.summary(conn)
    loaded = info["catalog"]
    if loaded is None:
        out.print("no catalog loaded (run `gridops catalog load FILE`)")
    else:
        out.print(f"{loaded['name']} ({loaded['format']}"
                  f"{', synthetic' if loaded['synthetic'] else ''}), loaded "
                  f"{loaded['loaded_at']:%Y-%m-%d %H:%M} by {loaded['loaded_by']}")
    table = Table("kind", "major", "name", "active", "inactive")
    for row in info["majors"]:
        table.add_row(row["kind"], row["major_code"], row["major_name"], str(row["active"]),
                      str(row["inactive"]) if row["inactive"] else "")
    table.add_section()
    table.add_row("total", "", "", str(sum(r["active"] for r in info["majors"])),
                  str(sum(r["inactive"] for r in info["majors"])))
    out.print(table)
