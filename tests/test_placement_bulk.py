"""Bulk placement (`place_many`) gives the single-point SQL's answer (`place`) point by point on
the demo city: thousands of random points, points either side of the real 西城–丰台 border,
the straddling 1/3–2/3 building, points at the 5 m building and 50 m 街巷 limits, and versions
in force at each point's own time; bad points are simply outside."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Connection, Engine, text

from gis.democity.city import STRADDLER_NAME
from gis.errors import InvalidInput
from gis.placement import place, to_wgs84
from gis.placement_bulk import COLUMNS, PlacementIndex, place_many

NOW = datetime(2026, 11, 21, 10, tzinfo=ZoneInfo("Asia/Shanghai"))
TIE_M = 0.001  # two candidates this close in PostGIS may come out either way


def _at(when: datetime, n: int) -> np.ndarray:
    return np.full(n, np.datetime64(when.astimezone(ZoneInfo("UTC")).replace(tzinfo=None),
                                    "ns"))


def _random_points(conn: Connection, n: int) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = conn.execute(text(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(geom) "
        "AS e FROM jurisdictions WHERE level = 'district') x")).one()
    rng = np.random.default_rng(20261121)
    return rng.uniform(x0, x1, n), rng.uniform(y0, y1, n)


def _special_points(conn: Connection) -> tuple[np.ndarray, np.ndarray]:
    """Points either side of the 西城–丰台 border, in and around the straddling building,
    and at the building (5 m) and 街巷 (50 m) limits."""
    rows = conn.execute(text("""
        WITH x AS (SELECT geom FROM jurisdictions WHERE code = '110102' AND valid_to IS NULL),
             f AS (SELECT geom FROM jurisdictions WHERE code = '110106' AND valid_to IS NULL),
             line AS (SELECT ST_LineMerge(ST_Intersection(ST_Boundary(x.geom),
                                                          ST_Boundary(f.geom))) AS l FROM x, f),
             border AS (SELECT ST_Transform((ST_Dump(ST_LineInterpolatePoints(
                                  ST_GeometryN(l, 1), 0.02))).geom, 4548) AS p FROM line),
             near_border AS (
               SELECT ST_Transform(ST_Translate(p, dx, dy), 4326) AS q FROM border,
                 (VALUES (3.0), (-3.0), (20.0), (-20.0), (45.0), (-45.0), (55.0), (-55.0))
                   AS d(dx), (VALUES (-7.0), (11.0)) AS e(dy)),
             straddler AS (
               SELECT ST_Transform(geom, 4548) AS m FROM buildings WHERE name = :straddler),
             in_straddler AS (
               SELECT ST_Transform(ST_SetSRID(ST_MakePoint(
                        ST_XMin(m) + (ST_XMax(m) - ST_XMin(m)) * fx,
                        ST_YMin(m) + (ST_YMax(m) - ST_YMin(m)) * fy), 4548), 4326) AS q
               FROM straddler, generate_series(-0.1, 1.1, 0.1) AS fx,
                    generate_series(-0.1, 1.1, 0.2) AS fy),
             blds AS (SELECT ST_Transform(geom, 4548) AS m FROM buildings
                      ORDER BY id LIMIT 150 OFFSET 300),
             at_building AS (
               SELECT ST_Transform(ST_SetSRID(ST_MakePoint(ST_XMax(m) + d,
                        (ST_YMin(m) + ST_YMax(m)) / 2), 4548), 4326) AS q
               FROM blds, (VALUES (0.5), (3.0), (4.9), (5.1)) AS v(d)),
             segs AS (SELECT ST_Transform(ST_LineInterpolatePoint(ST_GeometryN(geom, 1), 0.37),
                                          4548) AS m FROM streets ORDER BY id LIMIT 150),
             at_street AS (
               SELECT ST_Transform(ST_Translate(m, 0, d), 4326) AS q
               FROM segs, (VALUES (0.0), (30.0), (49.5), (50.5)) AS v(d))
        SELECT ST_X(q), ST_Y(q) FROM near_border
        UNION ALL SELECT ST_X(q), ST_Y(q) FROM in_straddler
        UNION ALL SELECT ST_X(q), ST_Y(q) FROM at_building
        UNION ALL SELECT ST_X(q), ST_Y(q) FROM at_street
    """), {"straddler": STRADDLER_NAME}).all()
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def _expected(conn: Connection, lon: float, lat: float, at: datetime) -> dict[str, Any] | None:
    try:
        return place(conn, to_wgs84(lon, lat), at)
    except InvalidInput:
        return None


def _value(v: Any) -> Any:
    return None if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) else v


def _tie(conn: Connection, table: str, ids: tuple[int, int], lon: float, lat: float) -> bool:
    """Whether two candidates are equally far from the point in PostGIS (within TIE_M)."""
    query = {"buildings": "SELECT ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), "
                          "4326)::geography) FROM buildings WHERE id = :i",
             "streets": "SELECT ST_Distance(geom::geography, ST_SetSRID(ST_MakePoint(:x, :y), "
                        "4326)::geography) FROM streets WHERE id = :i"}[table]
    a, b = (conn.scalar(text(query), {"x": lon, "y": lat, "i": i}) for i in ids)
    return abs(a - b) <= TIE_M


def _differences(conn: Connection, got: pd.Series, want: dict[str, Any] | None,
                 lon: float, lat: float) -> list[str]:
    """What differs between a place_many row and a place() result (ties allowed)."""
    row = {k: _value(got[k]) for k in COLUMNS}
    if want is None:
        return [] if row["district_code"] is None else [f"outside, got {row['district_code']}"]
    problems = []
    for level in ("district", "street", "community"):
        expect = want[level] or {}
        if (row[f"{level}_code"], row[f"{level}_name"]) != (expect.get("code"),
                                                             expect.get("name")):
            problems.append(f"{level}: {row[f'{level}_code']} != {expect.get('code')}")
    grid = want["grid"] or {}
    if (row["grid_id"], row["grid_code"], row["grid_name"]) != (
            grid.get("id"), grid.get("code"), grid.get("name")):
        problems.append(f"grid: {row['grid_code']} != {grid.get('code')}")
    building = want["building"] or {}
    if row["building_id"] != building.get("id"):
        if None in (row["building_id"], building.get("id")) or not _tie(
                conn, "buildings", (row["building_id"], building["id"]), lon, lat):
            problems.append(f"building: {row['building_id']} != {building.get('id')}")
    elif building and abs(row["building_distance_m"] - float(building["distance_m"])) > 0.011:
        problems.append(f"building distance {row['building_distance_m']} != "
                        f"{building['distance_m']}")
    segment = want["street_segment"] or {}
    if row["segment_id"] != segment.get("id"):
        if None in (row["segment_id"], segment.get("id")) or not _tie(
                conn, "streets", (row["segment_id"], segment["id"]), lon, lat):
            problems.append(f"segment: {row['segment_id']} != {segment.get('id')}")
    else:
        if segment and abs(row["segment_distance_m"] - float(segment["distance_m"])) > 0.011:
            problems.append(f"segment distance {row['segment_distance_m']} != "
                            f"{segment['distance_m']}")
        if row["chief_person_id"] != (segment.get("chief") or {}).get("person_id"):
            problems.append(f"chief: {row['chief_person_id']}")
    joint = want["joint"]
    if bool(row["is_joint"]) != joint["is_joint"]:
        problems.append(f"is_joint: {row['is_joint']} != {joint['is_joint']}")
    elif joint["is_joint"] and json.loads(row["joint"]) != joint:
        problems.append(f"joint: {row['joint']} != {json.dumps(joint, ensure_ascii=False)}")
    elif not joint["is_joint"] and row["joint"] is not None:
        problems.append(f"joint without is_joint: {row['joint']}")
    return problems


def _compare(conn: Connection, frame: pd.DataFrame, lon: np.ndarray, lat: np.ndarray,
             at: list[datetime]) -> tuple[list[str], int]:
    """Mismatches (as messages) and how many points were inside the service area."""
    mismatches, inside = [], 0
    for i in range(len(lon)):
        want = _expected(conn, float(lon[i]), float(lat[i]), at[i])
        inside += want is not None
        for problem in _differences(conn, frame.iloc[i], want, float(lon[i]), float(lat[i])):
            mismatches.append(f"point {i} ({lon[i]:.7f}, {lat[i]:.7f}): {problem}")
    return mismatches, inside


def test_agrees_with_place_point_by_point(city: Engine) -> None:
    with city.connect() as conn:
        rx, ry = _random_points(conn, 2500)
        sx, sy = _special_points(conn)
        lon, lat = np.concatenate([rx, sx]), np.concatenate([ry, sy])
        frame = place_many(conn, lon, lat, _at(NOW, len(lon)))
        assert list(frame.columns) == COLUMNS and len(frame) == len(lon)
        mismatches, inside = _compare(conn, frame, lon, lat, [NOW] * len(lon))
    assert not mismatches, "\n".join(mismatches[:20])
    # The sample covers what matters: most points inside, buildings (containing and snapped),
    # 街巷 with chiefs, joint cases from zones and from the straddling building.
    assert inside > 1500
    assert frame["building_id"].notna().sum() > 300
    assert (frame["building_distance_m"] == 0).sum() > 100
    assert frame["building_distance_m"].between(0.01, 5).sum() > 100
    assert frame["chief_person_id"].notna().sum() > 1000
    assert frame["is_joint"].sum() > 100
    assert {"110102", "110106"} <= set(frame["district_code"].dropna())
    straddling = frame["joint"].dropna().map(json.loads).map(
        lambda j: any(s["share"] is not None for s in j["jurisdictions"]))
    assert straddling.sum() > 10


def test_the_straddling_building_names_both_sides_with_shares(city: Engine) -> None:
    with city.connect() as conn:
        lon, lat = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM buildings "
            "WHERE name = :n) b"), {"n": STRADDLER_NAME}).one()
        row = place_many(conn, np.array([lon]), np.array([lat]), _at(NOW, 1)).iloc[0]
    assert row["is_joint"]
    shares = {(j["level"], j["code"]): j["share"]
              for j in json.loads(row["joint"])["jurisdictions"]}
    assert shares[("district", "110102")] == pytest.approx(1 / 3, abs=0.01)
    assert shares[("district", "110106")] == pytest.approx(2 / 3, abs=0.01)
    assert shares[("street", "110102020")] == pytest.approx(1 / 3, abs=0.01)
    assert shares[("street", "110106002")] == pytest.approx(2 / 3, abs=0.01)


def test_each_point_gets_the_versions_in_force_at_its_own_time(city: Engine) -> None:
    """A grid redrawn (new code) and a community renamed from CHANGE, in a transaction that
    is rolled back (the shared city is left as it was): points before CHANGE get the old
    versions, points after it the new ones, in one call."""
    change = datetime(2026, 9, 1, tzinfo=ZoneInfo("Asia/Shanghai"))
    with city.connect() as conn:
        transaction = conn.begin()
        grid_id, code, community = conn.execute(text("""
            SELECT id, code, left(code, 12) FROM grids
            WHERE valid_to IS NULL AND valid_from < :t ORDER BY code LIMIT 1"""),
                                                {"t": change}).one()
        conn.execute(text("UPDATE grids SET valid_to = :t WHERE id = :id"),
                     {"t": change, "id": grid_id})
        conn.execute(text("""
            INSERT INTO grids (code, name, households, geom, valid_from)
            SELECT :code, '重划网格', households, geom, :t FROM grids WHERE id = :id"""),
                     {"code": code[:12] + "998", "t": change, "id": grid_id})
        conn.execute(text("UPDATE jurisdictions SET valid_to = :t WHERE code = :c "
                          "AND valid_to IS NULL"), {"t": change, "c": community})
        conn.execute(text("""
            INSERT INTO jurisdictions (level, code, name, kind, geom, valid_from, source,
                                       is_synthetic)
            SELECT level, code, name || '（更名）', kind, geom, :t, source, is_synthetic
            FROM jurisdictions WHERE code = :c AND valid_to = :t"""),
                     {"t": change, "c": community})
        rows = conn.execute(text("""
            SELECT ST_X(p), ST_Y(p) FROM (
              SELECT (ST_Dump(ST_GeneratePoints(geom, 20, 7))).geom AS p FROM grids
              WHERE id = :id) g"""), {"id": grid_id}).all()
        lon = np.array([r[0] for r in rows] * 2)
        lat = np.array([r[1] for r in rows] * 2)
        when = [change - timedelta(days=3)] * len(rows) + [change + timedelta(hours=2)] * len(
            rows)
        at = np.array([np.datetime64(w.astimezone(ZoneInfo("UTC")).replace(tzinfo=None), "ns")
                       for w in when])
        try:
            frame = place_many(conn, lon, lat, at, index=PlacementIndex.load(conn))
            mismatches, inside = _compare(conn, frame, lon, lat, when)
        finally:
            transaction.rollback()
    assert not mismatches, "\n".join(mismatches[:20])
    assert inside == len(lon)
    before, after = frame.iloc[:len(rows)], frame.iloc[len(rows):]
    assert set(before["grid_code"]) == {code}
    assert set(after["grid_code"]) == {code[:12] + "998"}
    assert not set(before["community_name"]).intersection(after["community_name"])
    assert all(name.endswith("（更名）") for name in after["community_name"])


def test_bad_points_are_outside_and_order_is_kept(city: Engine) -> None:
    lon = np.array([np.nan, 116.36, np.inf, 39.91, 121.47, 200.0, 116.3665])
    lat = np.array([39.91, np.nan, 39.91, 116.36, 31.23, 39.9, 39.9125])
    with city.connect() as conn:
        frame = place_many(conn, lon, lat, _at(NOW, len(lon)))
        last = place(conn, to_wgs84(116.3665, 39.9125), NOW)
        empty = place_many(conn, np.zeros(0), np.zeros(0), np.zeros(0, "datetime64[ns]"))
        with pytest.raises(ValueError, match="same length"):
            place_many(conn, np.zeros(2), np.zeros(3), _at(NOW, 2))
    assert frame["district_code"].iloc[:6].isna().all()
    assert frame["grid_code"].iloc[6] == last["grid"]["code"]
    assert list(empty.columns) == COLUMNS and len(empty) == 0
