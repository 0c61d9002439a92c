"""Build the road graph (road_nodes / road_edges) from an OpenStreetMap extract (.osm.pbf).

Drivable ways (HIGHWAYS) are read with pyosmium, split into graph edges at every node shared
by two ways (or used twice by one) and at their ends, measured on the WGS84 ellipsoid, and
given travel times from their speed (the `maxspeed` tag when parseable, else the class's
speed) and direction (`oneway`, implied one-way for motorways and roundabouts). Each node and
edge takes the code of the loaded district containing it (an edge: its midpoint), else the
fallback code given. Everything is loaded in the caller's transaction with COPY: the whole
graph or nothing. See docs/routing.md (speeds table, one-way rules, attribution).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import osmium
import pandas as pd
import shapely
from pyproj import Geod
from sqlalchemy import Connection, text

from gis import audit, events
from gis.audit import Actor
from gis.copy import copy_rows, ewkb
from gis.errors import Conflict, InvalidInput

# highway=* → (road_class, default speed km/h): typical urban driving speeds for a response
# vehicle, used when the way has no parseable maxspeed. Other highway values (footway, path,
# cycleway, steps, pedestrian, track, bridleway, construction, proposed, …) are not loaded.
HIGHWAYS: dict[str, tuple[str, float]] = {
    "motorway": ("arterial", 80.0),
    "motorway_link": ("arterial", 40.0),
    "trunk": ("arterial", 60.0),
    "trunk_link": ("arterial", 40.0),
    "primary": ("arterial", 50.0),
    "primary_link": ("arterial", 30.0),
    "secondary": ("secondary", 40.0),
    "secondary_link": ("secondary", 30.0),
    "tertiary": ("branch", 30.0),
    "tertiary_link": ("branch", 25.0),
    "unclassified": ("branch", 25.0),
    "residential": ("branch", 20.0),
    "living_street": ("alley", 10.0),
    "service": ("alley", 15.0),
}
MAX_SPEED_KMH = 130.0  # road_edges.speed_kmh's upper bound
FORWARD, BACKWARD, BOTH = 1, -1, 0
ONEWAY_FORWARD = {"yes", "true", "1"}
ONEWAY_BACKWARD = {"-1", "reverse"}
ONEWAY_NO = {"no", "false", "0"}
ONEWAY_SKIPPED = {"reversible", "alternating"}  # direction changes with time: not loaded
IMPLIED_ONEWAY_HIGHWAYS = {"motorway"}
IMPLIED_ONEWAY_JUNCTIONS = {"roundabout", "circular"}
CHUNK = 50_000  # rows per COPY (progress)
_SPEED = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(km/h|kmh|kph|mph|knots)?\s*$", re.IGNORECASE)
_UNIT_KMH = {"mph": 1.609344, "knots": 1.852}
_INVALID = 2147483647  # osmium's coordinate of a node missing from the extract
_GEOD = Geod(ellps="WGS84")

Progress = Callable[[str, int, int], None]  # (what, done, total)


def no_progress(what: str, done: int, total: int) -> None:
    """A Progress that shows nothing."""


@dataclass(frozen=True)
class OsmImportResult:
    """What an import loaded."""

    path: Path
    ways: int            # drivable ways read
    skipped_ways: int    # ways left out (reversible, areas, too few located nodes)
    nodes: int
    edges: int
    oneway_edges: int
    replaced_edges: int  # edges of the graph replaced (0 without --replace)
    districts: dict[str, int]  # edges per district code

    def summary(self) -> str:
        parts = [f"{self.edges} edges ({self.oneway_edges} one-way)", f"{self.nodes} nodes",
                 f"from {self.ways} ways"]
        if self.skipped_ways:
            parts.append(f"{self.skipped_ways} ways skipped")
        if self.replaced_edges:
            parts.append(f"replaced {self.replaced_edges} edges")
        return ", ".join(parts)


def parse_maxspeed(value: str | None) -> float | None:
    """km/h from a maxspeed tag ('50', '30 mph', '60 km/h', '50;30' takes the first); None
    when absent or not a number (e.g. 'RU:urban', 'walk', 'none'); capped at 130."""
    if not value:
        return None
    match = _SPEED.match(value.split(";")[0])
    if not match:
        return None
    kmh = float(match.group(1)) * _UNIT_KMH.get((match.group(2) or "").lower(), 1.0)
    return min(kmh, MAX_SPEED_KMH) if kmh > 0 else None


def direction(tags: dict[str, str]) -> int | None:
    """FORWARD, BACKWARD or BOTH from oneway (and the implied one-way of motorways and
    roundabouts); None for reversible/alternating ways, which are not loaded."""
    oneway = (tags.get("oneway") or "").strip().lower()
    if oneway in ONEWAY_SKIPPED:
        return None
    if oneway in ONEWAY_FORWARD:
        return FORWARD
    if oneway in ONEWAY_BACKWARD:
        return BACKWARD
    if oneway in ONEWAY_NO:
        return BOTH
    if (tags.get("highway") in IMPLIED_ONEWAY_HIGHWAYS
            or tags.get("junction") in IMPLIED_ONEWAY_JUNCTIONS):
        return FORWARD
    return BOTH


@dataclass
class _Ways:
    """Drivable ways read from the file: per-way attributes and their vertices, flat."""

    highway: list[str]
    name: list[str | None]
    speed: list[float]
    way_dir: list[int]
    vertex_way: list[int]
    ref: list[int]
    x: list[int]
    y: list[int]
    skipped: int = 0


def read_ways(path: Path, progress: Progress = no_progress) -> _Ways:
    """Every drivable way of the file with its node ids and locations (a node missing from
    the extract has an invalid location)."""
    if not path.is_file():
        raise InvalidInput(f"{path}: no such file", field="file")
    ways = _Ways([], [], [], [], [], [], [], [])
    processor = (osmium.FileProcessor(str(path), osmium.osm.NODE | osmium.osm.WAY)
                 .with_locations()
                 .with_filter(osmium.filter.EntityFilter(osmium.osm.WAY))
                 .with_filter(osmium.filter.KeyFilter("highway")))
    progress(f"reading {path.name}", 0, 0)
    try:
        for way in processor:
            if not isinstance(way, osmium.osm.Way):
                continue
            tags = {tag.k: tag.v for tag in way.tags}
            cls = HIGHWAYS.get(tags.get("highway", ""))
            if cls is None:
                continue
            way_dir = direction(tags)
            if way_dir is None or tags.get("area") == "yes":
                ways.skipped += 1
                continue
            index = len(ways.highway)
            ways.highway.append(tags["highway"])
            ways.name.append(tags.get("name"))
            ways.speed.append(parse_maxspeed(tags.get("maxspeed")) or cls[1])
            ways.way_dir.append(way_dir)
            for node in way.nodes:
                location = node.location
                ways.vertex_way.append(index)
                ways.ref.append(node.ref)
                ways.x.append(location.x)
                ways.y.append(location.y)
    except RuntimeError as exc:
        raise InvalidInput(f"{path.name}: not a readable OpenStreetMap file ({exc})",
                           field="file") from exc
    return ways


@dataclass(frozen=True)
class Graph:
    """Graph nodes (OSM ids, lon/lat) and edges (node ids, way index, vertex range)."""

    node_id: npt.NDArray[np.int64]
    node_lon: npt.NDArray[np.float64]
    node_lat: npt.NDArray[np.float64]
    source: npt.NDArray[np.int64]
    target: npt.NDArray[np.int64]
    way: npt.NDArray[np.int64]
    length_m: npt.NDArray[np.float64]
    geom: npt.NDArray[np.object_]
    skipped_ways: int


def build_graph(ways: _Ways) -> Graph:
    """Split the ways into edges at graph nodes (vectorised): a node is a graph node where a
    way ends, where a located run of a way ends (the extract cut it), or where it is used
    more than once; a closed loop is also split at its middle vertex."""
    vway = np.asarray(ways.vertex_way, dtype=np.int64)
    ref = np.asarray(ways.ref, dtype=np.int64)
    x = np.asarray(ways.x, dtype=np.int64)
    y = np.asarray(ways.y, dtype=np.int64)
    located = (x != _INVALID) & (y != _INVALID)
    # runs: a way's stretch of located vertices (a node missing from the extract cuts it)
    new_run = np.ones(len(ref), dtype=bool)
    new_run[1:] = (vway[1:] != vway[:-1]) | ~located[:-1]
    run = np.cumsum(new_run) - 1
    keep = located.copy()  # … without consecutive repeats of a node
    keep[1:] &= ~((ref[1:] == ref[:-1]) & (run[1:] == run[:-1]))
    vway, ref, x, y, run = vway[keep], ref[keep], x[keep], y[keep], run[keep]
    run_size = np.bincount(run)
    usable = run_size[run] >= 2
    vway, ref, x, y, run = vway[usable], ref[usable], x[usable], y[usable], run[usable]
    lon, lat = x / 1e7, y / 1e7
    first = np.ones(len(run), dtype=bool)
    first[1:] = run[1:] != run[:-1]
    last = np.ones(len(run), dtype=bool)
    last[:-1] = run[1:] != run[:-1]
    _, inverse, counts = np.unique(ref, return_inverse=True, return_counts=True)
    is_node = first | last | (counts[inverse] > 1)
    start, end = _segments(is_node, run)
    loops = ref[start] == ref[end]
    if loops.any():  # split each loop at its middle vertex (a loop of 2 vertices is dropped)
        is_node[(start[loops] + end[loops]) // 2] = True
        start, end = _segments(is_node, run)
    # metres on the ellipsoid, per vertex step; an edge's length is a difference of sums
    step = np.zeros(len(ref))
    if len(ref) > 1:
        step[1:] = _GEOD.inv(lon[:-1], lat[:-1], lon[1:], lat[1:])[2]
        step[first] = 0.0
    total = np.cumsum(step)
    length = total[end] - total[start]
    good = (ref[start] != ref[end]) & (length > 0)
    start, end, length = start[good], end[good], length[good]
    sizes = end - start + 1
    vertices = np.repeat(start - np.cumsum(sizes) + sizes, sizes) + np.arange(sizes.sum())
    geom = shapely.linestrings(np.column_stack([lon[vertices], lat[vertices]]),
                               indices=np.repeat(np.arange(len(start)), sizes))
    used = np.unique(np.concatenate([ref[start], ref[end]]))
    sorter = np.argsort(ref, kind="stable")
    order = sorter[np.searchsorted(ref, used, sorter=sorter)]
    skipped = ways.skipped + len(ways.highway) - len(np.unique(vway[start]))
    return Graph(used, lon[order], lat[order], ref[start], ref[end], vway[start], length,
                 np.asarray(geom, dtype=object), skipped)


def _segments(is_node: npt.NDArray[np.bool_],
              run: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Vertex ranges [start, end] between consecutive graph nodes of one run."""
    pos = np.flatnonzero(is_node)
    same = run[pos[:-1]] == run[pos[1:]]
    return pos[:-1][same], pos[1:][same]


def districts_of(conn: Connection, lon: npt.NDArray[np.float64], lat: npt.NDArray[np.float64],
                 fallback: str | None) -> npt.NDArray[np.object_]:
    """Code of the loaded (current) district containing each point, else `fallback`; a point
    in none without a fallback is an error naming --district-code."""
    rows = conn.execute(text("""
        SELECT code, ST_AsBinary(geom) FROM jurisdictions
        WHERE level = 'district' AND valid_to IS NULL ORDER BY code
    """)).all()
    codes = np.array([r[0] for r in rows] + [fallback], dtype=object)
    out = np.full(len(lon), len(rows), dtype=np.int64)
    if rows:
        tree = shapely.STRtree(shapely.from_wkb([bytes(r[1]) for r in rows]))
        point, district = tree.query(shapely.points(lon, lat), predicate="intersects")
        np.minimum.at(out, point, district)
    outside = out == len(rows)
    if outside.any() and fallback is None:
        raise InvalidInput(f"{int(outside.sum())} road point(s) lie in no loaded district; "
                           "give --district-code for them", field="district_code")
    return codes[out]


def _check_fallback(conn: Connection, code: str | None) -> None:
    if code is None:
        return
    if not re.fullmatch(r"[0-9]{6}", code):
        raise InvalidInput(f"district code {code!r} is not 6 digits", field="district_code")
    loaded = conn.execute(text("""
        SELECT count(*) FILTER (WHERE code = :code), count(*) FROM jurisdictions
        WHERE level = 'district' AND valid_to IS NULL
    """), {"code": code}).one()
    if loaded[1] and not loaded[0]:
        raise InvalidInput(f"district {code} is not a loaded district", field="district_code")


def import_osm(conn: Connection, path: Path, *, replace: bool = False,
               district_code: str | None = None, by: Actor,
               progress: Progress = no_progress) -> OsmImportResult:
    """Load the drivable road graph of an OpenStreetMap file into road_nodes/road_edges on
    `conn` (the caller's transaction): refuse when a graph exists unless `replace`."""
    _check_fallback(conn, district_code)
    existing = int(conn.execute(text("SELECT count(*) FROM road_edges")).scalar_one())
    nodes_now = bool(conn.execute(text("SELECT EXISTS (SELECT 1 FROM road_nodes)")).scalar())
    if (existing or nodes_now) and not replace:
        raise Conflict(f"a road graph is already loaded ({existing} edges); use --replace to "
                       "replace it", field="replace")
    ways = read_ways(path, progress)
    progress("splitting ways into edges", 0, 0)
    graph = build_graph(ways)
    if not len(graph.source):
        raise InvalidInput(f"{path.name}: no drivable roads (highway={{{','.join(HIGHWAYS)}}}) "
                           "with located nodes", field="file")
    progress("finding districts", 0, 0)
    node_district = districts_of(conn, graph.node_lon, graph.node_lat, district_code)
    middle = shapely.line_interpolate_point(graph.geom, 0.5, normalized=True)
    edge_district = districts_of(conn, shapely.get_x(middle), shapely.get_y(middle),
                                 district_code)
    edges = _edge_rows(ways, graph, edge_district)
    if replace:
        conn.execute(text("DELETE FROM road_edges"))
        conn.execute(text("DELETE FROM road_nodes"))
    nodes = pd.DataFrame({
        "id": graph.node_id,
        "geom": ewkb(shapely.points(graph.node_lon, graph.node_lat)),
        "district_code": node_district,
    })
    _copy(conn, "road_nodes", nodes, progress)
    _copy(conn, "road_edges", edges, progress)
    per_district = edges["district_code"].value_counts().sort_index()
    result = OsmImportResult(
        path=path, ways=len(ways.highway), skipped_ways=graph.skipped_ways, nodes=len(nodes),
        edges=len(edges), oneway_edges=int(((edges["cost"] < 0)
                                            | (edges["reverse_cost"] < 0)).sum()),
        replaced_edges=existing if replace else 0,
        districts={str(k): int(v) for k, v in per_district.items()})
    audit.record(conn, by, action="road_graph.import", object_type="road_graph",
                 object_id=None, after={"file": path.name, "nodes": result.nodes,
                                        "edges": result.edges, "replaced": result.replaced_edges,
                                        "districts": result.districts})
    events.emit(conn, "road_graph.imported", result.districts, edges=result.edges,
                nodes=result.nodes, layers=[],
                bbox=events.bbox(float(graph.node_lon.min()), float(graph.node_lat.min()),
                                 float(graph.node_lon.max()), float(graph.node_lat.max())))
    return result


def _edge_rows(ways: _Ways, graph: Graph, district: npt.NDArray[np.object_]) -> pd.DataFrame:
    highway = np.asarray(ways.highway, dtype=object)[graph.way]
    speed = np.asarray(ways.speed, dtype=np.float64)[graph.way]
    way_dir = np.asarray(ways.way_dir, dtype=np.int64)[graph.way]
    seconds = graph.length_m / (speed / 3.6)
    road_class = np.array([HIGHWAYS[h][0] for h in highway], dtype=object)
    name: Any = pd.array(np.asarray(ways.name, dtype=object)[graph.way], dtype="string")
    return pd.DataFrame({
        "source": graph.source,
        "target": graph.target,
        "name": name,
        "road_class": road_class,
        "length_m": graph.length_m,
        "speed_kmh": speed,
        "cost": np.where(way_dir == BACKWARD, -1.0, seconds),
        "reverse_cost": np.where(way_dir == FORWARD, -1.0, seconds),
        "geom": ewkb(graph.geom),
        "district_code": district,
    })


def _copy(conn: Connection, table: str, frame: pd.DataFrame, progress: Progress) -> None:
    total = len(frame)
    progress(f"loading {table}", 0, total)
    for start in range(0, total, CHUNK):
        copy_rows(conn, table, frame.iloc[start:start + CHUNK])
        progress(f"loading {table}", min(start + CHUNK, total), total)
