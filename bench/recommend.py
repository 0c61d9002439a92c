"""Dispatch recommendation on the city: `gis.recommend.recommend` (KNN shortlist + one
bounded Dijkstra over the in-memory road graph) against the exact baseline — pgRouting
(pgr_withPointsCost, the same snapping) from every eligible team (no shortlist) that could
arrive within the budget at the graph's top speed, over the roads within that reach — on the
same incidents, comparing latency and the top-5 lists.

Team positions in the benchmark database were generated when it was loaded, so they are
stale by now: the run stretches the staleness window to the age of the oldest position plus
the usual 30 minutes (the database is left as it is)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Connection, text

from gis import recommend, roadgraph
from gis.auth import Principal
from gis.database import make_engine

TOP = 5
TIE_S = 0.01  # ETAs this close are ties: their order may differ


@dataclass(frozen=True)
class Timing:
    name: str
    runs: int
    p50: float
    p95: float
    max: float
    note: str = ""


def _timing(name: str, samples: list[float], note: str = "") -> Timing:
    values = np.array(samples)
    return Timing(name, len(samples), float(np.percentile(values, 50)),
                  float(np.percentile(values, 95)), float(values.max()), note)


def _bench_admin() -> Principal:
    return Principal(user_id=0, username="bench", display_name=None,
                     roles=frozenset({"admin"}), scope_codes=(), department_id=None,
                     person_id=None, session_id="bench", session_kind="bearer",
                     expires_at=datetime.now(UTC) + timedelta(hours=1))


def _incidents(conn: Connection, n: int) -> list[int]:
    """`n` incidents drawn at random from the history (the same ones every run)."""
    return [int(i) for i in conn.scalars(text(
        "SELECT id FROM incidents TABLESAMPLE SYSTEM (1) REPEATABLE (42) "
        "ORDER BY md5(id::text) LIMIT :n"), {"n": n})]


def _exact(conn: Connection, incident: dict[str, Any], within: str | None,
           need: recommend.Need, budget_s: float, stale: timedelta,
           reach_m: float) -> list[tuple[int, float]]:
    """The baseline's top 5: every eligible team (no shortlist) that could arrive within the
    budget at the graph's top speed, exact pgRouting ETAs on the roads within that reach."""
    rows = [r for r in conn.execute(recommend._SHORTLIST, {
        "lon": incident["lon"], "lat": incident["lat"], "caps": need.capabilities,
        "stale": stale, "within": within, "shortlist": 1_000_000}).mappings()
        if r["id"] is not None and r["straight_m"] <= reach_m]
    if not rows:
        return []
    eta = roadgraph.exact_etas_pgrouting(conn, incident["lon"], incident["lat"],
                                         [r["lon"] for r in rows], [r["lat"] for r in rows],
                                         within_m=reach_m)
    ranked = sorted((float(e), int(r["id"])) for e, r in zip(eta, rows, strict=True)
                    if np.isfinite(e) and e <= budget_s)
    return [(team, e) for e, team in ranked[:TOP]]


def _agree(ours: list[tuple[int, float]], exact: list[tuple[int, float]]) -> bool:
    """Same teams in the same order, up to the order of equal ETAs."""
    if [t for t, _ in ours] == [t for t, _ in exact]:
        return True
    if len(ours) != len(exact):
        return False
    if any(abs(a[1] - b[1]) > TIE_S for a, b in zip(ours, exact, strict=True)):
        return False
    last = exact[-1][1] if exact else 0.0  # ties at the cut may swap in another team
    strict_ours = {t for t, e in ours if e < last - TIE_S}
    strict_exact = {t for t, e in exact if e < last - TIE_S}
    return strict_ours == strict_exact


def bench_recommend(db_url: str, n: int, budget_s: float, stale_minutes: int,
                    say: Any = print) -> tuple[list[Timing], list[str]]:
    """Time both over the same `n` incidents; the ratio and top-5 agreement as lines."""
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            oldest = conn.scalar(text("SELECT now() - min(position_at) FROM teams"))
            stale = (oldest or timedelta(0)) + timedelta(minutes=stale_minutes)
            admin = _bench_admin()
            top_mps = float(conn.scalar(text("SELECT max(speed_kmh) FROM road_edges"))) / 3.6
            reach_m = budget_s * top_mps  # nobody farther can arrive within the budget
            t0 = time.perf_counter()
            graph = roadgraph.graph_for(conn)
            load_s = time.perf_counter() - t0
            ids = _incidents(conn, n)
            say(f"recommendation on {len(ids)} incidents …")
            for incident_id in ids[:10]:  # warm the caches and the plans
                recommend.recommend(conn, admin, incident_id, budget_s=budget_s,
                                    stale_after=stale)
            ours_ms, exact_ms, agree, lists, empty = [], [], 0, 0, 0
            for incident_id in ids:
                t = time.perf_counter()
                result = recommend.recommend(conn, admin, incident_id, limit=TOP,
                                             budget_s=budget_s, stale_after=stale)
                ours_ms.append((time.perf_counter() - t) * 1000)
                incident = dict(conn.execute(text(
                    "SELECT ST_X(geom) AS lon, ST_Y(geom) AS lat FROM incidents WHERE id = :i"),
                    {"i": incident_id}).mappings().one())
                need = recommend.Need(result["capabilities"], {})
                t = time.perf_counter()
                exact = [_exact(conn, incident, (g["jurisdiction"] or {}).get("code"), need,
                                budget_s, stale, reach_m) for g in result["groups"]]
                exact_ms.append((time.perf_counter() - t) * 1000)
                for group, best in zip(result["groups"], exact, strict=True):
                    ours = [(p["team_id"], p["eta_s"]) for p in group["teams"]]
                    lists += 1
                    empty += not best
                    agree += _agree([(t_, float(e)) for t_, e in ours],
                                    [(t_, round(e, 1)) for t_, e in best])
    finally:
        engine.dispose()
    ours_t = _timing("recommend (KNN shortlist + in-memory Dijkstra)", ours_ms,
                     f"graph version {graph.version}")
    exact_t = _timing("baseline: exact pgRouting from every eligible team in reach", exact_ms,
                      f"reach {reach_m / 1000:.0f} km = budget × top speed")
    lines = [f"recommendation p95 speed-up over the exact baseline: "
             f"{exact_t.p95 / ours_t.p95:.1f}× (p50 {exact_t.p50 / ours_t.p50:.1f}×)",
             f"top-{TOP} lists agreeing with the exact ranking: {agree} of {lists} "
             f"({empty} with no eligible team within the budget)" if lists else "no lists compared",
             f"road graph load (once per process): {load_s:.2f} s"]
    return [ours_t, exact_t], lines
