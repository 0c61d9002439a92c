"""多网合一 (gis/plan_merge.py): two specialised layers merged into proposed 全科网格 that hold
households in the band, are contiguous, tile their community, cut along streets and layer
boundaries, and come out the same on every run; merge_into_plan writes them into a plan.

Crafted world (metres in EPSG:4548 from an origin off the 1 mm grid, handed over in
EPSG:4326): community A is 600 m × 400 m (its east edge kinked), cut by streets at x = 200,
x = 400 (north–south) and y = 200 (east–west) into six blocks of six buildings of ~33
households: each 200 m column holds 400 households, 1,200 in all. Community B east of it
holds 9 buildings of 50 households (450: one grid). Layers, drawn over both communities and
beyond, not aligned with them: 城管 splits north/south at y = 205; 综治 splits into three at
slanted lines near x = 200 and x = 400.
"""

from __future__ import annotations

from collections.abc import Iterator

import geopandas as gpd
import pandas as pd
import pytest
import shapely
from shapely.geometry import LineString, Polygon, box
from sqlalchemy import Engine, text

from gis.errors import Conflict, InvalidInput, NotFound
from gis.plan_merge import grid_count, merge_into_plan, propose_merged_grids

METRIC = 4548
OX, OY = 440_211.3137, 4_418_733.9071
COMMUNITY_A, COMMUNITY_B = "110102020001", "110102020002"
BAND = (300, 500)
A = Polygon([(0, 0), (600, 0), (612, 205), (600, 400), (0, 400)])
B = Polygon([(600, 0), (900, 0), (900, 400), (600, 400), (612, 205)])
STREETS = [LineString([(200, -50), (200, 450)]), LineString([(400, -50), (400, 450)]),
           LineString([(-50, 200), (950, 200)]), LineString([(750, 450), (750, 300)])]
BLOCK_HOUSEHOLDS = [28, 35, 31, 37, 33, 36]  # 200 per block


def _m(geom: shapely.Geometry) -> shapely.Geometry:
    return shapely.affinity.translate(geom, OX, OY)


def _frame(columns: dict[str, list[object]], geoms: list[shapely.Geometry]) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(columns, geometry=[_m(g) for g in geoms], crs=METRIC).to_crs(4326)


def _buildings() -> gpd.GeoDataFrame:
    footprints, households = [], []
    for bx in (0, 200, 400):
        for by in (0, 200):
            for i, (dx, dy) in enumerate((dx, dy) for dx in (40, 100, 160) for dy in (50, 150)):
                x, y = bx + dx, by + dy
                footprints.append(box(x - 8, y - 6, x + 8, y + 6))
                households.append(BLOCK_HOUSEHOLDS[i])
    for dx in (660, 750, 840):
        for dy in (70, 150, 330):
            footprints.append(box(dx - 8, dy - 6, dx + 8, dy + 6))
            households.append(50)
    return _frame({"building_id": list(range(1, len(footprints) + 1)),
                   "households": households}, footprints)


def _layers() -> list[gpd.GeoDataFrame]:
    outer = box(-100, -100, 1000, 500)
    chengguan = _frame({"name": ["城管北片", "城管南片"]},
                       [outer.intersection(box(-100, 205, 1000, 500)),
                        outer.intersection(box(-100, -100, 1000, 205))])
    chengguan.attrs["name"] = "城管网格"
    cut1 = Polygon([(-100, -100), (197, -100), (205, 500), (-100, 500)])
    cut2 = Polygon([(-100, -100), (408, -100), (396, 500), (-100, 500)])
    zongzhi = _frame({"id": ["ZZ-1", "ZZ-2", "ZZ-3"]},
                     [cut1, cut2.difference(cut1), outer.difference(cut2)])
    zongzhi.attrs["name"] = "综治网格"
    return [chengguan, zongzhi]


def _world() -> dict[str, object]:
    return {"communities": _frame({"code": [COMMUNITY_A, COMMUNITY_B]}, [A, B]),
            "buildings": _buildings(), "streets": _frame({}, STREETS).geometry,
            "layers": _layers()}


def _propose(world: dict[str, object], communities: gpd.GeoDataFrame | None = None
             ) -> gpd.GeoDataFrame:
    return propose_merged_grids(world["layers"], communities if communities is not None
                                else world["communities"], world["buildings"],
                                world["streets"], BAND, METRIC)


@pytest.fixture(scope="module")
def proposal() -> tuple[dict[str, object], gpd.GeoDataFrame]:
    world = _world()
    return world, _propose(world)


def test_grid_count_keeps_the_mean_in_the_band():
    assert grid_count(0, 300, 500) == 1
    assert grid_count(450, 300, 500) == 1  # fits one grid
    assert grid_count(1000, 300, 500) == 3  # 333 is nearer 400 than 500
    assert grid_count(1200, 300, 500) == 3
    assert grid_count(3318, 300, 500) == 8
    assert grid_count(550, 300, 500) == 2  # no count fits: 275 each is nearest the band


def test_merged_grids_hold_households_in_the_band_and_tile_the_community(proposal):
    _, grids = proposal
    a = grids[grids["community_code"] == COMMUNITY_A].to_crs(METRIC)
    assert len(a) == 3
    assert a["households"].between(*BAND).all(), a["households"].tolist()
    assert a["households"].sum() == 1200
    assert a["buildings"].sum() == 36
    assert (a.geom_type == "Polygon").all()  # one part each: contiguous
    assert a.is_valid.all()
    geoms = a.geometry.to_numpy()
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            assert shapely.intersection(geoms[i], geoms[j]).area < 1e-3
    community = _m(A)
    assert shapely.symmetric_difference(shapely.union_all(geoms), community).area \
        <= 1e-4 * community.area
    assert a["name"].tolist() == ["合并网格 1", "合并网格 2", "合并网格 3"]


def test_merged_grids_cut_along_streets_and_layer_boundaries(proposal):
    _, grids = proposal
    a = grids[grids["community_code"] == COMMUNITY_A].to_crs(METRIC)
    inner = shapely.difference(shapely.union_all(a.geometry.boundary.to_numpy()),
                               shapely.buffer(_m(A).boundary, 0.01))
    follows = shapely.union_all([_m(s) for s in STREETS]
                                + [g.boundary for g in _layers()[1].to_crs(METRIC).geometry])
    near = shapely.intersection(inner, shapely.buffer(follows, 10.0)).length
    assert inner.length > 0
    assert near / inner.length >= 0.95, near / inner.length
    # the three columns: each grid holds one column of 400 households
    assert a["households"].tolist() == [400, 400, 400]


def test_sources_name_the_layer_features_with_their_shares(proposal):
    _, grids = proposal
    for sources, households in zip(grids["sources"], grids["households"], strict=True):
        by_layer = pd.DataFrame(sources).groupby("layer")
        assert set(by_layer.groups) == {"城管网格", "综治网格"}
        assert by_layer["share"].sum().round(3).eq(1.0).all()
        assert by_layer["households"].sum().eq(households).all()
    first = pd.DataFrame(grids["sources"].iloc[0])
    features = set(first["feature"])
    assert {"城管北片", "城管南片"} <= features
    assert features & {"ZZ-1", "ZZ-2", "ZZ-3"}


def test_merge_is_deterministic(proposal):
    world, grids = proposal
    again = _propose(world)
    assert again.drop(columns="geometry").equals(grids.drop(columns="geometry"))
    assert all(x.equals_exact(y, 0) for x, y in zip(again.geometry, grids.geometry,
                                                     strict=True))


def test_a_community_that_fits_one_grid_gets_one(proposal):
    _, grids = proposal
    b = grids[grids["community_code"] == COMMUNITY_B].to_crs(METRIC)
    assert len(b) == 1
    assert b["households"].iloc[0] == 450 and b["buildings"].iloc[0] == 9
    assert shapely.symmetric_difference(b.geometry.iloc[0], _m(B)).area <= 1e-4 * _m(B).area


def test_bad_layers_and_band_are_refused():
    world = _world()
    lines = gpd.GeoDataFrame({"name": ["x"]}, geometry=[_m(STREETS[0])], crs=METRIC)
    bowtie = gpd.GeoDataFrame({"name": ["x"]}, geometry=[Polygon(
        [(OX, OY), (OX + 10, OY + 10), (OX + 10, OY), (OX, OY + 10)])], crs=METRIC)
    for layers, band, field in (([lines], BAND, "layers"), ([bowtie], BAND, "layers"),
                                ([], BAND, "layers"), (world["layers"], (500, 300), "band"),
                                (world["layers"], (-1, 300), "band")):
        with pytest.raises(InvalidInput) as err:
            propose_merged_grids(layers, world["communities"], world["buildings"],
                                 world["streets"], band, METRIC)
        assert err.value.field == field


# -- merge_into_plan ------------------------------------------------------------------------


def _wkt(geom: shapely.Geometry) -> str:
    return gpd.GeoSeries([_m(geom)], crs=METRIC).to_crs(4326).iloc[0].wkt


@pytest.fixture
def plan(engine: Engine) -> Iterator[tuple[Engine, int]]:
    """The crafted world in the database and a draft plan over both communities holding one
    old grid (replaced by the merge)."""
    world = _world()
    with engine.begin() as conn:
        for level, code, name, geom in (
            ("district", "110102", "西城区", box(-2000, -2000, 3000, 2000)),
            ("street", "110102020", "广安门外街道", box(0, 0, 900, 400)),
            ("community", COMMUNITY_A, "甲社区", A), ("community", COMMUNITY_B, "乙社区", B),
        ):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) VALUES "
                              "(:l, :c, :n, ST_Multi(ST_GeomFromText(:g, 4326)))"),
                         {"l": level, "c": code, "n": name, "g": _wkt(geom)})
        b = world["buildings"]
        for h, g in zip(b["households"], b.geometry, strict=True):
            conn.execute(text("INSERT INTO buildings (district_code, households, geom) VALUES "
                              "('110102', :h, ST_Multi(ST_GeomFromText(:g, 4326)))"),
                         {"h": int(h), "g": g.wkt})
        for i, line in enumerate(world["streets"]):
            conn.execute(text(
                "INSERT INTO streets (name, road_class, district_code, geom) VALUES "
                "(:n, 'branch', '110102', ST_Multi(ST_GeomFromText(:g, 4326)))"),
                {"n": f"测试街{i}", "g": line.wkt})
        plan_id = int(conn.scalar(text(
            "INSERT INTO grid_plans (name, community_codes, district_code, source) "
            "VALUES ('多网合一', :c, '110102', 'merge') RETURNING id"),
            {"c": [COMMUNITY_A, COMMUNITY_B]}))
        conn.execute(text("INSERT INTO grid_plan_grids (plan_id, name, community_code, geom) "
                          "VALUES (:p, '旧', :c, ST_Multi(ST_GeomFromText(:g, 4326)))"),
                     {"p": plan_id, "c": COMMUNITY_A, "g": _wkt(A)})
    yield engine, plan_id


def test_merge_into_plan_writes_grids_and_their_cells(plan):
    engine, plan_id = plan
    with engine.begin() as conn:
        summary = merge_into_plan(conn, plan_id, _layers(), BAND, METRIC)
        grids = pd.DataFrame(conn.execute(text("""
            SELECT g.id, g.code, g.name, g.community_code, g.households, g.buildings,
                   g.source_grid_id, g.properties, ST_NumGeometries(g.geom) AS parts,
                   ST_Area(ST_SymDifference(ST_Transform(g.geom, 4548),
                           ST_Transform(u.geom, 4548))) AS cells_vs_grid_m2,
                   u.households AS cell_households
            FROM grid_plan_grids g
            JOIN (SELECT plan_grid_id, ST_Union(geom) AS geom, sum(households) AS households
                  FROM grid_plan_cells WHERE plan_id = :p GROUP BY plan_grid_id) u
              ON u.plan_grid_id = g.id
            WHERE g.plan_id = :p ORDER BY g.community_code, g.name
        """), {"p": plan_id}).mappings().all())
        unassigned = conn.scalar(text("SELECT count(*) FROM grid_plan_cells "
                                      "WHERE plan_id = :p AND plan_grid_id IS NULL"),
                                 {"p": plan_id})
        cells = conn.scalar(text("SELECT count(*) FROM grid_plan_cells WHERE plan_id = :p"),
                            {"p": plan_id})
        total = conn.scalar(text("SELECT count(*) FROM grid_plan_grids WHERE plan_id = :p"),
                            {"p": plan_id})
    assert total == len(grids) == 4  # the old grid is gone; every grid has cells
    assert unassigned == 0 and cells == summary["cells"]
    assert grids["code"].isna().all() and grids["source_grid_id"].isna().all()
    assert grids["name"].tolist() == ["合并网格 1", "合并网格 2", "合并网格 3", "合并网格 1"]
    assert grids["community_code"].tolist() == [COMMUNITY_A] * 3 + [COMMUNITY_B]
    assert (grids["parts"] == 1).all()
    assert (grids["cells_vs_grid_m2"] < 1e-6).all()  # each grid is the union of its cells
    assert (grids["households"] == grids["cell_households"]).all()
    assert grids["households"].tolist() == [400, 400, 400, 450]
    assert grids["buildings"].tolist() == [12, 12, 12, 9]
    sources = grids["properties"].iloc[0]["sources"]
    assert {s["layer"] for s in sources} == {"城管网格", "综治网格"}
    assert summary["grids"] == 4 and summary["grids_out_of_band"] == 0
    assert summary["households_min"] == 400 and summary["households_max"] == 450
    assert [c["grids"] for c in summary["communities"]] == [3, 1]
    assert summary["layers"] == [{"name": "城管网格", "features": 2},
                                 {"name": "综治网格", "features": 3}]


def test_merge_into_plan_follows_the_band_and_reports_grids_outside_it(plan):
    engine, plan_id = plan
    with engine.begin() as conn:
        narrow = merge_into_plan(conn, plan_id, _layers(), (100, 200), METRIC)
        wide = merge_into_plan(conn, plan_id, _layers(), (500, 700), METRIC)
        grids = conn.scalar(text("SELECT count(*) FROM grid_plan_grids WHERE plan_id = :p"),
                            {"p": plan_id})
    # 100-200: A's 1,200 households → 8 grids of ~150; B's 450 (9 × 50) → 3 of 150
    assert [c["grids"] for c in narrow["communities"]] == [8, 3]
    assert narrow["grids_out_of_band"] == 0
    assert 100 <= narrow["households_min"] and narrow["households_max"] <= 200
    # 500-700: A → 2 grids of 600; B's 450 is below the band and stays one grid, reported
    assert [c["grids"] for c in wide["communities"]] == [2, 1]
    assert [c["out_of_band"] for c in wide["communities"]] == [0, 1]
    assert wide["grids_out_of_band"] == 1 and wide["households_min"] == 450
    assert grids == 3  # the second merge replaced the first


def test_merge_into_plan_refuses_non_drafts_and_unknown_plans(plan):
    engine, plan_id = plan
    with engine.begin() as conn:
        conn.execute(text("UPDATE grid_plans SET status = 'approved' WHERE id = :p"),
                     {"p": plan_id})
        with pytest.raises(Conflict):
            merge_into_plan(conn, plan_id, _layers(), BAND, METRIC)
        with pytest.raises(NotFound):
            merge_into_plan(conn, plan_id + 1, _layers(), BAND, METRIC)
