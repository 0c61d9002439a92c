"""Placement on the demo city in PostGIS: every level, buildings (containing and snapped),
街巷 segments with their chiefs, joint cases (the 1/3–2/3 building on the 广外/太平桥
border, joint zones), GCJ-02/BD-09 inputs near the real 西城–丰台 border, time validity
across a boundary change, and bad points."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from sqlalchemy import Engine, text

from gis.crs import wgs84_to_bd09, wgs84_to_gcj02
from gis.democity.city import STRADDLER_NAME
from gis.errors import InvalidInput
from gis.placement import place, to_wgs84

NOW = datetime(2026, 11, 21, 10, tzinfo=ZoneInfo("Asia/Shanghai"))


def locate(city: Engine, lon: float, lat: float, crs: str = "wgs84",
           at: datetime = NOW) -> dict[str, Any]:
    with city.connect() as conn:
        return place(conn, to_wgs84(lon, lat, crs), at)


def one(city: Engine, sql: str, **params: object) -> Any:
    with city.connect() as conn:
        return conn.execute(text(sql), params).one()


def test_every_level_of_a_point_inside_a_grid(city: Engine) -> None:
    code, lon, lat = one(city, """
        SELECT code, ST_X(p), ST_Y(p) FROM (
          SELECT code, ST_PointOnSurface(geom) AS p FROM grids ORDER BY code LIMIT 1 OFFSET 700
        ) g""")
    placed = locate(city, lon, lat)
    assert placed["grid"]["code"] == code
    assert placed["community"]["code"] == code[:12]
    assert placed["street"]["code"] == code[:9]
    assert placed["district"]["code"] == code[:6]
    assert placed["district"]["name"] in {"东城区", "西城区", "丰台区"}


def test_building_containing_and_snapped_within_5_m(city: Engine) -> None:
    building_id, lon, lat = one(city, """
        SELECT id, ST_X(p), ST_Y(p) FROM (
          SELECT id, ST_PointOnSurface(geom) AS p FROM buildings ORDER BY id LIMIT 1 OFFSET 500
        ) b""")
    inside = locate(city, lon, lat)["building"]
    assert inside["id"] == building_id and inside["distance_m"] == 0
    # A point 3 m outside a building with no other building within 10 m snaps to it;
    # 20 m away from every building, none is reported.
    snapped_id, slon, slat = one(city, """
        WITH b AS (SELECT id, geom, ST_Transform(geom, 4548) AS m FROM buildings
                   ORDER BY id LIMIT 300),
        cand AS (
          SELECT b.id, ST_Transform(ST_SetSRID(ST_MakePoint(ST_XMax(b.m) + 3,
                 (ST_YMin(b.m) + ST_YMax(b.m)) / 2), 4548), 4326) AS p
          FROM b)
        SELECT id, ST_X(p), ST_Y(p) FROM cand c
        WHERE NOT EXISTS (SELECT 1 FROM buildings o WHERE o.id <> c.id
                          AND ST_DWithin(o.geom::geography, c.p::geography, 10))
          AND ST_Distance((SELECT geom FROM buildings WHERE id = c.id)::geography,
                          c.p::geography) BETWEEN 2.5 AND 4.5
        ORDER BY id LIMIT 1""")
    snapped = locate(city, slon, slat)["building"]
    assert snapped["id"] == snapped_id and 2.5 <= snapped["distance_m"] <= 4.5
    flon, flat = one(city, """
        SELECT ST_X(p), ST_Y(p) FROM (
          SELECT ST_PointOnSurface(geom) AS p FROM grids ORDER BY code) g
        WHERE NOT EXISTS (SELECT 1 FROM buildings b
                          WHERE ST_DWithin(b.geom::geography, g.p::geography, 20))
        LIMIT 1""")
    assert locate(city, flon, flat)["building"] is None


def test_street_segment_within_50_m_with_its_chief(city: Engine) -> None:
    street_id, name, lon, lat, chief, phone = one(city, """
        SELECT s.id, s.name, ST_X(p), ST_Y(p), pe.name, pe.phone FROM (
          SELECT id, name, ST_LineInterpolatePoint(ST_GeometryN(geom, 1), 0.5) AS p
          FROM streets) s
        JOIN street_assignments sa ON sa.street_id = s.id
          AND sa.role IN ('street_chief', 'alley_chief') AND sa.valid_to IS NULL
        JOIN people pe ON pe.id = sa.person_id
        WHERE NOT EXISTS (SELECT 1 FROM streets o WHERE o.id <> s.id
                          AND ST_DWithin(o.geom::geography, s.p::geography, 5))
        ORDER BY s.id LIMIT 1""")
    segment = locate(city, lon, lat)["street_segment"]
    assert (segment["id"], segment["name"]) == (street_id, name)
    assert segment["distance_m"] < 0.5
    assert (segment["chief"]["name"], segment["chief"]["phone"]) == (chief, phone)


def test_the_straddling_building_is_a_joint_case_with_shares(city: Engine) -> None:
    lon, lat = one(city, "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p "
                         "FROM buildings WHERE name = :n) b", n=STRADDLER_NAME)
    placed = locate(city, lon, lat)
    joint = placed["joint"]
    assert joint["is_joint"] is True
    shares = {(j["level"], j["code"]): j["share"] for j in joint["jurisdictions"]}
    assert shares[("district", "110102")] == pytest.approx(1 / 3, abs=0.01)
    assert shares[("district", "110106")] == pytest.approx(2 / 3, abs=0.01)
    assert shares[("street", "110102020")] == pytest.approx(1 / 3, abs=0.01)
    assert shares[("street", "110106002")] == pytest.approx(2 / 3, abs=0.01)
    names = {j["code"]: j["name"] for j in joint["jurisdictions"]}
    assert names["110102020"] == "广安门外街道" and names["110106"] == "丰台区"
    assert placed["building"]["name"] == STRADDLER_NAME


def border_points(city: Engine, offset_m: float) -> list[tuple[float, float, str]]:
    """Points `offset_m` inside 西城 and inside 丰台 from sample points of their real border:
    (lon, lat, district code)."""
    rows = city.connect().execute(text("""
        WITH x AS (SELECT geom FROM jurisdictions WHERE code = '110102' AND valid_to IS NULL),
             f AS (SELECT geom FROM jurisdictions WHERE code = '110106' AND valid_to IS NULL),
             line AS (SELECT ST_LineMerge(ST_Intersection(ST_Boundary(x.geom),
                                                          ST_Boundary(f.geom))) AS l
                      FROM x, f),
             samples AS (SELECT ST_Transform((ST_Dump(ST_LineInterpolatePoints(
                                  ST_GeometryN(l, 1), 0.1))).geom, 4548) AS p FROM line)
        SELECT ST_X(q), ST_Y(q), code FROM (
          SELECT ST_Transform(ST_Translate(p, dx, dy), 4326) AS q FROM samples,
            (VALUES (:d, 0.0), (-:d, 0.0), (0.0, :d), (0.0, -:d)) AS v(dx, dy)) c
        JOIN jurisdictions j ON j.level = 'district' AND j.valid_to IS NULL
          AND ST_Intersects(j.geom, c.q)
          AND NOT ST_DWithin(ST_Boundary(j.geom)::geography, c.q::geography, :d - 5)
    """), {"d": offset_m}).all()
    return [(float(x), float(y), str(code)) for x, y, code in rows]


@pytest.mark.parametrize("crs", ["gcj02", "bd09"])
def test_offset_coordinates_land_on_the_right_side_of_the_real_border(
        city: Engine, crs: str) -> None:
    points = border_points(city, 60.0)
    assert {code for _, _, code in points} >= {"110102", "110106"}
    convert = wgs84_to_gcj02 if crs == "gcj02" else wgs84_to_bd09
    misread = 0
    for lon, lat, code in points:
        x, y = convert(np.array([lon]), np.array([lat]))
        assert locate(city, float(x[0]), float(y[0]), crs)["district"]["code"] == code
        try:
            wrong = locate(city, float(x[0]), float(y[0]), "wgs84")["district"]["code"]
        except InvalidInput:
            wrong = "outside"
        misread += wrong != code
    assert misread > 0  # the ~500 m offset does put some points in the wrong district


def test_grid_in_force_at_the_time_asked(city: Engine) -> None:
    """Redraw one grid from 2026-11-21 (a new version with a new code): points keep the old
    grid before the change and get the new one after it."""
    change = datetime(2026, 11, 21, tzinfo=ZoneInfo("Asia/Shanghai"))
    with city.begin() as conn:
        old = conn.execute(text("""
            SELECT id, code, ST_X(ST_PointOnSurface(geom)), ST_Y(ST_PointOnSurface(geom))
            FROM grids WHERE valid_to IS NULL ORDER BY code DESC LIMIT 1""")).one()
        new_code = old[1][:12] + "999"
        conn.execute(text("UPDATE grids SET valid_to = :t WHERE id = :id"),
                     {"t": change, "id": old[0]})
        conn.execute(text("""
            INSERT INTO grids (code, name, households, geom, valid_from)
            SELECT :code, '重划网格', households, geom, :t FROM grids WHERE id = :id"""),
                     {"code": new_code, "t": change, "id": old[0]})
    before = locate(city, old[2], old[3], at=change - timedelta(days=30))
    after = locate(city, old[2], old[3], at=change + timedelta(hours=1))
    assert before["grid"]["code"] == old[1]
    assert after["grid"]["code"] == new_code
    assert before["community"]["code"] == after["community"]["code"]


@pytest.mark.parametrize(("lon", "lat", "crs", "field", "reason"), [
    (39.88, 116.35, "wgs84", "lat", "swapped"),  # lat, lon order
    (121.47, 31.23, "wgs84", "lon", "outside the service area"),  # Shanghai
    (116.35, 95.0, "wgs84", "lat", "-90..90"),
    (200.0, 39.9, "wgs84", "lon", "-180..180"),
    (math.nan, 39.9, "wgs84", "lon", "finite"),
    (116.35, math.inf, "wgs84", "lat", "finite"),
    (116.35, 39.9, "utm50", "crs", "wgs84, gcj02, bd09"),
])
def test_bad_points_name_the_field(city: Engine, lon: float, lat: float, crs: str, field: str,
                                   reason: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        locate(city, lon, lat, crs)
    assert raised.value.field == field
    assert reason in raised.value.message


def test_a_point_near_the_guangwai_taipingqiao_border_is_a_joint_case(city: Engine) -> None:
    lon, lat = one(city, """
        WITH a AS (SELECT geom FROM jurisdictions WHERE code = '110102020' AND valid_to IS NULL),
             b AS (SELECT geom FROM jurisdictions WHERE code = '110106002' AND valid_to IS NULL),
             border AS (SELECT ST_Transform(ST_LineInterpolatePoint(ST_GeometryN(
                          ST_LineMerge(ST_Intersection(ST_Boundary(a.geom), ST_Boundary(b.geom))),
                          1), 0.5), 4548) AS m FROM a, b),
             near AS (SELECT ST_Transform(ST_Translate(m, dx, dy), 4326) AS p
                      FROM border, (VALUES (30, 0), (-30, 0), (0, 30), (0, -30)) v(dx, dy))
        SELECT ST_X(p), ST_Y(p) FROM near
        WHERE NOT EXISTS (SELECT 1 FROM buildings WHERE ST_DWithin(geom::geography,
                                                                   near.p::geography, 6))
        LIMIT 1""")
    joint = locate(city, lon, lat)["joint"]
    assert joint["is_joint"] is True
    codes = {(j["level"], j["code"]) for j in joint["jurisdictions"]}
    assert {("district", "110102"), ("district", "110106"), ("street", "110102020"),
            ("street", "110106002")} <= codes
    assert all(j["share"] is None for j in joint["jurisdictions"])  # a zone, not a building
    assert {(z["level"], z["code_a"], z["code_b"]) for z in joint["zones"]} >= {
        ("district", "110102", "110106"), ("street", "110102020", "110106002")}


def test_codes_nest_where_a_community_sticks_out_of_its_street(city: Engine) -> None:
    """Demo communities may overlap a neighbouring street a little; a point there still gets
    one consistent chain (the grid's), in place() and in place_many()."""
    from gis.placement_bulk import place_many

    rows = city.connect().execute(text("""
        SELECT ST_X(p), ST_Y(p) FROM (
          SELECT ST_PointOnSurface(ST_Difference(c.geom, s.geom)) AS p
          FROM jurisdictions c JOIN jurisdictions s ON s.code = left(c.code, 9)
          WHERE c.level = 'community' AND NOT ST_Covers(s.geom, c.geom)
            AND ST_Area(ST_Difference(c.geom, s.geom)::geography) > 50
          LIMIT 20) x""")).all()
    assert rows, "the demo city has communities sticking out of their streets"
    lon = np.array([r[0] for r in rows])
    lat = np.array([r[1] for r in rows])
    with city.connect() as conn:
        bulk = place_many(conn, lon, lat, np.full(len(rows), np.datetime64(
            NOW.astimezone(ZoneInfo("UTC")).replace(tzinfo=None), "ns")))
    for i, (x, y) in enumerate(rows):
        placed = locate(city, x, y)
        if placed["grid"] is None:
            continue
        grid = placed["grid"]["code"]
        assert placed["community"]["code"] == grid[:12]
        assert placed["street"]["code"] == grid[:9]
        assert placed["district"]["code"] == grid[:6]
        assert bulk["community_code"][i] == grid[:12]
        assert bulk["street_code"][i] == grid[:9]
        assert bulk["community_name"][i] == placed["community"]["name"]
