"""`python -m bench.run --db URL`: the intake, bulk-placement, dispatch-recommendation,
vector-tile, OGC API Features, live-feed, plan-validation and boundary-report benchmarks on
one database (the city-scale demo: `gridops demo load --scale city`), printed as tables and
recorded in docs/benchmarks.md (a block per machine and day, replaced when run again)."""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import psycopg2
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from bench.boundary_report import HEAD as BOUNDARY_HEAD
from bench.boundary_report import bench_boundary_report
from bench.bulk import Timing, bench_place_many, bench_postgis_join, bench_strtree, incident_points
from bench.intake import intake, libpq
from bench.live import bench_live
from bench.load import Latency
from bench.machine import Machine, this_machine
from bench.ogc import HEAD as OGC_HEAD
from bench.ogc import bench_ogc
from bench.plan_validation import HEAD as VALIDATION_HEAD
from bench.plan_validation import bench_plan_validation
from bench.plan_validation import lines as validation_lines
from bench.plan_validation import rows as validation_rows
from bench.recommend import Timing as RecTiming
from bench.recommend import bench_recommend
from bench.tiles import HEAD as TILES_HEAD
from bench.tiles import bench_tiles

DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
INTAKE_P99_MS = 20.0
BULK_POINTS_PER_S = 300_000.0
RECOMMEND_P95_MS = 30.0
RECOMMEND_SPEEDUP = 5.0
out = Console(highlight=False, width=220)


def _dataset(dsn: str) -> str:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("""
            SELECT (SELECT count(*) FROM jurisdictions WHERE level = 'district'),
                   (SELECT count(*) FROM grids), (SELECT count(*) FROM grid_parts),
                   (SELECT count(*) FROM buildings), (SELECT count(*) FROM streets),
                   (SELECT count(*) FROM joint_zones), (SELECT count(*) FROM incidents),
                   (SELECT count(*) FROM road_edges), (SELECT count(*) FROM teams),
                   version(), postgis_lib_version()""")
        d, g, gp, b, s, z, i, e, t, pg, postgis = cur.fetchone()
    return (f"{d} districts, {g:,} grids ({gp:,} parts), {b:,} buildings, {s:,} 街巷, "
            f"{z:,} joint zones, {i:,} incidents, {e:,} road edges, {t:,} teams; "
            f"{pg.split(',')[0]}, PostGIS {postgis}")


def _latency_rows(results: dict[str, Latency], workers: int) -> list[list[str]]:
    names = {
        "http": f"POST /api/v1/incidents ({workers} workers)",
        "http_paced": f"POST /api/v1/incidents ({workers} workers)",
        "http_one": f"POST /api/v1/incidents ({workers} workers)",
        "sql": "baseline: raw lookup SQL (_PLACE)",
        "sql_prepared": "baseline: raw lookup SQL, prepared (plan cached)",
        "sql_paced": "baseline: raw lookup SQL (_PLACE)",
        "sql_one": "baseline: raw lookup SQL (_PLACE)",
        "one_as_is": "raw lookup SQL, 2,000 points in a row",
        "one_prepared": "… prepared (plan cached)",
        "one_index": "… + index on street_assignments (street_id)",
        "one_index_prepared": "… + that index, prepared",
    }
    rows = []
    for key in ("http", "sql", "sql_prepared", "http_paced", "sql_paced", "http_one",
                "sql_one", "one_as_is", "one_prepared", "one_index", "one_index_prepared"):
        r = results.get(key)
        if r is None:
            continue
        mode = r.mode if r.mode == "back to back" else "paced, 1 req/s each"
        target = ""
        if key == "http":
            met = r.p99 <= INTAKE_P99_MS and not r.failures
            target = f"p99 ≤ {INTAKE_P99_MS:g} ms: {'met' if met else 'NOT met'}"
        rows.append([names[key], str(r.clients), mode, f"{r.requests:,}",
                     f"{r.rate:,.0f}", f"{r.p50:.1f}", f"{r.p99:.1f}", f"{r.max:.0f}",
                     str(r.failures), target])
    return rows


LATENCY_HEAD = ["intake", "clients", "mode", "requests", "req/s", "p50 ms", "p99 ms",
                "max ms", "failed", "target"]
BULK_HEAD = ["bulk placement", "points", "seconds", "points/s", "set-up s (not counted)",
             "note", "target"]


def _bulk_rows(results: dict[str, Timing]) -> list[list[str]]:
    names = {"place_many": "place_many, index in memory",
             "place_many_cold": "place_many, end to end (index load + placement)",
             "strtree": "baseline: shapely STRtree query alone (grid parts)",
             "postgis": "baseline: point-driven PostGIS join (grid parts)"}
    rows = []
    for key, name in names.items():
        t = results.get(key)
        if t is None:
            continue
        target = ""
        if key.startswith("place_many"):
            met = t.rate >= BULK_POINTS_PER_S
            target = f"≥ {BULK_POINTS_PER_S / 1000:g} k/s: {'met' if met else 'NOT met'}"
        rows.append([name, f"{t.points:,}", f"{t.seconds:.2f}", f"{t.rate:,.0f}",
                     f"{t.setup_seconds:.2f}" if t.setup_seconds else "", t.note, target])
    return rows


RECOMMEND_HEAD = ["recommendation (top 5)", "incidents", "p50 ms", "p95 ms", "max ms", "note",
                  "target"]


def _recommend_rows(results: list[RecTiming]) -> list[list[str]]:
    rows = []
    for k, t in enumerate(results):
        target = ""
        if k == 0:
            met = t.p95 <= RECOMMEND_P95_MS
            speedup = results[1].p95 / t.p95 if len(results) > 1 else 0.0
            target = (f"p95 ≤ {RECOMMEND_P95_MS:g} ms: {'met' if met else 'NOT met'}; "
                      f"≥ {RECOMMEND_SPEEDUP:g}× the baseline: "
                      f"{'met' if speedup >= RECOMMEND_SPEEDUP else 'NOT met'}")
        rows.append([t.name, f"{t.runs:,}", f"{t.p50:.1f}", f"{t.p95:.1f}", f"{t.max:.0f}",
                     t.note, target])
    return rows


LIVE_HEAD = ["live feed: POST → SSE", "incidents", "p50 ms", "p95 ms", "max ms", "lost",
             "target"]


def _live_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for key, name in (("all_workers", "arrival on every worker's stream"),
                      ("first", "arrival on the first stream"),
                      ("post", "POST response (baseline)")):
        r = result[key]
        target = ""
        if key == "all_workers":
            met = r["p95_ms"] <= result["target_ms"] and not result["lost"]
            target = f"≤ {result['target_ms']:g} ms: {'met' if met else 'NOT met'} (p95)"
        rows.append([name, str(result["n"]), f"{r['p50_ms']:.1f}", f"{r['p95_ms']:.1f}",
                     f"{r['max_ms']:.0f}", str(result["lost"]), target])
    return rows


def _ratios(intake_results: dict[str, Latency], bulk: dict[str, Timing]) -> list[str]:
    lines = []
    if "http" in intake_results and "sql" in intake_results:
        h, s = intake_results["http"], intake_results["sql"]
        lines.append(f"intake p99 / raw lookup SQL p99 (50 clients back to back): "
                     f"{h.p99 / s.p99:.1f}×; throughput {h.rate / s.rate:.2f}×")
    if "http_one" in intake_results and "sql_one" in intake_results:
        h, s = intake_results["http_one"], intake_results["sql_one"]
        lines.append(f"intake p50 / raw lookup SQL p50 (1 client): {h.p50 / s.p50:.1f}×")
    if "place_many" in bulk:
        pm = bulk["place_many"].rate
        for key, name in (("strtree", "shapely STRtree query alone"),
                          ("postgis", "point-driven PostGIS join")):
            if key in bulk:
                lines.append(f"place_many / {name}: {pm / bulk[key].rate:.2f}× the points/s")
    return lines


def _table(title: str, head: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for h in head:
        table.add_column(h, overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _markdown(head: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def record(machine: Machine, db: str, dataset: str, settings: str,
           tables: list[tuple[list[str], list[list[str]]]], ratios: list[str], label: str = "",
           path: Path = DOCS) -> None:
    """Write this run's block into docs/benchmarks.md (replacing today's block for this
    machine and label, else appended at the end); `tables` are (header, rows) pairs."""
    key = f"{machine.when:%Y-%m-%d} {machine.host}" + (f" {label}" if label else "")
    block = "\n".join([
        f"<!-- run: {key} -->",
        f"### {machine.when:%Y-%m-%d %H:%M} UTC — {machine.host}"
        + (f" — {label}" if label else ""),
        "",
        f"- machine: {machine.line()}",
        f"- database: `{db}` — {dataset}",
        f"- settings: {settings}",
        "",
        *[part for head, rows in tables if rows for part in (_markdown(head, rows), "")],
        *[f"- {line}" for line in ratios],
        f"<!-- /run: {key} -->",
    ])
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- run: {re.escape(key)} -->.*?<!-- /run: {re.escape(key)} -->",
                         re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--db", required=True, help="database URL of the city-scale dataset")
    parser.add_argument("--only", choices=("intake", "bulk", "recommend", "tiles", "ogc", "live",
                                           "validation", "boundary"),
                        help="run one benchmark only")
    parser.add_argument("--incidents", type=int, default=200,
                        help="incidents the recommendation benchmark ranks teams for")
    parser.add_argument("--budget", type=float, default=1800.0,
                        help="road travel-time budget of a recommendation (s)")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2, help="gridops serve --workers")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--user", default="demo_admin")
    parser.add_argument("--password", default="demo-admin-2026")
    parser.add_argument("--no-record", action="store_true", help="do not write the docs")
    parser.add_argument("--label", default="", help="names this run's block in the docs "
                                                    "(e.g. a what-if); one block per label")
    args = parser.parse_args(argv)
    url = make_url(args.db)
    db_url = url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    dsn = libpq(db_url)
    machine = this_machine()
    out.print(machine.line())
    dataset = _dataset(dsn)
    out.print(dataset)
    intake_results: dict[str, Latency] = {}
    bulk: dict[str, Timing] = {}
    if args.only in (None, "bulk"):
        x, y, at = incident_points(dsn, args.points)
        bulk["place_many"], bulk["place_many_cold"], _ = bench_place_many(
            db_url, x, y, at, say=out.print)
        out.print("STRtree baseline …")
        bulk["strtree"] = bench_strtree(dsn, x, y)
        out.print("PostGIS join baseline …")
        bulk["postgis"] = bench_postgis_join(dsn, x, y, at)
    if args.only in (None, "intake"):
        with tempfile.TemporaryDirectory() as tmp:
            intake_results = intake(db_url, clients=args.clients, workers=args.workers,
                                    port=args.port, seconds=args.seconds, warmup=args.warmup,
                                    username=args.user, password=args.password,
                                    log=Path(tmp) / "serve.log", say=out.print)
    recommend_rows: list[list[str]] = []
    recommend_lines: list[str] = []
    if args.only in (None, "recommend"):
        timings, recommend_lines = bench_recommend(db_url, args.incidents, args.budget,
                                                   stale_minutes=30, say=out.print)
        recommend_rows = _recommend_rows(timings)
    tile_rows: list[list[str]] = []
    ogc_rows: list[list[str]] = []
    live_rows: list[list[str]] = []
    boundary_rows: list[list[str]] = []
    plan_rows: list[list[str]] = []
    more_lines: list[str] = []
    if args.only in (None, "tiles"):
        tile_rows, lines = bench_tiles(db_url, say=out.print)
        more_lines += lines
    if args.only in (None, "ogc"):
        ogc_rows, lines = bench_ogc(db_url, say=out.print)
        more_lines += lines
    if args.only in (None, "live"):
        live_rows = _live_rows(bench_live(db_url, say=out.print))
    if args.only in (None, "validation"):
        results = bench_plan_validation(dsn, say=out.print)
        plan_rows = validation_rows(results)
        more_lines += validation_lines(results)
    if args.only in (None, "boundary"):
        boundary_rows, lines = bench_boundary_report(db_url, say=out.print)
        more_lines += lines
    tables = [(LATENCY_HEAD, _latency_rows(intake_results, args.workers)),
              (BULK_HEAD, _bulk_rows(bulk)), (RECOMMEND_HEAD, recommend_rows),
              (TILES_HEAD, tile_rows), (OGC_HEAD, ogc_rows), (LIVE_HEAD, live_rows),
              (VALIDATION_HEAD, plan_rows), (BOUNDARY_HEAD, boundary_rows)]
    ratios = _ratios(intake_results, bulk) + recommend_lines + more_lines
    for head, rows in tables:
        if rows:
            out.print(_table(head[0], head, rows))
    for line in ratios:
        out.print(line)
    if not args.no_record:
        settings = (f"{args.clients} clients, {args.seconds:g} s measured after "
                    f"{args.warmup:g} s warm-up per row; {args.points:,} points "
                    "(the stored incident history, at their report times); recommendation: "
                    f"{args.incidents} incidents, budget {args.budget:g} s")
        record(machine, url.render_as_string(hide_password=True), dataset, settings,
               tables, ratios, args.label)
        out.print(f"recorded in {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
