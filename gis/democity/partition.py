"""Partitions of the demo city (METRIC_CRS, metres): Lloyd-relaxed Voronoi cells for 街道,
and building-driven cells for 社区 and 全科网格 whose households, counted by each building's
majority-area cell, meet a target or a band.

How the building-driven partitions work: the Voronoi cells of the buildings' centroids,
clipped to the parent polygon, are cut into connected faces ("atoms") by one noding, so they
tile it exactly. The atoms are split recursively: ordered by distance through the polygon from
one end of its long axis and cut where each side holds the right number of cells' worth of
households. Stray pieces are merged into the neighbour they share the longest border with (so
every cell is one Polygon); then households are counted the way the database counts them
(each building in the cell holding the largest part of its footprint) and single atoms are
moved across cell borders until every count is within bounds.

When that fails for every grid count tried (rare: 1 of 8125 communities of the city scale),
grid_partition falls back, and logs it, to exact splits of spanning trees of the atoms: a
dynamic programme finds chunks of a tree in the band whenever the tree has them (along a path
of atoms holding at most 60 households each, 1020 or more households always split into
300-500), first on the atoms as they are, then on atoms refined by household-free Voronoi
seeds between the buildings. The refinement matters when part of a community hangs on one
building's large Voronoi cell: then every union of atoms holding that cell must hold all that
lies behind it, which can exceed the band while no part behind it reaches the band's bottom.

Protocol for callers: put buildings in streets by majority area (majority_cells), pass each
street's buildings to community_partition and each community's returned ids to
grid_partition. A building whose largest part is at most half its footprint could be counted
by a cell outside the polygon being split; the cells are sized so that their counts hold with
or without such buildings, and a caller that zeroes their households (share <= 0.5 from
majority_cells over the grids; a handful per 10 000) gets band-exact counts everywhere.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

import geopandas as gpd
import numpy as np
import shapely
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import (
    breadth_first_order,
    connected_components,
    depth_first_order,
    dijkstra,
    minimum_spanning_tree,
)
from scipy.spatial import cKDTree
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

logger = logging.getLogger(__name__)

Area: TypeAlias = Polygon | MultiPolygon
Cell: TypeAlias = tuple[Area, np.ndarray]
# Cells connect only through borders at least this long (m), so that no cell is pinched into
# parts joined by a hair; leaf cells (grids) need only a positive length.
_MIN_SHARED_PARENT_M = 1.0
_MIN_SHARED_LEAF_M = 1e-3
# At most about this many household-free seeds refine the atoms of one polygon (fallback).
_MAX_FILLERS = 20_000


# -- small geometry helpers --------------------------------------------------------------


def _polygons_of(area: BaseGeometry) -> list[Polygon]:
    """The polygon parts of a (Multi)Polygon, largest first."""
    parts = [p for p in shapely.get_parts(area) if isinstance(p, Polygon) and not p.is_empty]
    if not parts:
        raise ValueError("area has no polygon part")
    return sorted(parts, key=lambda p: -p.area)


def _single_polygon(area: BaseGeometry, what: str) -> Polygon:
    parts = _polygons_of(area)
    if len(parts) != 1:
        raise ValueError(f"{what} must be a single Polygon, got {len(parts)} parts")
    return parts[0]


def _sample_points(poly: Polygon, k: int, rng: np.random.Generator) -> np.ndarray:
    """k uniform random points inside poly (rejection sampling in its bbox)."""
    out = np.empty((0, 2))
    x0, y0, x1, y1 = poly.bounds
    fill = max(poly.area / max((x1 - x0) * (y1 - y0), 1e-12), 0.01)
    while len(out) < k:
        m = int((k - len(out)) / fill * 1.3) + 16
        xy = np.column_stack([rng.uniform(x0, x1, m), rng.uniform(y0, y1, m)])
        out = np.vstack([out, xy[shapely.contains_xy(poly, xy[:, 0], xy[:, 1])]])
    return out[:k]


def majority_cells(footprints: np.ndarray,
                   cells: Sequence[BaseGeometry]) -> tuple[np.ndarray, np.ndarray]:
    """For each footprint, the index of the cell holding the largest part of it (-1 if none;
    ties go to the lower index) and the share of the footprint in that cell. This is how
    buildings are placed in districts, streets and grids; a share above 0.5 is unambiguous."""
    fp = np.asarray(footprints, dtype=object)
    cl = np.asarray(cells, dtype=object)
    out = np.full(len(fp), -1, dtype=np.int64)
    share = np.zeros(len(fp))
    if len(fp) == 0 or len(cl) == 0:
        return out, share
    b, c = shapely.STRtree(cl).query(fp, predicate="intersects")
    fp_area = shapely.area(fp)
    shapely.prepare(cl)
    area = fp_area[b].copy()
    cut = ~shapely.contains_properly(cl[c], fp[b])  # most footprints lie inside one cell
    area[cut] = shapely.area(shapely.intersection(fp[b[cut]], cl[c[cut]]))
    keep = area > 0
    b, c, area = b[keep], c[keep], area[keep]
    order = np.lexsort((c, -area, b))
    first = order[np.r_[True, b[order][1:] != b[order][:-1]]]
    out[b[first]] = c[first]
    share[b[first]] = area[first] / fp_area[b[first]]
    return out, share


# -- atoms: connected pieces of clipped Voronoi cells ------------------------------------


@dataclass
class _Atoms:
    geoms: np.ndarray  # Polygon faces tiling the region exactly (shared edges are identical)
    seed: np.ndarray  # seed owning each face
    home: np.ndarray  # True for the face that holds its seed
    pairs: np.ndarray  # (p, 2) adjacent faces, i < j
    shared: np.ndarray  # shared border length per pair (m)

    @property
    def n(self) -> int:
        return len(self.geoms)


def _padded_box(region: BaseGeometry) -> Polygon:
    x0, y0, x1, y1 = region.bounds
    pad = max(x1 - x0, y1 - y0) + 10.0
    return shapely.box(x0 - pad, y0 - pad, x1 + pad, y1 + pad)


def _voronoi_cells(region: BaseGeometry, xy: np.ndarray) -> np.ndarray:
    """Voronoi cells of the seeds (in seed order), covering the region."""
    if len(xy) == 1:
        return np.array([_padded_box(region)], dtype=object)
    vor = shapely.voronoi_polygons(shapely.multipoints(xy), extend_to=_padded_box(region),
                                   ordered=True)
    cells = shapely.get_parts(vor)
    if len(cells) != len(xy):
        raise ValueError("Voronoi seeds must be distinct")
    return cells


def _faces(region: BaseGeometry, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Faces of the noded arrangement of the seeds' Voronoi edges and the region's boundary
    that lie in the region, and the seed whose cell holds each. Built from one noding, so
    neighbouring faces share identical edges (an exact coverage)."""
    lines = [shapely.boundary(region)]
    if len(xy) > 1:
        lines.append(shapely.voronoi_polygons(shapely.multipoints(xy),
                                              extend_to=_padded_box(region), only_edges=True))
    noded = shapely.get_parts(shapely.union_all(lines))
    faces = shapely.get_parts(shapely.polygonize(noded))
    rep = shapely.get_coordinates(shapely.point_on_surface(faces))
    inside = shapely.contains_xy(region, rep[:, 0], rep[:, 1])
    faces, rep = faces[inside], rep[inside]
    seed = cKDTree(xy).query(rep)[1]
    return faces, np.asarray(seed, dtype=np.int64)


def _build_atoms(region: BaseGeometry, xy: np.ndarray, min_shared: float) -> _Atoms:
    """The seeds' Voronoi cells within the region, cut into connected faces, with the
    adjacency of faces sharing at least min_shared metres of border."""
    parts, seed = _faces(region, xy)
    inside = shapely.intersects_xy(parts, xy[seed, 0], xy[seed, 1])
    home = _one_home_per_seed(seed, inside, shapely.area(parts), len(xy))
    pairs, shared = _adjacency(parts, min_shared)
    return _Atoms(parts, seed, home, pairs, shared)


def _one_home_per_seed(seed: np.ndarray, inside: np.ndarray, area: np.ndarray,
                       n_seeds: int) -> np.ndarray:
    """The face holding each seed (its largest face when the seed lies on none)."""
    order = np.lexsort((-area, ~inside, seed))
    first = order[np.r_[True, seed[order][1:] != seed[order][:-1]]]
    home = np.zeros(len(seed), dtype=bool)
    home[first] = True
    if len(first) != n_seeds:
        raise ValueError("some Voronoi seed has no cell inside the region")
    return home


def _adjacency(parts: np.ndarray, min_shared: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of faces sharing at least min_shared metres of border, and that length. Faces of
    one noding share identical segments, so shared borders are found by matching segments."""
    rings, face = shapely.get_rings(parts, return_index=True)
    xy, ring = shapely.get_coordinates(rings, return_index=True)
    same = ring[:-1] == ring[1:]
    a, b, f = xy[:-1][same], xy[1:][same], face[ring[:-1][same]]
    swap = (a[:, 0] > b[:, 0]) | ((a[:, 0] == b[:, 0]) & (a[:, 1] > b[:, 1]))
    seg = np.column_stack([np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)])
    order = np.lexsort(seg.T[::-1])
    seg, f = seg[order], f[order]
    twin = np.all(seg[1:] == seg[:-1], axis=1) & (f[1:] != f[:-1])
    i, j = f[:-1][twin], f[1:][twin]
    length = np.hypot(seg[:-1][twin, 2] - seg[:-1][twin, 0], seg[:-1][twin, 3] - seg[:-1][twin, 1])
    ki, kj, shared = _group_sum(np.minimum(i, j), np.maximum(i, j), length)
    keep = shared >= min_shared
    return np.column_stack([ki[keep], kj[keep]]).astype(np.int64), shared[keep]


def _components(atoms: _Atoms, labels: np.ndarray) -> np.ndarray:
    """Connected component of every atom within its own label."""
    p = atoms.pairs
    same = labels[p[:, 0]] == labels[p[:, 1]]
    g = coo_matrix((np.ones(same.sum()), (p[same, 0], p[same, 1])), shape=(atoms.n, atoms.n))
    return connected_components(g, directed=False)[1]


def _connect(atoms: _Atoms, labels: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Merge stray pieces of each label into the neighbouring label they share the longest
    border with, until every label is one connected set of atoms. The main piece of a label
    is its heaviest component (then largest). Pieces cut off from every main piece (the
    region itself pinched apart) join the nearest label and stay where they are."""
    labels = labels.copy()
    area = shapely.area(atoms.geoms)
    frozen = np.zeros(atoms.n, dtype=bool)
    for _ in range(atoms.n + 1):
        comp = _components(atoms, labels)
        stray = _stray_atoms(comp, labels, weight, area, frozen)
        if not stray.any():
            return labels
        if not _absorb_strays(atoms, labels, comp, stray):
            _attach_orphans(atoms, labels, stray, frozen)
    raise RuntimeError("could not make partition cells connected")


def _stray_atoms(comp: np.ndarray, labels: np.ndarray, weight: np.ndarray,
                 area: np.ndarray, frozen: np.ndarray) -> np.ndarray:
    """Atoms outside the main component of their label."""
    ncomp = comp.max() + 1
    cold = np.bincount(comp, weights=frozen, minlength=ncomp) > 0
    cw = np.where(cold, -1.0, np.bincount(comp, weights=weight, minlength=ncomp))
    ca = np.where(cold, -1.0, np.bincount(comp, weights=area, minlength=ncomp))
    clab = np.zeros(ncomp, dtype=np.int64)
    clab[comp] = labels
    order = np.lexsort((-np.arange(ncomp), ca, cw, clab))
    last = order[np.r_[clab[order][1:] != clab[order][:-1], True]]
    main = cold.copy()
    main[last] = True
    return ~main[comp]


def _absorb_strays(atoms: _Atoms, labels: np.ndarray, comp: np.ndarray,
                   stray: np.ndarray) -> bool:
    """Relabel stray components touching a settled atom of another label (in place)."""
    a, b = atoms.pairs[:, 0], atoms.pairs[:, 1]
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    length = np.concatenate([atoms.shared, atoms.shared])
    m = stray[src] & ~stray[dst]
    if not m.any():
        return False
    c, lab, length = comp[src[m]], labels[dst[m]], length[m]
    key_c, key_l, total = _group_sum(c, lab, length)
    order = np.lexsort((key_l, -total, key_c))
    first = order[np.r_[True, key_c[order][1:] != key_c[order][:-1]]]
    new = np.full(comp.max() + 1, -1, dtype=np.int64)
    new[key_c[first]] = key_l[first]
    moved = stray & (new[comp] >= 0)
    labels[moved] = new[comp[moved]]
    return True


def _attach_orphans(atoms: _Atoms, labels: np.ndarray, stray: np.ndarray,
                    frozen: np.ndarray) -> None:
    """Stray atoms with no settled neighbour join the label of the nearest settled atom
    (in place) and are not moved again."""
    idx = np.flatnonzero(stray)
    settled = np.flatnonzero(~stray)
    q, t = shapely.STRtree(atoms.geoms[settled]).query_nearest(atoms.geoms[idx],
                                                               all_matches=False)
    labels[idx[q]] = labels[settled[t]]
    frozen[idx] = True


def _group_sum(a: np.ndarray, b: np.ndarray,
               w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sum w over distinct (a, b) pairs."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    base = int(b.max()) + 1 if len(b) else 1
    uk, inv = np.unique(a * base + b, return_inverse=True)
    return uk // base, uk % base, np.bincount(inv.ravel(), weights=w, minlength=len(uk))


def _assemble(atoms: _Atoms, labels: np.ndarray, k: int) -> list[Area]:
    """One polygon per label: the union of its atoms."""
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(k + 1))
    out: list[Area] = []
    for lab in range(k):
        group = atoms.geoms[order[starts[lab]:starts[lab + 1]]]
        if len(group) == 0:
            raise RuntimeError(f"partition cell {lab} is empty")
        geom = group[0] if len(group) == 1 else shapely.coverage_union_all(group)
        out.append(_as_area(geom))
    return out


def _as_area(geom: BaseGeometry) -> Area:
    """A Polygon, or a MultiPolygon where the region itself is pinched apart."""
    if isinstance(geom, Polygon | MultiPolygon):
        return geom
    parts = _polygons_of(geom)
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


# -- 街道: Lloyd-relaxed Voronoi ----------------------------------------------------------


def voronoi_partition(area: BaseGeometry, n: int, rng: np.random.Generator, *,
                      pinned: np.ndarray | None = None, iterations: int = 6) -> list[Area]:
    """Split a (Multi)Polygon into n single-Polygon cells that tile it exactly, from
    Lloyd-relaxed Voronoi seeds. `pinned` (m x 2) seeds stay put and own cells 0..m-1."""
    parts = _polygons_of(area)
    fixed = np.empty((0, 2)) if pinned is None else np.asarray(pinned, dtype=float).reshape(-1, 2)
    if n < max(1, len(fixed)):
        raise ValueError(f"n={n} cells cannot hold {len(fixed)} pinned seeds")
    fixed_part = _part_of(parts, fixed)
    per_part = _allocate_seeds(parts, n, fixed_part)
    free = [_sample_points(p, c, rng) for p, c in zip(parts, per_part, strict=True)]
    xy = np.vstack([fixed, *free])
    part_of = np.concatenate([fixed_part, np.repeat(np.arange(len(parts)), per_part)])
    part_geoms = np.array(parts, dtype=object)
    for _ in range(iterations):
        xy[len(fixed):] = _lloyd_step(area, xy, part_geoms[part_of])[len(fixed):]
    atoms = _build_atoms(area, xy, _MIN_SHARED_PARENT_M)
    labels = _connect(atoms, atoms.seed.astype(np.int64), atoms.home.astype(float))
    return _assemble(atoms, labels, n)


def _part_of(parts: list[Polygon], xy: np.ndarray) -> np.ndarray:
    """Index of the part holding each point (the nearest part if none does)."""
    if len(xy) == 0:
        return np.zeros(0, dtype=np.int64)
    dist = shapely.distance(np.array(parts, dtype=object)[None, :], shapely.points(xy)[:, None])
    return np.argmin(dist, axis=1).astype(np.int64)


def _allocate_seeds(parts: list[Polygon], n: int, fixed_part: np.ndarray) -> np.ndarray:
    """Free seeds per part: every part gets a cell, the rest in proportion to area."""
    have = np.bincount(fixed_part, minlength=len(parts)).astype(np.int64)
    alloc = np.where(have == 0, 1, 0).astype(np.int64)
    free = n - len(fixed_part) - int(alloc.sum())
    if free < 0:
        raise ValueError(f"area has {len(parts)} separate parts; {n} cells cannot cover them")
    ideal = n * np.array([p.area for p in parts]) / sum(p.area for p in parts)
    for _ in range(free):
        alloc[int(np.argmax(ideal - have - alloc))] += 1
    return alloc


def _lloyd_step(area: BaseGeometry, xy: np.ndarray, own_part: np.ndarray) -> np.ndarray:
    """Move every seed to the centroid of its Voronoi cell within its own part."""
    cells = shapely.intersection(_voronoi_cells(area, xy), own_part)
    cent = shapely.centroid(cells)
    ok = ~shapely.is_empty(cells) & shapely.contains(own_part, cent)
    cent = np.where(ok, cent, shapely.point_on_surface(cells))
    out = xy.copy()
    has = ~shapely.is_empty(cent)
    out[has] = shapely.get_coordinates(cent[has])
    return out


# -- building-driven partitions (社区, 全科网格) --------------------------------------------


class _Layout:
    """Atoms of one polygon built from its buildings, with the footprint overlaps used to count
    households by majority area."""

    def __init__(self, region: Polygon, buildings: gpd.GeoDataFrame, min_shared: float, *,
                 fillers: float = 0.0) -> None:
        if len(buildings) == 0:
            raise ValueError("no buildings to partition")
        self.region = region
        self.ids = buildings["building_id"].to_numpy(dtype=np.int64)
        self.hh = buildings["households"].to_numpy(dtype=np.int64)
        fp = np.asarray(buildings.geometry.values, dtype=object)
        self.fp_area = shapely.area(fp)
        seeds = _seed_points(region, fp)
        xy = np.round(seeds, 3)
        if fillers:
            xy = np.vstack([xy, np.round(_filler_points(region, fp, xy, fillers), 3)])
        uniq, seed_of = np.unique(xy, axis=0, return_inverse=True)
        self.seed_of = seed_of.ravel()[:len(fp)]
        self.seed_xy = uniq
        self.atoms = _build_atoms(region, uniq, min_shared)
        self.ov_b, self.ov_a, self.ov_area = _overlaps(fp, self.atoms.geoms)
        if len(np.unique(self.ov_b)) != len(fp):
            raise ValueError("some building footprint lies outside the polygon")
        home_hh = np.bincount(self.seed_of, weights=self.hh, minlength=len(uniq))
        self.weight = np.where(self.atoms.home, home_hh[self.atoms.seed], 0.0)
        by_b = np.argsort(self.ov_b, kind="stable")
        self._b_start = np.searchsorted(self.ov_b[by_b], np.arange(len(fp) + 1))
        self._b_pieces = list(zip(self.ov_a[by_b].tolist(), self.ov_area[by_b].tolist(),
                                  strict=True))
        by_a = np.argsort(self.ov_a, kind="stable")
        self._a_start = np.searchsorted(self.ov_a[by_a], np.arange(self.atoms.n + 1))
        self._a_buildings = self.ov_b[by_a].tolist()

    def pieces_of(self, building: int) -> list[tuple[int, float]]:
        """(atom, overlap area) of every atom the building's footprint overlaps."""
        return self._b_pieces[self._b_start[building]:self._b_start[building + 1]]

    def buildings_on(self, atom: int) -> list[int]:
        """Buildings whose footprint overlaps the atom."""
        return self._a_buildings[self._a_start[atom]:self._a_start[atom + 1]]

    @property
    def total(self) -> int:
        return int(self.hh.sum())

    def majority(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Label of the cell holding the largest part of each building, and that part's
        area."""
        lab = labels[self.ov_a]
        kb, kl, total = _group_sum(self.ov_b, lab, self.ov_area)
        order = np.lexsort((kl, -total, kb))
        first = order[np.r_[True, kb[order][1:] != kb[order][:-1]]]
        out = np.full(len(self.hh), -1, dtype=np.int64)
        area = np.zeros(len(self.hh))
        out[kb[first]] = kl[first]
        area[kb[first]] = total[first]
        return out, area


def _seed_points(region: Polygon, fp: np.ndarray) -> np.ndarray:
    """Footprint centroids, or a point of the footprint inside the region if the centroid
    is not."""
    cent = shapely.centroid(fp)
    xy = shapely.get_coordinates(cent)
    out = ~shapely.contains_xy(region, xy[:, 0], xy[:, 1])
    if out.any():
        inner = shapely.intersection(fp[out], region)
        if shapely.is_empty(inner).any():
            raise ValueError("some building footprint lies outside the polygon")
        xy[out] = shapely.get_coordinates(shapely.point_on_surface(inner))
    return xy


def _filler_points(region: Polygon, fp: np.ndarray, seeds: np.ndarray,
                   per_building: float) -> np.ndarray:
    """Extra Voronoi seeds without households: a square lattice over the region (about
    `per_building` points per building) away from the buildings. They cut the space between
    buildings into small atoms, so that cells can pass beside a building whose Voronoi cell
    used to be the only way through."""
    x0, y0, x1, y1 = region.bounds
    step = max(math.sqrt(region.area / min(per_building * len(seeds), _MAX_FILLERS)), 2.0)
    gx, gy = np.meshgrid(np.arange(x0 + step / 2, x1, step), np.arange(y0 + step / 2, y1, step))
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    # jittered (reproducibly), so that no four seeds are cocircular: degenerate Voronoi
    # vertices leave zero-area faces
    xy += np.random.default_rng(0).uniform(-0.2 * step, 0.2 * step, xy.shape)
    xy = xy[shapely.contains_xy(region, xy[:, 0], xy[:, 1])]
    if len(xy) == 0:
        return xy
    xy = xy[cKDTree(seeds).query(xy)[0] > step / 2]
    hit = shapely.STRtree(fp).query(shapely.points(xy), predicate="intersects")[0]
    return np.delete(xy, np.unique(hit), axis=0)


def _overlaps(fp: np.ndarray,
              atoms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(building, atom, overlap area) for every footprint/atom pair that overlaps."""
    b, a = shapely.STRtree(atoms).query(fp, predicate="intersects")
    area = shapely.area(shapely.intersection(fp[b], atoms[a]))
    keep = area > 0
    return b[keep], a[keep], area[keep]


@dataclass(frozen=True)
class _Bounds:
    lo: float
    hi: float
    target: float

    def miss(self, low: float, high: float) -> float:
        """How far a cell with `low` sure and `high` possible households is out of bounds."""
        return max(self.lo - low, 0.0) + max(high - self.hi, 0.0)

    def score(self, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
        """(total miss, spread of the possible counts around the target) of all cells."""
        miss = np.maximum(self.lo - low, 0).sum() + np.maximum(high - self.hi, 0).sum()
        return round(float(miss), 6), float(((high - self.target) ** 2).sum())


def _partition(layout: _Layout, initial: np.ndarray, k: int, bounds: _Bounds, *,
               branches: bool = False) -> list[Cell] | None:
    """Cells from chunks of atoms, connected and repaired; None if the repair fails."""
    atoms = layout.atoms
    labels = _repair(layout, _connect(atoms, initial, layout.weight), k, bounds,
                     branches=branches)
    if labels is None:
        return None
    polys = _assemble(atoms, labels, k)
    maj = layout.majority(labels)[0]
    return [(polys[lab], layout.ids[maj == lab]) for lab in range(k)]


def _repair(layout: _Layout, labels: np.ndarray, k: int, bounds: _Bounds, *,
            branches: bool = False) -> np.ndarray | None:
    """Move single atoms across cell borders until every count is within bounds. With
    `branches`, when no single atom can move (every improving move would cut its cell apart),
    move an atom together with the pieces of its cell that hang on it (a branch)."""
    state = _Counts(layout, labels, k, bounds)
    for _ in range(8 * k + 64):
        if state.violation == 0:
            return state.labels
        ranked = []
        candidates = _candidate_moves(layout.atoms, state.labels, state, bounds)
        for atom, dst in candidates:
            delta = state.effect(atom, dst)
            score = state.score_after(delta)
            if score < (state.violation, state.spread):
                ranked.append((score, atom, dst))
        ranked.sort()
        for _score, atom, dst in ranked:
            if _stays_connected(layout.atoms, state.labels, atom):
                state.apply(atom, dst)
                break
        else:
            if not (branches and _move_best_branch(layout.atoms, state, candidates)):
                return None
    return state.labels if state.violation == 0 else None


def _move_best_branch(atoms: _Atoms, state: _Counts,
                      candidates: list[tuple[int, int]]) -> bool:
    """Apply the best improving branch move: a border atom plus every piece its cell falls
    into without it but one (the piece that stays). The moved atoms are connected through
    the border atom, which touches the destination, so both cells stay connected."""
    ranked = []
    for atom, dst in candidates:
        for moved in _branches(atoms, state.labels, atom):
            score = state.score_after(state.effect(moved, dst))
            if score < (state.violation, state.spread):
                ranked.append((score, len(moved), moved, dst))
    if not ranked:
        return False
    ranked.sort(key=lambda r: r[:2])
    _score, _n, moved, dst = ranked[0]
    state.apply(moved, dst)
    return True


def _branches(atoms: _Atoms, labels: np.ndarray, atom: int) -> list[tuple[int, ...]]:
    """The atom with all pieces of its cell but one, for each piece that could stay, when
    removing the atom cuts its cell into pieces."""
    members = np.flatnonzero(labels == labels[atom])
    rest = members[members != atom]
    if len(rest) < 2:
        return []
    pos = np.full(atoms.n, -1, dtype=np.int64)
    pos[rest] = np.arange(len(rest))
    p = atoms.pairs
    m = (pos[p[:, 0]] >= 0) & (pos[p[:, 1]] >= 0)
    g = coo_matrix((np.ones(m.sum()), (pos[p[m, 0]], pos[p[m, 1]])), shape=(len(rest),) * 2)
    ncomp, comp = connected_components(g, directed=False)
    if ncomp == 1:
        return []
    return [(atom, *rest[comp != stay].tolist()) for stay in range(ncomp)]


class _Counts:
    """Households per cell, updated move by move (moving one atom changes only the buildings
    that overlap it). A building belongs to the cell holding the largest part of its
    footprint; it is *sure* when that part is more than half of the whole footprint (then no
    cell anywhere can hold more), else *unsure* (a cell outside the polygon might win). Cells
    must hold at least lo sure households and at most hi households, sure or not."""

    def __init__(self, layout: _Layout, labels: np.ndarray, k: int, bounds: _Bounds) -> None:
        self.layout = layout
        self.bounds = bounds
        self.labels = labels.copy()
        self.best, best_area = layout.majority(self.labels)
        self.sure = best_area > 0.5 * layout.fp_area
        self.low = np.bincount(self.best, weights=layout.hh * self.sure, minlength=k)
        self.high = np.bincount(self.best, weights=layout.hh, minlength=k)
        self.violation, self.spread = bounds.score(self.low, self.high)

    def _winner(self, building: int, moved: tuple[int, ...], dst: int) -> tuple[int, bool]:
        """The building's label and sureness if the `moved` atoms took label dst (ties: lower
        label)."""
        sums: dict[int, float] = {}
        for a, area in self.layout.pieces_of(building):
            lab = dst if a in moved else int(self.labels[a])
            sums[lab] = sums.get(lab, 0.0) + area
        lab = max(sums, key=lambda s: (sums[s], -s))
        return lab, sums[lab] > 0.5 * self.layout.fp_area[building]

    def effect(self, atom: int | tuple[int, ...],
               dst: int) -> dict[int, tuple[int, bool, int, bool]]:
        """Buildings whose label or sureness changes if the atom (or atoms) took label dst:
        building -> (old, sure, new, sure)."""
        if isinstance(atom, int):
            moved: tuple[int, ...] = (atom,)
            touched = self.layout.buildings_on(atom)
        else:
            moved = atom
            touched = list(dict.fromkeys(b for a in moved for b in self.layout.buildings_on(a)))
        out = {}
        for b in touched:
            new, new_sure = self._winner(b, moved, dst)
            old, old_sure = int(self.best[b]), bool(self.sure[b])
            if (new, new_sure) != (old, old_sure):
                out[b] = (old, old_sure, new, new_sure)
        return out

    def _deltas(self, change: dict[int, tuple[int, bool, int, bool]]
                ) -> dict[int, list[float]]:
        """Change of (sure, all) households per label."""
        d: dict[int, list[float]] = {}
        for b, (old, old_sure, new, new_sure) in change.items():
            h = float(self.layout.hh[b])
            for lab, sign, sure in ((old, -1.0, old_sure), (new, 1.0, new_sure)):
                dl = d.setdefault(lab, [0.0, 0.0])
                dl[0] += sign * h * sure
                dl[1] += sign * h
        return d

    def score_after(self, change: dict[int, tuple[int, bool, int, bool]]
                    ) -> tuple[float, float]:
        viol, spread = self.violation, self.spread
        b = self.bounds
        for lab, (d_low, d_high) in self._deltas(change).items():
            low, high = float(self.low[lab]), float(self.high[lab])
            viol += b.miss(low + d_low, high + d_high) - b.miss(low, high)
            spread += (high + d_high - b.target) ** 2 - (high - b.target) ** 2
        return (round(viol, 6), spread)

    def apply(self, atom: int | tuple[int, ...], dst: int) -> None:
        change = self.effect(atom, dst)
        self.labels[list((atom,) if isinstance(atom, int) else atom)] = dst
        for b, (_old, _old_sure, new, new_sure) in change.items():
            self.best[b], self.sure[b] = new, new_sure
        for lab, (d_low, d_high) in self._deltas(change).items():
            self.low[lab] += d_low
            self.high[lab] += d_high
        self.violation, self.spread = self.bounds.score(self.low, self.high)


def _candidate_moves(atoms: _Atoms, labels: np.ndarray, state: _Counts,
                     bounds: _Bounds) -> list[tuple[int, int]]:
    """(atom, new label) moves across borders of cells whose count is out of bounds."""
    a, b = atoms.pairs[:, 0], atoms.pairs[:, 1]
    src = np.concatenate([a, b])
    dst = np.concatenate([b, a])
    ls, ld = labels[src], labels[dst]
    border = ls != ld
    high = state.high > bounds.hi
    low = state.low < bounds.lo
    # an atom of a too-full cell goes to a neighbour; a too-empty cell takes a neighbour's atom
    give = border & high[ls]
    take = border & low[ld]
    moves = np.concatenate([
        np.column_stack([src[give], ld[give]]),
        np.column_stack([src[take], ld[take]]),
    ])
    if len(moves) == 0:
        return []
    moves = np.unique(moves, axis=0)
    return [(int(x), int(y)) for x, y in moves]


def _stays_connected(atoms: _Atoms, labels: np.ndarray, atom: int) -> bool:
    """Whether the atom's cell stays non-empty and connected without it."""
    lab = labels[atom]
    members = np.flatnonzero(labels == lab)
    rest = members[members != atom]
    if len(rest) == 0:
        return False
    if len(rest) == 1:
        return True
    pos = np.full(atoms.n, -1, dtype=np.int64)
    pos[rest] = np.arange(len(rest))
    p = atoms.pairs
    m = (pos[p[:, 0]] >= 0) & (pos[p[:, 1]] >= 0)
    g = coo_matrix((np.ones(m.sum()), (pos[p[m, 0]], pos[p[m, 1]])), shape=(len(rest),) * 2)
    return bool(connected_components(g, directed=False)[0] == 1)


# -- chunking households by recursive bisection of the atom graph ------------------------


def _bisect(atoms: _Atoms, weight: np.ndarray, k: int, lo: float, hi: float,
            turn: float) -> np.ndarray | None:
    """Chunk (0..k-1) of every atom: order the atoms by distance through the region from one
    end of their long axis (turned by `turn`), cut where the near part holds k1 chunks' worth
    of weight and the far part k-k1, and recurse; every chunk's weight lands in [lo, hi].
    Near parts are connected; cuts that also leave the far part connected are preferred.
    None if no cut fits."""
    xy = shapely.get_coordinates(shapely.point_on_surface(atoms.geoms))
    p = atoms.pairs
    dist = np.hypot(*(xy[p[:, 0]] - xy[p[:, 1]]).T) + 1e-9
    graph = csr_matrix((np.r_[dist, dist], (np.r_[p[:, 0], p[:, 1]], np.r_[p[:, 1], p[:, 0]])),
                       shape=(atoms.n, atoms.n))
    chunk = np.zeros(atoms.n, dtype=np.int64)
    stack = [(np.arange(atoms.n), k, 0)]
    while stack:
        idx, kk, first = stack.pop()
        if kk == 1:
            chunk[idx] = first
            continue
        k1 = kk // 2
        halves = _halve(graph[idx][:, idx], xy[idx], weight[idx], (k1, kk - k1), lo, hi, turn)
        if halves is None:
            return None
        near, far = halves
        stack += [(idx[near], k1, first), (idx[far], kk - k1, first + k1)]
    return chunk


def _halve(graph: csr_matrix, xy: np.ndarray, weight: np.ndarray, ks: tuple[int, int],
           lo: float, hi: float, turn: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Split a group of atoms into a near and a far part for ks[0] and ks[1] chunks,
    preferring a far part that is connected."""
    fallback = None
    for t in (turn, turn + math.pi, turn + math.pi / 2, turn - math.pi / 2):
        order = np.argsort(_sweep(graph, xy, t), kind="stable")
        ok = _feasible_cuts(weight[order], ks[0], ks[1], lo, hi)
        if not ok.any():
            continue
        cut = _best_cut(weight[order], ks, ok)
        far = order[cut:]
        if connected_components(graph[far][:, far], directed=False)[0] == 1:
            return order[:cut], far
        whole = ok & (_suffix_components(graph, order)[1:-1] == 1)
        if whole.any():
            cut = _best_cut(weight[order], ks, whole)
            return order[:cut], order[cut:]
        fallback = fallback or (order[:cut], far)
    return fallback


def _suffix_components(graph: csr_matrix, order: np.ndarray) -> np.ndarray:
    """Number of connected components of order[c:] for every c (0..n), by adding atoms in
    reverse order to a union-find."""
    n = len(order)
    parent = list(range(n))
    added = [False] * n
    indptr, indices = graph.indptr.tolist(), graph.indices.tolist()

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    out = [0] * (n + 1)
    comps = 0
    for c in range(n - 1, -1, -1):
        a = int(order[c])
        added[a] = True
        comps += 1
        for b in indices[indptr[a]:indptr[a + 1]]:
            if added[b]:
                ra, rb = find(a), find(b)
                if ra != rb:
                    parent[ra] = rb
                    comps -= 1
        out[c] = comps
    return np.array(out, dtype=np.int64)


def _sweep(graph: csr_matrix, xy: np.ndarray, turn: float) -> np.ndarray:
    """Distance through the graph from the atom at one end of the long axis (atoms the graph
    cannot reach come last, in axis order)."""
    along = _along_long_axis(xy, turn)
    d = dijkstra(graph, indices=int(np.argmin(along)))
    far = ~np.isfinite(d)
    if far.any():
        top = d[~far].max() if (~far).any() else 0.0
        d[far] = top + 1.0 + along[far] - along.min()
    return d


def _along_long_axis(xy: np.ndarray, turn: float) -> np.ndarray:
    """Position of points along their principal axis (turned by `turn`)."""
    c = xy - xy.mean(axis=0)
    if len(c) < 2:
        return c[:, 0]
    vecs = np.linalg.eigh(c.T @ c)[1]
    ax = vecs[:, -1]
    cos, sin = math.cos(turn), math.sin(turn)
    return np.asarray(c @ np.array([ax[0] * cos - ax[1] * sin, ax[0] * sin + ax[1] * cos]))


def _feasible_cuts(w: np.ndarray, k1: int, k2: int, lo: float, hi: float) -> np.ndarray:
    """For every cut position 1..n-1: whether the left part can hold k1 chunks of weight in
    [lo, hi] and the right part k2."""
    left = np.cumsum(w)[:-1]
    right = float(w.sum()) - left
    return np.asarray((left >= k1 * lo) & (left <= k1 * hi)
                      & (right >= k2 * lo) & (right <= k2 * hi))


def _best_cut(w: np.ndarray, ks: tuple[int, int], allowed: np.ndarray) -> int:
    """The allowed cut closest to the ks[0]:ks[1] ratio (middle of ties)."""
    left = np.cumsum(w)[:-1]
    want = float(w.sum()) * ks[0] / (ks[0] + ks[1])
    diff = np.where(allowed, np.abs(left - want), np.inf)
    best = np.flatnonzero(diff == diff.min())
    return int(best[len(best) // 2]) + 1


# -- fallback: households split exactly along a spanning tree of the atoms ----------------


def _tree_chunks(parent: np.ndarray, order: np.ndarray, weight: np.ndarray, lo: int,
                 hi: int) -> np.ndarray | None:
    """Chunks of a tree of atoms (parent[root] < 0; `order` lists parents before children),
    each a subtree cut off by removing tree edges, whose weights (integers) all lie in
    [lo, hi]; None if the tree has no such split. Exact dynamic programming: for every atom,
    the set of weights the open chunk holding it can have (a bitset), given that every closed
    chunk below it is within bounds; the chunk weights are chosen near the middle of the band
    when the tree allows."""
    n = len(order)
    full = (1 << (hi + 1)) - 1
    band = full >> lo << lo
    w = [int(x) for x in weight]
    children: list[list[int]] = [[] for _ in range(n)]
    for v in order[1:].tolist():
        children[int(parent[v])].append(v)
    states = [0] * n
    prefix: list[list[int]] = [[] for _ in range(n)]
    for v in order[::-1].tolist():
        s = 1 << w[v] if 0 <= w[v] <= hi else 0
        steps = [s]
        for c in children[v]:
            sc = states[c]
            new = s if sc & band else 0  # close the child's chunk, or merge it into this one
            a, b = (s, sc) if s.bit_count() >= sc.bit_count() else (sc, s)
            for x in _bits(b):
                new |= a << x
            s = new & full
            steps.append(s)
        if s == 0:
            return None
        states[v], prefix[v] = s, steps
    root = int(order[0])
    if not states[root] & band:
        return None
    mid = (lo + hi) // 2
    chunk = np.full(n, -1, dtype=np.int64)
    count = 1
    stack = [(root, _nearest_bit(states[root] & band, mid), 0)]
    while stack:
        v, r, lab = stack.pop()
        chunk[v] = lab
        for i in range(len(children[v]) - 1, -1, -1):
            c, sc, before = children[v][i], states[children[v][i]], prefix[v][i]
            if sc & band and (before >> r) & 1:
                stack.append((c, _nearest_bit(sc & band, mid), count))
                count += 1
                continue
            x = max(x for x in _bits(sc) if x <= r and (before >> (r - x)) & 1)
            stack.append((c, x, lab))
            r -= x
    return chunk


def _bits(s: int) -> list[int]:
    """Positions of the set bits of s."""
    out = []
    while s:
        low = s & -s
        out.append(low.bit_length() - 1)
        s ^= low
    return out


def _nearest_bit(s: int, target: int) -> int:
    """The set bit of s nearest target (the lower one on ties)."""
    return min(_bits(s), key=lambda x: (abs(x - target), x))


def _spanning_trees(atoms: _Atoms, xy: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Spanning trees of the atom graph as (parent, order), made as they are asked for:
    wall-following depth-first trees from the ends of the long axes (long, path-like trees
    that sweep the region), plain depth-first trees and the tree of the longest shared
    borders. Atoms the graph does not reach (degenerate slivers, a region pinched apart) are
    linked to the nearest atom that it does."""
    n = atoms.n
    p = _linked_pairs(atoms)
    sym = (np.r_[p[:, 0], p[:, 1]], np.r_[p[:, 1], p[:, 0]])
    graph = csr_matrix((np.ones(2 * len(p)), sym), shape=(n, n))
    roots = list(dict.fromkeys(int(np.argmin(_along_long_axis(xy, t))) for t in _TURNS))
    for root in roots:
        for hand in (1.0, -1.0):
            yield _wall_following_tree(graph, xy, root, hand)
    for root in roots[:2]:
        order, parent = depth_first_order(graph, root, directed=False,
                                          return_predecessors=True)
        yield np.asarray(parent), np.asarray(order)
    shared = np.r_[atoms.shared, np.full(len(p) - len(atoms.pairs), 1e-3)]
    cost = np.r_[1.0 / (shared + 1e-3), 1.0 / (shared + 1e-3)]
    mst = minimum_spanning_tree(csr_matrix((cost, sym), shape=(n, n)))
    for root in roots[:2]:
        order, parent = breadth_first_order(mst, root, directed=False, return_predecessors=True)
        yield np.asarray(parent), np.asarray(order)


def _linked_pairs(atoms: _Atoms) -> np.ndarray:
    """The adjacent pairs of atoms, plus links from every component of the adjacency graph
    but the largest to the nearest atom outside it, until the graph is connected."""
    pairs = atoms.pairs
    for _ in range(atoms.n):
        g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])),
                       shape=(atoms.n, atoms.n))
        ncomp, comp = connected_components(g, directed=False)
        if ncomp == 1:
            break
        main = int(np.argmax(np.bincount(comp)))
        links = []
        for c in range(ncomp):
            if c == main:
                continue
            inside, outside = np.flatnonzero(comp == c), np.flatnonzero(comp != c)
            q, t = shapely.STRtree(atoms.geoms[outside]).query_nearest(
                atoms.geoms[inside], all_matches=False)
            d = shapely.distance(atoms.geoms[inside[q]], atoms.geoms[outside[t]])
            best = int(np.argmin(d))
            links.append((int(inside[q[best]]), int(outside[t[best]])))
        pairs = np.vstack([pairs, np.sort(np.array(links, dtype=np.int64), axis=1)])
    return pairs


def _wall_following_tree(graph: csr_matrix, xy: np.ndarray, root: int,
                         hand: float) -> tuple[np.ndarray, np.ndarray]:
    """A depth-first tree that always steps to the unvisited neighbour turning furthest to
    one hand (+1 counter-clockwise, -1 clockwise) from the way back, so that it sweeps the
    region like a spiral with few dead ends: (parent, order)."""
    n = graph.shape[0]
    indptr, indices = graph.indptr, graph.indices
    parent = np.full(n, -9999, dtype=np.int64)
    seen = np.zeros(n, dtype=bool)
    seen[root] = True
    order = [root]
    back = {root: math.atan2(-1.0, 0.0)}
    stack = [root]
    while stack:
        v = stack[-1]
        nb = indices[indptr[v]:indptr[v + 1]]
        nb = nb[~seen[nb]]
        if len(nb) == 0:
            stack.pop()
            continue
        ang = np.arctan2(xy[nb, 1] - xy[v, 1], xy[nb, 0] - xy[v, 0])
        turn = np.mod(hand * (ang - back[v]), 2 * math.pi)
        w = int(nb[np.lexsort((nb, turn))[0]])
        seen[w] = True
        parent[w] = v
        back[w] = math.atan2(xy[v, 1] - xy[w, 1], xy[v, 0] - xy[w, 0])
        order.append(w)
        stack.append(w)
    return parent, np.array(order, dtype=np.int64)


def _tree_split(layout: _Layout, lo: int, hi: int) -> list[Cell] | None:
    """Cells from exact splits of spanning trees of the atoms (the band narrowed first, so
    that footprints straddling cell borders leave the repair some room), connected and
    repaired."""
    atoms = layout.atoms
    xy = shapely.get_coordinates(shapely.point_on_surface(atoms.geoms))
    weight = np.rint(layout.weight).astype(np.int64)
    for parent, order in _spanning_trees(atoms, xy):
        for margin in sorted({(hi - lo) // 8, 0}, reverse=True):
            chunks = _tree_chunks(parent, order, weight, lo + margin, hi - margin)
            if chunks is None:
                continue
            k = int(chunks.max()) + 1
            cells = _partition(layout, chunks, k, _Bounds(lo, hi, layout.total / k),
                               branches=True)
            if cells is not None:
                return cells
    return None


def _grid_counts(households: int, lo: int, hi: int) -> list[int]:
    """Numbers of grids that can hold this many households, best (middle of band) first."""
    ks = range(max(1, math.ceil(households / hi)), households // lo + 1)
    mid = (lo + hi) / 2
    return sorted(ks, key=lambda k: (abs(households / k - mid), k))


def splittable_from(band: tuple[int, int]) -> int:
    """Smallest household count from which every count can be split into band-sized grids."""
    lo, hi = band
    if hi <= lo:
        raise ValueError(f"band {band} is empty")
    k0 = max(1, math.ceil((lo - 1) / (hi - lo)))
    return k0 * lo


_TURNS = (0.0, math.pi, math.pi / 2, -math.pi / 2, math.pi / 4, -3 * math.pi / 4)


def _split(layout: _Layout, k: int, lo: float, hi: float, *,
           branches: bool = False) -> list[Cell] | None:
    """Cells from bisection chunks, trying turned axes until the repair succeeds."""
    bounds = _Bounds(lo, hi, layout.total / k)
    for turn in _TURNS:
        chunks = _bisect(layout.atoms, layout.weight, k, lo, hi, turn)
        if chunks is None:
            continue
        cells = _partition(layout, chunks, k, bounds, branches=branches)
        if cells is not None:
            return cells
    return None


def grid_partition(community: BaseGeometry, buildings: gpd.GeoDataFrame, *,
                   band: tuple[int, int] = (300, 500)) -> list[Cell]:
    """Split a community into 全科网格 that tile it exactly, each holding households within
    `band` when every building counts for the grid holding the largest part of its footprint.
    Returns (polygon, building_ids) per grid. Raises ValueError if the households cannot be
    split into the band."""
    region = _single_polygon(community, "community")
    lo, hi = band
    households = int(buildings["households"].sum()) if len(buildings) else 0
    ks = _grid_counts(households, lo, hi)
    if not ks:
        raise ValueError(f"{households} households cannot be split into grids of {lo}-{hi}")
    if ks[0] == 1:
        return [(region, buildings["building_id"].to_numpy(dtype=np.int64))]
    layout = _Layout(region, buildings, _MIN_SHARED_LEAF_M)
    for k in ks[:3]:
        cells = _split(layout, k, lo, hi)
        if cells is not None:
            return cells
    for name, attempt in _fallbacks(region, buildings, layout, math.ceil(lo), math.floor(hi)):
        cells = attempt()
        if cells is not None:
            logger.info("grid_partition: %d households in %d buildings split by the fallback "
                        "'%s' into %d grids", households, len(buildings), name, len(cells))
            return cells
    raise RuntimeError(f"could not split {households} households into grids of {lo}-{hi}")


def _fallbacks(region: Polygon, buildings: gpd.GeoDataFrame, layout: _Layout, lo: int,
               hi: int) -> list[tuple[str, Callable[[], list[Cell] | None]]]:
    """Ever more thorough attempts for when bisection and repair fail, in order. Bisection
    fails when the atom graph allows no split into band-sized connected cells, typically a
    part of the community hanging on one large atom (a building's Voronoi cell that is the
    only way in) holding more than hi households, while what lies behind that atom holds too
    few for a grid of its own. Exact splits of spanning trees find any split a tree allows,
    and atoms refined by household-free seeds let cells pass beside such a building."""

    def refined(per_building: float) -> Callable[[], list[Cell] | None]:
        return lambda: _tree_split(
            _Layout(region, buildings, _MIN_SHARED_LEAF_M, fillers=per_building), lo, hi)

    return [
        ("spanning-tree split", lambda: _tree_split(layout, lo, hi)),
        ("spanning-tree split of refined atoms", refined(4.0)),
        ("spanning-tree split of finer atoms", refined(16.0)),
    ]


def community_partition(street: BaseGeometry, buildings: gpd.GeoDataFrame, *,
                        target_households: int = 3000, min_households: int = 1200,
                        grid_band: tuple[int, int] = (300, 500)) -> list[Cell]:
    """Split a street (街道) into communities (社区) that tile it exactly: round(H/target)
    cells, each with at least min_households (and a count that `grid_band` can split) when the
    street has that many. Returns (polygon, building_ids) per community."""
    region = _single_polygon(street, "street")
    households = int(buildings["households"].sum()) if len(buildings) else 0
    lo = max(min_households, splittable_from(grid_band))
    k = min(max(1, round(households / target_households)), max(1, households // lo))
    if k == 1:
        return [(region, buildings["building_id"].to_numpy(dtype=np.int64))]
    layout = _Layout(region, buildings, _MIN_SHARED_PARENT_M)
    for kk in range(k, 1, -1):
        cells = _split(layout, kk, lo, math.inf)
        if cells is not None:
            return cells
    raise RuntimeError(f"could not split {households} households into communities of >= {lo}")
