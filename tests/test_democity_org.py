"""Demo-city organisation: 1+5+N departments, teams on road nodes of their street (and the
documented cross-border ones just across), chiefs/stewards/grid workers on a small synthetic
city built here (two districts, four street offices, a road lattice, buildings)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from gis.catalog import load_catalog
from gis.democity import org
from gis.democity.model import METRIC_CRS, rng_for, to_metric

NOW = datetime(2026, 11, 20, 15, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
# Two districts, north 西城 (y 2000–4000) and south 丰台 (y 0–2000), split at x = 1500 into
# two street offices each: 广外 sits on 太平桥 like the real pair.
STREETS = {
    "110102020": ("广安门外街道", (0, 2000, 1500, 4000)),
    "110102017": ("广安门内街道", (1500, 2000, 3000, 4000)),
    "110106002": ("太平桥街道", (0, 0, 1500, 2000)),
    "110106001": ("右安门街道", (1500, 0, 3000, 2000)),
}
SPACING = 250.0


@dataclass
class SmallCity:
    """Frames shaped like the real generators' outputs (METRIC_CRS, metres)."""

    origin: tuple[float, float]
    jurisdictions: gpd.GeoDataFrame
    grids: gpd.GeoDataFrame
    road_nodes: gpd.GeoDataFrame
    jiexiang: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame

    @property
    def streets(self) -> gpd.GeoDataFrame:
        return self.jurisdictions[self.jurisdictions["level"] == "street"]


def _box(ox: float, oy: float, b: tuple[float, float, float, float]) -> shapely.Polygon:
    return shapely.box(ox + b[0], oy + b[1], ox + b[2], oy + b[3])


def _jurisdictions(ox: float, oy: float) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    rows, grids = [], []
    for d, name, b in (("110102", "西城区", (0, 2000, 3000, 4000)),
                       ("110106", "丰台区", (0, 0, 3000, 2000))):
        rows.append({"level": "district", "code": d, "name": name, "kind": "区",
                     "geometry": _box(ox, oy, b)})
    for code, (name, b) in STREETS.items():
        rows.append({"level": "street", "code": code, "name": name, "kind": "街道",
                     "geometry": _box(ox, oy, b)})
        x0, y0, x1, y1 = b
        for c, (cy0, cy1) in enumerate(((y0, (y0 + y1) / 2), ((y0 + y1) / 2, y1)), start=1):
            community = f"{code}{c:03d}"
            rows.append({"level": "community", "code": community, "name": f"{name}{c}社区",
                         "kind": "社区", "geometry": _box(ox, oy, (x0, cy0, x1, cy1))})
            xm, ym = (x0 + x1) / 2, (cy0 + cy1) / 2
            quads = ((x0, cy0, xm, ym), (xm, cy0, x1, ym), (x0, ym, xm, cy1), (xm, ym, x1, cy1))
            for g, q in enumerate(quads, start=1):
                grids.append({"code": f"{community}{g:03d}", "name": f"{community}网格{g}",
                              "households": 400, "geometry": _box(ox, oy, q)})
    return (gpd.GeoDataFrame(rows, crs=METRIC_CRS), gpd.GeoDataFrame(grids, crs=METRIC_CRS))


def _road_class(i: int) -> str:
    return "arterial" if i % 6 == 0 else "secondary" if i % 3 == 0 else "branch"


def _roads(ox: float, oy: float) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """A 250 m lattice of nodes; 街巷 = each lattice line clipped to each street office, plus
    胡同 alleys between the lines in 广外."""
    xs, ys = np.arange(0, 3001, SPACING), np.arange(0, 4001, SPACING)
    gx, gy = np.meshgrid(xs, ys)
    nodes = gpd.GeoDataFrame({"node_id": np.arange(gx.size, dtype=np.int64)},
                             geometry=shapely.points(ox + gx.ravel(), oy + gy.ravel()),
                             crs=METRIC_CRS)
    rows = []
    for code, (name, b) in STREETS.items():
        poly = _box(ox, oy, b)
        base = name.removesuffix("街道")
        for i, x in enumerate(xs):
            rows.append((code, f"{base}南北{i}路", _road_class(i),
                         shapely.LineString([(ox + x, oy), (ox + x, oy + 4000)]), poly))
        for j, y in enumerate(ys):
            rows.append((code, f"{base}东西{j}街", _road_class(j),
                         shapely.LineString([(ox, oy + y), (ox + 3000, oy + y)]), poly))
        if code == "110102020":
            for j in range(8, 16):
                y = 125 + j * SPACING
                rows.append((code, f"广外{j}条胡同", "alley",
                             shapely.LineString([(ox + 10, oy + y), (ox + 1490, oy + y)]), poly))
    out = []
    for k, (code, name, cls, line, poly) in enumerate(rows):
        part = shapely.intersection(line, poly)
        if part.length < 1:
            continue
        geom = part if part.geom_type == "MultiLineString" else shapely.MultiLineString(
            [part] if part.geom_type == "LineString" else list(part.geoms))
        out.append({"street_key": f"S{k:04d}", "name": name, "road_class": cls,
                    "district_code": code[:6], "street_office_code": code, "geometry": geom})
    return nodes, gpd.GeoDataFrame(out, crs=METRIC_CRS)


def _buildings(ox: float, oy: float, rng: np.random.Generator) -> gpd.GeoDataFrame:
    """In every lattice cell: four 30 × 15 m buildings fronting the streets (25 m back) and
    one 30 × 30 m building in the middle of the block."""
    cx, cy = np.meshgrid(np.arange(0, 3000, SPACING), np.arange(0, 4000, SPACING))
    offs = np.array([(25, 25, 30, 15), (195, 25, 30, 15), (25, 210, 30, 15),
                     (195, 210, 30, 15), (110, 110, 30, 30)])
    x0 = (cx.ravel()[:, None] + offs[:, 0]).ravel() + ox
    y0 = (cy.ravel()[:, None] + offs[:, 1]).ravel() + oy
    w = np.tile(offs[:, 2], cx.size)
    h = np.tile(offs[:, 3], cx.size)
    geoms = shapely.box(x0, y0, x0 + w, y0 + h)
    n = len(geoms)
    return gpd.GeoDataFrame({"building_id": np.arange(1, n + 1, dtype=np.int64),
                             "floors": rng.integers(2, 7, n),
                             "households": rng.integers(10, 80, n),
                             "use": "residential"}, geometry=geoms, crs=METRIC_CRS)


def small_city(seed: int = 7) -> SmallCity:
    """The synthetic two-district city, placed near 广外/太平桥 in METRIC_CRS."""
    x, y = to_metric(np.array([116.33]), np.array([39.86]))
    ox, oy = float(x[0]), float(y[0])
    jur, grids = _jurisdictions(ox, oy)
    nodes, jiexiang = _roads(ox, oy)
    return SmallCity((ox, oy), jur, grids, nodes, jiexiang,
                     _buildings(ox, oy, rng_for(seed, "test-buildings")))


@pytest.fixture(scope="module")
def city() -> SmallCity:
    return small_city()


def _departments() -> pd.DataFrame:
    streets = {code: name for code, (name, _) in STREETS.items()}
    return org.departments(["110102", "110106"], streets, rng_for(1, "departments"))


def _teams(city: SmallCity, per_street: int = 8, seed: int = 1) -> pd.DataFrame:
    return org.teams(_departments(), city.jurisdictions, city.road_nodes,
                     rng_for(seed, "teams"), per_street, now=NOW, catalog=load_catalog())


# -- departments --------------------------------------------------------------------------

def test_departments_follow_1_plus_5_plus_n_per_district() -> None:
    deps = _departments()
    assert deps["code"].is_unique
    district_level = deps[deps["jurisdiction_code"].str.len() == 6]
    for d, group in district_level.groupby("district_code"):
        tiers = group["tier"].value_counts()
        assert tiers["core"] == 1 and tiers["stationed"] == 5 and tiers["on_call"] >= 5, d
        core = group[group["tier"] == "core"].iloc[0]
        assert core["dept_type"] == "urban_management"
        assert set(group.loc[group["tier"] == "stationed", "dept_type"]) == {
            "public_security", "fire", "traffic", "market_supervision", "food_drug"}
    assert "西城区城管执法局" in set(deps["name"])
    offices = deps[deps["dept_type"] == "street_office"]
    assert set(offices["jurisdiction_code"]) == set(STREETS)
    assert "广安门外街道办事处" in set(offices["name"])
    assert deps["dept_type"].str.fullmatch("[a-z_]+").all()


def test_department_types_are_the_catalogs() -> None:
    known = set(load_catalog().department_types)
    assert set(_departments()["dept_type"]) <= known


# -- teams --------------------------------------------------------------------------------

def test_teams_per_street_with_known_capabilities(city: SmallCity) -> None:
    teams = _teams(city)
    catalog = load_catalog()
    assert len(teams) == 8 * len(STREETS) and teams["code"].is_unique
    assert (teams.groupby("home_code").size() == 8).all()
    deps = _departments()
    assert set(teams["department_code"]) <= set(deps["code"])
    class_keys = set(catalog.classes["kind"] + ":" + catalog.classes["code"])
    for caps in teams["capabilities"]:
        assert caps and set(caps) <= set(catalog.department_types) | class_keys
    assert any(":" in c for caps in teams["capabilities"] for c in caps)
    assert "广安门外街道城管执法队" in set(teams["name"])
    assert "广安门外派出所巡逻组" in set(teams["name"])
    assert set(teams["status"]) <= {"available", "busy", "off_duty", "out_of_service"}
    assert (teams["status"] == "available").mean() > 0.5
    assert (teams["members"] > 0).all()


def test_team_positions_on_road_nodes_in_their_street(city: SmallCity) -> None:
    teams = _teams(city)
    node_xy = set(zip(shapely.get_x(city.road_nodes.geometry.values),
                      shapely.get_y(city.road_nodes.geometry.values), strict=True))
    assert all(xy in node_xy for xy in zip(teams["x"], teams["y"], strict=True))
    polys = city.streets.set_index("code").geometry
    pts = shapely.points(teams["x"], teams["y"])
    home = teams["placement"] == "home"
    inside = shapely.covers(polys.loc[teams["home_code"]].values, pts)
    assert inside[home.to_numpy()].all()
    across = teams[~home]
    # two border pairs (广外/太平桥 first, then 广内/右安门), one 城管 team each way
    assert len(across) == 4 and (across["dept_type"] == "urban_management").all()
    assert set(across["home_code"]) == set(STREETS)
    for _, t in across.iterrows():
        p = shapely.Point(t["x"], t["y"])
        assert t["position_code"] != t["home_code"]
        assert t["position_code"][:6] != t["home_code"][:6]
        assert polys.loc[t["position_code"]].contains(p)
        assert 10 <= polys.loc[t["home_code"]].distance(p) <= 400


def test_border_pairs_put_guangwai_taipingqiao_first(city: SmallCity) -> None:
    streets = city.streets.sort_values("code").reset_index(drop=True)
    pairs = org.border_pairs(streets)
    codes = streets["code"]
    assert {codes[pairs["a"][0]], codes[pairs["b"][0]]} == {"110102020", "110106002"}
    assert len(pairs) == 2 and (pairs["shared_m"] > 1400).all()  # corners do not count


def test_cross_border_team_is_nearer_than_the_home_teams(city: SmallCity) -> None:
    """An incident just inside 太平桥 by the border: the 广外 城管 team across the line is
    nearer than any of 太平桥's own 城管 teams."""
    teams = _teams(city)
    guangwai = teams[(teams["placement"] == "cross_border") & (teams["home_code"] == "110102020")]
    t = guangwai.iloc[0]
    incident = shapely.Point(t["x"] + 5, t["y"] - 20)
    own = teams[(teams["home_code"] == "110106002") & (teams["dept_type"] == "urban_management")
                & (teams["placement"] == "home")]
    d_own = shapely.distance(incident, shapely.points(own["x"], own["y"])).min()
    assert incident.distance(shapely.Point(t["x"], t["y"])) < d_own


def test_team_positions_fresh_and_stale(city: SmallCity) -> None:
    teams = _teams(city, per_street=15)
    age = (pd.Timestamp(NOW) - teams["position_at"]).dt.total_seconds() / 60
    assert (age >= 0).all()
    assert (age <= 30).mean() > 0.6 and (age > 30).any()


def test_streets_without_nodes_use_the_nearest(city: SmallCity) -> None:
    far = city.road_nodes[shapely.get_y(city.road_nodes.geometry.values) > city.origin[1] + 2100]
    teams = org.teams(_departments(), city.jurisdictions, far, rng_for(1, "teams"), 7,
                      now=NOW, cross_border=0)
    south = teams[teams["district_code"] == "110106"]
    assert len(south) == 14 and south["node_id"].isin(far["node_id"]).all()


def test_teams_are_deterministic(city: SmallCity) -> None:
    pd.testing.assert_frame_equal(_teams(city, seed=3), _teams(city, seed=3))


# -- people -------------------------------------------------------------------------------

def test_people_and_assignments(city: SmallCity) -> None:
    names = {code: name for code, (name, _) in STREETS.items()}
    people, streets, grids = org.people_and_assignments(
        city.jiexiang, city.grids, rng_for(1, "people"), office_names=names)
    assert people["person_id"].is_unique
    chiefs = streets[streets["role"] != "steward"]
    assert chiefs["street_key"].is_unique
    assert set(chiefs["street_key"]) == set(city.jiexiang["street_key"])
    cls = city.jiexiang.set_index("street_key")["road_class"]
    role = chiefs.set_index("street_key")["role"]
    assert (role[cls.index[cls == "alley"]] == "alley_chief").all()
    assert (role[cls.index[cls != "alley"]] == "street_chief").all()
    stewards = streets[streets["role"] == "steward"]
    assert cls.loc[stewards["street_key"]].isin(["branch", "alley"]).all()
    per_street = stewards.groupby("street_key").size()
    assert per_street.between(1, 2).all()
    assert set(per_street.index) == set(cls.index[cls.isin(["branch", "alley"])])
    assert grids["grid_code"].is_unique and set(grids["grid_code"]) == set(city.grids["code"])
    assert (grids["role"] == "grid_worker").all()
    assert set(streets["person_id"]) | set(grids["person_id"]) <= set(people["person_id"])
    by_id = people.set_index("person_id")
    chief_posts = by_id.loc[chiefs["person_id"], "post"]
    assert chief_posts.isin(org.STREET_CHIEF_POSTS + org.ALLEY_CHIEF_POSTS).all()
    assert "广安门外街道办事处" in set(by_id["organisation"])
    assert people["phone"].str.fullmatch(r"1[358][0-9]{9}").all()
    assert people["name"].str.len().between(2, 4).all()
    assert people["district_code"].isin(["110102", "110106"]).all()
