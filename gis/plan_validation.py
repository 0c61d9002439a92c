"""Grid plan validation (网格调整方案校验, issue 9 part 3): the rules a plan's grids must meet
and the metrics a planner weighs, computed the same way for the planner page and the API.

Errors: invalid_geometry, overlap (between any two grids), gap (inside a community, not
covered by its grids), outside_community, multiple_communities, not_contiguous,
households_out_of_band, building_unassigned, building_multiply_assigned.
Warnings: low_compactness (Polsby-Popper 4πA/P² below the minimum), building_split
(a footprint with more than 1 % of its area in a second grid).
Metrics: area, Polsby-Popper, parts, households and buildings per grid; the length of the
inner boundary (edges grids share with each other, not the community outline) and the
share of it lying within `street_snap_m` of a street line.

Areas and lengths are measured in the metric CRS (`PlanRules.metric_srid`); which grid holds
a point and whether a footprint crosses a grid edge are decided in the frames' own CRS
(topology does not change under the projection, up to the sub-millimetre bending of straight
edges). Gaps, overlaps and pieces outside a community smaller than `area_tolerance_m2` are
not reported (snapping noise); the tolerance is stated in the report.

How it stays fast (DESIGN §6: 60 k grids in ≤ 5 s), without per-row geometry loops:
- coverage by edge cancellation: grids tile their community exactly iff the chain
  Σ ∂grid − ∂community is zero. Edges are matched in numpy — vertex for vertex by hashing
  (1 mm), then the rest (T-junctions, where a vertex of one grid lies on an edge of
  another) by collinear overlap within 1 cm, with a bound on the sliver area such matching
  can hide. Only communities whose edges do not cancel (and those holding an invalid or
  unknown-community grid) get the exact shapely overlay — union, difference, pairwise
  intersection — which finds and measures the gaps, overlaps and pieces outside. Where
  every grid tiles its community, grids can only overlap where communities do (the
  jurisdictions are not this check's to validate). shapely.coverage_is_valid /
  coverage_invalid_edges flag every T-junction (they need identical vertices on shared
  edges) and take seconds on a city, so they are not the filter here.
- buildings, in a second thread with its own copies of the geometries: representative
  points are located in grids by a sorted row join and a prepared point-in-polygon test;
  each footprint is tested against the prepared edges of its grid; area shares of the
  crossed ones come from a vectorised clip (convex footprints) or shapely (the rest).
- street following: inner edges and street segments are paired by a sorted row sweep and
  the part of each edge within the snap distance of a segment is solved in closed form.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import pyproj
import shapely
from sqlalchemy import Connection, text

from gis.errors import InvalidInput, NotFound
from gis.features import GEOJSON_DECIMALS
from gis.import_validate import describe_geos_reason

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjArray = npt.NDArray[Any]
Project = Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]]

ERRORS = ("invalid_geometry", "overlap", "gap", "outside_community", "multiple_communities",
          "not_contiguous", "households_out_of_band", "building_unassigned",
          "building_multiply_assigned")
WARNINGS = ("low_compactness", "building_split")
MATCH_EPS_M = 0.01  # edges within 1 cm of each other count as shared (T-junctions)
QUANTUM_M = 0.001  # vertices are compared at 1 mm
_THREADS = 2


@dataclass(frozen=True)
class PlanRules:
    """What a plan is checked against (api/settings.py holds the configured values)."""

    households_min: int = 300
    households_max: int = 500
    area_tolerance_m2: float = 1.0
    compactness_min: float = 0.2
    street_snap_m: float = 15.0
    metric_srid: int = 4548
    split_share_min: float = 0.01

    @classmethod
    def from_settings(cls, settings: Any) -> PlanRules:
        """The rules of a `api.settings.Settings` (household band, tolerances, metric CRS)."""
        return cls(households_min=int(settings.grid_households_min),
                   households_max=int(settings.grid_households_max),
                   area_tolerance_m2=float(settings.plan_area_tolerance_m2),
                   compactness_min=float(settings.plan_compactness_min),
                   street_snap_m=float(settings.plan_street_snap_m),
                   metric_srid=int(settings.metric_crs))

    def as_json(self) -> dict[str, Any]:
        return {
            "households_min": self.households_min, "households_max": self.households_max,
            "area_tolerance_m2": self.area_tolerance_m2,
            "compactness_min": self.compactness_min, "street_snap_m": self.street_snap_m,
            "split_share_min": self.split_share_min, "metric_crs": f"EPSG:{self.metric_srid}",
            "geometry_crs": "EPSG:4326",
            "statement": (
                f"gaps, overlaps and pieces outside a community under "
                f"{self.area_tolerance_m2:g} m² are ignored; a grid holds "
                f"{self.households_min}–{self.households_max} households (inclusive); "
                f"a building is split when more than {self.split_share_min:.0%} of its "
                f"footprint lies in a second grid and belongs to the grid with the largest "
                f"share, otherwise to the grid holding its representative point; an inner "
                f"edge follows a street within {self.street_snap_m:g} m; areas and lengths "
                f"in EPSG:{self.metric_srid}"),
        }


# -- small array helpers ------------------------------------------------------------------


def _expand(counts: IntArray) -> tuple[IntArray, IntArray]:
    """For each i, k = 0..counts[i]-1, flattened: (i repeated, k)."""
    counts = np.maximum(np.asarray(counts, dtype=np.int64), 0)
    owner = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first = np.cumsum(counts) - counts
    return owner, np.arange(owner.size, dtype=np.int64) - first[owner]


def _sums(owner: IntArray, values: npt.NDArray[Any], n: int) -> FloatArray:
    """Sum of `values` per owner 0..n-1."""
    return np.asarray(np.bincount(owner, values, minlength=n), dtype=np.float64)


def _run_starts(keys: npt.NDArray[Any]) -> IntArray:
    """Start of each run of equal values in a sorted array."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).astype(np.int64)


def _merged_length(owner: IntArray, lo: FloatArray, hi: FloatArray, n: int) -> FloatArray:
    """Length of the union of the intervals [lo, hi] of each owner (0..n-1)."""
    out = np.zeros(n)
    keep = hi > lo
    owner, lo, hi = owner[keep], lo[keep], hi[keep]
    if owner.size == 0:
        return out
    # Shift each owner's intervals past the previous owner's so one running max serves all.
    span = float(max(np.abs(lo).max(), np.abs(hi).max())) * 2 + 1.0
    base = owner.astype(np.float64) * span
    order = np.lexsort((lo, owner))
    owner, lo, hi = owner[order], lo[order] + base[order], hi[order] + base[order]
    reach = np.maximum.accumulate(hi)
    before = np.r_[-np.inf, reach[:-1]]
    gain = np.maximum(hi - np.maximum(lo, before), 0.0)
    return _sums(owner, gain, n)


def _box_pairs(a: FloatArray, b: FloatArray, cell: float) -> tuple[IntArray, IntArray]:
    """All (i, j) whose boxes a[i], b[j] (xmin, ymin, xmax, ymax) meet, each pair once.

    A sweep by rows of height `cell`: each box is entered in the rows it spans; in a row the
    b-boxes are sorted by xmin and an a-box reads those with xmin in [its xmin − the widest
    b-box, its xmax]; a pair is kept in the row holding the larger of the two ymin."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    x0 = min(float(a[:, 0].min()), float(b[:, 0].min()))
    y0 = min(float(a[:, 1].min()), float(b[:, 1].min()))
    wide = float((b[:, 2] - b[:, 0]).max())
    span = max(float(a[:, 2].max()), float(b[:, 2].max())) - x0 + 2 * wide + 2 * cell

    def rows(box: FloatArray) -> tuple[IntArray, IntArray]:
        r0 = ((box[:, 1] - y0) // cell).astype(np.int64)
        r1 = ((box[:, 3] - y0) // cell).astype(np.int64)
        owner, k = _expand(r1 - r0 + 1)
        return owner, np.repeat(r0, r1 - r0 + 1) + k

    b_owner, b_row = rows(b)
    b_key = b_row * span + (b[b_owner, 0] - x0)
    order = np.argsort(b_key, kind="stable")
    b_key, b_owner = b_key[order], b_owner[order]
    a_owner, a_row = rows(a)
    base = a_row * span - x0
    eps = span * 1e-12 + cell * 1e-9
    a_key = base + a[a_owner, 0]
    order = np.argsort(a_key, kind="stable")  # sorted queries make searchsorted fast
    a_owner, a_row, a_key, base = a_owner[order], a_row[order], a_key[order], base[order]
    lo = np.searchsorted(b_key, a_key - wide - eps, "left")
    hi = np.searchsorted(b_key, base + a[a_owner, 2] + eps, "right")
    which, k = _expand(hi - lo)
    pa, pb, row = a_owner[which], b_owner[np.repeat(lo, hi - lo) + k], a_row[which]
    keep = (b[pb, 2] >= a[pa, 0]) & (b[pb, 0] <= a[pa, 2]) & (b[pb, 3] >= a[pa, 1]) \
        & (b[pb, 1] <= a[pa, 3])
    pa, pb, row = pa[keep], pb[keep], row[keep]
    top = ((np.maximum(a[pa, 1], b[pb, 1]) - y0) // cell).astype(np.int64)
    keep = top == row
    return pa[keep], pb[keep]


def _segment_boxes(seg: FloatArray, margin: float = 0.0) -> FloatArray:
    return np.column_stack([np.minimum(seg[:, 0], seg[:, 2]) - margin,
                            np.minimum(seg[:, 1], seg[:, 3]) - margin,
                            np.maximum(seg[:, 0], seg[:, 2]) + margin,
                            np.maximum(seg[:, 1], seg[:, 3]) + margin])


def _pieces(seg: FloatArray, cell: float) -> tuple[IntArray, FloatArray]:
    """Segments cut into pieces no longer than `cell` in x and y: (segment, piece)."""
    dx, dy = seg[:, 2] - seg[:, 0], seg[:, 3] - seg[:, 1]
    count = np.maximum(np.ceil(np.maximum(np.abs(dx), np.abs(dy)) / cell), 1).astype(np.int64)
    owner, k = _expand(count)
    if owner.size == len(seg):
        return owner, seg
    f0, f1 = k / count[owner], (k + 1) / count[owner]
    return owner, np.column_stack([seg[owner, 0] + dx[owner] * f0, seg[owner, 1] + dy[owner] * f0,
                                   seg[owner, 0] + dx[owner] * f1, seg[owner, 1] + dy[owner] * f1])


def _join_cell(a: FloatArray, b: FloatArray, margin: float) -> float:
    """Cell size of a segment join: most segments fit in a cell, and a cell is several
    margins wide."""
    extent = np.concatenate([np.maximum(np.abs(a[:, 2] - a[:, 0]), np.abs(a[:, 3] - a[:, 1])),
                             np.maximum(np.abs(b[:, 2] - b[:, 0]), np.abs(b[:, 3] - b[:, 1]))])
    return max(float(np.percentile(extent, 75)) if extent.size else 0.0, 4 * margin, 1e-6)


def _segment_pairs(a: FloatArray, b: FloatArray, margin: float) -> tuple[IntArray, IntArray]:
    """Every (i, j), once, with segment b[j] passing within `margin` of segment a[i]'s box
    (a superset of the pairs within `margin` of each other): a cell join of the segments cut
    into pieces of about a cell, so that a long diagonal does not fill a square of cells."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    cell = _join_cell(a, b, margin)
    a_of, a_piece = _pieces(a, cell)
    b_of, b_piece = _pieces(b, cell)
    pa, pb = _box_pairs(_segment_boxes(a_piece), _segment_boxes(b_piece, margin), cell)
    i, j = a_of[pa], b_of[pb]
    if a_piece is not a or b_piece is not b:
        pair = np.unique(i * np.int64(len(b)) + j)
        i, j = pair // len(b), pair % len(b)
    return i, j


def _threaded(fn: Callable[..., npt.NDArray[Any]], *arrays: npt.NDArray[Any],
              groups: IntArray | None = None) -> Any:
    """A vectorised shapely call (they release the GIL) over two halves in two threads.
    GEOS prepared geometries are not thread-safe (they build their indexes on first use):
    when the first array holds prepared geometries, `groups` (sorted, equal for repeats of
    one geometry) moves the cut so that no geometry is used by both threads."""
    n = len(arrays[0])
    if n < 20_000:
        return fn(*arrays)
    half = n // 2
    if groups is not None:
        half = int(np.searchsorted(groups, groups[half], "left")) or \
            int(np.searchsorted(groups, groups[half], "right"))
        if half >= n:
            return fn(*arrays)
    with ThreadPoolExecutor(_THREADS) as pool:
        parts = list(pool.map(lambda s: fn(*(x[s] for x in arrays)),
                              (slice(0, half), slice(half, n))))
    return np.concatenate(parts)


def _copies(geoms: ObjArray) -> ObjArray:
    """New geometry objects equal to `geoms` (not sharing their prepared state)."""
    return np.asarray(shapely.from_wkb(shapely.to_wkb(geoms)), dtype=object)


# -- polygons as rings and directed segments ----------------------------------------------


@dataclass
class _RingSet:
    """The rings of a set of (multi)polygons as coordinates: every ring closed, ring → part
    → feature (shells first in each part, as shapely lists them)."""

    xy: FloatArray  # (n, 2) vertices in the frames' CRS
    ring_of: IntArray  # ring of each vertex
    exterior: BoolArray  # per ring
    ring_part: IntArray
    part_owner: IntArray
    features: int


def _ring_set(geoms: ObjArray) -> _RingSet:
    parts, part_owner = shapely.get_parts(geoms, return_index=True)
    rings, ring_part = shapely.get_rings(parts, return_index=True)
    exterior = np.r_[True, ring_part[1:] != ring_part[:-1]] if len(rings) else \
        np.zeros(0, dtype=bool)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    return _RingSet(xy, ring_of.astype(np.int64), exterior, ring_part.astype(np.int64),
                    part_owner.astype(np.int64), len(geoms))


@dataclass
class _Rings:
    """Ring segments a → b oriented so that the interior lies left of each, and per-feature
    measures, in one CRS (metres when projected)."""

    ax: FloatArray
    ay: FloatArray
    bx: FloatArray
    by: FloatArray
    seg_owner: IntArray  # feature of each segment (non-decreasing)
    va: IntArray  # vertex index of a and b (into vx, vy)
    vb: IntArray
    vx: FloatArray
    vy: FloatArray
    area: FloatArray  # per feature
    perimeter: FloatArray  # per feature
    part_area: FloatArray  # per polygon part
    part_owner: IntArray


def _measure(rs: _RingSet, project: Project | None) -> _Rings:
    """Oriented segments and measures of `rs`, projected with `project` (None: as is)."""
    xy, ring_of = rs.xy, rs.ring_of
    n_rings = len(rs.exterior)
    if project is not None and len(xy):
        mx, my = project(xy[:, 0], xy[:, 1])
    else:
        mx, my = np.ascontiguousarray(xy[:, 0]), np.ascontiguousarray(xy[:, 1])
    x0, y0, x1, y1 = mx[:-1], my[:-1], mx[1:], my[1:]
    keep = np.flatnonzero((ring_of[:-1] == ring_of[1:]) & ((x0 != x1) | (y0 != y1)))
    seg_ring = ring_of[keep]
    va, vb = keep, keep + 1
    ax, ay, bx, by = x0[keep], y0[keep], x1[keep], y1[keep]
    # Shoelace per ring about the ring's first vertex (keeps the products small).
    start = np.searchsorted(ring_of, np.arange(n_rings))
    ox, oy = mx[start][seg_ring], my[start][seg_ring]
    cross = (ax - ox) * (by - oy) - (bx - ox) * (ay - oy)
    signed = _sums(seg_ring, cross, n_rings) / 2.0
    length = _sums(seg_ring, np.hypot(bx - ax, by - ay), n_rings)
    # Interior on the left: shells counter-clockwise, holes clockwise.
    flip = np.where(rs.exterior, signed < 0, signed > 0)[seg_ring]
    if flip.any():
        ax, bx = np.where(flip, bx, ax), np.where(flip, ax, bx)
        ay, by = np.where(flip, by, ay), np.where(flip, ay, by)
        va, vb = np.where(flip, vb, va), np.where(flip, va, vb)
    ring_area = np.where(rs.exterior, 1.0, -1.0) * np.abs(signed)
    part_area = _sums(rs.ring_part, ring_area, len(rs.part_owner))
    ring_owner = rs.part_owner[rs.ring_part]
    return _Rings(ax=ax, ay=ay, bx=bx, by=by, seg_owner=ring_owner[seg_ring], va=va, vb=vb,
                  vx=mx, vy=my,
                  area=_sums(rs.part_owner, part_area, rs.features),
                  perimeter=_sums(ring_owner, length, rs.features),
                  part_area=part_area, part_owner=rs.part_owner)


# -- coverage: edge cancellation ----------------------------------------------------------


@dataclass
class _Coverage:
    """Which communities need the exact overlay, and the inner edges (for street following):
    segments (metres) with a weight (1 for an edge shared vertex for vertex, ½ for each side
    of an edge matched by overlap)."""

    flagged: BoolArray  # per community
    inner: FloatArray
    inner_weight: FloatArray


def _coverage(grid: _Rings, grid_comm: IntArray, comm: _Rings, n_comm: int,
              checked: BoolArray, tolerance_m2: float) -> _Coverage:
    """Edge cancellation per community (module doc). `grid_comm`: the community index of
    each grid (-1: unknown); `checked`: communities whose tiling is verified."""
    known = np.flatnonzero(grid_comm[grid.seg_owner] >= 0)
    outline = np.flatnonzero(checked[comm.seg_owner])
    n_grid = known.size
    # Every directed edge: grid edges as they are, community outlines reversed; edge k is
    # grid edge known[k] (k < n_grid) or outline edge outline[k - n_grid].
    grp = np.concatenate([grid_comm[grid.seg_owner[known]], comm.seg_owner[outline]])

    def coords(k: IntArray) -> FloatArray:
        g, c = known[k[k < n_grid]], outline[k[k >= n_grid] - n_grid]
        return np.concatenate([np.column_stack([grid.ax[g], grid.ay[g], grid.bx[g], grid.by[g]]),
                               np.column_stack([comm.bx[c], comm.by[c], comm.ax[c], comm.ay[c]])])

    flagged = np.zeros(n_comm, dtype=bool)
    if grp.size == 0:
        return _Coverage(flagged, np.zeros((0, 4)), np.zeros(0))
    # An edge is a pair of endpoints (1 mm) in a community; its sign says which way it runs.
    # Groups by a 64-bit key of (community, endpoints): two different edges share a key
    # with probability ~2^-64 per pair (and an error then also needs them to cancel).
    hg, hc = _point_hash(grid.vx, grid.vy), _point_hash(comm.vx, comm.vy)
    ha = np.concatenate([hg[grid.va[known]], hc[comm.vb[outline]]])
    hb = np.concatenate([hg[grid.vb[known]], hc[comm.va[outline]]])
    direction = np.where(ha <= hb, 1, -1)
    key = _mix(_mix(np.minimum(ha, hb), np.maximum(ha, hb)), grp.astype(np.uint64))
    del ha, hb
    order = np.argsort(key)
    key = key[order]
    new = np.r_[True, key[1:] != key[:-1]]
    gid = np.cumsum(new) - 1
    n_groups = int(gid[-1]) + 1
    net = _sums(gid, direction[order], n_groups)
    size = np.bincount(gid, minlength=n_groups)
    on_outline = np.bincount(gid, order >= n_grid, minlength=n_groups)
    head = order[new]  # one member of each group
    # Net multiplicity ≠ 0 on an edge met more than once: overlapping or repeated edges.
    flagged[np.unique(grp[head[(net != 0) & (size > 1)]])] = True
    between = (net == 0) & (on_outline == 0)
    shared = np.sort(head[between])
    inner = [coords(shared)]
    weight = [size[between][np.argsort(head[between])] / 2.0]
    # T-junctions: an edge met once must be covered by opposite edges lying on it.
    single = np.sort(head[size == 1])
    ls = coords(single)
    lg, lo_outline = grp[single], single >= n_grid
    cover, outline_cover, hidden = _overlap_match(ls, lg, lo_outline)
    length = np.hypot(ls[:, 2] - ls[:, 0], ls[:, 3] - ls[:, 1])
    flagged[np.unique(lg[length - cover > MATCH_EPS_M])] = True
    flagged |= _sums(lg, hidden, n_comm) > tolerance_m2 / 2
    inner_left = ~lo_outline & (outline_cover < length / 2)
    inner.append(ls[inner_left])
    weight.append(np.full(int(inner_left.sum()), 0.5))
    return _Coverage(flagged, np.concatenate(inner), np.concatenate(weight))


def _point_hash(x: FloatArray, y: FloatArray) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of each point rounded to QUANTUM_M."""
    qx = np.rint(x / QUANTUM_M).astype(np.int64).view(np.uint64)
    qy = np.rint(y / QUANTUM_M).astype(np.int64).view(np.uint64)
    return _mix(qx, qy)


def _mix(a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of pairs (splitmix-style multiply-xorshift)."""
    with np.errstate(over="ignore"):
        h = (a ^ np.uint64(0x632BE59BD9B4E019)) * np.uint64(0x9E3779B97F4A7C15)
        h ^= h >> np.uint64(31)
        h = (h ^ b) * np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(29)
        return h * np.uint64(0x94D049BB133111EB)


def _overlap_match(seg: FloatArray, grp: IntArray, outline: BoolArray,
                   ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """For each segment: the length of it covered by opposite segments of the same community
    lying within MATCH_EPS_M of it, the part of that covered by the community outline, and
    the sliver area such matching could hide (overlap length × offset)."""
    n = len(seg)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    i, j = _segment_pairs(seg, seg, MATCH_EPS_M)
    keep = (i != j) & (grp[i] == grp[j])
    i, j = i[keep], j[keep]
    ax, ay, bx, by = seg[i, 0], seg[i, 1], seg[i, 2], seg[i, 3]
    length = np.hypot(bx - ax, by - ay)
    ok = length > 0
    ux = np.where(ok, (bx - ax) / np.where(ok, length, 1), 0)
    uy = np.where(ok, (by - ay) / np.where(ok, length, 1), 0)
    px, py = seg[j, 0] - ax, seg[j, 1] - ay
    qx, qy = seg[j, 2] - ax, seg[j, 3] - ay
    d0, d1 = ux * py - uy * px, ux * qy - uy * qx
    t0, t1 = ux * px + uy * py, ux * qx + uy * qy
    opposite = (t1 - t0) < 0
    near = (np.abs(d0) <= MATCH_EPS_M) & (np.abs(d1) <= MATCH_EPS_M) & opposite & ok
    lo = np.clip(np.minimum(t0, t1), 0, length)
    hi = np.clip(np.maximum(t0, t1), 0, length)
    near &= hi > lo
    i, lo, hi = i[near], lo[near], hi[near]
    offset = np.maximum(np.abs(d0), np.abs(d1))[near]
    from_outline = outline[j[near]]
    cover = _merged_length(i, lo, hi, n)
    outline_cover = _merged_length(i[from_outline], lo[from_outline], hi[from_outline], n)
    hidden = _sums(i, (hi - lo) * offset, n)
    return cover, outline_cover, hidden


# -- street following ---------------------------------------------------------------------


def _within_interval(seg: FloatArray, street: FloatArray, d: float,
                     ) -> tuple[FloatArray, FloatArray]:
    """For pairs (segment A→B, street segment Q0→Q1): the parameter interval [lo, hi] of
    A + t(B − A), t ∈ [0, 1], within distance d of the street segment (lo > hi: none).
    The set within d of a segment is convex (a stadium), so its trace on a line is one
    interval: the hull of the traces of the two end discs and the middle rectangle."""
    ax, ay = seg[:, 0], seg[:, 1]
    vx, vy = seg[:, 2] - ax, seg[:, 3] - ay
    los, his = [], []
    for qx, qy in ((street[:, 0], street[:, 1]), (street[:, 2], street[:, 3])):
        # |A + t v − Q|² ≤ d²
        wx, wy = ax - qx, ay - qy
        a = vx * vx + vy * vy
        b = 2 * (vx * wx + vy * wy)
        c = wx * wx + wy * wy - d * d
        disc = b * b - 4 * a * c
        has = (disc >= 0) & (a > 0)
        root = np.sqrt(np.where(has, disc, 0))
        safe = np.where(a > 0, a, 1)
        lo = np.where(has, (-b - root) / (2 * safe), np.inf)
        hi = np.where(has, (-b + root) / (2 * safe), -np.inf)
        lo, hi = np.maximum(lo, 0), np.minimum(hi, 1)
        los.append(lo)
        his.append(hi)
    # Rectangle: |cross(ŵ, X − Q0)| ≤ d and 0 ≤ dot(ŵ, X − Q0) ≤ |w|.
    wx, wy = street[:, 2] - street[:, 0], street[:, 3] - street[:, 1]
    wl = np.hypot(wx, wy)
    has_w = wl > 0
    ux, uy = np.where(has_w, wx / np.where(has_w, wl, 1), 0), np.where(
        has_w, wy / np.where(has_w, wl, 1), 0)
    rx, ry = ax - street[:, 0], ay - street[:, 1]
    c0, c1 = ux * ry - uy * rx, ux * vy - uy * vx
    e0, e1 = ux * rx + uy * ry, ux * vx + uy * vy
    lo, hi = np.zeros(len(seg)), np.ones(len(seg))
    for alpha, beta in ((d - c0, -c1), (d + c0, c1), (e0, e1), (wl - e0, -e1)):
        lo, hi = _half_line(lo, hi, alpha, beta)
    hi = np.where(has_w, hi, -np.inf)
    los.append(lo)
    his.append(hi)
    lo_all = np.min(np.where(np.array(his) >= np.array(los), np.array(los), np.inf), axis=0)
    hi_all = np.max(np.where(np.array(his) >= np.array(los), np.array(his), -np.inf), axis=0)
    return lo_all, hi_all


def _half_line(lo: FloatArray, hi: FloatArray, alpha: FloatArray, beta: FloatArray,
               ) -> tuple[FloatArray, FloatArray]:
    """Intersect [lo, hi] with {t : alpha + beta t ≥ 0}."""
    pos, neg = beta > 0, beta < 0
    safe = np.where(beta != 0, beta, 1)
    root = -alpha / safe
    lo = np.where(pos, np.maximum(lo, root), lo)
    hi = np.where(neg, np.minimum(hi, root), hi)
    hi = np.where((beta == 0) & (alpha < 0), -np.inf, hi)
    return lo, hi


def _street_following(inner: FloatArray, weight: FloatArray, streets: FloatArray,
                      snap_m: float) -> tuple[float, float]:
    """(inner boundary length, length of it within snap_m of a street), metres."""
    length = np.hypot(inner[:, 2] - inner[:, 0], inner[:, 3] - inner[:, 1])
    total = float(np.sum(length * weight))
    if total == 0 or len(streets) == 0:
        return total, 0.0
    # On pieces: covered length adds up over the pieces of a segment.
    cell = _join_cell(inner, streets, snap_m)
    a_of, a_piece = _pieces(inner, cell)
    _, b_piece = _pieces(streets, cell)
    i, j = _box_pairs(_segment_boxes(a_piece), _segment_boxes(b_piece, snap_m), cell)
    lo, hi = _within_interval(a_piece[i], b_piece[j], snap_m)
    piece_length = np.hypot(a_piece[:, 2] - a_piece[:, 0], a_piece[:, 3] - a_piece[:, 1])
    covered = _merged_length(i, lo, hi, len(a_piece)) * piece_length
    return total, float(np.sum(covered * weight[a_of]))


def _line_segments(lines: ObjArray, project: Project | None) -> FloatArray:
    parts = shapely.get_parts(lines)
    parts = parts[shapely.get_type_id(parts) == 1] if len(parts) else parts
    xy, of = shapely.get_coordinates(parts, return_index=True)
    if project is not None and len(xy):
        x, y = project(xy[:, 0], xy[:, 1])
        xy = np.column_stack([x, y])
    same = of[:-1] == of[1:]
    return np.column_stack([xy[:-1][same], xy[1:][same]]) if len(xy) else np.zeros((0, 4))


# -- points in polygons -------------------------------------------------------------------


def _points_in(polys: ObjArray, x: FloatArray, y: FloatArray) -> tuple[IntArray, IntArray]:
    """(point, polygon) for every (prepared) polygon whose interior or boundary holds each
    point: points sorted by row and x, each polygon reads the runs of its bounding box's
    rows, then a prepared point-in-polygon test."""
    if len(polys) == 0 or len(x) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    box = shapely.bounds(polys)
    ok = np.isfinite(box[:, 0])
    heights = box[ok, 3] - box[ok, 1]
    row_h = max(float(np.median(heights)) / 4 if heights.size else 1.0, 1e-9)
    x0 = min(float(np.nanmin(box[:, 0])), float(x.min())) - row_h
    y0 = min(float(np.nanmin(box[:, 1])), float(y.min())) - row_h
    span = max(float(np.nanmax(box[:, 2])), float(x.max())) - x0 + 2 * row_h
    prow = np.floor((y - y0) / row_h)
    key = prow * span + (x - x0)
    order = np.argsort(key, kind="stable")
    skey = key[order]
    poly = np.flatnonzero(ok)
    r0 = np.floor((box[poly, 1] - y0) / row_h).astype(np.int64)
    r1 = np.floor((box[poly, 3] - y0) / row_h).astype(np.int64)
    which, k = _expand(r1 - r0 + 1)
    row = (r0[which] + k).astype(np.float64)
    pid = poly[which]
    eps = span * 1e-12
    lo = np.searchsorted(skey, row * span + (box[pid, 0] - x0) - eps, "left")
    hi = np.searchsorted(skey, row * span + (box[pid, 2] - x0) + eps, "right")
    which2, k2 = _expand(hi - lo)
    pt = order[lo[which2] + k2]
    pg = pid[which2]
    inside_box = (y[pt] >= box[pg, 1]) & (y[pt] <= box[pg, 3])
    pt, pg = pt[inside_box], pg[inside_box]
    hit = _threaded(shapely.intersects_xy, polys[pg], x[pt], y[pt], groups=pg)
    return pt[hit], pg[hit]


# -- buildings ----------------------------------------------------------------------------


@dataclass
class _Buildings:
    assigned: IntArray  # grid index per building, -1: none
    in_scope: BoolArray  # representative point in a grid or in a community of the plan
    unassigned: IntArray  # building indices
    unassigned_comm: IntArray  # the community (index) holding each one's point
    multiple: list[tuple[int, list[int]]]  # (building, grids holding its point)
    split: list[tuple[int, list[tuple[int, float]]]]  # (building, [(grid, share)] desc)


def _assign_buildings(grid_in: ObjArray, grid_seg: _Rings, comm_in: ObjArray,
                      comm_in_plan: BoolArray, footprints: ObjArray, points: ObjArray,
                      share_min: float) -> _Buildings:
    """Locate each building's representative point in the grids (prepared, owned by this
    thread), find the footprints a grid edge crosses and their area shares (module doc)."""
    n = len(footprints)
    px, py = shapely.get_x(points), shapely.get_y(points)
    pt, pg = _points_in(grid_in, px, py)
    order = np.lexsort((pg, pt))
    pt, pg = pt[order], pg[order]
    count = np.bincount(pt, minlength=n)
    # intersects_xy counts a point on the edge between two grids in both: where a point is
    # in several, keep the interiors holding it (or the first grid when it is on edges only).
    many = count[pt] > 1
    if many.any():
        strict = np.ones(pt.size, dtype=bool)
        strict[many] = shapely.contains_xy(grid_in[pg[many]], px[pt[many]], py[pt[many]])
        n_strict = np.bincount(pt[strict], minlength=n)
        first = np.zeros(pt.size, dtype=bool)
        first[_run_starts(pt)] = True
        keep = strict | ((n_strict[pt] == 0) & first)
        pt, pg = pt[keep], pg[keep]
        count = np.bincount(pt, minlength=n)
    starts = _run_starts(pt)
    assigned = np.full(n, -1, dtype=np.int64)
    assigned[pt[starts]] = pg[starts]
    stops = np.r_[starts[1:], pt.size]
    several = np.flatnonzero(stops - starts > 1)
    multiple = [(int(pt[starts[k]]), pg[starts[k]:stops[k]].tolist()) for k in several]
    # Points in no grid: the plan's business only inside one of its communities.
    in_scope = count > 0
    lost = np.flatnonzero(count == 0)
    unassigned = unassigned_comm = np.zeros(0, dtype=np.int64)
    plan_comm = np.flatnonzero(comm_in_plan)
    if lost.size and plan_comm.size:
        tree = shapely.STRtree(comm_in[plan_comm])
        hit_pt, hit_comm = tree.query(points[lost], predicate="intersects")
        first = _run_starts(hit_pt)  # results come sorted by point
        unassigned, unassigned_comm = lost[hit_pt[first]], plan_comm[hit_comm[first]]
        in_scope[unassigned] = True
    # Footprints crossed by an edge of the grid holding their point (prepared edges; the
    # cut between the two threads falls between grids), and footprints in several parts.
    has = np.flatnonzero(assigned >= 0)
    has = has[np.argsort(assigned[has], kind="stable")]
    edges = shapely.boundary(grid_in)
    shapely.prepare(edges)
    crossed = has[_threaded(shapely.intersects, edges[assigned[has]], footprints[has],
                            groups=assigned[has])]
    # A footprint in several parts can lie in two grids without touching an edge.
    parts = has[shapely.get_num_geometries(footprints[has]) > 1]
    crossed = np.union1d(crossed, parts)
    split = _shares(grid_in, grid_seg, crossed, assigned, footprints, share_min)
    for b, shares in split:
        assigned[b] = shares[0][0]
    return _Buildings(assigned, in_scope, unassigned, unassigned_comm, multiple, split)


def _shares(grid_in: ObjArray, grid_seg: _Rings, crossed: IntArray, assigned: IntArray,
            footprints: ObjArray, share_min: float) -> list[tuple[int, list[tuple[int, float]]]]:
    """Area shares of the footprints a grid edge crosses, for those with more than
    `share_min` of their area outside the grid holding their point: [(building, [(grid,
    share), ...])], shares in descending order (the first is the assigned grid).

    Shares are ratios of areas within one footprint, taken in the frames' CRS: across a
    footprint the projection's area scale varies by less than 1e-5 (in lon/lat at Beijing),
    below the reported precision."""
    if crossed.size == 0:
        return []
    inside, whole = _inside_areas(crossed, assigned[crossed], footprints, grid_in, grid_seg)
    out = crossed[whole - inside > share_min * whole]
    if out.size == 0:
        return []
    tree = shapely.STRtree(grid_in)
    qi, qg = tree.query(footprints[out], predicate="intersects")
    part, whole = _inside_areas(out[qi], qg, footprints, grid_in, grid_seg)
    share = np.where(whole > 0, part / np.where(whole > 0, whole, 1), 0.0)
    order = np.lexsort((qg, -share, qi))
    qi, qg, share = qi[order], qg[order], share[order]
    result = []
    starts = _run_starts(qi)
    for start, stop in zip(starts, [*starts[1:], qi.size], strict=True):
        shares = [(int(g), float(v)) for g, v in zip(qg[start:stop], share[start:stop],
                                                      strict=True) if v > 0]
        if len(shares) > 1 and shares[1][1] > share_min:
            result.append((int(out[qi[start]]), shares))
    return result


def _inside_areas(pair_b: IntArray, pair_g: IntArray, footprints: ObjArray, grids: ObjArray,
                  grid_seg: _Rings) -> tuple[FloatArray, FloatArray]:
    """(area of footprint ∩ grid, area of footprint) for each pair, in the frames' CRS.

    Convex footprints (almost all) in numpy, by Green's theorem over the boundary of the
    intersection: the grid's edges clipped to the footprint (Cyrus-Beck), plus the parts of
    the footprint's edges inside the grid (from the inside state of its corners and the
    grid edges crossing it). Other footprints, and touching or collinear configurations,
    go to shapely."""
    k = pair_b.size
    inside = np.full(k, np.nan)
    whole = shapely.area(footprints[pair_b])
    ub, inv = np.unique(pair_b, return_inverse=True)
    feet = footprints[ub]
    simple = (shapely.get_num_geometries(feet) == 1)
    parts = shapely.get_parts(feet[simple])
    simple_idx = np.flatnonzero(simple)
    simple[simple_idx] = shapely.get_num_interior_rings(parts) == 0
    shell = np.full(len(ub), None, dtype=object)
    shell[simple_idx] = parts  # polygons without holes: their coordinates are the shell's
    xy, of = shapely.get_coordinates(shell[simple], return_index=True)
    of = np.flatnonzero(simple)[of]
    # Drop each ring's closing vertex; corners in counter-clockwise order.
    last = np.r_[of[1:] != of[:-1], True] if of.size else np.zeros(0, dtype=bool)
    xy, of = xy[~last], of[~last]
    count = np.bincount(of, minlength=len(ub))
    first = np.cumsum(count) - count
    nxt = np.arange(of.size) + 1
    nxt[first[of] + count[of] - 1] = first[of]  # the last corner's successor is the first
    origin = xy[first[of]]
    local = xy - origin
    ex, ey = local[:, 0], local[:, 1]
    dx, dy = ex[nxt] - ex, ey[nxt] - ey
    edge_cross = ex * ey[nxt] - ex[nxt] * ey
    signed = _sums(of, edge_cross, len(ub))
    ccw = signed > 0
    turn = dx * dy[nxt] - dy * dx[nxt]
    scale = _sums(of, dx * dx + dy * dy, len(ub))
    convex = (count >= 3) & simple & ccw & (_sums(
        of, turn < -1e-12 * scale[of], len(ub)) == 0)
    # Clockwise rings are rare; leave them to shapely with the non-convex ones.
    fast = convex[inv]
    p_idx = np.flatnonzero(fast)
    if p_idx.size:
        inside[p_idx] = _convex_clip(p_idx, inv, pair_g, first, count, origin, ex, ey, dx, dy,
                                     edge_cross, grids, grid_seg, xy)
    slow = np.flatnonzero(np.isnan(inside))
    if slow.size:
        inside[slow] = shapely.area(shapely.intersection(footprints[pair_b[slow]],
                                                         grids[pair_g[slow]]))
    return inside, whole


def _convex_clip(p_idx: IntArray, inv: IntArray, pair_g: IntArray, first: IntArray,
                 count: IntArray, origin: FloatArray, ex: FloatArray, ey: FloatArray,
                 dx: FloatArray, dy: FloatArray, edge_cross: FloatArray, grids: ObjArray,
                 grid_seg: _Rings, xy: FloatArray) -> FloatArray:
    """Area of convex footprint ∩ grid for the pairs p_idx (NaN where degenerate); corners
    in local coordinates (ex, ey: relative to each footprint's first corner `origin`)."""
    fb = inv[p_idx]  # footprint (unique index) of each pair
    g = pair_g[p_idx]
    n_p = p_idx.size
    n_corner = count[fb]
    f0 = first[fb]
    # Footprint boxes, absolute (corners are stored footprint after footprint).
    ox, oy = xy[f0, 0], xy[f0, 1]
    some = np.flatnonzero(count > 0)
    box = np.zeros((len(count), 4))
    for col, (fn, v) in enumerate(((np.minimum, ex), (np.minimum, ey), (np.maximum, ex),
                                   (np.maximum, ey))):
        box[some, col] = fn.reduceat(v, first[some])
    lx0, ly0, lx1, ly1 = box[fb, 0] + ox, box[fb, 1] + oy, box[fb, 2] + ox, box[fb, 3] + oy
    # The grid's edges whose boxes meet the footprint's box.
    sa_x, sa_y, sb_x, sb_y = grid_seg.ax, grid_seg.ay, grid_seg.bx, grid_seg.by
    seg_start = np.searchsorted(grid_seg.seg_owner, g, "left")
    n_seg = np.searchsorted(grid_seg.seg_owner, g, "right") - seg_start
    pair, k = _expand(n_seg)
    sid = np.repeat(seg_start, n_seg) + k
    x_a, x_b = sa_x[sid], sb_x[sid]
    near = ((np.maximum(x_a, x_b) >= np.repeat(lx0, n_seg))
            & (np.minimum(x_a, x_b) <= np.repeat(lx1, n_seg)))
    pair, sid = pair[near], sid[near]
    y_a, y_b = sa_y[sid], sb_y[sid]
    near = (np.maximum(y_a, y_b) >= ly0[pair]) & (np.minimum(y_a, y_b) <= ly1[pair])
    pair, sid = pair[near], sid[near]
    px, py = sa_x[sid] - ox[pair], sa_y[sid] - oy[pair]
    gx, gy = sb_x[sid] - sa_x[sid], sb_y[sid] - sa_y[sid]
    # Each near grid edge against each footprint edge (local coordinates).
    ps, e = _expand(n_corner[pair])
    corner = f0[pair[ps]] + e
    ex0, ey0, edx, edy = ex[corner], ey[corner], dx[corner], dy[corner]
    spx, spy, sgx, sgy = px[ps], py[ps], gx[ps], gy[ps]
    rx, ry = spx - ex0, spy - ey0
    # (1) Cyrus-Beck: the grid edge inside every footprint half-plane (left of each edge).
    lo, hi = _half_line(np.zeros(ps.size), np.ones(ps.size), edx * ry - edy * rx,
                        edx * sgy - edy * sgx)
    a1 = np.zeros(n_p)
    if ps.size:
        starts = _run_starts(ps)
        span = np.maximum(np.minimum.reduceat(hi, starts) - np.maximum.reduceat(lo, starts), 0)
        a1 = _sums(pair, span * (px * gy - py * gx), n_p)
    # (2) Grid edges crossing footprint edges: s along the footprint edge, u along the grid
    # edge; entering the grid (interior left of its edges) counts +1. Touching or
    # collinear meetings are left to shapely.
    denom = edx * sgy - edy * sgx
    scale = np.hypot(edx, edy) * np.hypot(sgx, sgy)
    parallel = np.abs(denom) <= 1e-12 * scale
    safe = np.where(parallel, 1.0, denom)
    s = (rx * sgy - ry * sgx) / safe
    u = (rx * edy - ry * edx) / safe
    tiny = 1e-9
    hit = ~parallel & (s > tiny) & (s < 1 - tiny) & (u > tiny) & (u < 1 - tiny)
    touch = ~parallel & ~hit & (s > -tiny) & (s < 1 + tiny) & (u > -tiny) & (u < 1 + tiny)
    collinear = parallel & (np.abs(edx * ry - edy * rx) <= 1e-12 * scale)
    owner = pair[ps]
    bad = _sums(owner, touch | collinear, n_p) > 0
    # Inside state of each footprint edge's start: the first corner's state (point in
    # polygon), then + the crossings of the edges before it.
    cx, cy = xy[f0, 0], xy[f0, 1]
    within = shapely.contains_xy(grids[g], cx, cy)
    bad |= shapely.intersects_xy(grids[g], cx, cy) & ~within
    pe_start = np.cumsum(n_corner) - n_corner
    slot = pe_start[owner] + e  # (pair, footprint edge) position
    n_slots = int(n_corner.sum())
    step = np.bincount(slot[hit], np.where(sgx * edy - sgy * edx > 0, 1.0, -1.0)[hit],
                       minlength=n_slots)
    partial = _sums(slot[hit], (np.where(sgx * edy - sgy * edx > 0, 1.0, -1.0)
                                      * (1 - s))[hit], n_slots)
    slot_pair = np.repeat(np.arange(n_p), n_corner)
    before = np.cumsum(step) - step - np.repeat(np.cumsum(step)[pe_start] - step[pe_start],
                                                n_corner)
    state = np.repeat(within.astype(np.float64), n_corner) + before
    frac = state + partial
    loop = np.add.reduceat(step, pe_start) if n_slots else np.zeros(n_p)
    bad |= np.abs(loop) > 0.5
    bad |= _sums(slot_pair, (state < -0.5) | (state > 1.5) | (frac < -1e-9)
                       | (frac > 1 + 1e-9), n_p) > 0
    a2 = np.bincount(slot_pair, frac * edge_cross[np.repeat(f0, n_corner)
                                                  + np.arange(n_slots)
                                                  - np.repeat(pe_start, n_corner)],
                     minlength=n_p)
    return np.where(bad, np.nan, (a1 + a2) / 2)


# -- exact checks where edges do not cancel -----------------------------------------------


@dataclass
class _Issue:
    rule: str
    grid_ids: list[int]
    community_code: str | None
    message: str
    message_zh: str
    geometry: Any = None  # shapely, in the metric CRS (metric=True) or the input CRS
    metric: bool = True
    area_m2: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    geojson: dict[str, Any] | None = None  # set by _to_geojson
    converted: bool = False

    @property
    def severity(self) -> str:
        return "error" if self.rule in ERRORS else "warning"


@dataclass
class _Frames:
    """The inputs, normalised: grids and communities as arrays in the input CRS."""

    grid_id: IntArray
    grid_code: list[str | None]
    grid_comm_code: list[str]
    grid_comm: IntArray  # community index, -1 unknown
    polys: ObjArray  # input CRS, repaired where invalid (None where nothing is left)
    comm_code: list[str]
    comm_geom: ObjArray
    comm_in_plan: BoolArray
    to_metric: Callable[[ObjArray], ObjArray]
    project: Project | None
    invalid: IntArray  # grids whose geometry was invalid (repaired in polys)

    def label(self, i: int) -> str:
        """A grid's code, or its plan grid id when it has no code yet."""
        return self.grid_code[i] or f"#{self.grid_id[i]}"


def _exact_checks(f: _Frames, flagged: BoolArray, tol: float) -> list[_Issue]:
    """Gaps, overlaps and pieces outside their community, by shapely overlays, for the
    grids of the flagged communities and grids of unknown communities."""
    issues: list[_Issue] = []
    alive = ~shapely.is_missing(f.polys)
    fl = np.flatnonzero(flagged)
    sel = np.flatnonzero(alive & (np.isin(f.grid_comm, fl) | (f.grid_comm < 0)))
    if fl.size == 0 and sel.size == 0:
        return issues
    metric = np.full(len(f.polys), None, dtype=object)
    metric[sel] = f.to_metric(f.polys[sel])
    comm_m = np.full(len(f.comm_geom), None, dtype=object)
    comm_m[fl] = f.to_metric(f.comm_geom[fl])
    # Gaps: community minus the union of its grids.
    known = sel[f.grid_comm[sel] >= 0]
    if fl.size:
        slot = np.searchsorted(fl, f.grid_comm[known])
        order = np.argsort(slot, kind="stable")
        counts = np.bincount(slot, minlength=fl.size)
        width = max(int(counts.max()) if counts.size else 0, 1)
        table = np.full((fl.size, width), None, dtype=object)
        first = np.cumsum(counts) - counts
        ranks = np.arange(known.size) - first[slot[order]]
        table[slot[order], ranks] = metric[known[order]]
        union = shapely.union_all(table, axis=1)
        plan_fl = fl[f.comm_in_plan[fl]]
        gaps = shapely.difference(comm_m[plan_fl], union[f.comm_in_plan[fl]])
        pieces, of = shapely.get_parts(gaps, return_index=True)
        area = shapely.area(pieces)
        for piece, c, a in zip(pieces[area > tol], plan_fl[of[area > tol]], area[area > tol],
                               strict=True):
            code = f.comm_code[c]
            issues.append(_Issue(
                "gap", [], code,
                f"community {code} has a gap of {a:,.1f} m² covered by none of its grids",
                f"社区 {code} 有 {a:,.1f} 平方米的空隙未被其任何网格覆盖", piece, area_m2=a))
    issues += _outside(f, sel, metric, comm_m, tol)
    issues += _overlaps(f, sel, metric, tol)
    return issues


def _outside(f: _Frames, sel: IntArray, metric: ObjArray, comm_m: ObjArray, tol: float,
             ) -> list[_Issue]:
    """Grids with more than `tol` outside their community: outside_community, or
    multiple_communities when a material part lies in each of two or more communities."""
    own = f.grid_comm[sel]
    own_geom = np.array([comm_m[c] if c >= 0 else None for c in own], dtype=object)
    known = own >= 0
    out = np.zeros(sel.size)
    outside_geom = np.array(metric[sel], dtype=object)
    if known.any():
        outside_geom[known] = shapely.difference(metric[sel[known]], own_geom[known])
        out[known] = shapely.area(outside_geom[known])
    out[~known] = shapely.area(metric[sel[~known]])
    stray = np.flatnonzero(out > tol)
    if stray.size == 0:
        return []
    idx = sel[stray]
    tree = shapely.STRtree(f.comm_geom)
    qi, qc = tree.query(f.polys[idx], predicate="intersects")
    inter = shapely.area(shapely.intersection(metric[idx[qi]], f.to_metric(f.comm_geom[qc])))
    issues = []
    for k, i in enumerate(idx):
        mine = qi == k
        places = sorted(((float(a), f.comm_code[c]) for a, c in zip(inter[mine], qc[mine],
                                                                       strict=True) if a > tol),
                        reverse=True)
        name, code = f.label(int(i)), f.grid_comm_code[int(i)]
        out_area = float(out[stray[k]])
        if len(places) >= 2:
            listing = ", ".join(f"{c} ({a:,.1f} m²)" for a, c in places)
            listing_zh = "、".join(f"{c}（{a:,.1f} 平方米）" for a, c in places)
            issues.append(_Issue(
                "multiple_communities", [int(f.grid_id[i])], code,
                f"grid {name} lies in {len(places)} communities: {listing}",
                f"网格 {name} 跨越 {len(places)} 个社区：{listing_zh}", metric[i],
                area_m2=out_area, extra={"communities": [
                    {"code": c, "area_m2": round(a, 3)} for a, c in places]}))
            continue
        where = f" (it lies in community {places[0][1]})" if places and \
            places[0][1] != code else ""
        where_zh = f"（位于社区 {places[0][1]}）" if where else ""
        if f.grid_comm[i] < 0:
            text_en = (f"grid {name} belongs to community {code}, which is not among the "
                       f"plan's communities in force{where}")
            text_zh = f"网格 {name} 所属社区 {code} 不在方案的现行社区中{where_zh}"
        else:
            text_en = (f"grid {name} has {out_area:,.1f} m² outside its community "
                       f"{code}{where}")
            text_zh = f"网格 {name} 有 {out_area:,.1f} 平方米超出所属社区 {code}{where_zh}"
        issues.append(_Issue("outside_community", [int(f.grid_id[i])], code, text_en, text_zh,
                             outside_geom[stray[k]], area_m2=out_area))
    return issues


def _overlaps(f: _Frames, sel: IntArray, metric: ObjArray, tol: float) -> list[_Issue]:
    """Pairs of grids, one of them in `sel`, overlapping by more than `tol`."""
    if sel.size == 0:
        return []
    alive = np.flatnonzero(~shapely.is_missing(f.polys))
    tree = shapely.STRtree(f.polys[alive])
    qi, qj = tree.query(f.polys[sel], predicate="intersects")
    a, b = sel[qi], alive[qj]
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    pairs = np.unique(np.column_stack([a[keep], b[keep]]), axis=0)
    if len(pairs) == 0:
        return []
    need = np.unique(pairs)
    missing = need[shapely.is_missing(metric[need])]
    if missing.size:
        metric[missing] = f.to_metric(f.polys[missing])
    inter = shapely.intersection(metric[pairs[:, 0]], metric[pairs[:, 1]])
    area = shapely.area(inter)
    issues = []
    for (i, j), geom, a2 in zip(pairs[area > tol], inter[area > tol], area[area > tol],
                                strict=True):
        ni, nj = f.label(int(i)), f.label(int(j))
        issues.append(_Issue(
            "overlap", [int(f.grid_id[i]), int(f.grid_id[j])], f.grid_comm_code[int(i)],
            f"grids {ni} and {nj} overlap by {a2:,.1f} m²",
            f"网格 {ni} 与 {nj} 重叠 {a2:,.1f} 平方米", _polygonal(np.array([geom]))[0],
            area_m2=float(a2)))
    return issues


def _polygonal(geoms: ObjArray) -> ObjArray:
    """The polygonal part of each geometry as it is or as a MultiPolygon (None where nothing
    polygonal is left)."""
    out = np.array(geoms, dtype=object)
    present = ~shapely.is_missing(out)
    kind = np.full(len(out), -1)
    kind[present] = shapely.get_type_id(out[present])
    mixed = np.flatnonzero(present & ~np.isin(kind, (3, 6)))
    if mixed.size:
        parts, of = shapely.get_parts(out[mixed], return_index=True)
        parts, inner = shapely.get_parts(parts, return_index=True)
        of = of[inner]
        poly = shapely.get_type_id(parts) == 3
        fixed = np.full(mixed.size, None, dtype=object)
        if poly.any():
            shapely.multipolygons(parts[poly], indices=of[poly], out=fixed)
        out[mixed] = fixed
    present = ~shapely.is_missing(out)
    empty = np.zeros(len(out), dtype=bool)
    empty[present] = shapely.is_empty(out[present])
    out[empty] = None
    return out


# -- inputs -------------------------------------------------------------------------------


def _metric_crs(srid: int) -> pyproj.CRS:
    try:
        crs = pyproj.CRS.from_epsg(int(srid))
    except pyproj.exceptions.CRSError:
        raise InvalidInput(f"EPSG:{srid} is not a known CRS", field="metric_srid") from None
    units = {axis.unit_name for axis in crs.axis_info}
    if not crs.is_projected or not units <= {"metre", "meter"}:
        raise InvalidInput(f"EPSG:{srid} is not a projected CRS in metres", field="metric_srid")
    return crs


def _projector(src: pyproj.CRS, dst: pyproj.CRS) -> Project | None:
    if src.equals(dst):
        return None
    transformer = pyproj.Transformer.from_crs(src, dst, always_xy=True)

    def project(x: FloatArray, y: FloatArray) -> tuple[FloatArray, FloatArray]:
        px, py = transformer.transform(x, y)
        return np.asarray(px, dtype=np.float64), np.asarray(py, dtype=np.float64)

    return project


def _geometry_mapper(project: Project | None) -> Callable[[ObjArray], ObjArray]:
    def convert(geoms: ObjArray) -> ObjArray:
        geoms = np.asarray(geoms, dtype=object)
        if project is None or len(geoms) == 0:
            return geoms
        return np.asarray(shapely.transform(
            geoms, lambda xy: np.column_stack(project(xy[:, 0], xy[:, 1]))), dtype=object)

    return convert


def _frame_crs(frame: gpd.GeoDataFrame | gpd.GeoSeries) -> pyproj.CRS:
    return pyproj.CRS.from_user_input(frame.crs) if frame.crs is not None else \
        pyproj.CRS.from_epsg(4326)


def _geoms_in(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: pyproj.CRS) -> ObjArray:
    """The frame's geometries as an object array in `crs`."""
    series = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    if series.crs is not None and not _frame_crs(series).equals(crs):
        series = series.to_crs(crs)
    return np.asarray(series.array, dtype=object)


def _require(frame: pd.DataFrame, what: str, columns: Sequence[str]) -> None:
    """InvalidInput naming the first missing column of a frame."""
    for name in columns:
        if name not in frame.columns:
            raise InvalidInput(f"the {what} frame has no column {name!r}", field=name)


def _text_column(frame: pd.DataFrame, name: str) -> list[Any]:
    return [None if v is None or (isinstance(v, float) and math.isnan(v)) or v == ""
            else str(v) for v in frame[name].tolist()]


def _frames(grids: gpd.GeoDataFrame, communities: gpd.GeoDataFrame, rules: PlanRules,
            ) -> tuple[_Frames, list[_Issue], pyproj.CRS]:
    """Normalise the grids and communities; report and repair invalid grid geometries."""
    _require(grids, "grids", ("id", "code", "community_code"))
    _require(communities, "communities", ("code",))
    crs = _frame_crs(grids)
    project = _projector(crs, _metric_crs(rules.metric_srid))
    geoms = _geoms_in(grids, crs)
    present = ~shapely.is_missing(geoms)
    present[present] = ~shapely.is_empty(geoms[present])
    geoms = geoms[present]
    grid_id = grids["id"].to_numpy()[present].astype(np.int64)
    codes = [c for c, p in zip(_text_column(grids, "code"), present, strict=True) if p]
    comm_codes = [c or "" for c, p in zip(_text_column(grids, "community_code"), present,
                                          strict=True) if p]
    comm = communities.drop_duplicates(subset="code", keep="first")
    comm_code = [c or "" for c in _text_column(comm, "code")]
    comm_geom = _geoms_in(comm, crs)
    broken = np.flatnonzero(~shapely.is_valid(comm_geom))
    if broken.size:
        comm_geom[broken] = shapely.make_valid(comm_geom[broken])
    comm_geom = _polygonal(comm_geom)
    in_plan = (comm["in_plan"].fillna(True).to_numpy(dtype=bool) if "in_plan" in comm.columns
               else np.ones(len(comm), dtype=bool))
    grid_comm = pd.Index(comm_code).get_indexer(comm_codes).astype(np.int64)
    valid = _threaded(shapely.is_valid, geoms) if len(geoms) else np.zeros(0, dtype=bool)
    issues = []
    polys = np.array(geoms, dtype=object)
    bad = np.flatnonzero(~valid)
    if bad.size:
        reasons = shapely.is_valid_reason(geoms[bad])
        polys[bad] = _polygonal(shapely.make_valid(geoms[bad], method="structure",
                                                   keep_collapsed=False))
        for i, raw in zip(bad, reasons, strict=True):
            name, reason = codes[i] or f"#{grid_id[i]}", describe_geos_reason(raw)
            issues.append(_Issue(
                "invalid_geometry", [int(grid_id[i])], comm_codes[i] or None,
                f"grid {name} has an invalid geometry: {reason}",
                f"网格 {name} 的几何图形无效：{reason}", geoms[i], metric=False))
    kind = shapely.get_type_id(polys[~shapely.is_missing(polys)])
    if not np.isin(kind, (3, 6)).all():
        raise InvalidInput("grid geometries must be polygons or multipolygons", field="geom")
    frames = _Frames(grid_id=grid_id, grid_code=codes, grid_comm_code=comm_codes,
                     grid_comm=grid_comm, polys=polys, comm_code=comm_code,
                     comm_geom=comm_geom, comm_in_plan=in_plan,
                     to_metric=_geometry_mapper(project), project=project,
                     invalid=bad.astype(np.int64))
    return frames, issues, crs


# -- the report ---------------------------------------------------------------------------


def validate_frames(grids: gpd.GeoDataFrame, communities: gpd.GeoDataFrame,
                    buildings: gpd.GeoDataFrame, streets: gpd.GeoSeries,
                    rules: PlanRules, *, timings: dict[str, float] | None = None,
                    ) -> dict[str, Any]:
    """Validate a set of grids against the plan rules and return the report (JSON-ready).

    grids: columns id, code (None for a new grid), community_code, geometry (polygonal);
    communities: code, geometry, optionally in_plan (bool, default True: False marks a
    neighbouring community loaded only to say where a stray grid lies — it is not checked
    for gaps); buildings: id, households, geometry (footprint), optionally point (the
    representative point, e.g. ST_PointOnSurface from PostGIS; computed when absent);
    streets: street lines. Frames are in EPSG:4326 unless their crs says otherwise (the
    metric CRS itself is accepted as is). Report: {ok, errors, warnings, rules, summary,
    grids, issues, split_buildings} (module doc; issue geometries are GeoJSON in EPSG:4326).
    """
    tol = rules.area_tolerance_m2
    clock = _Clock(timings)
    _require(buildings, "buildings", ("id", "households"))
    frames, issues, crs = _frames(grids, communities, rules)
    clock.lap("inputs and geometry validity")
    footprints = _geoms_in(buildings, crs)
    households = buildings["households"].to_numpy(dtype=np.int64) if len(buildings) else \
        np.zeros(0, dtype=np.int64)
    building_id = buildings["id"].to_numpy().astype(np.int64)
    points = (_geoms_in(gpd.GeoSeries(buildings["point"], crs=buildings.crs), crs)
              if "point" in buildings.columns else None)
    alive = ~shapely.is_missing(frames.polys)
    grid_rings = _ring_set(frames.polys)
    # Segments in the frames' CRS for the buildings; the same as the metric ones when the
    # frames are metric.
    grid_r = _measure(grid_rings, frames.project)
    grid_seg = grid_r if frames.project is None else None

    def building_branch() -> _Buildings:
        # Its own copies of the grids and communities: GEOS geometries and their prepared
        # forms are not safe to share between threads.
        started = time.perf_counter()
        grid_in = np.full(len(frames.polys), shapely.Polygon(), dtype=object)
        grid_in[alive] = _copies(frames.polys[alive])
        shapely.prepare(grid_in)
        pts = points if points is not None else _threaded(shapely.point_on_surface, footprints)
        segs = grid_seg if grid_seg is not None else _measure(grid_rings, None)
        result = _assign_buildings(grid_in, segs, _copies(frames.comm_geom),
                                   frames.comm_in_plan, footprints, pts,
                                   rules.split_share_min)
        clock.record("buildings (in parallel)", time.perf_counter() - started)
        return result

    # Two threads: the buildings' branch (with its own copies of the geometries) and the
    # grids' branch below.
    with ThreadPoolExecutor(1) as pool:
        b_future = pool.submit(building_branch)
        comm_r = _measure(_ring_set(frames.comm_geom), frames.project)
        clock.lap("rings and measures")
        n_comm = len(frames.comm_code)
        has_grids = np.bincount(frames.grid_comm[frames.grid_comm >= 0], minlength=n_comm) > 0
        checked = frames.comm_in_plan | has_grids
        cover = _coverage(grid_r, frames.grid_comm, comm_r, n_comm, checked, tol)
        flagged = cover.flagged & checked
        invalid_comm = frames.grid_comm[frames.invalid]
        flagged[invalid_comm[invalid_comm >= 0]] = True
        clock.lap("edge cancellation")
        issues += _exact_checks(frames, flagged, tol)
        clock.lap(f"exact overlays ({int(flagged.sum())} communities)")
        street_m = _line_segments(_geoms_in(streets, crs), frames.project)
        inner_m, following_m = _street_following(cover.inner, cover.inner_weight, street_m,
                                                 rules.street_snap_m)
        clock.lap("street following")
        measures = _grid_measures(frames, grid_r, rules, issues)
        _to_geojson(issues, crs, rules)
        clock.lap("grid issues")
        b = b_future.result()
        clock.lap("waiting for buildings")
    report = _report(frames, measures, b, building_id, households, footprints, issues, rules,
                     inner_m, following_m, crs)
    clock.lap("report")
    return report


class _Clock:
    """Seconds per stage into `timings` (when given)."""

    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.record(stage, now - self.last)
        self.last = now

    def record(self, stage: str, seconds: float) -> None:
        if self.timings is not None:
            self.timings[stage] = round(seconds, 3)


@dataclass
class _GridMeasures:
    area: FloatArray
    polsby_popper: FloatArray
    parts: IntArray
    alive: BoolArray


def _grid_measures(f: _Frames, grid_r: _Rings, rules: PlanRules,
                   issues: list[_Issue]) -> _GridMeasures:
    """Polsby-Popper and parts per grid; not_contiguous and low_compactness issues."""
    n = len(f.grid_id)
    tol = rules.area_tolerance_m2
    area, perimeter = grid_r.area, grid_r.perimeter
    pp = np.where(perimeter > 0, 4 * math.pi * area / np.where(perimeter > 0, perimeter, 1) ** 2,
                  0.0)
    parts = np.bincount(grid_r.part_owner[grid_r.part_area > tol], minlength=n)
    alive = ~shapely.is_missing(f.polys)
    for i in np.flatnonzero(alive & (parts > 1)):
        name = f.label(int(i))
        issues.append(_Issue(
            "not_contiguous", [int(f.grid_id[i])], f.grid_comm_code[i],
            f"grid {name} is not contiguous: {parts[i]} separate parts larger than {tol:g} m²",
            f"网格 {name} 不连续：由 {parts[i]} 个互不相连的部分组成（各大于 {tol:g} 平方米）",
            f.polys[i], metric=False, extra={"parts": int(parts[i])}))
    for i in np.flatnonzero(alive & (pp < rules.compactness_min)):
        name = f.label(int(i))
        issues.append(_Issue(
            "low_compactness", [int(f.grid_id[i])], f.grid_comm_code[i],
            f"grid {name} is not compact: Polsby-Popper {pp[i]:.3f} is below "
            f"{rules.compactness_min:g}",
            f"网格 {name} 形状不紧凑：Polsby-Popper 指数 {pp[i]:.3f}，低于 "
            f"{rules.compactness_min:g}", f.polys[i], metric=False,
            extra={"polsby_popper": round(float(pp[i]), 6)}))
    return _GridMeasures(area, pp, parts, alive)


def _report(f: _Frames, m: _GridMeasures, b: _Buildings, building_id: IntArray,
            households: IntArray, footprints: ObjArray, issues: list[_Issue], rules: PlanRules,
            inner_m: float, following_m: float, crs: pyproj.CRS) -> dict[str, Any]:
    """Households per grid, the building-level issues and the JSON report."""
    n = len(f.grid_id)
    assigned = b.assigned
    has = assigned >= 0
    hh = _sums(assigned[has], households[has], n).astype(np.int64)
    nb = np.bincount(assigned[has], minlength=n)
    in_band = (hh >= rules.households_min) & (hh <= rules.households_max)
    lo, hi = rules.households_min, rules.households_max
    for i in np.flatnonzero(m.alive & ~in_band):
        name = f.label(int(i))
        side, side_zh = ("fewer than", "少于") if hh[i] < lo else ("more than", "多于")
        issues.append(_Issue(
            "households_out_of_band", [int(f.grid_id[i])], f.grid_comm_code[i],
            f"grid {name} holds {hh[i]:,} households, {side} the band {lo}–{hi}",
            f"网格 {name} 有 {hh[i]:,} 户，{side_zh} {lo}–{hi} 户的标准", f.polys[i],
            metric=False, extra={"households": int(hh[i])}))
    for k, c in zip(b.unassigned, b.unassigned_comm, strict=True):
        bid, code = int(building_id[k]), f.comm_code[c]
        issues.append(_Issue(
            "building_unassigned", [], code,
            f"building {bid} ({households[k]} households) lies in no grid of community {code}",
            f"楼栋 {bid}（{households[k]} 户）未划入社区 {code} 的任何网格", footprints[k],
            metric=False, extra={"building_id": bid}))
    for k, grids_of in b.multiple:
        bid = int(building_id[k])
        names = [f.label(g) for g in grids_of]
        issues.append(_Issue(
            "building_multiply_assigned", [int(f.grid_id[g]) for g in grids_of],
            f.grid_comm_code[grids_of[0]],
            f"building {bid} lies in {len(names)} grids at once: {', '.join(names)}",
            f"楼栋 {bid} 同时位于 {len(names)} 个网格：{'、'.join(names)}", footprints[k],
            metric=False, extra={"building_id": bid}))
    split_rows = []
    for k, shares in b.split:
        bid = int(building_id[k])
        listing = ", ".join(f"{s:.1%} in grid {f.label(g)}" for g, s in shares)
        listing_zh = "，".join(f"{s:.1%} 在网格 {f.label(g)}" for g, s in shares)
        first = f.label(shares[0][0])
        issues.append(_Issue(
            "building_split", [int(f.grid_id[g]) for g, _ in shares],
            f.grid_comm_code[shares[0][0]],
            f"building {bid} is split: {listing}; it belongs to grid {first} (largest share)",
            f"楼栋 {bid} 跨网格：{listing_zh}；按最大份额归属网格 {first}", footprints[k],
            metric=False, extra={"building_id": bid}))
        split_rows.append({"building_id": bid, "households": int(households[k]),
                           "assigned_grid_id": int(f.grid_id[shares[0][0]]),
                           "shares": [{"grid_id": int(f.grid_id[g]), "code": f.grid_code[g],
                                       "share": round(s, 6)} for g, s in shares]})
    rank = {rule: k for k, rule in enumerate(ERRORS + WARNINGS)}
    issues.sort(key=lambda x: (rank[x.rule], x.grid_ids, x.community_code or ""))
    _to_geojson(issues, crs, rules)
    issue_rows = []
    for issue in issues:
        row: dict[str, Any] = {"rule": issue.rule, "severity": issue.severity,
                               "grid_ids": issue.grid_ids,
                               "community_code": issue.community_code,
                               "message": issue.message, "message_zh": issue.message_zh}
        if issue.area_m2 is not None:
            row["area_m2"] = round(issue.area_m2, 3)
        row.update(issue.extra)
        row["geometry"] = issue.geojson
        issue_rows.append(row)
    columns = zip(f.grid_id.tolist(), f.grid_code, f.grid_comm_code, hh.tolist(), nb.tolist(),
                  np.round(m.area, 2).tolist(), np.round(m.polsby_popper, 6).tolist(),
                  m.parts.tolist(), in_band.tolist(), strict=True)
    grid_rows = [{"id": i, "code": c, "community_code": cc, "households": h, "buildings": nbi,
                  "area_m2": a, "polsby_popper": p, "parts": pa, "in_band": ib}
                 for i, c, cc, h, nbi, a, p, pa, ib in columns]
    errors = sum(1 for x in issues if x.severity == "error")
    measured = m.alive & (m.area > 0)
    pp = m.polsby_popper
    return {
        "ok": errors == 0, "errors": errors, "warnings": len(issues) - errors,
        "rules": rules.as_json(),
        "summary": {
            "grids": n, "communities": int(np.sum(f.comm_in_plan)),
            "households": int(hh.sum()), "buildings": int(np.sum(b.in_scope)),
            "buildings_unassigned": len(b.unassigned),
            "buildings_multiply_assigned": len(b.multiple),
            "split_buildings": len(b.split), "inner_boundary_m": round(inner_m, 2),
            "street_following_share": round(following_m / inner_m, 6) if inner_m > 0
            else None,
            "mean_polsby_popper": round(float(pp[measured].mean()), 6) if measured.any()
            else None},
        "grids": grid_rows, "issues": issue_rows, "split_buildings": split_rows,
    }


def _to_geojson(issues: Sequence[_Issue], crs: pyproj.CRS, rules: PlanRules) -> None:
    """Set each issue's geometry as GeoJSON in EPSG:4326 (rounded to ~1 cm), once."""
    wgs = pyproj.CRS.from_epsg(4326)
    for metric, source in ((True, _metric_crs(rules.metric_srid)), (False, crs)):
        todo = [x for x in issues if x.metric is metric and not x.converted]
        for x in todo:
            x.converted = True
        todo = [x for x in todo if x.geometry is not None]
        if not todo:
            continue
        geoms = _geometry_mapper(_projector(source, wgs))(
            np.array([x.geometry for x in todo], dtype=object))
        geoms = shapely.transform(geoms, lambda xy: np.round(xy, GEOJSON_DECIMALS))
        docs = json.loads("[" + ",".join(shapely.to_geojson(geoms).tolist()) + "]")
        for x, doc in zip(todo, docs, strict=True):
            x.geojson = doc


# -- a stored plan ------------------------------------------------------------------------

_PLAN = text("SELECT community_codes FROM grid_plans WHERE id = :id")
_PLAN_GRIDS = text("""
    SELECT id, code, community_code, ST_AsBinary(geom) AS wkb
    FROM grid_plan_grids WHERE plan_id = :id AND geom IS NOT NULL ORDER BY id
""")
# The plan's communities in force now, and neighbours a plan grid reaches into (in_plan
# false: they only say where a stray grid lies).
_COMMUNITIES = text("""
    SELECT j.code, true AS in_plan, ST_AsBinary(j.geom) AS wkb
    FROM jurisdictions j
    WHERE j.level = 'community' AND j.code = ANY(:codes)
      AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
    UNION
    SELECT j.code, false, ST_AsBinary(j.geom)
    FROM grid_plan_grids g
    JOIN jurisdictions j ON j.geom && g.geom AND ST_Relate(g.geom, j.geom, 'T********')
    WHERE g.plan_id = :id AND j.level = 'community' AND NOT j.code = ANY(:codes)
      AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
    ORDER BY 1
""")
# Buildings and streets meeting the plan: its communities in force or its grids (driven
# from those few polygons through the GiST indexes).
_BUILDINGS = text("""
    WITH area AS MATERIALIZED (
      SELECT j.geom FROM jurisdictions j
      WHERE j.level = 'community' AND j.code = ANY(:codes)
        AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
      UNION ALL
      SELECT geom FROM grid_plan_grids WHERE plan_id = :id AND geom IS NOT NULL)
    SELECT DISTINCT ON (b.id) b.id, b.households, ST_AsBinary(b.geom) AS wkb,
           ST_AsBinary(ST_PointOnSurface(b.geom)) AS point
    FROM area a JOIN buildings b ON b.geom && a.geom AND ST_Intersects(a.geom, b.geom)
    ORDER BY b.id
""")
_STREETS = text("""
    WITH area AS MATERIALIZED (
      SELECT j.geom FROM jurisdictions j
      WHERE j.level = 'community' AND j.code = ANY(:codes)
        AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
      UNION ALL
      SELECT geom FROM grid_plan_grids WHERE plan_id = :id AND geom IS NOT NULL)
    SELECT DISTINCT ON (s.id) s.id, ST_AsBinary(s.geom) AS wkb
    FROM area a JOIN streets s ON s.geom && a.geom AND ST_Intersects(a.geom, s.geom)
    ORDER BY s.id
""")


def _wkb(values: Sequence[Any]) -> ObjArray:
    return np.asarray(shapely.from_wkb(np.array([bytes(v) for v in values], dtype=object)),
                      dtype=object) if len(values) else np.zeros(0, dtype=object)


@dataclass(frozen=True)
class PlanFrames:
    """What validate_frames checks, as loaded for a stored plan (EPSG:4326)."""

    grids: gpd.GeoDataFrame
    communities: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    streets: gpd.GeoSeries


def load_plan_frames(conn: Connection, plan_id: int) -> PlanFrames:
    """The plan's grids with a geometry, its communities in force now (and neighbouring
    communities its grids reach into, in_plan false), and the buildings (with their
    representative points, ST_PointOnSurface) and streets meeting them. NotFound for an
    unknown plan."""
    codes = conn.scalar(_PLAN, {"id": plan_id})
    if codes is None:
        raise NotFound(f"plan {plan_id} does not exist")
    params = {"id": plan_id, "codes": list(codes)}
    wgs = "EPSG:4326"
    rows = conn.execute(_PLAN_GRIDS, params).all()
    grids = gpd.GeoDataFrame({"id": [r.id for r in rows], "code": [r.code for r in rows],
                              "community_code": [r.community_code for r in rows]},
                             geometry=_wkb([r.wkb for r in rows]), crs=wgs)
    rows = conn.execute(_COMMUNITIES, params).all()
    communities = gpd.GeoDataFrame({"code": [r.code for r in rows],
                                    "in_plan": [bool(r.in_plan) for r in rows]},
                                   geometry=_wkb([r.wkb for r in rows]), crs=wgs)
    rows = conn.execute(_BUILDINGS, params).all()
    buildings = gpd.GeoDataFrame({"id": [r.id for r in rows],
                                  "households": [r.households for r in rows],
                                  "point": _wkb([r.point for r in rows])},
                                 geometry=_wkb([r.wkb for r in rows]), crs=wgs)
    rows = conn.execute(_STREETS, params).all()
    streets = gpd.GeoSeries(_wkb([r.wkb for r in rows]), crs=wgs)
    return PlanFrames(grids, communities, buildings, streets)


def validate_plan(conn: Connection, plan_id: int, rules: PlanRules) -> dict[str, Any]:
    """Validate a stored plan (load_plan_frames, then validate_frames). Read-only: storing
    the report and moving the plan's state is the caller's (gis/plans.py)."""
    frames = load_plan_frames(conn, plan_id)
    return validate_frames(frames.grids, frames.communities, frames.buildings, frames.streets,
                           rules)
