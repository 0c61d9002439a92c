"""Plan diff and impact (gis/plan_diff.py) on a crafted world in 广安门外街道, drawn in metres
(EPSG:4548) so every number below is computed by hand.

Community 110102020001 is the strip x 0–400 m, y 0–100 m (origin X0, Y0). Live grids (in
force since 2025): A = x 0–100 (code …001), B = x 100–250 (…002), C = x 250–400 (…003).
The plan redraws them as P1 = x 0–100 (= A), P2 = x 100–160, P3 = x 160–330, P4 = x 330–400:
- P1 is A: unchanged;
- P3 holds 9000 m² of B (60 %) and 8000 m² of C (53.3 %): its largest share is B's, so it
  continues B (…002, changed); P2 holds 40 % of B and P4 46.7 % of C: both new;
- C's main holder P3 continues B, so C closes, its successor is P3 (53.3 %).
Buildings (10 m squares unless said, households): b1 A (100) stays; b2 B→P2 (120) moves;
b3 B→P3 (150) stays; b4 C→P3 (80), b5 C→P4 (90) and b6 (14 × 10 m across x = 330,
representative point in P3, 40) move: 4 buildings, 330 households. P3 keeps 60 % of B's
area and 150 of its 270 households. The areas changing grid: B∩P2 6000 + C∩P3 8000 +
C∩P4 7000 = 21000 m².
Incidents: i_c (open, C → P3: listed), i_b (open, B, inside P3: B continues, not listed),
i_b2 (open, B → P2: listed), i_closed (closed, C), i_a (open, A). Grid workers: w_c on C
(reassign to P3), w_b on B (follows …002), w_a on A (unchanged: not listed)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from sqlalchemy import Connection, Engine, text

from gis import catalog
from gis.audit import Actor
from gis.errors import InvalidInput, NotFound
from gis.plan_diff import comparison_html, plan_diff

SRID = 4548
TOL = 1.0
X0, Y0 = 442700.0, 4416400.0
DISTRICT, STREET, COMMUNITY = "110102", "110102020", "110102020001"
LIVE_FROM = "2025-01-01T00:00:00+08:00"


def code(n: int) -> str:
    return f"{COMMUNITY}{n:03d}"


def rect(x0: float, x1: float, y0: float = 0.0, y1: float = 100.0) -> str:
    """A rectangle of the local frame (metres from X0, Y0) as EPSG:4548 WKT."""
    a, b, c, d = X0 + x0, X0 + x1, Y0 + y0, Y0 + y1
    return f"MULTIPOLYGON((({a} {c},{b} {c},{b} {d},{a} {d},{a} {c})))"


GEOM = "ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326))"
POINT = "ST_Transform(ST_SetSRID(ST_MakePoint(:x + 442700.0, :y + 4416400.0), 4548), 4326)"

LIVE = {"A": (1, 0, 100, 100), "B": (2, 100, 250, 270), "C": (3, 250, 400, 210)}
PLAN = {"P1": (0, 100, 100, 1), "P2": (100, 160, 120, 1), "P3": (160, 330, 270, 3),
        "P4": (330, 400, 90, 1)}
BUILDINGS = {"b1": (40, 50, "A", 100), "b2": (120, 130, "B", 120), "b3": (200, 210, "B", 150),
             "b4": (280, 290, "C", 80), "b5": (360, 370, "C", 90), "b6": (322, 336, "C", 40)}


@dataclass
class World:
    grids: dict[str, int] = field(default_factory=dict)
    plan_grids: dict[str, int] = field(default_factory=dict)
    buildings: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    assignments: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    plan_id: int = 0


def build_world(conn: Connection, *, plan_status: str = "approved",
                plan_codes: dict[str, str | None] | None = None) -> World:
    """The world of the module docstring, and the plan (status `plan_status`); the plan
    grids' codes are as create-from-live leaves them unless `plan_codes` says otherwise."""
    w = World()
    catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
    for level, jcode, name, wkt in (
            ("district", DISTRICT, "西城区", rect(-1000, 1400, -1000, 1100)),
            ("street", STREET, "广安门外街道", rect(-500, 900, -500, 600)),
            ("community", COMMUNITY, "测试社区", rect(0, 400))):
        conn.execute(text(f"INSERT INTO jurisdictions (level, code, name, geom) "  # noqa: S608
                          f"VALUES (:l, :c, :n, {GEOM})"),
                     {"l": level, "c": jcode, "n": name, "wkt": wkt})
    for key, (n, x0, x1, hh) in LIVE.items():
        w.grids[key] = int(conn.scalar(text(
            f"INSERT INTO grids (code, name, households, geom, valid_from, is_synthetic) "  # noqa: S608
            f"VALUES (:c, :n, :h, {GEOM}, :vf, true) RETURNING id"),
            {"c": code(n), "n": f"第{n}网格", "h": hh, "wkt": rect(x0, x1), "vf": LIVE_FROM}))
    for key, (x0, x1, grid, hh) in BUILDINGS.items():
        w.buildings[key] = int(conn.scalar(text(
            f"INSERT INTO buildings (name, district_code, grid_code, households, geom) "  # noqa: S608
            f"VALUES (:n, :d, :g, :h, {GEOM}) RETURNING id"),
            {"n": key, "d": DISTRICT, "g": code(LIVE[grid][0]), "h": hh,
             "wkt": rect(x0, x1, 40 if key != "b6" else 70, 50 if key != "b6" else 80)}))
    for key, (grid, x, y, status) in {
            "i_c": ("C", 300, 20, "dispatched"), "i_b": ("B", 230, 20, "registered"),
            "i_b2": ("B", 120, 20, "ledger"), "i_closed": ("C", 380, 20, "closed"),
            "i_a": ("A", 50, 20, "handling")}.items():
        w.incidents[key] = int(conn.scalar(text(f"""
            INSERT INTO incidents (source, event_class_id, description, geom, status,
                                   district_code, street_code, community_code, grid_code,
                                   grid_id, reported_at, closed_at)
            VALUES ('12345', (SELECT id FROM event_classes WHERE kind = 'event'
                              AND code = '0101'), :k, {POINT}, :s, :d, :st, :c, :g, :gid,
                    '2026-01-05T10:00:00+08:00',
                    CASE WHEN :s = 'closed' THEN CAST('2026-01-06T10:00:00+08:00'
                                                      AS timestamptz) END)
            RETURNING id"""),  # noqa: S608 - constant
            {"k": key, "x": x, "y": y, "s": status, "d": DISTRICT, "st": STREET,
             "c": COMMUNITY, "g": code(LIVE[grid][0]), "gid": w.grids[grid]}))
    for key, grid, role in (("w_c", "C", "grid_worker"), ("w_b", "B", "grid_leader"),
                            ("w_a", "A", "grid_worker")):
        w.people[key] = int(conn.scalar(text(
            "INSERT INTO people (name, district_code) VALUES (:n, :d) RETURNING id"),
            {"n": f"网格员{key}", "d": DISTRICT}))
        w.assignments[key] = int(conn.scalar(text(
            "INSERT INTO grid_assignments (grid_id, person_id, role, valid_from) "
            "VALUES (:g, :p, :r, :vf) RETURNING id"),
            {"g": w.grids[grid], "p": w.people[key], "r": role, "vf": LIVE_FROM}))
    for name in ("planner_a", "planner_b"):
        w.users[name] = int(conn.scalar(text(
            "INSERT INTO users (username, display_name, password_hash, roles) "
            "VALUES (:u, :dn, 'x', ARRAY['planner']) RETURNING id"),
            {"u": name, "dn": {"planner_a": "张规划", "planner_b": "李审核"}[name]}))
    w.plan_id = int(conn.scalar(text("""
        INSERT INTO grid_plans (name, status, community_codes, district_code, author_id,
                                reviewer_id, approved_at)
        VALUES ('测试社区网格调整', :s, ARRAY[:c], :d, :a, :r,
                CASE WHEN :s = 'approved' THEN now() END) RETURNING id"""),
        {"s": plan_status, "c": COMMUNITY, "d": DISTRICT, "a": w.users["planner_a"],
         "r": w.users["planner_b"]}))
    sources = {"P1": ("A", code(1)), "P2": ("B", None), "P3": ("B", code(2)),
               "P4": ("C", code(3))}
    for key, (x0, x1, hh, nb) in PLAN.items():
        source, plan_code = sources[key]
        if plan_codes is not None and key in plan_codes:
            plan_code = plan_codes[key]
        w.plan_grids[key] = int(conn.scalar(text(f"""
            INSERT INTO grid_plan_grids (plan_id, code, name, community_code, households,
                                         buildings, source_grid_id, geom)
            VALUES (:p, :code, NULL, :c, :h, :b, :src, {GEOM}) RETURNING id"""),  # noqa: S608
            {"p": w.plan_id, "code": plan_code, "c": COMMUNITY, "h": hh, "b": nb,
             "src": w.grids[source], "wkt": rect(x0, x1)}))
    return w


@pytest.fixture
def world(engine: Engine) -> World:
    with engine.begin() as conn:
        return build_world(conn)


def _diff(engine: Engine, plan_id: int) -> dict:
    with engine.connect() as conn:
        return plan_diff(conn, plan_id, SRID, TOL)


def test_statuses_codes_and_closed_grids(engine: Engine, world: World) -> None:
    d = _diff(engine, world.plan_id)
    by = {g["plan_grid_id"]: g for g in d["grids"]}
    p = world.plan_grids
    assert by[p["P1"]]["status"] == "unchanged"
    assert by[p["P1"]]["code"] == code(1) and by[p["P1"]]["grid_id"] == world.grids["A"]
    assert by[p["P3"]]["status"] == "changed"
    assert by[p["P3"]]["code"] == code(2)
    assert by[p["P3"]]["continues_grid_id"] == world.grids["B"]
    assert by[p["P2"]]["status"] == "new" and by[p["P2"]]["code"] is None
    assert by[p["P2"]]["plan_code"] is None and by[p["P2"]]["name"] is None
    # P4's plan code (copied from C by create-from-live) does not make it C's successor.
    assert by[p["P4"]]["status"] == "new" and by[p["P4"]]["code"] is None
    preds = {x["code"]: x["share_of_old"] for x in by[p["P3"]]["predecessors"]}
    assert preds == {code(2): pytest.approx(0.6, abs=1e-4),
                     code(3): pytest.approx(8000 / 15000, abs=1e-4)}
    assert d["closed"] == [{"grid_id": world.grids["C"], "code": code(3), "households": 210,
                            "successor_plan_grid_id": p["P3"],
                            "successor_share": pytest.approx(8000 / 15000, abs=1e-4)}]
    fates = {g["code"]: g["fate"] for g in d["old_grids"]}
    assert fates == {code(1): "unchanged", code(2): "continued", code(3): "closed"}
    s = d["summary"]
    assert (s["grids_before"], s["grids_after"], s["unchanged"], s["changed"], s["new"],
            s["closed"]) == (3, 4, 1, 1, 2, 1)
    assert d["plan"]["author"] == "张规划" and d["plan"]["reviewer"] == "李审核"
    assert d["reference"]["kind"] == "live"


def test_households_buildings_moved_and_core_retention(engine: Engine, world: World) -> None:
    d = _diff(engine, world.plan_id)
    assert d["households_moved"] == 120 + 80 + 90 + 40
    assert d["buildings_moved"] == 4
    by = {g["plan_grid_id"]: g for g in d["grids"]}
    p3 = by[world.plan_grids["P3"]]
    assert p3["core_retention"] == pytest.approx(9000 / 15000, abs=1e-4)
    assert p3["core_retention_households"] == pytest.approx(150 / 270, abs=1e-4)
    assert (p3["households_before"], p3["households"]) == (270, 270)
    assert (p3["buildings_moved_in"], p3["buildings_moved_out"], p3["buildings"]) == (2, 1, 3)
    p1 = by[world.plan_grids["P1"]]
    assert (p1["core_retention"], p1["core_retention_households"]) == (
        pytest.approx(1.0), pytest.approx(1.0))
    assert (p1["buildings_moved_in"], p1["buildings_moved_out"]) == (0, 0)
    p2 = by[world.plan_grids["P2"]]
    assert p2["core_retention"] is None and p2["households_before"] is None
    assert (p2["buildings_moved_in"], p2["households"]) == (1, 120)


def test_open_incidents_and_grid_workers(engine: Engine, world: World) -> None:
    d = _diff(engine, world.plan_id)
    listed = {i["id"]: i for i in d["open_incidents"]}
    inc = world.incidents
    assert set(listed) == {inc["i_c"], inc["i_b2"]}
    assert (listed[inc["i_c"]]["from_code"], listed[inc["i_c"]]["to_plan_grid_id"],
            listed[inc["i_c"]]["to_code"]) == (code(3), world.plan_grids["P3"], code(2))
    assert (listed[inc["i_b2"]]["to_plan_grid_id"], listed[inc["i_b2"]]["to_code"]) == (
        world.plan_grids["P2"], None)
    workers = {w["person_id"]: w for w in d["grid_workers"]}
    assert set(workers) == {world.people["w_c"], world.people["w_b"]}
    w_c, w_b = workers[world.people["w_c"]], workers[world.people["w_b"]]
    assert (w_c["from_code"], w_c["to_plan_grid_id"], w_c["to_code"], w_c["reassign"]) == (
        code(3), world.plan_grids["P3"], code(2), True)
    assert (w_b["from_code"], w_b["to_code"], w_b["reassign"], w_b["role"]) == (
        code(2), code(2), False, "grid_leader")
    assert d["summary"]["grid_workers_to_reassign"] == 1


def test_difference_areas_sum_to_the_moved_area(engine: Engine, world: World) -> None:
    d = _diff(engine, world.plan_id)
    fc = d["difference"]
    assert fc["type"] == "FeatureCollection"
    pieces = {(f["properties"]["from_code"], f["properties"]["to_plan_grid_id"]):
              f["properties"]["area_m2"] for f in fc["features"]}
    p = world.plan_grids
    assert pieces == {(code(2), p["P2"]): pytest.approx(6000, abs=0.5),
                      (code(3), p["P3"]): pytest.approx(8000, abs=0.5),
                      (code(3), p["P4"]): pytest.approx(7000, abs=0.5)}
    assert d["summary"]["moved_area_m2"] == pytest.approx(21000, abs=1.0)
    assert all(f["geometry"]["type"] == "MultiPolygon" for f in fc["features"])
    # Pieces are in lon/lat.
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0][0]
    assert 116.3 < lon < 116.4 and 39.8 < lat < 39.9
    to_codes = {f["properties"]["to_plan_grid_id"]: f["properties"]["to_code"]
                for f in fc["features"]}
    assert to_codes[p["P3"]] == code(2) and to_codes[p["P2"]] is None


def test_a_plan_identical_to_the_live_grids_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        w = build_world(conn)
        conn.execute(text("DELETE FROM grid_plan_grids WHERE plan_id = :p"), {"p": w.plan_id})
        conn.execute(text("""
            INSERT INTO grid_plan_grids (plan_id, code, community_code, households, buildings,
                                         source_grid_id, geom)
            SELECT :p, code, community_code, households, 1, id, geom FROM grids
        """), {"p": w.plan_id})
    d = _diff(engine, w.plan_id)
    assert {g["status"] for g in d["grids"]} == {"unchanged"}
    assert d["closed"] == [] and d["open_incidents"] == [] and d["grid_workers"] == []
    assert (d["households_moved"], d["buildings_moved"]) == (0, 0)
    assert d["difference"]["features"] == []


def test_comparison_html_is_printable_and_self_contained(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        html = comparison_html(conn, world.plan_id, SRID, TOL)
    assert "<svg" in html and '<pattern id="hatch"' in html
    assert 'fill="url(#hatch)"' in html
    map_svg = html[html.index('<svg id="plan-map"'):]
    map_svg = map_svg[:map_svg.index("</svg>")]
    # Framed on the grids that change: old boundaries of B and C dashed, the changed and new
    # grids solid, A (unchanged) as grey context, three hatched pieces.
    def layer(name: str, following: str) -> str:
        return map_svg[map_svg.index(f'id="map-{name}"'):map_svg.index(f'id="map-{following}"')]

    old, new, same = layer("old", "new"), layer("new", "labels"), layer("same", "diff")
    assert "stroke-dasharray" in old and old.count("<path") == 2
    assert "stroke-dasharray" not in new and new.count("<path") == 3
    assert same.count("<path") == 1
    hatched = layer("diff", "old")
    assert hatched.count("<path") == 3
    for path in re.findall(r' d="([^"]*)"', old + new + hatched):  # inside the view box
        numbers = [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?", path)]
        assert numbers and all(-1 <= v <= 1001 for v in numbers)
    assert "测试社区网格调整" in html and "已批准" in html and "张规划" in html
    assert "李审核" in html
    assert 'id="sum-households-moved">330<' in html
    assert 'id="sum-buildings-moved">4<' in html
    assert 'id="sum-moved-area">21,000<' in html
    assert f'data-incident-id="{world.incidents["i_c"]}"' in html
    assert f'data-person-id="{world.people["w_c"]}"' in html
    assert "60.0%" in html and "55.6%" in html  # P3's core retention (area, households)
    assert "@page { size: A4" in html
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert "src=" not in html and "<link" not in html


def test_unknown_plan_and_bad_parameters(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        with pytest.raises(NotFound) as missing:
            plan_diff(conn, world.plan_id + 100, SRID, TOL)
        assert missing.value.field == "plan_id"
        with pytest.raises(InvalidInput) as bad:
            plan_diff(conn, world.plan_id, SRID, -1.0)
        assert bad.value.field == "tolerance_m2"
