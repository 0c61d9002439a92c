"""`gridops demo ...`: build and load the demo city, and show what the database holds."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from api.cli_progress import step_bars
from api.settings import Settings
from gis.audit import Actor
from gis.database import engine_for
from gis.errors import InvalidInput

demo_app = typer.Typer(help="The demo city.", no_args_is_help=True)
out = Console(highlight=False)


@demo_app.command()
def load(
    seed: Annotated[int, typer.Option(help="random seed: the same seed gives the same city")] = 7,
    scale: Annotated[str, typer.Option(
        help="demo (3 districts) or city (benchmark size)")] = "demo",
    as_of: Annotated[datetime | None, typer.Option(
        help="the demo's 'now' (history ends, teams report then); default: this hour")] = None,
) -> None:
    """Build the demo city and load it (does nothing when the database already holds data)."""
    from gis.demo import loaded_demo
    from gis.democity.city import build_city  # geopandas and friends are slow to import
    from gis.democity.load import load_city
    from gis.democity.model import SCALES

    if scale not in SCALES:
        raise InvalidInput(f"--scale must be one of {', '.join(SCALES)}, not {scale!r}",
                           field="scale")
    with engine_for(Settings().live_db_url()) as engine:
        existing = loaded_demo(engine)
        if existing is not None:
            out.print(f"the database already holds data ({existing}); nothing loaded. "
                      "Use `gridops db reset --yes` first to load another city.")
        else:
            started = time.monotonic()
            with step_bars(out) as bar:
                city = build_city(seed, SCALES[scale], bar, as_of=_beijing(as_of))
                counts = load_city(engine, city, bar)
            seconds = time.monotonic() - started
            out.print(f"[green]demo city loaded[/] (scale {scale}, seed {seed}) in "
                      f"{seconds:.0f} s: " + ", ".join(f"{n:,} {t}" for t, n in counts.items()))
        _demo_users(engine)


def _demo_users(engine: Engine) -> None:
    """Create the missing demo users and print every demo login (demo only)."""
    from gis.demo_users import ensure_demo_users

    with engine.begin() as conn:
        made = ensure_demo_users(conn, Actor("demo"))
    out.print("demo logins — [bold]DEMO ONLY[/], the passwords are public; production "
              "refuses to start while they are active:")
    table = Table("username", "password", "role", "scope")
    for column in table.columns:
        column.no_wrap = True
    for user, state in made:
        note = "" if state in ("created", "exists") else f" ({state})"
        table.add_row(user.username, user.password, user.role + note,
                      ", ".join(user.scope) or "city")
    out.print(table)


def _beijing(moment: datetime | None) -> datetime | None:
    """A naive --as-of is Beijing time."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=ZoneInfo("Asia/Shanghai"))


@demo_app.command()
def info() -> None:
    """Print the number of rows in each table."""
    from gis.demo import table_counts

    with engine_for(Settings().live_db_url()) as engine:
        counts = table_counts(engine)
    table = Table("table", "rows")
    for name, count in counts.items():
        table.add_row(name, f"{count:,}")
    out.print(table)


@demo_app.command()
def simulate(
    interval: Annotated[float, typer.Option(
        min=1.0, help="seconds between position reports")] = 15.0,
    once: Annotated[bool, typer.Option("--once", help="one round of reports, then exit")] = False,
) -> None:
    """DEMO ONLY: drive the demo teams along the roads (towards their incident when
    dispatched) and report their positions every INTERVAL seconds, until Ctrl-C."""
    from gis.demo_sim import Simulator

    simulator = Simulator()
    with engine_for(Settings().live_db_url()) as engine:
        try:
            while True:
                started = time.monotonic()
                with engine.begin() as conn:
                    moved = simulator.tick(conn, interval)
                out.print(f"{datetime.now():%H:%M:%S} {moved} teams reported")
                if once:
                    return
                time.sleep(max(interval - (time.monotonic() - started), 0.0))
        except KeyboardInterrupt:
            out.print("simulation stopped")


@demo_app.command()
def patrols(
    days: Annotated[int, typer.Option(min=1, max=366,
                                      help="how many working days of history")] = 30,
    street_office: Annotated[list[str] | None, typer.Option(
        "--street-office", help="street office code (repeat); default 广外 and 太平桥")] = None,
    seed: Annotated[int, typer.Option(help="random seed: the same seed, the same walks")] = 7,
    until: Annotated[datetime | None, typer.Option(
        formats=["%Y-%m-%d"], help="last day (Beijing); default yesterday")] = None,
) -> None:
    """DEMO ONLY: synthetic 日巡 history (tracks, checklist ticks, a few problems) for the
    街巷长 and 小巷管家 of some street offices over the last DAYS working days."""
    from gis.demo_patrols import DEFAULT_STREET_OFFICES, simulate_history

    started = time.monotonic()
    with engine_for(Settings().live_db_url()) as engine, engine.begin() as conn:
        counts = simulate_history(conn, days, street_office or DEFAULT_STREET_OFFICES,
                                  seed=seed, until=until.date() if until else None,
                                  by=Actor("demo"))
    out.print(f"[green]synthetic patrols written[/] in {time.monotonic() - started:.0f} s: "
              + ", ".join(f"{k} {v}" for k, v in counts.items()))
