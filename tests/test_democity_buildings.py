"""Synthetic buildings of the demo city: placement in blocks, the mix of kinds, households,
determinism, and the building astride the 西城/丰台 border."""

from __future__ import annotations

import math
import time

import geopandas as gpd
import numpy as np
import pytest
import shapely
from shapely import affinity
from shapely.geometry import Point, Polygon

from gis.democity.buildings import (
    COLUMNS,
    MAX_HOUSEHOLDS,
    generate_buildings,
    insert_building,
    road_buffers,
    straddling_building,
)
from gis.democity.model import DEMO, METRIC_CRS, to_metric

CENTRE = to_metric(np.array([116.395]), np.array([39.905]))  # just south of Tiananmen
CX, CY = float(CENTRE[0][0]), float(CENTRE[1][0])


def wobbly_area(cx: float, cy: float, rx: float, ry: float, seed: int = 0) -> Polygon:
    """An irregular, slightly concave area around (cx, cy)."""
    t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    rng = np.random.default_rng(seed)
    r = 1 + 0.08 * np.sin(3 * t + rng.uniform(0, 6)) + 0.05 * np.cos(5 * t + rng.uniform(0, 6))
    return Polygon(np.column_stack([cx + rx * r * np.cos(t), cy + ry * r * np.sin(t)]))


def synthetic_roads(area: Polygon, *, alleys: Polygon | None = None,
                    turn_deg: float = 8.0) -> gpd.GeoDataFrame:
    """A turned road grid over the area (arterials 1 km, secondaries 500 m, branches 250 m),
    a diagonal road, and east-west alleys every 80 m in `alleys`."""
    x0, y0, x1, y1 = area.bounds
    span = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rows: list[tuple[str, shapely.LineString]] = []
    for off in np.arange(-span, span + 1, 250.0):
        cls = "arterial" if off % 1000 == 0 else "secondary" if off % 500 == 0 else "branch"
        rows.append((cls, shapely.LineString([(cx + off, cy - span), (cx + off, cy + span)])))
        rows.append((cls, shapely.LineString([(cx - span, cy + off), (cx + span, cy + off)])))
    rows.append(("secondary", shapely.LineString([(cx - span, cy - span), (cx + span, cy + span)])))
    if alleys is not None:
        ax0, ay0, ax1, ay1 = alleys.bounds
        for y in np.arange(ay0 + 40, ay1, 80.0):
            rows.append(("alley", shapely.LineString([(ax0, y), (ax1, y)])))
    turned = np.array([affinity.rotate(g, turn_deg, origin=(cx, cy)) for _, g in rows])
    clipped = shapely.intersection(turned, area.buffer(30))
    keep = ~shapely.is_empty(clipped)
    classes = np.array([c for c, _ in rows])[keep]
    frame = gpd.GeoDataFrame({"road_class": classes}, geometry=clipped[keep], crs=METRIC_CRS)
    return frame.explode(ignore_index=True)


AREA = wobbly_area(CX, CY, 1500, 1000)
ALLEY_ZONE = shapely.box(CX - 1500, CY - 200, CX + 100, CY + 1100)
ROADS = synthetic_roads(AREA, alleys=ALLEY_ZONE)


@pytest.fixture(scope="module")
def buildings() -> gpd.GeoDataFrame:
    return generate_buildings(AREA, ROADS, np.random.default_rng(7),
                              density_core=DEMO.buildings_per_km2_core, alley_zone=ALLEY_ZONE)


def overlapping_area(a: np.ndarray, b: np.ndarray, *, same: bool) -> float:
    """Total area shared between geometries of a and b (distinct pairs when same)."""
    i, j = shapely.STRtree(b).query(a, predicate="intersects")
    if same:
        keep = i < j
        i, j = i[keep], j[keep]
    return float(shapely.area(shapely.intersection(a[i], b[j])).sum())


def test_frame_has_the_documented_columns(buildings: gpd.GeoDataFrame) -> None:
    assert list(buildings.columns) == COLUMNS
    assert buildings.crs == METRIC_CRS
    assert buildings["building_id"].is_unique
    assert buildings["building_id"].dtype == np.int64
    assert set(buildings.geom_type) == {"Polygon"}
    assert buildings.is_valid.all()
    assert 1_000 < len(buildings) < 20_000


def test_buildings_lie_in_the_area_and_overlap_nothing(buildings: gpd.GeoDataFrame) -> None:
    fp = np.asarray(buildings.geometry.values, dtype=object)
    assert shapely.within(fp, AREA).all()
    assert overlapping_area(fp, fp, same=True) < 1e-6
    assert overlapping_area(fp, road_buffers(ROADS), same=False) < 1e-6


def test_households_and_floors(buildings: gpd.GeoDataFrame) -> None:
    assert buildings["floors"].min() >= 1
    assert buildings["households"].between(0, MAX_HOUSEHOLDS).all()
    homes = buildings["use"].isin(["residential", "mixed"])
    assert (buildings.loc[homes, "households"] >= 1).all()
    assert (buildings.loc[~homes, "households"] == 0).all()
    assert set(buildings["use"]) <= {"residential", "mixed", "office", "public", "commercial"}
    assert {"office", "public", "commercial"} <= set(buildings["use"])
    assert buildings["households"].sum() > 20_000


def test_alley_zone_is_mostly_courtyard_houses(buildings: gpd.GeoDataFrame) -> None:
    c = shapely.get_coordinates(buildings.centroid.values)
    inside = buildings[shapely.contains_xy(ALLEY_ZONE, c[:, 0], c[:, 1])]
    court = inside[(inside["floors"] == 1) & (inside["use"] == "residential")]
    assert len(inside) > 500
    assert len(court) / len(inside) > 0.7
    assert court.area.between(150 - 1e-6, 600 + 1e-6).all()
    assert court["households"].between(1, 6).all()
    outside = buildings.drop(index=inside.index)
    assert (outside["floors"] >= 6).mean() > 0.5  # walk-ups and towers in town


def test_buildings_are_oriented_along_the_nearest_road(buildings: gpd.GeoDataFrame) -> None:
    fp = np.asarray(buildings.geometry.values, dtype=object)
    xy = shapely.get_coordinates(fp)
    # footprints are rectangles: the first edge gives the orientation
    first = xy.reshape(len(fp), 5, 2)
    edge = first[:, 1] - first[:, 0]
    b_angle = np.degrees(np.arctan2(edge[:, 1], edge[:, 0]))
    roads = np.asarray(ROADS.geometry.values, dtype=object)
    q, t = shapely.STRtree(roads).query_nearest(shapely.centroid(fp), all_matches=False)
    r = shapely.get_coordinates(roads[t]).reshape(len(t), -1, 2)
    r_angle = np.degrees(np.arctan2(r[:, -1, 1] - r[:, 0, 1], r[:, -1, 0] - r[:, 0, 0]))
    diff = np.abs((b_angle[q] - r_angle + 45) % 90 - 45)
    assert (diff < 1.0).mean() > 0.9


def test_same_seed_same_buildings_other_seed_different(buildings: gpd.GeoDataFrame) -> None:
    again = generate_buildings(AREA, ROADS, np.random.default_rng(7),
                               density_core=DEMO.buildings_per_km2_core, alley_zone=ALLEY_ZONE)
    assert again.drop(columns="geometry").equals(buildings.drop(columns="geometry"))
    assert (again.geometry.to_wkb() == buildings.geometry.to_wkb()).all()
    other = generate_buildings(AREA, ROADS, np.random.default_rng(8),
                               density_core=DEMO.buildings_per_km2_core, alley_zone=ALLEY_ZONE)
    assert len(other) != len(buildings) or not (
        other.geometry.to_wkb().to_numpy() == buildings.geometry.to_wkb().to_numpy()).all()


def test_density_falls_with_distance_but_villages_keep_households() -> None:
    """A rural township 28 km out still houses more than 1 500 households in 10 km²."""
    far = to_metric(np.array([116.10]), np.array([39.78]))
    rural = wobbly_area(float(far[0][0]), float(far[1][0]), 1900, 1700, seed=3)
    assert 9e6 < rural.area < 11e6
    roads = synthetic_roads(rural).query("road_class != 'branch'")
    b = generate_buildings(rural, roads, np.random.default_rng(1),
                           density_core=DEMO.buildings_per_km2_core, alley_zone=None)
    assert b["households"].sum() > 1_500
    assert len(b) / (rural.area / 1e6) < 400
    assert (b["floors"] <= 4).mean() > 0.8  # villages and low-rise


def test_first_id_offsets_building_ids(buildings: gpd.GeoDataFrame) -> None:
    small = wobbly_area(CX, CY, 300, 300)
    b = generate_buildings(small, synthetic_roads(small), np.random.default_rng(1),
                           density_core=900, alley_zone=None, first_id=1_000_001)
    assert b["building_id"].min() == 1_000_001
    assert b["building_id"].max() == 1_000_000 + len(b)


def test_quarter_of_a_district_builds_in_seconds() -> None:
    """~25 km² of city around the old town, with its alleys, well under 30 s."""
    area = wobbly_area(CX + 1500, CY - 1500, 2900, 2800, seed=5)
    assert 23e6 < area.area < 28e6
    zone = shapely.box(CX - 1000, CY - 1500, CX + 2500, CY + 1500)
    roads = synthetic_roads(area, alleys=zone)
    start = time.perf_counter()
    b = generate_buildings(area, roads, np.random.default_rng(3), density_core=900,
                           alley_zone=zone)
    elapsed = time.perf_counter() - start
    assert elapsed < 30
    assert 5_000 < len(b) < 40_000


# -- the building astride two jurisdictions ----------------------------------------------


def wavy_neighbours(turn_deg: float = 20.0) -> tuple[Polygon, Polygon]:
    """Two polygons sharing a wavy border (A north, B south), turned around (0, 0)."""
    xs = np.linspace(0, 2000, 80)
    border = list(zip(xs, 40 * np.sin(xs / 150.0), strict=True))
    a = Polygon([*border, (2000, 1000), (0, 1000)])
    b = Polygon([(0, -1000), (2000, -1000), *border[::-1]])
    return (affinity.rotate(a, turn_deg, origin=(0, 0)),
            affinity.rotate(b, turn_deg, origin=(0, 0)))


@pytest.mark.parametrize("x", [300.0, 777.0, 1500.0])
def test_straddling_building_is_one_third_in_side_a(x: float) -> None:
    a, b = wavy_neighbours()
    anchor = affinity.rotate(Point(x, 40 * math.sin(x / 150.0)), 20.0, origin=(0, 0))
    poly = straddling_building(a, b, anchor)
    assert poly.is_valid
    assert abs(poly.area - 2000.0) / 2000.0 < 0.02
    assert abs(poly.intersection(a).area / poly.area - 1 / 3) < 0.005
    assert abs(poly.intersection(b).area / poly.area - 2 / 3) < 0.005
    assert poly.centroid.distance(anchor) < 40


def test_straddling_building_follows_the_border() -> None:
    a, b = wavy_neighbours(turn_deg=35.0)
    shared = a.boundary.intersection(b.boundary)
    anchor = shared.interpolate(0.5, normalized=True)
    poly = straddling_building(a, b, anchor, area_m2=1500.0, share_a=0.5)
    assert abs(poly.intersection(a).area / poly.area - 0.5) < 0.005
    c = np.asarray(poly.exterior.coords)
    long_edge = max((c[1] - c[0], c[2] - c[1]), key=lambda v: float(np.hypot(*v)))
    d = shared.project(anchor)
    p, q = shared.interpolate(d - 10), shared.interpolate(d + 10)
    border_deg = math.degrees(math.atan2(q.y - p.y, q.x - p.x))
    edge_deg = math.degrees(math.atan2(long_edge[1], long_edge[0]))
    assert abs((edge_deg - border_deg + 90) % 180 - 90) < 1.0


def test_straddling_building_rejects_bad_input() -> None:
    a, b = wavy_neighbours()
    anchor = a.boundary.intersection(b.boundary).interpolate(0.5, normalized=True)
    with pytest.raises(ValueError, match="floors"):
        straddling_building(a, b, anchor, floors=0)
    with pytest.raises(ValueError, match="share_a"):
        straddling_building(a, b, anchor, share_a=1.2)
    far_b = affinity.translate(b, 0, -5000)
    with pytest.raises(ValueError, match="side_b"):
        straddling_building(a, far_b, anchor)


def test_insert_building_replaces_what_it_covers(buildings: gpd.GeoDataFrame) -> None:
    target = buildings.geometry.iloc[100].centroid
    footprint = shapely.box(target.x - 30, target.y - 20, target.x + 30, target.y + 20)
    out = insert_building(buildings, footprint, floors=2, households=0, use="commercial")
    fp = np.asarray(out.geometry.values, dtype=object)
    assert overlapping_area(fp, fp, same=True) < 1e-6
    assert list(out.columns) == COLUMNS
    new = out.iloc[-1]
    assert new["building_id"] == buildings["building_id"].max() + 1
    assert new.geometry.equals(footprint)
    assert len(out) < len(buildings) + 1
