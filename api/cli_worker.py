"""`gridops worker ...`: background work — the escalation sweep of overdue cases."""

from __future__ import annotations

import signal
import threading
from datetime import datetime
from types import FrameType
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from api.settings import Settings
from gis import escalation
from gis.database import engine_for

worker_app = typer.Typer(help="Background work (escalation of overdue cases).",
                         no_args_is_help=True)
out = Console(highlight=False, soft_wrap=True)


def _sweep_once(engine: Engine) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        return escalation.sweep(conn)


def _show(done: list[dict[str, Any]]) -> None:
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if not done:
        out.print(f"{stamp} nothing to escalate")
        return
    for e in done:
        out.print(f"{stamp} incident {e['incident_id']} ({e['status']}, {e['stage']} due "
                  f"{e['due_at']:%Y-%m-%d %H:%M}) escalated "
                  f"{e['from_level'] or 'none'} → [bold]{e['level']}[/]")
    out.print(f"{stamp} escalated {len(done)} case(s)")


@worker_app.command()
def run(
    once: Annotated[bool, typer.Option("--once", help="sweep once and exit")] = False,
    interval: Annotated[int | None, typer.Option(
        min=1, help="seconds between sweeps (default GRIDOPS_ESCALATION_INTERVAL_S)")] = None,
) -> None:
    """Sweep for overdue cases and escalate them (community → street → district), every
    `interval` seconds until Ctrl-C or SIGTERM; several workers may run at once."""
    settings = Settings()
    every = interval or settings.escalation_interval_s
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    with engine_for(settings.live_db_url()) as engine:
        if once:
            _show(_sweep_once(engine))
            return
        previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        out.print(f"escalation worker: sweeping every {every} s (Ctrl-C to stop)")
        try:
            while not stop.is_set():
                try:
                    _show(_sweep_once(engine))
                except DBAPIError as exc:  # the database restarts: try again next time
                    out.print(f"[yellow]sweep failed, retrying in {every} s:[/] "
                              f"{str(exc.orig or exc).splitlines()[0]}")
                stop.wait(every)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        out.print("escalation worker stopped")
