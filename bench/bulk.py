"""Bulk placement of a million points: `place_many` (every level, building, 街巷 and chief,
joint cases, versions by time) against two baselines — a shapely STRtree query of the points
in the grid parts alone, and the point-driven PostGIS join (points COPYed into a temporary
table, joined to grid_parts with ST_Intersects and the validity test)."""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg2
import shapely
from psycopg2 import sql
from sqlalchemy import create_engine

from gis.placement_bulk import PlacementIndex, place_many


@dataclass(frozen=True)
class Timing:
    """Seconds for `points` points (and what was set up beforehand, not counted)."""

    points: int
    seconds: float
    setup_seconds: float = 0.0
    note: str = ""

    @property
    def rate(self) -> float:
        return self.points / self.seconds


def incident_points(dsn: str, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """lon, lat, reported_at (datetime64 UTC) of `n` stored incidents (repeated if fewer)."""
    buffer = io.StringIO()
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.copy_expert(sql.SQL(
            "COPY (SELECT ST_X(geom), ST_Y(geom), CAST(extract(epoch FROM reported_at) "
            "* 1000000 AS bigint) FROM incidents ORDER BY id LIMIT {}) TO STDOUT "
            "WITH (FORMAT csv)").format(sql.Literal(int(n))).as_string(cur), buffer)
    buffer.seek(0)
    frame = pd.read_csv(buffer, header=None, names=["x", "y", "us"])
    reps = -(-n // max(len(frame), 1))
    x = np.tile(frame["x"].to_numpy(), reps)[:n]
    y = np.tile(frame["y"].to_numpy(), reps)[:n]
    at = (np.tile(frame["us"].to_numpy(), reps)[:n] * 1000).astype("datetime64[ns]")
    return x, y, at


def bench_place_many(db_url: str, x: np.ndarray, y: np.ndarray, at: np.ndarray,
                     say: Any = print) -> tuple[Timing, Timing, pd.DataFrame]:
    """(warm: index already in memory, best of 2; cold: index load + placement), result."""
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            say("place_many: loading the index …")
            t0 = time.perf_counter()
            index = PlacementIndex.load(conn)
            load = time.perf_counter() - t0
            runs, cpu = [], []
            for _ in range(2):
                say("place_many: placing …")
                t0, c0 = time.perf_counter(), time.process_time()
                frame = place_many(conn, x, y, at, index=index)
                runs.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
    finally:
        engine.dispose()
    best = int(np.argmin(runs))
    return (Timing(len(x), runs[best], load,
                   f"best of 2 ({', '.join(f'{r:.2f}' for r in runs)} s wall); "
                   f"CPU {cpu[best]:.2f} s = {len(x) / cpu[best]:,.0f} points per CPU-second"),
            Timing(len(x), load + runs[0], 0.0, "index load + first placement"), frame)


def bench_strtree(dsn: str, x: np.ndarray, y: np.ndarray) -> Timing:
    """Points in grid parts with a shapely STRtree (no time test, no choice among hits)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_AsBinary(geom) FROM grid_parts")
        parts = shapely.from_wkb(np.array([bytes(r[0]) for r in cur.fetchall()], dtype=object))
    t0 = time.perf_counter()
    tree = shapely.STRtree(parts)
    setup = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    pairs = tree.query(shapely.points(x, y), predicate="intersects")
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return Timing(len(x), seconds, setup, f"{pairs.shape[1]:,} point-part pairs; CPU "
                                          f"{cpu:.2f} s = {len(x) / cpu:,.0f} points per "
                                          "CPU-second")


JOIN = """
    SELECT count(*), count(grid_id) FROM (
      SELECT DISTINCT ON (p.id) p.id, g.grid_id
      FROM bench_points p LEFT JOIN grid_parts g
        ON ST_Intersects(g.geom, p.geom)
       AND g.valid_from <= p.t AND (g.valid_to IS NULL OR g.valid_to > p.t)
      ORDER BY p.id, g.code) x
"""


def bench_postgis_join(dsn: str, x: np.ndarray, y: np.ndarray, at: np.ndarray) -> Timing:
    """Points COPYed into a temporary table, then joined to grid_parts (GiST probe per
    point) choosing the lowest code in force — the grid step of the SQL, set-wise."""
    buffer = io.StringIO()
    pd.DataFrame({"id": np.arange(len(x)), "x": x, "y": y,
                  "t": pd.DatetimeIndex(at, tz="UTC")}).to_csv(buffer, index=False,
                                                                header=False)
    buffer.seek(0)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        t0 = time.perf_counter()
        cur.execute("CREATE TEMP TABLE bench_raw (id int, x float8, y float8, t timestamptz)")
        cur.copy_expert("COPY bench_raw FROM STDIN WITH (FORMAT csv)", buffer)
        cur.execute("CREATE TEMP TABLE bench_points AS SELECT id, t, "
                    "ST_SetSRID(ST_MakePoint(x, y), 4326) AS geom FROM bench_raw")
        cur.execute("ANALYZE bench_points")
        setup = time.perf_counter() - t0
        t0 = time.perf_counter()
        cur.execute(JOIN)
        total, placed = cur.fetchone()
        seconds = time.perf_counter() - t0
        conn.rollback()
    return Timing(len(x), seconds, setup, f"{placed:,} of {total:,} in a grid")
