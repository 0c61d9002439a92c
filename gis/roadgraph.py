"""In-memory travel-time graph over road_nodes/road_edges, for dispatch ETAs (DESIGN.md §3).

The graph is kept REVERSED in one prebuilt CSR matrix (scipy.sparse.csgraph): row v, column u
holds the time of the original arc u→v, so one Dijkstra from the target gives every origin's
time to it. A spare last row is a virtual target node whose two arcs (to the target edge's
ends, weighted by the driving time of the edge fraction) are written in place per query; the
matrix is never rebuilt. Searches are bounded: a first limit guessed from the straight-line
distances, widened (up to the budget) only while some origin's answer is still unproven.

Snapping: target and origins snap to the nearest edge in a local metric plane (equirectangular
around the graph's centre; a shapely STRtree, vectorised). The walk from the point to its
snapped position costs its straight metres at WALK_MPS; driving along part of an edge costs
that fraction of the edge's cost in the direction driven (a negative cost closes a direction).
See docs/routing.md.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from numpy.typing import ArrayLike
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra
from shapely.ops import substring
from sqlalchemy import Connection, text

from gis.errors import InvalidInput

WALK_MPS = 1.4  # snap distance is added at walking speed
EARTH_M = 6_371_008.8  # mean Earth radius (metres) for the local plane and snap distances
FIRST_LIMIT_DETOUR = 1.6  # first search limit: straight distance × detour / typical speed …
FIRST_LIMIT_SLACK_S = 60.0  # … plus this
WIDEN = 3.0  # each further search multiplies the limit by this (capped by the budget)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Etas:
    eta_s: np.ndarray      # float64 per origin: seconds to reach the target, np.inf when beyond
                           # the budget or unreachable
    road_m: np.ndarray     # float64 per origin: road metres along that fastest path (np.nan
                           # when eta is inf)
    snap_m: np.ndarray     # float64 per origin: straight metres from the origin to its snapped
                           # edge point
    target_snap_m: float   # metres from the target to its snapped edge point


@dataclass(frozen=True)
class Snap:
    """Points snapped to edges: edge index (-1 when not snapped), fraction of the edge from
    its source, straight metres to the snapped point."""

    edge: IntArray
    fraction: FloatArray
    metres: FloatArray


@dataclass(frozen=True)
class _Search:
    """One query's state: origin candidates and the search that proved them."""

    dist: FloatArray      # reversed-graph time of every node to the target (inf = unreached)
    pred: npt.NDArray[np.int32]
    best: FloatArray      # driving seconds per origin (inf = unreachable within the limit)
    via: IntArray         # node the origin leaves its edge by; -1 = same edge, direct
    part_m: FloatArray    # metres driven on the origin's own edge (or between the two points)


class RoadGraph:
    """Travel-time graph built from road_edges (cost/reverse_cost in seconds)."""

    version: int

    def __init__(self, version: int, edge_id: IntArray, source: IntArray, target: IntArray,
                 cost: FloatArray, reverse_cost: FloatArray, length_m: FloatArray,
                 lines: npt.NDArray[np.object_]) -> None:
        self.version = version
        self._lock = threading.Lock()
        self.edge_id = edge_id
        self.cost = cost
        self.reverse_cost = reverse_cost
        self.length_m = length_m
        self.node_id, inverse = np.unique(np.concatenate([source, target]), return_inverse=True)
        n_edges = len(edge_id)
        self.src = inverse[:n_edges].astype(np.int64)
        self.tgt = inverse[n_edges:].astype(np.int64)
        self._plane(lines)
        self._build_csr()

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def load(cls, conn: Connection) -> RoadGraph:
        """Read road_graph_state.version, then every edge (version first: a change racing the
        load makes the graph look older than it is, so it is reloaded, never kept stale)."""
        version = int(conn.execute(text("SELECT version FROM road_graph_state")).scalar_one())
        rows = conn.execute(text("""
            SELECT id, source, target, cost, reverse_cost, length_m, ST_AsBinary(geom)
            FROM road_edges ORDER BY id
        """)).all()
        if rows:
            ids, src, tgt, cost, rcost, length, wkb = zip(*rows, strict=True)
        else:
            ids = src = tgt = cost = rcost = length = wkb = ()
        return cls(version, np.asarray(ids, dtype=np.int64), np.asarray(src, dtype=np.int64),
                   np.asarray(tgt, dtype=np.int64), np.asarray(cost, dtype=np.float64),
                   np.asarray(rcost, dtype=np.float64), np.asarray(length, dtype=np.float64),
                   shapely.from_wkb([bytes(w) for w in wkb]) if wkb else
                   np.empty(0, dtype=object))

    def _plane(self, lines: npt.NDArray[np.object_]) -> None:
        """The local metric plane (equirectangular around the centre of the edges' bounds)
        and the STRtree of the edges in it."""
        if len(lines):
            xmin, ymin, xmax, ymax = shapely.total_bounds(lines)
            self.lon0, self.lat0 = (xmin + xmax) / 2, (ymin + ymax) / 2
        else:
            self.lon0 = self.lat0 = 0.0
        self.ky = EARTH_M * math.pi / 180.0
        self.kx = self.ky * math.cos(math.radians(self.lat0))
        self.lines = shapely.transform(
            np.asarray(lines, dtype=object),
            lambda xy: (xy - (self.lon0, self.lat0)) * (self.kx, self.ky))
        self.tree = shapely.STRtree(self.lines)
        speeds = self.length_m / np.where(self.cost >= 0, self.cost, self.reverse_cost)
        finite = speeds[np.isfinite(speeds) & (speeds > 0)]
        self.typical_mps = float(np.median(finite)) if len(finite) else 10.0

    def _build_csr(self) -> None:
        """The reversed graph as CSR with one spare row (the virtual target) of two slots;
        parallel arcs keep the fastest. Parallel arrays in CSR order: length, edge, key."""
        n = len(self.node_id)
        self.virtual = n
        fwd = self.cost >= 0
        back = self.reverse_cost >= 0
        edges = np.arange(len(self.edge_id))
        # reversed arc head→tail of each open original arc tail→head
        row = np.concatenate([self.tgt[fwd], self.src[back]])
        col = np.concatenate([self.src[fwd], self.tgt[back]])
        weight = np.concatenate([self.cost[fwd], self.reverse_cost[back]])
        edge = np.concatenate([edges[fwd], edges[back]])
        order = np.lexsort((weight, col, row))
        row, col, weight, edge = row[order], col[order], weight[order], edge[order]
        key = row * (n + 1) + col
        keep = np.ones(len(key), dtype=bool)
        keep[1:] = key[1:] != key[:-1]
        row, col, weight, edge, key = row[keep], col[keep], weight[keep], edge[keep], key[keep]
        length = self.length_m[edge]
        # the virtual row: two slots, rewritten per query
        row = np.concatenate([row, [n, n]])
        col = np.concatenate([col, [n, n]])
        weight = np.concatenate([weight, [1.0, 1.0]])
        edge = np.concatenate([edge, [-1, -1]])
        key = np.concatenate([key, [n * (n + 1) + n] * 2])
        length = np.concatenate([length, [0.0, 0.0]])
        indptr = np.zeros(n + 2, dtype=np.int32)
        np.cumsum(np.bincount(row, minlength=n + 1), out=indptr[1:])
        self.matrix = csr_matrix((weight, col.astype(np.int32), indptr), shape=(n + 1, n + 1))
        self.arc_len = length
        self.arc_edge = edge
        self.arc_key = key
        self.slots = len(weight) - 2

    # -- snapping ---------------------------------------------------------------------------

    def _xy(self, lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
        return (lon - self.lon0) * self.kx, (lat - self.lat0) * self.ky

    def _lonlat(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        return x / self.kx + self.lon0, y / self.ky + self.lat0

    def snap(self, lon: FloatArray, lat: FloatArray) -> Snap:
        """Nearest edge of each point (vectorised), the fraction along it and the metres."""
        count = len(lon)
        edge = np.full(count, -1, dtype=np.int64)
        fraction = np.full(count, np.nan)
        metres = np.full(count, np.nan)
        ok = np.isfinite(lon) & np.isfinite(lat)
        if not ok.any() or not len(self.lines):
            return Snap(edge, fraction, metres)
        x, y = self._xy(lon[ok], lat[ok])
        points = shapely.points(x, y)
        found = self.tree.query_nearest(points, all_matches=False)
        which = np.flatnonzero(ok)[found[0]]
        lines = self.lines[found[1]]
        frac = np.clip(shapely.line_locate_point(lines, points[found[0]], normalized=True),
                       0.0, 1.0)
        snapped = shapely.line_interpolate_point(lines, frac, normalized=True)
        slon, slat = self._lonlat(shapely.get_x(snapped), shapely.get_y(snapped))
        edge[which] = found[1]
        fraction[which] = frac
        metres[which] = ground_metres(lon[which], lat[which], slon, slat)
        return Snap(edge, fraction, metres)

    # -- searching --------------------------------------------------------------------------

    def _aim(self, edge: int, fraction: float) -> None:
        """Point the virtual target's two arcs at the target edge's ends (caller holds the
        lock): reaching the target from the edge's source drives `fraction` of the edge's cost,
        from its target (1 - fraction) of its reverse cost; a closed direction is a self-loop."""
        s, t = int(self.src[edge]), int(self.tgt[edge])
        arcs = []
        if self.cost[edge] >= 0 or fraction <= 0:
            arcs.append((s, fraction * max(self.cost[edge], 0.0),
                         fraction * self.length_m[edge]))
        if self.reverse_cost[edge] >= 0 or fraction >= 1:
            arcs.append((t, (1 - fraction) * max(self.reverse_cost[edge], 0.0),
                         (1 - fraction) * self.length_m[edge]))
        while len(arcs) < 2:
            arcs.append((self.virtual, 1.0, 0.0))
        arcs.sort()
        n1 = self.virtual + 1
        for slot, (col, weight, length) in zip((self.slots, self.slots + 1), arcs, strict=True):
            self.matrix.indices[slot] = col
            self.matrix.data[slot] = weight
            self.arc_len[slot] = length
            self.arc_key[slot] = self.virtual * n1 + col
            self.arc_edge[slot] = edge

    def _search(self, target: Snap, origins: Snap, limit_cap: FloatArray,
                first_limit: float) -> _Search:
        """Bounded Dijkstra from the virtual target (lock held), widened until every origin is
        proven: its best time is within the limit searched, or the limit reached its cap."""
        et, ft = int(target.edge[0]), float(target.fraction[0])
        eo, fo = origins.edge, origins.fraction
        valid = eo >= 0
        e = np.where(valid, eo, 0)
        # leaving the origin's edge: to its target node / to its source node (a point at a
        # node is there already, whatever the edge's direction)
        to_t = np.where(valid & ((self.cost[e] >= 0) | (fo >= 1)),
                        (1 - fo) * np.maximum(self.cost[e], 0.0), np.inf)
        to_s = np.where(valid & ((self.reverse_cost[e] >= 0) | (fo <= 0)),
                        fo * np.maximum(self.reverse_cost[e], 0.0), np.inf)
        # same edge as the target: drive straight along it when that direction is open
        same = valid & (eo == et)
        ahead = same & (ft >= fo) & (self.cost[et] >= 0)
        behind = same & (ft <= fo) & (self.reverse_cost[et] >= 0)
        direct = np.full(len(eo), np.inf)
        direct[ahead] = (ft - fo[ahead]) * self.cost[et]
        direct[behind] = np.minimum(direct[behind], (fo[behind] - ft) * self.reverse_cost[et])
        direct[same & (fo == ft)] = 0.0
        cap = float(np.max(limit_cap, initial=0.0))
        self._aim(et, ft)
        limit = min(max(first_limit, 1.0), cap)
        while True:
            dist, pred = dijkstra(self.matrix, directed=True, indices=self.virtual,
                                  return_predecessors=True, limit=limit)
            via_t = to_t + dist[self.tgt[e]]
            via_s = to_s + dist[self.src[e]]
            best = np.minimum(np.minimum(via_t, via_s), direct)
            proven = ~valid | (best <= limit) | (limit_cap <= limit)
            if proven.all() or limit >= cap:
                break
            limit = min(limit * WIDEN, cap)
        via = np.where(via_s < via_t, self.src[e], self.tgt[e])
        part = np.where(via_s < via_t, fo, 1 - fo) * self.length_m[e]
        is_direct = direct <= np.minimum(via_t, via_s)
        via[is_direct] = -1
        part[is_direct] = np.abs(ft - fo[is_direct]) * self.length_m[et]
        best[~valid] = np.inf
        return _Search(dist, pred, best, via, part)

    def _path_metres(self, nodes: IntArray, pred: npt.NDArray[np.int32]) -> FloatArray:
        """Road metres from each node along the search tree to the virtual target."""
        n1 = self.virtual + 1
        cur = nodes.astype(np.int64).copy()
        acc = np.zeros(len(cur))
        live = cur != self.virtual
        while live.any():
            c = cur[live]
            p = pred[c].astype(np.int64)
            pos = np.searchsorted(self.arc_key, p * n1 + c)
            acc[live] += self.arc_len[pos]
            cur[live] = p
            live = cur != self.virtual
        return acc

    def _first_limit(self, lon: float, lat: float, from_lon: FloatArray,
                     from_lat: FloatArray) -> float:
        straight = ground_metres(from_lon, from_lat, np.full(len(from_lon), lon),
                                 np.full(len(from_lat), lat))
        far = float(np.nanmax(straight, initial=0.0))
        return FIRST_LIMIT_DETOUR * far / self.typical_mps + FIRST_LIMIT_SLACK_S

    def etas_to(self, lon: float, lat: float, from_lon: ArrayLike, from_lat: ArrayLike, *,
                budget_s: float) -> Etas:
        """Travel time from each origin to the target (lon, lat): ONE bounded Dijkstra from
        the target over the reversed graph (scipy.sparse.csgraph, limit=budget), not one search
        per origin. Target and origins snap to their nearest edge (any direction's open part);
        ETA = walking snap distances/WALK_MPS + driving time along the edge fraction + graph
        distance; same-edge origin/target handled directly; one-way respected."""
        lon, lat = float(lon), float(lat)
        xs, ys = _coords(from_lon, from_lat)
        count = len(xs)
        target = self.snap(np.array([lon]), np.array([lat]))
        origins = self.snap(xs, ys)
        eta = np.full(count, np.inf)
        road = np.full(count, np.nan)
        target_snap = float(target.metres[0])
        if target.edge[0] < 0 or count == 0:
            return Etas(eta, road, origins.metres, target_snap)
        walk = (origins.metres + target_snap) / WALK_MPS
        cap = np.where(origins.edge >= 0, budget_s - walk, -np.inf)
        if not (cap >= 0).any():
            return Etas(eta, road, origins.metres, target_snap)
        first = self._first_limit(lon, lat, xs, ys)
        with self._lock:
            found = self._search(target, origins, cap, first)
            total = walk + found.best
            ok = np.isfinite(total) & (total <= budget_s)
            eta[ok] = total[ok]
            graph = ok & (found.via >= 0)
            road[ok] = found.part_m[ok]
            road[graph] += self._path_metres(found.via[graph], found.pred)
        return Etas(eta, road, origins.metres, target_snap)

    def route(self, from_lon: float, from_lat: float, to_lon: float, to_lat: float, *,
              budget_s: float) -> list[tuple[float, float]] | None:
        """Coordinates (lon, lat) of the fastest path, for drawing on the map; None beyond the
        budget. It runs from the origin through its snapped point, along the roads, to the
        target's snapped point and the target."""
        from_lon, from_lat, to_lon, to_lat = map(float, (from_lon, from_lat, to_lon, to_lat))
        target = self.snap(np.array([to_lon]), np.array([to_lat]))
        origin = self.snap(np.array([from_lon]), np.array([from_lat]))
        if target.edge[0] < 0 or origin.edge[0] < 0:
            return None
        walk = float(origin.metres[0] + target.metres[0]) / WALK_MPS
        if walk > budget_s:
            return None
        cap = np.array([budget_s - walk])
        first = self._first_limit(to_lon, to_lat, np.array([float(from_lon)]),
                                  np.array([float(from_lat)]))
        with self._lock:
            found = self._search(target, origin, cap, first)
            if not found.best[0] + walk <= budget_s:
                return None
            pieces = self._pieces(origin, target, int(found.via[0]), found.pred)
        coords = [(float(from_lon), float(from_lat))]
        for piece in pieces:
            xy = shapely.get_coordinates(piece)
            plon, plat = self._lonlat(xy[:, 0], xy[:, 1])
            coords.extend(zip(plon.tolist(), plat.tolist(), strict=True))
        coords.append((float(to_lon), float(to_lat)))
        return [c for i, c in enumerate(coords) if i == 0 or c != coords[i - 1]]

    def _pieces(self, origin: Snap, target: Snap, via: int,
                pred: npt.NDArray[np.int32]) -> list[Any]:
        """Projected line pieces of the path, in driving order (lock held)."""
        eo, fo = int(origin.edge[0]), float(origin.fraction[0])
        et, ft = int(target.edge[0]), float(target.fraction[0])
        if via < 0:
            return [substring(self.lines[eo], fo, ft, normalized=True)]
        end = 1.0 if via == self.tgt[eo] else 0.0
        pieces = [substring(self.lines[eo], fo, end, normalized=True)]
        n1 = self.virtual + 1
        node = via
        while True:
            nxt = int(pred[node])
            if nxt == self.virtual:
                start = 0.0 if node == self.src[et] else 1.0
                pieces.append(substring(self.lines[et], start, ft, normalized=True))
                return pieces
            pos = int(np.searchsorted(self.arc_key, nxt * n1 + node))
            edge = int(self.arc_edge[pos])
            line = self.lines[edge]
            pieces.append(line if self.src[edge] == node else line.reverse())
            node = nxt


def _coords(lon: ArrayLike, lat: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xs = np.atleast_1d(np.asarray(lon, dtype=np.float64)).ravel()
    ys = np.atleast_1d(np.asarray(lat, dtype=np.float64)).ravel()
    if xs.shape != ys.shape:
        raise InvalidInput(f"{len(xs)} longitudes but {len(ys)} latitudes", field="from_lat")
    return xs, ys


def ground_metres(lon1: FloatArray, lat1: FloatArray, lon2: FloatArray,
                  lat2: FloatArray) -> FloatArray:
    """Great-circle metres between point pairs (haversine, mean Earth radius)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp = p2 - p1
    dl = np.radians(np.asarray(lon2) - np.asarray(lon1))
    h = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))), dtype=np.float64)


# -- per-process cache ----------------------------------------------------------------------

_cache: dict[str, RoadGraph] = {}
_cache_lock = threading.Lock()


def graph_for(conn: Connection) -> RoadGraph:
    """Per-process cached graph; reloads (thread-safe) when road_graph_state.version differs
    (one tiny query). Edges changed by `conn`'s own open transaction are used but not cached
    (a rollback would leave a graph no committed version describes)."""
    key = conn.engine.url.render_as_string(hide_password=True)
    version, uncommitted = conn.execute(_VERSION).one()
    graph = _cache.get(key)
    if graph is not None and graph.version == version and not uncommitted:
        return graph
    if uncommitted:
        return RoadGraph.load(conn)
    with _cache_lock:
        graph = _cache.get(key)
        if graph is None or graph.version != version:
            graph = RoadGraph.load(conn)
            _cache[key] = graph
        return graph


_VERSION = text("""
    SELECT version, COALESCE(xmin::text::bigint
                             = pg_current_xact_id_if_assigned()::text::bigint % 4294967296, false)
    FROM road_graph_state
""")


def exact_etas_pgrouting(conn: Connection, lon: float, lat: float, from_lon: ArrayLike,
                         from_lat: ArrayLike, *, within_m: float | None = None) -> np.ndarray:
    """The exact baseline for the benchmark: pgRouting pgr_withPointsCost over the whole graph,
    with the same snapping (edge, fraction) and walking term as RoadGraph.etas_to; np.inf where
    no path exists. `within_m` keeps only the edges within that many metres (a box) of the
    target: exact for every path that never strays that far (e.g. budget × top speed)."""
    graph = graph_for(conn)
    xs, ys = _coords(from_lon, from_lat)
    target = graph.snap(np.array([float(lon)]), np.array([float(lat)]))
    origins = graph.snap(xs, ys)
    eta = np.full(len(xs), np.inf)
    ok = origins.edge >= 0
    if target.edge[0] < 0 or not ok.any():
        return eta
    # pgRouting turns a point at fraction 0 or 1 into the edge's node (and drops its pid), so
    # those are given as the node's id; the others as points (pid k is vertex -k)
    where = np.concatenate([target.edge, np.where(ok, origins.edge, 0)])
    fraction = np.concatenate([target.fraction, np.where(ok, origins.fraction, 0.5)])
    vertex = np.where(fraction <= 0, graph.node_id[graph.src[where]],
                      np.where(fraction >= 1, graph.node_id[graph.tgt[where]],
                               -(np.arange(len(where)) + 1)))
    inner = (fraction > 0) & (fraction < 1)
    starts = np.unique(vertex[1:][ok])
    rows = conn.execute(text("""
        SELECT start_pid, agg_cost
        FROM pgr_withPointsCost(
          'SELECT id, source, target, cost, reverse_cost FROM road_edges' || CASE
            WHEN CAST(:dx AS float8) IS NULL THEN ''
            ELSE format(' WHERE geom && ST_Expand(ST_SetSRID(ST_MakePoint(%s, %s), 4326), %s, %s)',
                        CAST(:lon AS float8), CAST(:lat AS float8), CAST(:dx AS float8),
                        CAST(:dy AS float8)) END,
          format('SELECT pid, edge_id, fraction FROM unnest(%L::bigint[], %L::bigint[], '
                 '%L::float8[]) AS p(pid, edge_id, fraction)',
                 CAST(:pids AS bigint[]), CAST(:edges AS bigint[]), CAST(:fractions AS float8[])),
          CAST(:starts AS bigint[]), CAST(:end AS bigint), directed => true, driving_side => 'b')
    """), {"pids": (-vertex[inner]).tolist(), "edges": graph.edge_id[where[inner]].tolist(),
           "fractions": fraction[inner].tolist(), "starts": starts.tolist(),
           "end": int(vertex[0]), "lon": float(lon), "lat": float(lat),
           "dx": None if within_m is None else within_m / (111_320 * math.cos(math.radians(lat))),
           "dy": None if within_m is None else within_m / 110_574}).all()
    cost = dict(rows)
    cost[int(vertex[0])] = 0.0  # pgRouting has no row for a start that is the end
    drive = np.array([cost.get(int(v), np.inf) for v in vertex[1:]])
    walk = (origins.metres + float(target.metres[0])) / WALK_MPS
    eta[ok] = walk[ok] + drive[ok]
    return eta
