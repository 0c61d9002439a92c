"""`gridops zones ...`: derive the joint (联合哨) zones and count what is stored."""

from __future__ import annotations

import getpass
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from gis import joint_zones
from gis.audit import Actor, record
from gis.database import engine_for

zones_app = typer.Typer(help="Joint (联合哨) zones.", no_args_is_help=True)
out = Console(highlight=False)


@zones_app.command()
def rebuild(
    width: Annotated[float, typer.Option(
        help="metres from the shared boundary, on each side")] = joint_zones.DEFAULT_WIDTH_M,
) -> None:
    """Replace the derived zones from the jurisdictions in force now (drawn zones are kept)."""
    settings = Settings()
    started = time.monotonic()
    with engine_for(settings.live_db_url()) as engine, engine.begin() as conn:
        counts = joint_zones.rebuild_joint_zones(conn, width_m=width,
                                                 metric_srid=settings.metric_crs)
        record(conn, Actor(f"cli:{getpass.getuser()}"), action="joint_zone.rebuild",
               object_type="joint_zone", object_id=None, after={"width_m": width, **counts})
    seconds = time.monotonic() - started
    out.print(f"[green]joint zones rebuilt[/] (width {width:g} m) in {seconds:.2f} s: "
              + ", ".join(f"{n:,} {level}" for level, n in counts.items()))


@zones_app.command(name="list")
def list_() -> None:
    """Count the stored zones by level and origin."""
    with engine_for(Settings().live_db_url()) as engine, engine.connect() as conn:
        rows = joint_zones.zone_counts(conn)
    table = Table("level", "origin", "zones")
    for row in rows:
        table.add_row(row["level"], row["origin"], f"{row['zones']:,}")
    out.print(table)
