"""Placement (DESIGN.md §3, the heart): for a point and a time, the district, street,
community and grid in force, the building (containing, else nearest within 5 m), the
nearest 街巷 segment within 50 m with its chief, and every joint (联合哨) zone containing
it — in one database round trip, on GiST-indexed, ST_Subdivide'd lookup parts.

A point is a joint case when it lies in a joint zone, or in a building whose area is shared
between jurisdictions: the case names every jurisdiction involved, with the building's area
share where there is one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np
from sqlalchemy import Connection, text

from gis.crs import bd09_to_wgs84, gcj02_to_wgs84
from gis.errors import InvalidInput

PointCrs = Literal["wgs84", "gcj02", "bd09"]
POINT_CRS: tuple[PointCrs, ...] = ("wgs84", "gcj02", "bd09")
BUILDING_SNAP_M = 5.0
STREET_SNAP_M = 50.0


@dataclass(frozen=True)
class Point:
    """A WGS84 point, and what the caller sent."""

    lon: float
    lat: float
    input_crs: PointCrs
    input_lon: float
    input_lat: float


def to_wgs84(lon: float, lat: float, crs: str = "wgs84") -> Point:
    """Check a lon/lat pair in `crs` (wgs84, gcj02 or bd09) and convert it to WGS84.
    InvalidInput names the field: not finite, out of range, swapped, unknown crs."""
    if crs not in POINT_CRS:
        raise InvalidInput(f"crs must be one of {', '.join(POINT_CRS)}; got {crs!r}",
                           field="crs")
    for name, value in (("lon", lon), ("lat", lat)):
        if not math.isfinite(value):
            raise InvalidInput(f"{name} must be a finite number; got {value}", field=name)
    if abs(lat) > 90 and abs(lon) <= 90:
        raise InvalidInput(f"lat {lat:g} is out of range: lon and lat look swapped "
                           f"(send lon={lat:g}, lat={lon:g})", field="lat")
    if abs(lon) > 180 or abs(lat) > 90:
        raise InvalidInput("lon must be within -180..180 and lat within -90..90 (degrees, "
                           "not projected metres)", field="lon" if abs(lon) > 180 else "lat")
    x, y = np.array([lon], dtype=float), np.array([lat], dtype=float)
    if crs == "gcj02":
        x, y = gcj02_to_wgs84(x, y)
    elif crs == "bd09":
        x, y = bd09_to_wgs84(x, y)
    return Point(float(x[0]), float(y[0]), crs, lon, lat)


# One statement: every lookup is an index probe on the point (parts, KNN on buildings and
# streets); jurisdiction names for the joint list are joined at the end.
_PLACE = text("""
WITH p AS (
  SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g, CAST(:at AS timestamptz) AS t
), area AS (
  SELECT DISTINCT ON (jp.level) jp.level, j.code, j.name
  FROM p, jurisdiction_parts jp JOIN jurisdictions j ON j.id = jp.jurisdiction_id
  WHERE ST_Intersects(jp.geom, p.g)
    AND jp.valid_from <= p.t AND (jp.valid_to IS NULL OR jp.valid_to > p.t)
  ORDER BY jp.level, j.code
), grid AS (
  SELECT g.id, g.code, g.name
  FROM p, grid_parts gp JOIN grids g ON g.id = gp.grid_id
  WHERE ST_Intersects(gp.geom, p.g)
    AND gp.valid_from <= p.t AND (gp.valid_to IS NULL OR gp.valid_to > p.t)
  ORDER BY g.code LIMIT 1
), building AS (
  SELECT b.id, b.name, b.address, b.households, ST_Distance(b.geom::geography, p.g::geography)
         AS distance_m
  FROM p, LATERAL (SELECT * FROM buildings b ORDER BY b.geom <-> p.g LIMIT 8) b
  WHERE ST_DWithin(b.geom::geography, p.g::geography, :building_m)
  ORDER BY distance_m, b.id LIMIT 1
), shares AS (
  SELECT s.level, s.code, s.share, s.area_m2
  FROM building JOIN building_shares s ON s.building_id = building.id
), segment AS (
  SELECT s.id, s.name, s.road_class, s.street_office_code,
         ST_Distance(s.geom::geography, p.g::geography) AS distance_m
  FROM p, LATERAL (SELECT * FROM streets s ORDER BY s.geom <-> p.g LIMIT 8) s
  WHERE ST_DWithin(s.geom::geography, p.g::geography, :street_m)
  ORDER BY distance_m, s.id LIMIT 1
), chief AS (
  SELECT pe.id AS person_id, pe.name, pe.phone, sa.role
  FROM p, segment JOIN street_assignments sa ON sa.street_id = segment.id
       JOIN people pe ON pe.id = sa.person_id
  WHERE sa.role IN ('street_chief', 'alley_chief')
    AND sa.valid_from <= p.t AND (sa.valid_to IS NULL OR sa.valid_to > p.t)
  LIMIT 1
), stewards AS (
  SELECT pe.id AS person_id, pe.name, pe.phone
  FROM p, segment JOIN street_assignments sa ON sa.street_id = segment.id
       JOIN people pe ON pe.id = sa.person_id
  WHERE sa.role = 'steward'
    AND sa.valid_from <= p.t AND (sa.valid_to IS NULL OR sa.valid_to > p.t)
), zones AS (
  SELECT z.id, z.level, z.code_a, z.code_b, z.origin
  FROM p, joint_zones z WHERE ST_Intersects(z.geom, p.g)
), named AS (  -- every jurisdiction a zone or a straddling building involves
  SELECT level, code, max(share) AS share FROM (
    SELECT level, code_a AS code, NULL::float8 AS share FROM zones
    UNION ALL SELECT level, code_b, NULL FROM zones
    UNION ALL SELECT s.level, s.code, s.share FROM shares s
      WHERE s.level IN ('district', 'street')
        AND (SELECT count(*) FROM shares o WHERE o.level = s.level) > 1
  ) x GROUP BY level, code
)
SELECT json_build_object(
  'district', (SELECT json_build_object('code', code, 'name', name) FROM area
               WHERE level = 'district'),
  'street', (SELECT json_build_object('code', code, 'name', name) FROM area
             WHERE level = 'street'),
  'community', (SELECT json_build_object('code', code, 'name', name) FROM area
                WHERE level = 'community'),
  'grid', (SELECT json_build_object('id', id, 'code', code, 'name', name) FROM grid),
  'building', (SELECT json_build_object(
      'id', b.id, 'name', b.name, 'address', b.address, 'households', b.households,
      'distance_m', round(b.distance_m::numeric, 2),
      'shares', coalesce((SELECT json_agg(json_build_object(
          'level', s.level, 'code', s.code, 'share', round(s.share::numeric, 4),
          'area_m2', round(s.area_m2::numeric, 1)) ORDER BY s.level, s.code) FROM shares s),
        '[]'::json)) FROM building b),
  'street_segment', (SELECT json_build_object(
      'id', s.id, 'name', s.name, 'road_class', s.road_class,
      'street_office_code', s.street_office_code,
      'distance_m', round(s.distance_m::numeric, 2),
      'chief', (SELECT row_to_json(c) FROM chief c),
      'stewards', coalesce((SELECT json_agg(row_to_json(w) ORDER BY w.person_id)
                            FROM stewards w), '[]'::json)) FROM segment s),
  'joint', json_build_object(
      'is_joint', (SELECT count(*) > 1 FROM named n WHERE n.level = 'district')
                  OR (SELECT count(*) > 1 FROM named n WHERE n.level = 'street'),
      'jurisdictions', coalesce((SELECT json_agg(json_build_object(
          'level', n.level, 'code', n.code, 'name', j.name,
          'share', round(n.share::numeric, 4)) ORDER BY n.level, n.code)
        FROM named n LEFT JOIN jurisdictions j ON j.code = n.code
          AND j.valid_from <= (SELECT t FROM p)
          AND (j.valid_to IS NULL OR j.valid_to > (SELECT t FROM p))), '[]'::json),
      'zones', coalesce((SELECT json_agg(row_to_json(z) ORDER BY z.id) FROM zones z),
                        '[]'::json)))
""")


def place(conn: Connection, point: Point, at: datetime) -> dict[str, Any]:
    """The placement of `point` at instant `at` (one round trip). InvalidInput when the
    point is outside every district in force then (the service area)."""
    placement: dict[str, Any] = conn.scalar(_PLACE, {
        "lon": point.lon, "lat": point.lat, "at": at,
        "building_m": BUILDING_SNAP_M, "street_m": STREET_SNAP_M})
    if placement["district"] is None:
        raise InvalidInput(outside_message(conn, point), field="lon")
    return {"point": {"lon": round(point.lon, 7), "lat": round(point.lat, 7),
                      "input_crs": point.input_crs, "input_lon": point.input_lon,
                      "input_lat": point.input_lat},
            "at": at.isoformat(), **placement}


def outside_message(conn: Connection, point: Point) -> str:
    """Why a point found no district: the service area's extent, and a hint when the
    swapped pair (lat, lon) would have been inside."""
    row = conn.execute(text("""
        SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e),
               EXISTS (SELECT 1 FROM jurisdiction_parts
                       WHERE level = 'district' AND valid_to IS NULL
                         AND ST_Intersects(geom, ST_SetSRID(ST_MakePoint(:lat, :lon), 4326)))
        FROM (SELECT ST_Extent(geom) AS e FROM jurisdictions
              WHERE level = 'district' AND valid_to IS NULL) x
    """), {"lon": point.lon, "lat": point.lat}).one()
    if row[0] is None:
        return "no districts are loaded: the service area is empty (load boundaries first)"
    extent = f"lon {row[0]:.3f}..{row[2]:.3f}, lat {row[1]:.3f}..{row[3]:.3f}"
    if row[4]:
        return (f"point ({point.input_lon:g}, {point.input_lat:g}) is outside the service area "
                f"({extent}); lon and lat look swapped")
    return (f"point ({point.input_lon:g}, {point.input_lat:g}) in {point.input_crs} is "
            f"outside the service area ({extent})")
