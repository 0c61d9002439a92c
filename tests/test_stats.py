"""Evaluation (考核) on a small hand-built world: every indicator per department, team, street,
grid and event class equals the numbers worked out by hand below; empty denominators give
null; the composite score with the default and another rating weight; CSV equals JSON;
scope; ratings and follow-ups; bad input as 422 naming the field.

The world (all times Beijing, window March 2025 = [2025-03-01, 2025-04-01)):

  districts 东城 110101, 西城 110102; streets S1 110101001 东华门街道, S2 110101002 景山街道
  (东城), S3 110102001 西长安街街道 (西城); grid G1 110101001001001 东华门1号网格 (a grids
  row), G2 110101001001002 (code only, no grids row).
  classes E1 event:0101 暴露垃圾, E2 event:0402 无照经营.
  departments A DC-CG 东城区城管执法局 (teams A1, A2), B DC-SJ 东城区市场监管局 (team B1),
  C XC-CG 西城区城管执法局 (team C1), D DC-YL 东城区园林绿化局 (no team).

  I1 S1 G1 E1 closed. accept; feedback 03-02 10:00 ≤ handle 03-03 10:00 (on time);
     closed 03-02 15:00 ≤ verify 03-03 18:00 (on time). d1 A1 on scene after 1200 s.
     follow-up: responded, resolved, satisfied.
  I2 S1 G1 E1 closed. accept; extend handle 03-04 08:00 (old 03-05 10:00 → new 03-06 10:00);
     feedback 03-05 12:00; rework 03-05 14:00; feedback 03-06 09:00 (latest; in force then:
     03-06 10:00 → on time); closed 03-06 12:00 ≤ verify 03-06 18:00 (on time).
     d2 A2 on scene after 3000 s (> 1800: late); d3 B1 out of remit, cancelled before arrival.
     follow-up: responded, not resolved, basically satisfied.
  I3 S2 no grid E2 handling. accept; feedback 03-12 10:00; rework 03-12 15:00; extend handle
     03-13 (old 03-11 10:00 → new 03-20 10:00 = the current deadline): in force at the
     feedback was 03-11 10:00 → late. d4 A1 on a whistle requiring 3600 s, on scene after
     3000 s (on time), still on scene. no follow-up.
  I4 S2 E1 pending (12345, not accepted).   I5 S2 E2 void (rejected).
  I6 S1 G2 E1 registered at intake (grid_worker, no accept event). d5 B1 declined (a missed
     报到); d9 A2 en route since 5 minutes ago (not yet due: 1800 s allowed).
  I7 S3 E1 closed (西城). feedback 03-15 12:00 ≤ handle 03-16 10:00 (on time); closed
     03-17 10:00 > verify 03-16 18:00 (late). d7 C1 on scene after 600 s.
     follow-up: responded, resolved, dissatisfied.
  I8 reported 2025-02-28 23:59 and I9 reported 2025-04-01 00:00: outside the window (I8 has
     a dispatch to A1 and a follow-up, which must not count).

  ratings (period → score): A from S1 2025-03 → 80, from S2 2025-03 → 90 (mean 85), from S1
  2025-02 → 10 and 2025-04 → 0 (outside); C from S3 2025-03 → 70; D from S2 2025-03 → 60;
  B none.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import auth, stats, users
from gis.audit import Actor
from gis.auth import Principal
from tests.auth_world import PASSWORD, session_for, token

S1, S2, S3 = "110101001", "110101002", "110102001"
C1 = "110101001001"
G1, G2 = "110101001001001", "110101001001002"
WINDOW = {"from": "2025-03-01", "to": "2025-04-01"}


def _square(x: float, y: float, size: float) -> str:
    return (f"MULTIPOLYGON((({x} {y},{x + size} {y},{x + size} {y + size},{x} {y + size},"
            f"{x} {y})))")


@dataclass
class World:
    incidents: dict[str, int] = field(default_factory=dict)
    departments: dict[str, int] = field(default_factory=dict)
    teams: dict[str, int] = field(default_factory=dict)


def _incident(conn: Connection, key: str, *, district: str, street: str, cls: int,
              status: str, reported: str, source: str = "12345", community: str | None = None,
              grid: str | None = None, deadlines: dict[str, str] | None = None,
              closed: str | None = None) -> int:
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, description, geom, status,
                               district_code, street_code, community_code, grid_code,
                               reported_at, deadlines, closed_at)
        VALUES (:source, :cls, :key, ST_SetSRID(ST_MakePoint(116.40, 39.90), 4326), :status,
                :district, :street, :community, :grid, :reported, CAST(:deadlines AS jsonb),
                :closed)
        RETURNING id"""), {
        "source": source, "cls": cls, "key": key, "status": status, "district": district,
        "street": street, "community": community, "grid": grid, "reported": reported,
        "deadlines": json.dumps(deadlines or {}), "closed": closed}))


def _events(conn: Connection, incident_id: int, district: str,
            *events: tuple[str, str] | tuple[str, str, dict[str, Any]]) -> None:
    for ev in events:
        conn.execute(text("""
            INSERT INTO case_events (incident_id, at, action, data, district_code)
            VALUES (:i, :at, :action, CAST(:data AS jsonb), :district)"""), {
            "i": incident_id, "action": ev[0], "at": ev[1],
            "data": json.dumps(ev[2] if len(ev) > 2 else {}), "district": district})


def _dispatch(conn: Connection, incident_id: int, team_id: int, at: str | datetime, *,
              status: str = "done", on_scene_s: int | None = None, whistle: int | None = None,
              out_of_remit: bool = False, end: str | datetime | None = None,
              en_route: datetime | None = None) -> int:
    """A dispatch; `on_scene_s` seconds after `at` on scene; `end` = done/declined/cancelled
    time per `status`."""
    return int(conn.scalar(text("""
        INSERT INTO dispatches (incident_id, team_id, whistle_id, status, dispatched_at,
                                on_scene_at, done_at, declined_at, cancelled_at, en_route_at,
                                out_of_remit, district_code)
        VALUES (:i, :t, :w, :status, :at,
                CAST(:at AS timestamptz) + CAST(:on_scene_s AS integer) * interval '1 second',
                CASE WHEN :status = 'done' THEN coalesce(CAST(:end AS timestamptz),
                     CAST(:at AS timestamptz) + interval '2 hours') END,
                CASE WHEN :status = 'declined' THEN CAST(:end AS timestamptz) END,
                CASE WHEN :status = 'cancelled' THEN CAST(:end AS timestamptz) END,
                :en_route, :oor, '110101')
        RETURNING id"""), {
        "i": incident_id, "t": team_id, "w": whistle, "status": status, "at": at,
        "on_scene_s": on_scene_s, "end": end, "en_route": en_route, "oor": out_of_remit}))


def _followup(conn: Connection, incident_id: int, responded: bool, resolved: bool,
              satisfaction: str) -> None:
    conn.execute(text("""
        INSERT INTO incident_followups (incident_id, responded, resolved, satisfaction)
        VALUES (:i, :a, :b, :s)"""), {"i": incident_id, "a": responded, "b": resolved,
                                      "s": satisfaction})


def build(engine: Engine) -> World:
    """The world of the module docstring."""
    w = World()
    with engine.begin() as conn:
        for level, code, name, x, size in (
                ("district", "110101", "东城区", 116.40, 0.05),
                ("district", "110102", "西城区", 116.34, 0.05),
                ("street", S1, "东华门街道", 116.40, 0.02),
                ("street", S2, "景山街道", 116.42, 0.02),
                ("street", S3, "西长安街街道", 116.34, 0.02),
                ("community", C1, "东华门社区", 116.40, 0.01)):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                              "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                         {"l": level, "c": code, "n": name, "g": _square(x, 39.87, size)})
        conn.execute(text("INSERT INTO grids (code, name, geom) "
                          "VALUES (:c, '东华门1号网格', ST_GeomFromText(:g, 4326))"),
                     {"c": G1, "g": _square(116.40, 39.87, 0.005)})
        e1, e2 = conn.scalars(text("""
            INSERT INTO event_classes (kind, code, major_name, name) VALUES
              ('event', '0101', '市容环境', '暴露垃圾'), ('event', '0402', '街面秩序', '无照经营')
            RETURNING id""")).all()
        for code, name, dtype in (("DC-CG", "东城区城管执法局", "chengguan"),
                                  ("DC-SJ", "东城区市场监管局", "market"),
                                  ("XC-CG", "西城区城管执法局", "chengguan"),
                                  ("DC-YL", "东城区园林绿化局", "landscaping")):
            w.departments[code] = int(conn.scalar(text(
                "INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code) "
                "VALUES (:c, :n, :t, 'core', :j) RETURNING id"),
                {"c": code, "n": name, "t": dtype, "j": "110102" if code[:2] == "XC" else
                 "110101"}))
        for code, name, dept in (("A1", "城管一队", "DC-CG"), ("A2", "城管二队", "DC-CG"),
                                 ("B1", "市场监管一队", "DC-SJ"), ("C1", "西城城管一队", "XC-CG")):
            w.teams[code] = int(conn.scalar(text(
                "INSERT INTO teams (code, name, department_id, home_code) "
                "VALUES (:c, :n, :d, '110101') RETURNING id"),
                {"c": code, "n": name, "d": w.departments[dept]}))
        t, dc = w.teams, "110101"
        inc = w.incidents
        inc["I1"] = i = _incident(
            conn, "I1", district=dc, street=S1, community=C1, grid=G1, cls=e1, status="closed",
            reported="2025-03-01 10:00+08", closed="2025-03-02 15:00+08",
            deadlines={"handle": "2025-03-03T10:00:00+08:00",
                       "verify": "2025-03-03T18:00:00+08:00"})
        _events(conn, i, dc, ("report", "2025-03-01 10:00+08"),
                ("accept", "2025-03-01 10:30+08"), ("dispatch", "2025-03-01 11:00+08"),
                ("start", "2025-03-01 12:00+08"), ("feedback", "2025-03-02 10:00+08"),
                ("verify", "2025-03-02 11:00+08"), ("close", "2025-03-02 15:00+08"))
        _dispatch(conn, i, t["A1"], "2025-03-01 11:00+08", on_scene_s=1200)
        _followup(conn, i, True, True, "satisfied")

        inc["I2"] = i = _incident(
            conn, "I2", district=dc, street=S1, community=C1, grid=G1, cls=e1, status="closed",
            reported="2025-03-03 09:00+08", closed="2025-03-06 12:00+08",
            deadlines={"handle": "2025-03-06T10:00:00+08:00",
                       "verify": "2025-03-06T18:00:00+08:00"})
        _events(conn, i, dc, ("report", "2025-03-03 09:00+08"),
                ("accept", "2025-03-03 09:30+08"), ("dispatch", "2025-03-04 09:00+08"),
                ("extend", "2025-03-04 08:00+08",
                 {"stage": "handle", "old": "2025-03-05T10:00:00+08:00",
                  "new": "2025-03-06T10:00:00+08:00"}),
                ("feedback", "2025-03-05 12:00+08"), ("verify", "2025-03-05 13:00+08"),
                ("rework", "2025-03-05 14:00+08"), ("feedback", "2025-03-06 09:00+08"),
                ("verify", "2025-03-06 10:00+08"), ("close", "2025-03-06 12:00+08"))
        _dispatch(conn, i, t["A2"], "2025-03-04 09:00+08", on_scene_s=3000)
        _dispatch(conn, i, t["B1"], "2025-03-04 09:00+08", status="cancelled",
                  out_of_remit=True, end="2025-03-04 09:30+08")
        _followup(conn, i, True, False, "basically_satisfied")

        inc["I3"] = i = _incident(
            conn, "I3", district=dc, street=S2, cls=e2, status="handling",
            reported="2025-03-10 09:00+08",
            deadlines={"handle": "2025-03-20T10:00:00+08:00",
                       "verify": "2025-03-21T10:00:00+08:00"})
        whistle = conn.scalar(text(
            "INSERT INTO whistles (incident_id, kind, blown_at, required_arrival_s, "
            "district_code) VALUES (:i, 'enforcement', '2025-03-11 08:00+08', 3600, :d) "
            "RETURNING id"), {"i": i, "d": dc})
        _events(conn, i, dc, ("report", "2025-03-10 09:00+08"),
                ("accept", "2025-03-10 09:30+08"), ("dispatch", "2025-03-11 08:00+08"),
                ("feedback", "2025-03-12 10:00+08"), ("rework", "2025-03-12 15:00+08"),
                ("extend", "2025-03-13 09:00+08",
                 {"stage": "handle", "old": "2025-03-11T10:00:00+08:00",
                  "new": "2025-03-20T10:00:00+08:00"}))
        _dispatch(conn, i, t["A1"], "2025-03-11 08:00+08", status="on_scene", on_scene_s=3000,
                  whistle=whistle)

        inc["I4"] = i = _incident(conn, "I4", district=dc, street=S2, cls=e1, status="pending",
                                  reported="2025-03-12 09:00+08")
        _events(conn, i, dc, ("report", "2025-03-12 09:00+08"))
        inc["I5"] = i = _incident(conn, "I5", district=dc, street=S2, cls=e2, status="void",
                                  reported="2025-03-13 09:00+08")
        _events(conn, i, dc, ("report", "2025-03-13 09:00+08"),
                ("reject", "2025-03-13 10:00+08"))

        inc["I6"] = i = _incident(
            conn, "I6", district=dc, street=S1, community=C1, grid=G2, cls=e1,
            status="registered", source="grid_worker", reported="2025-03-20 09:00+08")
        _events(conn, i, dc, ("report", "2025-03-20 09:00+08"))
        _dispatch(conn, i, t["B1"], "2025-03-20 10:00+08", status="declined",
                  end="2025-03-20 10:05+08")
        now = datetime.now(UTC)
        _dispatch(conn, i, t["A2"], now - timedelta(minutes=5), status="en_route",
                  en_route=now - timedelta(minutes=3))

        inc["I7"] = i = _incident(
            conn, "I7", district="110102", street=S3, cls=e1, status="closed",
            reported="2025-03-15 09:00+08", closed="2025-03-17 10:00+08",
            deadlines={"handle": "2025-03-16T10:00:00+08:00",
                       "verify": "2025-03-16T18:00:00+08:00"})
        _events(conn, i, "110102", ("report", "2025-03-15 09:00+08"),
                ("accept", "2025-03-15 09:10+08"), ("feedback", "2025-03-15 12:00+08"),
                ("close", "2025-03-17 10:00+08"))
        _dispatch(conn, i, t["C1"], "2025-03-15 10:00+08", on_scene_s=600)
        _followup(conn, i, True, True, "dissatisfied")

        inc["I8"] = i = _incident(
            conn, "I8", district=dc, street=S1, community=C1, grid=G1, cls=e1, status="closed",
            reported="2025-02-28 23:59+08", closed="2025-03-01 09:00+08")
        _events(conn, i, dc, ("report", "2025-02-28 23:59+08"),
                ("feedback", "2025-03-01 08:00+08"), ("close", "2025-03-01 09:00+08"))
        _dispatch(conn, i, t["A1"], "2025-03-01 00:10+08", on_scene_s=100,
                  end="2025-03-01 00:30+08")
        _followup(conn, i, False, False, "dissatisfied")
        inc["I9"] = _incident(conn, "I9", district=dc, street=S1, cls=e1, status="pending",
                              reported="2025-04-01 00:00+08")

        d = w.departments
        for dept, street, period, score in (
                ("DC-CG", S1, "2025-03-01", 80), ("DC-CG", S2, "2025-03-01", 90),
                ("DC-CG", S1, "2025-02-01", 10), ("DC-CG", S1, "2025-04-01", 0),
                ("XC-CG", S3, "2025-03-01", 70), ("DC-YL", S2, "2025-03-01", 60)):
            conn.execute(text("INSERT INTO department_ratings (department_id, street_code, "
                              "period, score) VALUES (:d, :s, :p, :score)"),
                         {"d": d[dept], "s": street, "p": period, "score": score})
    return w


def _add_users(engine: Engine, w: World) -> None:
    with engine.begin() as conn:
        for username, roles, scope, department in (
                ("admin", ["admin"], [], None),
                ("op_dc", ["operator"], ["110101"], None),
                ("op_xc", ["operator"], ["110102"], None),
                ("op_s1", ["operator"], [S1], None),
                ("planner", ["planner"], [], None),
                ("viewer", ["viewer"], ["110101"], None),
                ("disp_b", ["dispatcher"], [], "DC-SJ")):
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, department_code=department, by=Actor("test"))


@pytest.fixture
def world(engine: Engine) -> World:
    return build(engine)


@pytest.fixture
def client(engine: Engine, world: World, settings: Settings) -> Iterator[TestClient]:
    _add_users(engine, world)
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        yield c


def bearer(client: TestClient, username: str) -> dict[str, str]:
    """Authorization headers for `username` (one sign-in per client and user)."""
    tokens: dict[str, str] = client.__dict__.setdefault("_stats_tokens", {})
    if username not in tokens:
        tokens[username] = token(client, username)
    return {"Authorization": f"Bearer {tokens[username]}"}


def principal(engine: Engine, username: str) -> Principal:
    with engine.begin() as conn:
        found = auth.principal_for(conn, session_for(conn, username))
    assert found is not None
    return found


def check(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected value equals the row's (floats to 1e-9)."""
    for key, value in expected.items():
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, abs=1e-9), (row.get("key"), key)
        else:
            assert row[key] == value, (row.get("key"), key, row[key])


def by_key(rows: list[dict[str, Any]]) -> dict[str | None, dict[str, Any]]:
    return {row["key"]: row for row in rows}


NULL_FOLLOWUPS = {"followups": 0, "responded": 0, "response_rate": None, "resolved": 0,
                  "resolution_rate": None, "satisfied": 0, "satisfaction_rate": None}

# -- by department --------------------------------------------------------------------------
# A (DC-CG): incidents through d1 (I1), d2 (I2), d4 (I3), d9 (I6).
DEPT_A = {
    "reported": 4, "registered": 4, "dispatched": 4,  # I1 I2 I3 accepted, I6 grid_worker
    "closed": 2, "closure_rate": 0.5,  # I1 I2 of 4 registered
    "handled": 3, "handled_on_time": 2, "on_time_handle_rate": 2 / 3,  # I1 I2 on time, I3 late
    "closed_on_time": 2, "on_time_close_rate": 1.0,  # I1 I2 closed before verify
    "reworked": 2, "rework_rate": 2 / 3,  # I2 I3 of 3 handled
    "extended": 2, "extension_rate": 0.5,  # I2 I3 of 4 registered
    "dispatches": 4, "accurate_dispatches": 4, "accurate_dispatch_rate": 1.0,  # d1 d2 d4 d9
    "arrivals_due": 3, "arrived_on_time": 2, "arrival_rate": 2 / 3,  # d1 d4 of d1 d2 d4
    "median_arrival_s": 3000.0,  # median(1200, 3000, 3000)
    "followups": 2, "responded": 2, "response_rate": 1.0,  # I1 I2
    "resolved": 1, "resolution_rate": 0.5, "satisfied": 2, "satisfaction_rate": 1.0,
    "ratings": 2, "rating": 85.0,  # (80 + 90) / 2; Feb and Apr ratings outside
    "performance": 250 / 3,  # 100 × (2/3 + 1 + 1 + 2/3) / 4 = 83.333…
    "score": 0.7 * 250 / 3 + 0.3 * 85,  # 58.333… + 25.5 = 83.8333…
}
# B (DC-SJ): I2 (d3, out of remit, cancelled before arrival), I6 (d5, declined).
DEPT_B = {
    "reported": 2, "registered": 2, "dispatched": 2, "closed": 1, "closure_rate": 0.5,
    "handled": 1, "handled_on_time": 1, "on_time_handle_rate": 1.0,  # I2
    "closed_on_time": 1, "on_time_close_rate": 1.0,
    "reworked": 1, "rework_rate": 1.0, "extended": 1, "extension_rate": 0.5,  # I2 of I2 I6
    "dispatches": 2, "accurate_dispatches": 1, "accurate_dispatch_rate": 0.5,  # d3 out of remit
    "arrivals_due": 1, "arrived_on_time": 0, "arrival_rate": 0.0,  # d5 only (d3 cancelled)
    "median_arrival_s": None,  # nobody arrived
    "followups": 1, "responded": 1, "response_rate": 1.0,  # I2
    "resolved": 0, "resolution_rate": 0.0, "satisfied": 1, "satisfaction_rate": 1.0,
    "ratings": 0, "rating": None,
    "performance": 62.5,  # 100 × (1 + 1 + 0.5 + 0) / 4
    "score": 62.5,  # no rating: score = performance
}
# C (XC-CG): I7 (d7).
DEPT_C = {
    "reported": 1, "registered": 1, "dispatched": 1, "closed": 1, "closure_rate": 1.0,
    "handled": 1, "handled_on_time": 1, "on_time_handle_rate": 1.0,
    "closed_on_time": 0, "on_time_close_rate": 0.0,  # closed 03-17 after verify 03-16 18:00
    "reworked": 0, "rework_rate": 0.0, "extended": 0, "extension_rate": 0.0,
    "dispatches": 1, "accurate_dispatches": 1, "accurate_dispatch_rate": 1.0,
    "arrivals_due": 1, "arrived_on_time": 1, "arrival_rate": 1.0, "median_arrival_s": 600.0,
    "followups": 1, "responded": 1, "response_rate": 1.0, "resolved": 1,
    "resolution_rate": 1.0, "satisfied": 0, "satisfaction_rate": 0.0,  # dissatisfied
    "ratings": 1, "rating": 70.0,
    "performance": 75.0,  # 100 × (1 + 0 + 1 + 1) / 4
    "score": 73.5,  # 0.7 × 75 + 0.3 × 70 = 52.5 + 21
}
# D (DC-YL): no incident, one rating (60) — every rate null, score = the rating.
DEPT_D = {
    "reported": 0, "registered": 0, "dispatched": 0, "closed": 0, "closure_rate": None,
    "handled": 0, "on_time_handle_rate": None, "on_time_close_rate": None,
    "rework_rate": None, "extension_rate": None, "dispatches": 0,
    "accurate_dispatch_rate": None, "arrivals_due": 0, "arrival_rate": None,
    "median_arrival_s": None, **NULL_FOLLOWUPS,
    "ratings": 1, "rating": 60.0, "performance": None, "score": 60.0,
}


def test_by_department(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        rows = stats.stats(conn, _admin(engine), "department",
                           datetime.fromisoformat("2025-03-01"),  # naive = Beijing
                           datetime.fromisoformat("2025-04-01"))
    got = by_key(rows)
    assert list(got) == ["DC-CG", "DC-SJ", "DC-YL", "XC-CG"]
    assert tuple(rows[0]) == stats.columns("department")
    check(got["DC-CG"], {"id": world.departments["DC-CG"], "name": "东城区城管执法局", **DEPT_A})
    check(got["DC-SJ"], DEPT_B)
    check(got["XC-CG"], DEPT_C)
    check(got["DC-YL"], DEPT_D)


def _admin(engine: Engine) -> Principal:
    with engine.begin() as conn:
        if not conn.scalar(text("SELECT 1 FROM users WHERE username = 'stats_admin'")):
            users.add_user(conn, username="stats_admin", password=PASSWORD, roles=["admin"],
                           by=Actor("test"))
    return principal(engine, "stats_admin")


def test_the_rating_weight_moves_the_score(engine: Engine, world: World) -> None:
    reader = _admin(engine)
    with engine.connect() as conn:
        def scores(weight: float) -> dict[str | None, Any]:
            rows = stats.stats(conn, reader, "department", datetime(2025, 3, 1),
                               datetime(2025, 4, 1), weight=weight)
            return {row["key"]: row["score"] for row in rows}

        half = scores(0.5)
        assert half["DC-CG"] == pytest.approx(0.5 * 250 / 3 + 0.5 * 85)  # 84.1666…
        assert half["XC-CG"] == pytest.approx(72.5)  # 0.5 × 75 + 0.5 × 70
        assert half["DC-SJ"] == pytest.approx(62.5)  # no rating: performance alone
        assert half["DC-YL"] == pytest.approx(60.0)  # no performance: rating alone
        zero = scores(0.0)
        assert zero["DC-CG"] == pytest.approx(250 / 3)  # performance only
        assert scores(1.0)["DC-CG"] == pytest.approx(85.0)  # rating only
        with pytest.raises(stats.InvalidInput) as err:
            scores(1.5)
        assert err.value.field == "weight"


def test_by_team(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        rows = stats.stats(conn, _admin(engine), "team", datetime(2025, 3, 1),
                           datetime(2025, 4, 1))
    got = by_key(rows)
    assert list(got) == ["A1", "A2", "B1", "C1"]
    assert "score" not in rows[0]
    # A1: d1 (I1), d4 (I3).
    check(got["A1"], {
        "id": world.teams["A1"], "name": "城管一队", "department_id": world.departments["DC-CG"],
        "reported": 2, "registered": 2, "dispatched": 2, "closed": 1, "closure_rate": 0.5,
        "handled": 2, "handled_on_time": 1, "on_time_handle_rate": 0.5,  # I1 yes, I3 no
        "closed_on_time": 1, "on_time_close_rate": 1.0,
        "reworked": 1, "rework_rate": 0.5, "extended": 1, "extension_rate": 0.5,  # I3
        "dispatches": 2, "accurate_dispatches": 2, "accurate_dispatch_rate": 1.0,
        "arrivals_due": 2, "arrived_on_time": 2, "arrival_rate": 1.0,  # 1200 ≤ 1800, 3000 ≤ 3600
        "median_arrival_s": 2100.0,  # (1200 + 3000) / 2
        "followups": 1, "responded": 1, "response_rate": 1.0, "resolved": 1,
        "resolution_rate": 1.0, "satisfied": 1, "satisfaction_rate": 1.0})
    # A2: d2 (I2), d9 (I6, under way, not yet due).
    check(got["A2"], {
        "reported": 2, "registered": 2, "dispatched": 2, "closed": 1, "closure_rate": 0.5,
        "handled": 1, "handled_on_time": 1, "on_time_handle_rate": 1.0,
        "closed_on_time": 1, "on_time_close_rate": 1.0,
        "reworked": 1, "rework_rate": 1.0, "extended": 1, "extension_rate": 0.5,
        "dispatches": 2, "accurate_dispatches": 2, "accurate_dispatch_rate": 1.0,
        "arrivals_due": 1, "arrived_on_time": 0, "arrival_rate": 0.0,  # d2: 3000 > 1800
        "median_arrival_s": 3000.0,
        "followups": 1, "responded": 1, "response_rate": 1.0, "resolved": 0,
        "resolution_rate": 0.0, "satisfied": 1, "satisfaction_rate": 1.0})
    check(got["B1"], {k: v for k, v in DEPT_B.items()
                      if k not in stats.SCORE_COLUMNS})  # B's only team
    check(got["C1"], {k: v for k, v in DEPT_C.items() if k not in stats.SCORE_COLUMNS})


def test_by_street(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        rows = stats.stats(conn, _admin(engine), "street", datetime(2025, 3, 1),
                           datetime(2025, 4, 1))
    got = by_key(rows)
    assert list(got) == [S1, S2, S3]
    assert tuple(rows[0]) == stats.columns("street")
    # S1: I1, I2, I6; dispatches d1 d2 d3 d5 d9.
    check(got[S1], {
        "name": "东华门街道",
        "reported": 3, "registered": 3, "dispatched": 3, "closed": 2, "closure_rate": 2 / 3,
        "handled": 2, "handled_on_time": 2, "on_time_handle_rate": 1.0,
        "closed_on_time": 2, "on_time_close_rate": 1.0,
        "reworked": 1, "rework_rate": 0.5, "extended": 1, "extension_rate": 1 / 3,  # I2
        "dispatches": 5, "accurate_dispatches": 4, "accurate_dispatch_rate": 0.8,  # d3
        "arrivals_due": 3, "arrived_on_time": 1, "arrival_rate": 1 / 3,  # d1 of d1 d2 d5
        "median_arrival_s": 2100.0,  # median(1200, 3000)
        "followups": 2, "responded": 2, "response_rate": 1.0, "resolved": 1,
        "resolution_rate": 0.5, "satisfied": 2, "satisfaction_rate": 1.0})
    # S2: I3 (handling), I4 (pending), I5 (void); dispatch d4.
    check(got[S2], {
        "name": "景山街道",
        "reported": 3, "registered": 1, "dispatched": 1, "closed": 0, "closure_rate": 0.0,
        "handled": 1, "handled_on_time": 0, "on_time_handle_rate": 0.0,  # late by 03-11 10:00
        "closed_on_time": 0, "on_time_close_rate": None,  # nothing closed
        "reworked": 1, "rework_rate": 1.0, "extended": 1, "extension_rate": 1.0,
        "dispatches": 1, "accurate_dispatches": 1, "accurate_dispatch_rate": 1.0,
        "arrivals_due": 1, "arrived_on_time": 1, "arrival_rate": 1.0,
        "median_arrival_s": 3000.0, **NULL_FOLLOWUPS})
    check(got[S3], {"name": "西长安街街道",
                    **{k: v for k, v in DEPT_C.items() if k not in stats.SCORE_COLUMNS}})


def test_by_grid(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        rows = stats.stats(conn, _admin(engine), "grid", datetime(2025, 3, 1),
                           datetime(2025, 4, 1))
    assert [row["key"] for row in rows] == [G1, G2, None]  # no grid last
    g1, g2, none = rows
    # G1: I1, I2; dispatches d1 d2 d3.
    check(g1, {
        "name": "东华门1号网格",
        "reported": 2, "registered": 2, "dispatched": 2, "closed": 2, "closure_rate": 1.0,
        "handled": 2, "handled_on_time": 2, "on_time_handle_rate": 1.0,
        "closed_on_time": 2, "on_time_close_rate": 1.0,
        "reworked": 1, "rework_rate": 0.5, "extended": 1, "extension_rate": 0.5,
        "dispatches": 3, "accurate_dispatches": 2, "accurate_dispatch_rate": 2 / 3,
        "arrivals_due": 2, "arrived_on_time": 1, "arrival_rate": 0.5,  # d1 of d1 d2
        "median_arrival_s": 2100.0,
        "followups": 2, "responded": 2, "response_rate": 1.0, "resolved": 1,
        "resolution_rate": 0.5, "satisfied": 2, "satisfaction_rate": 1.0})
    # G2 (no grids row, so no name): I6; dispatches d5 (declined), d9 (not yet due).
    check(g2, {
        "name": None,
        "reported": 1, "registered": 1, "dispatched": 1, "closed": 0, "closure_rate": 0.0,
        "handled": 0, "handled_on_time": 0, "on_time_handle_rate": None,
        "closed_on_time": 0, "on_time_close_rate": None,
        "reworked": 0, "rework_rate": None, "extended": 0, "extension_rate": 0.0,
        "dispatches": 2, "accurate_dispatches": 2, "accurate_dispatch_rate": 1.0,
        "arrivals_due": 1, "arrived_on_time": 0, "arrival_rate": 0.0,
        "median_arrival_s": None, **NULL_FOLLOWUPS})
    # No grid: I3, I4, I5, I7; dispatches d4, d7.
    check(none, {
        "name": None,
        "reported": 4, "registered": 2, "dispatched": 2, "closed": 1, "closure_rate": 0.5,
        "handled": 2, "handled_on_time": 1, "on_time_handle_rate": 0.5,  # I7 yes, I3 no
        "closed_on_time": 0, "on_time_close_rate": 0.0,  # I7 late
        "reworked": 1, "rework_rate": 0.5, "extended": 1, "extension_rate": 0.5,  # I3
        "dispatches": 2, "accurate_dispatches": 2, "accurate_dispatch_rate": 1.0,
        "arrivals_due": 2, "arrived_on_time": 2, "arrival_rate": 1.0,
        "median_arrival_s": 1800.0,  # (3000 + 600) / 2
        "followups": 1, "responded": 1, "response_rate": 1.0, "resolved": 1,
        "resolution_rate": 1.0, "satisfied": 0, "satisfaction_rate": 0.0})


def test_by_event_class(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        rows = stats.stats(conn, _admin(engine), "event_class", datetime(2025, 3, 1),
                           datetime(2025, 4, 1))
    got = by_key(rows)
    assert list(got) == ["event:0101", "event:0402"]
    # E1: I1 I2 I4 I6 I7; dispatches d1 d2 d3 d5 d7 d9.
    check(got["event:0101"], {
        "kind": "event", "code": "0101", "name": "暴露垃圾",
        "reported": 5, "registered": 4, "dispatched": 4,  # I4 pending
        "closed": 3, "closure_rate": 0.75,  # I1 I2 I7 of 4
        "handled": 3, "handled_on_time": 3, "on_time_handle_rate": 1.0,
        "closed_on_time": 2, "on_time_close_rate": 2 / 3,  # I7 late
        "reworked": 1, "rework_rate": 1 / 3, "extended": 1, "extension_rate": 0.25,  # I2
        "dispatches": 6, "accurate_dispatches": 5, "accurate_dispatch_rate": 5 / 6,
        "arrivals_due": 4, "arrived_on_time": 2, "arrival_rate": 0.5,  # d1 d7 of d1 d2 d5 d7
        "median_arrival_s": 1200.0,  # median(600, 1200, 3000)
        "followups": 3, "responded": 3, "response_rate": 1.0,
        "resolved": 2, "resolution_rate": 2 / 3, "satisfied": 2, "satisfaction_rate": 2 / 3})
    # E2: I3, I5 (void); dispatch d4.
    check(got["event:0402"], {
        "kind": "event", "code": "0402", "name": "无照经营",
        "reported": 2, "registered": 1, "dispatched": 1, "closed": 0, "closure_rate": 0.0,
        "handled": 1, "handled_on_time": 0, "on_time_handle_rate": 0.0,
        "closed_on_time": 0, "on_time_close_rate": None,
        "reworked": 1, "rework_rate": 1.0, "extended": 1, "extension_rate": 1.0,
        "dispatches": 1, "accurate_dispatches": 1, "accurate_dispatch_rate": 1.0,
        "arrivals_due": 1, "arrived_on_time": 1, "arrival_rate": 1.0,
        "median_arrival_s": 3000.0, **NULL_FOLLOWUPS})


def test_an_empty_window_has_no_rows(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        for by in stats.GROUP_BYS:
            assert stats.stats(conn, _admin(engine), by, datetime(2024, 1, 1),
                               datetime(2024, 2, 1)) == []


# -- HTTP ------------------------------------------------------------------------------------


def test_http_json_and_csv_agree(client: TestClient) -> None:
    headers = bearer(client, "planner")
    for by in stats.GROUP_BYS:
        response = client.get("/api/v1/stats", params={"by": by, **WINDOW}, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["columns"] == list(stats.columns(by))
        as_csv = client.get("/api/v1/stats", params={"by": by, "format": "csv", **WINDOW},
                            headers=headers)
        assert as_csv.status_code == 200
        assert as_csv.headers["content-type"].startswith("text/csv")
        assert "attachment" in as_csv.headers["content-disposition"]
        assert as_csv.content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
        reader = csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig")))
        header, *lines = list(reader)
        assert header == body["columns"]
        assert len(lines) == len(body["rows"])
        for line, row in zip(lines, body["rows"], strict=True):
            for name, cell in zip(header, line, strict=True):
                value = row[name]
                if value is None:
                    assert cell == ""
                elif isinstance(value, (int, float)):
                    assert float(cell) == pytest.approx(value)
                else:
                    assert cell == value
    department = client.get("/api/v1/stats", params={"by": "department", **WINDOW},
                            headers=headers).json()
    assert department["reverse_rating_weight"] == 0.3
    check(by_key(department["rows"])["DC-CG"], DEPT_A)
    text_csv = client.get("/api/v1/stats", params={"by": "street", "format": "csv", **WINDOW},
                          headers=headers).content.decode("utf-8-sig")
    assert "东华门街道" in text_csv


def test_http_weight_comes_from_settings(engine: Engine, world: World,
                                         settings: Settings) -> None:
    _add_users(engine, world)
    heavier = settings.model_copy(update={"reverse_rating_weight": 0.5})
    with TestClient(create_app(heavier), base_url="https://testserver") as client:
        body = client.get("/api/v1/stats", params={"by": "department", **WINDOW},
                          headers=bearer(client, "admin")).json()
    assert body["reverse_rating_weight"] == 0.5
    scores = {row["key"]: row["score"] for row in body["rows"]}
    assert scores["DC-CG"] == pytest.approx(0.5 * 250 / 3 + 0.5 * 85)
    assert scores["XC-CG"] == pytest.approx(72.5)


def test_scope_a_dongcheng_operator_sees_dongcheng_only(client: TestClient) -> None:
    headers = bearer(client, "op_dc")
    streets = client.get("/api/v1/stats", params={"by": "street", **WINDOW},
                         headers=headers).json()["rows"]
    assert [row["key"] for row in streets] == [S1, S2]  # no 西城 street
    departments = by_key(client.get("/api/v1/stats", params={"by": "department", **WINDOW},
                                    headers=headers).json()["rows"])
    # XC-CG's only case (I7) and rating (S3) are in 西城; D's rating is from 景山 (东城).
    assert list(departments) == ["DC-CG", "DC-SJ", "DC-YL"]
    check(departments["DC-CG"], DEPT_A)  # all of A's cases and ratings are in 东城
    classes = by_key(client.get("/api/v1/stats", params={"by": "event_class", **WINDOW},
                                headers=headers).json()["rows"])
    assert classes["event:0101"]["reported"] == 4  # I1 I2 I4 I6, not I7
    # A street-scoped operator: only 东华门 (S1), and only its ratings (A: 80).
    s1 = client.get("/api/v1/stats", params={"by": "department", **WINDOW},
                    headers=bearer(client, "op_s1")).json()["rows"]
    a = by_key(s1)["DC-CG"]
    assert (a["reported"], a["rating"]) == (3, 80.0)  # I1 I2 I6
    # The district filter narrows an admin's view the same way.
    western = client.get("/api/v1/stats", params={"by": "street", "district": "110102",
                                                  **WINDOW}, headers=bearer(client, "admin"))
    assert [row["key"] for row in western.json()["rows"]] == [S3]


BAD_QUERIES = [
    ({"by": "district"}, "by"),
    ({"from": "March"}, "from"),
    ({"from": ""}, "from"),
    ({"to": "2025-13-01"}, "to"),
    ({"from": "2025-04-01", "to": "2025-04-01"}, "to"),
    ({"from": "2025-05-01", "to": "2025-04-01"}, "to"),
    ({"from": "2024-01-01", "to": "2025-04-01"}, "to"),  # 456 days > 366
    ({"district": "1101"}, "district"),
    ({"format": "xlsx"}, "format"),
]


def test_http_bad_input_names_the_field(client: TestClient) -> None:
    headers = bearer(client, "viewer")
    for params, field_name in BAD_QUERIES:
        response = client.get("/api/v1/stats", params={"by": "street", **WINDOW, **params},
                              headers=headers)
        assert response.status_code == 422, (params, response.text)
        assert field_name in [entry["field"] for entry in response.json()["detail"]], params
    missing = client.get("/api/v1/stats", params={"by": "street"}, headers=headers)
    assert missing.status_code == 422
    assert {"from", "to"} <= {entry["field"] for entry in missing.json()["detail"]}
    for odd in ({"from": "0001-01-01", "to": "0001-12-31"},
                {"from": "9999-01-01", "to": "9999-12-31T23:59:59"},
                {"from": "2025-03-01T00:00:00-12:00", "to": "2025-03-03T00:00+14:00"}):
        assert client.get("/api/v1/stats", params={"by": "grid", **odd},
                          headers=headers).status_code == 200, odd  # empty, never a 500
    admin = bearer(client, "admin")
    huge = 2**63
    assert client.get(f"/api/v1/departments/{huge}/ratings",
                      headers=admin).status_code in (404, 422)
    assert client.post(f"/api/v1/incidents/{huge}/followup", headers=admin, json={
        "responded": True, "resolved": True, "satisfaction": "satisfied"}).status_code in (
        404, 422)
    with pytest.raises(stats.InvalidInput) as err:  # the domain checks too
        stats.check_window(datetime(2025, 4, 1), datetime(2025, 3, 1))
    assert err.value.field == "to"


def test_http_stats_roles(client: TestClient) -> None:
    query = {"by": "street", **WINDOW}
    assert client.get("/api/v1/stats", params=query).status_code == 401
    assert client.get("/api/v1/stats", params=query,
                      headers=bearer(client, "disp_b")).status_code == 403
    for user in ("admin", "op_dc", "planner", "viewer"):
        assert client.get("/api/v1/stats", params=query,
                          headers=bearer(client, user)).status_code == 200


def _audit(engine: Engine, action: str) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT actor, object_id, before, after, district_code "
                                      "FROM audit_log WHERE action = :a ORDER BY id"),
                                 {"a": action}))


def test_rating_a_department(client: TestClient, engine: Engine, world: World) -> None:
    dept = world.departments["DC-SJ"]
    url = f"/api/v1/departments/{dept}/ratings"
    op = bearer(client, "op_dc")
    first = client.post(url, json={"street_code": S1, "period": "2025-03", "score": 50,
                                   "comment": "报到慢"}, headers=op)
    assert first.status_code == 201, first.text
    assert first.json()["period"] == "2025-03"
    again = client.post(url, json={"street_code": S1, "period": "2025-03", "score": 65},
                        headers=op)
    assert again.status_code == 200  # one rating per (department, street, month): replaced
    assert (again.json()["id"], again.json()["score"]) == (first.json()["id"], 65.0)
    trail = _audit(engine, "department.rate")
    assert [(row.actor, row.district_code) for row in trail] == [("op_dc", "110101")] * 2
    assert trail[0].before is None and trail[1].before["score"] == 50.0
    # The rating now feeds B's score: 0.7 × 62.5 + 0.3 × 65 = 43.75 + 19.5.
    rows = by_key(client.get("/api/v1/stats", params={"by": "department", **WINDOW},
                             headers=op).json()["rows"])
    assert rows["DC-SJ"]["score"] == pytest.approx(63.25)
    # Who may rate which street.
    for user, body, code, fld in (
            ("op_dc", {"street_code": S3}, 403, "street_code"),  # 西城 street
            ("op_s1", {"street_code": S2}, 403, "street_code"),  # another street
            ("viewer", {"street_code": S1}, 403, "role"),
            ("op_dc", {"street_code": "110101999"}, 422, "street_code"),  # no such street
            ("op_dc", {"period": "2025-13"}, 422, "period"),
            ("op_dc", {"period": "2999-01"}, 422, "period"),  # future
            ("op_dc", {"period": "0000-01"}, 422, "period"),
            ("op_dc", {"comment": "a\x00b"}, 422, "comment"),
            ("op_dc", {"score": 101}, 422, "score"),
            ("op_dc", {"score": -1}, 422, "score")):
        payload = {"street_code": S1, "period": "2025-03", "score": 70, **body}
        response = client.post(url, json=payload, headers=bearer(client, user))
        assert response.status_code == code, (user, body, response.text)
        assert fld in [entry["field"] for entry in response.json()["detail"]]
    assert client.post(f"/api/v1/departments/{dept}/ratings", json={
        "street_code": S1, "period": "2025-03", "score": 70},
        headers=bearer(client, "op_s1")).status_code == 200  # its own street
    assert client.post("/api/v1/departments/999999/ratings", json={
        "street_code": S1, "period": "2025-03", "score": 70}, headers=op).status_code == 404


def test_listing_ratings_follows_scope(client: TestClient, world: World) -> None:
    a = world.departments["DC-CG"]
    admin = client.get(f"/api/v1/departments/{a}/ratings", headers=bearer(client, "admin"))
    assert admin.status_code == 200
    body = admin.json()
    assert body["department"]["code"] == "DC-CG"
    assert [(r["period"], r["street_code"], r["score"]) for r in body["ratings"]] == [
        ("2025-04", S1, 0.0), ("2025-03", S1, 80.0), ("2025-03", S2, 90.0),
        ("2025-02", S1, 10.0)]
    assert body["average"] == pytest.approx(45.0)  # (0 + 80 + 90 + 10) / 4
    c = world.departments["XC-CG"]
    assert client.get(f"/api/v1/departments/{c}/ratings",
                      headers=bearer(client, "op_dc")).json()["ratings"] == []  # 西城 rating
    s1 = client.get(f"/api/v1/departments/{a}/ratings", headers=bearer(client, "op_s1"))
    assert {r["street_code"] for r in s1.json()["ratings"]} == {S1}
    # A dispatcher reads their own department's ratings only.
    b = world.departments["DC-SJ"]
    assert client.get(f"/api/v1/departments/{b}/ratings",
                      headers=bearer(client, "disp_b")).status_code == 200
    assert client.get(f"/api/v1/departments/{a}/ratings",
                      headers=bearer(client, "disp_b")).status_code == 404
    assert client.get("/api/v1/departments/999999/ratings",
                      headers=bearer(client, "admin")).status_code == 404


def test_recording_a_followup(client: TestClient, engine: Engine, world: World) -> None:
    i1, i3, i7 = (world.incidents[k] for k in ("I1", "I3", "I7"))
    op = bearer(client, "op_dc")
    replaced = client.post(f"/api/v1/incidents/{i1}/followup", headers=op, json={
        "responded": True, "resolved": False, "satisfaction": "dissatisfied", "note": "复发"})
    assert replaced.status_code == 200, replaced.text  # I1 had a follow-up: replaced
    assert replaced.json()["satisfaction"] == "dissatisfied"
    trail = _audit(engine, "incident.followup")
    assert len(trail) == 1 and trail[0].object_id == str(i1)
    assert trail[0].before["satisfaction"] == "satisfied"
    # The rates follow: S1 now has I1 (responded, unresolved, dissatisfied) and I2
    # (responded, unresolved, basically satisfied).
    s1 = by_key(client.get("/api/v1/stats", params={"by": "street", **WINDOW},
                           headers=op).json()["rows"])[S1]
    check(s1, {"followups": 2, "response_rate": 1.0, "resolution_rate": 0.0,
               "satisfaction_rate": 0.5})
    # A 西城 operator records I7's; a new follow-up answers 201.
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incident_followups WHERE incident_id = :i"), {"i": i7})
    created = client.post(f"/api/v1/incidents/{i7}/followup", headers=bearer(client, "op_xc"),
                          json={"responded": True, "resolved": True,
                                "satisfaction": "satisfied"})
    assert created.status_code == 201, created.text
    body = {"responded": True, "resolved": True, "satisfaction": "satisfied"}
    assert client.post(f"/api/v1/incidents/{i3}/followup", headers=op,
                       json=body).status_code == 409  # still handling
    assert client.post(f"/api/v1/incidents/{i7}/followup", headers=op,
                       json=body).status_code == 404  # 西城: outside 东城's scope
    assert client.post("/api/v1/incidents/999999/followup", headers=op,
                       json=body).status_code == 404
    assert client.post(f"/api/v1/incidents/{i1}/followup", headers=bearer(client, "viewer"),
                       json=body).status_code == 403
    bad = client.post(f"/api/v1/incidents/{i1}/followup", headers=op,
                      json={**body, "satisfaction": "happy"})
    assert bad.status_code == 422
    assert "satisfaction" in [entry["field"] for entry in bad.json()["detail"]]
