"""OGC API Features items pages of 1000 features: `gridops serve` (/ogc, GeoJSON assembled
by PostGIS, keyset paging) against tipg (PyPI) serving the same tables in the same run.

Per collection (grids, buildings), two sets of `pages` requests, one client, one server
process each, run one after the other:
- bbox first pages: distinct random boxes around stored features, `limit=1000`, no cursor
  (both servers count numberMatched for each request);
- deep pages: positions spread through the whole collection — ours by keyset cursor
  (`after` = the id before the position), tipg by `offset` (its only paging). Ours repeats
  the count of its paging session (gis.ogc.COUNT_TTL_S); tipg counts on every page.
Latency is from sending the request to the last byte of the body. The page sizes and
numberMatched of both servers are compared for the bbox pages (same filter, same rows).

    python -m bench.ogc [--db URL] [--pages 50]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psycopg2

from bench import process
from bench.intake import bearer, libpq, server
from bench.machine import this_machine

LIMIT = 1000
WARMUP = 5
# bbox half-widths (degrees) that hold about a page of each collection at city scale
HALF = {"grids": (0.09, 0.07), "buildings": (0.025, 0.02)}
TIPG_PROPERTIES = {  # what ours returns, so both pages carry the same attributes
    "grids": ["id", "code", "name", "community_code", "street_code", "district_code",
              "households", "population", "valid_from", "is_synthetic"],
    "buildings": ["id", "code", "name", "address", "use", "floors", "households",
                  "district_code", "grid_code", "is_synthetic"],
}
# the key ordering our pages (grids by code, buildings by id) and what the collection holds
ORDER = {"grids": ("code", "valid_from <= now() AND (valid_to IS NULL OR valid_to > now())"),
         "buildings": ("id", "true")}
HEAD = ["collection", "pages", "server", "features/page", "KB/page", "p50 ms", "p95 ms"]


@dataclass(frozen=True)
class Request:
    """One page request for each server: our path and tipg's."""

    ours: str
    tipg: str


@dataclass
class Sample:
    ms: list[float]
    features: list[int]
    matched: list[int]
    kb: list[float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def plan(dsn: str, collection: str, pages: int, seed: float = 0.42) -> dict[str, list[Request]]:
    """The two request sets for `collection`: bbox first pages and deep pages."""
    key, where = ORDER[collection]
    hx, hy = HALF[collection]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT setseed(%s)", (seed,))
        cur.execute(f"SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p "  # noqa: S608
                    f"FROM {collection} TABLESAMPLE SYSTEM (2) REPEATABLE (7) WHERE {where} "
                    "ORDER BY random() LIMIT %s) AS s", (pages,))
        centres = cur.fetchall()
        cur.execute(f"SELECT count(*) FROM {collection} WHERE {where}")  # noqa: S608
        total = int(cur.fetchone()[0])
        positions = [int(p) for p in np.linspace(1, max(1, total - LIMIT), pages)]
        cursors = []
        for position in positions:
            cur.execute(f"SELECT {key}::text FROM {collection} WHERE {where} "  # noqa: S608
                        f"ORDER BY {key} OFFSET %s LIMIT 1", (position - 1,))
            cursors.append(cur.fetchone()[0])
    ours = f"/ogc/collections/{collection}/items?limit={LIMIT}"
    tipg = f"/collections/public.{collection}/items?limit={LIMIT}"
    boxes = [f"{x - hx:.5f},{y - hy:.5f},{x + hx:.5f},{y + hy:.5f}" for x, y in centres]
    return {
        "bbox first pages": [Request(f"{ours}&bbox={b}", f"{tipg}&bbox={b}") for b in boxes],
        "deep pages": [Request(f"{ours}&after={c}", f"{tipg}&offset={p}")
                       for c, p in zip(cursors, positions, strict=True)],
    }


def fetch(port: int, paths: list[str], headers: dict[str, str]) -> Sample:
    """GET each path on one keep-alive connection, after WARMUP unmeasured requests."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    sample = Sample([], [], [], [])
    for i, path in enumerate(paths[:WARMUP] + paths):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        ms = (time.perf_counter() - t) * 1000
        if response.status != 200:
            raise RuntimeError(f"GET {path}: HTTP {response.status} {body[:300]!r}")
        if i < WARMUP:
            continue
        page = json.loads(body)
        sample.ms.append(ms)
        sample.features.append(len(page["features"]))
        sample.matched.append(int(page.get("numberMatched", -1)))
        sample.kb.append(len(body) / 1024)
    conn.close()
    return sample


@contextmanager
def tipg(dsn: str, port: int, log: Path) -> Iterator[str]:
    """tipg serving the same tables (with our properties); its own process group, ended after."""
    with process.tipg(dsn, port, log, TIPG_PROPERTIES,
                      TIPG_MAX_FEATURES_PER_QUERY="10000") as base:
        yield base


def count_ms(dsn: str, collection: str, repeats: int = 5) -> float:
    """Median time of the plain `count(*)` of a whole collection (what an unfiltered
    numberMatched costs), for reading the deep-page numbers."""
    where = ORDER[collection][1]
    times = []
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for _ in range(repeats):
            t = time.perf_counter()
            cur.execute(f"SELECT count(*) FROM {collection} WHERE {where}")  # noqa: S608
            cur.fetchone()
            times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def _p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_ogc(db_url: str, say: Callable[[str], object] = print, *, pages: int = 50,
              username: str = "demo_admin", password: str = "demo-admin-2026"
              ) -> tuple[list[list[str]], list[str]]:
    """Items pages of LIMIT features from both servers: table rows and ratio lines."""
    dsn = libpq(db_url)
    plans = {c: plan(dsn, c, pages) for c in ORDER}
    ours: dict[tuple[str, str], Sample] = {}
    theirs: dict[tuple[str, str], Sample] = {}
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        say(f"gridops serve on :{port} …")
        with server(db_url, 1, port, Path(tmp) / "serve.log"):
            headers = {"Authorization": f"Bearer {bearer(port, username, password)}"}
            for c, sets in plans.items():
                for name, requests in sets.items():
                    ours[c, name] = fetch(port, [r.ours for r in requests], headers)
        port = _free_port()
        say(f"tipg on :{port} …")
        with tipg(dsn, port, Path(tmp) / "tipg.log"):
            for c, sets in plans.items():
                for name, requests in sets.items():
                    theirs[c, name] = fetch(port, [r.tipg for r in requests], {})
    rows: list[list[str]] = []
    ratios = [f"{c}: count(*) of the whole collection alone takes {count_ms(dsn, c):.0f} ms "
              "(tipg pays it on every deep page; ours once per paging session)" for c in ORDER]
    for c, name in ours:
        for label, s in (("gridops /ogc", ours[c, name]), ("tipg", theirs[c, name])):
            rows.append([c, f"{name} ({len(s.ms)})", label, f"{np.mean(s.features):.0f}",
                         f"{np.mean(s.kb):.0f}", f"{_p(s.ms, 50):.1f}", f"{_p(s.ms, 95):.1f}"])
        a, b = ours[c, name], theirs[c, name]
        same = sum(x == y for x, y in zip(a.features, b.features, strict=True))
        counts = sum(x == y for x, y in zip(a.matched, b.matched, strict=True))
        agree = (f"; numberMatched equal on {counts}/{len(a.matched)}"
                 if name.startswith("bbox") else "")
        ratios.append(f"{c}, {name}: tipg/ours p50 {_p(b.ms, 50) / _p(a.ms, 50):.2f}x, "
                      f"p95 {_p(b.ms, 95) / _p(a.ms, 95):.2f}x (page sizes equal on "
                      f"{same}/{len(a.ms)}{agree})")
    return rows, ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("DATABASE_URL"),
                        help="database holding the city (default DATABASE_URL)")
    parser.add_argument("--pages", type=int, default=50)
    args = parser.parse_args(argv)
    if not args.db:
        parser.error("pass --db or set DATABASE_URL")
    machine = this_machine()
    print(machine.line())
    rows, ratios = bench_ogc(args.db, pages=args.pages)
    widths = [max(len(r[i]) for r in [HEAD, *rows]) for i in range(len(HEAD))]
    for row in [HEAD, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    for line in ratios:
        print(line)
    load = os.getloadavg()
    print(f"load average at end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
