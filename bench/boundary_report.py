"""Boundary dispute report latency (DESIGN §6: one district pair ≤ 2 s): the report data of
gis.boundary_report (geometry, straddling buildings, incidents and whistles near the line,
versions) for the 西城/丰台 district pair (110102/110106) and the 广安门外/太平桥 street pair
(110102020/110106002), each in its own read-only transaction as the API runs it.

Per pair: the first report on a new connection (PROJ set-up included), then `runs` reports
back to back on one connection (p50 / p95 / max), the time of each statement of the last
run, and the outputs (HTML page with its map, GeoJSON, two CSVs) built from the report.
Reads only.

    python -m bench.boundary_report --db URL [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, Engine, event

from bench.machine import this_machine
from gis.boundary_report import ReportRules, boundary_report
from gis.boundary_report_html import buildings_csv, incidents_csv, report_geojson, report_html
from gis.database import make_engine

PAIRS: tuple[tuple[str, str], ...] = (("110102", "110106"), ("110102020", "110106002"))
TARGET_S = 2.0  # DESIGN §6, one district pair
HEAD = ["boundary report", "shared line m", "buildings", "incidents", "first (new conn) ms",
        "p50 ms", "p95 ms", "max ms", "statements (last run) ms", "outputs ms", "target"]


# Which statement of gis.boundary_report a SQL text is (by a CTE only it has).
STAGES = (("calc AS MATERIALIZED", "geometry"), ("bm AS MATERIALIZED", "buildings"),
          ("zone AS MATERIALIZED", "incidents"), ("WITH v AS", "versions"))


def _statement_timer(engine: Engine) -> list[tuple[str, float]]:
    """(stage, milliseconds) of each statement the engine runs, appended as they end."""
    times: list[tuple[str, float]] = []

    @event.listens_for(engine, "before_cursor_execute")
    def _start(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        conn.info["bench_t0"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _end(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        stage = next((name for key, name in STAGES if key in statement), "other")
        times.append((stage, (time.perf_counter() - conn.info["bench_t0"]) * 1000.0))

    return times


def _by_stage(times: list[tuple[str, float]]) -> str:
    totals = {name: 0.0 for _, name in (*STAGES, ("", "other"))}
    for stage, ms in times:
        totals[stage] += ms
    return ", ".join(f"{name} {ms:.0f}" for name, ms in totals.items())


def _one(conn: Connection, a: str, b: str, rules: ReportRules) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    report = boundary_report(conn, a=a, b=b, rules=rules)
    elapsed = (time.perf_counter() - t0) * 1000.0
    conn.rollback()
    return elapsed, report


def bench_pair(engine: Engine, a: str, b: str, runs: int, rules: ReportRules,
               times: list[tuple[str, float]]) -> list[str]:
    """One row of HEAD for the pair a/b."""
    with engine.connect() as conn:  # a new connection: PROJ and caches cold
        first, report = _one(conn, a, b, rules)
    samples: list[float] = []
    with engine.connect() as conn:
        _one(conn, a, b, rules)  # warm this connection
        for _ in range(runs):
            del times[:]
            elapsed, report = _one(conn, a, b, rules)
            samples.append(elapsed)
    statements = _by_stage(times)
    t0 = time.perf_counter()
    report_html(report)
    report_geojson(report)
    buildings_csv(report)
    incidents_csv(report)
    outputs = (time.perf_counter() - t0) * 1000.0
    arr = np.array(samples)
    p50, p95, worst = (float(np.percentile(arr, 50)), float(np.percentile(arr, 95)),
                       float(arr.max()))
    level = report["a"]["level"]
    target = ""
    if level == "district":
        met = max(p95, first) <= TARGET_S * 1000.0
        target = f"≤ {TARGET_S:g} s: {'met' if met else 'NOT met'}"
    s = report["summary"]
    return [f"{report['a']['name']}/{report['b']['name']} ({a}/{b}, {level})",
            f"{s['shared_length_m']:,.0f}", str(s["straddling_buildings"]),
            f"{s['incidents']:,}", f"{first:.0f}", f"{p50:.0f}", f"{p95:.0f}", f"{worst:.0f}",
            statements, f"{outputs:.0f}", target]


def bench_boundary_report(db_url: str, pairs: Sequence[tuple[str, str]] = PAIRS,
                          runs: int = 10, buffer_m: float = 100.0,
                          say: Callable[[str], None] = print
                          ) -> tuple[list[list[str]], list[str]]:
    """Rows of HEAD (one per pair) and notes, on the database at `db_url` (read only)."""
    engine = make_engine(db_url)
    times = _statement_timer(engine)
    rules = ReportRules(buffer_m=buffer_m)
    rows = []
    try:
        for a, b in pairs:
            say(f"boundary report {a}/{b} …")
            rows.append(bench_pair(engine, a, b, runs, rules, times))
    finally:
        engine.dispose()
    load = os.getloadavg()
    notes = [f"boundary report: {runs} runs per pair after one warm-up, buffer {buffer_m:g} m, "
             f"EPSG:{rules.metric_srid}; load average at the end "
             f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}"]
    return rows, notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.boundary_report",
                                     description=__doc__)
    parser.add_argument("--db", required=True, help="database URL (city-scale or demo)")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--buffer-m", type=float, default=100.0)
    args = parser.parse_args(argv)
    print(this_machine().line())
    rows, notes = bench_boundary_report(args.db, runs=args.runs, buffer_m=args.buffer_m)
    print(" | ".join(HEAD))
    for row in rows:
        print(" | ".join(row))
    for line in notes:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
