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


# One statement in a PL/pgSQL function (migrations/versions/0007_place_function.py), so its
# plan is kept per connection: every lookup is an index probe on the point (subdivided parts,
# KNN on buildings and streets), jurisdiction names for the joint list joined at the end.
# PLACE_CALL is the call alone, for statements that place a point among other work (intake).
PLACE_CALL = "gridops_place(:lon, :lat, :at, :building_m, :street_m)"
_PLACE = text(f"SELECT {PLACE_CALL}")


def place_params(point: Point, at: datetime | None) -> dict[str, Any]:
    """The bound parameters of PLACE_CALL."""
    return {"lon": point.lon, "lat": point.lat, "at": at,
            "building_m": BUILDING_SNAP_M, "street_m": STREET_SNAP_M}


def place(conn: Connection, point: Point, at: datetime) -> dict[str, Any]:
    """The placement of `point` at instant `at` (one round trip). InvalidInput when the
    point is outside every district in force then (the service area)."""
    return placement_of(conn, point, at, conn.scalar(_PLACE, place_params(point, at)))


def placement_of(conn: Connection, point: Point, at: datetime,
                 found: dict[str, Any]) -> dict[str, Any]:
    """What PLACE_CALL `found` for `point` at `at`, as `place` returns it."""
    if found["district"] is None:
        raise InvalidInput(outside_message(conn, point), field="lon")
    return {"point": {"lon": round(point.lon, 7), "lat": round(point.lat, 7),
                      "input_crs": point.input_crs, "input_lon": point.input_lon,
                      "input_lat": point.input_lat},
            "at": at.isoformat(), **found}


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
