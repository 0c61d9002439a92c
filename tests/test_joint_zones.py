"""Joint (联合哨) zones on small synthetic jurisdictions: derived from shared boundaries of
positive length (not corner touches), at district and street level (across district borders
too), following boundary revisions; drawn zones kept and validated."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import box
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from api.app import create_app
from api.cli import app
from api.settings import Settings
from gis.audit import Actor
from gis.errors import InvalidInput
from gis.importers import ImportOptions, import_file
from gis.joint_zones import add_drawn_zone, rebuild_joint_zones
from tests.auth_world import sign_in

# 西城 | 丰台 share the meridian 116.32; 东城 touches 丰台 only at the corner (116.34, 39.88).
XICHENG, FENGTAI, DONGCHENG = "110102", "110106", "110101"
BORDER_LON = 116.32
WORLD = {
    (XICHENG, "district"): (116.30, 39.86, 116.32, 39.88),
    (FENGTAI, "district"): (116.32, 39.86, 116.34, 39.88),
    (DONGCHENG, "district"): (116.34, 39.88, 116.36, 39.90),
    ("110102001", "street"): (116.30, 39.86, 116.31, 39.88),
    ("110102002", "street"): (116.31, 39.86, 116.32, 39.88),  # on the 西城–丰台 border
    ("110106001", "street"): (116.32, 39.86, 116.34, 39.88),
    ("110101001", "street"): (116.34, 39.88, 116.36, 39.90),  # corner only
}
BY = Actor("test")


def _insert(conn: Connection, code: str, level: str, bounds: tuple[float, ...]) -> None:
    conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                      "VALUES (:level, :code, :code, ST_Multi(ST_MakeEnvelope(:x0, :y0, :x1, "
                      ":y1, 4326)))"),
                 {"level": level, "code": code, "x0": bounds[0], "y0": bounds[1],
                  "x1": bounds[2], "y1": bounds[3]})


@pytest.fixture
def world(engine: Engine) -> Engine:
    with engine.begin() as conn:
        for (code, level), bounds in WORLD.items():
            _insert(conn, code, level, bounds)
    return engine


def rebuild(engine: Engine, **kwargs: Any) -> dict[str, int]:
    with engine.begin() as conn:
        return rebuild_joint_zones(conn, **kwargs)


def pairs(engine: Engine, level: str) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT code_a, code_b, origin FROM joint_zones WHERE level = :level "
            "ORDER BY code_a, code_b, origin"), {"level": level})]


def zones_holding(engine: Engine, lon: float, lat: float, *, east_m: float = 0.0,
                  level: str = "district") -> list[tuple[str, str]]:
    """Pairs of the zones containing the point `east_m` metres east (geodesic) of lon/lat."""
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("""
            SELECT code_a, code_b FROM joint_zones
            WHERE level = :level AND ST_Intersects(geom, ST_Project(
              ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, :d, radians(:az))::geometry)
            ORDER BY code_a, code_b"""),
            {"lon": lon, "lat": lat, "d": abs(east_m), "az": 90 if east_m >= 0 else 270,
             "level": level})]


def test_adjacent_districts_get_one_zone_and_corner_touches_none(world: Engine) -> None:
    counts = rebuild(world)
    assert counts == {"district": 1, "street": 2}
    assert pairs(world, "district") == [(XICHENG, FENGTAI, "derived")]
    with world.connect() as conn:
        width, valid, kind = conn.execute(text(
            "SELECT width_m, ST_IsValid(geom), GeometryType(geom) FROM joint_zones "
            "WHERE level = 'district'")).one()
    assert (width, valid, kind) == (50.0, True, "MULTIPOLYGON")


def test_zone_reaches_width_metres_on_each_side_of_the_border(world: Engine) -> None:
    rebuild(world, width_m=50.0)
    pair = [(XICHENG, FENGTAI)]
    assert zones_holding(world, BORDER_LON, 39.87) == pair
    assert zones_holding(world, BORDER_LON, 39.87, east_m=30) == pair
    assert zones_holding(world, BORDER_LON, 39.87, east_m=-30) == pair
    assert zones_holding(world, BORDER_LON, 39.87, east_m=80) == []
    assert zones_holding(world, BORDER_LON, 39.87, east_m=-80) == []
    rebuild(world, width_m=100.0)
    assert zones_holding(world, BORDER_LON, 39.87, east_m=80) == pair


def test_streets_across_a_district_border_get_a_street_zone(world: Engine) -> None:
    rebuild(world)
    assert pairs(world, "street") == [("110102001", "110102002", "derived"),
                                      ("110102002", "110106001", "derived")]
    assert zones_holding(world, BORDER_LON, 39.87, east_m=30, level="street") == [
        ("110102002", "110106001")]


def test_rebuild_follows_a_boundary_revision(world: Engine) -> None:
    rebuild(world)
    with world.begin() as conn:
        before = conn.scalar(text("SELECT now() - interval '1 minute'"))
        # 丰台 gives up its northern half: the shared border now ends at 39.87.
        for code, level in ((FENGTAI, "district"), ("110106001", "street")):
            conn.execute(text("UPDATE jurisdictions SET valid_to = now() "
                              "WHERE code = :code AND valid_to IS NULL"), {"code": code})
            conn.execute(text("""
                INSERT INTO jurisdictions (level, code, name, geom, valid_from)
                VALUES (:level, :code, :code,
                        ST_Multi(ST_MakeEnvelope(116.32, 39.86, 116.34, 39.87, 4326)), now())
            """), {"level": level, "code": code})
    assert zones_holding(world, BORDER_LON, 39.875) == [(XICHENG, FENGTAI)]  # stale until rebuilt
    assert rebuild(world) == {"district": 1, "street": 2}
    assert zones_holding(world, BORDER_LON, 39.865) == [(XICHENG, FENGTAI)]
    assert zones_holding(world, BORDER_LON, 39.875) == []
    assert zones_holding(world, BORDER_LON, 39.875, level="street") == []
    # Zones as of an instant before the revision follow the old boundary.
    rebuild(world, at=before)
    assert zones_holding(world, BORDER_LON, 39.875) == [(XICHENG, FENGTAI)]


def test_a_jurisdictions_import_rebuilds_the_zones(engine: Engine, tmp_path: Path) -> None:
    frame = gpd.GeoDataFrame(
        {"code": [XICHENG, FENGTAI], "name": ["西城区", "丰台区"], "level": ["district"] * 2},
        geometry=[box(*WORLD[(XICHENG, "district")]), box(*WORLD[(FENGTAI, "district")])],
        crs="EPSG:4326")
    path = tmp_path / "districts.geojson"
    frame.to_file(path, engine="pyogrio")
    report = import_file(engine, "jurisdictions", path, ImportOptions(dry_run=True))
    assert report.loaded == 0 and pairs(engine, "district") == []
    import_file(engine, "jurisdictions", path, ImportOptions())
    assert pairs(engine, "district") == [(XICHENG, FENGTAI, "derived")]


SQUARE = {"type": "Polygon", "coordinates": [[[116.315, 39.865], [116.325, 39.865],
                                              [116.325, 39.875], [116.315, 39.875],
                                              [116.315, 39.865]]]}


def test_drawn_zones_are_normalised_audited_and_survive_rebuilds(world: Engine) -> None:
    rebuild(world)
    with world.begin() as conn:
        zone = add_drawn_zone(conn, level="district", code_a=FENGTAI, code_b=XICHENG,
                              geom_geojson=SQUARE, by=Actor("tester", request_id="r-1"))
    assert (zone["code_a"], zone["code_b"], zone["origin"]) == (XICHENG, FENGTAI, "drawn")
    assert 700_000 < zone["area_m2"] < 1_000_000  # ~850 m x 1110 m
    with world.connect() as conn:
        audit = conn.execute(text(
            "SELECT actor, object_id, after->>'code_a', district_code, request_id "
            "FROM audit_log WHERE action = 'joint_zone.add'")).one()
    assert tuple(audit) == ("tester", str(zone["id"]), XICHENG, XICHENG, "r-1")
    assert rebuild(world) == {"district": 1, "street": 2}
    assert pairs(world, "district") == [(XICHENG, FENGTAI, "derived"), (XICHENG, FENGTAI, "drawn")]
    with world.connect() as conn:
        assert conn.scalar(text("SELECT id FROM joint_zones WHERE origin = 'drawn'")) == zone["id"]


BOWTIE = {"type": "Polygon", "coordinates": [[[116.31, 39.86], [116.33, 39.88],
                                              [116.33, 39.86], [116.31, 39.88],
                                              [116.31, 39.86]]]}
METRIC = {"type": "Polygon", "coordinates": [[[440000, 4415000], [441000, 4415000],
                                              [441000, 4416000], [440000, 4415000]]]}


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"level": "community"}, "level", "district, street"),
    ({"code_a": "11010"}, "code_a", "6-digit district"),
    ({"code_a": "110102001"}, "code_a", "6-digit district"),
    ({"code_b": XICHENG}, "code_b", "differ"),
    ({"code_b": "110199"}, "code_b", "no district 110199 is in force"),
    ({"level": "street", "code_b": "110102002"}, "code_a", "9-digit street"),
    ({"geom_geojson": {"type": "Point", "coordinates": [116.32, 39.87]}}, "geom", "Point"),
    ({"geom_geojson": BOWTIE}, "geom", "Self-intersection"),
    ({"geom_geojson": METRIC}, "geom", "longitude/latitude"),
    ({"geom_geojson": "{not json"}, "geom", "not GeoJSON"),
    ({"geom_geojson": {"type": "Polygon", "coordinates": []}}, "geom", "empty"),
])
def test_bad_drawn_zones_are_refused_naming_the_field(
        world: Engine, changes: dict[str, Any], field: str, words: str) -> None:
    args: dict[str, Any] = {"level": "district", "code_a": XICHENG, "code_b": FENGTAI,
                            "geom_geojson": SQUARE, **changes}
    with world.begin() as conn, pytest.raises(InvalidInput) as caught:
        add_drawn_zone(conn, by=BY, **args)
    assert caught.value.field == field
    assert words in caught.value.message
    with world.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM joint_zones")) == 0
        assert conn.scalar(text("SELECT count(*) FROM audit_log")) == 0


def test_a_retired_jurisdiction_cannot_take_a_drawn_zone(world: Engine) -> None:
    with world.begin() as conn:
        conn.execute(text("UPDATE jurisdictions SET valid_to = now() - interval '1 second' "
                          "WHERE code = :c"), {"c": FENGTAI})
    with world.begin() as conn, pytest.raises(InvalidInput) as caught:
        add_drawn_zone(conn, level="district", code_a=XICHENG, code_b=FENGTAI,
                       geom_geojson=SQUARE, by=BY)
    assert caught.value.field == "code_b"


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"width_m": 0.0}, "width_m"), ({"width_m": float("nan")}, "width_m"),
    ({"metric_srid": 4326}, "metric_srid"), ({"metric_srid": 999999}, "metric_srid"),
])
def test_rebuild_refuses_bad_width_or_crs(world: Engine, kwargs: dict[str, Any],
                                          field: str) -> None:
    with world.begin() as conn, pytest.raises(InvalidInput) as caught:
        rebuild_joint_zones(conn, **kwargs)
    assert caught.value.field == field


def test_cli_rebuilds_and_lists(db_url: str, world: Engine) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": db_url, "COLUMNS": "200"}
    built = runner.invoke(app, ["zones", "rebuild", "--width", "30"], env=env)
    assert built.exit_code == 0, built.output
    assert "1 district, 2 street" in built.output
    listed = runner.invoke(app, ["zones", "list"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.output.splitlines() if "derived" in line]
    assert [[cell for cell in row if cell != "│"] for row in rows] == [
        ["district", "derived", "1"], ["street", "derived", "2"]]
    with world.connect() as conn:
        assert conn.scalar(text("SELECT DISTINCT width_m FROM joint_zones")) == 30.0
        assert conn.scalar(text("SELECT after->>'street' FROM audit_log "
                                "WHERE action = 'joint_zone.rebuild'")) == "2"


def test_planners_add_drawn_zones_over_http(world: Engine, settings: Settings) -> None:
    engine = world
    ring = [[116.315, 39.865], [116.325, 39.865], [116.325, 39.875], [116.315, 39.865]]
    body = {"level": "district", "code_a": "110106", "code_b": "110102",
            "geometry": {"type": "Polygon", "coordinates": [ring]}}
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        sign_in(client, engine, "planner")
        created = client.post("/api/v1/joint-zones", json=body)
        assert created.status_code == 201, created.text
        assert (created.json()["code_a"], created.json()["origin"]) == ("110102", "drawn")
        bad = client.post("/api/v1/joint-zones", json={**body, "code_b": "999999"})
        assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "code_b"
        sign_in(client, engine, "viewer")
        assert client.post("/api/v1/joint-zones", json=body).status_code == 403
