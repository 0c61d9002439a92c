"""The demo city's road and alley (街巷) network, and the 街巷 rows derived from it.

The network is a hierarchical street lattice in METRIC_CRS: arterials (主干道) every 12 lattice
units (~1.1 km), secondary roads (次干道) every 6, branch roads (支路) every 3 and alleys
(胡同/小巷) every unit (80–110 m). Finer levels appear only where the city is dense enough
(`urban_intensity`, alleys only inside the alley zone), always filling whole blocks of the next
coarser level, so a finer road ends on a coarser one (a T-junction) instead of dangling. Square
ring roads (二环 … 六环) follow arterial lines around the old city. The lattice is bent by a smooth
warp and its intersections are jittered, which keeps the network planar: edges meet only at
lattice points, which are the nodes. Lines are clipped at the outer boundary and only the
largest connected component is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from scipy.ndimage import gaussian_filter, map_coordinates
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from shapely.geometry.base import BaseGeometry

from gis.democity.model import (
    CITY_CENTRE_LONLAT,
    METRIC_CRS,
    OLD_CITY_LONLAT_BBOX,
    ROAD_CLASSES,
    to_metric,
    urban_intensity,
)
from gis.democity.names import StreetNamer

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

ARTERIAL, SECONDARY, BRANCH, ALLEY = range(4)  # levels: indexes into ROAD_CLASSES
UNIT_M = (80.0, 110.0)  # width of one lattice unit (the alley spacing), drawn per line
PERIODS = (12, 6, 3, 1)  # lattice units between lines of each level
NAME_RUN = (48, 24, 12, 6)  # a named road ends at lattice lines this many units apart
# Share of blocks holding secondary / branch roads: 1 above the first urban_intensity, 0 below
# the second, log-linear between; which blocks is decided by a patchy field (towns and fields).
SECONDARY_COVERAGE = (0.03, 0.0008)
BRANCH_COVERAGE = (0.25, 0.004)
PATCH_SIGMA_BLOCKS = 2.5  # smoothing of the patch field, in branch blocks (~570 m)
DROP_BLOCK_LINE = (0.15, 0.2)  # share of secondary / branch lines left out of a block
DROP_ALLEY = (0.3, 0.06)  # share of N–S / E–W alley segments left out (dead ends)
ONEWAY_SHARE = {BRANCH: 0.1, ALLEY: 0.3}
SPEED_KMH = {"ring": 60.0, "arterial": 50.0, "arterial_outer": 60.0, "secondary": 40.0,
             "branch": 30.0, "alley": 15.0, "alley_oneway": 10.0}
OUTER_INTENSITY = 0.1  # arterials are faster where the city is thinner
RING_EXPAND = (0, 24, 48, 84, 180)  # ring roads: units outside the old-city ring (二环 … 六环)
NUMBERED_ALLEY_SHARE = 0.2  # blocks whose parallel alleys are numbered X头条, X二条 …
JITTER_M = 12.0  # intersections move up to this far on each axis
WARP = ((12_000.0, 400.0), (3_000.0, 100.0), (1_000.0, 15.0))  # (smoothing, std) in metres
WARP_STEP_M = 500.0  # grid of the warp field
WARP_MAX_SLOPE = 0.2  # cap on the warp's slope (keeps parallel lines apart)
MIN_PIECE_M = 5.0  # clipped pieces shorter than this are dropped
MASK_MARGIN_M = 800.0  # lattice blocks farther than this outside the area are not built


# -- the lattice ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axis:
    """Lattice lines along one axis: their positions and signed unit index from the centre."""

    pos: FloatArray
    d: IntArray

    def at(self, d: npt.ArrayLike) -> FloatArray:
        """Position of (possibly fractional) unit index `d` (linear between lines)."""
        return np.interp(np.asarray(d, dtype=np.float64), self.d, self.pos)


@dataclass(frozen=True)
class _Cells:
    """Boolean state of the blocks of one level; block (a, b) covers units [aP, aP+P)."""

    period: int
    a0: int
    b0: int
    on: BoolArray

    def lookup(self, dx: IntArray, dy: IntArray) -> BoolArray:
        """State of the block holding unit (dx, dy) (broadcasting)."""
        return self.on[dx // self.period - self.a0, dy // self.period - self.b0]


@dataclass(frozen=True)
class _Warp:
    """A smooth random displacement of the plane: Gaussian-smoothed noise on a coarse grid,
    interpolated bilinearly, with its slope capped so the lattice stays untangled."""

    x0: float
    y0: float
    dx: FloatArray  # displacement grids, WARP_STEP_M apart
    dy: FloatArray

    @classmethod
    def draw(cls, rng: np.random.Generator, bounds: tuple[float, float, float, float]) -> _Warp:
        x0, y0, x1, y1 = bounds
        shape = (int(np.ceil((x1 - x0) / WARP_STEP_M)) + 2,
                 int(np.ceil((y1 - y0) / WARP_STEP_M)) + 2)

        def component() -> FloatArray:
            total = np.zeros(shape)
            for scale_m, std_m in WARP:
                sigma = scale_m / WARP_STEP_M  # filtered white noise has std 1/(2σ√π)
                noise = gaussian_filter(rng.standard_normal(shape), sigma, mode="reflect")
                total += std_m * noise * 2 * sigma * np.sqrt(np.pi)
            return total

        dx, dy = component(), component()
        steepest = max(float(np.abs(np.diff(g, axis=k)).max(initial=0.0))
                       for g in (dx, dy) for k in (0, 1)) / WARP_STEP_M
        cap = min(1.0, WARP_MAX_SLOPE / steepest) if steepest > 0 else 1.0
        return cls(x0, y0, dx * cap, dy * cap)

    def __call__(self, x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Warped positions of points (x, y)."""
        at = np.stack([(np.asarray(x) - self.x0) / WARP_STEP_M,
                       (np.asarray(y) - self.y0) / WARP_STEP_M])
        ddx = map_coordinates(self.dx, at, order=1, mode="nearest")
        ddy = map_coordinates(self.dy, at, order=1, mode="nearest")
        return x + ddx, y + ddy


def _level(d: IntArray) -> IntArray:
    """Road level of the lattice line with unit index d."""
    conds = [d % PERIODS[ARTERIAL] == 0, d % PERIODS[SECONDARY] == 0, d % PERIODS[BRANCH] == 0]
    return np.select(conds, [ARTERIAL, SECONDARY, BRANCH], ALLEY).astype(np.int64)


def _axis(rng: np.random.Generator, centre: float, lo: float, hi: float) -> _Axis:
    """Lines from `centre` outwards with random unit widths, covering [lo, hi]."""
    n = int(np.ceil(max(abs(hi - centre), abs(centre - lo)) / UNIT_M[0])) + 2 * PERIODS[0]
    right = centre + np.concatenate([[0.0], np.cumsum(rng.uniform(*UNIT_M, n))])
    left = centre - np.cumsum(rng.uniform(*UNIT_M, n))[::-1]
    pos = np.concatenate([left, right])
    d = np.arange(-n, n + 1, dtype=np.int64)
    inside = np.flatnonzero((pos >= lo) & (pos <= hi))
    first, last = max(inside[0] - 1, 0), min(inside[-1] + 1, len(pos) - 1)
    first -= (d[first] % PERIODS[0])  # start and end on arterial lines
    last += (-d[last]) % PERIODS[0]
    if first < 0 or last >= len(pos):
        raise ValueError("lattice does not cover the area")  # cannot happen: n has a margin
    return _Axis(pos[first:last + 1], d[first:last + 1])


def _blocks(ax: _Axis, ay: _Axis, period: int) -> tuple[IntArray, IntArray]:
    """Block indices (a, b) of one level covering the lattice, as open meshgrid vectors."""
    a = np.arange(ax.d[0] // period, ax.d[-1] // period + 1)
    b = np.arange(ay.d[0] // period, ay.d[-1] // period + 1)
    return a, b


def _block_centres(ax: _Axis, ay: _Axis, period: int) -> tuple[FloatArray, FloatArray]:
    a, b = _blocks(ax, ay, period)
    return ax.at((a + 0.5) * period)[:, None], ay.at((b + 0.5) * period)[None, :]


def _area_mask(ax: _Axis, ay: _Axis, area: BaseGeometry) -> _Cells:
    """Arterial blocks near enough to the area to be built."""
    period = PERIODS[ARTERIAL]
    a, b = _blocks(ax, ay, period)
    x0, x1 = ax.at(a * period) - MASK_MARGIN_M, ax.at((a + 1) * period) + MASK_MARGIN_M
    y0, y1 = ay.at(b * period) - MASK_MARGIN_M, ay.at((b + 1) * period) + MASK_MARGIN_M
    boxes = shapely.box(x0[:, None], y0[None, :], x1[:, None], y1[None, :])
    shapely.prepare(area)
    return _Cells(period, int(a[0]), int(b[0]), shapely.intersects(area, boxes))


def _children_any(child: _Cells, parent: _Cells) -> BoolArray:
    """For each parent block: does any of its child blocks have state on?"""
    out = np.zeros_like(parent.on)
    a, b = np.nonzero(child.on)
    ratio = parent.period // child.period
    out[(a + child.a0) // ratio - parent.a0, (b + child.b0) // ratio - parent.b0] = True
    return out


def _parent_on(child_shape: tuple[int, ...], a0: int, b0: int, ratio: int,
               parent: _Cells) -> BoolArray:
    a = np.arange(child_shape[0]) + a0
    b = np.arange(child_shape[1]) + b0
    return parent.on[(a // ratio - parent.a0)[:, None], (b // ratio - parent.b0)[None, :]]


@dataclass(frozen=True)
class _Levels:
    """Which blocks hold roads of each level, and which block lines were left out."""

    mask: _Cells
    secondary: _Cells
    branch: _Cells
    alley: _Cells
    drop_secondary: tuple[_Cells, _Cells]  # (vertical, horizontal) lines left out per block
    drop_branch: tuple[_Cells, _Cells]


def _levels(ax: _Axis, ay: _Axis, area: BaseGeometry, alley_zone: BaseGeometry,
            rng: np.random.Generator, warp: _Warp) -> _Levels:
    """Decide per block which road levels exist there (each level nests in the coarser one)."""
    mask = _area_mask(ax, ay, area)
    p1, p2, p3 = PERIODS[SECONDARY - 1], PERIODS[BRANCH - 1], PERIODS[ALLEY - 1]
    a1, b1 = _blocks(ax, ay, p1)
    a2, b2 = _blocks(ax, ay, p2)
    patch2 = _patches((len(a2), len(b2)), rng)
    patch1 = np.ones((len(a1), len(b1)))  # a secondary block is as dense as its densest child
    ratio = p1 // p2
    child_a, child_b = np.meshgrid(np.arange(len(a2)), np.arange(len(b2)), indexing="ij")
    np.minimum.at(patch1, ((child_a + a2[0]) // ratio - a1[0], (child_b + b2[0]) // ratio - b1[0]),
                  patch2)
    sec_on = (patch1 < _coverage(_intensity(ax, ay, p1), *SECONDARY_COVERAGE)) & mask.on
    secondary = _Cells(p1, int(a1[0]), int(b1[0]), sec_on)
    br_on = (patch2 < _coverage(_intensity(ax, ay, p2), *BRANCH_COVERAGE)) & _parent_on(
        (len(a2), len(b2)), int(a2[0]), int(b2[0]), ratio, secondary)
    branch = _Cells(p2, int(a2[0]), int(b2[0]), br_on)
    a3, b3 = _blocks(ax, ay, p3)
    al_on = _alley_blocks(ax, ay, a3, b3, p3, alley_zone, warp) & _parent_on(
        (len(a3), len(b3)), int(a3[0]), int(b3[0]), p2 // p3, branch)
    alley = _Cells(p3, int(a3[0]), int(b3[0]), al_on)

    def drops(cells: _Cells, child: _Cells, share: float) -> tuple[_Cells, _Cells]:
        """Block lines (vertical, horizontal) left out where no finer road ends on them."""
        keep = _children_any(child, cells)
        vertical = (rng.random(cells.on.shape) < share) & ~keep
        horizontal = (rng.random(cells.on.shape) < share) & ~keep
        return (_Cells(cells.period, cells.a0, cells.b0, vertical),
                _Cells(cells.period, cells.a0, cells.b0, horizontal))

    return _Levels(mask, secondary, branch, alley,
                   drops(secondary, branch, DROP_BLOCK_LINE[0]),
                   drops(branch, alley, DROP_BLOCK_LINE[1]))


def _intensity(ax: _Axis, ay: _Axis, period: int) -> FloatArray:
    """urban_intensity at the centre of each block of one level."""
    x, y = _block_centres(ax, ay, period)
    return np.asarray(urban_intensity(x, y))


def _coverage(intensity: FloatArray, full: float, none: float) -> FloatArray:
    """Share of blocks that hold a road level: 1 at `full` intensity, 0 at `none`."""
    ramp = np.log(np.maximum(intensity, 1e-12) / none) / np.log(full / none)
    return np.asarray(np.clip(ramp, 0.0, 1.0))


def _patches(shape: tuple[int, int], rng: np.random.Generator) -> FloatArray:
    """A smooth random field over blocks, uniform on (0, 1): low values are built up first."""
    field = gaussian_filter(rng.standard_normal(shape), sigma=PATCH_SIGMA_BLOCKS)
    ranks = np.argsort(np.argsort(field, axis=None, kind="stable"), kind="stable")
    return np.asarray((ranks.reshape(shape) + 0.5) / field.size)


def _alley_blocks(ax: _Axis, ay: _Axis, a: IntArray, b: IntArray, period: int,
                  alley_zone: BaseGeometry, warp: _Warp) -> BoolArray:
    """Alley blocks whose four (warped) corners lie well inside the alley zone."""
    if alley_zone.is_empty:
        return np.zeros((len(a), len(b)), dtype=bool)
    zone = alley_zone.buffer(-3 * JITTER_M)
    shapely.prepare(zone)
    xs, ys = ax.at(np.arange(a[0], a[-1] + 2) * period), ay.at(np.arange(b[0], b[-1] + 2) * period)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    wx, wy = warp(gx, gy)
    corner = shapely.contains_xy(zone, wx, wy)
    return np.asarray(corner[:-1, :-1] & corner[1:, :-1] & corner[:-1, 1:] & corner[1:, 1:])


# -- segments, roads and edges along lattice lines --------------------------------------------


@dataclass(frozen=True)
class _Lines:
    """The lattice lines of one orientation: per line, its unit segments (n_lines, n_seg)."""

    line_d: IntArray  # unit index of each line across the orientation
    along_d: IntArray  # unit index of each point along the lines (n_seg + 1)
    active: BoolArray  # (n_lines, n_seg)
    ring: npt.NDArray[np.int8]  # ring road number per segment, -1 if none
    level: IntArray  # per line


def _active(line_d: IntArray, along_d: IntArray, lv: _Levels, rng: np.random.Generator,
            vertical: bool) -> tuple[BoolArray, IntArray]:
    """Which unit segments of the lines exist (before ring roads), and each line's level."""
    level = _level(line_d)
    seg_d = along_d[:-1]
    ld, sd = line_d[:, None], seg_d[None, :]
    dx, dy = (ld, sd) if vertical else (sd, ld)
    orient = 0 if vertical else 1
    active = np.zeros((len(line_d), len(seg_d)), dtype=bool)
    lv_line = level[:, None]
    on_mask = lv.mask.lookup(dx, dy)
    active |= (lv_line == ARTERIAL) & on_mask
    active |= (lv_line == SECONDARY) & (lv.secondary.lookup(dx, dy)
                                        & ~lv.drop_secondary[orient].lookup(dx, dy))
    active |= (lv_line == BRANCH) & (lv.branch.lookup(dx, dy)
                                     & ~lv.drop_branch[orient].lookup(dx, dy))
    alley_keep = rng.random(active.shape) >= DROP_ALLEY[orient]
    active |= (lv_line == ALLEY) & lv.alley.lookup(dx, dy) & alley_keep
    return active & on_mask, level


def _rings(ax: _Axis, ay: _Axis) -> list[tuple[int, int, int, int]]:
    """Ring roads as unit-index rectangles (left, right, bottom, top) on arterial lines."""
    xs, ys = to_metric(np.array(OLD_CITY_LONLAT_BBOX[0::2]), np.array(OLD_CITY_LONLAT_BBOX[1::2]))
    p = PERIODS[ARTERIAL]

    def snap(pos: float, axis: _Axis) -> int:
        return round(float(np.interp(pos, axis.pos, axis.d)) / p) * p

    left, right = snap(xs[0], ax), snap(xs[1], ax)
    bottom, top = snap(ys[0], ay), snap(ys[1], ay)
    return [(left - e, right + e, bottom - e, top + e) for e in RING_EXPAND]


def _lines(ax: _Axis, ay: _Axis, lv: _Levels, rng: np.random.Generator,
           vertical: bool) -> _Lines:
    """The segments of all lines of one orientation, with ring roads forced in."""
    line_ax, along_ax = (ax, ay) if vertical else (ay, ax)
    active, level = _active(line_ax.d, along_ax.d, lv, rng, vertical)
    ring = np.full(active.shape, -1, dtype=np.int8)
    seg_d = along_ax.d[:-1]
    for k, (left, right, bottom, top) in enumerate(_rings(ax, ay)):
        sides, lo, hi = ((left, right), bottom, top) if vertical else ((bottom, top), left, right)
        span = (seg_d >= lo) & (seg_d < hi)
        for side in sides:
            rows = np.flatnonzero(line_ax.d == side)
            ring[rows[:, None], np.flatnonzero(span)[None, :]] = k
    dx, dy = (line_ax.d[:, None], seg_d[None, :]) if vertical else (seg_d[None, :],
                                                                      line_ax.d[:, None])
    ring[~lv.mask.lookup(dx, dy)] = -1
    active |= ring >= 0
    return _Lines(line_ax.d, along_ax.d, active, ring, level)


def _run_starts(active: BoolArray, breaks: BoolArray) -> tuple[BoolArray, BoolArray]:
    """First and last segments of maximal runs of active segments split at break points
    (breaks: per point, shape (n_lines, n_seg + 1))."""
    prev = np.zeros_like(active)
    prev[:, 1:] = active[:, :-1]
    nxt = np.zeros_like(active)
    nxt[:, :-1] = active[:, 1:]
    return active & (~prev | breaks[:, :-1]), active & (~nxt | breaks[:, 1:])


def _road_breaks(lines: _Lines) -> BoolArray:
    """Points where one named road ends and the next begins along a line."""
    n_lines, n_seg = lines.active.shape
    breaks = np.zeros((n_lines, n_seg + 1), dtype=bool)
    run = np.asarray(NAME_RUN)[lines.level][:, None]
    breaks |= (lines.along_d[None, :] % run) == 0
    breaks[:, 1:-1] |= lines.ring[:, 1:] != lines.ring[:, :-1]
    return breaks


def _point_degree(lines: _Lines) -> IntArray:
    """Number of active segments of these lines at each lattice point (n_lines, n_seg + 1)."""
    a = lines.active.astype(np.int64)
    deg = np.zeros((a.shape[0], a.shape[1] + 1), dtype=np.int64)
    deg[:, :-1] += a
    deg[:, 1:] += a
    return deg


@dataclass
class _Edges:
    """Edges with their attributes, as parallel arrays."""

    geometry: npt.NDArray[np.object_]
    source: IntArray  # node keys
    target: IntArray
    level: IntArray
    road: IntArray
    ring: IntArray

    def take(self, index: IntArray) -> _Edges:
        return _Edges(*(np.asarray(getattr(self, f))[index] for f in self.__dataclass_fields__))

    @staticmethod
    def concat(parts: list[_Edges]) -> _Edges:
        return _Edges(*(np.concatenate([getattr(p, f) for p in parts])
                        for f in _Edges.__dataclass_fields__))


@dataclass(frozen=True)
class _Roads:
    """Named roads: one row per road id (level, ring, orientation, line, first unit)."""

    level: IntArray
    ring: IntArray
    vertical: BoolArray
    line_d: IntArray
    first_d: IntArray


class _Geometry:
    """Lattice point → metric coordinates: warped, and jittered at nodes."""

    def __init__(self, ax: _Axis, ay: _Axis, warp: _Warp) -> None:
        self.ax, self.ay, self.warp = ax, ay, warp
        self.ny = len(ay.d)

    def key(self, i: IntArray, j: IntArray) -> IntArray:
        return i * self.ny + j

    def warped(self, i: IntArray, j: IntArray) -> tuple[FloatArray, FloatArray]:
        x, y = self.ax.pos[i], self.ay.pos[j]
        return self.warp(x, y)


@dataclass(frozen=True)
class _NodeTable:
    """Lattice nodes: sorted keys, their jitter and final coordinates."""

    keys: IntArray
    jitter: FloatArray
    xy: FloatArray

    def jitter_of(self, key: IntArray) -> FloatArray:
        return self.jitter[np.searchsorted(self.keys, key)]

    def xy_of(self, key: IntArray) -> FloatArray:
        return self.xy[np.searchsorted(self.keys, key)]


def _line_edges(lines: _Lines, node: BoolArray, geo: _Geometry, table: _NodeTable,
                road_offset: int, vertical: bool) -> tuple[_Edges, _Roads]:
    """Edges along the lines of one orientation (split at nodes) and the roads they form."""
    road_first, _ = _run_starts(lines.active, _road_breaks(lines))
    start, end = _run_starts(lines.active, node)
    line, first = np.nonzero(start)
    _, last = np.nonzero(end)
    stop = last + 1  # point index of the edge's far end
    road_of_seg = np.cumsum(road_first.ravel()) - 1 + road_offset
    road = road_of_seg[line * lines.active.shape[1] + first]
    src = geo.key(line, first) if vertical else geo.key(first, line)
    dst = geo.key(line, stop) if vertical else geo.key(stop, line)
    geoms = _edge_geometries(line, first, stop, src, dst, geo, table, vertical)
    ring = lines.ring[line, first].astype(np.int64)
    level = np.where(ring >= 0, ARTERIAL, lines.level[line])
    edges = _Edges(geoms, src, dst, level, road, ring)

    r_line, r_first = np.nonzero(road_first)
    r_ring = lines.ring[r_line, r_first].astype(np.int64)
    roads = _Roads(np.where(r_ring >= 0, ARTERIAL, lines.level[r_line]), r_ring,
                   np.full(len(r_line), vertical), lines.line_d[r_line],
                   lines.along_d[r_first])
    return edges, roads


def _edge_geometries(line: IntArray, first: IntArray, stop: IntArray, src: IntArray,
                     dst: IntArray, geo: _Geometry, table: _NodeTable,
                     vertical: bool) -> npt.NDArray[np.object_]:
    """LineStrings through the warped lattice points from `first` to `stop` along each line,
    the ends' jitter faded in linearly; end coordinates exactly those of the nodes."""
    counts = stop - first + 1
    edge_of_vertex = np.repeat(np.arange(len(line)), counts)
    ends_first = np.cumsum(counts) - counts
    offsets = np.arange(counts.sum()) - np.repeat(ends_first, counts)
    along = first[edge_of_vertex] + offsets
    across = line[edge_of_vertex]
    x, y = geo.warped(across, along) if vertical else geo.warped(along, across)
    t = (offsets / (counts[edge_of_vertex] - 1))[:, None]
    js, jt = table.jitter_of(src), table.jitter_of(dst)
    xy = np.column_stack([x, y]) + (1 - t) * js[edge_of_vertex] + t * jt[edge_of_vertex]
    xy[ends_first] = table.xy_of(src)
    xy[ends_first + counts - 1] = table.xy_of(dst)
    return np.asarray(shapely.linestrings(xy, indices=edge_of_vertex), dtype=object)


def _nodes_mask(vert: _Lines, horz: _Lines) -> BoolArray:
    """Lattice points (i, j) that are nodes: crossings, T-junctions, corners, dead ends and
    points where a named road changes."""
    deg_v = _point_degree(vert)  # (nx, ny)
    deg_h = _point_degree(horz).T  # (nx, ny)
    node = ((deg_v > 0) & (deg_h > 0)) | (deg_v + deg_h == 1)
    node |= _road_breaks(vert) & (deg_v == 2)
    node |= (_road_breaks(horz) & (_point_degree(horz) == 2)).T
    return node


def _lattice_edges(ax: _Axis, ay: _Axis, lv: _Levels, rng: np.random.Generator,
                   warp: _Warp) -> tuple[_Edges, _Roads]:
    """All lattice edges (before clipping) with node keys, and the named roads."""
    vert = _lines(ax, ay, lv, rng, vertical=True)
    horz = _lines(ax, ay, lv, rng, vertical=False)
    node = _nodes_mask(vert, horz)
    geo = _Geometry(ax, ay, warp)
    ni, nj = np.nonzero(node)
    keys = geo.key(ni, nj)  # sorted
    jit = rng.uniform(-JITTER_M, JITTER_M, (len(keys), 2))
    wx, wy = geo.warped(ni, nj)
    table = _NodeTable(keys, jit, np.column_stack([wx, wy]) + jit)
    e_v, r_v = _line_edges(vert, node, geo, table, 0, vertical=True)
    e_h, r_h = _line_edges(horz, node.T, geo, table, len(r_v.level), vertical=False)
    roads = _Roads(*(np.concatenate([getattr(r_v, f), getattr(r_h, f)])
                     for f in _Roads.__dataclass_fields__))
    return _Edges.concat([e_v, e_h]), roads


# -- clipping and clean-up ---------------------------------------------------------------------


def _clip(edges: _Edges, area: BaseGeometry, first_new_key: int) -> _Edges:
    """Keep the parts of edges inside the area; a cut end becomes a new (boundary) node."""
    shapely.prepare(area)
    geoms = edges.geometry
    inside = shapely.contains(area, geoms)
    crossing = ~inside & shapely.intersects(area, geoms)
    idx = np.flatnonzero(crossing)
    parts, owner = shapely.get_parts(shapely.intersection(geoms[idx], area), return_index=True)
    is_line = (shapely.get_type_id(parts) == 1) & (shapely.length(parts) >= MIN_PIECE_M)
    parts, owner = parts[is_line], idx[owner[is_line]]
    parts = _orient_like(parts, geoms[owner])
    parts, src, dst = _snap_ends(parts, geoms[owner], edges.source[owner], edges.target[owner],
                                 first_new_key)
    kept = edges.take(np.flatnonzero(inside))
    clipped = edges.take(owner)
    clipped.geometry, clipped.source, clipped.target = parts, src, dst
    return _Edges.concat([kept, clipped])


def _orient_like(parts: npt.NDArray[np.object_],
                 owners: npt.NDArray[np.object_]) -> npt.NDArray[np.object_]:
    """Reverse pieces that run against the line they were cut from."""
    a = shapely.line_locate_point(owners, shapely.get_point(parts, 0))
    b = shapely.line_locate_point(owners, shapely.get_point(parts, -1))
    out = parts.copy()
    out[b < a] = shapely.reverse(parts[b < a])
    return out


def _snap_ends(parts: npt.NDArray[np.object_], owners: npt.NDArray[np.object_],
               src: IntArray, dst: IntArray,
               first_new_key: int) -> tuple[npt.NDArray[np.object_], IntArray, IntArray]:
    """Node keys of clipped pieces: the owner's node where a piece keeps its end (coordinates
    set exactly), else a new node keyed from `first_new_key` (unique per coordinate)."""
    coords, which = shapely.get_coordinates(parts, return_index=True)
    counts = np.bincount(which, minlength=len(parts))
    first = np.cumsum(counts) - counts
    last = first + counts - 1
    own_start = shapely.get_coordinates(shapely.get_point(owners, 0))
    own_end = shapely.get_coordinates(shapely.get_point(owners, -1))
    keep_s = np.hypot(*(coords[first] - own_start).T) < 1e-6
    keep_e = np.hypot(*(coords[last] - own_end).T) < 1e-6
    coords[first[keep_s]] = own_start[keep_s]
    coords[last[keep_e]] = own_end[keep_e]
    cut = np.concatenate([coords[first[~keep_s]], coords[last[~keep_e]]])
    cut_key = np.zeros(0, dtype=np.int64)
    if len(cut):
        cut_key = np.unique(cut, axis=0, return_inverse=True)[1].ravel()
    n_s = int((~keep_s).sum())
    new_src, new_dst = src.copy(), dst.copy()
    new_src[~keep_s] = first_new_key + cut_key[:n_s]
    new_dst[~keep_e] = first_new_key + cut_key[n_s:]
    return shapely.linestrings(coords, indices=which), new_src, new_dst


def _clean(edges: _Edges, alley_zone: BaseGeometry) -> tuple[_Edges, dict[str, int]]:
    """Drop alleys outside the zone, self-loops, duplicate node pairs, then every edge outside
    the largest connected component."""
    dropped: dict[str, int] = {}
    zone = alley_zone.buffer(0.01)
    shapely.prepare(zone)
    ok = (edges.level != ALLEY) | shapely.contains(zone, edges.geometry)
    dropped["alley_outside_zone"] = int((~ok).sum())
    loop = edges.source == edges.target
    dropped["self_loops"] = int((ok & loop).sum())
    ok &= ~loop
    pair = np.column_stack([np.minimum(edges.source, edges.target),
                            np.maximum(edges.source, edges.target)])
    _, first = np.unique(pair[ok], axis=0, return_index=True)
    unique = np.zeros(len(ok), dtype=bool)
    unique[np.flatnonzero(ok)[first]] = True
    dropped["duplicates"] = int((ok & ~unique).sum())
    edges = edges.take(np.flatnonzero(unique))
    keys, inv = np.unique(np.concatenate([edges.source, edges.target]), return_inverse=True)
    n = len(edges.source)
    graph = coo_matrix((np.ones(n), (inv[:n], inv[n:])), shape=(len(keys), len(keys)))
    _, label = connected_components(graph, directed=False)
    main = np.argmax(np.bincount(label))
    keep = label[inv[:n]] == main
    dropped["islands"] = int((~keep).sum())
    return edges.take(np.flatnonzero(keep)), dropped


# -- names, speeds and one-way roads ----------------------------------------------------------


def _road_names(roads: _Roads, used: IntArray,
                rng: np.random.Generator) -> npt.NDArray[np.object_]:
    """Names per road id (unique per road; None for unused ids); parallel alleys of a block
    are sometimes numbered X头条, X二条 …"""
    namer = StreetNamer(rng)
    names = np.full(len(roads.level), None, dtype=object)
    for ring in np.unique(roads.ring[used][roads.ring[used] >= 0]):
        names[used[roads.ring[used] == ring]] = namer.ring(int(ring) + 2)
    alleys = used[(roads.level[used] == ALLEY) & ~roads.vertical[used]]
    block = PERIODS[SECONDARY]
    groups = pd.DataFrame({"road": alleys, "a": roads.first_d[alleys] // block,
                           "b": roads.line_d[alleys] // block, "d": roads.line_d[alleys]})
    groups = groups.sort_values(["a", "b", "d", "road"])
    for _, g in groups.groupby(["a", "b"], sort=True):
        if 2 <= len(g) <= 10 and rng.random() < NUMBERED_ALLEY_SHARE:
            names[g["road"].to_numpy()] = namer.numbered_alleys(len(g))
    for level, road_class in enumerate(ROAD_CLASSES):
        todo = used[(roads.level[used] == level) & (names[used] == None)]  # noqa: E711
        names[todo] = namer.names(road_class, len(todo))
    return names


def _oneway_roads(roads: _Roads, used: IntArray, rng: np.random.Generator) -> tuple[
        BoolArray, BoolArray]:
    """Per road id: one-way?, and does it run against the lattice direction (south/west)?"""
    n = len(roads.level)
    share = np.zeros(n)
    for level, p in ONEWAY_SHARE.items():
        share[roads.level == level] = p
    draw, flip = rng.random(n), rng.random(n) < 0.5
    oneway = np.zeros(n, dtype=bool)
    oneway[used] = draw[used] < share[used]
    return oneway, flip


def _strongly_connect(source: IntArray, target: IntArray, oneway: BoolArray,
                      road: IntArray) -> BoolArray:
    """Make whole roads two-way until every node can reach every other."""
    oneway = oneway.copy()
    keys, inv = np.unique(np.concatenate([source, target]), return_inverse=True)
    n = len(source)
    s, t = inv[:n], inv[n:]
    while True:  # each round makes at least one one-way edge two-way
        rows = np.concatenate([s, t[~oneway]])
        cols = np.concatenate([t, s[~oneway]])
        graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(keys), len(keys)))
        count, label = connected_components(graph, directed=True, connection="strong")
        if count == 1:
            return oneway
        bad = oneway & (label[s] != label[t])
        oneway[np.isin(road, np.unique(road[bad]))] = False


def _speeds(edges: _Edges, oneway: BoolArray) -> FloatArray:
    mid = shapely.line_interpolate_point(edges.geometry, 0.5, normalized=True)
    outer = urban_intensity(shapely.get_x(mid), shapely.get_y(mid)) < OUTER_INTENSITY
    speed = np.select(
        [edges.ring >= 0, (edges.level == ARTERIAL) & outer, edges.level == ARTERIAL,
         edges.level == SECONDARY, edges.level == BRANCH, oneway],
        [SPEED_KMH["ring"], SPEED_KMH["arterial_outer"], SPEED_KMH["arterial"],
         SPEED_KMH["secondary"], SPEED_KMH["branch"], SPEED_KMH["alley_oneway"]],
        SPEED_KMH["alley"])
    return np.asarray(speed, dtype=np.float64)


# -- the public API ---------------------------------------------------------------------------


def generate_roads(area: BaseGeometry, rng: np.random.Generator, *,
                   alley_zone: BaseGeometry) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The road and alley network inside `area` (METRIC_CRS): (nodes, edges) as documented in
    `gis.democity.model`. One connected component; `edges.attrs["dropped"]` counts the edges
    left out (islands, alleys outside the zone, duplicates)."""
    x0, y0, x1, y1 = area.bounds
    cx, cy = to_metric(np.array([CITY_CENTRE_LONLAT[0]]), np.array([CITY_CENTRE_LONLAT[1]]))
    margin = 2 * MASK_MARGIN_M
    ax = _axis(rng, float(cx[0]), x0 - margin, x1 + margin)
    ay = _axis(rng, float(cy[0]), y0 - margin, y1 + margin)
    warp = _Warp.draw(rng, (x0 - margin, y0 - margin, x1 + margin, y1 + margin))
    levels = _levels(ax, ay, area, alley_zone, rng, warp)
    lattice, roads = _lattice_edges(ax, ay, levels, rng, warp)
    clipped = _clip(lattice, area, len(ax.d) * len(ay.d))
    edges, dropped = _clean(clipped, alley_zone)
    order = np.lexsort((edges.source, edges.road))  # edges of a road together, in line order
    edges = edges.take(order)

    used = np.unique(edges.road)
    names = _road_names(roads, used, rng)
    oneway_road, flip_road = _oneway_roads(roads, used, rng)
    flip = oneway_road[edges.road] & flip_road[edges.road]
    edges.geometry[flip] = shapely.reverse(edges.geometry[flip])
    edges.source[flip], edges.target[flip] = edges.target[flip], edges.source[flip].copy()
    oneway = _strongly_connect(edges.source, edges.target, oneway_road[edges.road], edges.road)

    node_keys, node_inv = np.unique(np.concatenate([edges.source, edges.target]),
                                    return_inverse=True)
    n = len(edges.source)
    ends = np.concatenate([shapely.get_point(edges.geometry, 0),
                           shapely.get_point(edges.geometry, -1)])
    _, first = np.unique(node_inv, return_index=True)
    nodes = gpd.GeoDataFrame({"node_id": np.arange(1, len(node_keys) + 1, dtype=np.int64)},
                             geometry=ends[first], crs=METRIC_CRS)
    frame = gpd.GeoDataFrame({
        "edge_id": np.arange(n, dtype=np.int64),
        "source": (node_inv[:n] + 1).astype(np.int64),
        "target": (node_inv[n:] + 1).astype(np.int64),
        "name": names[edges.road],
        "road_class": np.asarray(ROAD_CLASSES, dtype=object)[edges.level],
        "speed_kmh": _speeds(edges, oneway),
        "length_m": shapely.length(edges.geometry),
        "oneway": oneway,
    }, geometry=edges.geometry, crs=METRIC_CRS)
    frame.attrs["dropped"] = dropped
    log.info("road network: %d nodes, %d edges; dropped %s", len(nodes), n, dropped)
    return nodes, frame


def build_jiexiang(edges: gpd.GeoDataFrame,
                   streets_jurisdictions: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, pd.Series]:
    """街巷 rows, one per (road name, 街道 holding the edge midpoint), and edge_id → street_key.

    A row's geometry is the union of its edges clipped to its 街道 (so it lies inside it)."""
    lines = edges.geometry.to_numpy()
    polys = streets_jurisdictions.geometry.to_numpy()
    codes = streets_jurisdictions["code"].astype(str).to_numpy()
    street = _street_of(shapely.line_interpolate_point(lines, 0.5, normalized=True), polys)

    key_frame = pd.DataFrame({"code": codes[street], "name": edges["name"].to_numpy(),
                              "road_class": edges["road_class"].to_numpy()})
    groups = key_frame.drop_duplicates(["code", "name"]).sort_values(["code", "name"])
    groups = groups.reset_index(drop=True)
    groups["street_key"] = np.arange(len(groups), dtype=np.int64)
    street_key = key_frame.merge(groups[["code", "name", "street_key"]],
                                 on=["code", "name"], how="left")["street_key"].to_numpy()

    parts, owner = _clip_to_streets(lines, polys[street])
    order = np.argsort(street_key[owner], kind="stable")
    geoms = shapely.multilinestrings(parts[order], indices=street_key[owner][order])
    rows = gpd.GeoDataFrame({
        "street_key": groups["street_key"].to_numpy(),
        "name": groups["name"].to_numpy(),
        "road_class": groups["road_class"].to_numpy(),
        "district_code": groups["code"].str[:6].to_numpy(),
        "street_office_code": groups["code"].to_numpy(),
    }, geometry=geoms, crs=METRIC_CRS)
    mapping = pd.Series(street_key, index=pd.Index(edges["edge_id"].to_numpy(), name="edge_id"),
                        name="street_key")
    return rows, mapping


def _street_of(points: npt.NDArray[np.object_], polys: npt.NDArray[np.object_]) -> IntArray:
    """Index of the polygon holding each point (lowest index on a shared border; nearest
    polygon for points outside all of them)."""
    tree = shapely.STRtree(polys)
    p_idx, s_idx = tree.query(points, predicate="intersects")
    out = np.full(len(points), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(out, p_idx, s_idx)
    missing = np.flatnonzero(out == np.iinfo(np.int64).max)
    if len(missing):
        m_idx, near = tree.query_nearest(points[missing])
        nearest = np.full(len(missing), np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(nearest, m_idx, near)
        out[missing] = nearest
    return out


def _clip_to_streets(lines: npt.NDArray[np.object_], polys: npt.NDArray[np.object_]) -> tuple[
        npt.NDArray[np.object_], IntArray]:
    """The parts of each line inside its polygon (the whole line if nothing is inside), with
    the index of the line each part came from."""
    shapely.prepare(polys)
    inside = shapely.contains(polys, lines)
    idx = np.flatnonzero(~inside)
    cut, which = shapely.get_parts(shapely.intersection(lines[idx], polys[idx]),
                                   return_index=True)
    is_line = (shapely.get_type_id(cut) == 1) & (shapely.length(cut) > 0)
    cut, which = cut[is_line], idx[which[is_line]]
    lost = np.setdiff1d(idx, which)
    parts = np.concatenate([lines[inside], cut, lines[lost]])
    owner = np.concatenate([np.flatnonzero(inside), which, lost])
    return parts, owner
