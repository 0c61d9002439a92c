"""Plan cells (gis/plan_cells.py): the pieces a planner paints between grids tile their
community exactly, never overlap, never straddle a zone or cross a street, and hold each
building once; grids rederived from their cells are one polygon each and reproduce the
drawn geometry.

Crafted world (metres in EPSG:4548, from an origin off the 1 mm grid, handed over in
EPSG:4326 like the database holds it): community A is an L-shaped block 300 m × 200 m with
the north-east 100 m × 80 m cut away; community B is the 100 m × 200 m rectangle east of it,
sharing A's east edge. A north–south street at x = 150 crosses A from edge to edge; a dead
end enters B from the north and stops halfway. Zones: W (A west of x = 150) and E (A east
of x = 160, leaving a 10 m gap along the street) and Z (all of B). Buildings: 6 in A's
west block, 4 in A's east block, 2 with the same footprint (entrance units of one tower) in
A's west block, none in B, and one outside both communities.
"""

from __future__ import annotations

from collections.abc import Iterator

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, Polygon, box
from sqlalchemy import Connection, Engine, text

from gis import plan_cells
from gis.plan_cells import build_cells, create_plan_cells, rederive_grids

METRIC = 4548
OX, OY = 440_211.3137, 4_418_733.9071  # near 116.30 E, 39.90 N; off the snapping grid
COMMUNITY_A, COMMUNITY_B = "110102020001", "110102020002"


def _m(geom: shapely.Geometry) -> shapely.Geometry:
    """A crafted geometry (metres from the origin) in EPSG:4548."""
    return shapely.affinity.translate(geom, OX, OY)


def _frame(columns: dict[str, list[object]], geoms: list[shapely.Geometry]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=[_m(g) for g in geoms], crs=METRIC).to_crs(4326)


def _footprint(x: float, y: float, w: float = 12.0, h: float = 9.0) -> Polygon:
    return box(x - w / 2, y - h / 2, x + w / 2, y + h / 2)


A = Polygon([(0, 0), (300, 0), (300, 120), (200, 120), (200, 200), (0, 200)])
B = box(300, 0, 400, 200)
ZONES = {"W": box(0, 0, 150, 200), "E": box(160, 0, 300, 200), "Z": B}
STREETS = [LineString([(150, -20), (150, 220)]), LineString([(350, 220), (350, 100)])]
WEST = [(30, 40), (90, 40), (30, 100), (90, 100), (30, 160), (90, 160)]
EAST = [(190, 30), (250, 30), (190, 90), (270, 90)]
TOWER = (120, 70)
OUTSIDE = (500, 100)


def _world() -> dict[str, gpd.GeoDataFrame | gpd.GeoSeries]:
    points = [*WEST, *EAST, TOWER, TOWER, OUTSIDE]
    buildings = _frame({"building_id": list(range(1, len(points) + 1)),
                        "households": [30 + i for i in range(len(points))]},
                       [_footprint(x, y) for x, y in points])
    return {
        "communities": _frame({"code": [COMMUNITY_A, COMMUNITY_B]}, [A, B]),
        "zones": _frame({"key": list(ZONES)}, list(ZONES.values())),
        "buildings": buildings,
        "streets": _frame({}, STREETS).geometry,
    }


@pytest.fixture(scope="module")
def crafted() -> tuple[dict[str, gpd.GeoDataFrame | gpd.GeoSeries], gpd.GeoDataFrame]:
    world = _world()
    cells = build_cells(world["communities"], world["zones"], world["buildings"],
                        world["streets"], METRIC)
    return world, cells


def _assert_tiles(cells: gpd.GeoDataFrame, communities: gpd.GeoDataFrame) -> None:
    """Per community: valid single polygons whose union is the community (area difference
    at most 0.01 %) and which overlap nowhere (pairwise intersections of no area)."""
    metric = cells.to_crs(METRIC)
    assert metric.is_valid.all()
    assert set(metric.geom_type) == {"Polygon"}
    for code, community in zip(communities["code"], communities.to_crs(METRIC).geometry,
                               strict=True):
        mine = metric[metric["community_code"] == code].geometry.to_numpy()
        assert len(mine), code
        union = shapely.union_all(mine)
        assert shapely.symmetric_difference(union, community).area <= 1e-4 * community.area
        assert abs(shapely.area(mine).sum() - community.area) <= 1e-4 * community.area
        left, right = shapely.STRtree(mine).query(mine, predicate="intersects")
        pairs = left < right
        overlap = shapely.area(shapely.intersection(mine[left[pairs]], mine[right[pairs]]))
        assert overlap.sum() < 1e-3, f"{code}: cells overlap by {overlap.sum():.4f} m²"


def test_cells_tile_each_community_without_overlaps(crafted):
    world, cells = crafted
    _assert_tiles(cells, world["communities"])
    assert list(cells.columns) == ["community_code", "zone_key", "building_id", "households",
                                   "geometry"]
    assert cells.crs.to_epsg() == 4326


def test_each_building_is_in_the_cell_holding_its_point(crafted):
    world, cells = crafted
    buildings = world["buildings"]
    ids = buildings["building_id"].tolist()
    tower_a, tower_b, outside = ids[-3], ids[-2], ids[-1]
    held = cells.dropna(subset=["building_id"])
    # every building inside a community names one cell; the tower's two entrance units
    # (same point) share one cell named by the lower id; the building outside is dropped
    assert sorted(held["building_id"].astype(int)) == sorted(set(ids) - {tower_b, outside})
    assert held["building_id"].is_unique
    points = shapely.point_on_surface(buildings.geometry.to_numpy())
    for bid, point in zip(ids, points, strict=True):
        holders = cells[cells.geometry.intersects(point)]
        if bid == outside:
            assert holders.empty
            continue
        assert len(holders) == 1
        assert int(holders["building_id"].iloc[0]) == (tower_a if bid == tower_b else bid)
    households = dict(zip(ids, buildings["households"], strict=True))
    tower = held[held["building_id"] == tower_a]
    assert tower["households"].iloc[0] == households[tower_a] + households[tower_b]
    assert cells["households"].sum() == sum(households.values()) - households[outside]
    assert (cells.loc[cells["building_id"].isna(), "households"] == 0).all()


def test_cells_split_blocks_by_voronoi_and_keep_empty_blocks_whole(crafted):
    _, cells = crafted
    metric = cells.to_crs(METRIC)
    west = metric[metric["zone_key"] == "W"]
    # west block: one cell per distinct building point (6 + the tower)
    assert len(west) == len(WEST) + 1
    assert west["building_id"].notna().all()
    # community B has no buildings: its two sides of the dead end stay one cell
    b_cells = metric[metric["community_code"] == COMMUNITY_B]
    assert len(b_cells) == 1
    assert b_cells["building_id"].isna().all()
    assert b_cells.geometry.iloc[0].area == pytest.approx(_m(B).area, rel=1e-6)


def test_cells_follow_zones_and_streets(crafted):
    world, cells = crafted
    metric = cells.to_crs(METRIC)
    zones = dict(zip(world["zones"]["key"], world["zones"].to_crs(METRIC).geometry,
                     strict=True))
    # up to the 1 mm snapping of the cells' vertices (a few cm² along a 200 m edge)
    for key, cell in zip(metric["zone_key"], metric.geometry, strict=True):
        if key is None:  # the gap between W and E along the street
            assert all(cell.intersection(z).area < 0.5 for z in zones.values())
        else:
            assert cell.difference(zones[key]).area < 0.5
    gap = metric[metric["zone_key"].isna()]
    assert len(gap) == 1
    assert gap.geometry.iloc[0].area == pytest.approx(10 * 200, rel=1e-4)
    street = _m(STREETS[0])
    inner = shapely.buffer(metric.geometry.to_numpy(), -0.01)
    assert shapely.length(shapely.intersection(inner, street)).max() == 0.0


def test_build_cells_is_deterministic(crafted):
    world, cells = crafted
    again = build_cells(world["communities"], world["zones"], world["buildings"],
                        world["streets"], METRIC)
    assert again.drop(columns="geometry").equals(cells.drop(columns="geometry"))
    assert all(a.equals_exact(b, 0) for a, b in zip(again.geometry, cells.geometry,
                                                     strict=True))


# -- a real demo community (the shared city, read only) ------------------------------------


def test_cells_of_a_demo_community_tile_it(city: Engine):
    code = "110102020001"
    with city.connect() as conn:
        communities = plan_cells.load_communities(conn, [code])
        buildings = plan_cells.load_buildings(conn, [code])
        streets = plan_cells.load_streets(conn, [code])
        grids = gpd.read_postgis(text(
            "SELECT code AS key, geom FROM grids WHERE community_code = :c "
            "AND tstzrange(valid_from, valid_to) @> now() ORDER BY code"),
            conn, geom_col="geom", params={"c": code}).rename_geometry("geometry")
    assert len(buildings) > 50 and len(streets) > 0 and len(grids) > 3
    cells = build_cells(communities, grids, buildings, streets, METRIC)
    _assert_tiles(cells, communities)
    held = cells["building_id"].dropna().astype(int)
    assert sorted(held) == sorted(buildings["building_id"])  # each building once
    assert cells["households"].sum() == buildings["households"].sum()
    assert cells["zone_key"].notna().all()  # the live grids tile the community
    metric = cells.to_crs(METRIC)
    for key, grid in zip(grids["key"], grids.to_crs(METRIC).geometry, strict=True):
        union = shapely.union_all(metric.loc[metric["zone_key"] == key].geometry.to_numpy())
        assert shapely.get_num_geometries(union) == 1
        assert shapely.symmetric_difference(union, grid).area < 0.5, key


# -- create_plan_cells and rederive_grids on a crafted plan ---------------------------------


def _wkt(geom: shapely.Geometry) -> str:
    return gpd.GeoSeries([_m(geom)], crs=METRIC).to_crs(4326).iloc[0].wkt


@pytest.fixture
def plan(engine: Engine) -> Iterator[tuple[Engine, int, dict[str, int]]]:
    """The crafted world in the database, and a draft plan over both communities whose
    grids are W ∪ gap (x < 160), E and Z."""
    world = _world()
    with engine.begin() as conn:
        for level, code, name, geom in (
            ("district", "110102", "西城区", box(-1000, -1000, 2000, 1000)),
            ("street", "110102020", "广安门外街道", box(0, 0, 400, 200)),
            ("community", COMMUNITY_A, "甲社区", A), ("community", COMMUNITY_B, "乙社区", B),
        ):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) VALUES "
                              "(:l, :c, :n, ST_Multi(ST_GeomFromText(:g, 4326)))"),
                         {"l": level, "c": code, "n": name, "g": _wkt(geom)})
        b = world["buildings"]
        ids = [int(conn.scalar(text(
            "INSERT INTO buildings (district_code, households, geom) VALUES "
            "('110102', :h, ST_Multi(ST_GeomFromText(:g, 4326))) RETURNING id"),
            {"h": int(h), "g": g.wkt})) for h, g in zip(b["households"], b.geometry,
                                                        strict=True)]
        assert ids == list(range(1, len(ids) + 1))
        for i, line in enumerate(world["streets"]):
            conn.execute(text(
                "INSERT INTO streets (name, road_class, district_code, geom) VALUES "
                "(:n, 'branch', '110102', ST_Multi(ST_GeomFromText(:g, 4326)))"),
                {"n": f"测试街{i}", "g": line.wkt})
        plan_id = int(conn.scalar(text(
            "INSERT INTO grid_plans (name, community_codes, district_code) "
            "VALUES ('测试方案', :c, '110102') RETURNING id"),
            {"c": [COMMUNITY_A, COMMUNITY_B]}))
        grids = {}
        for name, community, geom in (("W", COMMUNITY_A, A.intersection(box(0, 0, 160, 200))),
                                      ("E", COMMUNITY_A, ZONES["E"].intersection(A)),
                                      ("Z", COMMUNITY_B, B)):
            grids[name] = int(conn.scalar(text(
                "INSERT INTO grid_plan_grids (plan_id, name, community_code, geom) VALUES "
                "(:p, :n, :c, ST_Multi(ST_GeomFromText(:g, 4326))) RETURNING id"),
                {"p": plan_id, "n": name, "c": community, "g": _wkt(geom)}))
    yield engine, plan_id, grids


def _grids(conn: Connection, plan_id: int) -> pd.DataFrame:
    return pd.DataFrame(conn.execute(text("""
        SELECT id, name, households, buildings, ST_NumGeometries(geom) AS parts,
               ST_Area(ST_Transform(geom, 4548)) AS area_m2, geom IS NULL AS empty
        FROM grid_plan_grids WHERE plan_id = :p ORDER BY id
    """), {"p": plan_id}).mappings().all()).set_index("name")


def _symdiff_m2(conn: Connection, grid_id: int, wkt: str) -> float:
    return float(conn.scalar(text(
        "SELECT ST_Area(ST_SymDifference(ST_Transform(geom, 4548), "
        "ST_Transform(ST_GeomFromText(:w, 4326), 4548))) FROM grid_plan_grids WHERE id = :g"),
        {"g": grid_id, "w": wkt}))


def test_create_plan_cells_writes_cells_in_their_grids(plan):
    engine, plan_id, grids = plan
    with engine.begin() as conn:
        count = create_plan_cells(conn, plan_id, METRIC)
        again = create_plan_cells(conn, plan_id, METRIC)  # replaces, never duplicates
        rows = conn.execute(text("""
            SELECT c.plan_grid_id, c.community_code, c.building_id, c.households,
                   ST_CoveredBy(ST_Transform(c.geom, 4548),
                                ST_Buffer(ST_Transform(g.geom, 4548), 0.01)) AS inside
            FROM grid_plan_cells c LEFT JOIN grid_plan_grids g ON g.id = c.plan_grid_id
            WHERE c.plan_id = :p
        """), {"p": plan_id}).mappings().all()
    assert count == again == len(rows)
    assert all(r["plan_grid_id"] is not None and r["inside"] for r in rows)
    by_grid = pd.DataFrame(rows).groupby("plan_grid_id")["households"].sum()
    # W holds the west block, the tower and the gap cell; E the east block; Z nothing
    households = {i + 1: 30 + i for i in range(13)}
    assert by_grid[grids["W"]] == sum(households[i] for i in range(1, 7)) + households[11] \
        + households[12]
    assert by_grid[grids["E"]] == sum(households[i] for i in range(7, 11))
    assert by_grid[grids["Z"]] == 0


def test_rederived_grids_are_one_polygon_and_reproduce_their_geometry(plan):
    engine, plan_id, grids = plan
    drawn = {"W": _wkt(A.intersection(box(0, 0, 160, 200))), "E": _wkt(ZONES["E"].intersection(A)),
             "Z": _wkt(B)}
    with engine.begin() as conn:
        create_plan_cells(conn, plan_id, METRIC)
        rederive_grids(conn, plan_id, grids.values())
        after = _grids(conn, plan_id)
        diffs = {n: _symdiff_m2(conn, grids[n], drawn[n]) for n in grids}
    assert (after["parts"] == 1).all()
    assert max(diffs.values()) < 0.5, diffs
    assert after.loc["W", "buildings"] == 7 and after.loc["E", "buildings"] == 4
    assert after.loc["Z", "buildings"] == 0 and after.loc["Z", "households"] == 0


def test_rederive_after_moving_cells(plan):
    engine, plan_id, grids = plan
    with engine.begin() as conn:
        create_plan_cells(conn, plan_id, METRIC)
        # paint every cell of E into W: W becomes all of A, E empty
        conn.execute(text("UPDATE grid_plan_cells SET plan_grid_id = :w "
                          "WHERE plan_grid_id = :e"), {"w": grids["W"], "e": grids["E"]})
        rederive_grids(conn, plan_id, [grids["W"], grids["E"]])
        merged = _grids(conn, plan_id)
        whole = _symdiff_m2(conn, grids["W"], _wkt(A))
        # then one building cell of the east block back into E
        conn.execute(text("UPDATE grid_plan_cells SET plan_grid_id = :e "
                          "WHERE plan_id = :p AND building_id = 8"),
                     {"e": grids["E"], "p": plan_id})
        rederive_grids(conn, plan_id, [grids["W"], grids["E"], -1])
        split = _grids(conn, plan_id)
        overlap = conn.scalar(text(
            "SELECT ST_Area(ST_Intersection(ST_Transform(w.geom, 4548), "
            "ST_Transform(e.geom, 4548))) FROM grid_plan_grids w, grid_plan_grids e "
            "WHERE w.id = :w AND e.id = :e"), {"w": grids["W"], "e": grids["E"]})
    assert merged.loc["W", "parts"] == 1 and whole < 0.5
    assert bool(merged.loc["E", "empty"])
    assert merged.loc["E", "households"] == 0 and merged.loc["E", "buildings"] == 0
    assert merged.loc["W", "buildings"] == 11
    assert split.loc["E", "households"] == 37 and split.loc["E", "buildings"] == 1
    assert split.loc["W", "households"] == merged.loc["W", "households"] - 37
    assert (split.loc[["W", "E"], "parts"] == 1).all()
    assert overlap < 1e-3
    assert split.loc["W", "area_m2"] + split.loc["E", "area_m2"] == pytest.approx(
        _m(A).area, rel=1e-6)


def test_create_plan_cells_unknown_plan(engine: Engine):
    from gis.errors import NotFound

    with engine.begin() as conn, pytest.raises(NotFound):
        create_plan_cells(conn, 999, METRIC)


def test_cells_need_a_metric_crs(crafted):
    from gis.errors import InvalidInput

    world, _ = crafted
    with pytest.raises(InvalidInput) as err:
        build_cells(world["communities"], world["zones"], world["buildings"],
                    world["streets"], 4326)
    assert err.value.field == "metric_srid"


def test_cell_count_is_stable_for_points_on_the_grid():
    """Buildings on a lattice (co-circular points, degenerate Voronoi vertices) still give
    one cell each and a clean tiling."""
    lattice = [(x, y) for x in range(15, 300, 30) for y in range(15, 200, 30)]
    community = box(0, 0, 300, 200)
    buildings = _frame({"building_id": list(range(1, len(lattice) + 1)),
                        "households": [10] * len(lattice)},
                       [_footprint(x, y, 8, 8) for x, y in lattice])
    communities = _frame({"code": [COMMUNITY_A]}, [community])
    cells = build_cells(communities, _frame({"key": ["G"]}, [community]), buildings,
                        gpd.GeoSeries([], crs=4326), METRIC)
    _assert_tiles(cells, communities)
    assert len(cells) == len(lattice)
    assert cells["building_id"].notna().all()
    assert np.all(cells["households"] == 10)
