"""Boundary dispute reports (边界争议报告): what lies on the line between two areas A and B —
two jurisdictions (district 6 / street office 9 / community 12 digits) or grids (15 digits)
in force at an instant — or between the two sides of one building or incident.

The report holds the shared boundary and its length, the overlaps and gaps between A and B,
the buildings straddling the line (area shares, households per side, the assignment rule
applied and whether the stored assignment agrees), the incidents near the line by class and
month with response times per side, the whistles (吹哨) on that stretch with each summoned
department's arrival (报到), and the versions of A and B. Everything is measured in the
metric CRS and computed set-based in PostGIS, a few statements per report; the geometry
of the disputed stretch is computed once and handed to the later statements.
Definitions: docs/boundary-report.md.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

from sqlalchemy import Connection, RowMapping, text

from gis.auth import Principal
from gis.dispatch import REQUIRED_ARRIVAL_S, WHISTLE_KINDS
from gis.errors import InvalidInput, NotFound
from gis.features import CODE_LENGTHS, GEOJSON_DECIMALS, LEVEL_NAMES
from gis.joint_zones import SNAP_M
from gis.scope import covers, incident_visible, sees_all

Level = Literal["district", "street", "community", "grid"]
LEVELS: tuple[str, ...] = get_args(Level)
LEVEL_OF_LENGTH = {length: level for level, length in CODE_LENGTHS.items()}
# Sides of a point or a piece of land: in A only, in B only, in both (an overlap), in neither.
SIDES = ("a", "b", "both", "none")
ASSIGNMENT_RULE = "majority_share"
ASSIGNMENT_RULE_TEXT = ("majority share: a straddling building belongs to the side holding "
                        "the larger part of its footprint (a tie goes to the side holding its "
                        "point on surface)")
ASSIGNMENT_RULE_ZH = ("多数面积归属：跨界楼栋归属于占其占地面积较大的一方"
                      "（相等时归属于楼栋内点所在一方）")
# Which levels a building or incident report tries, in order, when no level is given: the
# street office (街道) first — it blows the whistle (街乡吹哨) — then the district (where
# street offices are missing), then the finer levels.
SUBJECT_LEVELS: tuple[Level, ...] = ("street", "district", "community", "grid")
SHARE_TOLERANCE = 0.01  # stored shares agree with computed ones within 1 percentage point
DEFAULT_GAP_WIDTH_M = 20.0
MAX_BUFFER_M = 5000.0
# ST_Buffer approximates a quarter circle with 8 segments: its polygon lies at most
# r·(1 − cos(π/32)) inside the true buffer; the index pre-filter is widened by this.
_BUFFER_SLACK = 1 - math.cos(math.pi / 32)


@dataclass(frozen=True)
class ReportRules:
    """The measures and tolerances of a report (all stated in it).

    metric_srid: projected CRS in metres for lengths, areas and distances;
    snap_m: overlay grid for the shared boundary (as gis/joint_zones.py);
    area_tolerance_m2: overlaps, gaps and building parts smaller than this are not reported;
    gap_width_m: the widest gap between A and B that is detected (closing radius = half);
    buffer_m: incidents and whistles within this distance of the disputed stretch."""

    metric_srid: int = 4548
    snap_m: float = SNAP_M
    area_tolerance_m2: float = 1.0
    gap_width_m: float = DEFAULT_GAP_WIDTH_M
    buffer_m: float = 100.0

    @classmethod
    def from_settings(cls, settings: Any, buffer_m: float | None = None) -> ReportRules:
        """Rules from api.settings.Settings (metric_crs, plan_area_tolerance_m2,
        boundary_report_buffer_m), with the buffer overridden when given."""
        return cls(metric_srid=settings.metric_crs,
                   area_tolerance_m2=settings.plan_area_tolerance_m2,
                   buffer_m=settings.boundary_report_buffer_m if buffer_m is None else buffer_m)

    def checked(self) -> ReportRules:
        """Self, after checking the buffer (the field callers set)."""
        if not (math.isfinite(self.buffer_m) and 0 < self.buffer_m <= MAX_BUFFER_M):
            raise InvalidInput(f"buffer_m must be a number of metres in (0, {MAX_BUFFER_M:g}]; "
                               f"got {self.buffer_m:g}", field="buffer_m")
        return self


@dataclass(frozen=True)
class Area:
    """One side of the report: a jurisdiction or grid version in force at the report's `at`."""

    side: str
    table: Literal["jurisdictions", "grids"]
    row_id: int
    level: str
    code: str
    name: str | None
    valid_from: datetime
    valid_to: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {"side": self.side, "kind": "grid" if self.table == "grids" else "jurisdiction",
                "level": self.level, "level_zh": LEVEL_NAMES[self.level], "code": self.code,
                "name": self.name, "version_id": self.row_id,
                "valid_from": self.valid_from, "valid_to": self.valid_to}


# -- arguments ---------------------------------------------------------------------------------


def check_area_code(value: str, field: str) -> str:
    """A 6, 9, 12 or 15 digit code (district, street office, community, grid)."""
    raw = value.strip()
    if raw.isascii() and raw.isdigit() and len(raw) in LEVEL_OF_LENGTH:
        return raw
    raise InvalidInput(f"{field} must be a district (6 digits), street office (9), community "
                       f"(12) or grid (15) code; got {value!r}", field=field)


def _check_request(a: str | None, b: str | None, building: int | None, incident: int | None,
                   level: str | None) -> tuple[str | None, str | None]:
    """The mode's arguments are consistent; returns the checked codes (pair mode)."""
    given = [name for name, value in (("building", building), ("incident", incident))
             if value is not None]
    if len(given) > 1:
        raise InvalidInput("give either building or incident, not both", field="incident")
    if given:
        if a is not None or b is not None:
            raise InvalidInput(f"give either a and b, or {given[0]}, not both",
                               field="a" if a is not None else "b")
        subject = building if building is not None else incident
        if subject is None or subject < 1:
            raise InvalidInput(f"{given[0]} must be a positive id; got {subject}",
                               field=given[0])
        if level is not None and level not in LEVELS:
            raise InvalidInput(f"level must be one of {', '.join(LEVELS)}; got {level!r}",
                               field="level")
        return None, None
    if level is not None:
        raise InvalidInput("level applies to building or incident reports only", field="level")
    if a is None and b is None:
        raise InvalidInput("give two areas a and b (codes), or a building or an incident",
                           field="a")
    if a is None or b is None:
        missing = "a" if a is None else "b"
        raise InvalidInput(f"{missing} is missing: a report compares two areas a and b",
                           field=missing)
    code_a, code_b = check_area_code(a, "a"), check_area_code(b, "b")
    if code_a == code_b:
        raise InvalidInput(f"b must differ from a (both are {code_a})", field="b")
    inner, outer = sorted((code_a, code_b), key=len, reverse=True)
    if inner.startswith(outer):
        raise InvalidInput(
            f"b: {LEVEL_OF_LENGTH[len(inner)]} {inner} lies inside "
            f"{LEVEL_OF_LENGTH[len(outer)]} {outer}; compare areas that do not contain "
            "each other", field="b")
    return code_a, code_b


# -- resolving the two sides -----------------------------------------------------------------

_IN_FORCE = "tstzrange(valid_from, valid_to) @> CAST(:at AS timestamptz)"
_AREA = text(f"""
    SELECT 'jurisdictions' AS tbl, id, level, code, name, valid_from, valid_to
    FROM jurisdictions WHERE code = :code AND {_IN_FORCE}
    UNION ALL
    SELECT 'grids', id, 'grid', code, name, valid_from, valid_to
    FROM grids WHERE code = :code AND {_IN_FORCE}
""")  # noqa: S608 - constant fragment


def _area(conn: Connection, code: str, side: str, field: str, at: datetime) -> Area:
    row = conn.execute(_AREA, {"code": code, "at": at}).mappings().first()
    if row is None:
        level = LEVEL_OF_LENGTH[len(code)]
        raise NotFound(f"{field}: no {level} {code} is in force at {at.isoformat()}",
                       field=field)
    return Area(side, row["tbl"], int(row["id"]), row["level"], row["code"], row["name"],
                row["valid_from"], row["valid_to"])


# Every area of the given levels in force at :at that the building's footprint enters, with
# the area (m²) of the part inside it.
_BUILDING_AREAS = text(f"""
    WITH b AS MATERIALIZED (
        SELECT geom, ST_Transform(geom, :srid) AS gm FROM buildings WHERE id = :id)
    SELECT x.tbl, x.id, x.level, x.code, x.name, x.valid_from, x.valid_to,
           ST_Area(ST_Intersection(b.gm, ST_Transform(x.geom, :srid))) AS area_m2
    FROM b, LATERAL (
        SELECT 'jurisdictions' AS tbl, id, level, code, name, valid_from, valid_to, geom
        FROM jurisdictions WHERE geom && b.geom AND level = ANY(:levels) AND {_IN_FORCE}
        UNION ALL
        SELECT 'grids', id, 'grid', code, name, valid_from, valid_to, geom
        FROM grids WHERE geom && b.geom AND 'grid' = ANY(:levels) AND {_IN_FORCE}) x
    WHERE ST_Intersects(x.geom, b.geom)
""")  # noqa: S608 - constant fragment


def _building_sides(conn: Connection, building: int, level: str | None, at: datetime,
                    rules: ReportRules) -> tuple[Area, Area, str]:
    """The two areas a building straddles: at `level`, or the first level of SUBJECT_LEVELS
    where its footprint lies in two areas (parts above the area tolerance); the two largest
    parts, ordered by code."""
    if conn.scalar(text("SELECT 1 FROM buildings WHERE id = :id"), {"id": building}) is None:
        raise NotFound(f"no building {building}", field="building")
    levels = [level] if level else list(SUBJECT_LEVELS)
    rows = conn.execute(_BUILDING_AREAS, {"id": building, "levels": levels, "at": at,
                                          "srid": rules.metric_srid}).mappings().all()
    for candidate in levels:
        parts = sorted((r for r in rows if r["level"] == candidate
                        and r["area_m2"] > rules.area_tolerance_m2),
                       key=lambda r: (-r["area_m2"], r["code"]))
        if len(parts) >= 2:
            first, second = sorted(parts[:2], key=lambda r: r["code"])
            return (_area_of(first, "a"), _area_of(second, "b"), candidate)
    where = f"at level {level}" if level else f"at any level ({', '.join(levels)})"
    raise InvalidInput(f"building {building} straddles no boundary {where} in force at "
                       f"{at.isoformat()}", field="building")


def _area_of(row: RowMapping, side: str) -> Area:
    return Area(side, row["tbl"], int(row["id"]), row["level"], row["code"], row["name"],
                row["valid_from"], row["valid_to"])


# The areas of one level in force at :at nearest to the incident's point (the ones containing
# it first): a KNN pre-selection by bounding box, then exact distances in metres.
_INCIDENT_AREAS = text(f"""
    WITH p AS MATERIALIZED (SELECT geom, ST_Transform(geom, :srid) AS pm FROM incidents
                            WHERE id = :id)
    SELECT x.tbl, x.id, x.level, x.code, x.name, x.valid_from, x.valid_to,
           ST_Distance(ST_Transform(x.geom, :srid), p.pm) AS distance_m
    FROM p, LATERAL (
        (SELECT 'jurisdictions' AS tbl, id, level, code, name, valid_from, valid_to, geom
         FROM jurisdictions WHERE level = :level AND :level <> 'grid' AND {_IN_FORCE}
         ORDER BY geom <-> p.geom LIMIT 16)
        UNION ALL
        (SELECT 'grids', id, 'grid', code, name, valid_from, valid_to, geom
         FROM grids WHERE :level = 'grid' AND {_IN_FORCE}
         ORDER BY geom <-> p.geom LIMIT 16)) x
    ORDER BY distance_m, x.code
    LIMIT 2
""")  # noqa: S608 - constant fragment


def _incident_sides(conn: Connection, incident: int, level: str | None, at: datetime,
                    rules: ReportRules, reader: Principal | None) -> tuple[Area, Area, str]:
    """The two areas of `level` (default: street offices) nearest to the incident's point —
    the one holding it and the nearest other one across the line — ordered by code."""
    visible, params = incident_visible(reader) if reader is not None else ("true", {})
    found = conn.scalar(text(f"SELECT 1 FROM incidents i WHERE i.id = :id AND ({visible})"),  # noqa: S608
                        {**params, "id": incident})
    if found is None:
        raise NotFound(f"no incident {incident} (or not in your scope)", field="incident")
    chosen = level or "street"
    rows = conn.execute(_INCIDENT_AREAS, {"id": incident, "level": chosen, "at": at,
                                          "srid": rules.metric_srid}).mappings().all()
    if len(rows) < 2:
        raise InvalidInput(f"incident {incident}: fewer than two {chosen} areas are in force "
                           f"at {at.isoformat()}", field="incident")
    first, second = sorted(rows, key=lambda r: r["code"])
    return _area_of(first, "a"), _area_of(second, "b"), chosen


def _check_scope(reader: Principal | None, a: Area, b: Area, field_a: str,
                 field_b: str) -> None:
    """Scoped operators, viewers and planners read reports only on areas their scope holds
    (both sides); others get a 404, as for anything outside their scope."""
    if reader is None or sees_all(reader):
        return
    for area, field in ((a, field_a), (b, field_b)):
        if not covers(reader, area.code[:6], area.code[:9] if len(area.code) >= 9 else None):
            raise NotFound(f"{field}: no {area.level} {area.code} in your scope", field=field)


# -- geometry: shared boundary, overlaps, gaps --------------------------------------------------

_SIDES = """
    sides AS MATERIALIZED (
        SELECT s.side, ST_Transform(s.geom, :srid) AS geom FROM (
            SELECT 'a' AS side, geom FROM jurisdictions WHERE id = :a_jur
            UNION ALL SELECT 'a', geom FROM grids WHERE id = :a_grid
            UNION ALL SELECT 'b', geom FROM jurisdictions WHERE id = :b_jur
            UNION ALL SELECT 'b', geom FROM grids WHERE id = :b_grid) s),
    pair AS MATERIALIZED (
        SELECT a.geom AS ga, b.geom AS gb FROM sides a, sides b
        WHERE a.side = 'a' AND b.side = 'b')"""

# The shared boundary (boundaries intersected on the snap grid, merged into lines), the
# overlap A ∩ B and the gap candidates: the closing of A ∪ B (buffer out and back in by half
# the gap width) where A and B are both within the gap width, minus A ∪ B; then minus every
# other area of the same level(s) in force (land a neighbour holds is not a gap between A
# and B). The disputed stretch = shared boundary ∪ reported overlaps ∪ reported gaps, or the
# shortest line between A and B when they only touch at points or are apart.
_GEOMETRY = text(f"""
    WITH {_SIDES},
    calc AS MATERIALIZED (
        SELECT ga, gb, ST_Distance(ga, gb) AS distance_m, ST_Area(ga) AS area_a,
               ST_Area(gb) AS area_b,
               ST_LineMerge(ST_CollectionExtract(ST_Intersection(
                   ST_Boundary(ga), ST_Boundary(gb), :snap), 2)) AS line,
               ST_CollectionExtract(ST_Intersection(ga, gb, :snap), 3) AS overlap,
               ST_Union(ga, gb, :snap) AS u
        FROM pair),
    gap_raw AS MATERIALIZED (
        SELECT CASE WHEN c.distance_m <= :gap_width THEN ST_CollectionExtract(ST_Difference(
                   ST_Intersection(ST_Buffer(ST_Buffer(c.u, :half_gap), -:half_gap),
                                   ST_Intersection(ST_Buffer(c.ga, :gap_width),
                                                   ST_Buffer(c.gb, :gap_width))),
                   c.u, :snap), 3) END AS geom
        FROM calc c),
    gap_box AS MATERIALIZED (
        SELECT ST_Transform(geom, 4326) AS geom FROM gap_raw
        WHERE geom IS NOT NULL AND NOT ST_IsEmpty(geom)),
    others AS (
        SELECT ST_Union(ST_Transform(o.geom, :srid)) AS geom
        FROM gap_box x, LATERAL (
            SELECT j.geom FROM jurisdictions j
            WHERE j.geom && x.geom AND j.level = ANY(:levels) AND j.code <> ALL(:codes)
              AND tstzrange(j.valid_from, j.valid_to) @> CAST(:at AS timestamptz)
            UNION ALL
            SELECT g.geom FROM grids g
            WHERE :with_grids AND g.geom && x.geom AND g.code <> ALL(:codes)
              AND tstzrange(g.valid_from, g.valid_to) @> CAST(:at AS timestamptz)) o),
    gaps AS (
        SELECT CASE WHEN o.geom IS NULL THEN g.geom
                    ELSE ST_CollectionExtract(ST_Difference(g.geom, o.geom, :snap), 3)
               END AS geom
        FROM gap_raw g LEFT JOIN others o ON true),
    parts AS (
        SELECT 'overlap' AS kind, d.geom FROM calc, ST_Dump(calc.overlap) d
        UNION ALL
        SELECT 'gap', d.geom FROM gaps, ST_Dump(gaps.geom) d),
    kept AS MATERIALIZED (
        SELECT kind, geom, ST_Area(geom) AS area_m2 FROM parts
        WHERE ST_Area(geom) > :tolerance),
    stretch AS MATERIALIZED (
        SELECT CASE WHEN ST_IsEmpty(s.geom) THEN ST_ShortestLine(c.ga, c.gb) ELSE s.geom END
                 AS geom
        FROM calc c, LATERAL (
            SELECT ST_Collect(ARRAY[c.line] || coalesce(array_agg(k.geom), '{{}}'))
                     AS geom FROM kept k) s)
    SELECT c.distance_m, c.area_a, c.area_b, ST_Length(c.line) AS length_m,
           ST_NumGeometries(c.line) AS line_parts,
           ST_AsGeoJSON(ST_Transform(c.line, 4326), {GEOJSON_DECIMALS}) AS line_geojson,
           ST_AsBinary(s.geom) AS stretch_wkb,
           (SELECT ARRAY[ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)]
            FROM ST_Transform(s.geom, 4326) e) AS bbox,
           (SELECT coalesce(json_agg(json_build_object(
                'kind', k.kind, 'area_m2', k.area_m2,
                'max_width_m', 2 * (ST_MaximumInscribedCircle(k.geom)).radius,
                'geometry', CAST(ST_AsGeoJSON(ST_Transform(k.geom, 4326),
                                              {GEOJSON_DECIMALS}) AS json))
                ORDER BY k.kind, k.area_m2 DESC), '[]') FROM kept k) AS parts,
           (SELECT json_build_object(
                'a', CAST(ST_AsGeoJSON(ST_Transform(ga, 4326), {GEOJSON_DECIMALS}) AS json),
                'b', CAST(ST_AsGeoJSON(ST_Transform(gb, 4326), {GEOJSON_DECIMALS}) AS json))
            ) AS areas
    FROM calc c, stretch s
""")  # noqa: S608 - constant fragments


def _side_params(a: Area, b: Area) -> dict[str, Any]:
    return {"a_jur": a.row_id if a.table == "jurisdictions" else None,
            "a_grid": a.row_id if a.table == "grids" else None,
            "b_jur": b.row_id if b.table == "jurisdictions" else None,
            "b_grid": b.row_id if b.table == "grids" else None}


# -- straddling buildings ---------------------------------------------------------------------

# Buildings whose footprint meets the disputed stretch (pre-selected through the buildings'
# GiST index with the subdivided stretch) and has a part above the tolerance in each of A and
# B; shares of the footprint per side, households per side, the side the majority rule
# assigns it to, and the stored assignment (buildings.grid_code, building_shares).
_BUILDINGS = text(f"""
    WITH {_SIDES},
    stretch AS MATERIALIZED (SELECT ST_GeomFromWKB(:stretch, :srid) AS gm),
    pieces AS MATERIALIZED (  -- ST_Subdivide keeps only the top dimension of a collection
        SELECT ST_Transform(ST_Subdivide(ST_Segmentize(d.geom, 200), 64), 4326) AS geom
        FROM stretch, ST_Dump(stretch.gm) d),
    bm AS MATERIALIZED (
        SELECT DISTINCT ON (b.id) b.id, b.code, b.name, b.address, b.households, b.grid_code,
               b.geom, ST_Transform(b.geom, :srid) AS gm
        FROM pieces p JOIN buildings b ON ST_Intersects(b.geom, p.geom)
        ORDER BY b.id),
    shares AS (
        SELECT bm.*, ST_Area(bm.gm) AS area_m2,
               ST_Area(ST_Intersection(bm.gm, p.ga)) AS area_a,
               ST_Area(ST_Intersection(bm.gm, p.gb)) AS area_b,
               ST_Covers(p.ga, ST_PointOnSurface(bm.gm)) AS point_in_a
        FROM bm, pair p),
    kept AS (
        SELECT s.*, s.area_a / nullif(s.area_m2, 0) AS share_a,
               s.area_b / nullif(s.area_m2, 0) AS share_b
        FROM shares s WHERE s.area_a > :tolerance AND s.area_b > :tolerance),
    assigned AS (
        SELECT k.*, CASE WHEN abs(k.share_a - k.share_b) > 1e-9
                         THEN CASE WHEN k.share_a > k.share_b THEN 'a' ELSE 'b' END
                         WHEN k.point_in_a THEN 'a' ELSE 'b' END AS assigned_side,
               CASE WHEN left(k.grid_code, length(:a_code)) = :a_code THEN 'a'
                    WHEN left(k.grid_code, length(:b_code)) = :b_code THEN 'b' END
                 AS stored_side,
               (SELECT s.share FROM building_shares s WHERE s.building_id = k.id
                  AND s.level = :a_level AND s.code = :a_code) AS stored_share_a,
               (SELECT s.share FROM building_shares s WHERE s.building_id = k.id
                  AND s.level = :b_level AND s.code = :b_code) AS stored_share_b
        FROM kept k)
    SELECT x.id, x.code, x.name, x.address, x.households, x.area_m2, x.area_a AS area_a_m2,
           x.area_b AS area_b_m2, x.share_a, x.share_b,
           x.households * x.share_a AS households_a, x.households * x.share_b AS households_b,
           CAST(:rule AS text) AS rule, x.assigned_side,
           CASE x.assigned_side WHEN 'a' THEN CAST(:a_code AS text) ELSE :b_code END
             AS assigned_code,
           x.grid_code, x.stored_side,
           CASE WHEN x.stored_side IS NOT NULL THEN x.stored_side = x.assigned_side END
             AS matches_grid_code,
           x.stored_share_a, x.stored_share_b,
           CASE WHEN x.stored_share_a IS NOT NULL OR x.stored_share_b IS NOT NULL THEN
               abs(coalesce(x.stored_share_a, 0) - x.share_a) <= :share_tol
               AND abs(coalesce(x.stored_share_b, 0) - x.share_b) <= :share_tol END
             AS matches_stored_shares,
           ARRAY[ST_XMin(x.geom), ST_YMin(x.geom), ST_XMax(x.geom), ST_YMax(x.geom)] AS bbox,
           CAST(ST_AsGeoJSON(x.geom, {GEOJSON_DECIMALS}) AS json) AS geometry
    FROM assigned x
    ORDER BY x.id
""")  # noqa: S608 - constant fragments


# -- incidents and whistles near the line ---------------------------------------------------

_MEDIAN = "percentile_cont(0.5) WITHIN GROUP (ORDER BY {0})"
# Incidents reported by :at within :buffer metres of the stretch (pre-selected through the
# incidents' GiST index with the subdivided, slightly widened buffer; then the exact metric
# distance), with their side (A, B, both = in an overlap, none = in a gap or outside),
# response (report → first arrival on scene, 报到) and close (report → 结案) times; the
# aggregates per side and per class and month; the whistles on those incidents with each
# summoned department's first arrival.
_INCIDENTS = f"""
    WITH {_SIDES},
    stretch AS MATERIALIZED (SELECT ST_GeomFromWKB(:stretch, :srid) AS gm),
    zone AS MATERIALIZED (
        SELECT ST_Subdivide(ST_Transform(ST_Buffer(gm, :reach), 4326), 64) AS geom
        FROM stretch),
    cand AS MATERIALIZED (
        SELECT DISTINCT ON (i.id) i.* FROM zone z
        JOIN incidents i ON ST_Intersects(i.geom, z.geom)
        WHERE i.reported_at <= CAST(:at AS timestamptz)
        ORDER BY i.id),
    near AS MATERIALIZED (
        SELECT i.id, i.reported_at, i.status, i.closed_at, i.is_joint, i.district_code,
               i.street_code, i.grid_code, i.address,
               ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, i.geom,
               ec.kind AS class_kind, ec.code AS class_code, ec.name AS class_name,
               ec.major_code, ec.major_name,
               to_char(i.reported_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM') AS month,
               ST_Distance(t.pm, s.gm) AS distance_m,
               CASE WHEN ST_Covers(p.ga, t.pm) AND ST_Covers(p.gb, t.pm) THEN 'both'
                    WHEN ST_Covers(p.ga, t.pm) THEN 'a'
                    WHEN ST_Covers(p.gb, t.pm) THEN 'b' ELSE 'none' END AS side
        FROM cand i
        JOIN event_classes ec ON ec.id = i.event_class_id
        CROSS JOIN stretch s CROSS JOIN pair p
        CROSS JOIN LATERAL (SELECT ST_Transform(i.geom, :srid) AS pm) t
        WHERE ST_DWithin(t.pm, s.gm, :buffer) AND ({{visible}})),
    disp AS MATERIALIZED (
        SELECT n.side, d.incident_id, d.status, d.dispatched_at, d.on_scene_at,
               d.cancelled_at, coalesce(w.required_arrival_s, :required) AS required_s
        FROM near n
        CROSS JOIN LATERAL (SELECT * FROM dispatches x WHERE x.incident_id = n.id) d
        LEFT JOIN whistles w ON w.id = d.whistle_id),
    first AS (
        SELECT incident_id, min(on_scene_at) AS first_on_scene_at FROM disp
        GROUP BY incident_id),
    rows AS MATERIALIZED (
        SELECT n.*, f.first_on_scene_at,
               extract(epoch FROM f.first_on_scene_at - n.reported_at) AS response_s,
               CASE WHEN n.status = 'closed'
                    THEN extract(epoch FROM n.closed_at - n.reported_at) END AS close_s
        FROM near n LEFT JOIN first f ON f.incident_id = n.id),
    per_side AS (
        SELECT side, count(*) AS incidents,
               count(*) FILTER (WHERE status = 'closed') AS closed,
               count(*) FILTER (WHERE is_joint) AS joint,
               count(response_s) AS arrived,
               {_MEDIAN.format('response_s')} AS median_response_s,
               avg(response_s) AS mean_response_s,
               {_MEDIAN.format('close_s')} AS median_close_s,
               avg(close_s) AS mean_close_s
        FROM rows GROUP BY side),
    disp_side AS (
        SELECT side, count(*) AS dispatches,
               count(*) FILTER (WHERE due) AS arrivals_due,
               count(*) FILTER (WHERE due AND on_scene_at IS NOT NULL
                                AND on_scene_at - dispatched_at
                                    <= required_s * interval '1 second') AS arrived_on_time,
               {_MEDIAN.format('extract(epoch FROM on_scene_at - dispatched_at)')}
                 AS median_arrival_s
        FROM (SELECT d.*, NOT (d.on_scene_at IS NULL AND (
                     d.cancelled_at IS NOT NULL
                     OR (d.status IN ('dispatched', 'accepted', 'en_route')
                         AND now() < d.dispatched_at + d.required_s * interval '1 second')))
                     AS due
              FROM disp d) x
        GROUP BY side),
    by_class AS (
        SELECT month, class_kind AS kind, major_code, major_name, class_code AS code,
               class_name AS name,
               count(*) FILTER (WHERE side = 'a') AS a,
               count(*) FILTER (WHERE side = 'b') AS b,
               count(*) FILTER (WHERE side = 'both') AS "both",
               count(*) FILTER (WHERE side = 'none') AS "none",
               count(*) AS total
        FROM rows GROUP BY month, class_kind, major_code, major_name, class_code, class_name),
    wh AS (
        SELECT w.id, w.incident_id, w.kind, w.blown_at, w.required_arrival_s,
               w.jurisdiction_codes, w.note, n.side, n.distance_m,
               n.class_code, n.class_name,
               (SELECT coalesce(json_agg(json_build_object(
                    'department_id', s.department_id, 'department', dep.name,
                    'jurisdiction_code', s.jurisdiction_code,
                    'arrived_at', arr.at,
                    'minutes', extract(epoch FROM arr.at - w.blown_at) / 60,
                    'met', CASE WHEN arr.at IS NOT NULL
                                THEN arr.at - w.blown_at
                                     <= w.required_arrival_s * interval '1 second'
                                WHEN now() > w.blown_at
                                     + w.required_arrival_s * interval '1 second'
                                THEN false END)
                    ORDER BY s.jurisdiction_code, s.department_id), '[]')
                FROM whistle_summons s JOIN departments dep ON dep.id = s.department_id
                LEFT JOIN LATERAL (
                    SELECT min(d.on_scene_at) AS at FROM dispatches d
                    JOIN teams tm ON tm.id = d.team_id
                    WHERE d.incident_id = w.incident_id AND tm.department_id = s.department_id
                      AND (d.whistle_id = w.id
                           OR (d.whistle_id IS NULL AND d.dispatched_at >= w.blown_at))) arr
                  ON true
                WHERE s.whistle_id = w.id) AS summoned
        FROM near n CROSS JOIN LATERAL (
            SELECT * FROM whistles x
            WHERE x.incident_id = n.id AND x.blown_at <= CAST(:at AS timestamptz)) w)
    SELECT json_build_object(
        'items', (SELECT coalesce(json_agg(json_build_object(
                      'id', r.id, 'reported_at', r.reported_at, 'month', r.month,
                      'status', r.status, 'closed_at', r.closed_at, 'is_joint', r.is_joint,
                      'kind', r.class_kind, 'major_code', r.major_code,
                      'major_name', r.major_name, 'class_code', r.class_code,
                      'class_name', r.class_name, 'side', r.side,
                      'distance_m', r.distance_m, 'district_code', r.district_code,
                      'street_code', r.street_code, 'grid_code', r.grid_code,
                      'address', r.address, 'lon', r.lon, 'lat', r.lat,
                      'first_on_scene_at', r.first_on_scene_at, 'response_s', r.response_s,
                      'close_s', r.close_s,
                      'geometry', CAST(ST_AsGeoJSON(r.geom, {GEOJSON_DECIMALS}) AS json))
                      ORDER BY r.distance_m, r.id), '[]') FROM rows r),
        'by_side', (SELECT coalesce(json_agg(json_build_object(
                      'side', p.side, 'incidents', p.incidents, 'closed', p.closed,
                      'joint', p.joint, 'arrived', p.arrived,
                      'median_response_s', p.median_response_s,
                      'mean_response_s', p.mean_response_s,
                      'median_close_s', p.median_close_s, 'mean_close_s', p.mean_close_s,
                      'dispatches', coalesce(d.dispatches, 0),
                      'arrivals_due', coalesce(d.arrivals_due, 0),
                      'arrived_on_time', coalesce(d.arrived_on_time, 0),
                      'arrival_rate', CASE WHEN d.arrivals_due > 0 THEN
                          CAST(d.arrived_on_time AS float8) / d.arrivals_due END,
                      'median_arrival_s', d.median_arrival_s)), '[]')
                    FROM per_side p LEFT JOIN disp_side d ON d.side = p.side),
        'by_class_month', (SELECT coalesce(json_agg(row_to_json(c)
                             ORDER BY c.month, c.kind, c.code), '[]') FROM by_class c),
        'whistles', (SELECT coalesce(json_agg(row_to_json(w) ORDER BY w.blown_at, w.id), '[]')
                     FROM wh w))
"""  # noqa: S608 - constant fragments; the visibility predicate is built by gis.scope


# The incident a report is about when it lies further from the line than the buffer: where
# it is, its class and its distance to the disputed stretch (not counted in the tables).
_SUBJECT_INCIDENT = text(f"""
    SELECT i.id, i.reported_at, i.status, ec.code AS class_code, ec.name AS class_name,
           ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat,
           ST_Distance(ST_Transform(i.geom, :srid), ST_GeomFromWKB(:stretch, :srid))
             AS distance_m,
           NULL AS side,
           CAST(ST_AsGeoJSON(i.geom, {GEOJSON_DECIMALS}) AS json) AS geometry
    FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
    WHERE i.id = :id
""")  # noqa: S608 - constant fragment


def _subject_incident(conn: Connection, incident: int | None, common: dict[str, Any],
                      rules: ReportRules) -> dict[str, Any] | None:
    row = conn.execute(_SUBJECT_INCIDENT, {"id": incident, "srid": rules.metric_srid,
                                           "stretch": common["stretch"]}).mappings().first()
    return None if row is None else dict(row)


# -- versions --------------------------------------------------------------------------------

# Every version of each side's code, its area and how much land it differs from the version
# in force at :at (the symmetric difference), so a reviewer sees when and how the line moved.
_VERSIONS = text("""
    WITH v AS (
        SELECT 'a' AS side, id, valid_from, valid_to, source, NULL::bigint AS plan_id, geom
        FROM jurisdictions WHERE code = :a_code AND :a_table = 'jurisdictions'
        UNION ALL
        SELECT 'a', id, valid_from, valid_to, source, plan_id, geom
        FROM grids WHERE code = :a_code AND :a_table = 'grids'
        UNION ALL
        SELECT 'b', id, valid_from, valid_to, source, NULL::bigint, geom
        FROM jurisdictions WHERE code = :b_code AND :b_table = 'jurisdictions'
        UNION ALL
        SELECT 'b', id, valid_from, valid_to, source, plan_id, geom
        FROM grids WHERE code = :b_code AND :b_table = 'grids'),
    cur AS (SELECT side, ST_Transform(geom, :srid) AS gm FROM v
            WHERE (side = 'a' AND id = :a_id) OR (side = 'b' AND id = :b_id))
    SELECT v.side, v.id AS version_id, v.valid_from, v.valid_to, v.source, v.plan_id,
           tstzrange(v.valid_from, v.valid_to) @> CAST(:at AS timestamptz) AS in_force,
           ST_Area(ST_Transform(v.geom, :srid)) AS area_m2,
           ST_Area(ST_SymDifference(ST_Transform(v.geom, :srid), c.gm)) AS changed_m2
    FROM v JOIN cur c ON c.side = v.side
    ORDER BY v.side, v.valid_from
""")


# -- the report ------------------------------------------------------------------------------


def boundary_report(conn: Connection, *, a: str | None = None, b: str | None = None,
                    building: int | None = None, incident: int | None = None,
                    level: str | None = None, at: datetime | None = None,
                    rules: ReportRules | None = None,
                    reader: Principal | None = None) -> dict[str, Any]:
    """The boundary dispute report between areas `a` and `b` (codes), or across the line a
    `building` straddles, or the line nearest an `incident` (the two `level` areas nearest
    its point; default street offices), with versions in force at `at` (default: now).

    `reader`: the signed-in user (None: the command line, everything). Scoped readers must
    hold both sides in their scope (NotFound otherwise); incidents are those they may see.
    Raises InvalidInput naming the field (a, b, building, incident, level, buffer_m) for bad
    or inconsistent arguments and when A and B are further apart than the widest gap
    detected; NotFound (a, b, building, incident) for what does not exist at `at`.
    The result is JSON-ready (datetimes as datetime or ISO strings)."""
    rules = (rules or ReportRules()).checked()
    code_a, code_b = _check_request(a, b, building, incident, level)
    when = at or datetime.now(UTC)
    # The planner prices PostGIS overlays high enough to JIT-compile these statements, which
    # costs far more (~0.7 s each) than running them.
    conn.execute(text("SET LOCAL jit = off"))
    generated = conn.scalar(text("SELECT now()"))
    subject: dict[str, Any]
    if code_a is not None and code_b is not None:
        side_a, side_b = _area(conn, code_a, "a", "a", when), _area(conn, code_b, "b", "b", when)
        fields = ("a", "b")
        subject = {"kind": "pair"}
    elif building is not None:
        side_a, side_b, chosen = _building_sides(conn, building, level, when, rules)
        fields = ("building", "building")
        subject = {"kind": "building", "id": building, "level": chosen}
    else:
        assert incident is not None
        side_a, side_b, chosen = _incident_sides(conn, incident, level, when, rules, reader)
        fields = ("incident", "incident")
        subject = {"kind": "incident", "id": incident, "level": chosen}
    _check_scope(reader, side_a, side_b, *fields)

    sides = _side_params(side_a, side_b)
    geo_levels = sorted({side_a.level, side_b.level} - {"grid"})
    geometry = conn.execute(_GEOMETRY, {
        **sides, "srid": rules.metric_srid, "snap": rules.snap_m, "at": when,
        "gap_width": rules.gap_width_m, "half_gap": rules.gap_width_m / 2,
        "tolerance": rules.area_tolerance_m2, "levels": geo_levels,
        "with_grids": "grid" in (side_a.level, side_b.level),
        "codes": [side_a.code, side_b.code]}).mappings().one()
    distance = float(geometry["distance_m"])
    if distance > rules.gap_width_m:
        raise InvalidInput(
            f"{fields[1]}: {side_a.code} and {side_b.code} do not touch or overlap: they are "
            f"{distance:,.1f} m apart (a report needs a shared boundary, an overlap or a gap "
            f"narrower than {rules.gap_width_m:g} m)", field=fields[1])

    common = {**sides, "srid": rules.metric_srid, "stretch": bytes(geometry["stretch_wkb"]),
              "at": when}
    buildings = [dict(r) for r in conn.execute(_BUILDINGS, {
        **common, "tolerance": rules.area_tolerance_m2, "rule": ASSIGNMENT_RULE,
        "share_tol": SHARE_TOLERANCE, "a_code": side_a.code, "b_code": side_b.code,
        "a_level": side_a.level, "b_level": side_b.level}).mappings()]
    visible, vparams = incident_visible(reader) if reader is not None else ("true", {})
    near = conn.scalar(text(_INCIDENTS.format(visible=visible)), {
        **common, **vparams, "buffer": rules.buffer_m,
        "reach": rules.buffer_m * (1 + _BUFFER_SLACK) + 1.0,
        "required": REQUIRED_ARRIVAL_S})
    versions = [dict(r) for r in conn.execute(_VERSIONS, {
        "a_code": side_a.code, "b_code": side_b.code, "a_table": side_a.table,
        "b_table": side_b.table, "a_id": side_a.row_id, "b_id": side_b.row_id,
        "srid": rules.metric_srid, "at": when}).mappings()]

    parts = geometry["parts"]
    overlaps = [p for p in parts if p["kind"] == "overlap"]
    gaps = [p for p in parts if p["kind"] == "gap"]
    areas_geojson = geometry["areas"]
    area_a = {**side_a.as_json(), "area_m2": geometry["area_a"],
              "geometry": areas_geojson["a"]}
    area_b = {**side_b.as_json(), "area_m2": geometry["area_b"],
              "geometry": areas_geojson["b"]}
    whistles = _whistle_names(near["whistles"])
    if subject["kind"] == "building":
        subject["building"] = next((row for row in buildings if row["id"] == building), None)
    elif subject["kind"] == "incident":
        subject["incident"] = next((row for row in near["items"] if row["id"] == incident),
                                   None) or _subject_incident(conn, incident, common, rules)
    return {
        "report": "boundary",
        "title": f"{side_a.name or side_a.code} / {side_b.name or side_b.code}",
        "at": when,
        "generated_at": generated,
        "crs": {"storage": "EPSG:4326", "metric": f"EPSG:{rules.metric_srid}"},
        "tolerances": {**asdict(rules), "share_tolerance": SHARE_TOLERANCE},
        "assignment_rule": {"name": ASSIGNMENT_RULE, "text": ASSIGNMENT_RULE_TEXT,
                            "text_zh": ASSIGNMENT_RULE_ZH},
        "subject": subject,
        "a": area_a,
        "b": area_b,
        "distance_m": distance,
        "shared_boundary": {"length_m": geometry["length_m"],
                            "parts": geometry["line_parts"],
                            "bbox": list(geometry["bbox"]),
                            "geometry": json.loads(geometry["line_geojson"])},
        "overlaps": overlaps,
        "gaps": gaps,
        "buildings": buildings,
        "incidents": {"items": near["items"], "by_side": _by_side(near["by_side"]),
                      "by_class_month": near["by_class_month"]},
        "whistles": whistles,
        "versions": {"a": [v for v in versions if v["side"] == "a"],
                     "b": [v for v in versions if v["side"] == "b"]},
        "summary": _summary(geometry["length_m"], overlaps, gaps, buildings, near, whistles),
    }


def _by_side(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-side aggregates keyed a, b, both, none (zeros for a side without incidents)."""
    empty = {"incidents": 0, "closed": 0, "joint": 0, "arrived": 0, "median_response_s": None,
             "mean_response_s": None, "median_close_s": None, "mean_close_s": None,
             "dispatches": 0, "arrivals_due": 0, "arrived_on_time": 0, "arrival_rate": None,
             "median_arrival_s": None}
    found = {row["side"]: row for row in rows}
    return {side: {**empty, **found.get(side, {}), "side": side} for side in SIDES}


def _whistle_names(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**row, "kind_name": WHISTLE_KINDS.get(row["kind"], row["kind"])} for row in rows]


def _summary(length_m: float, overlaps: list[dict[str, Any]], gaps: list[dict[str, Any]],
             buildings: list[dict[str, Any]], near: dict[str, Any],
             whistles: list[dict[str, Any]]) -> dict[str, Any]:
    """The headline numbers (from the rows above)."""
    summons = [s for w in whistles for s in w["summoned"]]
    return {
        "shared_length_m": length_m,
        "overlaps": len(overlaps), "overlap_area_m2": sum(p["area_m2"] for p in overlaps),
        "gaps": len(gaps), "gap_area_m2": sum(p["area_m2"] for p in gaps),
        "straddling_buildings": len(buildings),
        "households_a": sum(r["households_a"] or 0 for r in buildings),
        "households_b": sum(r["households_b"] or 0 for r in buildings),
        "buildings_assigned_a": sum(r["assigned_side"] == "a" for r in buildings),
        "buildings_assigned_b": sum(r["assigned_side"] == "b" for r in buildings),
        "buildings_disagreeing": sum(r["matches_grid_code"] is False for r in buildings),
        "incidents": len(near["items"]),
        "incidents_by_side": {row["side"]: row["incidents"] for row in near["by_side"]},
        "whistles": len(whistles), "joint_whistles": sum(w["kind"] == "joint" for w in whistles),
        "summons": len(summons), "summons_met": sum(s["met"] is True for s in summons),
    }
