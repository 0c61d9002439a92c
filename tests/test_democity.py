"""Integrity of the demo city as loaded into PostGIS (built once per test session), plus
determinism and a reduced city-scale run."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text

from gis.audit import Actor
from gis.auth import principal_for
from gis.database import make_engine
from gis.demo_users import DEMO_USERS, ensure_demo_users
from gis.democity.city import STRADDLER_NAME, build_city
from gis.democity.load import load_city
from gis.democity.model import CITY, DEMO, City, Scale
from gis.incidents import IncidentFilter, list_incidents
from gis.users import ROLES
from tests.auth_world import session_for

SEED = 7
AS_OF = datetime(2026, 11, 20, 17, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
TILING_TOLERANCE_M2 = 1.0  # gap or overlap area allowed between a parent and its children
BAND = DEMO.households_band


@pytest.fixture(scope="session")
def demo(new_database: Callable[[], str]) -> Iterator[tuple[Engine, City]]:
    """The demo city (seed 7) loaded into its own database."""
    engine = make_engine(new_database())
    city = build_city(SEED, DEMO, as_of=AS_OF)
    load_city(engine, city)
    yield engine, city
    engine.dispose()


@pytest.fixture
def db(demo: tuple[Engine, City]) -> Engine:
    return demo[0]


def scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.scalar(text(sql), params)


def rows(engine: Engine, sql: str, **params: object) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(sql), params)]


def test_real_districts_and_their_streets(db: Engine) -> None:
    districts = dict(rows(db, "SELECT code, name FROM jurisdictions WHERE level = 'district'"))
    assert districts == {"110101": "东城区", "110102": "西城区", "110106": "丰台区"}
    per_district = dict(rows(db, "SELECT parent_code, count(*) FROM jurisdictions "
                                 "WHERE level = 'street' GROUP BY parent_code"))
    assert per_district == {"110101": 17, "110102": 15, "110106": 26}
    assert scalar(db, "SELECT name FROM jurisdictions WHERE code = '110102020'") == "广安门外街道"
    assert scalar(db, "SELECT name FROM jurisdictions WHERE code = '110106002'") == "太平桥街道"
    border_km = scalar(db, """
        SELECT ST_Length(ST_Transform(ST_Intersection(ST_Boundary(a.geom),
                                                      ST_Buffer(b.geom::geography, 1)::geometry),
                                      4548)) / 1000
        FROM jurisdictions a, jurisdictions b WHERE a.code = '110102' AND b.code = '110106'""")
    assert 8.6 < float(border_km) < 9.2  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("child_sql", "parent_level"),
    [
        ("SELECT parent_code AS parent, geom FROM jurisdictions WHERE level = 'street'",
         "district"),
        ("SELECT parent_code AS parent, geom FROM jurisdictions WHERE level = 'community'",
         "street"),
        ("SELECT community_code AS parent, geom FROM grids", "community"),
    ],
)
def test_every_level_tiles_its_parent(db: Engine, child_sql: str, parent_level: str) -> None:
    # child_sql comes from the parametrize list above, never from input.
    worst = rows(db, f"""
        WITH children AS ({child_sql}),
        per_parent AS (
          SELECT parent, ST_Union(ST_Transform(geom, 4548)) AS covered,
                 sum(ST_Area(ST_Transform(geom, 4548))) AS child_area
          FROM children GROUP BY parent)
        SELECT j.code,
               ST_Area(ST_SymDifference(ST_Transform(j.geom, 4548), p.covered)) AS mismatch_m2,
               p.child_area - ST_Area(p.covered) AS overlap_m2
        FROM jurisdictions j JOIN per_parent p ON p.parent = j.code
        WHERE j.level = :level
        ORDER BY greatest(ST_Area(ST_SymDifference(ST_Transform(j.geom, 4548), p.covered)),
                          p.child_area - ST_Area(p.covered)) DESC
        LIMIT 3""", level=parent_level)  # noqa: S608
    parents = scalar(db, "SELECT count(*) FROM jurisdictions WHERE level = :level",
                     level=parent_level)
    with_children = len(rows(db, f"SELECT DISTINCT parent FROM ({child_sql}) c"))  # noqa: S608
    assert with_children == parents, "every parent has children"
    for code, mismatch, overlap in worst:
        assert mismatch < TILING_TOLERANCE_M2, f"{code}: gap/overlap {mismatch:.3f} m²"
        assert overlap < TILING_TOLERANCE_M2, f"{code}: children overlap {overlap:.3f} m²"


def test_codes_extend_parents_and_grids_hold_the_household_band(db: Engine) -> None:
    orphans = scalar(db, """
        SELECT count(*) FROM grids g WHERE NOT EXISTS (
          SELECT 1 FROM jurisdictions c
          WHERE c.code = g.community_code AND c.level = 'community')""")
    assert orphans == 0
    low, high = BAND
    out_of_band = rows(db, "SELECT code, households FROM grids "
                           "WHERE households NOT BETWEEN :low AND :high LIMIT 5",
                       low=low, high=high)
    assert out_of_band == []
    assert scalar(db, "SELECT sum(households) FROM grids") == scalar(
        db, "SELECT sum(households) FROM buildings")


def test_buildings_have_a_majority_grid_and_straddlers_shares_sum_to_one(db: Engine) -> None:
    count = int(scalar(db, "SELECT count(*) FROM buildings"))  # type: ignore[arg-type]
    assert 20_000 <= count <= 150_000, "tens of thousands of buildings"
    assert scalar(db, "SELECT count(*) FROM buildings WHERE grid_code IS NULL") == 0
    # The recorded grid holds the largest part of the footprint (near-ties allowed), checked
    # on every straddling building and a sample of the rest.
    wrong_majority = scalar(db, """
        WITH sample AS (
          SELECT * FROM buildings WHERE id IN (
            SELECT building_id FROM building_shares WHERE level = 'grid')
             OR id < 1000),
        areas AS (
          SELECT s.id, s.grid_code, g.code, ST_Area(ST_Intersection(s.geom, g.geom)) AS a
          FROM sample s JOIN grids g ON ST_Intersects(s.geom, g.geom)),
        best AS (SELECT id, max(a) AS a FROM areas GROUP BY id),
        mine AS (SELECT id, a FROM areas WHERE code = grid_code)
        SELECT count(*) FROM best LEFT JOIN mine USING (id)
        WHERE mine.a IS NULL OR mine.a < best.a * 0.999""")
    assert wrong_majority == 0
    bad_sums = rows(db, """
        SELECT building_id, level, sum(share) FROM building_shares
        GROUP BY building_id, level HAVING abs(sum(share) - 1) > 1e-9 LIMIT 5""")
    assert bad_sums == []
    assert scalar(db, "SELECT count(DISTINCT building_id) FROM building_shares "
                      "WHERE level = 'district'") >= 1
    assert scalar(db, "SELECT count(DISTINCT building_id) FROM building_shares "
                      "WHERE level = 'street'") >= 10


def test_the_building_astride_the_xicheng_fengtai_line(db: Engine) -> None:
    floors, area = rows(db, "SELECT floors, ST_Area(geom::geography) FROM buildings "
                            "WHERE name = :name", name=STRADDLER_NAME)[0]
    assert floors == 2
    assert area == pytest.approx(2000, rel=0.02)
    shares = dict(rows(db, """
        SELECT s.code, s.share FROM buildings b JOIN building_shares s ON s.building_id = b.id
        WHERE b.name = :name AND s.level = 'district'""", name=STRADDLER_NAME))
    assert shares.keys() == {"110102", "110106"}
    assert shares["110102"] == pytest.approx(1 / 3, abs=0.005)
    assert shares["110106"] == pytest.approx(2 / 3, abs=0.005)
    streets = dict(rows(db, """
        SELECT s.code, s.share FROM buildings b JOIN building_shares s ON s.building_id = b.id
        WHERE b.name = :name AND s.level = 'street'""", name=STRADDLER_NAME))
    assert streets.keys() == {"110102020", "110106002"}  # 广安门外街道 / 太平桥街道


def test_guangwai_and_taipingqiao_share_the_real_district_border(db: Engine) -> None:
    shared_m = scalar(db, """
        SELECT ST_Length(ST_Transform(ST_Intersection(ST_Boundary(a.geom),
                                                      ST_Buffer(b.geom::geography, 1)::geometry),
                                      4548))
        FROM jurisdictions a, jurisdictions b
        WHERE a.code = '110102020' AND b.code = '110106002'""")
    assert float(shared_m) > 500  # type: ignore[arg-type]


def test_road_graph_is_one_connected_component(db: Engine) -> None:
    components = scalar(db, """
        SELECT count(DISTINCT component) FROM pgr_connectedComponents(
          'SELECT id, source, target, cost, reverse_cost FROM road_edges')""")
    assert components == 1
    assert scalar(db, "SELECT count(DISTINCT road_class) FROM road_edges") == 4
    assert scalar(db, "SELECT count(*) FROM road_edges WHERE reverse_cost < 0") > 0  # one-way


def test_demo_is_identical_for_the_same_seed(demo: tuple[Engine, City]) -> None:
    assert _fingerprint(build_city(SEED, DEMO, as_of=AS_OF)) == _fingerprint(demo[1])
    small = replace(DEMO, name="test-xicheng", district_codes=("110102",), incidents=1000)
    assert _fingerprint(build_city(3, small, as_of=AS_OF)) != _fingerprint(
        build_city(4, small, as_of=AS_OF))


def _fingerprint(city: City) -> str:
    digest = hashlib.sha256()
    for frame in (city.jurisdictions, city.grids, city.road_edges, city.buildings,
                  *city.tables.values()):
        plain = frame.to_wkb() if "geometry" in frame else frame
        digest.update(plain.to_csv().encode())
    return digest.hexdigest()


def test_reduced_city_scale_run(new_database: Callable[[], str]) -> None:
    """The city-scale generator on two adjacent districts: same invariants, denser city."""
    reduced = Scale(**{**CITY.__dict__, "name": "test-city",
                       "district_codes": ("110101", "110102"), "incidents": 50_000})
    engine = make_engine(new_database())
    try:
        counts = load_city(engine, build_city(11, reduced, as_of=AS_OF))
        assert counts["grids"] > 0 and counts["buildings"] > counts["grids"]
        low, high = reduced.households_band
        assert scalar(engine, "SELECT count(*) FROM grids WHERE households NOT BETWEEN :l AND :h",
                      l=low, h=high) == 0
        assert scalar(engine, """SELECT count(DISTINCT component) FROM pgr_connectedComponents(
            'SELECT id, source, target, cost, reverse_cost FROM road_edges')""") == 1
    finally:
        engine.dispose()


def test_teams_stand_on_roads_and_people_cover_every_street_and_grid(db: Engine) -> None:
    teams = int(scalar(db, "SELECT count(*) FROM teams"))  # type: ignore[arg-type]
    assert teams >= 58 * DEMO.teams_per_street
    off_road = scalar(db, """
        SELECT count(*) FROM teams t WHERE NOT EXISTS (
          SELECT 1 FROM road_edges e
          WHERE ST_DWithin(e.geom::geography, t.position::geography, 1))""")
    assert off_road == 0
    tiers = dict(rows(db, "SELECT tier, count(DISTINCT dept_type) FROM departments "
                          "WHERE length(jurisdiction_code) = 6 GROUP BY tier"))
    assert tiers["stationed"] == 5 and tiers["on_call"] >= 5  # 1+5+N
    across = scalar(db, """
        SELECT count(*) FROM teams t JOIN jurisdictions j
          ON j.level = 'district' AND ST_Covers(j.geom, t.position)
        WHERE j.code <> t.district_code""")
    assert across >= 2, "teams stationed just across the district line"
    chiefless = scalar(db, """
        SELECT count(*) FROM streets s WHERE (SELECT count(*) FROM street_assignments a
          WHERE a.street_id = s.id AND a.role <> 'steward') <> 1""")
    assert chiefless == 0
    assert scalar(db, "SELECT count(*) FROM grids g WHERE NOT EXISTS ("
                      "SELECT 1 FROM grid_assignments a WHERE a.grid_id = g.id)") == 0


def test_incident_history_is_placed_in_its_grid(db: Engine) -> None:
    assert scalar(db, "SELECT count(*) FROM incidents") == DEMO.incidents
    assert scalar(db, "SELECT count(*) FROM event_classes") >= 50
    misplaced = scalar(db, """
        SELECT count(*) FROM incidents i JOIN grids g ON g.id = i.grid_id
        WHERE NOT ST_Covers(g.geom, i.geom) OR g.code <> i.grid_code""")
    assert misplaced == 0
    span_days = scalar(db, "SELECT extract(day FROM max(reported_at) - min(reported_at)) "
                           "FROM incidents")
    assert 80 <= float(span_days) <= DEMO.incident_days  # type: ignore[arg-type]


def test_demo_catalog_is_loaded_like_gridops_catalog_load(db: Engine) -> None:
    catalog = rows(db, "SELECT name, format, synthetic, loaded_by FROM catalogs")
    assert len(catalog) == 1 and catalog[0][1:] == ("gridops-event-catalog/1", True, "demo")
    assert scalar(db, "SELECT count(*) FROM event_classes WHERE active") == 95
    loaded = scalar(db, "SELECT after FROM audit_log WHERE action = 'catalog.load'")
    assert loaded["added"] == 95  # type: ignore[index]
    assert scalar(db, "SELECT count(*) FROM incidents i LEFT JOIN event_classes c "
                      "ON c.id = i.event_class_id WHERE NOT c.active OR c.id IS NULL") == 0


def test_demo_users_one_per_role_bound_and_scoped(db: Engine) -> None:
    with db.begin() as conn:
        first = ensure_demo_users(conn, Actor("demo"))
        again = ensure_demo_users(conn, Actor("demo"))
    assert [state for _, state in first] == ["created"] * len(DEMO_USERS)
    assert [state for _, state in again] == ["exists"] * len(DEMO_USERS)
    assert {u.role for u in DEMO_USERS} == set(ROLES)
    with db.connect() as conn:
        chief = principal_for(conn, session_for(conn, "demo_chief"))
        dispatcher = principal_for(conn, session_for(conn, "demo_dispatcher"))
    assert chief is not None and chief.person_id is not None
    assert dispatcher is not None and dispatcher.department_id is not None
    # The chief sees incidents only on the streets assigned to them, and some there.
    with db.connect() as conn:
        page = list_incidents(conn, chief, IncidentFilter(), limit=1000)
        assigned = set(conn.scalars(text(
            "SELECT street_id FROM street_assignments WHERE person_id = :p"),
            {"p": chief.person_id}))
    features = page.collection["features"]
    assert features
    assert {f["properties"]["street_id"] for f in features} <= assigned


def test_joint_zones_follow_the_real_xicheng_fengtai_border(db: Engine) -> None:
    per_level = dict(rows(db, "SELECT level, count(*) FROM joint_zones "
                              "WHERE origin = 'derived' GROUP BY level"))
    assert per_level == {"district": 3, "street": 139}
    # A point on the real border (midpoint of a piece of it) lies in the district zone, and
    # the zones cover the whole shared border (1 m tolerance), at street level too, where
    # 广安门外街道's and 太平桥街道's lines differ by millimetres.
    for code_a, code_b in (("110102", "110106"), ("110102020", "110106002")):
        on_border, covered = rows(db, """
            WITH pair AS (
              SELECT ST_Boundary(a.geom) AS edge, b.geom AS other
              FROM jurisdictions a, jurisdictions b WHERE a.code = :a AND b.code = :b),
            border AS (
              SELECT ST_Intersection(edge, ST_Buffer(other::geography, 1)::geometry) AS line,
                     ST_GeometryN(ST_CollectionExtract(ST_Intersection(edge, ST_Boundary(other)),
                                                       2), 1) AS piece
              FROM pair)
            SELECT ST_Intersects(z.geom, ST_LineInterpolatePoint(border.piece, 0.5)),
                   ST_Covers(z.geom, border.line)
            FROM joint_zones z, border WHERE z.code_a = :a AND z.code_b = :b""",
            a=code_a, b=code_b)[0]
        assert on_border and covered, (code_a, code_b)
