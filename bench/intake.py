"""Incident intake under 50 concurrent clients: POST /api/v1/incidents against a live
`gridops serve` (placement, case state, deadlines, commit, duplicates, response), and the
baseline — the single-point lookup SQL (`gis.placement._PLACE`) alone over psycopg2."""

from __future__ import annotations

import http.client
import json
import os
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import psycopg2
from sqlalchemy.dialects.postgresql import psycopg2 as pg_dialect

from bench import process
from bench.load import Connect, Latency, run
from gis.placement import _PLACE, BUILDING_SNAP_M, STREET_SNAP_M

PROJECT = Path(__file__).resolve().parents[1]
PLACE_SQL = str(_PLACE.compile(dialect=pg_dialect.dialect()))
PREPARE = ("PREPARE bench_place (float8, float8, timestamptz, float8, float8) AS "
           + PLACE_SQL.replace("%(lon)s", "$1").replace("%(lat)s", "$2")
           .replace("%(at)s", "$3").replace("%(building_m)s", "$4")
           .replace("%(street_m)s", "$5"))


def libpq(url: str) -> str:
    """A SQLAlchemy URL (postgresql+psycopg2://…) as a libpq URL."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def sample_points(dsn: str, n: int) -> list[tuple[float, float]]:
    """Where incidents happen: `n` random points of the stored incident history."""
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT ST_X(geom), ST_Y(geom) FROM incidents TABLESAMPLE SYSTEM (5) "
                    "ORDER BY random() LIMIT %s", (n,))
        return [(float(x), float(y)) for x, y in cur.fetchall()]


@contextmanager
def server(db_url: str, workers: int, port: int, log: Path) -> Iterator[str]:
    """`gridops serve` on the benchmark database (its own process group, ended after)."""
    env = {**os.environ, "DATABASE_URL": db_url, "GRIDOPS_PUBLIC_RATE_PER_MINUTE": "100000"}
    with process.running("gridops serve", [sys.executable, "-m", "api.cli", "serve",
                                           "--workers", str(workers), "--port", str(port)],
                         port=port, ready_path="/api/v1/health", env=env, log=log,
                         cwd=PROJECT) as base:
        yield base


def bearer(port: int, username: str, password: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/auth/token",
                 body=urllib.parse.urlencode({"username": username, "password": password}),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    data = json.loads(response.read())
    if response.status != 200:
        raise RuntimeError(f"cannot sign in as {username}: {data}")
    return str(data["access_token"])


def http_clients(port: int, token: str, points: list[tuple[float, float]]) -> Connect:
    bodies = [json.dumps({"event_code": "0101", "lon": x, "lat": y, "source": "12345",
                          "description": "bench: intake under load"}).encode()
              for x, y in points]
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def connect(k: int) -> Any:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

        def send(i: int) -> bool:
            conn.request("POST", "/api/v1/incidents", body=bodies[i % len(bodies)],
                         headers=headers)
            response = conn.getresponse()
            response.read()
            return response.status == 201

        return send

    return connect


def sql_clients(dsn: str, points: list[tuple[float, float]], prepared: bool) -> Connect:
    def connect(k: int) -> Any:
        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        cur = conn.cursor()
        if prepared:
            cur.execute(PREPARE)

        def send(i: int) -> bool:
            x, y = points[i % len(points)]
            at = datetime.now(UTC)
            if prepared:
                cur.execute("EXECUTE bench_place (%s, %s, %s, %s, %s)",
                            (x, y, at, BUILDING_SNAP_M, STREET_SNAP_M))
            else:
                cur.execute(PLACE_SQL, {"lon": x, "lat": y, "at": at,
                                        "building_m": BUILDING_SNAP_M,
                                        "street_m": STREET_SNAP_M})
            return cur.fetchone()[0]["district"] is not None

        return send

    return connect


PROPOSED_INDEX = "CREATE INDEX bench_street_assignments_street ON street_assignments (street_id)"


def _one_client(cur: Any, points: list[tuple[float, float]], prepared: bool) -> Latency:
    """Latency of the lookup SQL from one client, back to back over `points`."""
    if prepared:
        cur.execute(PREPARE)
    samples = []
    started = time.perf_counter()
    for x, y in points:
        args = {"lon": x, "lat": y, "at": datetime.now(UTC), "building_m": BUILDING_SNAP_M,
                "street_m": STREET_SNAP_M}
        t0 = time.perf_counter()
        if prepared:
            cur.execute("EXECUTE bench_place (%(lon)s, %(lat)s, %(at)s, %(building_m)s, "
                        "%(street_m)s)", args)
        else:
            cur.execute(PLACE_SQL, args)
        cur.fetchone()
        samples.append((time.perf_counter() - t0) * 1000.0)
    seconds = time.perf_counter() - started
    if prepared:
        cur.execute("DEALLOCATE bench_place")
    values = np.array(samples)
    return Latency(clients=1, mode="back to back", requests=len(samples), failures=0,
                   seconds=seconds, p50=float(np.percentile(values, 50)),
                   p90=float(np.percentile(values, 90)), p99=float(np.percentile(values, 99)),
                   max=float(values.max()))


def proposed(dsn: str, points: list[tuple[float, float]]) -> dict[str, Latency]:
    """The lookup SQL from one client with the changes proposed for gis/placement.py and
    the schema, applied in a transaction that is rolled back: server-side prepared (plan
    cached), an index on street_assignments (street_id) (the stewards lookup scans the
    table otherwise), and both."""
    conn = psycopg2.connect(dsn)
    try:
        cur = conn.cursor()
        _one_client(cur, points[:200], False)  # warm the cache
        out = {"one_as_is": _one_client(cur, points, False),
               "one_prepared": _one_client(cur, points, True)}
        cur.execute(PROPOSED_INDEX)
        out["one_index"] = _one_client(cur, points, False)
        out["one_index_prepared"] = _one_client(cur, points, True)
        conn.rollback()
    finally:
        conn.close()
    return out


def intake(db_url: str, *, clients: int, workers: int, port: int, seconds: float,
           warmup: float, username: str, password: str, log: Path,
           say: Any = print) -> dict[str, Latency]:
    """Every intake measurement, by name."""
    dsn = libpq(db_url)
    points = sample_points(dsn, 20_000)
    out: dict[str, Latency] = {}
    say(f"raw lookup SQL, {clients} clients …")
    out["sql"] = run(sql_clients(dsn, points, False), clients, seconds, warmup)
    out["sql_prepared"] = run(sql_clients(dsn, points, True), clients, seconds, warmup)
    out["sql_paced"] = run(sql_clients(dsn, points, False), clients, seconds, warmup, pace=1.0)
    out["sql_one"] = run(sql_clients(dsn, points, False), 1, seconds, warmup)
    say("raw lookup SQL with the proposed changes, 1 client …")
    out.update(proposed(dsn, points[:2000]))
    say(f"gridops serve --workers {workers}, {clients} clients …")
    with server(db_url, workers, port, log):
        token = bearer(port, username, password)
        connect = http_clients(port, token, points)
        out["http"] = run(connect, clients, seconds, warmup)
        out["http_paced"] = run(connect, clients, seconds, warmup, pace=1.0)
        out["http_one"] = run(connect, 1, seconds, warmup)
    return out
