"""Vector tiles (Mapbox Vector Tile 2.1) of the command-center map, built in PostGIS, and the
in-process tile cache that change notifications invalidate tile by tile. HTTP-free: the
router (api/routers/tiles.py) adds ETag, Cache-Control and authentication.

A tile is one MVT layer named like the layer (`ST_AsMVT`, extent 4096, buffer 64 units).
Rows are found with the GiST index on their WGS84 geometry (`geom && ` the tile envelope,
plus its buffer, transformed to EPSG:4326), lines and polygons simplified to one tile
unit, and projected to Web Mercator: exactly (`ST_Transform`) at low zoom, and from the
zoom where it is within one tile unit (z12 at Beijing's latitude) by the secant affine
map of the tile (`ST_Affine`, 5× cheaper than `ST_Transform`, exact on the tile edges).

Each layer has a minimum zoom (below it the tile is empty: a valid MVT of 0 bytes) and a
cap on features per tile: past the cap the largest polygons, longest lines or newest
points are kept, and the tile stays valid. Incidents below zoom 13 are clusters: counts
per cell of 1/8 tile (64 px on a 512 px tile) with `point_count`. Incidents and teams are
read through the reader's visibility predicate (gis.scope, gis.teams); their cache entries
are keyed by that predicate, so readers with the same scope share them. See docs/tiles.md.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.errors import InvalidInput, NotFound
from gis.incidents import CURRENT_DEADLINE
from gis.scope import incident_visible
from gis.teams import ACTIVE_DISPATCH, DEFAULT_STALE_AFTER, team_visible

EXTENT = 4096
BUFFER = 64
MAX_ZOOM = 22
DECLARED_MAXZOOM = 16  # clients overzoom beyond: the content no longer changes
CLUSTER_BELOW = 13  # incidents: clusters at z < 13, single incidents from z 13
CLUSTER_CELLS = 8  # cells per tile side: 512 units = 64 px on a 512 px tile
SIMPLIFY_UNITS = 1.0  # lines and polygons are simplified to this many tile units
AFFINE_MAX_ERROR = 1.0  # tile units (1/16 px on a 256 px tile): when to use the affine map
OPEN_STATUSES = ("pending", "registered", "dispatched", "handling", "feedback",
                 "verifying", "ledger")
MERCATOR_MAX_LAT = 85.0511287798066
_R = 6378137.0

Geometry = Literal["polygon", "line", "point"]
Scope = Literal["incidents", "teams"]

_VALID_NOW = "{a}.valid_from <= now() AND ({a}.valid_to IS NULL OR {a}.valid_to > now())"


@dataclass(frozen=True)
class Layer:
    """A tile layer: its rows (`source`: SQL selecting `fid`, the properties, `g` (the
    EPSG:4326 geometry) and `rank` (kept first under the cap), filtered by the
    placeholders {env} (the envelope condition) and, for scoped layers, {visible})."""

    name: str
    title: str
    geometry: Geometry
    minzoom: int
    cap: int
    fields: Mapping[str, str]
    source: str
    scope: Scope | None = None
    ttl_s: float = 600.0  # server cache lifetime (a safety net; events invalidate first)


def _jurisdiction_layer(level: str, name: str, title: str, minzoom: int, cap: int,
                        extra: Mapping[str, tuple[str, str]]) -> Layer:
    """A layer of the jurisdictions of one level in force now; `extra`: field → (SQL over
    `j`, description)."""
    columns = "".join(f", {sql} AS {field}" for field, (sql, _) in extra.items())
    return Layer(
        name=name, title=title, geometry="polygon", minzoom=minzoom, cap=cap,
        fields={"code": "String: jurisdiction code", "name": "String",
                **{field: about for field, (_, about) in extra.items()}},
        source=f"""SELECT j.id AS fid, j.code, j.name{columns}, j.geom AS g,
                          ST_Area(j.geom) AS rank
                   FROM jurisdictions j
                   WHERE j.level = '{level}' AND {_VALID_NOW.format(a="j")}
                     AND j.geom && {{env}}""")  # noqa: S608 - constant SQL fragments; values are bound


LAYERS: dict[str, Layer] = {layer.name: layer for layer in (
    _jurisdiction_layer("district", "districts", "区 districts", 0, 1000, {}),
    _jurisdiction_layer("street", "streets", "街道 street offices", 8, 2000,
                        {"district_code": ("j.district_code", "String")}),
    _jurisdiction_layer("community", "communities", "社区 communities", 12, 5000,
                        {"street_code": ("j.parent_code", "String: its 街道"),
                         "district_code": ("j.district_code", "String")}),
    Layer(
        name="grids", title="网格 grids (in force now)", geometry="polygon", minzoom=12,
        cap=5000,
        fields={"code": "String: 15-digit grid code", "name": "String",
                "community_code": "String", "street_code": "String",
                "district_code": "String"},
        source=f"""SELECT g.id AS fid, g.code, g.name, g.community_code, g.street_code,
                          g.district_code, g.geom AS g, ST_Area(g.geom) AS rank
                   FROM grids g
                   WHERE {_VALID_NOW.format(a="g")} AND g.geom && {{env}}"""),  # noqa: S608 - constant SQL fragments; values are bound
    Layer(
        name="buildings", title="楼栋 buildings", geometry="polygon", minzoom=14, cap=5000,
        fields={"id": "Number", "code": "String", "name": "String",
                "grid_code": "String", "district_code": "String", "floors": "Number",
                "households": "Number", "use": "String"},
        source="""SELECT b.id AS fid, b.id, b.code, b.name, b.grid_code, b.district_code,
                         b.floors, b.households, b.use, b.geom AS g, ST_Area(b.geom) AS rank
                  FROM buildings b WHERE b.geom && {env}"""),
    Layer(
        name="lanes", title="街巷 streets and alleys", geometry="line", minzoom=13,
        cap=5000,
        fields={"id": "Number", "code": "String", "name": "String",
                "road_class": "String: arterial, secondary, branch, alley",
                "district_code": "String", "street_office_code": "String: 街道 code",
                "chief_name": "String: 街巷长 (or alley chief) now",
                "chief_person_id": "Number"},
        source="""SELECT s.id AS fid, s.id, s.code, s.name, s.road_class, s.district_code,
                         s.street_office_code, ch.name AS chief_name,
                         ch.id AS chief_person_id, s.geom AS g, ST_Length(s.geom) AS rank
                  FROM streets s
                  LEFT JOIN LATERAL (
                    SELECT p.id, p.name FROM street_assignments sa
                    JOIN people p ON p.id = sa.person_id
                    WHERE sa.street_id = s.id AND sa.role IN ('street_chief', 'alley_chief')
                      AND sa.valid_from <= now()
                      AND (sa.valid_to IS NULL OR sa.valid_to > now())
                    ORDER BY sa.valid_from DESC LIMIT 1) ch ON true
                  WHERE s.geom && {env}"""),
    Layer(
        name="joint_zones", title="联合哨 joint zones", geometry="polygon", minzoom=11,
        cap=2000,
        fields={"id": "Number", "level": "String: district or street",
                "code_a": "String", "code_b": "String", "origin": "String",
                "width_m": "Number"},
        source="""SELECT z.id AS fid, z.id, z.level, z.code_a, z.code_b, z.origin, z.width_m,
                         z.geom AS g, ST_Area(z.geom) AS rank
                  FROM joint_zones z WHERE z.geom && {env}"""),
    Layer(
        name="incidents", title="事件 open incidents", geometry="point", minzoom=8,
        cap=5000, scope="incidents", ttl_s=30.0,
        fields={"id": "Number", "status": "String", "event_kind": "String: event or component",
                "event_code": "String", "event_name": "String", "source": "String",
                "is_joint": "Boolean", "overdue": "Boolean: current stage past its deadline",
                "supervised": "Boolean",
                "reported_at": "Number: Unix time (s)", "district_code": "String",
                "street_code": "String", "grid_code": "String"},
        source=f"""SELECT i.id AS fid, i.id, i.status, ec.kind AS event_kind,
                          ec.code AS event_code, ec.name AS event_name, i.source, i.is_joint,
                          coalesce({CURRENT_DEADLINE} < now(), false) AS overdue,
                          i.supervised,
                          extract(epoch FROM i.reported_at)::bigint AS reported_at,
                          i.district_code, i.street_code, i.grid_code, i.geom AS g,
                          extract(epoch FROM i.reported_at) AS rank
                   FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
                   WHERE i.status IN {OPEN_STATUSES!r} AND i.geom && {{env}}
                     AND ({{visible}})"""),  # noqa: S608 - constant SQL fragments; values are bound
    Layer(
        name="teams", title="队伍 teams (current positions)", geometry="point", minzoom=10,
        cap=5000, scope="teams", ttl_s=30.0,
        fields={"id": "Number", "code": "String", "name": "String",
                "department_id": "Number", "department": "String: department name",
                "dept_type": "String", "status": "String: available, busy, off_duty, "
                "out_of_service", "stale": "Boolean: position older than the stale limit",
                "position_at": "Number: Unix time (s)", "district_code": "String",
                "incident_id": "Number: the incident of its active dispatch"},
        source=f"""SELECT t.id AS fid, t.id, t.code, t.name, t.department_id,
                          d.name AS department, d.dept_type, t.status,
                          (t.position_at < now() - CAST(:stale_after AS interval)) AS stale,
                          extract(epoch FROM t.position_at)::bigint AS position_at,
                          t.district_code,
                          (SELECT x.incident_id FROM dispatches x
                           WHERE x.team_id = t.id AND x.status IN {ACTIVE_DISPATCH!r}
                           ORDER BY x.dispatched_at DESC, x.id DESC LIMIT 1) AS incident_id,
                          t.position AS g, -t.id AS rank
                   FROM teams t JOIN departments d ON d.id = t.department_id
                   WHERE t.position && {{env}} AND ({{visible}})"""),  # noqa: S608 - constant SQL fragments; values are bound
)}

# The features of the incidents layer below CLUSTER_BELOW.
CLUSTER_FIELDS = {"point_count": "Number: incidents in the cluster",
                  "overdue_count": "Number: of them overdue",
                  "joint_count": "Number: of them joint (联合哨) cases",
                  "id": "Number: the incident, when point_count is 1"}

# Which layers an event changes when it does not say (the emitters normally do).
_DEFAULT_LAYERS: dict[str, tuple[str, ...]] = {
    "incident.created": ("incidents",), "incident.status": ("incidents",),
    "incident.escalated": ("incidents",), "incidents.imported": ("incidents",),
    "incident.followup": ("incidents",), "whistle.blown": ("incidents",),
    "dispatch.created": ("incidents", "teams"), "dispatch.status": ("incidents", "teams"),
    "team.status": ("teams",), "team.position": ("teams",), "team.updated": ("teams",),
    "boundaries.changed": ("districts", "streets", "communities", "grids", "lanes",
                           "joint_zones"),
    "joint_zones.changed": ("joint_zones",),
}


def layer_of(name: str) -> Layer:
    """The layer called `name`; NotFound naming the layers there are."""
    layer = LAYERS.get(name)
    if layer is None:
        raise NotFound(f"no tile layer {name!r}; layers: {', '.join(LAYERS)}", field="layer")
    return layer


def check_tile(z: int, x: int, y: int) -> None:
    """InvalidInput naming the field unless 0 ≤ z ≤ 22 and 0 ≤ x, y < 2^z."""
    if not 0 <= z <= MAX_ZOOM:
        raise InvalidInput(f"zoom z must be 0 … {MAX_ZOOM}, not {z}", field="z")
    top = 2 ** z - 1
    if not 0 <= x <= top:
        raise InvalidInput(f"x must be 0 … {top} at zoom {z}, not {x}", field="x")
    if not 0 <= y <= top:
        raise InvalidInput(f"y must be 0 … {top} at zoom {z}, not {y}", field="y")


# -- projection ------------------------------------------------------------------------


def _merc_y(lat: float) -> float:
    return _R * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def _tile_lat(z: int, y: float) -> float:
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / 2 ** z))))


def _affine(z: int, y: int) -> tuple[float, float, float] | None:
    """(a_x, a_y, b_y) of the secant map lon, lat → x = a_x·lon, y = a_y·lat + b_y through
    the tile's north and south edges, when it is within AFFINE_MAX_ERROR tile units of Web
    Mercator over the tile; None when it is not (low zoom)."""
    north, south = _tile_lat(z, y), _tile_lat(z, y + 1)
    y_n, y_s = _merc_y(north), _merc_y(south)
    a_y = (y_n - y_s) / (north - south)
    b_y = y_s - a_y * south
    unit = (y_n - y_s) / EXTENT
    worst = max(abs(a_y * lat + b_y - _merc_y(lat))
                for lat in (south + (north - south) * k / 16 for k in range(1, 16)))
    if worst > AFFINE_MAX_ERROR * unit:
        return None
    return _R * math.pi / 180, a_y, b_y


def _projection(z: int, y: int, geometry: Geometry, column: str) -> tuple[str, dict[str, Any]]:
    """SQL projecting `column` (EPSG:4326) to Web Mercator for tile row `y` at zoom `z`:
    lines and polygons first simplified to SIMPLIFY_UNITS tile units (invisible, and fewer
    vertices to project and clip)."""
    source, params = column, {}
    if geometry != "point":
        # A tile unit in degrees of latitude (the shorter way) at the tile's poleward edge.
        lat = max(abs(_tile_lat(z, y)), abs(_tile_lat(z, y + 1)))
        tolerance = 360.0 / 2 ** z / EXTENT * math.cos(math.radians(lat)) * SIMPLIFY_UNITS
        source, params = f"ST_Simplify({column}, :tolerance, true)", {"tolerance": tolerance}
    affine = _affine(z, y)
    if affine is not None:
        a_x, a_y, b_y = affine
        return (f"ST_Affine({source}, :a_x, 0, 0, :a_y, 0, :b_y)",
                {**params, "a_x": a_x, "a_y": a_y, "b_y": b_y})
    return f"ST_Transform({source}, 3857)", params


# -- tiles -----------------------------------------------------------------------------

_ENV = "ST_Transform(ST_TileEnvelope(:z, :x, :y, margin => :margin), 4326)"
_ENV_EXACT = "ST_Transform(ST_TileEnvelope(:z, :x, :y), 4326)"


def scope_predicate(layer: Layer, reader: Principal) -> tuple[str, dict[str, Any]]:
    """The reader's visibility predicate for a scoped layer ("true" for the others)."""
    if layer.scope == "incidents":
        return incident_visible(reader)
    if layer.scope == "teams":
        return team_visible(reader)
    return "true", {}


def scope_key(layer: Layer, reader: Principal) -> str:
    """What a scoped tile's content depends on besides the place: the reader's predicate
    and its parameters (readers with the same scope share cache entries). "" for the
    reference layers, the same for everyone."""
    if layer.scope is None:
        return ""
    predicate, params = scope_predicate(layer, reader)
    raw = json.dumps([predicate, sorted(params.items())], default=str, sort_keys=True)
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


def tile_sql(layer: Layer, z: int, x: int, y: int, visible: str
             ) -> tuple[str, dict[str, Any]]:
    """The SQL of one tile of `layer` and its parameters besides the reader's."""
    project, params = _projection(z, y, layer.geometry, "r.g")
    if layer.name == "incidents" and z < CLUSTER_BELOW:
        # Clusters: the incidents inside the tile (no buffer: each is counted once) by
        # cell of 1/CLUSTER_CELLS tile, drawn at the centroid of their members.
        size = 2 * math.pi * _R / 2 ** z
        rows = layer.source.format(env=_ENV_EXACT, visible=visible)
        sql = f"""
            SELECT ST_AsMVT(q, :layer, {EXTENT}, 'geom') FROM (
              SELECT count(*) AS point_count,
                     count(*) FILTER (WHERE p.overdue) AS overdue_count,
                     count(*) FILTER (WHERE p.is_joint) AS joint_count,
                     CASE WHEN count(*) = 1 THEN min(p.fid) END AS id,
                     ST_AsMVTGeom(ST_Centroid(ST_Collect(p.m)), ST_TileEnvelope(:z, :x, :y),
                                  {EXTENT}, {BUFFER}, true) AS geom
              FROM (SELECT r.fid, r.overdue, r.is_joint, {project} AS m
                    FROM ({rows}) r) p
              GROUP BY least(floor((ST_X(p.m) - :xmin) / :cell), {CLUSTER_CELLS - 1}),
                       least(floor((ST_Y(p.m) - :ymin) / :cell), {CLUSTER_CELLS - 1})
            ) q"""  # noqa: S608 - constant SQL fragments; values are bound
        return sql, {**params, "cell": size / CLUSTER_CELLS,
                     "xmin": -math.pi * _R + x * size, "ymin": math.pi * _R - (y + 1) * size}
    rows = layer.source.format(env=_ENV, visible=visible)
    props = ", ".join(f"r.{p}" for p in layer.fields)
    sql = f"""
        SELECT ST_AsMVT(q, :layer, {EXTENT}, 'geom', 'fid') FROM (
          SELECT r.fid, {props},
                 ST_AsMVTGeom({project}, ST_TileEnvelope(:z, :x, :y), {EXTENT}, {BUFFER}, true)
                   AS geom
          FROM ({rows} ORDER BY rank DESC LIMIT :cap) r
        ) q"""  # noqa: S608 - constant SQL fragments; values are bound
    return sql, params


def render_tile(conn: Connection, layer: Layer, z: int, x: int, y: int, reader: Principal,
                *, stale_after: timedelta = DEFAULT_STALE_AFTER) -> bytes:
    """The MVT bytes of one tile of `layer` (b"" below its minimum zoom or when empty)."""
    check_tile(z, x, y)
    if z < layer.minzoom:
        return b""
    visible, params = scope_predicate(layer, reader)
    sql, fixed = tile_sql(layer, z, x, y, visible)
    # A tile is one short query: JIT compilation (triggered by the cost of the geometry
    # functions) and parallel workers cost far more to start than they save.
    conn.execute(text("SELECT set_config('jit', 'off', true), "
                      "set_config('max_parallel_workers_per_gather', '0', true)"))
    data = conn.scalar(text(sql), {
        **params, **fixed, "layer": layer.name, "z": z, "x": x, "y": y,
        "margin": BUFFER / EXTENT, "cap": layer.cap, "stale_after": stale_after})
    return bytes(data) if data else b""


# -- cache -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """Tile bytes and their strong entity tag (a hash of the bytes)."""

    data: bytes
    etag: str

    @classmethod
    def of(cls, data: bytes) -> Tile:
        return cls(data, '"' + hashlib.blake2b(data, digest_size=16).hexdigest() + '"')


@dataclass(frozen=True)
class TileKey:
    layer: str
    z: int
    x: int
    y: int
    scope: str = ""


@dataclass
class _Entry:
    tile: Tile
    size: int
    stored: float


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stores: int = 0
    evictions: int = 0
    invalidated: int = 0
    discarded: int = 0  # renders not stored: their layer changed meanwhile


_ENTRY_OVERHEAD = 256  # bytes of bookkeeping counted per entry


@dataclass
class TileCache:
    """Rendered tiles in this process: LRU by bytes, a lifetime per layer (Layer.ttl_s, a
    safety net for time-dependent properties such as `overdue`), and invalidation by change
    events. Thread-safe (events arrive on the hub's thread)."""

    max_bytes: int = 64 * 1024 * 1024
    clock: Callable[[], float] = time.monotonic
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[TileKey, _Entry] = OrderedDict()
        self._by_layer: dict[str, set[TileKey]] = {name: set() for name in LAYERS}
        self._versions: dict[str, int] = dict.fromkeys(LAYERS, 0)
        self._bytes = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def version(self, layer: str) -> int:
        """The layer's version: bumped by every invalidation that names the layer."""
        with self._lock:
            return self._versions[layer]

    def get(self, key: TileKey) -> Tile | None:
        """The cached tile, or None (missing or expired)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.stats.misses += 1
                return None
            if self.clock() - entry.stored > LAYERS[key.layer].ttl_s:
                self._drop(key)
                self.stats.misses += 1
                return None
            self._entries.move_to_end(key)
            self.stats.hits += 1
            return entry.tile

    def put(self, key: TileKey, tile: Tile, version: int) -> bool:
        """Store a tile rendered when the layer was at `version`; not stored (False) when
        the layer has changed since (the render may predate the change) or the tile is
        larger than 1/16 of the cache."""
        size = len(tile.data) + _ENTRY_OVERHEAD
        with self._lock:
            if self._versions[key.layer] != version:
                self.stats.discarded += 1
                return False
            if size > self.max_bytes // 16:
                return False
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(tile, size, self.clock())
            self._by_layer[key.layer].add(key)
            self._bytes += size
            self.stats.stores += 1
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))
                self.stats.evictions += 1
            return True

    def _drop(self, key: TileKey) -> None:
        entry = self._entries.pop(key)
        self._by_layer[key.layer].discard(key)
        self._bytes -= entry.size

    def clear(self) -> int:
        """Drop every tile (and bump every layer's version); the number dropped."""
        with self._lock:
            dropped = len(self._entries)
            self._entries.clear()
            for keys in self._by_layer.values():
                keys.clear()
            for name in self._versions:
                self._versions[name] += 1
            self._bytes = 0
            return dropped

    def invalidate(self, event: Mapping[str, Any]) -> int:
        """Drop the cached tiles an event changes; the number dropped. The event names its
        `layers` (else they follow from its `type`) and its place: `points` [[lon, lat], …]
        and/or `bbox` [minx, miny, maxx, maxy] (WGS84). Only the tiles of those layers
        containing a point or meeting the bbox (tile plus buffer, at every zoom) go; an
        event without a (readable) place drops the whole layers."""
        layers = event_layers(event)
        if not layers:
            return 0
        boxes = event_boxes(event)
        with self._lock:
            dropped = 0
            for name in layers:
                self._versions[name] += 1
                ranges: dict[int, list[tuple[int, int, int, int]]] = {}
                for key in list(self._by_layer[name]):
                    if boxes is not None:
                        if key.z not in ranges:
                            ranges[key.z] = [tile_range(box, key.z) for box in boxes]
                        if not any(x0 <= key.x <= x1 and y0 <= key.y <= y1
                                   for x0, x1, y0, y1 in ranges[key.z]):
                            continue
                    self._drop(key)
                    dropped += 1
            self.stats.invalidated += dropped
            return dropped


def event_layers(event: Mapping[str, Any]) -> list[str]:
    """The tile layers an event changes: its `layers` (unknown names ignored), else the
    defaults of its `type`."""
    named = event.get("layers")
    if isinstance(named, list):
        return [n for n in dict.fromkeys(named) if isinstance(n, str) and n in LAYERS]
    return list(_DEFAULT_LAYERS.get(str(event.get("type", "")), ()))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def event_boxes(event: Mapping[str, Any]) -> list[tuple[float, float, float, float]] | None:
    """The places of an event as WGS84 boxes (a point is a box of no size); None when it
    has none or one cannot be read (then whole layers are dropped)."""
    boxes: list[tuple[float, float, float, float]] = []
    points = event.get("points")
    bbox = event.get("bbox")
    if points is None and bbox is None:
        return None
    if points is not None:
        if not isinstance(points, list):
            return None
        for point in points:
            if not isinstance(point, list | tuple) or len(point) < 2:
                return None
            lon, lat = _number(point[0]), _number(point[1])
            if lon is None or lat is None:
                return None
            boxes.append((lon, lat, lon, lat))
    if bbox is not None:
        if not isinstance(bbox, list | tuple) or len(bbox) != 4:
            return None
        values = [_number(v) for v in bbox]
        if any(v is None for v in values):
            return None
        minx, miny, maxx, maxy = (float(v) for v in values if v is not None)
        boxes.append((min(minx, maxx), min(miny, maxy), max(minx, maxx), max(miny, maxy)))
    return boxes


def _tile_xy(lon: float, lat: float, z: int) -> tuple[float, float]:
    """Fractional tile coordinates of a WGS84 point at zoom `z`."""
    n = 2 ** z
    lat = max(-MERCATOR_MAX_LAT, min(MERCATOR_MAX_LAT, lat))
    fx = (lon + 180.0) / 360.0 * n
    fy = (1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n
    return fx, fy


def tile_range(box: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1): the tiles at zoom `z` whose area plus buffer meets `box`."""
    b = BUFFER / EXTENT
    fx0, fy0 = _tile_xy(box[0], box[3], z)  # north-west corner
    fx1, fy1 = _tile_xy(box[2], box[1], z)  # south-east corner
    return (math.ceil(fx0 - 1 - b), math.floor(fx1 + b),
            math.ceil(fy0 - 1 - b), math.floor(fy1 + b))


def get_tile(conn: Connection, cache: TileCache | None, layer: Layer, z: int, x: int, y: int,
             reader: Principal, *, stale_after: timedelta = DEFAULT_STALE_AFTER) -> Tile:
    """One tile for `reader`: from the cache when there, else rendered (and cached)."""
    check_tile(z, x, y)
    if z < layer.minzoom:
        return EMPTY_TILE
    if cache is None:
        return Tile.of(render_tile(conn, layer, z, x, y, reader, stale_after=stale_after))
    key = TileKey(layer.name, z, x, y, scope_key(layer, reader))
    tile = cache.get(key)
    if tile is not None:
        return tile
    version = cache.version(layer.name)
    tile = Tile.of(render_tile(conn, layer, z, x, y, reader, stale_after=stale_after))
    cache.put(key, tile, version)
    return tile


EMPTY_TILE = Tile.of(b"")


def describe_layers(url_template: str) -> list[dict[str, Any]]:
    """Each layer for clients (layers.json): name, title, geometry, zooms, cap, fields,
    whether it is scoped, and the tile URL (`url_template` with {layer} filled in)."""
    out = []
    for layer in LAYERS.values():
        url = url_template.replace("{layer}", layer.name)
        entry: dict[str, Any] = {
            "name": layer.name, "title": layer.title, "geometry": layer.geometry,
            "minzoom": layer.minzoom, "maxzoom": DECLARED_MAXZOOM, "feature_cap": layer.cap,
            "scoped": layer.scope is not None, "fields": dict(layer.fields),
            "url_template": url, "tiles": [url]}
        if layer.name == "incidents":
            entry["cluster_below_zoom"] = CLUSTER_BELOW
            entry["cluster_fields"] = dict(CLUSTER_FIELDS)
        out.append(entry)
    return out

