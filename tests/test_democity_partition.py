"""Partitions of the demo city: 街道 by Lloyd-relaxed Voronoi, 社区 and 全科网格 from the
buildings, tiling their parent exactly, with grid households in the band as the database
counts them (each building in the grid holding the largest part of its footprint)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely import affinity
from shapely.geometry import MultiPolygon, Polygon
from shapely.geometry.base import BaseGeometry

from gis.democity.buildings import generate_buildings
from gis.democity.model import DEMO, METRIC_CRS, to_metric
from gis.democity.partition import (
    _tree_chunks,
    community_partition,
    grid_partition,
    majority_cells,
    splittable_from,
    voronoi_partition,
)

CENTRE = to_metric(np.array([116.37]), np.array([39.89]))  # 广安门内, inside the 2nd ring
CX, CY = float(CENTRE[0][0]), float(CENTRE[1][0])
BAND = (300, 500)


def irregular_area(cx: float, cy: float) -> Polygon:
    """About 3 km x 2 km, with a wavy outline and a notch cut into its south side."""
    t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    r = 1 + 0.07 * np.sin(3 * t + 0.4) + 0.04 * np.cos(7 * t)
    blob = Polygon(np.column_stack([cx + 1500 * r * np.cos(t), cy + 1000 * r * np.sin(t)]))
    return blob.difference(shapely.box(cx - 150, cy - 1200, cx + 250, cy - 200))


def synthetic_roads(area: Polygon, alleys: Polygon) -> gpd.GeoDataFrame:
    """A road grid turned by 6° (arterial 1 km, secondary 500 m, branch 250 m) and
    east-west alleys every 80 m inside `alleys`."""
    x0, y0, x1, y1 = area.bounds
    cx, cy, span = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)
    rows: list[tuple[str, BaseGeometry]] = []
    for off in np.arange(-span, span + 1, 250.0):
        cls = "arterial" if off % 1000 == 0 else "secondary" if off % 500 == 0 else "branch"
        rows.append((cls, shapely.LineString([(cx + off, cy - span), (cx + off, cy + span)])))
        rows.append((cls, shapely.LineString([(cx - span, cy + off), (cx + span, cy + off)])))
    ax0, ay0, ax1, ay1 = alleys.bounds
    rows += [("alley", shapely.LineString([(ax0, y), (ax1, y)]))
             for y in np.arange(ay0 + 40, ay1, 80.0)]
    turned = np.array([affinity.rotate(g, 6.0, origin=(cx, cy)) for _, g in rows])
    clipped = shapely.intersection(turned, area.buffer(30))
    keep = ~shapely.is_empty(clipped)
    frame = gpd.GeoDataFrame({"road_class": np.array([c for c, _ in rows])[keep]},
                             geometry=clipped[keep], crs=METRIC_CRS)
    return frame.explode(ignore_index=True)


AREA = irregular_area(CX, CY)
ALLEYS = shapely.box(CX - 1600, CY, CX + 200, CY + 1100)


def assert_tiles(cells: Sequence[BaseGeometry], parent: BaseGeometry) -> None:
    """The cells cover the parent with no gap or overlap (to 1e-6 of its area), each one a
    single non-empty Polygon."""
    arr = np.asarray(cells, dtype=object)
    assert all(isinstance(c, Polygon) and not c.is_empty and c.is_valid for c in cells)
    total = float(shapely.area(arr).sum())
    assert abs(total - parent.area) <= 1e-6 * parent.area
    union = shapely.union_all(arr)
    assert union.symmetric_difference(parent).area <= 1e-6 * parent.area
    i, j = shapely.STRtree(arr).query(arr, predicate="intersects")
    keep = i < j
    overlap = float(shapely.area(shapely.intersection(arr[i[keep]], arr[j[keep]])).sum())
    assert overlap <= 1e-6 * parent.area


def households_by_majority(buildings: gpd.GeoDataFrame, cells: Sequence[BaseGeometry]
                           ) -> np.ndarray:
    fp = np.asarray(buildings.geometry.values, dtype=object)
    best, _share = majority_cells(fp, cells)
    assert (best >= 0).all()
    return np.bincount(best, weights=buildings["households"].to_numpy(), minlength=len(cells))


@pytest.fixture(scope="module")
def city() -> dict[str, object]:
    """Buildings of the area, two streets, their communities and grids."""
    roads = synthetic_roads(AREA, ALLEYS)
    buildings = generate_buildings(AREA, roads, np.random.default_rng(11),
                                   density_core=DEMO.buildings_per_km2_core, alley_zone=ALLEYS)
    streets = voronoi_partition(AREA, 2, np.random.default_rng(5))
    fp = np.asarray(buildings.geometry.values, dtype=object)
    street_of, _ = majority_cells(fp, streets)
    communities = []
    for s, street in enumerate(streets):
        communities += community_partition(street, buildings[street_of == s])
    grids = []
    for community, ids in communities:
        grids.append(grid_partition(community, buildings[buildings["building_id"].isin(ids)]))
    return {"buildings": buildings, "streets": streets, "street_of": street_of,
            "communities": communities, "grids": grids}


# -- 街道: Voronoi partition ---------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 7, 40])
def test_voronoi_cells_tile_the_area(n: int) -> None:
    cells = voronoi_partition(AREA, n, np.random.default_rng(1))
    assert len(cells) == n
    assert_tiles(cells, AREA)


def test_voronoi_cells_are_even_after_relaxation() -> None:
    cells = voronoi_partition(AREA, 20, np.random.default_rng(2))
    areas = np.array([c.area for c in cells])
    assert areas.max() / areas.min() < 3


def test_pinned_seeds_own_the_first_cells() -> None:
    pinned = np.array([[CX - 1200, CY + 100], [CX + 900, CY - 300]])
    cells = voronoi_partition(AREA, 12, np.random.default_rng(3), pinned=pinned)
    assert_tiles(cells, AREA)
    for (x, y), cell in zip(pinned, cells[:2], strict=True):
        assert cell.contains(shapely.Point(x, y))


def test_pinned_cells_of_two_districts_meet_along_their_border() -> None:
    """How 广外 (西城) and 太平桥 (丰台) come to share the district border."""
    west = shapely.box(CX - 3000, CY - 2000, CX, CY + 2000)
    east = shapely.box(CX, CY - 2000, CX + 3000, CY + 2000)
    a = voronoi_partition(west, 8, np.random.default_rng(4), pinned=np.array([[CX - 150, CY]]))
    b = voronoi_partition(east, 8, np.random.default_rng(4), pinned=np.array([[CX + 150, CY]]))
    assert_tiles(a, west)
    assert_tiles(b, east)
    assert a[0].boundary.intersection(b[0].boundary).length > 500


def test_multipart_area_gets_a_cell_per_part() -> None:
    island = shapely.box(CX + 2500, CY - 300, CX + 3100, CY + 300)
    area = MultiPolygon([AREA, island])
    cells = voronoi_partition(area, 9, np.random.default_rng(5))
    assert_tiles(cells, area)
    assert sum(c.within(island.buffer(1e-6)) for c in cells) >= 1
    with pytest.raises(ValueError, match="separate parts"):
        voronoi_partition(area, 1, np.random.default_rng(5))


def test_voronoi_partition_is_deterministic() -> None:
    one = voronoi_partition(AREA, 15, np.random.default_rng(6))
    two = voronoi_partition(AREA, 15, np.random.default_rng(6))
    other = voronoi_partition(AREA, 15, np.random.default_rng(7))
    assert [c.wkb for c in one] == [c.wkb for c in two]
    assert [c.wkb for c in one] != [c.wkb for c in other]


# -- 社区 ------------------------------------------------------------------------------------


def test_communities_tile_each_street(city: dict) -> None:
    buildings, streets = city["buildings"], city["streets"]
    for s, street in enumerate(streets):
        cells = [poly for poly, _ in city["communities"] if poly.within(street.buffer(1e-3))]
        assert_tiles(cells, street)
        households = int(buildings.loc[city["street_of"] == s, "households"].sum())
        assert len(cells) == max(1, round(households / 3000))


def test_communities_hold_enough_households(city: dict) -> None:
    buildings = city["buildings"]
    cells = [poly for poly, _ in city["communities"]]
    counts = households_by_majority(buildings, cells)
    assert counts.min() >= 1200
    assert len(cells) >= 8


def test_every_building_is_in_exactly_one_community(city: dict) -> None:
    buildings = city["buildings"]
    ids = np.concatenate([ids for _, ids in city["communities"]])
    assert len(ids) == len(np.unique(ids)) == len(buildings)
    fp = np.asarray(buildings.geometry.values, dtype=object)
    best, _ = majority_cells(fp, [poly for poly, _ in city["communities"]])
    owner = np.concatenate([np.full(len(ids), k) for k, (_, ids) in
                            enumerate(city["communities"])])
    by_id = dict(zip(np.concatenate([ids for _, ids in city["communities"]]), owner,
                     strict=True))
    assert [by_id[i] for i in buildings["building_id"]] == best.tolist()


def test_small_street_is_one_community() -> None:
    street = shapely.box(0, 0, 500, 500)
    two = gpd.GeoDataFrame({"building_id": [1, 2], "households": [400, 500]},
                           geometry=[shapely.box(10, 10, 60, 60), shapely.box(300, 300, 350, 350)],
                           crs=METRIC_CRS)
    (only,) = community_partition(street, two)
    assert only[0].equals(street)
    assert sorted(only[1].tolist()) == [1, 2]


# -- 全科网格 --------------------------------------------------------------------------------


def test_grids_tile_each_community(city: dict) -> None:
    for (community, _), grids in zip(city["communities"], city["grids"], strict=True):
        assert_tiles([g for g, _ in grids], community)


def test_grid_households_are_in_the_band_by_majority_area(city: dict) -> None:
    buildings = city["buildings"]
    cells = [g for grids in city["grids"] for g, _ in grids]
    counts = households_by_majority(buildings, cells)
    assert counts.min() >= BAND[0]
    assert counts.max() <= BAND[1]
    assert len(cells) > 60


def test_grid_building_ids_are_the_majority_area_assignment(city: dict) -> None:
    buildings = city["buildings"]
    cells = [g for grids in city["grids"] for g, _ in grids]
    ids = [ids for grids in city["grids"] for _, ids in grids]
    flat = np.concatenate(ids)
    assert len(flat) == len(np.unique(flat)) == len(buildings)
    best, _ = majority_cells(np.asarray(buildings.geometry.values, dtype=object), cells)
    grid_of = dict(zip(flat, np.repeat(np.arange(len(ids)), [len(i) for i in ids]), strict=True))
    assert [grid_of[i] for i in buildings["building_id"]] == best.tolist()
    for k, grid_ids in enumerate(ids):
        households = buildings.loc[buildings["building_id"].isin(grid_ids), "households"].sum()
        assert BAND[0] <= households <= BAND[1], k


def test_grid_partition_is_deterministic(city: dict) -> None:
    buildings = city["buildings"]
    community, ids = city["communities"][0]
    subset = buildings[buildings["building_id"].isin(ids)]
    again = grid_partition(community, subset)
    first = city["grids"][0]
    assert [g.wkb for g, _ in again] == [g.wkb for g, _ in first]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(again, first, strict=True))


def test_band_follows_the_argument(city: dict) -> None:
    buildings = city["buildings"]
    community, ids = city["communities"][1]
    subset = buildings[buildings["building_id"].isin(ids)]
    grids = grid_partition(community, subset, band=(150, 260))
    assert_tiles([g for g, _ in grids], community)
    counts = households_by_majority(subset, [g for g, _ in grids])
    assert counts.min() >= 150
    assert counts.max() <= 260


def houses(households: list[int]) -> gpd.GeoDataFrame:
    """A row of 20 m x 20 m houses, 40 m apart, in the box (0, 0)-(40 n, 40)."""
    boxes = [shapely.box(40 * i + 10, 10, 40 * i + 30, 30) for i in range(len(households))]
    return gpd.GeoDataFrame({"building_id": np.arange(1, len(households) + 1),
                             "households": households}, geometry=boxes, crs=METRIC_CRS)


@pytest.mark.parametrize("households", [[50] * 5, [60] * 9, [0, 0]])
def test_impossible_household_counts_raise(households: list[int]) -> None:
    """250 (< 300) and 540 (between 500 and 600) households cannot make grids of 300-500."""
    region = shapely.box(0, 0, 40 * len(households), 40)
    with pytest.raises(ValueError, match="cannot be split"):
        grid_partition(region, houses(households))


def test_one_grid_when_the_community_fits_the_band() -> None:
    region = shapely.box(0, 0, 400, 40)
    (grid,) = grid_partition(region, houses([45] * 10))
    assert grid[0].equals(region)


def test_row_of_houses_splits_into_band_sized_grids() -> None:
    households = [7, 60, 13, 55, 2, 41, 60, 38, 11, 60, 24, 33, 60, 19, 50, 44, 0, 58, 27, 39]
    region = shapely.box(0, 0, 40 * len(households), 40)
    grids = grid_partition(region, houses(households))
    assert_tiles([g for g, _ in grids], region)
    counts = households_by_majority(houses(households), [g for g, _ in grids])
    assert len(grids) == 2
    assert counts.min() >= 300 and counts.max() <= 500


@pytest.mark.parametrize("seed", range(12))
def test_lumpy_households_still_fit_the_band(seed: int) -> None:
    """Scattered towers and walk-ups of 6-60 households in an L-shaped community."""
    rng = np.random.default_rng(seed)
    region = shapely.box(0, 0, 600, 600).difference(shapely.box(300, 300, 600, 600))
    xy = rng.uniform(15, 585, (400, 2))
    xy = xy[shapely.contains_xy(region.buffer(-15), xy[:, 0], xy[:, 1])]
    boxes = shapely.box(xy[:, 0] - 10, xy[:, 1] - 7, xy[:, 0] + 10, xy[:, 1] + 7)
    keep: list[int] = []
    tree_free = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if tree_free[i]:
            keep.append(i)
            tree_free &= ~shapely.intersects(boxes, boxes[i])
        if len(keep) == 70:
            break
    b = gpd.GeoDataFrame({"building_id": np.arange(1, len(keep) + 1),
                          "households": rng.choice([6, 12, 24, 36, 48, 60], len(keep))},
                         geometry=boxes[keep], crs=METRIC_CRS)
    grids = grid_partition(region, b)
    assert_tiles([g for g, _ in grids], region)
    counts = households_by_majority(b, [g for g, _ in grids])
    assert counts.min() >= BAND[0] and counts.max() <= BAND[1]


def test_splittable_from() -> None:
    assert splittable_from((300, 500)) == 600
    assert splittable_from((300, 400)) == 900
    assert splittable_from((100, 500)) == 100


# -- regression: communities the bisection could not split ---------------------------------

PARTITION_DATA = Path(__file__).parent / "data" / "partition"
CAPTURED = sorted(p.name.removesuffix("_community.geojson")
                  for p in PARTITION_DATA.glob("*_community.geojson"))


def assert_band_exact_grids(region: Polygon, buildings: gpd.GeoDataFrame,
                            grids: Sequence[tuple[BaseGeometry, np.ndarray]],
                            band: tuple[int, int]) -> None:
    """The guarantees of grid_partition: the grids tile the community, each holds households
    within the band counted by majority area, and the returned ids are exactly that
    assignment (every building once)."""
    cells = [g for g, _ in grids]
    assert_tiles(cells, region)
    counts = households_by_majority(buildings, cells)
    assert counts.min() >= band[0] and counts.max() <= band[1], counts
    best, _ = majority_cells(np.asarray(buildings.geometry.values, dtype=object), cells)
    flat = np.concatenate([ids for _, ids in grids])
    assert len(flat) == len(np.unique(flat)) == len(buildings)
    owner = dict(zip(flat.tolist(), np.repeat(np.arange(len(grids)),
                                              [len(ids) for _, ids in grids]).tolist(),
                     strict=True))
    assert [owner[i] for i in buildings["building_id"]] == best.tolist()


@pytest.mark.parametrize("case", CAPTURED)
def test_captured_city_failures_split_into_the_band(case: str) -> None:
    """Communities of the city scale (seed 7) on which grid_partition used to raise
    'could not split ... households into grids of 300-500' (tests/data/partition)."""
    community = gpd.read_file(PARTITION_DATA / f"{case}_community.geojson")
    buildings = gpd.read_file(PARTITION_DATA / f"{case}_buildings.geojson")
    band = (int(community["band_lo"].iloc[0]), int(community["band_hi"].iloc[0]))
    region = community.geometry.iloc[0]
    assert int(buildings["households"].sum()) >= splittable_from(band)
    assert int(buildings["households"].max()) <= 60
    grids = grid_partition(region, buildings, band=band)
    assert_band_exact_grids(region, buildings, grids, band)
    again = grid_partition(region, buildings, band=band)
    assert [g.wkb for g, _ in again] == [g.wkb for g, _ in grids]


def test_captured_cases_are_stored() -> None:
    assert CAPTURED, "no captured cases under tests/data/partition"
    assert all(p.stat().st_size < 1_000_000 for p in PARTITION_DATA.iterdir())


def courtyard_on_one_building() -> tuple[Polygon, gpd.GeoDataFrame]:
    """The root cause in miniature: a courtyard reached through a lane, one 60-household
    building in its middle whose Voronoi cell fills the courtyard and the lane's end, and two
    dead-end wings of 164 and 288 households that open only onto that cell. Among unions of
    the buildings' Voronoi cells, a grid holding the courtyard building has to hold all 512
    households behind the lane (each wing alone is too small for a grid)."""
    region = shapely.union_all([
        shapely.box(0, 0, 300, 300),  # the main block, 36 buildings of 42 households
        shapely.box(300, 140, 360, 160),  # the lane
        shapely.box(360, 100, 460, 200),  # the courtyard
        shapely.box(390, 200, 430, 500),  # the north wing
        shapely.box(390, -200, 430, 100),  # the south wing
    ])
    xy = [(x, y) for x in range(25, 300, 50) for y in range(25, 300, 50)]
    households = [42] * len(xy)
    xy.append((410, 150))
    households.append(60)
    xy += [(410, y) for y in (260, 320, 380, 440)]
    households += [41] * 4
    xy += [(410, y) for y in (60, 15, -30, -75, -120, -165)]
    households += [48] * 6
    c = np.array(xy, dtype=float)
    boxes = shapely.box(c[:, 0] - 10, c[:, 1] - 10, c[:, 0] + 10, c[:, 1] + 10)
    return region, gpd.GeoDataFrame({"building_id": np.arange(1, len(c) + 1),
                                     "households": households}, geometry=boxes, crs=METRIC_CRS)


def test_courtyard_hanging_on_one_building_splits_by_the_fallback(
        caplog: pytest.LogCaptureFixture) -> None:
    region, buildings = courtyard_on_one_building()
    with caplog.at_level(logging.INFO, logger="gis.democity.partition"):
        grids = grid_partition(region, buildings)
    assert_band_exact_grids(region, buildings, grids, BAND)
    assert "fallback" in caplog.text


@pytest.mark.parametrize("seed", range(40))
def test_households_along_a_path_always_split_into_the_band(seed: int) -> None:
    """What makes the fallback sound: along a path (a tree without branches), weights of at
    most 60 totalling at least 1020 always split into chunks of 300-500, and the exact split
    finds one."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 200))
    weight = rng.integers(0, 61, n)
    if weight.sum() < 1020:
        weight[: 1020 // 60 + 1] = 60
    order = rng.permutation(n)
    parent = np.full(n, -9999, dtype=np.int64)
    parent[order[1:]] = order[:-1]
    chunks = _tree_chunks(parent, order, weight, 300, 500)
    assert chunks is not None
    sums = np.bincount(chunks, weights=weight)
    assert sums.min() >= 300 and sums.max() <= 500
    along = chunks[order]
    assert (np.diff(along) != 0).sum() == len(sums) - 1  # chunks are runs of the path


def test_exact_tree_split_knows_when_a_tree_cannot_split() -> None:
    """A star of five 280-household leaves: every chunk is a leaf (too small) or the centre
    with its leaves (too big for 300-500 unless it takes exactly one)."""
    weight = np.array([0, 280, 280, 280, 280, 280])
    parent = np.array([-9999, 0, 0, 0, 0, 0])
    assert _tree_chunks(parent, np.arange(6), weight, 300, 500) is None
    chunks = _tree_chunks(parent[:2], np.arange(2), weight[:2] + 40, 300, 500)
    assert chunks is not None and chunks.tolist() == [0, 0]
