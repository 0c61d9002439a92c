"""Boundary features (jurisdictions and grids) as GeoJSON built by PostGIS.

Read queries for the map and the REST API: filters, `at` (version in force at an
instant), bounding boxes and keyset paging by code. PostGIS assembles the GeoJSON
(`ST_AsGeoJSON`, `json_build_object`, `json_agg`); Python only validates arguments.
Invalid arguments raise `InvalidInput` naming the field; missing objects `NotFound`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis.errors import InvalidInput, NotFound

Level = Literal["district", "street", "community"]
LEVELS: tuple[Level, ...] = ("district", "street", "community")
CODE_LENGTHS: dict[str, int] = {"district": 6, "street": 9, "community": 12, "grid": 15}
LEVEL_NAMES = {"district": "区", "street": "街道", "community": "社区", "grid": "网格"}
DEFAULT_LIMIT = 100
# Naive datetimes are read as Beijing time (China Standard Time, no DST).
CHINA_TZ = timezone(timedelta(hours=8), "CST")
GEOJSON_DECIMALS = 7  # ~1 cm at Beijing's latitude

BBox = tuple[float, float, float, float]


@dataclass(frozen=True)
class FeaturePage:
    """One page of a FeatureCollection and the cursor of the next page (None: last page)."""

    collection: dict[str, Any]
    next_after: str | None


# -- argument validation ---------------------------------------------------------------


def parse_bbox(value: str | None, field: str = "bbox") -> BBox | None:
    """`minlon,minlat,maxlon,maxlat` in WGS84 degrees, or None. Explains common mistakes."""
    if value is None or value.strip() == "":
        return None
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 4:
        raise InvalidInput(
            f"{field} must be 4 comma-separated numbers minlon,minlat,maxlon,maxlat "
            f"(WGS84 degrees); got {len(parts)} value(s)",
            field=field,
        )
    numbers: list[float] = []
    for part in parts:
        try:
            number = float(part)
        except ValueError:
            raise InvalidInput(f"{field} value {part!r} is not a number", field=field) from None
        if not math.isfinite(number):
            raise InvalidInput(f"{field} value {part!r} is not a finite number", field=field)
        numbers.append(number)
    minx, miny, maxx, maxy = numbers
    xs, ys = (minx, maxx), (miny, maxy)
    if any(abs(x) > 180 for x in xs) or any(abs(y) > 90 for y in ys):
        if all(abs(x) <= 90 for x in xs) and all(abs(y) <= 180 for y in ys):
            raise InvalidInput(
                f"{field} looks like lat,lon order: expected minlon,minlat,maxlon,maxlat "
                f"(e.g. {miny:g},{minx:g},{maxy:g},{maxx:g})",
                field=field,
            )
        raise InvalidInput(
            f"{field} is outside the lon/lat range (lon -180..180, lat -90..90): coordinates "
            "must be WGS84 degrees (EPSG:4326), not projected metres",
            field=field,
        )
    if minx >= maxx:
        raise InvalidInput(
            f"{field} minlon must be less than maxlon (got {minx:g} >= {maxx:g})", field=field
        )
    if miny >= maxy:
        raise InvalidInput(
            f"{field} minlat must be less than maxlat (got {miny:g} >= {maxy:g})", field=field
        )
    return (minx, miny, maxx, maxy)


_SPACE_FOR_PLUS = re.compile(r"^(.*T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?) (\d{2}(?::?\d{2})?)$")


def parse_at(value: str | None, field: str = "at") -> datetime:
    """An ISO 8601 date or datetime (naive = Beijing time, UTC+8); None means now."""
    if value is None or value.strip() == "":
        return datetime.now(UTC)
    raw = value.strip()
    # An unencoded '+' in a query string arrives as a space: "...T08:00:00 08:00".
    raw = _SPACE_FOR_PLUS.sub(r"\1+\2", raw)
    try:
        instant = datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(
            f"{field} must be an ISO 8601 date or datetime such as 2024-05-01 or "
            f"2024-05-01T08:00:00+08:00; got {value!r}",
            field=field,
        ) from None
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=CHINA_TZ)
    return instant


def parse_opt_at(value: str | None, field: str) -> datetime | None:
    """parse_at for an optional bound such as `since`/`until` (None stays None)."""
    return None if value is None else parse_at(value, field)


def check_limit(limit: int | None, page_max: int, field: str = "limit") -> int:
    """The page size: default 100 (or `page_max` if smaller), 1..page_max."""
    if limit is None:
        return min(DEFAULT_LIMIT, page_max)
    if limit < 1:
        raise InvalidInput(f"{field} must be at least 1; got {limit}", field=field)
    if limit > page_max:
        raise InvalidInput(f"{field} must be at most {page_max}; got {limit}", field=field)
    return limit


def check_code(value: str, kinds: tuple[str, ...], field: str = "code") -> str:
    """A division code of one of `kinds` (district/street/community/grid): digits only."""
    lengths = {CODE_LENGTHS[kind] for kind in kinds}
    if value.isascii() and value.isdigit() and len(value) in lengths:
        return value
    names = [f"{CODE_LENGTHS[kind]}-digit {kind}" for kind in kinds]
    expected = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
    raise InvalidInput(f"{field} must be a {expected} code; got {value!r}", field=field)


def opt_code(value: str | None, kinds: tuple[str, ...], field: str) -> str | None:
    """check_code for an optional filter (None stays None)."""
    return None if value is None else check_code(value, kinds, field)


def _level_of(code: str) -> str:
    return next(level for level, length in CODE_LENGTHS.items() if length == len(code))


def check_parent(parent: str | None, level: Level | None) -> str | None:
    """`parent` must be the code of the level above `level` (districts have no parent)."""
    if parent is None:
        return None
    if level == "district":
        raise InvalidInput("districts have no parent: drop parent or ask for another level",
                           field="parent")
    if level is None:
        return check_code(parent, ("district", "street"), "parent")
    expected = "district" if level == "street" else "street"
    check_code(parent, ("district", "street"), "parent")
    if len(parent) != CODE_LENGTHS[expected]:
        raise InvalidInput(
            f"the parent of a {level} is a {CODE_LENGTHS[expected]}-digit {expected} code; "
            f"got a {len(parent)}-digit {_level_of(parent)} code {parent!r}",
            field="parent",
        )
    return parent


# -- SQL ------------------------------------------------------------------------------

_IN_FORCE = "t.valid_from <= :at AND (t.valid_to IS NULL OR t.valid_to > :at)"
_BBOX = (
    "(CAST(:minx AS float8) IS NULL OR "
    "ST_Intersects(t.geom, ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326)))"
)
_AFTER = "(CAST(:after AS text) IS NULL OR t.code > :after)"

_JURISDICTION_FEATURE = f"""
json_build_object(
  'type', 'Feature',
  'id', t.code,
  'geometry', ST_AsGeoJSON(t.geom, {GEOJSON_DECIMALS})::json,
  'properties', json_build_object(
    'code', t.code, 'name', t.name, 'level', t.level, 'parent_code', t.parent_code,
    'district_code', t.district_code, 'valid_from', t.valid_from, 'valid_to', t.valid_to,
    'is_synthetic', t.is_synthetic
  )
)"""

_GRID_FEATURE = f"""
json_build_object(
  'type', 'Feature',
  'id', t.code,
  'geometry', ST_AsGeoJSON(t.geom, {GEOJSON_DECIMALS})::json,
  'properties', json_build_object(
    'code', t.code, 'name', t.name, 'community_code', t.community_code,
    'street_code', t.street_code, 'district_code', t.district_code,
    'households', t.households, 'valid_from', t.valid_from, 'valid_to', t.valid_to,
    'is_synthetic', t.is_synthetic
  )
)"""

# One page: the first `limit` + 1 rows in code order (a cheap top-N on codes), then
# PostGIS aggregates the first `limit` into features and reports whether one more exists.
# `feature` is one of the constants above.
_PAGE = """
WITH page AS (
  SELECT t.* FROM {table} AS t
  WHERE {in_force} AND {bbox} AND {after} AND {filters}
  ORDER BY t.code
  LIMIT :limit + 1
), numbered AS (
  SELECT t.*, row_number() OVER (ORDER BY t.code) AS n FROM page AS t
), agg AS (
  SELECT
    count(*) FILTER (WHERE t.n <= :limit) AS returned,
    ST_Extent(t.geom) FILTER (WHERE t.n <= :limit) AS extent,
    json_agg({feature} ORDER BY t.code) FILTER (WHERE t.n <= :limit) AS features,
    max(t.code) FILTER (WHERE t.n <= :limit) AS last_code,
    count(*) > :limit AS has_more
  FROM numbered AS t
)
SELECT
  json_build_object(
    'type', 'FeatureCollection',
    'numberReturned', returned,
    'bbox', CASE WHEN extent IS NOT NULL THEN json_build_array(
      ST_XMin(extent), ST_YMin(extent), ST_XMax(extent), ST_YMax(extent)) END,
    'features', coalesce(features, '[]'::json)
  ) AS collection,
  last_code,
  has_more
FROM agg
"""

_ONE = """
SELECT {feature} FROM {table} AS t WHERE t.code = :code AND {in_force}
"""

_VERSIONS = """
SELECT count(*), min(t.valid_from), max(t.valid_to), bool_or(t.valid_to IS NULL)
FROM {table} AS t WHERE t.code = :code
"""

_JURISDICTION_FILTERS = (
    "(CAST(:level AS text) IS NULL OR t.level = :level) "
    "AND (CAST(:parent AS text) IS NULL OR t.parent_code = :parent)"
)
_GRID_FILTERS = (
    "(CAST(:community AS text) IS NULL OR t.community_code = :community) "
    "AND (CAST(:street AS text) IS NULL OR t.street_code = :street) "
    "AND (CAST(:district AS text) IS NULL OR t.district_code = :district)"
)


def _sql(template: str, table: str, feature: str, filters: str = "true") -> str:
    """Fill a query template from the fixed fragments above (never from user input)."""
    return template.format(
        table=table, feature=feature, filters=filters, in_force=_IN_FORCE, bbox=_BBOX,
        after=_AFTER,
    )


LIST_JURISDICTIONS = text(
    _sql(_PAGE, "jurisdictions", _JURISDICTION_FEATURE, _JURISDICTION_FILTERS)
)
LIST_GRIDS = text(_sql(_PAGE, "grids", _GRID_FEATURE, _GRID_FILTERS))
ONE_JURISDICTION = text(_sql(_ONE, "jurisdictions", _JURISDICTION_FEATURE))
ONE_GRID = text(_sql(_ONE, "grids", _GRID_FEATURE))
VERSIONS_JURISDICTION = text(_sql(_VERSIONS, "jurisdictions", ""))
VERSIONS_GRID = text(_sql(_VERSIONS, "grids", ""))


def _bbox_params(bbox: BBox | None) -> dict[str, float | None]:
    minx, miny, maxx, maxy = bbox if bbox else (None, None, None, None)
    return {"minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy}


def _page(conn: Connection, query: Any, params: dict[str, Any], limit: int) -> FeaturePage:
    row = conn.execute(query, {**params, "limit": limit}).one()
    collection = dict(row.collection)
    if collection.get("bbox") is None:  # GeoJSON: omit bbox rather than null
        collection.pop("bbox", None)
    return FeaturePage(collection=collection, next_after=row.last_code if row.has_more else None)


# -- public queries -----------------------------------------------------------------------


def list_jurisdictions(
    conn: Connection,
    *,
    at: datetime,
    limit: int,
    level: Level | None = None,
    parent: str | None = None,
    bbox: BBox | None = None,
    after: str | None = None,
) -> FeaturePage:
    """Jurisdictions in force at `at`, ordered by code, at most `limit` after code `after`."""
    if level is not None and level not in LEVELS:
        raise InvalidInput(f"level must be one of {', '.join(LEVELS)}; got {level!r}",
                           field="level")
    params = {
        "at": at,
        "level": level,
        "parent": check_parent(parent, level),
        "after": opt_code(after, ("district", "street", "community"), "after"),
        **_bbox_params(bbox),
    }
    return _page(conn, LIST_JURISDICTIONS, params, limit)


def list_grids(
    conn: Connection,
    *,
    at: datetime,
    limit: int,
    community: str | None = None,
    street: str | None = None,
    district: str | None = None,
    bbox: BBox | None = None,
    after: str | None = None,
) -> FeaturePage:
    """Grids in force at `at`, filtered by their community/street/district, paged by code."""
    params: dict[str, Any] = {
        "at": at,
        "community": opt_code(community, ("community",), "community"),
        "street": opt_code(street, ("street",), "street"),
        "district": opt_code(district, ("district",), "district"),
        "after": opt_code(after, ("grid",), "after"),
        **_bbox_params(bbox),
    }
    return _page(conn, LIST_GRIDS, params, limit)


def get_jurisdiction(conn: Connection, code: str, *, at: datetime) -> dict[str, Any]:
    """The version of jurisdiction `code` in force at `at`, as a GeoJSON Feature."""
    check_code(code, ("district", "street", "community"))
    return _one(conn, ONE_JURISDICTION, VERSIONS_JURISDICTION, code, at, "jurisdiction")


def get_grid(conn: Connection, code: str, *, at: datetime) -> dict[str, Any]:
    """The version of grid `code` in force at `at`, as a GeoJSON Feature."""
    check_code(code, ("grid",))
    return _one(conn, ONE_GRID, VERSIONS_GRID, code, at, "grid")


def _one(conn: Connection, query: Any, versions: Any, code: str, at: datetime,
         kind: str) -> dict[str, Any]:
    feature = conn.scalar(query, {"code": code, "at": at})
    if feature is not None:
        return dict(feature)
    count, first, last, open_ended = conn.execute(versions, {"code": code}).one()
    if not count:
        raise NotFound(f"{kind} {code} does not exist", field="code")
    until = "now (open-ended)" if open_ended else last.isoformat()
    raise NotFound(
        f"{kind} {code} has no version in force at {at.isoformat()} "
        f"({count} version(s) between {first.isoformat()} and {until}); pass another `at`",
        field="code",
    )
