"""Joint zones (联合哨): bands along the shared boundary of two adjacent jurisdictions of the
same level (district or street), derived by PostGIS in one set-based statement per level,
plus hand-drawn zones that rebuilds keep."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import shapely
from shapely.errors import ShapelyError
from sqlalchemy import Connection, text

from gis import events
from gis.audit import Actor, record
from gis.errors import InvalidInput
from gis.features import check_code

ZoneLevel = Literal["district", "street"]
LEVELS: tuple[ZoneLevel, ...] = ("district", "street")
DEFAULT_WIDTH_M = 50.0
# Overlay grid (metres) for the shared boundary: generated or reprojected boundaries that
# should coincide are often a few millimetres apart, and an exact intersection then drops
# whole stretches of a shared border. Snap-rounding to 1 cm makes them one line.
SNAP_M = 0.01

# Adjacent pairs in force at :at; zone = every point within :width_m of the shared boundary.
# The boundary intersection is computed once per pair (MATERIALIZED), in metres.
_DERIVE = text("""
    WITH shared AS MATERIALIZED (
      SELECT a.code AS code_a, b.code AS code_b,
             ST_CollectionExtract(ST_Intersection(ST_Boundary(ST_Transform(a.geom, :srid)),
                                                  ST_Boundary(ST_Transform(b.geom, :srid)),
                                                  :snap_m), 2) AS line
      FROM jurisdictions a
      JOIN jurisdictions b ON b.level = a.level AND a.code < b.code AND a.geom && b.geom
      WHERE a.level = :level
        AND tstzrange(a.valid_from, a.valid_to) @> CAST(:at AS timestamptz)
        AND tstzrange(b.valid_from, b.valid_to) @> CAST(:at AS timestamptz))
    INSERT INTO joint_zones (level, code_a, code_b, origin, width_m, geom)
    SELECT :level, code_a, code_b, 'derived', :width_m,
           ST_Multi(ST_CollectionExtract(ST_MakeValid(
             ST_Transform(ST_Buffer(line, :width_m), 4326)), 3))
    FROM shared
    WHERE ST_Length(line) > 0
""")


def rebuild_joint_zones(conn: Connection, *, width_m: float = DEFAULT_WIDTH_M,
                        metric_srid: int = 4548, at: datetime | None = None) -> dict[str, int]:
    """Replace the derived zones with one per pair of adjacent jurisdictions in force at `at`
    (default: now), at district and street level (street pairs across a district border
    included); return the number of zones per level. Drawn zones are kept.

    Adjacent means sharing a boundary of positive length (touching at a point does not
    count). A zone holds every point within `width_m` metres of the shared boundary, on
    either side of it (so it is 2 × width_m wide), measured in `metric_srid`.
    """
    if not (math.isfinite(width_m) and width_m > 0):
        raise InvalidInput(f"width must be a positive number of metres; got {width_m}",
                           field="width_m")
    _check_metric(conn, metric_srid)
    when = at or conn.scalar(text("SELECT now()"))
    # Writers wait (readers do not), so concurrent rebuilds cannot both insert.
    conn.execute(text("LOCK TABLE joint_zones IN SHARE ROW EXCLUSIVE MODE"))
    before = conn.execute(_EXTENT, {"origin": "derived"}).one()
    conn.execute(text("DELETE FROM joint_zones WHERE origin = 'derived'"))
    params = {"srid": metric_srid, "snap_m": SNAP_M, "at": when, "width_m": width_m}
    counts: dict[str, int] = {
        level: int(conn.execute(_DERIVE, {**params, "level": level}).rowcount)
        for level in LEVELS}
    after = conn.execute(_EXTENT, {"origin": "derived"}).one()
    _announce(conn, [before, after], counts=counts, width_m=width_m)
    return counts


# The extent and the districts of the zones of one origin (None: every zone).
_EXTENT = text("""
    SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e), codes
    FROM (SELECT ST_Extent(geom) AS e,
                 coalesce(array_agg(DISTINCT left(code_a, 6))
                          || array_agg(DISTINCT left(code_b, 6)), '{}') AS codes
          FROM joint_zones
          WHERE CAST(:origin AS text) IS NULL OR origin = :origin) x
""")


def _announce(conn: Connection, extents: list[Any], **payload: Any) -> None:
    """A live event joint_zones.changed (gis/events.py) over the union of `extents`
    (rows of `_EXTENT`: minx, miny, maxx, maxy, codes)."""
    boxes = [e for e in extents if e[0] is not None]
    codes = {c for e in extents for c in (e[4] or [])}
    box = events.bbox(min(b[0] for b in boxes), min(b[1] for b in boxes),
                      max(b[2] for b in boxes), max(b[3] for b in boxes)) if boxes else None
    events.emit(conn, "joint_zones.changed", codes, layers=["joint_zones"], bbox=box,
                **payload)


def _check_metric(conn: Connection, srid: int) -> None:
    proj4 = conn.scalar(text("SELECT proj4text FROM spatial_ref_sys WHERE srid = :srid"),
                        {"srid": srid})
    if not proj4 or "+units=m" not in proj4:
        raise InvalidInput(f"EPSG:{srid} is not a projected CRS in metres known to PostGIS",
                           field="metric_srid")


def add_drawn_zone(conn: Connection, *, level: str, code_a: str, code_b: str,
                   geom_geojson: Mapping[str, Any] | str, by: Actor) -> dict[str, Any]:
    """Store a hand-drawn zone between two jurisdictions of `level` in force now (the pair is
    stored ordered, code_a < code_b); audited in the caller's transaction.

    Raises InvalidInput naming the field: level, code_a, code_b or geom (a valid Polygon or
    MultiPolygon in WGS84 lon/lat, as GeoJSON).
    """
    if level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}; got {level!r}",
                           field="level")
    codes = {"code_a": check_code(code_a, (level,), "code_a"),
             "code_b": check_code(code_b, (level,), "code_b")}
    if code_a == code_b:
        raise InvalidInput("code_b must differ from code_a", field="code_b")
    in_force = set(conn.scalars(
        text("SELECT code FROM jurisdictions WHERE level = :level AND code IN (:a, :b) "
             "AND tstzrange(valid_from, valid_to) @> now()"),
        {"level": level, "a": code_a, "b": code_b}))
    for name, code in codes.items():
        if code not in in_force:
            raise InvalidInput(f"{name}: no {level} {code} is in force", field=name)
    wkb = _polygon_wkb(geom_geojson)
    first, second = sorted((code_a, code_b))
    zone = conn.execute(
        text("""
            INSERT INTO joint_zones (level, code_a, code_b, origin, geom, created_by)
            VALUES (:level, :a, :b, 'drawn', ST_Multi(ST_GeomFromWKB(:wkb, 4326)), :user_id)
            RETURNING id, level, code_a, code_b, origin, width_m, created_by, created_at,
                      round(ST_Area(geom::geography))::bigint AS area_m2
        """),
        {"level": level, "a": first, "b": second, "wkb": wkb, "user_id": by.user_id},
    ).mappings().one()
    result = dict(zone)
    record(conn, by, action="joint_zone.add", object_type="joint_zone",
           object_id=str(result["id"]), after=result,
           district_code=first[:6])
    extent = conn.execute(text(
        "SELECT ST_XMin(geom), ST_YMin(geom), ST_XMax(geom), ST_YMax(geom), "
        "ARRAY[left(code_a, 6), left(code_b, 6), code_a, code_b] FROM joint_zones "
        "WHERE id = :id"), {"id": result["id"]}).one()
    _announce(conn, [extent], zone_id=result["id"], level=level)
    return result


def _polygon_wkb(value: Mapping[str, Any] | str) -> bytes:
    """WKB of a GeoJSON Polygon/MultiPolygon that is valid, non-empty and in lon/lat."""
    try:
        geom = shapely.from_geojson(value if isinstance(value, str) else json.dumps(value))
    except (ShapelyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"geom is not GeoJSON geometry: {exc}", field="geom") from exc
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise InvalidInput(f"geom must be a Polygon or MultiPolygon; got {geom.geom_type}",
                           field="geom")
    if geom.is_empty:
        raise InvalidInput("geom is empty", field="geom")
    if not geom.is_valid:
        raise InvalidInput(f"geom is not a valid polygon: {shapely.is_valid_reason(geom)}",
                           field="geom")
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidInput("geom must be WGS84 longitude/latitude (degrees)", field="geom")
    return bytes(shapely.to_wkb(shapely.force_2d(geom)))


def zone_counts(conn: Connection) -> list[dict[str, Any]]:
    """Number of zones by level and origin."""
    rows = conn.execute(text(
        "SELECT level, origin, count(*) AS zones FROM joint_zones "
        "GROUP BY level, origin ORDER BY level, origin"))
    return [dict(row) for row in rows.mappings()]
