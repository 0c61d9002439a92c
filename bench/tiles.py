"""Vector tile latency on the city-scale dataset: the grids layer at z 10, 12, 14, 16 and
buildings at z 14, 16, over up to 100 tiles per zoom around stored incident points.

Side by side, one client, back to back, the same tiles:
- HTTP `GET /tiles/{layer}/{z}/{x}/{y}.mvt` against `gridops serve` (one worker, so one
  cache): cold = the first request of each tile after start (empty cache), cached = the
  same tiles again;
- our tile SQL (gis.tiles.tile_sql) alone over psycopg2;
- the textbook query (ST_Transform + ST_AsMVTGeom, no affine map, no cap) over psycopg2;
- tipg (PyPI) serving the same two tables (`/collections/public.grids/tiles/
  WebMercatorQuad/{z}/{x}/{y}`, buffer 64, cap 5000), started here as a subprocess.
Both SQL runs use the session settings our tiles use (no JIT, no parallel workers).
Reads only, except the sign-in of `gridops serve` (one auth session row).

`python -m bench.tiles --db URL` prints the table; the lead's bench/run.py records it.
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import numpy as np
import psycopg2
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg2 as pg_dialect

from bench import process
from bench.intake import bearer, libpq, server
from bench.machine import this_machine
from gis import tiles

CASES: tuple[tuple[str, int], ...] = (("grids", 10), ("grids", 12), ("grids", 14),
                                      ("grids", 16), ("buildings", 14), ("buildings", 16))
TARGET_COLD_P95_MS = 50.0
TARGET_CACHED_P95_MS = 2.0
TIPG_PROPERTIES = {
    "grids": ["code", "name", "community_code", "street_code", "district_code"],
    "buildings": ["id", "code", "name", "grid_code", "district_code", "floors",
                  "households", "use"],
}
HEAD = ["layer", "z", "tiles", "features/tile", "KB/tile", "HTTP cold p50 / p95",
        "HTTP cached p50 / p95", "our SQL p50 / p95", "textbook SQL p50 / p95",
        "tipg p50 / p95"]
TEXTBOOK = """
    SELECT ST_AsMVT(q, %(layer)s, 4096, 'geom') FROM (
      SELECT {columns}, ST_AsMVTGeom(ST_Transform(t.geom, 3857), ST_TileEnvelope(%(z)s, %(x)s,
             %(y)s), 4096, 64, true) AS geom
      FROM {table} t
      WHERE t.geom && ST_Transform(ST_TileEnvelope(%(z)s, %(x)s, %(y)s), 4326)) q"""
NO_JIT = ("SELECT set_config('jit', 'off', false), "
          "set_config('max_parallel_workers_per_gather', '0', false)")

Tile = tuple[int, int, int]


def _tile_of(lon: float, lat: float, z: int) -> Tile:
    n = 2 ** z
    return (z, int((lon + 180.0) / 360.0 * n),
            int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n))


def sample_tiles(dsn: str, per_zoom: int, seed: float = 0.42) -> dict[int, list[Tile]]:
    """Up to `per_zoom` distinct tiles per zoom holding incident points (a fixed sample)."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT setseed(%s)", (seed,))
        cur.execute("SELECT ST_X(geom), ST_Y(geom) FROM incidents TABLESAMPLE SYSTEM (2) "
                    "REPEATABLE (7) ORDER BY random() LIMIT 20000")
        points = cur.fetchall()
    out: dict[int, list[Tile]] = {}
    for z in sorted({z for _, z in CASES}):
        seen: dict[Tile, None] = {}
        for lon, lat in points:
            seen[_tile_of(lon, lat, z)] = None
            if len(seen) == per_zoom:
                break
        out[z] = list(seen)
    return out


def _pct(values: list[float]) -> tuple[float, float]:
    a = np.array(values or [0.0])
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


def _fmt(values: list[float]) -> str:
    if not values:
        return "—"
    p50, p95 = _pct(values)
    return f"{p50:.1f} / {p95:.1f}"


def _time(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1000.0, result


def _our_sql(layer: str, tile: Tile) -> tuple[str, dict[str, Any]]:
    """gis.tiles' SQL for a reference layer as psycopg2 text and parameters."""
    spec = tiles.LAYERS[layer]
    z, x, y = tile
    sql, fixed = tiles.tile_sql(spec, z, x, y, "true")
    compiled = str(text(sql).compile(dialect=pg_dialect.dialect()))
    return compiled, {**fixed, "layer": layer, "z": z, "x": x, "y": y,
                      "margin": tiles.BUFFER / tiles.EXTENT, "cap": spec.cap,
                      "stale_after": "30 minutes"}


def sql_timings(dsn: str, layer: str, tiles_: list[Tile], textbook: bool
                ) -> tuple[list[float], list[int], list[int]]:
    """Milliseconds per tile, and bytes and features of each tile."""
    times: list[float] = []
    sizes: list[int] = []
    counts: list[int] = []
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(NO_JIT)
        for tile in tiles_:
            z, x, y = tile
            if textbook:
                columns = ", ".join(f"t.{c}" for c in TIPG_PROPERTIES[layer])
                sql = TEXTBOOK.format(columns=columns, table=layer)  # constant names
                params: dict[str, Any] = {"layer": layer, "z": z, "x": x, "y": y}
            elif z < tiles.LAYERS[layer].minzoom:
                times.append(0.0)
                sizes.append(0)
                counts.append(0)
                continue
            else:
                sql, params = _our_sql(layer, tile)
            t0 = time.perf_counter()
            cur.execute(sql, params)
            data = cur.fetchone()[0]
            times.append((time.perf_counter() - t0) * 1000.0)
            raw = bytes(data) if data else b""
            sizes.append(len(raw))
            if not textbook:
                decoded = mapbox_vector_tile.decode(raw) if raw else {}
                counts.append(len(decoded.get(layer, {}).get("features", [])))
    return times, sizes, counts


def _get(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]
         ) -> tuple[int, bytes]:
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def http_timings(port: int, token: str, layer: str, tiles_: list[Tile], repeats: int
                 ) -> tuple[list[float], list[float]]:
    """(cold, cached) milliseconds: each tile once, then `repeats` times more."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"Authorization": f"Bearer {token}"}
    cold: list[float] = []
    cached: list[float] = []
    for z, x, y in tiles_:
        path = f"/tiles/{layer}/{z}/{x}/{y}.mvt"
        ms, (status, _) = _time(lambda: _get(conn, path, headers))  # noqa: B023
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
        cold.append(ms)
    for _ in range(repeats):
        for z, x, y in tiles_:
            path = f"/tiles/{layer}/{z}/{x}/{y}.mvt"
            ms, _ = _time(lambda: _get(conn, path, headers))  # noqa: B023
            cached.append(ms)
    conn.close()
    return cold, cached


def tipg_timings(port: int, layer: str, tiles_: list[Tile]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    out: list[float] = []
    for z, x, y in tiles_:
        path = f"/collections/public.{layer}/tiles/WebMercatorQuad/{z}/{x}/{y}"
        ms, (status, _) = _time(lambda: _get(conn, path, {}))  # noqa: B023
        if status not in (200, 204):
            raise RuntimeError(f"tipg {path}: HTTP {status}")
        out.append(ms)
    conn.close()
    return out


@contextmanager
def tipg(dsn: str, port: int, log: Path) -> Iterator[str]:
    """tipg serving the same tables, buffer 64 and at most 5000 features per tile like
    ours (its own process group, ended after)."""
    with process.tipg(dsn, port, log, TIPG_PROPERTIES, TIPG_TILE_BUFFER="64",
                       TIPG_MAX_FEATURES_PER_TILE="5000", TIPG_DB_MAX_CONN_SIZE="2") as base:
        yield base


def bench_tiles(db_url: str, say: Callable[[str], object] = print, *, per_zoom: int = 100,
                port: int = 8775, tipg_port: int = 8776, repeats: int = 3,
                username: str = "demo_admin", password: str = "demo-admin-2026",
                ) -> tuple[list[list[str]], list[str]]:
    """The table rows (HEAD) and the lines comparing them with the targets."""
    dsn = libpq(db_url)
    machine = this_machine()
    say(machine.line())
    sample = sample_tiles(dsn, per_zoom)
    results: dict[tuple[str, int], dict[str, Any]] = {}
    say("our tile SQL (warm-up pass, then measured) and the textbook query …")
    for layer, z in CASES:
        sql_timings(dsn, layer, sample[z], textbook=False)  # warm the buffers
        ours, sizes, counts = sql_timings(dsn, layer, sample[z], textbook=False)
        textbook, _, _ = sql_timings(dsn, layer, sample[z], textbook=True)
        results[(layer, z)] = {"ours": ours, "textbook": textbook, "sizes": sizes,
                               "counts": counts}
    with tempfile.TemporaryDirectory() as tmp:
        say("gridops serve (1 worker): cold, then cached …")
        with server(db_url, 1, port, Path(tmp) / "serve.log"):
            token = bearer(port, username, password)
            for layer, z in CASES:
                cold, cached = http_timings(port, token, layer, sample[z], repeats)
                results[(layer, z)].update(cold=cold, cached=cached)
        say("tipg …")
        with tipg(dsn, tipg_port, Path(tmp) / "tipg.log"):
            for layer, z in CASES:
                tipg_timings(tipg_port, layer, sample[z][:5])  # its catalog, connections
                results[(layer, z)]["tipg"] = tipg_timings(tipg_port, layer, sample[z])
    rows: list[list[str]] = []
    ratios: list[str] = []
    for layer, z in CASES:
        r = results[(layer, z)]
        below = z < tiles.LAYERS[layer].minzoom
        rows.append([layer, str(z), str(len(sample[z])),
                     "— (below minzoom: empty)" if below
                     else f"{np.mean(r['counts']):.0f} (max {max(r['counts'])})",
                     f"{np.mean(r['sizes']) / 1024:.1f}",
                     _fmt(r["cold"]), _fmt(r["cached"]), _fmt([] if below else r["ours"]),
                     _fmt(r["textbook"]), _fmt(r["tipg"])])
        cold95, cached95 = _pct(r["cold"])[1], _pct(r["cached"])[1]
        tipg95, textbook95 = _pct(r["tipg"])[1], _pct(r["textbook"])[1]
        verdict = ("meets" if cold95 <= TARGET_COLD_P95_MS and cached95 <= TARGET_CACHED_P95_MS
                   else "MISSES")
        note = (f" (minzoom {tiles.LAYERS[layer].minzoom}: empty tile; the textbook query "
                f"would take p95 {textbook95:.0f} ms, tipg {tipg95:.0f} ms)" if below else
                f"; tipg p95 {tipg95:.1f} ms (tipg ÷ ours cold = {tipg95 / cold95:.1f}), "
                f"textbook SQL p95 {textbook95:.1f} ms")
        ratios.append(f"{layer} z{z}: HTTP p95 cold {cold95:.1f} ms (target ≤ "
                      f"{TARGET_COLD_P95_MS:g}), cached {cached95:.2f} ms (≤ "
                      f"{TARGET_CACHED_P95_MS:g}) → {verdict}{note}")
    load = os.getloadavg()
    ratios.append(f"load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    return rows, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tiles", description=__doc__)
    parser.add_argument("--db", required=True, help="database URL of the city-scale dataset")
    parser.add_argument("--per-zoom", type=int, default=100)
    parser.add_argument("--port", type=int, default=8775)
    parser.add_argument("--tipg-port", type=int, default=8776)
    parser.add_argument("--user", default="demo_admin")
    parser.add_argument("--password", default="demo-admin-2026")
    args = parser.parse_args(argv)
    db_url = args.db.replace("postgresql://", "postgresql+psycopg2://", 1)
    rows, ratios = bench_tiles(db_url, per_zoom=args.per_zoom, port=args.port,
                               tipg_port=args.tipg_port, username=args.user,
                               password=args.password)
    print(" | ".join(HEAD))
    for row in rows:
        print(" | ".join(row))
    for line in ratios:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
