"""Synthetic building footprints (楼栋) for the demo city, in METRIC_CRS (metres).

Blocks are the area minus the roads buffered by their class width. Each block gets a zone
(old-city alleys, urban, suburb, rural: from `alley_zone` and the wanted density), a kind of
development drawn from the zone (courtyard houses, walk-ups, towers, low-rise, villages,
campuses of offices/public/commercial buildings) and a lattice of lots aligned with its
nearest road. Dense blocks are built all over; sparse places are built in round patches
(villages, compounds) so that the density follows `density_core x urban_intensity`, never
below `min_density`. Footprints stay inside their block, so they overlap neither each other
nor the roads. Towers are split into entrance units (单元) so that no building holds more
than MAX_HOUSEHOLDS households.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from gis.democity.model import METRIC_CRS, urban_intensity

ROAD_WIDTH_M = {"arterial": 30.0, "secondary": 20.0, "branch": 12.0, "alley": 5.0}
MAX_HOUSEHOLDS = 60
MIN_DENSITY = 120.0  # buildings/km² anywhere: a rural township of ~10 km² gets > 1 500 households
COLUMNS = ["building_id", "floors", "households", "use", "geometry"]

# zones, by wanted density (buildings/km²): a denser city is built up further out
ALLEY, URBAN, SUBURB, RURAL = range(4)
URBAN_FROM, SUBURB_FROM = 315.0, 108.0
# kinds of development
COURTYARD, WALKUP, TOWER, LOWRISE, VILLAGE, CAMPUS = range(6)


@dataclass(frozen=True)
class _Kind:
    """Lattice and footprint sizes of one kind of development (along x across the road)."""

    cell: tuple[float, float]
    length: tuple[float, float]
    depth: tuple[float, float]
    pieces: float  # buildings per lot on average
    jitter: float  # how freely a footprint moves inside its lot (0 = aligned rows)


KINDS = {
    COURTYARD: _Kind((30.0, 28.0), (13.0, 27.0), (12.0, 24.0), 1.0, 0.8),
    WALKUP: _Kind((66.0, 36.0), (40.0, 62.0), (10.0, 13.0), 1.0, 0.1),
    TOWER: _Kind((56.0, 64.0), (28.0, 44.0), (15.0, 20.0), 3.0, 0.2),
    LOWRISE: _Kind((32.0, 24.0), (14.0, 26.0), (9.0, 14.0), 1.0, 0.5),
    VILLAGE: _Kind((22.0, 20.0), (10.0, 18.0), (8.0, 13.0), 1.0, 0.8),
    CAMPUS: _Kind((80.0, 70.0), (25.0, 70.0), (15.0, 55.0), 1.0, 0.6),
}
# probability of each kind per zone (rows: ALLEY, URBAN, SUBURB, RURAL)
KIND_MIX = np.array([
    [0.80, 0.12, 0.00, 0.00, 0.00, 0.08],
    [0.00, 0.45, 0.35, 0.00, 0.00, 0.20],
    [0.00, 0.20, 0.30, 0.25, 0.10, 0.15],
    [0.00, 0.00, 0.00, 0.20, 0.80, 0.00],  # village shops and schools come from SHOPS
])
SHOPS = np.array([0.05, 0.05, 0.05, 0.08])  # share of homes turned shops/public, per zone
FILL = 0.9  # share of lots built in a developed patch
PATCH_RADIUS_M = (120.0, 280.0)
PATCH_YIELD = 0.65  # share of a patch's lots that fit in its block (calibrated)
PATCH_WOBBLE = (0.25, 0.15)  # amplitudes of the 2- and 3-lobed wobble of a patch's outline
MIN_BLOCK_M2 = 150.0


def _cell_arrays() -> tuple[np.ndarray, ...]:
    ks = [KINDS[k] for k in range(len(KINDS))]
    return tuple(np.array(v, dtype=float) for v in (
        [k.cell[0] for k in ks], [k.cell[1] for k in ks],
        [k.length[0] for k in ks], [k.length[1] for k in ks],
        [k.depth[0] for k in ks], [k.depth[1] for k in ks],
        [k.pieces for k in ks], [k.jitter for k in ks],
    ))


CELL_U, CELL_V, LEN_LO, LEN_HI, DEP_LO, DEP_HI, PIECES, JITTER = _cell_arrays()


# -- blocks ------------------------------------------------------------------------------


def road_buffers(edges: gpd.GeoDataFrame) -> np.ndarray:
    """The roads as polygons: each edge buffered by half its class width."""
    if len(edges) == 0:
        return np.empty(0, dtype=object)
    width = edges["road_class"].map(ROAD_WIDTH_M).fillna(ROAD_WIDTH_M["branch"])
    geoms = np.asarray(edges.geometry.values, dtype=object)
    return shapely.buffer(geoms, width.to_numpy(dtype=float) / 2.0, quad_segs=4)


def blocks_of(area: BaseGeometry, edges: gpd.GeoDataFrame) -> np.ndarray:
    """Blocks: the area minus the buffered roads, as single polygons."""
    buffers = road_buffers(edges)
    if len(buffers):
        hit = shapely.STRtree(buffers).query(area, predicate="intersects")
        rest = shapely.difference(area, shapely.union_all(buffers[np.sort(hit)]))
    else:
        rest = area
    parts = shapely.get_parts(rest)
    parts = parts[(shapely.get_type_id(parts) == 3) & (shapely.area(parts) >= MIN_BLOCK_M2)]
    return parts


def road_angles(points: np.ndarray, edges: gpd.GeoDataFrame) -> np.ndarray:
    """Direction (radians) of the nearest road at each point; 0 where there is no road."""
    out = np.zeros(len(points))
    if len(edges) == 0 or len(points) == 0:
        return out
    lines = np.asarray(edges.geometry.values, dtype=object)
    q, t = shapely.STRtree(lines).query_nearest(points, all_matches=False)
    d = shapely.line_locate_point(lines[t], points[q])
    a = shapely.get_coordinates(shapely.line_interpolate_point(lines[t], d - 3.0))
    b = shapely.get_coordinates(shapely.line_interpolate_point(lines[t], d + 3.0))
    out[q] = np.arctan2(b[:, 1] - a[:, 1], b[:, 0] - a[:, 0])
    return out


@dataclass
class _Blocks:
    geoms: np.ndarray
    origin: np.ndarray  # (n, 2) lattice origin (a point of the block)
    angle: np.ndarray
    zone: np.ndarray
    kind: np.ndarray
    density: np.ndarray  # wanted buildings per km² of block
    phase: np.ndarray  # (n, 2) lattice offset
    lo: np.ndarray  # (n, 2) local bbox min (u, v)
    hi: np.ndarray  # (n, 2) local bbox max

    def local(self, idx: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """World x/y -> block-local u (along the road) / v (across) for blocks idx."""
        c, s = np.cos(self.angle[idx]), np.sin(self.angle[idx])
        dx, dy = xy[:, 0] - self.origin[idx, 0], xy[:, 1] - self.origin[idx, 1]
        return np.column_stack([dx * c + dy * s, -dx * s + dy * c])

    def world(self, idx: np.ndarray, uv: np.ndarray) -> np.ndarray:
        c, s = np.cos(self.angle[idx]), np.sin(self.angle[idx])
        u, v = uv[..., 0], uv[..., 1]
        if uv.ndim == 3:
            c, s = c[:, None], s[:, None]
            ox, oy = self.origin[idx, 0][:, None], self.origin[idx, 1][:, None]
        else:
            ox, oy = self.origin[idx, 0], self.origin[idx, 1]
        return np.stack([ox + u * c - v * s, oy + u * s + v * c], axis=-1)


def _describe_blocks(geoms: np.ndarray, edges: gpd.GeoDataFrame, alley_zone: BaseGeometry | None,
                     density_core: float, min_density: float,
                     rng: np.random.Generator) -> _Blocks:
    """Zone, kind, orientation, density and local extent of every block."""
    n = len(geoms)
    rep = shapely.point_on_surface(geoms)
    xy = shapely.get_coordinates(rep)
    wanted = density_core * urban_intensity(xy[:, 0], xy[:, 1])
    zone = np.where(wanted >= URBAN_FROM, URBAN, np.where(wanted >= SUBURB_FROM, SUBURB, RURAL))
    if alley_zone is not None and not alley_zone.is_empty:
        zone = np.where(shapely.contains_xy(alley_zone, xy[:, 0], xy[:, 1]), ALLEY, zone)
    cum = np.cumsum(KIND_MIX[zone], axis=1)
    kind = np.minimum((rng.random(n)[:, None] > cum).sum(axis=1), len(KINDS) - 1)
    phase = rng.random((n, 2)) * np.column_stack([CELL_U[kind], CELL_V[kind]])
    blocks = _Blocks(geoms, xy, road_angles(rep, edges), zone, kind,
                     np.maximum(wanted, min_density), phase,
                     np.zeros((n, 2)), np.zeros((n, 2)))
    coords, gi = shapely.get_coordinates(geoms, return_index=True)
    uv = blocks.local(gi, coords)
    starts = np.searchsorted(gi, np.arange(n))
    blocks.lo = np.column_stack([np.minimum.reduceat(uv[:, 0], starts),
                                 np.minimum.reduceat(uv[:, 1], starts)])
    blocks.hi = np.column_stack([np.maximum.reduceat(uv[:, 0], starts),
                                 np.maximum.reduceat(uv[:, 1], starts)])
    return blocks


# -- lots --------------------------------------------------------------------------------


@dataclass
class _Regions:
    """Rectangles of lattice indices to enumerate, optionally limited to a disc."""

    block: np.ndarray
    i0: np.ndarray
    i1: np.ndarray
    j0: np.ndarray
    j1: np.ndarray
    centre: np.ndarray  # (n, 2) local u/v of the patch centre (nan: whole block)
    radius: np.ndarray
    phase: np.ndarray  # (n, 2) phases of the outline's wobble
    keep: np.ndarray  # probability that a lot is built


def _index_range(blocks: _Blocks, idx: np.ndarray, lo: np.ndarray,
                 hi: np.ndarray) -> tuple[np.ndarray, ...]:
    k = blocks.kind[idx]
    cu, cv = CELL_U[k], CELL_V[k]
    ph = blocks.phase[idx]
    return (np.floor((lo[:, 0] - ph[:, 0]) / cu).astype(np.int64),
            np.floor((hi[:, 0] - ph[:, 0]) / cu).astype(np.int64),
            np.floor((lo[:, 1] - ph[:, 1]) / cv).astype(np.int64),
            np.floor((hi[:, 1] - ph[:, 1]) / cv).astype(np.int64))


def _regions(blocks: _Blocks, rng: np.random.Generator) -> _Regions:
    """Where to lay lots: whole blocks where the wanted density fills them, else patches."""
    n = len(blocks.geoms)
    k = blocks.kind
    lattice = 1e6 / (CELL_U[k] * CELL_V[k]) * PIECES[k]  # buildings/km² if every lot is built
    developed = blocks.density / (lattice * FILL)  # share of the block to build on
    area = shapely.area(blocks.geoms)
    patch_area = np.pi * np.mean(PATCH_RADIUS_M) ** 2
    big = (developed < 1) & (area > patch_area)
    whole = (developed >= 1) | (~big & (rng.random(n) < developed))
    idx = np.flatnonzero(whole)
    keep_whole = np.where(developed[idx] >= 1,
                          np.minimum(1.0, blocks.density[idx] / lattice[idx]), FILL)
    i0, i1, j0, j1 = _index_range(blocks, idx, blocks.lo[idx], blocks.hi[idx])
    whole_r = _Regions(idx, i0, i1, j0, j1, np.full((len(idx), 2), np.nan),
                       np.zeros(len(idx)), np.zeros((len(idx), 2)), keep_whole)
    patch_r = _patches(blocks, np.flatnonzero(big), developed, rng)
    fields = ("block", "i0", "i1", "j0", "j1", "centre", "radius", "phase", "keep")
    return _Regions(*(np.concatenate([getattr(whole_r, f), getattr(patch_r, f)])
                      for f in fields))


def _patches(blocks: _Blocks, idx: np.ndarray, developed: np.ndarray,
             rng: np.random.Generator) -> _Regions:
    """Round patches (villages, compounds) covering the developed share of large blocks."""
    area = shapely.area(blocks.geoms[idx])
    r_lo, r_hi = PATCH_RADIUS_M
    mean_r2 = (r_hi**3 - r_lo**3) / (3 * (r_hi - r_lo))
    expected = developed[idx] * area / (np.pi * mean_r2 * PATCH_YIELD)
    count = np.floor(expected).astype(np.int64) + (rng.random(len(idx)) < expected % 1)
    block = np.repeat(idx, count)
    extent = blocks.hi[block] - blocks.lo[block]
    tries = 8
    uv = blocks.lo[block][:, None, :] + rng.random((len(block), tries, 2)) * extent[:, None, :]
    xy = blocks.world(block, uv)
    inside = shapely.contains_xy(blocks.geoms[np.repeat(block, tries)],
                                 xy[..., 0].ravel(), xy[..., 1].ravel()).reshape(-1, tries)
    found = inside.any(axis=1)
    first = np.argmax(inside, axis=1)
    block, centre = block[found], uv[np.flatnonzero(found), first[found]]
    radius = rng.uniform(r_lo, r_hi, len(block))
    reach = radius * (1.0 + sum(PATCH_WOBBLE))
    i0, i1, j0, j1 = _index_range(blocks, block, centre - reach[:, None],
                                  centre + reach[:, None])
    phase = rng.uniform(0, 2 * np.pi, (len(block), 2))
    return _Regions(block, i0, i1, j0, j1, centre, radius, phase, np.full(len(block), FILL))


@dataclass
class _Lots:
    block: np.ndarray
    kind: np.ndarray
    rect: np.ndarray  # (n, 4) local u0, u1, v0, v1


def _lots(blocks: _Blocks, regions: _Regions, rng: np.random.Generator) -> _Lots:
    """Lattice lots of every region, deduplicated, thinned, with a footprint each."""
    ni = regions.i1 - regions.i0 + 1
    nj = regions.j1 - regions.j0 + 1
    cnt = ni * nj
    reg = np.repeat(np.arange(len(cnt)), cnt)
    off = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    i = regions.i0[reg] + off // nj[reg]
    j = regions.j0[reg] + off % nj[reg]
    block = regions.block[reg]
    k = blocks.kind[block]
    cu, cv = CELL_U[k], CELL_V[k]
    centre_u = blocks.phase[block, 0] + (i + 0.5) * cu
    centre_v = blocks.phase[block, 1] + (j + 0.5) * cv
    in_patch = _in_patch(regions, reg, centre_u, centre_v)
    sel = np.flatnonzero(in_patch)
    # overlapping patches of one block give the same lot twice: keep it once
    order = np.lexsort((j[sel], i[sel], block[sel]))
    b, ii, jj = block[sel][order], i[sel][order], j[sel][order]
    dup = np.r_[False, (b[1:] == b[:-1]) & (ii[1:] == ii[:-1]) & (jj[1:] == jj[:-1])]
    sel = np.sort(sel[order[~dup]])
    sel = sel[rng.random(len(sel)) < regions.keep[reg[sel]]]
    return _footprints(block[sel], k[sel], centre_u[sel], centre_v[sel], rng)


def _in_patch(regions: _Regions, reg: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether lot centres lie in their region (whole blocks: always; patches: inside the
    wobbly outline)."""
    c = regions.centre[reg]
    du, dv = u - c[:, 0], v - c[:, 1]
    theta = np.arctan2(dv, du)
    ph = regions.phase[reg]
    a2, a3 = PATCH_WOBBLE
    outline = regions.radius[reg] * (1 + a2 * np.sin(2 * theta + ph[:, 0])
                                     + a3 * np.sin(3 * theta + ph[:, 1]))
    return np.isnan(c[:, 0]) | (np.hypot(du, dv) <= outline)


def _footprints(block: np.ndarray, kind: np.ndarray, cu: np.ndarray, cv: np.ndarray,
                rng: np.random.Generator) -> _Lots:
    """A rectangle in every lot, sized by kind (courtyards 150-600 m²)."""
    n = len(block)
    length = LEN_LO[kind] + rng.random(n) * (LEN_HI[kind] - LEN_LO[kind])
    depth = DEP_LO[kind] + rng.random(n) * (DEP_HI[kind] - DEP_LO[kind])
    court = kind == COURTYARD
    depth[court] = np.clip(depth[court], 150.0 / length[court], 600.0 / length[court])
    slack_u = (CELL_U[kind] - 2.0 - length) / 2
    slack_v = (CELL_V[kind] - 2.0 - depth) / 2
    du = slack_u * JITTER[kind] * rng.uniform(-1, 1, n)
    dv = slack_v * JITTER[kind] * rng.uniform(-1, 1, n)
    rect = np.column_stack([cu + du - length / 2, cu + du + length / 2,
                            cv + dv - depth / 2, cv + dv + depth / 2])
    return _Lots(block, kind, rect)


def _polygons(blocks: _Blocks, block: np.ndarray, rect: np.ndarray) -> np.ndarray:
    """World polygons of local rectangles."""
    u0, u1, v0, v1 = rect.T
    uv = np.stack([np.column_stack([u0, u1, u1, u0, u0]),
                   np.column_stack([v0, v0, v1, v1, v0])], axis=-1)
    return shapely.polygons(blocks.world(block, uv))


def _inside(blocks: _Blocks, lots: _Lots, batch: int = 250_000) -> _Lots:
    """Keep lots whose footprint lies inside its block."""
    shapely.prepare(blocks.geoms)
    keep = np.zeros(len(lots.block), dtype=bool)
    for s in range(0, len(keep), batch):
        sl = slice(s, s + batch)
        polys = _polygons(blocks, lots.block[sl], lots.rect[sl])
        keep[sl] = shapely.contains_properly(blocks.geoms[lots.block[sl]], polys)
    return _Lots(lots.block[keep], lots.kind[keep], lots.rect[keep])


# -- buildings ---------------------------------------------------------------------------


def _split_towers(lots: _Lots, rng: np.random.Generator) -> tuple[_Lots, np.ndarray]:
    """Towers become 2-4 entrance units side by side; returns the units and each unit's
    tower (lot) index."""
    pieces = np.where(lots.kind == TOWER, rng.integers(2, 5, len(lots.kind)), 1)
    src = np.repeat(np.arange(len(pieces)), pieces)
    part = np.arange(len(src)) - np.repeat(np.cumsum(pieces) - pieces, pieces)
    u0, u1, v0, v1 = lots.rect[src].T
    w = (u1 - u0) / pieces[src]
    rect = np.column_stack([u0 + part * w, u0 + (part + 1) * w, v0, v1])
    return _Lots(lots.block[src], lots.kind[src], rect), src


def _pick(rng: np.random.Generator, values: list[int], probs: list[float], n: int) -> np.ndarray:
    return rng.choice(np.array(values), size=n, p=np.array(probs))


def _attributes(units: _Lots, tower_of: np.ndarray, zone: np.ndarray,
                rng: np.random.Generator) -> pd.DataFrame:
    """floors, households and use of every building."""
    n = len(units.kind)
    kind = units.kind
    floors = np.ones(n, dtype=np.int64)
    hh = np.zeros(n, dtype=np.int64)
    use = np.full(n, "residential", dtype=object)
    length = units.rect[:, 1] - units.rect[:, 0]

    m = kind == COURTYARD
    hh[m] = _pick(rng, [1, 2, 3, 4, 5, 6], [0.15, 0.25, 0.25, 0.15, 0.12, 0.08], m.sum())
    m = kind == WALKUP
    floors[m] = _pick(rng, [4, 5, 6], [0.1, 0.25, 0.65], m.sum())
    entrances = np.clip(np.round(length[m] / 13.0), 2, 5).astype(np.int64)
    hh[m] = floors[m] * 2 * entrances
    m = kind == TOWER
    tower_floors = rng.integers(12, 31, int(tower_of.max()) + 1 if n else 0)  # per lot
    floors[m] = tower_floors[tower_of[m]]
    hh[m] = floors[m] * np.where(floors[m] <= 15, 4, 2)
    m = kind == LOWRISE
    floors[m] = _pick(rng, [2, 3, 4], [0.5, 0.4, 0.1], m.sum())
    hh[m] = floors[m] * rng.integers(1, 3, m.sum())
    m = kind == VILLAGE
    floors[m] = _pick(rng, [1, 2], [0.75, 0.25], m.sum())
    hh[m] = _pick(rng, [1, 2, 3, 4], [0.35, 0.4, 0.2, 0.05], m.sum())
    m = kind == CAMPUS
    _campus(floors, use, m, zone, rng)

    # shops, clinics, schools among homes; homes over shops along busy streets
    flats = (kind == WALKUP) | (kind == TOWER)
    n_lots = int(tower_of.max()) + 1 if n else 0
    r = rng.random(n_lots)[tower_of]  # one draw per lot: a tower's units share their use
    shop = (kind != CAMPUS) & (r < SHOPS[zone])
    lot_use = rng.choice(np.array(["commercial", "public"], dtype=object), n_lots)[tower_of]
    use[shop] = lot_use[shop]
    hh[shop] = 0
    mixed = flats & (r >= 0.05) & (r < 0.13)  # flats are never in the rural zone
    use[mixed] = "mixed"
    hh[mixed] = np.maximum(1, hh[mixed] * 2 // 3)
    return pd.DataFrame({"floors": floors, "households": np.minimum(hh, MAX_HOUSEHOLDS),
                         "use": use})


def _campus(floors: np.ndarray, use: np.ndarray, m: np.ndarray, zone: np.ndarray,
            rng: np.random.Generator) -> None:
    """Offices, public buildings and shops: floors by zone (in place)."""
    k = int(m.sum())
    kinds = rng.choice(np.array(["office", "public", "commercial"], dtype=object), k,
                       p=[0.4, 0.3, 0.3])
    use[m] = kinds
    urban = zone[m] <= URBAN
    office = np.where(urban, rng.integers(6, 26, k), rng.integers(3, 9, k))
    public = rng.integers(2, 7, k)
    shop = np.where(urban, rng.integers(1, 9, k), rng.integers(1, 4, k))
    floors[m] = np.where(kinds == "office", office, np.where(kinds == "public", public, shop))


def generate_buildings(area: BaseGeometry, edges: gpd.GeoDataFrame, rng: np.random.Generator,
                       *, density_core: float, alley_zone: BaseGeometry | None,
                       min_density: float = MIN_DENSITY, first_id: int = 1) -> gpd.GeoDataFrame:
    """Building footprints in the blocks of `area` between the roads `edges` (road_class,
    geometry): courtyard houses in `alley_zone`, walk-ups/towers/offices in town, low-rise
    and villages outside. The wanted density is density_core x urban_intensity buildings per
    km² of block land (at least min_density); in town the lots cap it, so the core gets
    about half of it. Columns: building_id, floors, households, use, geometry; ids count up
    from first_id. Demo districts (东城+西城+丰台, model.DEMO): ~75 000 buildings, ~1.15 M
    households, ~2 s. For a city of large rural towns a lower min_density (e.g. 40) will do."""
    blocks = _describe_blocks(blocks_of(area, edges), edges, alley_zone, density_core,
                              min_density, rng)
    lots = _inside(blocks, _lots(blocks, _regions(blocks, rng), rng))
    units, tower_of = _split_towers(lots, rng)
    attrs = _attributes(units, tower_of, blocks.zone[units.block], rng)
    geoms = _polygons(blocks, units.block, units.rect)
    attrs.insert(0, "building_id", np.arange(first_id, first_id + len(attrs), dtype=np.int64))
    return gpd.GeoDataFrame(attrs, geometry=geoms, crs=METRIC_CRS)[COLUMNS]


# -- special buildings -------------------------------------------------------------------


def straddling_building(side_a: BaseGeometry, side_b: BaseGeometry,
                        anchor: Point | tuple[float, float], *, area_m2: float = 2000.0,
                        share_a: float = 1 / 3,
                        floors: int = 2) -> Polygon:
    """A rectangle of area_m2 on the border of two adjacent polygons near `anchor`, oriented
    along the border, with share_a of its area in side_a and the rest in side_b (the
    ~2000 m², two-storey building one third in 西城 and two thirds in 丰台). `floors` is
    checked here and recorded by the caller (see insert_building)."""
    if floors < 1:
        raise ValueError(f"floors must be >= 1, got {floors}")
    if not 0.0 < share_a < 1.0:
        raise ValueError(f"share_a must be between 0 and 1, got {share_a}")
    pt = anchor if isinstance(anchor, Point) else Point(anchor)
    border = side_a.boundary
    d = border.project(pt)
    on = np.array(border.interpolate(d).coords[0])
    a = np.array(border.interpolate(d - 10.0).coords[0])
    b = np.array(border.interpolate(d + 10.0).coords[0])
    t = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    normal = np.array([-t[1], t[0]])
    if not side_a.contains(Point(on + normal * 1.0)):
        normal = -normal
    length = float(np.sqrt(area_m2 * 1.6))
    width = area_m2 / length

    def rect(offset: float) -> Polygon:
        c = on + normal * offset
        hl, hw = t * length / 2, normal * width / 2
        return Polygon([c - hl - hw, c + hl - hw, c + hl + hw, c - hl + hw])

    lo, hi = -width, width
    for _ in range(60):
        mid = (lo + hi) / 2
        if rect(mid).intersection(side_a).area / area_m2 < share_a:
            lo = mid
        else:
            hi = mid
    poly = rect((lo + hi) / 2)
    in_b = poly.intersection(side_b).area / area_m2
    if abs(in_b - (1.0 - share_a)) > 0.005:
        raise ValueError(f"the building near {pt.wkt} has {in_b:.3f} in side_b, expected "
                         f"{1 - share_a:.3f}: choose an anchor on a straight shared border")
    return poly


def insert_building(buildings: gpd.GeoDataFrame, footprint: Polygon, *, floors: int,
                    households: int, use: str, building_id: int | None = None
                    ) -> gpd.GeoDataFrame:
    """Add a building, removing those whose footprint overlaps it."""
    geoms = np.asarray(buildings.geometry.values, dtype=object)
    hit = shapely.STRtree(geoms).query(footprint, predicate="intersects")
    hit = hit[shapely.area(shapely.intersection(geoms[hit], footprint)) > 0]
    kept = buildings.drop(index=buildings.index[hit])
    new_id = int(buildings["building_id"].max()) + 1 if building_id is None else building_id
    row = gpd.GeoDataFrame({"building_id": [new_id], "floors": [floors],
                            "households": [households], "use": [use]},
                           geometry=[footprint], crs=buildings.crs)
    return gpd.GeoDataFrame(pd.concat([kept, row], ignore_index=True),
                            crs=buildings.crs)[COLUMNS]
