"""OGC API - Features over the project's tables: the collections, their metadata and
extents, and pages of items as GeoJSON assembled by PostGIS (no HTTP here).

Collections: districts, streets (街道), communities, grids (valid now), buildings, lanes
(街巷 lines with their chief), joint_zones and incidents (scoped by gis.scope, with a
`datetime` filter on reported_at). Items are ordered by feature id and keyset paged: a
page's cursor is its last id, sent back as `after`. `numberMatched` is an exact count with
the same filters and scope; a page with a cursor repeats the count its paging started
with when that count is recent (see COUNT_TTL_S), so walking a large collection does not
count it once per page.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis import incidents
from gis.auth import Principal
from gis.errors import InvalidInput, NotFound
from gis.features import CODE_LENGTHS, GEOJSON_DECIMALS, BBox, parse_at, parse_bbox
from gis.scope import incident_visible, may_see_contacts

LIMIT_DEFAULT = 100
LIMIT_MAX = 10_000  # declared in the API; a larger `limit` is clamped to it
EXTENT_TTL_S = 60.0  # collection extents are recomputed at most once a minute per process
COUNT_TTL_S = 60.0  # a paging session reuses its first page's count for this long
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
GREGORIAN = "http://www.opengis.net/def/uom/ISO-8601/0/Gregorian"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
)

IdKind = Literal["code", "int"]

# -- the collections ------------------------------------------------------------------------

_IN_FORCE = "{a}.valid_from <= now() AND ({a}.valid_to IS NULL OR {a}.valid_to > now())"


@dataclass(frozen=True)
class Collection:
    """One collection: where its rows come from and how a row becomes a Feature.

    Every SQL fragment is a constant of this module over the table alias `alias`."""

    id: str
    title: str
    description: str
    table: str
    alias: str
    where: str  # which rows belong to the collection (e.g. in force now, one level)
    id_kind: IdKind
    properties: str  # json_build_object(...) over the row and `joins`
    joins: str = ""  # LEFT JOIN LATERAL ... for properties from other tables
    time_column: str | None = None  # `datetime` filters it; gives the temporal extent
    scoped: bool = False  # rows filtered by gis.scope.incident_visible
    code_length: int | None = None  # id_kind "code": the length of a valid code

    @property
    def id_expr(self) -> str:
        return f"{self.alias}.{'code' if self.id_kind == 'code' else 'id'}"

    @property
    def feature(self) -> str:
        return (f"json_build_object('type', 'Feature', 'id', {self.id_expr}, "
                f"'geometry', ST_AsGeoJSON({self.alias}.geom, {GEOJSON_DECIMALS})::json, "
                f"'properties', {self.properties})")


def _jurisdiction(level: str, cid: str, title: str, description: str) -> Collection:
    return Collection(
        id=cid, title=title, description=description, table="jurisdictions", alias="t",
        where=f"t.level = '{level}' AND " + _IN_FORCE.format(a="t"), id_kind="code",
        code_length=CODE_LENGTHS[level],
        properties="""json_build_object(
            'code', t.code, 'name', t.name, 'level', t.level, 'kind', t.kind,
            'parent_code', t.parent_code, 'district_code', t.district_code,
            'valid_from', t.valid_from, 'is_synthetic', t.is_synthetic)""")


_CHIEF = """LEFT JOIN LATERAL (
    SELECT p.name, p.phone, sa.role FROM street_assignments sa
    JOIN people p ON p.id = sa.person_id
    WHERE sa.street_id = t.id AND sa.role IN ('street_chief', 'alley_chief')
      AND sa.valid_from <= now() AND (sa.valid_to IS NULL OR sa.valid_to > now())
    ORDER BY sa.valid_from DESC LIMIT 1) AS chief ON true"""

_SHARES = """LEFT JOIN LATERAL (
    SELECT json_agg(json_build_object('level', s.level, 'code', s.code,
                                      'share', round(s.share::numeric, 4))
                    ORDER BY s.level, s.share DESC) AS shares
    FROM building_shares s WHERE s.building_id = t.id) AS sh ON true"""

_ZONE_NAMES = """LEFT JOIN LATERAL (
    SELECT j.name FROM jurisdictions j WHERE j.code = t.code_a
      AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
    LIMIT 1) AS ja ON true
LEFT JOIN LATERAL (
    SELECT j.name FROM jurisdictions j WHERE j.code = t.code_b
      AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
    LIMIT 1) AS jb ON true"""

_INCIDENT_CLASS = """LEFT JOIN LATERAL (
    SELECT ec.kind, ec.code, ec.name, ec.major_name FROM event_classes ec
    WHERE ec.id = i.event_class_id) AS ec ON true"""

COLLECTIONS: dict[str, Collection] = {c.id: c for c in (
    _jurisdiction("district", "districts", "区 Districts",
                  "Districts (区) in force now, with their division codes."),
    _jurisdiction("street", "streets", "街道 Streets (sub-districts)",
                  "Street offices' jurisdictions (街道/乡镇) in force now. The lines of "
                  "streets and alleys (街巷) are the collection `lanes`."),
    _jurisdiction("community", "communities", "社区 Communities",
                  "Communities (社区/村) in force now."),
    Collection(
        id="grids", title="网格 Grids",
        description="Comprehensive grids (全科网格) in force now, with their household "
                    "counts and the community, street and district that hold them.",
        table="grids", alias="t", where=_IN_FORCE.format(a="t"), id_kind="code",
        code_length=CODE_LENGTHS["grid"],
        properties="""json_build_object(
            'code', t.code, 'name', t.name, 'community_code', t.community_code,
            'street_code', t.street_code, 'district_code', t.district_code,
            'households', t.households, 'population', t.population,
            'valid_from', t.valid_from, 'is_synthetic', t.is_synthetic)"""),
    Collection(
        id="buildings", title="楼栋 Buildings",
        description="Building footprints with floors and households. A building that "
                    "straddles a boundary lists its area share per jurisdiction and grid "
                    "in `shares` (null otherwise).",
        table="buildings", alias="t", where="true", id_kind="int", joins=_SHARES,
        properties="""json_build_object(
            'id', t.id, 'code', t.code, 'name', t.name, 'address', t.address,
            'use', t.use, 'floors', t.floors, 'households', t.households,
            'district_code', t.district_code, 'grid_code', t.grid_code,
            'straddles', sh.shares IS NOT NULL, 'shares', sh.shares,
            'is_synthetic', t.is_synthetic)"""),
    Collection(
        id="lanes", title="街巷 Streets and alleys",
        description="Street and alley lines (街巷) by road class, with the street or alley "
                    "chief (街长/巷长) assigned now and the chief's public phone.",
        table="streets", alias="t", where="true", id_kind="int", joins=_CHIEF,
        properties="""json_build_object(
            'id', t.id, 'code', t.code, 'name', t.name, 'road_class', t.road_class,
            'district_code', t.district_code, 'street_code', t.street_office_code,
            'chief_name', chief.name, 'chief_role', chief.role, 'chief_phone', chief.phone,
            'is_synthetic', t.is_synthetic)"""),
    Collection(
        id="joint_zones", title="联合哨 Joint zones",
        description="Joint-whistle zones (联合哨) along the shared boundary of two adjacent "
                    "districts or streets: an incident inside one concerns both.",
        table="joint_zones", alias="t", where="true", id_kind="int", joins=_ZONE_NAMES,
        properties="""json_build_object(
            'id', t.id, 'level', t.level, 'code_a', t.code_a, 'name_a', ja.name,
            'code_b', t.code_b, 'name_b', jb.name, 'origin', t.origin,
            'width_m', t.width_m, 'district_code', t.district_code)"""),
    Collection(
        id="incidents", title="事件 Incidents",
        description="Reported incidents (事件/部件 cases) you may see, with their placement "
                    "and workflow state; `datetime` filters on reported_at.",
        table="incidents", alias="i", where="true", id_kind="int", joins=_INCIDENT_CLASS,
        time_column="reported_at", scoped=True,
        properties=incidents.PROPERTIES),
)}


def get_collection(collection_id: str) -> Collection:
    """The collection `collection_id`; NotFound naming `collectionId` otherwise."""
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise NotFound(f"no collection {collection_id!r}; the collections are "
                       f"{', '.join(COLLECTIONS)}", field="collection_id") from None


# -- argument parsing -----------------------------------------------------------------------


@dataclass(frozen=True)
class TimeFilter:
    """A `datetime` filter: an instant (`at`) or an interval with optional ends; an end
    given as a date covers that whole day."""

    at: datetime | None = None
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # inclusive
    end_before: datetime | None = None  # exclusive (the day after an end given as a date)

    def key(self) -> tuple[str | None, ...]:
        return tuple(None if v is None else v.isoformat()
                     for v in (self.at, self.start, self.end, self.end_before))


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_datetime(value: str | None) -> TimeFilter | None:
    """OGC `datetime`: an RFC 3339 instant or `start/end` with `..` (or nothing) for an open
    end. Dates are whole days; times without an offset are Beijing time."""
    if value is None or value.strip() == "":
        return None
    raw = value.strip()
    parts = raw.split("/")
    if len(parts) > 2:
        raise InvalidInput(f"datetime must be an instant or one interval start/end; got "
                           f"{value!r}", field="datetime")
    if len(parts) == 1:
        if parts[0] == "..":
            raise InvalidInput("datetime '..' alone is not an instant; use an interval such "
                               "as 2026-01-01T00:00:00Z/..", field="datetime")
        if _DATE.match(parts[0]):
            day = parse_at(parts[0], "datetime")
            return TimeFilter(start=day, end_before=day + timedelta(days=1))
        return TimeFilter(at=parse_at(parts[0], "datetime"))
    start_s, end_s = (p.strip() for p in parts)
    start = None if start_s in ("", "..") else parse_at(start_s, "datetime")
    end = end_before = None
    if end_s not in ("", ".."):
        if _DATE.match(end_s):
            end_before = parse_at(end_s, "datetime") + timedelta(days=1)
        else:
            end = parse_at(end_s, "datetime")
    if start is None and end is None and end_before is None:
        raise InvalidInput("datetime interval must have at least one bounded end "
                           "(not ../..)", field="datetime")
    upper = end or end_before
    if start is not None and upper is not None and start > upper:
        raise InvalidInput(f"datetime interval starts after it ends: {value!r}",
                           field="datetime")
    return TimeFilter(start=start, end=end, end_before=end_before)


def parse_limit(value: int | None) -> tuple[int, bool]:
    """The page size and whether it was clamped to LIMIT_MAX: default LIMIT_DEFAULT, at
    least 1. OGC API Features lets a server return fewer features than asked for."""
    if value is None:
        return LIMIT_DEFAULT, False
    if value < 1:
        raise InvalidInput(f"limit must be at least 1; got {value}", field="limit")
    if value > LIMIT_MAX:
        return LIMIT_MAX, True
    return value, False


def _parse_id(c: Collection, value: str) -> str | int | None:
    """A feature id of `c` from text, or None when it cannot be one."""
    raw = value.strip()
    if c.id_kind == "code":
        ok = raw.isascii() and raw.isdigit() and len(raw) == c.code_length
        return raw if ok else None
    if raw.isascii() and raw.isdigit() and len(raw) <= 18:
        return int(raw)
    return None


def parse_cursor(c: Collection, value: str | None) -> str | int | None:
    """The `after` cursor (the last id of the previous page)."""
    if value is None or value.strip() == "":
        return None
    cursor = _parse_id(c, value)
    if cursor is None:
        kind = (f"a {c.code_length}-digit code" if c.id_kind == "code"
                else "a non-negative integer id")
        raise InvalidInput(f"after must be {kind} of collection {c.id} (use the `next` "
                           f"link); got {value!r}", field="after")
    return cursor


# -- small per-process caches ---------------------------------------------------------------


class _TTLCache:
    """A dict whose entries expire; safe across request threads."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Any, ttl: float) -> Any:
        with self._lock:
            hit = self._items.get(key)
        if hit is None or time.monotonic() - hit[0] > ttl:
            return None
        return hit[1]

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            if len(self._items) > 4096:  # bounded: drop everything rather than grow
                self._items.clear()
            self._items[key] = (time.monotonic(), value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_extents = _TTLCache()
_counts = _TTLCache()


def clear_caches() -> None:
    """Forget cached extents and counts (tests that change data and read it back)."""
    _extents.clear()
    _counts.clear()


def _db_key(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=True)


# -- metadata -------------------------------------------------------------------------------


def _outward(value: float, up: bool) -> float:
    scale = 10 ** GEOJSON_DECIMALS
    return (math.ceil(value * scale) if up else math.floor(value * scale)) / scale


def _rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def extent(conn: Connection, c: Collection) -> dict[str, Any]:
    """The OGC extent of the whole collection (not of one reader's scope): the data's
    bounding box in CRS84 and, for collections with time, the span of that time. Cached
    for EXTENT_TTL_S seconds per database."""
    key = (_db_key(conn), c.id)
    cached = _extents.get(key, EXTENT_TTL_S)
    if cached is not None:
        return dict(cached)
    times = (f"min({c.alias}.{c.time_column}), max({c.alias}.{c.time_column})"
             if c.time_column else "NULL::timestamptz, NULL::timestamptz")
    row = conn.execute(text(f"""
        SELECT ST_XMin(e.box), ST_YMin(e.box), ST_XMax(e.box), ST_YMax(e.box), e.t0, e.t1
        FROM (SELECT ST_Extent({c.alias}.geom) AS box, {times}
              FROM {c.table} AS {c.alias} WHERE {c.where}) AS e(box, t0, t1)
    """)).one()  # noqa: S608 - constant SQL fragments of this module
    result: dict[str, Any] = {}
    if row[0] is not None:
        result["spatial"] = {"bbox": [[_outward(row[0], False), _outward(row[1], False),
                                       _outward(row[2], True), _outward(row[3], True)]],
                             "crs": CRS84}
    if c.time_column:
        result["temporal"] = {
            "interval": [[_rfc3339(row[4]) if row[4] else None,
                          _rfc3339(row[5]) if row[5] else None]],
            "trs": GREGORIAN}
    _extents.put(key, result)
    return dict(result)


def collection_metadata(conn: Connection, collection_id: str) -> dict[str, Any]:
    """The collection document without links: id, title, description, extent, CRS."""
    c = get_collection(collection_id)
    document: dict[str, Any] = {
        "id": c.id, "title": c.title, "description": c.description, "itemType": "feature",
        "crs": [CRS84], "storageCrs": CRS84}
    ext = extent(conn, c)
    if ext:
        document["extent"] = ext
    return document


def list_collections(conn: Connection) -> list[dict[str, Any]]:
    """Every collection's document (without links), in a fixed order."""
    return [collection_metadata(conn, cid) for cid in COLLECTIONS]


# -- items ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ItemsPage:
    """One page of items: the features as a JSON array text made by PostGIS, the counts,
    and the cursor of the next page (None on the last page)."""

    features_json: str
    number_matched: int
    number_returned: int
    time_stamp: datetime
    next_after: str | None
    limit: int
    limit_clamped: bool

    def to_json(self, links: list[dict[str, Any]]) -> bytes:
        """The FeatureCollection document; the features are spliced in as PostGIS wrote
        them (never parsed and re-serialised in Python)."""
        head = json.dumps({
            "type": "FeatureCollection",
            "numberMatched": self.number_matched,
            "numberReturned": self.number_returned,
            "timeStamp": _rfc3339(self.time_stamp),
            "links": links,
        }, ensure_ascii=False, separators=(",", ":"))
        return (head[:-1] + ',"features":' + self.features_json + "}").encode()


@dataclass(frozen=True)
class _Where:
    sql: str
    params: dict[str, Any]
    key: tuple[Any, ...]


def _where(c: Collection, reader: Principal, bbox: BBox | None,
           when: TimeFilter | None) -> _Where:
    """The row filter of a request (collection, scope, bbox, datetime) from constant
    fragments, its parameters, and a key naming it for the count cache."""
    a = c.alias
    terms = [f"({c.where})"]
    params: dict[str, Any] = {}
    key: list[Any] = [c.id]
    if c.scoped:
        visible, scope_params = incident_visible(reader)
        terms.append(f"({visible})")
        params.update(scope_params)
        key.append((visible, tuple(sorted((k, json.dumps(v, sort_keys=True))
                                          for k, v in scope_params.items()))))
    if bbox is not None:
        terms.append(f"ST_Intersects({a}.geom, "
                     "ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326))")
        params.update(zip(("minx", "miny", "maxx", "maxy"), bbox, strict=True))
        key.append(bbox)
    if when is not None:
        if c.time_column is None:
            raise InvalidInput(f"collection {c.id} has no time: drop datetime (it applies "
                               "to incidents)", field="datetime")
        column = f"{a}.{c.time_column}"
        for name, op, value in (("t_at", "=", when.at), ("t_start", ">=", when.start),
                                ("t_end", "<=", when.end), ("t_before", "<", when.end_before)):
            if value is not None:
                terms.append(f"{column} {op} :{name}")
                params[name] = value
        key.append(when.key())
    return _Where(" AND ".join(terms), params, tuple(key))


def items(conn: Connection, reader: Principal, collection_id: str, *,
          bbox: str | None = None, datetime_: str | None = None, limit: int | None = None,
          after: str | None = None) -> ItemsPage:
    """A page of `collection_id`'s features that `reader` may see, intersecting `bbox`,
    in `datetime`, ordered by id after the cursor `after`.

    Turns parallel query off for the rest of the caller's transaction: for a page of at
    most LIMIT_MAX rows found through an index, starting parallel workers costs more than
    it saves (several times more on a busy server)."""
    c = get_collection(collection_id)
    size, clamped = parse_limit(limit)
    where = _where(c, reader, parse_bbox(bbox), parse_datetime(datetime_))
    cursor = parse_cursor(c, after)
    conn.execute(text("SET LOCAL max_parallel_workers_per_gather = 0"))
    matched = _count(conn, c, where, reuse=cursor is not None)
    after_sql = f" AND {c.id_expr} > :after" if cursor is not None else ""
    a = c.alias
    row = conn.execute(text(f"""
        WITH page AS (
          SELECT {a}.* FROM {c.table} AS {a}
          WHERE {where.sql}{after_sql}
          ORDER BY {c.id_expr} LIMIT :limit + 1
        ), shown AS (
          SELECT * FROM page AS {a} ORDER BY {c.id_expr} LIMIT :limit
        )
        SELECT
          (SELECT coalesce(json_agg({c.feature} ORDER BY {c.id_expr}), '[]'::json)::text
           FROM shown AS {a} {c.joins}) AS features,
          (SELECT count(*) FROM shown) AS returned,
          (SELECT max({c.id_expr})::text FROM shown AS {a}) AS last_id,
          (SELECT count(*) FROM page) > :limit AS has_more,
          now() AS stamp
    """),  # noqa: S608 - constant SQL fragments of this module; values are bound
        {**where.params, "after": cursor, "limit": size,
         "contacts": may_see_contacts(reader)}).one()
    return ItemsPage(features_json=row.features, number_matched=matched,
                     number_returned=int(row.returned), time_stamp=row.stamp,
                     next_after=row.last_id if row.has_more else None, limit=size,
                     limit_clamped=clamped)


def _count(conn: Connection, c: Collection, where: _Where, *, reuse: bool) -> int:
    """numberMatched: counted now on a first page; a later page (`reuse`) repeats a count
    made with the same filters and scope within COUNT_TTL_S, so a client paging through a
    collection sees one total."""
    key = (_db_key(conn), where.key)
    if reuse:
        cached = _counts.get(key, COUNT_TTL_S)
        if cached is not None:
            return int(cached)
    matched = int(conn.scalar(
        text(f"SELECT count(*) FROM {c.table} AS {c.alias} WHERE {where.sql}"),  # noqa: S608
        where.params))
    _counts.put(key, matched)
    return matched


def item(conn: Connection, reader: Principal, collection_id: str, fid: str) -> dict[str, Any]:
    """One feature by id; NotFound when it does not exist, is not in the collection now,
    or (incidents) is outside the reader's scope."""
    c = get_collection(collection_id)
    parsed = _parse_id(c, fid)
    if parsed is None:
        raise NotFound(f"no feature {fid!r} in collection {c.id}", field="feature_id")
    where = _where(c, reader, None, None)
    feature = conn.scalar(text(f"""
        SELECT {c.feature} FROM {c.table} AS {c.alias} {c.joins}
        WHERE {where.sql} AND {c.id_expr} = :fid
    """), {**where.params, "fid": parsed,  # noqa: S608 - constant SQL fragments
           "contacts": may_see_contacts(reader)})
    if feature is None:
        raise NotFound(f"no feature {fid!r} in collection {c.id}"
                       + (" (or not in your scope)" if c.scoped else ""), field="feature_id")
    return dict(feature)

