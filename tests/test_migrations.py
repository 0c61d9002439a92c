"""The schema migrates up and down on a real PostGIS and enforces its constraints."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from gis import migrate

CORE_TABLES = {
    "jurisdictions", "grids", "buildings", "building_shares", "streets", "road_nodes",
    "road_edges", "people", "street_assignments", "grid_assignments", "departments", "teams",
    "team_positions", "event_classes", "incidents", "case_events", "whistles",
    "whistle_summons", "dispatches", "joint_zones", "patrols", "patrol_points", "grid_plans",
    "grid_plan_grids", "users", "audit_log",
}
LARGE_TABLES = {
    "buildings", "streets", "road_nodes", "road_edges", "team_positions", "incidents",
    "case_events", "whistles", "dispatches", "patrols", "patrol_points", "grids",
    "jurisdictions", "teams",
}
SQUARE = "MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


def square(x0: float, y0: float, size: float = 0.01) -> str:
    return SQUARE.format(x0=x0, y0=y0, x1=x0 + size, y1=y0 + size)


def tables(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.scalars(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        )


def add_jurisdiction(conn, level: str, code: str, wkt: str, **kw: str) -> None:
    conn.execute(
        text(
            "INSERT INTO jurisdictions (level, code, name, geom, valid_from, valid_to) "
            "VALUES (:level, :code, :name, ST_GeomFromText(:wkt, 4326), "
            "coalesce(CAST(:vf AS timestamptz), '2000-01-01'), CAST(:vt AS timestamptz))"
        ),
        {"level": level, "code": code, "name": kw.get("name", code), "wkt": wkt,
         "vf": kw.get("valid_from"), "vt": kw.get("valid_to")},
    )


def test_upgrade_creates_core_schema_and_downgrade_removes_it(db_url: str, engine: Engine) -> None:
    assert CORE_TABLES <= tables(engine)
    with engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        gist = set(conn.scalars(text(
            "SELECT tablename FROM pg_indexes WHERE indexdef LIKE '%USING gist%'")))
        district_code = set(conn.scalars(text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE column_name = 'district_code'")))
    assert {"jurisdictions", "grids", "buildings", "streets", "road_edges", "incidents",
            "joint_zones", "teams", "patrols"} <= gist
    assert LARGE_TABLES <= district_code
    migrate.downgrade(db_url, "base")
    assert tables(engine) & CORE_TABLES == set()
    migrate.upgrade(db_url)
    assert CORE_TABLES <= tables(engine)


@pytest.mark.parametrize(
    ("level", "code"),
    [("district", "11010"), ("street", "110102"), ("community", "1101020200011"),
     ("district", "11010A"), ("region", "110102")],
)
def test_code_format_is_checked_per_level(engine: Engine, level: str, code: str) -> None:
    with pytest.raises(IntegrityError, match="check constraint"), engine.begin() as conn:
        add_jurisdiction(conn, level, code, square(116.3, 39.9))


def test_parent_must_exist_and_parent_code_is_derived(engine: Engine) -> None:
    with pytest.raises(IntegrityError, match="parent district 110102 does not exist"):
        with engine.begin() as conn:
            add_jurisdiction(conn, "street", "110102020", square(116.3, 39.9))
    with engine.begin() as conn:  # children before parents in one transaction is fine
        add_jurisdiction(conn, "street", "110102020", square(116.3, 39.9, 0.005))
        add_jurisdiction(conn, "district", "110102", square(116.3, 39.9))
        conn.execute(text(
            "INSERT INTO grids (code, geom) VALUES ('110102020001001', ST_GeomFromText(:w, 4326))"
        ), {"w": square(116.3, 39.9, 0.001)})
        add_jurisdiction(conn, "community", "110102020001", square(116.3, 39.9, 0.002))
    with engine.connect() as conn:
        row = conn.execute(text(
            "SELECT parent_code, district_code FROM jurisdictions WHERE code = '110102020'")).one()
        grid = conn.execute(text(
            "SELECT community_code, street_code, district_code FROM grids")).one()
    assert tuple(row) == ("110102", "110102")
    assert tuple(grid) == ("110102020001", "110102020", "110102")


@pytest.mark.parametrize(
    ("wkt", "srid", "reason"),
    [
        ("MULTIPOLYGON(((0 0,1 1,1 0,0 1,0 0)))", 4326, "check constraint"),  # bow-tie
        ("MULTIPOLYGON EMPTY", 4326, "check constraint"),
        ("MULTIPOLYGON(((12950000 4850000,12951000 4850000,12951000 4851000,"
         "12950000 4850000)))", 4326, "check constraint"),  # metres labelled as degrees
        (square(116.3, 39.9), 3857, "SRID"),
        ("POINT(116.3 39.9)", 4326, "type"),
    ],
)
def test_geometry_must_be_valid_nonempty_lonlat_4326(
    engine: Engine, wkt: str, srid: int, reason: str
) -> None:
    with pytest.raises(DBAPIError, match=reason), engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO jurisdictions (level, code, name, geom) "
            "VALUES ('district', '110102', 'x', ST_GeomFromText(:w, :srid))"
        ), {"w": wkt, "srid": srid})


def test_one_version_of_a_code_in_force_at_a_time(engine: Engine) -> None:
    with engine.begin() as conn:
        add_jurisdiction(conn, "district", "110102", square(116.3, 39.9),
                         valid_from="2020-01-01", valid_to="2024-01-01")
        add_jurisdiction(conn, "district", "110102", square(116.3, 39.9, 0.02),
                         valid_from="2024-01-01")
    with pytest.raises(IntegrityError, match="jurisdictions_one_version_in_force"):
        with engine.begin() as conn:
            add_jurisdiction(conn, "district", "110102", square(116.3, 39.9),
                             valid_from="2023-06-01", valid_to="2024-06-01")
    with engine.connect() as conn:
        in_2022 = conn.scalar(text(
            "SELECT round(ST_Area(geom)::numeric, 4) FROM jurisdictions WHERE code = '110102' "
            "AND tstzrange(valid_from, valid_to) @> CAST('2022-05-01' AS timestamptz)"))
    assert float(in_2022) == pytest.approx(0.0001)


def test_audit_log_is_append_only(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (actor, action, object_type, object_id) "
            "VALUES ('cli', 'import', 'jurisdictions', '110102')"))
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log",
                      "TRUNCATE audit_log"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM audit_log")) == 1


def test_a_team_cannot_hold_two_active_dispatches(engine: Engine) -> None:
    with engine.begin() as conn:
        add_jurisdiction(conn, "district", "110102", square(116.3, 39.9))
        conn.execute(text("""
            INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code)
              VALUES ('CG', '城管执法队', 'urban_management', 'core', '110102');
            INSERT INTO teams (code, name, department_id, home_code, status)
              VALUES ('CG-1', '城管一队', 1, '110102', 'available');
            INSERT INTO event_classes (kind, code, major_name, name)
              VALUES ('event', '0101', '市容环境', '暴露垃圾');
            INSERT INTO incidents (source, event_class_id, geom, district_code)
              VALUES ('12345', 1, ST_SetSRID(ST_Point(116.305, 39.905), 4326), '110102'),
                     ('12345', 1, ST_SetSRID(ST_Point(116.306, 39.905), 4326), '110102');
            INSERT INTO dispatches (incident_id, team_id, district_code) VALUES (1, 1, '110102');
        """))
    with pytest.raises(IntegrityError, match="dispatches_one_active_per_team"):
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO dispatches (incident_id, team_id, district_code) "
                "VALUES (2, 1, '110102')"))
    with engine.begin() as conn:
        conn.execute(text("UPDATE dispatches SET status = 'done', done_at = now()"))
        conn.execute(text(
            "INSERT INTO dispatches (incident_id, team_id, district_code) VALUES (2, 1, '110102')"))


def test_a_parent_with_children_cannot_be_deleted(engine: Engine) -> None:
    with engine.begin() as conn:
        add_jurisdiction(conn, "district", "110102", square(116.3, 39.9))
        add_jurisdiction(conn, "street", "110102020", square(116.3, 39.9, 0.005))
    with pytest.raises(IntegrityError, match="still has children"), engine.begin() as conn:
        conn.execute(text("DELETE FROM jurisdictions WHERE code = '110102'"))
    with engine.begin() as conn:  # leaves first, then the parent: fine
        conn.execute(text("DELETE FROM jurisdictions WHERE code = '110102020'"))
        conn.execute(text("DELETE FROM jurisdictions WHERE code = '110102'"))


@pytest.mark.parametrize(
    ("scope", "ok"),
    [("{}", True), ("{110102,110106002}", True), ('{"110102,110105"}', False), ('{""}', False)],
)
def test_user_scope_codes_are_district_or_street_codes(
    engine: Engine, scope: str, ok: bool
) -> None:
    insert = text("INSERT INTO users (username, password_hash, roles, scope_codes) "
                  "VALUES ('op', 'x', '{operator}', CAST(:scope AS text[]))")
    if ok:
        with engine.begin() as conn:
            conn.execute(insert, {"scope": scope})
    else:
        with pytest.raises(IntegrityError, match="scope_codes"), engine.begin() as conn:
            conn.execute(insert, {"scope": scope})


def test_incident_placement_codes_nest(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO event_classes (kind, code, major_name, name) "
                          "VALUES ('event', '0101', '市容环境', '暴露垃圾')"))
    insert = text(
        "INSERT INTO incidents (source, event_class_id, geom, district_code, street_code, "
        "community_code, grid_code) VALUES ('12345', 1, ST_SetSRID(ST_Point(116.3, 39.9), 4326), "
        "'110102', :s, :c, :g)")
    for codes in ({"s": None, "c": "110102020001", "g": None},            # community, no street
                  {"s": "110102020", "c": None, "g": "110102020001001"},  # grid, no community
                  {"s": "110106002", "c": None, "g": None}):  # street of another district
        with pytest.raises(IntegrityError, match="check constraint"), engine.begin() as conn:
            conn.execute(insert, codes)
    with engine.begin() as conn:
        conn.execute(insert, {"s": "110102020", "c": "110102020001", "g": "110102020001001"})


def test_dispatch_status_carries_its_timestamps_in_order(engine: Engine) -> None:
    test_a_team_cannot_hold_two_active_dispatches(engine)
    for statement in (
        "UPDATE dispatches SET status = 'on_scene' WHERE status = 'dispatched'",  # no on_scene_at
        "UPDATE dispatches SET accepted_at = dispatched_at + interval '5 min', "
        # en route before accepted:
        "en_route_at = dispatched_at + interval '1 min' WHERE status = 'dispatched'",
    ):
        with pytest.raises(IntegrityError, match="dispatches_"), engine.begin() as conn:
            conn.execute(text(statement))
    with engine.begin() as conn:
        conn.execute(text(
            "UPDATE dispatches SET status = 'on_scene', accepted_at = dispatched_at, "
            "en_route_at = dispatched_at + interval '1 min', "
            "on_scene_at = dispatched_at + interval '20 min' WHERE status = 'dispatched'"))
