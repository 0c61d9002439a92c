"""Grid plan validation on the city-scale dataset (DESIGN §6: 60 k grids in ≤ 5 s).

Every live grid of the database is validated as one plan: the grids in force now, the
communities in force, every building (footprint and ST_PointOnSurface) and every 街巷, read
once (COPY of hex WKB, the layers in parallel; timed separately, not counted), then
`gis.plan_validation.validate_frames` on all of them — the number against the target.
Two configurations, each run `runs` times (best and median reported):
- frames in EPSG:4326 as stored (what `validate_plan` passes): validate_frames projects the
  grid, community and street vertices itself;
- frames already in the metric CRS (ST_Transform in PostGIS during the load): nothing to
  project, but geometry validity is then judged on the projected geometry.
Reads only. `python -m bench.plan_validation --db URL` prints the table; the lead's
bench/run.py records it.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg2
import shapely

from gis.plan_validation import PlanRules, validate_frames

TARGET_S = 5.0
HEAD = ["plan validation (all live grids)", "grids", "buildings", "load s (not counted)",
        "validate s best / median", "CPU s (best run, both threads)", "errors", "warnings",
        "stages (best run), s", "target"]
# Fixed SELECTs: {geom}/{point} become a column expression chosen here, never a value;
# values (SRID, chunking) are bound by psycopg2.
_LAYERS = {
    "grids": "SELECT id, code, community_code, encode(ST_AsBinary({geom}), 'hex') AS wkb "
             "FROM grids WHERE valid_from <= now() AND (valid_to IS NULL OR valid_to > now())",
    "communities": "SELECT code, encode(ST_AsBinary({geom}), 'hex') AS wkb FROM jurisdictions "
                   "WHERE level = 'community' AND valid_from <= now() "
                   "AND (valid_to IS NULL OR valid_to > now())",
    "streets": "SELECT encode(ST_AsBinary({geom}), 'hex') AS wkb FROM streets",
}
_BUILDINGS = ("SELECT id, households, encode(ST_AsBinary({geom}), 'hex') AS wkb, "
              "encode(ST_AsBinary({point}), 'hex') AS point FROM buildings "
              "WHERE id %% %(parts)s = %(part)s")
BUILDING_CHUNKS = 4


@dataclass
class Result:
    """One configuration: sizes, load time, validation times per run and the last report's
    counts."""

    frames: str
    grids: int
    buildings: int
    communities: int
    streets: int
    load_s: float
    runs_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # process CPU time of the best run
    stages: dict[str, float] = field(default_factory=dict)  # of the best run
    errors: int = 0
    warnings: int = 0
    by_rule: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> float:
        return min(self.runs_s)

    @property
    def median(self) -> float:
        return statistics.median(self.runs_s)


def _copy(dsn: str, select: str, params: dict[str, Any]) -> pd.DataFrame:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        query = cur.mogrify(select, params).decode()
        buffer = io.StringIO()
        cur.copy_expert(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    buffer.seek(0)
    return pd.read_csv(buffer, dtype={"code": str, "community_code": str},
                       keep_default_na=False, na_values=[""])


def _geoms(hex_wkb: pd.Series) -> np.ndarray:
    raw = np.array([bytes.fromhex(h) for h in hex_wkb.to_numpy(dtype=object)], dtype=object)
    return np.asarray(shapely.from_wkb(raw), dtype=object)


def load_frames(dsn: str, srid: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame,
                                               gpd.GeoDataFrame, gpd.GeoSeries]:
    """Every live grid, community in force, building and street, in EPSG:`srid` (4326: as
    stored; otherwise projected by PostGIS). Layers (and chunks of buildings) are read in
    parallel."""
    geom = "geom" if srid == 4326 else "ST_Transform(geom, %(srid)s)"
    point = ("ST_PointOnSurface(geom)" if srid == 4326
             else "ST_Transform(ST_PointOnSurface(geom), %(srid)s)")
    jobs: dict[str, tuple[str, dict[str, Any]]] = {
        name: (sql.format(geom=geom), {"srid": srid}) for name, sql in _LAYERS.items()}
    for part in range(BUILDING_CHUNKS):
        jobs[f"buildings{part}"] = (_BUILDINGS.format(geom=geom, point=point),
                                    {"srid": srid, "parts": BUILDING_CHUNKS, "part": part})
    with ThreadPoolExecutor(len(jobs)) as pool:
        futures = {name: pool.submit(_copy, dsn, sql, params)
                   for name, (sql, params) in jobs.items()}
        tables = {name: f.result() for name, f in futures.items()}
    crs = f"EPSG:{srid}"
    g = tables["grids"]
    grids = gpd.GeoDataFrame(g[["id", "code", "community_code"]], geometry=_geoms(g["wkb"]),
                             crs=crs)
    c = tables["communities"]
    communities = gpd.GeoDataFrame(c[["code"]], geometry=_geoms(c["wkb"]), crs=crs)
    b = pd.concat([tables[f"buildings{k}"] for k in range(BUILDING_CHUNKS)],
                  ignore_index=True).sort_values("id", ignore_index=True)
    buildings = gpd.GeoDataFrame(b[["id", "households"]].assign(point=_geoms(b["point"])),
                                 geometry=_geoms(b["wkb"]), crs=crs)
    streets = gpd.GeoSeries(_geoms(tables["streets"]["wkb"]), crs=crs)
    return grids, communities, buildings, streets


def bench_plan_validation(dsn: str, *, runs: int = 3, srids: tuple[int, ...] = (4326, 4548),
                          rules: PlanRules | None = None,
                          say: Callable[[str], Any] = print) -> list[Result]:
    """Load everything live (timed) and validate it `runs` times per frame CRS (timed);
    return one Result per CRS. `dsn`: a libpq connection string or URL."""
    rules = rules or PlanRules()
    results = []
    for srid in srids:
        say(f"plan validation: loading all live layers in EPSG:{srid} …")
        t0 = time.perf_counter()
        grids, communities, buildings, streets = load_frames(dsn, srid)
        result = Result(f"EPSG:{srid}" + (" (as stored)" if srid == 4326 else
                                          " (projected by PostGIS in the load)"),
                        len(grids), len(buildings), len(communities), len(streets),
                        time.perf_counter() - t0)
        say(f"  {result.grids:,} grids, {result.communities:,} communities, "
            f"{result.buildings:,} buildings, {result.streets:,} streets in "
            f"{result.load_s:.1f} s")
        for run in range(runs):
            stages: dict[str, float] = {}
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            report = validate_frames(grids, communities, buildings, streets, rules,
                                     timings=stages)
            seconds = time.perf_counter() - t0
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
            if not result.runs_s or seconds < min(result.runs_s):
                result.stages, result.cpu_s = stages, cpu
            result.runs_s.append(seconds)
            say(f"  run {run + 1}: {seconds:.2f} s (CPU {cpu:.2f} s)")
        result.errors, result.warnings = report["errors"], report["warnings"]
        result.by_rule = dict(Counter(i["rule"] for i in report["issues"]))
        result.summary = report["summary"]
        results.append(result)
    return results


def rows(results: list[Result]) -> list[list[str]]:
    """Table rows (HEAD) for bench/run.py."""
    out = []
    for r in results:
        met = r.median <= TARGET_S
        stages = "; ".join(f"{k} {v:.2f}" for k, v in r.stages.items())
        issues = ", ".join(f"{k} {v:,}" for k, v in sorted(r.by_rule.items()))
        out.append([f"validate_frames, frames in {r.frames}", f"{r.grids:,}",
                    f"{r.buildings:,}", f"{r.load_s:.1f}",
                    f"{r.best:.2f} / {r.median:.2f}", f"{r.cpu_s:.2f}", f"{r.errors:,}",
                    f"{r.warnings:,} ({issues})" if issues else "0", stages,
                    f"≤ {TARGET_S:g} s (median): {'met' if met else 'NOT met'}"])
    return out


def lines(results: list[Result]) -> list[str]:
    """Notes under the table: what the report found."""
    out = []
    for r in results:
        s = r.summary
        out.append(
            f"plan validation ({r.frames}): {s.get('households', 0):,} households in "
            f"{s.get('buildings', 0):,} buildings; {s.get('split_buildings', 0):,} split "
            f"buildings; inner boundary {s.get('inner_boundary_m', 0) / 1000:,.0f} km, "
            f"{(s.get('street_following_share') or 0):.1%} of it within the snap distance "
            f"of a street; mean Polsby-Popper {s.get('mean_polsby_popper') or 0:.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    from bench.machine import this_machine

    parser = argparse.ArgumentParser(prog="python -m bench.plan_validation",
                                     description=__doc__)
    parser.add_argument("--db", required=True, help="database URL of the city-scale dataset")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--srid", type=int, action="append",
                        help="frame CRS to run (repeatable; default 4326 and 4548)")
    args = parser.parse_args(argv)
    console = Console(highlight=False, width=220)
    console.print(this_machine().line())
    dsn = args.db.replace("postgresql+psycopg2://", "postgresql://", 1)
    results = bench_plan_validation(dsn, runs=args.runs,
                                    srids=tuple(args.srid or (4326, 4548)), say=console.print)
    table = Table(title=HEAD[0], title_justify="left")
    for h in HEAD:
        table.add_column(h, overflow="fold")
    for row in rows(results):
        table.add_row(*row)
    console.print(table)
    for line in lines(results):
        console.print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
