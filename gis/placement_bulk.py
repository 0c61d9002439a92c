"""Bulk placement (DESIGN.md §3): the placement of many points, each at its own instant,
vectorised over numpy arrays — the same answers as `gis.placement.place` gives point by point
(district, street, community and grid in force, building containing or within 5 m, nearest
街巷 segment within 50 m and its chief, joint (联合哨) case with every jurisdiction involved),
without a database round trip per point.

The layers are read once (`PlacementIndex.load`, ST_AsBinary into numpy) and every lookup is
array arithmetic:

- point in polygon (jurisdictions, grids, joint zones) by crossing parity: the polygons'
  edges cross each horizontal line y_r of a row grid at known x; the polygons holding
  (px, y_r) are those with an odd number of crossings left of px (a binary search in the
  row's sorted crossings, precomputed as "elementary intervals"), and moving up to (px, py)
  flips membership once per edge crossed by the short vertical step (edges found through a
  cell index). Exact for points not on a boundary; no per-point geometry calls.
- buildings within 5 m and 街巷 segments within 50 m, in metres on the local tangent plane
  of each point (ellipsoidal radii of curvature, GRS80): candidates from a cell index of the
  grown bounding boxes, then point–segment distances (and, for buildings, containment by
  crossing parity) over the candidates' edges. Over tens of metres this matches PostGIS's
  geography distances to ~1e-5 — closer than a projection to EPSG:4548 (scale error ~3e-5
  at Beijing) and without projecting a million points.
- validity in time: every candidate pair's valid_from/valid_to is compared with its point's
  instant, as the SQL does.

Why not shapely's STRtree: a tree query of a million points against the grid parts alone
(exact predicate) already takes about as long as this whole placement; it remains the
benchmark's baseline (bench/bulk.py).

Where the answer can differ from the SQL's, knowingly: (1) distances are planar on the local
tangent plane, not geodesic — under a millimetre here — so only near-exact ties (two 街巷
meeting at the nearest vertex) may come out differently: here the lower id wins, in the SQL
its rounding decides; (2) a point exactly on a boundary counts for one side (PostGIS counts
it for both and takes the lower code); (3) the SQL measures only the 8 nearest buildings /
segments by degree distance, here every candidate within the limit (they differ only where
more than 8 crowd within the limit).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql
from sqlalchemy import Connection

from gis.placement import BUILDING_SNAP_M, STREET_SNAP_M

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

NEVER = 2**62  # valid_to of a version still in force (year 2116, as epoch ns)
ROW_M = 50.0  # row height of the polygon index (cells half as wide), metres (approximately)
BUILDING_CELL_M = 20.0
STREET_CELL_M = 50.0
_EPS_DEG = 1e-9  # bounding-box margin when registering edges in cells
LEVELS = ("district", "street", "community")

COLUMNS = [
    "district_code", "district_name", "street_code", "street_name", "community_code",
    "community_name", "grid_id", "grid_code", "grid_name", "building_id",
    "building_distance_m", "segment_id", "segment_distance_m", "chief_person_id",
    "is_joint", "joint",
]


# -- small array helpers ------------------------------------------------------------------


def _expand(start: IntArray, stop: IntArray) -> tuple[IntArray, IntArray]:
    """For each i the indices start[i]..stop[i]-1, flattened: (i repeated, index)."""
    n = np.maximum(stop - start, 0)
    owner = np.repeat(np.arange(n.size, dtype=np.int64), n)
    first = np.cumsum(n) - n
    index = np.arange(owner.size, dtype=np.int64) + np.repeat(start - first, n)
    return owner, index


def _group_starts(sorted_keys: IntArray) -> IntArray:
    """Start offsets of the runs of equal values in a sorted array."""
    if sorted_keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1
    return np.concatenate([[0], change]).astype(np.int64)


def _epoch_ns(at: Any, n: int) -> IntArray:
    """Instants (datetime64, naive = UTC, or timezone-aware pandas values) as epoch ns."""
    stamps = pd.DatetimeIndex(pd.to_datetime(np.asarray(at) if not isinstance(
        at, pd.Series | pd.DatetimeIndex) else at, utc=True))
    if len(stamps) != n:
        raise ValueError(f"at has {len(stamps)} values for {n} points")
    if stamps.hasnans:
        raise ValueError("at holds missing instants (NaT)")
    return np.asarray(stamps.as_unit("ns").asi8, dtype=np.int64)


@dataclass(frozen=True)
class _Edges:
    """Straight edges a→b with the index of the polygon or line they belong to."""

    ax: FloatArray
    ay: FloatArray
    bx: FloatArray
    by: FloatArray
    owner: IntArray

    def bounds(self) -> FloatArray:
        return np.column_stack([np.minimum(self.ax, self.bx), np.minimum(self.ay, self.by),
                                np.maximum(self.ax, self.bx), np.maximum(self.ay, self.by)])


def _edges(geoms: npt.NDArray[Any], *, polygons: bool) -> _Edges:
    """Edges of every ring (polygons) or every part (lines), owner = index in `geoms`."""
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    if polygons:
        parts, ring_part = shapely.get_rings(parts, return_index=True)
        part_owner = part_owner[ring_part]
    coords, of = shapely.get_coordinates(parts, return_index=True)
    same = of[:-1] == of[1:]
    a, b = coords[:-1][same], coords[1:][same]
    return _Edges(np.ascontiguousarray(a[:, 0]), np.ascontiguousarray(a[:, 1]),
                  np.ascontiguousarray(b[:, 0]), np.ascontiguousarray(b[:, 1]),
                  part_owner[of[:-1][same]].astype(np.int64))


class _CellIndex:
    """Items (bounding boxes) registered in every cell of a regular grid they overlap; the
    candidates of a point are the items of its cell. Only occupied cells are stored."""

    def __init__(self, bounds: FloatArray, origin: tuple[float, float], cell_w: float,
                 cell_h: float) -> None:
        self.x0, self.y0 = origin
        self.w, self.h = cell_w, cell_h
        if len(bounds) == 0:
            self.ncols = 1
            self.keys = np.zeros(0, dtype=np.int64)
            self.starts = np.zeros(1, dtype=np.int64)
            self.items = np.zeros(0, dtype=np.int64)
            return
        ix0 = np.floor((bounds[:, 0] - self.x0) / cell_w).astype(np.int64)
        iy0 = np.floor((bounds[:, 1] - self.y0) / cell_h).astype(np.int64)
        ix1 = np.floor((bounds[:, 2] - self.x0) / cell_w).astype(np.int64)
        iy1 = np.floor((bounds[:, 3] - self.y0) / cell_h).astype(np.int64)
        if ix0.min() < 0 or iy0.min() < 0:
            raise ValueError("cell index origin must lie below and left of every item")
        self.ncols = int(ix1.max()) + 2
        wx = ix1 - ix0 + 1
        count = wx * (iy1 - iy0 + 1)
        item, k = _expand(np.zeros(len(count), dtype=np.int64), count)
        key = (iy0[item] + k // wx[item]) * self.ncols + ix0[item] + k % wx[item]
        order = np.argsort(key, kind="stable")
        key = key[order]
        starts = _group_starts(key)
        self.keys = key[starts]
        self.starts = np.append(starts, key.size)
        self.items = item[order]

    def candidates(self, x: FloatArray, y: FloatArray,
                   rows: IntArray | None = None) -> tuple[IntArray, IntArray]:
        """(point index, item index) for every item registered in each point's cell
        (`rows`: the points' cell rows when the caller has fixed them)."""
        cx = np.floor((x - self.x0) / self.w)
        cy = np.floor((y - self.y0) / self.h) if rows is None else rows.astype(np.float64)
        ok = (cx >= 0) & (cx < self.ncols) & (cy >= 0) & np.isfinite(cy)
        key = np.where(ok, cy * self.ncols + cx, -1).astype(np.int64)
        pos = np.searchsorted(self.keys, key)
        hit = ok & (pos < self.keys.size)
        hit[hit] = self.keys[pos[hit]] == key[hit]
        start = np.where(hit, self.starts[np.minimum(pos, self.keys.size)], 0)
        stop = np.where(hit, self.starts[np.minimum(pos + 1, self.keys.size)], 0)
        point, index = _expand(start, stop)
        return point, self.items[index]


# -- point in polygon ---------------------------------------------------------------------


class _PolygonIndex:
    """Which of a set of (multi)polygons hold each point, by crossing parity (module doc).
    Holes and multipolygons are handled by counting the edges of every ring."""

    def __init__(self, geoms: npt.NDArray[Any], row_h: float, col_w: float) -> None:
        self.n = len(geoms)
        edges = _edges(geoms, polygons=True)
        self.edges = edges
        self.empty = edges.ax.size == 0
        box = edges.bounds()
        frame = box if len(box) else np.zeros((1, 4))
        self.x0 = float(frame[:, 0].min())
        self.y0 = float(frame[:, 1].min()) - row_h
        self.h = row_h
        self.nrows = int(np.ceil((frame[:, 3].max() - self.y0) / row_h)) + 2
        self.span = float(frame[:, 2].max() - self.x0) + 2.0
        self.cells = _CellIndex(box + np.array([-_EPS_DEG, -_EPS_DEG, _EPS_DEG, _EPS_DEG]),
                                (self.x0 - col_w, self.y0), col_w, row_h)
        self._crossings(edges, box)

    def _row_key(self, row: IntArray, x: FloatArray) -> FloatArray:
        """Sort key of (row, x): rows apart by `span`, x clipped into the row's range."""
        rel = np.clip(x - self.x0 + 1.0, 0.5, self.span - 0.5)
        return np.asarray(row * self.span + rel, dtype=np.float64)

    def _crossings(self, e: _Edges, box: FloatArray) -> None:
        # Every edge crossing of every row line y_r (rule: (a.y > y) != (b.y > y)).
        lo = np.maximum(np.floor((box[:, 1] - self.y0) / self.h).astype(np.int64) - 1, 0)
        hi = np.floor((box[:, 3] - self.y0) / self.h).astype(np.int64) + 1
        edge, k = _expand(np.zeros(len(lo), dtype=np.int64), hi - lo + 1)
        row = lo[edge] + k
        yr = self.y0 + row * self.h
        cross = (e.ay[edge] > yr) != (e.by[edge] > yr)
        edge, row, yr = edge[cross], row[cross], yr[cross]
        ax, ay, bx, by = e.ax[edge], e.ay[edge], e.bx[edge], e.by[edge]
        x = ax + (yr - ay) * (bx - ax) / (by - ay)
        key = self._row_key(row, x)
        order = np.lexsort((edge, key))
        self.keys = key[order]
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        # Each polygon's crossings of a row pair up (1st-2nd, 3rd-4th, ...): inside between.
        poly = e.owner[edge]
        by_poly = np.lexsort((edge, key, poly, row))
        first, second = by_poly[0::2], by_poly[1::2]
        # A point with c crossings left of it on row r sits in elementary interval c + r.
        lo_elem = rank[first] + row[first] + 1
        hi_elem = rank[second] + row[second]
        which, k2 = _expand(np.zeros(first.size, dtype=np.int64), hi_elem - lo_elem + 1)
        elem = lo_elem[which] + k2
        member = poly[first][which]
        order2 = np.lexsort((member, elem))
        elem, member = elem[order2], member[order2]
        total = self.keys.size + self.nrows
        self.elem_start = np.searchsorted(elem, np.arange(total + 1)).astype(np.int64)
        self.members = member

    def rows_of(self, y: FloatArray) -> IntArray:
        """Row of each point (row line at or below the point); -1 outside the index."""
        row = np.floor((y - self.y0) / self.h)
        row = np.where(np.isfinite(row), row, -1).astype(np.int64)
        row = np.where(self.y0 + row * self.h > y, row - 1, row)
        row = np.where(self.y0 + (row + 1) * self.h <= y, row + 1, row)
        return np.where((row >= 0) & (row < self.nrows), row, -1)

    def holding(self, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray]:
        """(point index, polygon index) for every polygon holding each point."""
        if self.empty:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        row = self.rows_of(y)
        inside = np.flatnonzero(row >= 0)
        xi, yi, ri = x[inside], y[inside], row[inside]
        # Membership at (px, y_r): the elementary interval of px on row r.
        elem = np.searchsorted(self.keys, self._row_key(ri, xi), side="left") + ri
        point, at = _expand(self.elem_start[elem], self.elem_start[elem + 1])
        base = point * self.n + self.members[at]
        # Edges crossed on the way up from (px, y_r) to (px, py) flip membership.
        p, edge = self.cells.candidates(xi, yi, ri)
        e = self.edges
        px, py = xi[p], yi[p]
        ax, ay, bx, by = e.ax[edge], e.ay[edge], e.bx[edge], e.by[edge]
        spans = (ax < px) != (bx < px)
        p, px, py, ax, ay, bx, by, edge = (v[spans] for v in (p, px, py, ax, ay, bx, by, edge))
        yc = ay + (px - ax) * (by - ay) / (bx - ax)
        yr = self.y0 + ri[p] * self.h
        crossed = (yc > yr) & (yc <= py)
        flips = p[crossed] * self.n + e.owner[edge[crossed]]
        flips, count = np.unique(flips, return_counts=True)
        flips = flips[count % 2 == 1]
        pos = np.searchsorted(base, flips)
        present = pos < base.size
        present[present] = base[pos[present]] == flips[present]
        keep = np.ones(base.size, dtype=bool)
        keep[pos[present]] = False
        keys = np.concatenate([base[keep], flips[~present]])
        return inside[keys // self.n], keys % self.n


# -- nearest within a distance (metres) ----------------------------------------------------

# GRS80 (CGCS2000) / WGS84 ellipsoid: metres per degree at a latitude, for the local plane.
_A = 6378137.0
_E2 = 0.00669438002290
_LAT_LIMIT = 85.0


def metres_per_degree(lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Metres per degree of longitude and of latitude at each latitude (ellipsoidal radii of
    curvature): the local tangent plane in which distances of a few tens of metres match the
    spheroid's (PostGIS geography) to about 1e-5."""
    phi = np.radians(np.clip(lat, -_LAT_LIMIT, _LAT_LIMIT))
    w = np.sqrt(1.0 - _E2 * np.sin(phi) ** 2)
    per_rad = np.pi / 180.0
    return (_A / w * np.cos(phi) * per_rad, _A * (1.0 - _E2) / w**3 * per_rad)


def _segment_distance(ax: FloatArray, ay: FloatArray, bx: FloatArray,
                      by: FloatArray) -> FloatArray:
    """Distance from the origin to segment a-b. Beyond either end the distance is to that
    vertex exactly, so segments meeting at a vertex tie exactly (and the lower id wins)."""
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    with np.errstate(invalid="ignore", divide="ignore"):
        t = -(ax * dx + ay * dy) / length2
    cx = np.where(t >= 1.0, bx, np.where(t > 0.0, ax + t * dx, ax))
    cy = np.where(t >= 1.0, by, np.where(t > 0.0, ay + t * dy, ay))
    return np.asarray(np.hypot(cx, cy), dtype=np.float64)


def _in_box(x: FloatArray, y: FloatArray, grown: FloatArray) -> BoolArray:
    return np.asarray((grown[:, 0] <= x) & (x <= grown[:, 2]) & (grown[:, 1] <= y)
                      & (y <= grown[:, 3]), dtype=bool)


def _nearest(point: IntArray, item_id: IntArray, distance: FloatArray,
             n: int) -> tuple[IntArray, FloatArray]:
    """Per point: the item with the least distance, ties to the lowest id (-1, NaN: none).
    `point` must be sorted."""
    best_id = np.full(n, -1, dtype=np.int64)
    best_d = np.full(n, np.nan)
    if point.size == 0:
        return best_id, best_d
    starts = _group_starts(point)
    dmin = np.minimum.reduceat(distance, starts)
    group = np.repeat(np.arange(starts.size), np.diff(np.append(starts, point.size)))
    tied = np.where(distance == dmin[group], item_id, np.iinfo(np.int64).max)
    owners = point[starts]
    best_id[owners] = np.minimum.reduceat(tied, starts)
    best_d[owners] = dmin
    return best_id, best_d


def _cells_for(box: FloatArray, limit_m: float,
               cell_m: float) -> tuple[FloatArray, _CellIndex]:
    """Boxes grown by at least `limit_m` metres (degrees) and their cell index (cells of
    about `cell_m`)."""
    if len(box) == 0:
        return box, _CellIndex(box, (0.0, 0.0), 1.0, 1.0)
    kx, ky = metres_per_degree(np.array([np.abs(box[:, [1, 3]]).max()]))
    grow_x, grow_y = limit_m / kx[0] * 1.001, limit_m / ky[0] * 1.001
    grown = box + np.array([-grow_x, -grow_y, grow_x, grow_y])
    origin = (float(grown[:, 0].min()) - 1e-6, float(grown[:, 1].min()) - 1e-6)
    return grown, _CellIndex(grown, origin, cell_m / kx[0], cell_m / ky[0])


class _BuildingIndex:
    """Building footprints (lon/lat): the containing building, else the nearest within
    `limit` metres (ties to the lowest id)."""

    def __init__(self, ids: IntArray, geoms: npt.NDArray[Any], limit: float) -> None:
        self.ids, self.limit = ids, limit
        e = _edges(geoms, polygons=True)
        order = np.argsort(e.owner, kind="stable")
        self.edges = _Edges(e.ax[order], e.ay[order], e.bx[order], e.by[order],
                            e.owner[order])
        self.edge_start = np.searchsorted(self.edges.owner, np.arange(len(ids) + 1))
        box = shapely.bounds(geoms) if len(ids) else np.zeros((0, 4))
        self.grown, self.cells = _cells_for(box, limit, BUILDING_CELL_M)

    def nearest(self, x: FloatArray, y: FloatArray, kx: FloatArray,
                ky: FloatArray) -> tuple[IntArray, FloatArray]:
        point, b = self.cells.candidates(x, y)
        near = _in_box(x[point], y[point], self.grown[b])
        point, b = point[near], b[near]
        if point.size == 0:
            return _nearest(point, b, np.zeros(0), len(x))
        counts = self.edge_start[b + 1] - self.edge_start[b]
        pair, edge = _expand(self.edge_start[b], self.edge_start[b + 1])
        starts = (np.cumsum(counts) - counts).astype(np.int64)
        e = self.edges
        owner = point[pair]
        px, py = x[owner], y[owner]
        ax, ay, bx, by = e.ax[edge], e.ay[edge], e.bx[edge], e.by[edge]
        with np.errstate(invalid="ignore", divide="ignore"):
            xc = ax + (py - ay) * (bx - ax) / (by - ay)
        crossing = ((ay > py) != (by > py)) & (px < xc)
        inside = np.add.reduceat(crossing.astype(np.int64), starts) % 2 == 1
        sx, sy = kx[owner], ky[owner]
        d = np.minimum.reduceat(_segment_distance((ax - px) * sx, (ay - py) * sy,
                                                  (bx - px) * sx, (by - py) * sy), starts)
        d = np.where(inside, 0.0, d)
        keep = d <= self.limit
        return _nearest(point[keep], self.ids[b[keep]], d[keep], len(x))


class _SegmentIndex:
    """Lines (lon/lat) cut into segments: per point the line (by id) with the nearest
    segment within `limit` metres, ties to the lowest id."""

    def __init__(self, ids: IntArray, geoms: npt.NDArray[Any], limit: float) -> None:
        self.limit = limit
        e = _edges(geoms, polygons=False)
        self.edges = e
        self.line_id = ids[e.owner]
        self.grown, self.cells = _cells_for(e.bounds(), limit, STREET_CELL_M)

    def nearest(self, x: FloatArray, y: FloatArray, kx: FloatArray,
                ky: FloatArray) -> tuple[IntArray, FloatArray]:
        point, s = self.cells.candidates(x, y)
        px, py = x[point], y[point]
        near = _in_box(px, py, self.grown[s])
        point, s, px, py = point[near], s[near], px[near], py[near]
        sx, sy = kx[point], ky[point]
        e = self.edges
        d = _segment_distance((e.ax[s] - px) * sx, (e.ay[s] - py) * sy,
                              (e.bx[s] - px) * sx, (e.by[s] - py) * sy)
        keep = d <= self.limit
        return _nearest(point[keep], self.line_id[s[keep]], d[keep], len(x))


# -- the index: layers read once ----------------------------------------------------------


@dataclass(frozen=True)
class _Labels:
    """Distinct values (categories) and the category of each row."""

    categories: npt.NDArray[Any]
    of_row: IntArray

    @classmethod
    def of(cls, values: npt.NDArray[Any]) -> _Labels:
        categories, inverse = np.unique(values.astype(str), return_inverse=True)
        return cls(categories, inverse.astype(np.int64))

    def column(self, row: IntArray) -> pd.Categorical:
        """The labels of rows `row` (-1: missing) as a categorical column."""
        codes = np.where(row >= 0, self.of_row[np.maximum(row, 0)], -1) if len(
            self.of_row) else np.full(len(row), -1)
        return pd.Categorical.from_codes(codes, categories=self.categories)


@dataclass(frozen=True)
class _Versions:
    """A versioned polygon layer's attributes, row i = polygon i of its index."""

    ids: IntArray
    codes: _Labels
    names: _Labels
    valid_from: IntArray
    valid_to: IntArray
    rank: IntArray  # order of the codes (lowest code wins, as the SQL's ORDER BY code)


def _versions(frame: pd.DataFrame) -> _Versions:
    codes = frame["code"].to_numpy(dtype=object)
    rank = np.empty(len(codes), dtype=np.int64)
    rank[np.argsort(codes.astype(str), kind="stable")] = np.arange(len(codes))
    return _Versions(frame["id"].to_numpy(dtype=np.int64), _Labels.of(codes),
                     _Labels.of(frame["name"].to_numpy(dtype=object)),
                     frame["valid_from"].to_numpy(dtype=np.int64),
                     frame["valid_to"].to_numpy(dtype=np.int64), rank)


def _copy_out(conn: Connection, query: sql.Composable, params: dict[str, Any],
              dtype: dict[str, Any] | None = None) -> pd.DataFrame:
    """Run a SELECT through COPY ... TO STDOUT (CSV) into a DataFrame (fast for big layers)."""
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, psycopg2.extensions.connection)
    buffer = io.StringIO()
    with raw.cursor() as cursor:
        select = cursor.mogrify(query.as_string(cursor), params).decode()
        cursor.copy_expert(f"COPY ({select}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
    buffer.seek(0)
    return pd.read_csv(buffer, dtype=dtype or {}, keep_default_na=False, na_values=[""])


_US = "CAST(extract(epoch FROM {col}) * 1000000 AS bigint)"
_VALIDITY = sql.SQL(", ".join([_US.format(col="valid_from") + " AS valid_from",
                               _US.format(col="valid_to") + " AS valid_to"]))
NEAR_POINTS = 20_000  # up to this many points, read only the features near them


@dataclass(frozen=True)
class _Extent:
    """Which features to read: all, those meeting a lon/lat box, or those near points."""

    bbox: tuple[float, float, float, float] | None = None
    lon: FloatArray | None = None
    lat: FloatArray | None = None

    def where(self, table: str, margin: float) -> tuple[sql.Composable, dict[str, Any]]:
        """A WHERE condition on `table` (columns id, geom) keeping the features within
        `margin` degrees of the extent, and its parameters."""
        if self.lon is not None and self.lat is not None:
            return sql.SQL(
                "id IN (SELECT f.id FROM {table} f JOIN unnest(CAST(%(xs)s AS float8[]), "
                "CAST(%(ys)s AS float8[])) AS p(x, y) ON f.geom && ST_Expand(ST_SetSRID("
                "ST_MakePoint(p.x, p.y), 4326), %(margin)s))").format(
                table=sql.Identifier(table)), {
                "xs": self.lon.tolist(), "ys": self.lat.tolist(), "margin": margin}
        if self.bbox is not None:
            x0, y0, x1, y1 = self.bbox
            return sql.SQL("geom && ST_Expand(ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, "
                           "4326), %(margin)s)"), {"x0": x0, "y0": y0, "x1": x1, "y1": y1,
                                                  "margin": margin}
        return sql.SQL("true"), {}


def _geoms(hex_wkb: pd.Series) -> npt.NDArray[Any]:
    """Geometries from hex WKB (decoding the hex first is ~3x faster than shapely's hex
    reader)."""
    raw = [bytes.fromhex(h) for h in hex_wkb.to_numpy(dtype=object)]
    return np.asarray(shapely.from_wkb(np.array(raw, dtype=object)), dtype=object)


def _valid_ns(frame: pd.DataFrame) -> pd.DataFrame:
    """valid_from/valid_to (epoch µs; valid_to empty while in force) as epoch ns."""
    frame["valid_from"] = frame["valid_from"].astype(np.int64) * 1000
    open_ended = frame["valid_to"].isna().to_numpy()
    until = frame["valid_to"].fillna(0).astype(np.int64).to_numpy() * 1000
    frame["valid_to"] = np.where(open_ended, NEVER, until)
    return frame


@dataclass
class PlacementIndex:
    """Everything `place_many` needs, read from the database once (`load`)."""

    levels: dict[str, tuple[_Versions, _PolygonIndex]]
    grids: tuple[_Versions, _PolygonIndex]
    zones: pd.DataFrame  # id, level, code_a, code_b, json
    zone_index: _PolygonIndex
    buildings: _BuildingIndex
    segments: _SegmentIndex
    shares: pd.DataFrame  # building_id, level, code, share (district/street, straddling)
    chiefs: pd.DataFrame  # street_id, person_id, valid_from, valid_to (sorted by street)
    names: pd.DataFrame  # jurisdiction code, name (JSON), valid_from, valid_to

    @classmethod
    def load(cls, conn: Connection, bbox: tuple[float, float, float, float] | None = None,
             *, points: tuple[FloatArray, FloatArray] | None = None) -> PlacementIndex:
        """Read the layers into memory: all of them, those meeting `bbox` (lon/lat min/max),
        or only the features that can matter to `points` (lon, lat) — quick for a few
        thousand points spread over a big city."""
        extent = (_Extent(lon=np.asarray(points[0], float), lat=np.asarray(points[1], float))
                  if points is not None else _Extent(bbox=None if bbox is None else (
                      float(bbox[0]), float(bbox[1]), float(bbox[2]), float(bbox[3]))))

        def read(select: str, table: str, margin: float, dtype: dict[str, Any] | None = None,
                 ) -> pd.DataFrame:
            where, params = extent.where(table, margin)
            query = sql.SQL(select).format(v=_VALIDITY, where=where)
            return _copy_out(conn, query, params, dtype)

        jur = _valid_ns(read(
            "SELECT id, level, code, name, {v}, encode(ST_AsBinary(geom), 'hex') AS wkb "
            "FROM jurisdictions WHERE {where} ORDER BY id", "jurisdictions", 0.0,
            {"code": str, "name": str}))
        row_h = ROW_M / 111_320.0
        col_w = row_h / 2 / max(np.cos(np.radians(_mid_lat(jur))), 0.2)  # ~25 m
        levels = {}
        for level in LEVELS:
            part = jur[jur["level"] == level].reset_index(drop=True)
            levels[level] = (_versions(part), _PolygonIndex(_geoms(part["wkb"]), row_h, col_w))
        grid = _valid_ns(read(
            "SELECT id, code, name, {v}, encode(ST_AsBinary(geom), 'hex') AS wkb "
            "FROM grids WHERE {where} ORDER BY id", "grids", 0.0, {"code": str, "name": str}))
        zones = read(
            "SELECT id, level, code_a, code_b, origin, encode(ST_AsBinary(geom), 'hex') AS wkb "
            "FROM joint_zones WHERE {where} ORDER BY id", "joint_zones", 0.0,
            {"code_a": str, "code_b": str})
        # Margins in degrees: more than 5 m and 50 m at any latitude of China.
        buildings = read("SELECT id, encode(ST_AsBinary(geom), 'hex') AS wkb FROM buildings "
                         "WHERE {where} ORDER BY id", "buildings", 0.0002)
        streets = read("SELECT id, encode(ST_AsBinary(geom), 'hex') AS wkb FROM streets "
                       "WHERE {where} ORDER BY id", "streets", 0.002)
        shares = _copy_out(conn, sql.SQL("""
            SELECT building_id, level, code, share FROM (
              SELECT s.*, count(*) OVER (PARTITION BY building_id, level) AS n
              FROM building_shares s WHERE level IN ('district', 'street')) x
            WHERE n > 1"""), {}, {"code": str})
        chiefs = _valid_ns(_copy_out(conn, sql.SQL(
            "SELECT street_id, person_id, {v} FROM street_assignments "
            "WHERE role IN ('street_chief', 'alley_chief') ORDER BY street_id, valid_from"
        ).format(v=_VALIDITY), {}))
        names = _valid_ns(_copy_out(conn, sql.SQL(
            "SELECT code, name, {v} FROM jurisdictions").format(v=_VALIDITY), {},
            {"code": str, "name": str}))
        names["name"] = [json.dumps(n, ensure_ascii=False) for n in names["name"]]
        zones["json"] = [json.dumps({"id": int(i), "level": lv, "code_a": a, "code_b": b,
                                     "origin": o}, ensure_ascii=False)
                         for i, lv, a, b, o in zones[["id", "level", "code_a", "code_b",
                                                      "origin"]].itertuples(index=False)]
        return cls(
            levels=levels,
            grids=(_versions(grid), _PolygonIndex(_geoms(grid["wkb"]), row_h, col_w)),
            zones=zones.drop(columns="wkb"),
            zone_index=_PolygonIndex(_geoms(zones["wkb"]), row_h, col_w),
            buildings=_BuildingIndex(buildings["id"].to_numpy(dtype=np.int64),
                                     _geoms(buildings["wkb"]),
                                     BUILDING_SNAP_M),
            segments=_SegmentIndex(streets["id"].to_numpy(dtype=np.int64),
                                   _geoms(streets["wkb"]),
                                   STREET_SNAP_M),
            shares=shares, chiefs=chiefs, names=names)

    @classmethod
    def for_points(cls, conn: Connection, lon: FloatArray, lat: FloatArray) -> PlacementIndex:
        """The index `place_many` needs for these (finite) points: the features near them
        when there are few (NEAR_POINTS), else everything in their bounding box."""
        return _for_points(conn, np.asarray(lon, float), np.asarray(lat, float))


def _for_points(conn: Connection, lon: FloatArray, lat: FloatArray) -> PlacementIndex:
    if lon.size <= NEAR_POINTS:
        return PlacementIndex.load(conn, points=(lon, lat))
    return PlacementIndex.load(conn, (float(lon.min()), float(lat.min()), float(lon.max()),
                                      float(lat.max())))


def _mid_lat(jur: pd.DataFrame) -> float:
    """A middle latitude of the jurisdictions read (for the polygon index's cell width)."""
    if jur.empty:
        return 40.0
    bounds = shapely.bounds(_geoms(jur["wkb"].iloc[:1]))
    return float((bounds[0, 1] + bounds[0, 3]) / 2)


# -- placement ------------------------------------------------------------------------------


def _in_force(index: _PolygonIndex, versions: _Versions, x: FloatArray, y: FloatArray,
              t: IntArray) -> IntArray:
    """Per point: the polygon (row in `versions`) holding it and valid at its instant, the
    lowest code when several do; -1 for none."""
    if len(versions.ids) == 0:
        return np.full(len(x), -1, dtype=np.int64)
    point, poly = index.holding(x, y)
    valid = (versions.valid_from[poly] <= t[point]) & (t[point] < versions.valid_to[poly])
    point, poly = point[valid], poly[valid]
    best = np.full(len(x), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(best, point, versions.rank[poly])
    by_rank = np.argsort(versions.rank)
    return np.where(best < len(by_rank), by_rank[np.minimum(best, len(by_rank) - 1)], -1)


def _chiefs(chiefs: pd.DataFrame, street: IntArray, t: IntArray) -> IntArray:
    """Per point: the chief (person id) of its segment at its instant; -1 for none."""
    out = np.full(len(street), -1, dtype=np.int64)
    sid = chiefs["street_id"].to_numpy(dtype=np.int64)
    has = np.flatnonzero(street >= 0)
    lo = np.searchsorted(sid, street[has], side="left")
    hi = np.searchsorted(sid, street[has], side="right")
    point, row = _expand(lo, hi)
    point = has[point]
    vf = chiefs["valid_from"].to_numpy(dtype=np.int64)[row]
    vt = chiefs["valid_to"].to_numpy(dtype=np.int64)[row]
    ok = (vf <= t[point]) & (t[point] < vt)
    out[point[ok]] = chiefs["person_id"].to_numpy(dtype=np.int64)[row[ok]]
    return out


def _json_number(values: FloatArray) -> npt.NDArray[Any]:
    """Shares rounded to 4 places as JSON numbers (null for none)."""
    out = np.full(len(values), "null", dtype=object)
    known = ~np.isnan(values)
    unique, inverse = np.unique(np.round(values[known], 4), return_inverse=True)
    out[known] = np.array([json.dumps(float(v)) for v in unique], dtype=object)[inverse]
    return out


def _joined(point: IntArray, parts: npt.NDArray[Any], n: int) -> npt.NDArray[Any]:
    """Per point, its strings joined by ', ' (`point` sorted); '' where none."""
    out = np.full(n, "", dtype=object)
    if point.size == 0:
        return out
    starts = _group_starts(point)
    last = np.zeros(point.size, dtype=bool)
    last[np.append(starts[1:], point.size) - 1] = True
    pieces = np.where(last, parts, parts + ", ")
    out[point[starts]] = np.add.reduceat(pieces.astype(object), starts)
    return out


def _joint(ix: PlacementIndex, zone_point: IntArray, zone_row: IntArray,
           building: IntArray, t: IntArray) -> tuple[BoolArray, npt.NDArray[Any]]:
    """is_joint and the joint object (JSON text, None when not joint) per point: every
    district/street a containing zone or a straddling building names, with the building's
    share (as the SQL's `named`)."""
    n = len(building)
    zones = ix.zones.iloc[zone_row]
    from_zones = pd.DataFrame({
        "point": np.concatenate([zone_point, zone_point]),
        "level": np.concatenate([zones["level"].to_numpy(), zones["level"].to_numpy()]),
        "code": np.concatenate([zones["code_a"].to_numpy(), zones["code_b"].to_numpy()]),
        "share": np.nan})
    has = np.flatnonzero(building >= 0)
    from_shares = pd.DataFrame({"point": has, "building_id": building[has]}).merge(
        ix.shares, on="building_id")[["point", "level", "code", "share"]]
    named = pd.concat([from_zones, from_shares], ignore_index=True)
    is_joint = np.zeros(n, dtype=bool)
    joint = np.full(n, None, dtype=object)
    if named.empty:
        return is_joint, joint
    named = named.groupby(["point", "level", "code"], as_index=False, sort=True)["share"].max()
    per_level = named.groupby(["point", "level"]).size()
    many = per_level[per_level > 1].index.get_level_values("point").unique()
    is_joint[many.to_numpy(dtype=np.int64)] = True
    named = named[is_joint[named["point"].to_numpy()]]
    names = named[["point", "code"]].merge(ix.names, on="code")
    when = t[names["point"].to_numpy()]
    valid = ((names["valid_from"].to_numpy() <= when) & (when < names["valid_to"].to_numpy()))
    names = names[valid].drop_duplicates(["point", "code"])
    named = named.merge(names[["point", "code", "name"]], on=["point", "code"], how="left")
    named = named.sort_values(["point", "level", "code"], kind="stable")
    name = named["name"].fillna("null").to_numpy(dtype=object)
    items = ('{"level": "' + named["level"].to_numpy(dtype=object) + '", "code": "'
             + named["code"].to_numpy(dtype=object) + '", "name": ' + name + ', "share": '
             + _json_number(named["share"].to_numpy(dtype=float)) + "}")
    listed = _joined(named["point"].to_numpy(dtype=np.int64), items, n)
    keep = is_joint[zone_point]
    order = np.lexsort((zones["id"].to_numpy()[keep], zone_point[keep]))
    zone_json = _joined(zone_point[keep][order],
                        zones["json"].to_numpy(dtype=object)[keep][order], n)
    which = np.flatnonzero(is_joint)
    joint[which] = ('{"is_joint": true, "jurisdictions": [' + listed[which] + '], "zones": ['
                    + zone_json[which] + "]}")
    return is_joint, joint


def place_many(conn: Connection, lon: FloatArray, lat: FloatArray, at: Any,
               *, index: PlacementIndex | None = None) -> pd.DataFrame:
    """The placement of each WGS84 point (lon[i], lat[i]) at instant at[i] (datetime64 as
    UTC, or timezone-aware), one row per point in input order (columns `COLUMNS`; missing
    values are NA). A row with no district is outside the service area. `index`
    (PlacementIndex.load) is read from `conn` when not given, limited to the points' extent."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("lon and lat must be 1-d arrays of the same length")
    t = _epoch_ns(at, len(x))
    finite = np.isfinite(x) & np.isfinite(y) & (np.abs(x) <= 180) & (np.abs(y) <= 90)
    if index is None:
        index = PlacementIndex.for_points(conn, x[finite], y[finite])
    # Work on the points in spatial order (rows of ~100 m, then x): every lookup below then
    # walks its tables nearly in order, several times faster than at random.
    order = np.argsort(np.where(finite, np.floor(y * 1000.0) * 1000.0 + x, np.inf),
                       kind="stable")
    x, y, t = x[order], y[order], t[order]
    x, y = np.where(finite[order], x, np.nan), np.where(finite[order], y, np.nan)
    out: dict[str, Any] = {}
    for level in LEVELS:
        versions, polygons = index.levels[level]
        out[level] = _in_force(polygons, versions, x, y, t)
    grid_versions, grid_polygons = index.grids
    grid = _in_force(grid_polygons, grid_versions, x, y, t)
    _nest_in_grid(out, index, grid_versions, grid, t)
    out["grid"] = grid
    out["grid_id"] = _take(grid_versions.ids, grid)
    kx, ky = metres_per_degree(y)
    building, building_d = index.buildings.nearest(x, y, kx, ky)
    segment, segment_d = index.segments.nearest(x, y, kx, ky)
    out["building_id"] = building
    out["building_distance_m"] = np.round(building_d, 2)
    out["segment_id"] = segment
    out["segment_distance_m"] = np.round(segment_d, 2)
    out["chief_person_id"] = _chiefs(index.chiefs, segment, t)
    zone_point, zone_row = index.zone_index.holding(x, y)
    by_point = np.argsort(zone_point, kind="stable")
    out["is_joint"], out["joint"] = _joint(index, zone_point[by_point], zone_row[by_point],
                                           building, t)
    back = np.empty_like(order)
    back[order] = np.arange(order.size)
    frame: dict[str, Any] = {}
    for level, versions in [*((lv, index.levels[lv][0]) for lv in LEVELS),
                            ("grid", grid_versions)]:
        row = out.pop(level)[back]
        frame[f"{level}_code"] = versions.codes.column(row)
        frame[f"{level}_name"] = versions.names.column(row)
    for name, values in out.items():
        values = values[back]
        if name in ("grid_id", "building_id", "segment_id", "chief_person_id"):
            values = _nullable(values)
        frame[name] = pd.Series(values, dtype=values.dtype if name != "joint" else object)
    return pd.DataFrame(frame, columns=COLUMNS)


def _nest_in_grid(out: dict[str, Any], index: PlacementIndex, grid_versions: _Versions,
                  grid: IntArray, t: IntArray) -> None:
    """Codes nest, as in gis/placement.py: where a point has a grid, its district, street and
    community are the grid's own (its code's prefixes), in force at the point's time, even
    where a polygon of another one also covers the point (e.g. a community sticking out of
    its street). Only the few mismatching points are looked up again."""
    has = grid >= 0
    if not has.any():
        return
    grid_code = np.where(has, grid_versions.codes.categories[
        grid_versions.codes.of_row[np.maximum(grid, 0)]], "")
    for level, width in (("district", 6), ("street", 9), ("community", 12)):
        versions = index.levels[level][0]
        row = out[level]
        want = grid_code.astype(f"<U{width}")
        hit = np.where(row >= 0, versions.codes.categories[
            versions.codes.of_row[np.maximum(row, 0)]], "")
        wrong = np.flatnonzero(has & (hit != want))
        if wrong.size == 0:
            continue
        # The version of code `want` in force at t: versions sorted by code, then the first
        # in force among each code's few versions (a loop over versions, not points).
        codes = versions.codes.categories[versions.codes.of_row]
        by_code = np.argsort(codes, kind="stable")
        lo = np.searchsorted(codes[by_code], want[wrong], side="left")
        hi = np.searchsorted(codes[by_code], want[wrong], side="right")
        found = np.full(wrong.size, -1, dtype=np.int64)
        for k in range(int((hi - lo).max(initial=0))):
            take = (lo + k < hi) & (found < 0)
            candidate = by_code[np.minimum(lo + k, len(by_code) - 1)]
            ok = take & (versions.valid_from[candidate] <= t[wrong]) & (
                versions.valid_to[candidate] > t[wrong])
            found[ok] = candidate[ok]
        row[wrong] = found


def _take(values: IntArray, row: IntArray) -> IntArray:
    """values[row], -1 where row is -1."""
    if len(values) == 0:
        return np.full(len(row), -1, dtype=np.int64)
    return np.where(row >= 0, values[np.maximum(row, 0)], -1)


def _nullable(ids: IntArray) -> pd.arrays.IntegerArray:
    return pd.arrays.IntegerArray(np.where(ids >= 0, ids, 0), ids < 0)
