"""`gridops demo ...`: load the demo data and show what the database holds."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from gis.database import make_engine

demo_app = typer.Typer(help="Demo data.", no_args_is_help=True)
out = Console(highlight=False)


@demo_app.command()
def load() -> None:
    """Load the demo data (idempotent: does nothing when the database already holds it)."""
    from gis.demo import load_fixture, table_counts  # geopandas is slow to import

    engine = make_engine(Settings().live_db_url())
    try:
        loaded = load_fixture(engine)
        counts = table_counts(engine)
    finally:
        engine.dispose()
    if loaded:
        out.print(f"[green]demo loaded[/]: {counts['jurisdictions']} jurisdictions, "
                  f"{counts['grids']} grids (synthetic fixture)")
    else:
        out.print("demo data already present; nothing loaded")


@demo_app.command()
def info() -> None:
    """Print the number of rows in each core table."""
    from gis.demo import table_counts

    engine = make_engine(Settings().live_db_url())
    try:
        counts = table_counts(engine)
    finally:
        engine.dispose()
    table = Table("table", "rows")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    out.print(table)
