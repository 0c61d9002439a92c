"""Plan validation (gis/plan_validation.py) on crafted plans stored in PostGIS.

The world is drawn in metres (EPSG:4548, CGCS2000 GK 117°E) near 116.35°E 39.88°N and
stored in EPSG:4326 like any other geometry: in 广安门外街道 (110102020) community C1 is the
rectangle x 0–400 m, y 0–300 m from the origin below, community C2 the rectangle east of it
(x 400–800 m). Plans cover C1 only, so C2 is the neighbour a stray grid can reach into. The
default plan splits C1 along x = 200 into W (0–200) and E (200–400), each with four
buildings of 100 households (400, in the band 300–500); each test redraws what it needs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import geopandas as gpd
import pytest
import shapely
from shapely import affinity
from shapely.geometry import LineString, Polygon, box
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import IntegrityError

from gis import plan_validation as pv
from gis.errors import NotFound

X0, Y0 = 444_600.0, 4_415_000.0  # EPSG:4548 metres ≈ 116.35°E 39.88°N
DISTRICT, STREET = "110102", "110102020"
C1, C2 = "110102020001", "110102020002"
RULES = pv.PlanRules()
ERROR_RULES = set(pv.ERRORS)


def m(geom: Any) -> Any:
    """A geometry drawn in metres from the origin, moved to EPSG:4548 coordinates."""
    return affinity.translate(geom, X0, Y0)


def rect(x0: float, y0: float, x1: float, y1: float) -> Polygon:
    return box(x0, y0, x1, y1)


@dataclass
class World:
    """A stored world: the plan's id and its grid ids by name."""

    engine: Engine
    plan_id: int = 0
    grids: dict[str, int] = field(default_factory=dict)

    def report(self, rules: pv.PlanRules = RULES) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return pv.validate_plan(conn, self.plan_id, rules)


def _insert(conn: Connection, sql: str, wkt: str, **params: Any) -> int:
    return int(conn.scalar(text(sql), {"wkt": wkt, **params}))


# Geometries are bound as WKT in EPSG:4548 and stored in EPSG:4326.
JURISDICTION = """INSERT INTO jurisdictions (level, code, name, geom) VALUES
    (:level, :code, :name, ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326)))
    RETURNING id"""
PLAN_GRID = """INSERT INTO grid_plan_grids (plan_id, code, name, community_code, geom) VALUES
    (:plan, :code, :name, :comm, ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326)))
    RETURNING id"""
BUILDING = """INSERT INTO buildings (district_code, households, geom) VALUES
    (:district, :hh, ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326))) RETURNING id"""
STREET_LINE = """INSERT INTO streets (name, road_class, district_code, geom) VALUES
    (:name, 'branch', :district, ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326)))
    RETURNING id"""
SET_GEOM = """UPDATE grid_plan_grids
    SET geom = ST_Multi(ST_Transform(ST_GeomFromText(:wkt, 4548), 4326))
    WHERE plan_id = :plan AND name = :name"""


def build(engine: Engine, grids: dict[str, Any], buildings: Iterable[tuple[Any, int]] = (),
          streets: Iterable[Any] = (), codes: dict[str, str | None] | None = None,
          communities: dict[str, str] | None = None) -> World:
    """Store the jurisdictions, a plan of C1 with `grids` (name → polygon in metres), the
    buildings ((footprint, households)) and the streets (lines in metres)."""
    world = World(engine)
    with engine.begin() as conn:
        for level, division, geom in (("district", DISTRICT, rect(-1000, -1000, 2000, 1000)),
                                      ("street", STREET, rect(-500, -500, 1500, 800)),
                                      ("community", C1, rect(0, 0, 400, 300)),
                                      ("community", C2, rect(400, 0, 800, 300))):
            _insert(conn, JURISDICTION, m(geom).wkt, level=level, code=division,
                    name=f"测试{division}")
        world.plan_id = int(conn.scalar(text(
            "INSERT INTO grid_plans (name, community_codes, district_code) "
            "VALUES ('校验测试', :codes, :district) RETURNING id"),
            {"codes": [C1], "district": DISTRICT}))
        for k, (name, geom) in enumerate(grids.items()):
            code: str | None = (codes or {}).get(name, f"{C1}{k + 1:03d}")
            world.grids[name] = _insert(conn, PLAN_GRID, m(geom).wkt, plan=world.plan_id,
                                        code=code, name=name,
                                        comm=(communities or {}).get(name, C1))
        for geom, households in buildings:
            _insert(conn, BUILDING, m(geom).wkt, district=DISTRICT, hh=households)
        for k, line in enumerate(streets):
            _insert(conn, STREET_LINE, m(line).wkt, name=f"街巷{k}", district=DISTRICT)
    return world


def houses(x0: float, x1: float, households: Iterable[int], y0: float = 20.0,
           y1: float = 280.0) -> list[tuple[Polygon, int]]:
    """Buildings of 12 m × 10 m spread in a column band clear of x0/x1, one per household
    count, at evenly spaced heights."""
    counts = list(households)
    cx = (x0 + x1) / 2
    step = (y1 - y0) / max(len(counts), 1)
    return [(rect(cx - 6, y0 + step * (k + 0.5) - 5, cx + 6, y0 + step * (k + 0.5) + 5), hh)
            for k, hh in enumerate(counts)]


WEST, EAST = rect(0, 0, 200, 300), rect(200, 0, 400, 300)
BALANCED = houses(0, 200, [100] * 4) + houses(200, 400, [100] * 4)


def errors(report: dict[str, Any]) -> set[str]:
    return {i["rule"] for i in report["issues"] if i["severity"] == "error"}


def issues(report: dict[str, Any], rule: str) -> list[dict[str, Any]]:
    return [i for i in report["issues"] if i["rule"] == rule]


def grid_row(report: dict[str, Any], grid_id: int) -> dict[str, Any]:
    return next(g for g in report["grids"] if g["id"] == grid_id)


# -- a clean plan -------------------------------------------------------------------------


def test_a_clean_plan_passes_with_its_metrics(engine: Engine) -> None:
    world = build(engine, {"W": WEST, "E": EAST}, BALANCED)
    report = world.report()
    assert report["ok"] is True
    assert report["errors"] == 0 and report["warnings"] == 0 and report["issues"] == []
    assert report["summary"]["grids"] == 2
    assert report["summary"]["households"] == 800
    assert report["summary"]["buildings"] == 8
    assert report["summary"]["inner_boundary_m"] == pytest.approx(300, abs=1e-3)
    west = grid_row(report, world.grids["W"])
    assert west["households"] == 400 and west["buildings"] == 4 and west["in_band"]
    assert west["area_m2"] == pytest.approx(60_000, rel=1e-6)
    assert west["parts"] == 1
    assert west["polsby_popper"] == pytest.approx(4 * math.pi * 60_000 / 1000 ** 2, abs=1e-6)
    assert report["rules"]["area_tolerance_m2"] == RULES.area_tolerance_m2
    assert report["rules"]["metric_crs"] == "EPSG:4548"
    assert "1 m²" in report["rules"]["statement"]


def test_an_unknown_plan_is_not_found(engine: Engine) -> None:
    with engine.connect() as conn, pytest.raises(NotFound):
        pv.validate_plan(conn, 424242, RULES)


# -- one crafted plan per error ------------------------------------------------------------


def test_invalid_geometry_is_refused_by_postgis_and_reported_by_the_rules(
        engine: Engine) -> None:
    world = build(engine, {"W": WEST, "E": EAST}, BALANCED)
    # A spike (out along y = 150 and back) makes the ring touch itself.
    spiked = Polygon([(0, 0), (200, 0), (200, 150), (240, 150), (200, 150), (200, 300),
                      (0, 300)])
    assert not spiked.is_valid
    with engine.begin() as conn, pytest.raises(IntegrityError):
        conn.execute(text(SET_GEOM), {"wkt": m(spiked).wkt, "plan": world.plan_id,
                                      "name": "W"})
    with engine.connect() as conn:
        frames = pv.load_plan_frames(conn, world.plan_id)
    grids = frames.grids.to_crs(4548)
    grids.loc[grids["id"] == world.grids["W"], "geometry"] = m(spiked)
    report = pv.validate_frames(grids, frames.communities, frames.buildings, frames.streets,
                                RULES)
    assert errors(report) == {"invalid_geometry"}
    [issue] = issues(report, "invalid_geometry")
    assert issue["grid_ids"] == [world.grids["W"]]
    assert "Self-intersection" in issue["message"] or "self-intersection" in issue["message"]
    assert "110102020001001" in issue["message"] and "几何图形无效" in issue["message_zh"]
    assert issue["geometry"]["type"] in ("Polygon", "MultiPolygon")


def test_overlapping_grids_are_listed_in_pairs_with_the_overlap(engine: Engine) -> None:
    world = build(engine, {"W": rect(0, 0, 210, 300), "E": EAST}, BALANCED)
    report = world.report()
    assert errors(report) == {"overlap"}
    [issue] = issues(report, "overlap")
    assert sorted(issue["grid_ids"]) == sorted([world.grids["W"], world.grids["E"]])
    assert issue["area_m2"] == pytest.approx(3000, rel=1e-4)
    assert "3,000.0 m²" in issue["message"] and "重叠" in issue["message_zh"]
    overlap = shapely.geometry.shape(issue["geometry"])
    lon, lat = overlap.centroid.x, overlap.centroid.y
    assert 116.3 < lon < 116.4 and 39.8 < lat < 39.95


def test_a_gap_inside_the_community_is_reported_above_the_tolerance_only(
        engine: Engine) -> None:
    world = build(engine, {"W": rect(0, 0, 190, 300), "E": EAST}, BALANCED)
    report = world.report()
    assert errors(report) == {"gap"}
    [issue] = issues(report, "gap")
    assert issue["community_code"] == C1 and issue["grid_ids"] == []
    assert issue["area_m2"] == pytest.approx(3000, rel=1e-4)
    assert "有 3,000.0 平方米的空隙" in issue["message_zh"]
    # A 2 mm sliver (0.6 m²) is under the stated 1 m² tolerance.
    sliver = build_again(engine, {"W": rect(0, 0, 199.998, 300), "E": EAST})
    assert errors(sliver) == set()


def build_again(engine: Engine, grids: dict[str, Any]) -> dict[str, Any]:
    """Replace the plan's grid geometries (same names) and validate again."""
    with engine.begin() as conn:
        plan_id = conn.scalar(text("SELECT max(id) FROM grid_plans"))
        for name, geom in grids.items():
            conn.execute(text(SET_GEOM), {"wkt": m(geom).wkt, "plan": plan_id, "name": name})
    with engine.connect() as conn:
        return pv.validate_plan(conn, int(plan_id), RULES)


def test_a_grid_reaching_outside_every_community_is_outside_community(engine: Engine) -> None:
    world = build(engine, {"W": WEST, "E": rect(200, -10, 400, 300)}, BALANCED)
    report = world.report()
    assert errors(report) == {"outside_community"}
    [issue] = issues(report, "outside_community")
    assert issue["grid_ids"] == [world.grids["E"]]
    assert issue["area_m2"] == pytest.approx(2000, rel=1e-4)
    assert "2,000.0 m² outside its community 110102020001" in issue["message"]


def test_a_grid_materially_in_two_communities_is_multiple_communities(engine: Engine) -> None:
    world = build(engine, {"W": WEST, "E": rect(200, 0, 600, 300)},
                  houses(0, 200, [100] * 4) + houses(200, 400, [50] * 4)
                  + houses(400, 600, [50] * 4))
    report = world.report()
    assert errors(report) == {"multiple_communities"}
    [issue] = issues(report, "multiple_communities")
    assert issue["grid_ids"] == [world.grids["E"]]
    assert {c["code"]: c["area_m2"] for c in issue["communities"]} == pytest.approx(
        {C1: 60_000, C2: 60_000}, rel=1e-4)
    assert C1 in issue["message"] and C2 in issue["message"] and "跨越 2 个社区" in \
        issue["message_zh"]


def test_a_grid_in_two_pieces_is_not_contiguous(engine: Engine) -> None:
    split = shapely.MultiPolygon([rect(0, 0, 100, 300), rect(300, 0, 400, 300)])
    world = build(engine, {"W": split, "M": rect(100, 0, 300, 300)},
                  houses(0, 100, [50] * 4) + houses(300, 400, [50] * 4)
                  + houses(100, 300, [100] * 4))
    report = world.report()
    assert errors(report) == {"not_contiguous"}
    [issue] = issues(report, "not_contiguous")
    assert issue["grid_ids"] == [world.grids["W"]] and issue["parts"] == 2
    assert grid_row(report, world.grids["W"])["parts"] == 2


def test_the_household_band_is_inclusive(engine: Engine) -> None:
    grids = {"A": rect(0, 0, 200, 150), "B": rect(200, 0, 400, 150),
             "C": rect(0, 150, 200, 300), "D": rect(200, 150, 400, 300)}
    world = build(engine, grids,
                  houses(0, 200, [299], 20, 130) + houses(200, 400, [300], 20, 130)
                  + houses(0, 200, [500], 170, 280) + houses(200, 400, [501], 170, 280))
    report = world.report()
    assert errors(report) == {"households_out_of_band"}
    out = {i["grid_ids"][0]: i for i in issues(report, "households_out_of_band")}
    assert set(out) == {world.grids["A"], world.grids["D"]}
    assert "299 households, fewer than the band 300–500" in out[world.grids["A"]]["message"]
    assert "501 户，多于 300–500 户" in out[world.grids["D"]]["message_zh"]
    in_band = {g["id"]: (g["households"], g["in_band"]) for g in report["grids"]}
    assert in_band == {world.grids["A"]: (299, False), world.grids["B"]: (300, True),
                       world.grids["C"]: (500, True), world.grids["D"]: (501, False)}


# Under a 100 m² tolerance a small notch or bump is no gap or overlap, but a kiosk inside it
# is still in no grid, or in two.
COARSE = pv.PlanRules(area_tolerance_m2=100.0)


def test_a_building_in_no_grid_is_unassigned(engine: Engine) -> None:
    notched = WEST.difference(rect(190, 100, 200, 108))  # 80 m² notch on the W/E line
    kiosk = rect(192, 102, 197, 106)
    world = build(engine, {"W": notched, "E": EAST}, [*BALANCED, (kiosk, 3)])
    report = world.report(COARSE)
    assert errors(report) == {"building_unassigned"}
    [issue] = issues(report, "building_unassigned")
    assert issue["community_code"] == C1
    assert "(3 households) lies in no grid of community 110102020001" in issue["message"]
    assert report["summary"]["buildings_unassigned"] == 1
    assert report["summary"]["households"] == 800


def test_a_building_in_two_grids_is_multiply_assigned(engine: Engine) -> None:
    bumped = WEST.union(rect(200, 100, 210, 108))  # 80 m² bump into E
    kiosk = rect(202, 102, 207, 106)
    world = build(engine, {"W": bumped, "E": EAST}, [*BALANCED, (kiosk, 3)])
    report = world.report(COARSE)
    assert errors(report) == {"building_multiply_assigned"}
    [issue] = issues(report, "building_multiply_assigned")
    assert sorted(issue["grid_ids"]) == sorted([world.grids["W"], world.grids["E"]])
    assert report["summary"]["buildings_multiply_assigned"] == 1
    # Counted once: in the first grid holding it.
    assert report["summary"]["households"] == 803


# -- warnings and metrics ------------------------------------------------------------------


def test_a_thin_grid_is_not_compact(engine: Engine) -> None:
    world = build(engine, {"W": rect(0, 0, 20, 300), "E": rect(20, 0, 400, 300)},
                  houses(0, 20, [100] * 4) + houses(20, 400, [100] * 4))
    report = world.report()
    assert report["ok"] is True and errors(report) == set()
    [issue] = issues(report, "low_compactness")
    assert issue["severity"] == "warning" and issue["grid_ids"] == [world.grids["W"]]
    pp = 4 * math.pi * 6000 / 640 ** 2
    assert issue["polsby_popper"] == pytest.approx(pp, abs=1e-6)
    assert f"{pp:.3f}" in issue["message"] and "形状不紧凑" in issue["message_zh"]


def test_polsby_popper_of_a_square_is_pi_over_four(engine: Engine) -> None:
    world = build(engine, {"W": rect(0, 0, 300, 300), "E": rect(300, 0, 400, 300)},
                  houses(0, 300, [100] * 4) + houses(300, 400, [100] * 4))
    report = world.report()
    square = grid_row(report, world.grids["W"])
    assert square["polsby_popper"] == pytest.approx(math.pi / 4, abs=1e-6)
    assert square["area_m2"] == pytest.approx(90_000, abs=0.01)


def test_a_building_a_third_across_the_line_is_split_one_third_two_thirds(
        engine: Engine) -> None:
    straddling = rect(190, 50, 220, 60)  # 10 m in W, 20 m in E
    world = build(engine, {"W": WEST, "E": EAST}, [*BALANCED, (straddling, 24)])
    report = world.report()
    assert report["ok"] is True
    [row] = report["split_buildings"]
    assert row["households"] == 24
    assert row["assigned_grid_id"] == world.grids["E"]
    shares = {s["grid_id"]: s["share"] for s in row["shares"]}
    assert shares == pytest.approx({world.grids["E"]: 2 / 3, world.grids["W"]: 1 / 3},
                                   abs=1e-6)
    [issue] = issues(report, "building_split")
    assert issue["severity"] == "warning"
    assert "66.7% in grid 110102020001002" in issue["message"]
    assert "33.3% 在网格 110102020001001" in issue["message_zh"]
    assert grid_row(report, world.grids["E"])["households"] == 424
    assert report["summary"]["split_buildings"] == 1


def test_a_building_in_two_parts_on_either_side_is_split(engine: Engine) -> None:
    # Neither part touches the line x = 200: 150 m² in W, 100 m² in E.
    two_parts = shapely.MultiPolygon([rect(180, 200, 195, 210), rect(205, 200, 215, 210)])
    world = build(engine, {"W": WEST, "E": EAST}, [*BALANCED, (two_parts, 6)])
    [row] = world.report()["split_buildings"]
    assert row["assigned_grid_id"] == world.grids["W"]
    assert {s["grid_id"]: s["share"] for s in row["shares"]} == pytest.approx(
        {world.grids["W"]: 0.6, world.grids["E"]: 0.4}, abs=1e-4)


def test_a_building_barely_over_the_line_is_not_split(engine: Engine) -> None:
    barely = rect(199.95, 50, 211.95, 60)  # 0.4 % in W
    world = build(engine, {"W": WEST, "E": EAST}, [*BALANCED, (barely, 24)])
    report = world.report()
    assert report["split_buildings"] == [] and issues(report, "building_split") == []
    assert grid_row(report, world.grids["E"])["households"] == 424


def test_street_following_share_of_the_inner_boundary(engine: Engine) -> None:
    # The inner boundary is x = 200, y 0–300 (300 m). A street on it for y 0–120 covers
    # y 0–135 (its 15 m round end); a street 10 m east of it for y 200–260 covers
    # y 200 − √125 … 260 + √125; a street on the community outline (y = 0) adds nothing new
    # and the outline is not inner boundary.
    streets = [LineString([(200, 0), (200, 120)]), LineString([(210, 200), (210, 260)]),
               LineString([(0, 0), (400, 0)])]
    world = build(engine, {"W": WEST, "E": EAST}, BALANCED, streets)
    report = world.report()
    expected = (135 + 60 + 2 * math.sqrt(15 ** 2 - 10 ** 2)) / 300
    assert report["summary"]["inner_boundary_m"] == pytest.approx(300, abs=1e-3)
    assert report["summary"]["street_following_share"] == pytest.approx(expected, abs=1e-5)


def test_new_grids_without_a_code_are_named_by_plan_grid_id(engine: Engine) -> None:
    world = build(engine, {"W": rect(0, 0, 210, 300), "E": EAST}, BALANCED,
                  codes={"E": None})
    [issue] = issues(world.report(), "overlap")
    assert f"#{world.grids['E']}" in issue["message"]
    assert grid_row(world.report(), world.grids["E"])["code"] is None


def test_a_plan_with_no_grid_left_is_one_gap(engine: Engine) -> None:
    world = build(engine, {"W": WEST, "E": EAST}, BALANCED)
    with engine.begin() as conn:
        conn.execute(text("UPDATE grid_plan_grids SET geom = NULL WHERE plan_id = :p"),
                     {"p": world.plan_id})
    report = world.report()
    assert report["summary"]["grids"] == 0
    [gap] = issues(report, "gap")
    assert gap["area_m2"] == pytest.approx(120_000, rel=1e-4)
    assert {i["rule"] for i in report["issues"]} == {"gap", "building_unassigned"}
    assert report["summary"]["buildings_unassigned"] == 8


# -- the demo city (read-only) -------------------------------------------------------------


@pytest.fixture
def demo_community(city: Engine) -> Iterator[tuple[str, pv.PlanFrames]]:
    """The live grids of one community of 广安门外街道 as validation frames."""
    with city.connect() as conn:
        code = conn.scalar(text(
            "SELECT community_code FROM grids WHERE valid_to IS NULL AND street_code = :s "
            "GROUP BY community_code HAVING count(*) >= 3 ORDER BY community_code LIMIT 1"),
            {"s": STREET})
        frames = gpd.read_postgis(text(
            "SELECT id, code, community_code, geom FROM grids "
            "WHERE valid_to IS NULL AND community_code = :c ORDER BY id"), conn,
            geom_col="geom", params={"c": code})
        communities = gpd.read_postgis(text(
            "SELECT code, geom FROM jurisdictions WHERE level = 'community' AND code = :c "
            "AND valid_to IS NULL"), conn, geom_col="geom", params={"c": code})
        buildings = gpd.read_postgis(text(
            "SELECT b.id, b.households, b.geom FROM buildings b JOIN jurisdictions j "
            "ON j.code = :c AND j.valid_to IS NULL AND ST_Intersects(j.geom, b.geom)"),
            conn, geom_col="geom", params={"c": code})
        streets = gpd.read_postgis(text(
            "SELECT s.geom FROM streets s JOIN jurisdictions j ON j.code = :c "
            "AND j.valid_to IS NULL AND ST_Intersects(j.geom, s.geom)"), conn,
            geom_col="geom", params={"c": code})
    yield code, pv.PlanFrames(frames, communities, buildings, streets.geometry)


def test_the_demo_communitys_live_grids_have_no_gap_or_overlap(
        demo_community: tuple[str, pv.PlanFrames]) -> None:
    code, frames = demo_community
    report = pv.validate_frames(frames.grids, frames.communities, frames.buildings,
                                frames.streets, RULES)
    rules = {i["rule"] for i in report["issues"]}
    assert not rules & {"overlap", "gap", "outside_community", "multiple_communities",
                        "invalid_geometry", "building_unassigned",
                        "building_multiply_assigned"}
    assert report["summary"]["grids"] == len(frames.grids) >= 3
    assert report["summary"]["households"] == int(
        frames.buildings["households"][frames.buildings.representative_point().within(
            frames.communities.geometry.iloc[0])].sum())
    assert report["summary"]["inner_boundary_m"] > 0
    assert all(g["community_code"] == code for g in report["grids"])
