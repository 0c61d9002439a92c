"""The boundary dispute report (边界争议报告).

On the demo city (shared, read-only): the 广安门外 (110102020) / 太平桥 (110106002) report holds
the 1/3–2/3 building 跨界综合楼(合成) with its shares and households per side, a shared boundary
whose length PostGIS confirms, and exactly the incidents and straddling buildings that plain
(unindexed) SQL finds; the 西城/丰台 district border is ~8.9 km.

On a crafted world, measured in EPSG:4548 metres from an origin near 116.35 E 39.87 N:

    A = 110102020: x ∈ [-1000, 0] plus a bump x ∈ [0, 10], y ∈ [200, 300] into B (overlap
        1000 m²);
    B = 110106002: x ∈ [0, 1000], with a notch x ∈ [0, 5], y ∈ [600, 700] (a gap of
        500 m² between them); an older version of B (2000–2026) had no notch;
    y ∈ [0, 1000] for both: the shared boundary is x = 0 without the bump and the notch,
    200 + 300 + 300 = 800 m.

Buildings, incidents, dispatches and a joint whistle are placed so that every number below
is worked out by hand. Then the API (formats, errors naming their field, roles) and the CLI.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app as cli
from api.settings import Settings
from gis import users
from gis.audit import Actor
from gis.boundary_report import ReportRules, boundary_report
from gis.boundary_report_html import BUILDING_COLUMNS, INCIDENT_COLUMNS, report_html
from gis.democity.city import STRADDLER_NAME
from gis.errors import InvalidInput, NotFound
from tests.auth_world import PASSWORD, bearer

BJ = ZoneInfo("Asia/Shanghai")
GUANGWAI, TAIPINGQIAO = "110102020", "110106002"
XICHENG, FENGTAI, DONGCHENG = "110102", "110106", "110101"
SRID = 4548
# A script or stylesheet the page would fetch (the report inlines them all).
EXTERNAL = re.compile(r"<script[^>]*\ssrc=|<link[^>]*\shref=", re.IGNORECASE)


def report(engine: Engine, **kwargs: Any) -> dict[str, Any]:
    with engine.connect() as conn:
        return boundary_report(conn, **kwargs)


# -- the demo city ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city_report(city: Engine) -> dict[str, Any]:
    return report(city, a=GUANGWAI, b=TAIPINGQIAO)


def test_the_straddling_building_is_one_third_guangwai_two_thirds_taipingqiao(
        city_report: dict[str, Any], city: Engine) -> None:
    with city.connect() as conn:
        building_id = conn.scalar(text("SELECT id FROM buildings WHERE name = :n"),
                                  {"n": STRADDLER_NAME})
    row = next(r for r in city_report["buildings"] if r["id"] == building_id)
    assert row["households"] == 24
    assert row["share_a"] == pytest.approx(1 / 3, abs=0.01)
    assert row["share_b"] == pytest.approx(2 / 3, abs=0.01)
    assert round(row["households_a"]) == 8
    assert round(row["households_b"]) == 16
    assert row["area_m2"] == pytest.approx(2000, rel=0.01)
    assert (row["rule"], row["assigned_side"], row["assigned_code"]) == (
        "majority_share", "b", TAIPINGQIAO)
    assert row["stored_side"] == "b" and row["matches_grid_code"] is True
    assert row["stored_share_a"] == pytest.approx(1 / 3, abs=0.01)
    assert row["matches_stored_shares"] is True
    assert city_report["assignment_rule"]["name"] == "majority_share"


def test_the_report_states_its_data_date_crs_and_tolerances(
        city_report: dict[str, Any]) -> None:
    assert city_report["a"]["code"] == GUANGWAI and city_report["a"]["name"] == "广安门外街道"
    assert city_report["b"]["code"] == TAIPINGQIAO and city_report["b"]["name"] == "太平桥街道"
    assert city_report["crs"] == {"storage": "EPSG:4326", "metric": "EPSG:4548"}
    tolerances = city_report["tolerances"]
    assert (tolerances["snap_m"], tolerances["area_tolerance_m2"], tolerances["buffer_m"]) == (
        0.01, 1.0, 100.0)
    assert isinstance(city_report["at"], datetime)
    assert city_report["generated_at"] is not None
    assert [v["in_force"] for v in city_report["versions"]["a"]] == [True]


def test_shared_boundary_length_is_the_length_postgis_gives_the_intersection(
        city_report: dict[str, Any], city: Engine) -> None:
    with city.connect() as conn:
        expected = conn.scalar(text("""
            SELECT ST_Length(ST_Intersection(ST_Boundary(ST_Transform(a.geom, 4548)),
                                             ST_Boundary(ST_Transform(b.geom, 4548)), 0.01))
            FROM jurisdictions a, jurisdictions b
            WHERE a.code = :a AND b.code = :b AND a.valid_to IS NULL AND b.valid_to IS NULL
        """), {"a": GUANGWAI, "b": TAIPINGQIAO})
    length = city_report["shared_boundary"]["length_m"]
    assert length > 0
    assert length == pytest.approx(expected, abs=0.01)
    assert city_report["summary"]["shared_length_m"] == length
    assert city_report["shared_boundary"]["geometry"]["type"] in ("LineString",
                                                                  "MultiLineString")


def test_the_xicheng_fengtai_border_is_about_8_9_km(city: Engine) -> None:
    districts = report(city, a=XICHENG, b=FENGTAI)
    assert districts["shared_boundary"]["length_m"] == pytest.approx(8900, rel=0.10)
    assert districts["a"]["level"] == districts["b"]["level"] == "district"


def test_incidents_listed_are_exactly_those_within_the_buffer(
        city_report: dict[str, Any], city: Engine) -> None:
    with city.connect() as conn:
        expected = set(conn.scalars(text("""
            WITH line AS (
              SELECT ST_Intersection(ST_Boundary(ST_Transform(a.geom, 4548)),
                                     ST_Boundary(ST_Transform(b.geom, 4548)), 0.01) AS l
              FROM jurisdictions a, jurisdictions b
              WHERE a.code = :a AND b.code = :b AND a.valid_to IS NULL AND b.valid_to IS NULL)
            SELECT i.id FROM incidents i, line
            WHERE ST_DWithin(ST_Transform(i.geom, 4548), line.l, 100)
        """), {"a": GUANGWAI, "b": TAIPINGQIAO}))
    items = city_report["incidents"]["items"]
    assert expected and {i["id"] for i in items} == expected
    assert all(i["distance_m"] <= 100 for i in items)
    by_side = city_report["incidents"]["by_side"]
    assert sum(row["incidents"] for row in by_side.values()) == len(items)
    assert sum(c["total"] for c in city_report["incidents"]["by_class_month"]) == len(items)
    assert all(c["major_name"] and c["name"] for c in city_report["incidents"]["by_class_month"])


def test_straddling_buildings_are_exactly_those_with_a_part_on_each_side(
        city_report: dict[str, Any], city: Engine) -> None:
    with city.connect() as conn:
        expected = set(conn.scalars(text("""
            SELECT bd.id FROM buildings bd, jurisdictions a, jurisdictions b
            WHERE a.code = :a AND b.code = :b AND a.valid_to IS NULL AND b.valid_to IS NULL
              AND ST_Intersects(bd.geom, a.geom) AND ST_Intersects(bd.geom, b.geom)
              AND ST_Area(ST_Intersection(ST_Transform(bd.geom, 4548),
                                          ST_Transform(a.geom, 4548))) > 1
              AND ST_Area(ST_Intersection(ST_Transform(bd.geom, 4548),
                                          ST_Transform(b.geom, 4548))) > 1
        """), {"a": GUANGWAI, "b": TAIPINGQIAO}))
    assert expected and {b["id"] for b in city_report["buildings"]} == expected


def test_a_building_report_takes_the_street_offices_it_straddles(city: Engine) -> None:
    with city.connect() as conn:
        building_id = conn.scalar(text("SELECT id FROM buildings WHERE name = :n"),
                                  {"n": STRADDLER_NAME})
    by_building = report(city, building=building_id)
    assert (by_building["a"]["code"], by_building["b"]["code"]) == (GUANGWAI, TAIPINGQIAO)
    assert by_building["subject"]["kind"] == "building"
    assert by_building["subject"]["level"] == "street"
    assert by_building["subject"]["building"]["share_b"] == pytest.approx(2 / 3, abs=0.01)
    districts = report(city, building=building_id, level="district")
    assert (districts["a"]["code"], districts["b"]["code"]) == (XICHENG, FENGTAI)


def test_an_incident_report_takes_its_street_office_and_the_nearest_other(
        city_report: dict[str, Any], city: Engine) -> None:
    nearest = city_report["incidents"]["items"][0]
    by_incident = report(city, incident=nearest["id"])
    with city.connect() as conn:
        expected = list(conn.scalars(text("""
            SELECT j.code FROM jurisdictions j, incidents i
            WHERE i.id = :id AND j.level = 'street' AND j.valid_to IS NULL
            ORDER BY ST_Distance(ST_Transform(j.geom, 4548), ST_Transform(i.geom, 4548)), j.code
            LIMIT 2"""), {"id": nearest["id"]}))
    assert sorted(expected) == [by_incident["a"]["code"], by_incident["b"]["code"]]
    assert by_incident["subject"]["incident"]["id"] == nearest["id"]


# -- a crafted world ---------------------------------------------------------------------------

X0, Y0 = 444400.0, 4415300.0  # EPSG:4548, near 116.35 E 39.87 N


def ring(*points: tuple[float, float]) -> str:
    """A metric polygon (EPSG:4548 WKT) from local points (closed here)."""
    coords = ", ".join(f"{X0 + x} {Y0 + y}" for x, y in (*points, points[0]))
    return f"POLYGON(({coords}))"


def box(x0: float, y0: float, x1: float, y1: float) -> str:
    return ring((x0, y0), (x1, y0), (x1, y1), (x0, y1))


A_RING = ring((-1000, 0), (0, 0), (0, 200), (10, 200), (10, 300), (0, 300), (0, 1000),
              (-1000, 1000))
B_RING = ring((0, 0), (1000, 0), (1000, 1000), (0, 1000), (0, 700), (5, 700), (5, 600),
              (0, 600))
B_OLD = box(0, 0, 1000, 1000)
SWITCH = "2026-01-01T00:00:00+08:00"  # B's notch appeared then


def bj(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=BJ)


@dataclass
class World:
    buildings: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    departments: dict[str, int] = field(default_factory=dict)
    teams: dict[str, int] = field(default_factory=dict)
    whistle_id: int = 0


def _area(conn: Connection, level: str, code: str, name: str, wkt: str,
          valid_from: str = "2000-01-01T00:00:00+08:00", valid_to: str | None = None) -> None:
    conn.execute(text("""
        INSERT INTO jurisdictions (level, code, name, geom, valid_from, valid_to)
        VALUES (:level, :code, :name, ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326)),
                :vf, :vt)"""),
                 {"level": level, "code": code, "name": name, "wkt": wkt, "vf": valid_from,
                  "vt": valid_to})


def _building(conn: Connection, name: str, wkt: str, households: int,
              grid_code: str | None) -> int:
    return int(conn.scalar(text("""
        INSERT INTO buildings (name, district_code, grid_code, households, geom)
        VALUES (:name, left(coalesce(:grid, '110102'), 6), :grid, :hh,
                ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326)))
        RETURNING id"""), {"name": name, "grid": grid_code, "hh": households, "wkt": wkt}))


def _incident(conn: Connection, x: float, y: float, class_code: str, reported: str,
              district: str, street: str, status: str = "registered",
              closed: str | None = None) -> int:
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, geom, reported_at, status, closed_at,
                               district_code, street_code)
        VALUES ('12345', (SELECT id FROM event_classes WHERE code = :cls),
                ST_Transform(ST_SetSRID(ST_MakePoint(:x, :y), 4548), 4326), :rep, :status,
                :closed, :district, :street)
        RETURNING id"""),
        {"cls": class_code, "x": X0 + x, "y": Y0 + y, "rep": bj(reported), "status": status,
         "closed": bj(closed) if closed else None, "district": district, "street": street}))


def _dispatch(conn: Connection, incident: int, team: int, district: str, dispatched: str,
              on_scene: str, whistle: int | None = None) -> None:
    conn.execute(text("""
        INSERT INTO dispatches (incident_id, whistle_id, team_id, status, dispatched_at,
                                on_scene_at, done_at, district_code)
        VALUES (:i, :w, :t, 'done', :d, :s, :s, :district)"""),
                 {"i": incident, "w": whistle, "t": team, "d": bj(dispatched),
                  "s": bj(on_scene), "district": district})


def build_world(engine: Engine) -> World:
    world = World()
    with engine.begin() as conn:
        _area(conn, "district", XICHENG, "西城区", box(-1000, 0, 0, 1000))
        _area(conn, "district", FENGTAI, "丰台区", box(0, 0, 1000, 1000))
        _area(conn, "district", DONGCHENG, "东城区", box(3000, 0, 4000, 1000))
        _area(conn, "street", GUANGWAI, "广安门外街道", A_RING)
        _area(conn, "street", TAIPINGQIAO, "太平桥街道(旧)", B_OLD, valid_to=SWITCH)
        _area(conn, "street", TAIPINGQIAO, "太平桥街道", B_RING, valid_from=SWITCH)
        b = world.buildings
        b["straddler"] = _building(conn, "跨界楼", box(-10, 100, 20, 120), 30,
                                   "110102020001001")
        b["in_overlap"] = _building(conn, "重叠楼", box(2, 220, 8, 240), 10, None)
        b["over_gap"] = _building(conn, "跨缝楼", box(-10, 640, 20, 660), 20,
                                  "110106002001001")
        b["inside_a"] = _building(conn, "西侧楼", box(-30, 400, -5, 420), 40,
                                  "110102020001001")
        for level, code, share in (("street", GUANGWAI, 1 / 3), ("street", TAIPINGQIAO, 2 / 3)):
            conn.execute(text("INSERT INTO building_shares (building_id, level, code, share) "
                              "VALUES (:b, :level, :code, :share)"),
                         {"b": b["straddler"], "level": level, "code": code, "share": share})
        conn.execute(text("""
            INSERT INTO event_classes (kind, code, major_name, name) VALUES
              ('event', '0101', '市容环境', '暴露垃圾'),
              ('event', '0501', '街面秩序', '无照经营游商')
        """))
        for code, name, juris in (("XC-CG", "西城区城管执法局", XICHENG),
                                  ("FT-CG", "丰台区城管执法局", FENGTAI)):
            world.departments[code] = int(conn.scalar(text(
                "INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code) "
                "VALUES (:c, :n, 'chengguan', 'core', :j) RETURNING id"),
                {"c": code, "n": name, "j": juris}))
        for code, dept, home in (("XC-CG-1", "XC-CG", XICHENG), ("XC-CG-2", "XC-CG", XICHENG),
                                 ("FT-CG-1", "FT-CG", FENGTAI)):
            world.teams[code] = int(conn.scalar(text(
                "INSERT INTO teams (code, name, department_id, home_code) "
                "VALUES (:c, :c, :d, :h) RETURNING id"),
                {"c": code, "d": world.departments[dept], "h": home}))
        i = world.incidents
        i["a"] = _incident(conn, -50, 500, "0101", "2026-10-05T09:00", XICHENG, GUANGWAI,
                           "closed", "2026-10-07T09:00")
        _dispatch(conn, i["a"], world.teams["XC-CG-2"], XICHENG, "2026-10-05T09:05",
                  "2026-10-05T09:20")
        i["b"] = _incident(conn, 50, 150, "0501", "2026-11-03T10:00", FENGTAI, TAIPINGQIAO,
                           "dispatched")
        world.whistle_id = int(conn.scalar(text("""
            INSERT INTO whistles (incident_id, kind, blown_at, required_arrival_s,
                                  jurisdiction_codes, district_code)
            VALUES (:i, 'joint', :at, 1800, ARRAY[:a, :b], :d) RETURNING id"""),
            {"i": i["b"], "at": bj("2026-11-03T10:10"), "a": GUANGWAI, "b": TAIPINGQIAO,
             "d": FENGTAI}))
        for dept, juris in (("XC-CG", GUANGWAI), ("FT-CG", TAIPINGQIAO)):
            conn.execute(text("INSERT INTO whistle_summons (whistle_id, department_id, "
                              "jurisdiction_code) VALUES (:w, :d, :j)"),
                         {"w": world.whistle_id, "d": world.departments[dept], "j": juris})
        _dispatch(conn, i["b"], world.teams["XC-CG-1"], FENGTAI, "2026-11-03T10:10",
                  "2026-11-03T10:30", world.whistle_id)
        _dispatch(conn, i["b"], world.teams["FT-CG-1"], FENGTAI, "2026-11-03T10:10",
                  "2026-11-03T10:55", world.whistle_id)
        i["far"] = _incident(conn, 500, 500, "0101", "2026-11-04T10:00", FENGTAI, TAIPINGQIAO)
        i["gap"] = _incident(conn, 2.5, 650, "0101", "2026-11-05T10:00", FENGTAI, TAIPINGQIAO)
        i["overlap"] = _incident(conn, 5, 250, "0501", "2026-11-06T10:00", FENGTAI,
                                 TAIPINGQIAO)
    return world


@pytest.fixture
def world(engine: Engine) -> World:
    return build_world(engine)


def test_overlaps_gaps_and_the_shared_line(engine: Engine, world: World) -> None:
    r = report(engine, a=GUANGWAI, b=TAIPINGQIAO)
    assert r["shared_boundary"]["length_m"] == pytest.approx(800, abs=0.05)
    assert [p["area_m2"] for p in r["overlaps"]] == [pytest.approx(1000, rel=1e-3)]
    assert [p["area_m2"] for p in r["gaps"]] == [pytest.approx(500, rel=1e-3)]
    assert r["gaps"][0]["max_width_m"] == pytest.approx(5, abs=0.05)
    assert r["overlaps"][0]["geometry"]["type"] == "Polygon"
    summary = r["summary"]
    assert (summary["overlaps"], summary["gaps"]) == (1, 1)
    assert r["distance_m"] == 0
    # a tolerance above both hides them
    big = report(engine, a=GUANGWAI, b=TAIPINGQIAO, rules=ReportRules(area_tolerance_m2=1500))
    assert big["overlaps"] == big["gaps"] == []


def test_building_shares_households_and_assignment(engine: Engine, world: World) -> None:
    r = report(engine, a=GUANGWAI, b=TAIPINGQIAO)
    rows = {row["id"]: row for row in r["buildings"]}
    assert set(rows) == {world.buildings[k] for k in ("straddler", "in_overlap", "over_gap")}
    s = rows[world.buildings["straddler"]]
    assert (s["share_a"], s["share_b"]) == (pytest.approx(1 / 3, abs=1e-6),
                                           pytest.approx(2 / 3, abs=1e-6))
    assert (s["households_a"], s["households_b"]) == (pytest.approx(10), pytest.approx(20))
    assert (s["assigned_side"], s["assigned_code"]) == ("b", TAIPINGQIAO)
    # stored in a grid of A: the majority rule disagrees; the stored shares agree
    assert (s["stored_side"], s["matches_grid_code"]) == ("a", False)
    assert s["matches_stored_shares"] is True
    # wholly inside the overlap: 100 % on each side, a tie, settled by its point on surface
    o = rows[world.buildings["in_overlap"]]
    assert (o["share_a"], o["share_b"], o["assigned_side"]) == (1.0, 1.0, "a")
    assert o["matches_grid_code"] is None and o["matches_stored_shares"] is None
    # across the gap: 1/3 in A, 1/6 in the gap, 1/2 in B
    g = rows[world.buildings["over_gap"]]
    assert g["share_a"] == pytest.approx(1 / 3, abs=1e-6)
    assert g["share_b"] == pytest.approx(1 / 2, abs=1e-6)
    assert (g["assigned_side"], g["matches_grid_code"]) == ("b", True)
    assert r["summary"]["buildings_disagreeing"] == 1


def test_incidents_by_side_class_month_and_response_times(engine: Engine,
                                                          world: World) -> None:
    r = report(engine, a=GUANGWAI, b=TAIPINGQIAO)
    inc = world.incidents
    items = {row["id"]: row for row in r["incidents"]["items"]}
    assert set(items) == {inc["a"], inc["b"], inc["gap"], inc["overlap"]}  # not the far one
    assert {k: items[inc[k]]["side"] for k in ("a", "b", "gap", "overlap")} == {
        "a": "a", "b": "b", "gap": "none", "overlap": "both"}
    assert items[inc["a"]]["distance_m"] == pytest.approx(50, abs=0.01)
    by_side = r["incidents"]["by_side"]
    assert (by_side["a"]["incidents"], by_side["a"]["closed"]) == (1, 1)
    assert by_side["a"]["median_response_s"] == 20 * 60  # report → first on scene
    assert by_side["a"]["median_close_s"] == 2 * 86400
    assert by_side["a"]["arrival_rate"] == 1.0  # dispatched 09:05, on scene 09:20
    assert by_side["b"]["median_response_s"] == 30 * 60  # the first of the two teams
    assert by_side["b"]["median_close_s"] is None
    assert (by_side["b"]["dispatches"], by_side["b"]["arrived_on_time"]) == (2, 1)
    assert by_side["b"]["median_arrival_s"] == pytest.approx((20 + 45) / 2 * 60)
    months = {(c["month"], c["code"]): c for c in r["incidents"]["by_class_month"]}
    assert set(months) == {("2026-10", "0101"), ("2026-11", "0501"), ("2026-11", "0101")}
    assert (months[("2026-11", "0501")]["b"], months[("2026-11", "0501")]["both"]) == (1, 1)
    assert months[("2026-11", "0501")]["major_name"] == "街面秩序"
    assert months[("2026-11", "0101")]["none"] == 1
    narrow = report(engine, a=GUANGWAI, b=TAIPINGQIAO, rules=ReportRules(buffer_m=10))
    assert {row["id"] for row in narrow["incidents"]["items"]} == {inc["gap"], inc["overlap"]}


def test_joint_whistle_on_the_stretch_with_arrival_per_department(engine: Engine,
                                                                  world: World) -> None:
    r = report(engine, a=GUANGWAI, b=TAIPINGQIAO)
    [whistle] = r["whistles"]
    assert (whistle["id"], whistle["kind"], whistle["kind_name"], whistle["side"]) == (
        world.whistle_id, "joint", "联合哨", "b")
    arrivals = {s["department"]: (round(s["minutes"]), s["met"]) for s in whistle["summoned"]}
    assert arrivals == {"西城区城管执法局": (20, True), "丰台区城管执法局": (45, False)}
    assert (r["summary"]["joint_whistles"], r["summary"]["summons_met"],
            r["summary"]["summons"]) == (1, 1, 2)


def test_versions_in_force_follow_at(engine: Engine, world: World) -> None:
    now = report(engine, a=GUANGWAI, b=TAIPINGQIAO)
    versions = now["versions"]["b"]
    assert [v["in_force"] for v in versions] == [False, True]
    assert versions[0]["valid_to"] == versions[1]["valid_from"]
    assert versions[0]["changed_m2"] == pytest.approx(500, rel=1e-3)  # the notch
    before = report(engine, a=GUANGWAI, b=TAIPINGQIAO, at=bj("2025-06-01T00:00"))
    assert before["b"]["name"] == "太平桥街道(旧)"
    assert [v["in_force"] for v in before["versions"]["b"]] == [True, False]
    assert before["gaps"] == [] and len(before["overlaps"]) == 1
    assert before["incidents"]["items"] == [] and before["whistles"] == []
    assert before["shared_boundary"]["length_m"] == pytest.approx(900, abs=0.05)


def test_building_and_incident_reports_find_their_two_sides(engine: Engine,
                                                            world: World) -> None:
    by_building = report(engine, building=world.buildings["straddler"])
    assert (by_building["a"]["code"], by_building["b"]["code"]) == (GUANGWAI, TAIPINGQIAO)
    assert by_building["subject"]["building"]["households_b"] == pytest.approx(20)
    by_district = report(engine, building=world.buildings["straddler"], level="district")
    assert (by_district["a"]["code"], by_district["b"]["code"]) == (XICHENG, FENGTAI)
    by_incident = report(engine, incident=world.incidents["a"])
    assert (by_incident["a"]["code"], by_incident["b"]["code"]) == (GUANGWAI, TAIPINGQIAO)
    assert by_incident["subject"]["incident"]["side"] == "a"
    # an incident further from the line than the buffer is still the report's subject
    far = report(engine, incident=world.incidents["far"])
    assert (far["a"]["code"], far["b"]["code"]) == (GUANGWAI, TAIPINGQIAO)
    assert far["subject"]["incident"]["distance_m"] == pytest.approx(500, abs=0.01)
    assert world.incidents["far"] not in {i["id"] for i in far["incidents"]["items"]}
    page = report_html(far)
    assert "争议事件" in page and str(world.incidents["far"]) in page


@pytest.mark.parametrize(("kwargs", "error", "field"), [
    ({}, InvalidInput, "a"),
    ({"a": GUANGWAI}, InvalidInput, "b"),
    ({"a": "11010", "b": TAIPINGQIAO}, InvalidInput, "a"),
    ({"a": GUANGWAI, "b": GUANGWAI}, InvalidInput, "b"),
    ({"a": XICHENG, "b": GUANGWAI}, InvalidInput, "b"),  # one inside the other
    ({"a": "110102999", "b": TAIPINGQIAO}, NotFound, "a"),
    ({"a": GUANGWAI, "b": "110106002001"}, NotFound, "b"),
    ({"a": GUANGWAI, "b": TAIPINGQIAO, "building": 1}, InvalidInput, "a"),
    ({"building": 999999}, NotFound, "building"),
    ({"incident": 999999}, NotFound, "incident"),
    ({"a": GUANGWAI, "b": TAIPINGQIAO, "level": "street"}, InvalidInput, "level"),
    ({"a": GUANGWAI, "b": TAIPINGQIAO, "rules": ReportRules(buffer_m=0)}, InvalidInput,
     "buffer_m"),
])
def test_bad_requests_name_their_field(engine: Engine, world: World, kwargs: dict[str, Any],
                                       error: type[Exception], field: str) -> None:
    with pytest.raises(error) as caught:
        report(engine, **kwargs)
    assert getattr(caught.value, "field", None) == field


def test_areas_that_do_not_touch_are_refused_with_their_distance(engine: Engine,
                                                                 world: World) -> None:
    with pytest.raises(InvalidInput, match=r"do not touch or overlap: they are 2,000\.0 m "
                                           r"apart") as caught:
        report(engine, a=DONGCHENG, b=FENGTAI)
    assert caught.value.field == "b"
    with pytest.raises(InvalidInput, match="straddles no boundary") as straddle:
        report(engine, building=world.buildings["inside_a"])
    assert straddle.value.field == "building"


# -- the API -----------------------------------------------------------------------------------

ROLE_USERS: dict[str, tuple[list[str], list[str], dict[str, Any]]] = {
    # username: (roles, scope, extra)
    "br_admin": (["admin"], [], {}),
    "br_viewer": (["viewer"], [], {}),
    "br_op_both": (["operator"], [XICHENG, FENGTAI], {}),
    "br_op_xicheng": (["operator"], [XICHENG], {}),
    "br_planner_streets": (["planner"], [GUANGWAI, TAIPINGQIAO], {}),
    "br_dispatcher": (["dispatcher"], [], {"department_code": "XC-CG"}),
    "br_chief": (["street_chief"], [], {"person": True}),
}


@pytest.fixture
def client(world: World, engine: Engine, settings: Settings) -> Iterator[TestClient]:
    with engine.begin() as conn:
        person = int(conn.scalar(text("INSERT INTO people (name, district_code) "
                                      "VALUES ('李四', '110102') RETURNING id")))
        for username, (roles, scope, extra) in ROLE_USERS.items():
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, by=Actor("test"),
                           department_code=extra.get("department_code"),
                           person_id=person if extra.get("person") else None)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


URL = "/api/v1/reports/boundary"
PAIR = {"a": GUANGWAI, "b": TAIPINGQIAO}


def test_api_json_html_geojson_and_csv(client: TestClient, world: World) -> None:
    headers = bearer(client, "br_admin")
    body = client.get(URL, params=PAIR, headers=headers).json()
    assert body["shared_boundary"]["length_m"] == pytest.approx(800, abs=0.05)
    assert body["tolerances"]["buffer_m"] == 100.0
    page = client.get(URL, params={**PAIR, "format": "html"}, headers=headers)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "边界争议报告" in page.text and "leaflet" in page.text.lower()
    assert not EXTERNAL.search(page.text)
    geo = client.get(URL, params={**PAIR, "format": "geojson", "buffer_m": 10},
                     headers=headers)
    assert geo.headers["content-type"].startswith("application/geo+json")
    layers = [f["properties"]["layer"] for f in geo.json()["features"]]
    assert layers.count("incident") == 2 and layers.count("building") == 3
    assert {"area", "shared_boundary", "overlap", "gap"} <= set(layers)
    incidents_csv = client.get(URL, params={**PAIR, "format": "csv", "table": "incidents"},
                               headers=headers)
    assert incidents_csv.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(incidents_csv.content.decode("utf-8-sig"))))
    assert len(rows) == 4 and tuple(rows[0]) == INCIDENT_COLUMNS
    by_building = client.get(URL, params={"building": world.buildings["straddler"]},
                             headers=headers).json()
    assert by_building["subject"]["building"]["assigned_code"] == TAIPINGQIAO


@pytest.mark.parametrize(("params", "status", "field"), [
    ({}, 422, "a"),
    ({"a": GUANGWAI}, 422, "b"),
    ({"b": TAIPINGQIAO}, 422, "a"),
    ({"a": "abc", "b": TAIPINGQIAO}, 422, "a"),
    ({"a": GUANGWAI, "b": GUANGWAI}, 422, "b"),
    ({"a": "110102999", "b": TAIPINGQIAO}, 404, "a"),
    ({"a": DONGCHENG, "b": FENGTAI}, 422, "b"),
    ({**PAIR, "at": "yesterday"}, 422, "at"),
    ({**PAIR, "at": "1990-01-01"}, 404, "a"),
    ({**PAIR, "buffer_m": "0"}, 422, "buffer_m"),
    ({**PAIR, "buffer_m": "wide"}, 422, "buffer_m"),
    ({**PAIR, "format": "pdf"}, 422, "format"),
    ({**PAIR, "building": "1"}, 422, "a"),
    ({"building": "0"}, 422, "building"),
    ({"building": "999999"}, 404, "building"),
    ({"incident": "999999"}, 404, "incident"),
    ({"incident": "1", "level": "block"}, 422, "level"),
])
def test_api_errors_name_the_field(client: TestClient, params: dict[str, str], status: int,
                                   field: str) -> None:
    response = client.get(URL, params=params, headers=bearer(client, "br_admin"))
    assert response.status_code == status, response.text
    [detail] = response.json()["detail"]
    assert detail["field"] == field
    assert field in detail["msg"] or status == 404


def test_api_distance_is_in_the_message(client: TestClient) -> None:
    response = client.get(URL, params={"a": DONGCHENG, "b": FENGTAI},
                          headers=bearer(client, "br_admin"))
    assert "2,000.0 m apart" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize(("username", "params", "status"), [
    ("br_admin", PAIR, 200),
    ("br_viewer", PAIR, 200),
    ("br_op_both", PAIR, 200),
    ("br_op_xicheng", PAIR, 404),  # B is outside the scope
    ("br_planner_streets", PAIR, 200),
    ("br_planner_streets", {"a": XICHENG, "b": FENGTAI}, 404),
    ("br_dispatcher", PAIR, 403),
    ("br_chief", PAIR, 403),
])
def test_api_roles(client: TestClient, username: str, params: dict[str, str],
                   status: int) -> None:
    response = client.get(URL, params=params, headers=bearer(client, username))
    assert response.status_code == status, response.text


def test_api_needs_a_signed_in_user(client: TestClient) -> None:
    assert client.get(URL, params=PAIR).status_code == 401


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_writes_the_report_files(db_url: str, world: World, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["report", "boundary", GUANGWAI, TAIPINGQIAO, "--out",
                                      str(out), "--buffer-m", "100"],
                                env={"DATABASE_URL": db_url, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "800.0 m" in result.output and "广安门外街道" in result.output
    for name in ("report.html", "report.geojson", "buildings.csv", "incidents.csv"):
        assert (out / name).is_file(), name
    buildings = list(csv.DictReader(io.StringIO(
        (out / "buildings.csv").read_bytes().decode("utf-8-sig"))))
    assert tuple(buildings[0]) == BUILDING_COLUMNS
    straddler = next(r for r in buildings if r["id"] == str(world.buildings["straddler"]))
    assert (straddler["share_a"], straddler["households_b"], straddler["a_code"]) == (
        "0.3333", "20.0", GUANGWAI)
    incidents = list(csv.DictReader(io.StringIO(
        (out / "incidents.csv").read_bytes().decode("utf-8-sig"))))
    assert {r["side_code"] for r in incidents} == {GUANGWAI, TAIPINGQIAO, ""}
    geo = json.loads((out / "report.geojson").read_text(encoding="utf-8"))
    assert geo["type"] == "FeatureCollection"
    assert geo["properties"]["crs"]["metric"] == "EPSG:4548"
    assert {f["properties"]["layer"] for f in geo["features"]} == {
        "area", "shared_boundary", "overlap", "gap", "building", "incident"}
    assert not EXTERNAL.search((out / "report.html").read_text(encoding="utf-8"))


def test_cli_names_a_bad_argument(db_url: str, world: World, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["report", "boundary", GUANGWAI, "--out",
                                      str(tmp_path)], env={"DATABASE_URL": db_url})
    assert result.exit_code != 0
    assert isinstance(result.exception, InvalidInput) and result.exception.field == "b"
