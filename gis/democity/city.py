"""Build the demo city, deterministically from a seed: real districts, then a synthetic
interior generated part by part (each part draws from its own random stream)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
import shapely.ops
from shapely.geometry import Point
from shapely.geometry.base import BaseGeometry

from gis.catalog import load_catalog
from gis.democity import boundaries, buildings, history, org, partition, roads
from gis.democity.model import (
    METRIC_CRS,
    City,
    Scale,
    StepFn,
    no_progress,
    old_city_polygon,
    rng_for,
)

BEIJING = ZoneInfo("Asia/Shanghai")

# The hard case on the 西城/丰台 line: 广安门外街道 and 太平桥街道 meet there.
GUANGWAI, TAIPINGQIAO = "110102020", "110106002"
# Where on the district border they meet (WGS84), west of 右安门.
MEETING_LONLAT = (116.333, 39.870)
STRADDLER = {"area_m2": 2000.0, "share_a": 1 / 3, "floors": 2, "households": 24}
STRADDLER_NAME = "跨界综合楼(合成)"


def default_as_of() -> datetime:
    """The default 'now' of the demo: the start of the current hour in Beijing."""
    return datetime.now(BEIJING).replace(minute=0, second=0, microsecond=0)


def build_city(seed: int, scale: Scale, step: StepFn = no_progress, *,
               as_of: datetime | None = None) -> City:
    """Generate every part of the city for `scale` from `seed`; the incident history ends
    and team positions are fixed at `as_of` (same seed and as_of → identical city)."""
    now = as_of or default_as_of()
    step("real district borders")
    districts = boundaries.check_and_fit(scale.district_codes)
    area = shapely.union_all(np.array(districts.geometry, dtype=object))
    alley_zone = old_city_polygon().intersection(area)

    step("streets (街道)")
    streets = _streets(districts, seed)
    step("roads and alleys (街巷)")
    nodes, edges = roads.generate_roads(area, rng_for(seed, "roads"), alley_zone=alley_zone)
    step("buildings")
    blds = buildings.generate_buildings(
        area, edges, rng_for(seed, "buildings"), density_core=scale.buildings_per_km2_core,
        alley_zone=alley_zone, min_density=scale.min_buildings_per_km2)
    blds = _add_straddler(blds, streets)
    communities, grids, grid_of = _communities_and_grids(streets, blds, scale, step)
    blds["grid_code"] = grid_of.reindex(blds["building_id"]).to_numpy()
    blds["district_code"] = blds["grid_code"].str[:6]
    jiexiang, edge_street = roads.build_jiexiang(edges, streets[["code", "geometry"]])
    jurisdictions = gpd.GeoDataFrame(pd.concat(
        [districts.assign(level="district", kind="区"), streets, communities], ignore_index=True
    ), crs=METRIC_CRS)
    step("departments, teams and people")
    catalog = load_catalog()
    office_names = dict(zip(streets["code"], streets["name"], strict=True))
    deps = org.departments(tuple(districts["code"]), office_names, rng_for(seed, "departments"))
    teams = org.teams(deps, streets, nodes, rng_for(seed, "teams"), scale.teams_per_street,
                      now=now, catalog=catalog)
    people, street_assignments, grid_assignments = org.people_and_assignments(
        jiexiang, grids, rng_for(seed, "people"), office_names=office_names)
    step("incident history")
    incidents = history.incidents(
        catalog, jurisdictions, grids, blds, jiexiang, rng_for(seed, "history"),
        days=scale.incident_days, count=scale.incidents, end=now)
    return City(
        seed=seed, scale=scale, jurisdictions=jurisdictions, grids=grids, road_nodes=nodes,
        road_edges=edges, buildings=blds, jiexiang=jiexiang, edge_street=edge_street,
        tables={"event_classes": catalog.classes, "departments": deps, "teams": teams,
                "people": people, "street_assignments": street_assignments,
                "grid_assignments": grid_assignments, "incidents": incidents},
        catalog=catalog,
    )


def _streets(districts: gpd.GeoDataFrame, seed: int) -> gpd.GeoDataFrame:
    """Partition each district into its real number of 街道/乡镇 (synthetic shapes)."""
    listed = boundaries.street_list(tuple(districts["code"]))
    pinned = _meeting_seeds(districts)
    frames = []
    for code, district in zip(districts["code"], districts.geometry, strict=True):
        own = listed[listed["district_code"] == code]
        pins = pinned.get(code)
        order = list(own["code"])
        if pins is not None:  # the pinned street takes the first cell
            order.remove(pins[0])
            order.insert(0, pins[0])
        cells = partition.voronoi_partition(
            district, len(order), rng_for(seed, f"streets-{code}"),
            pinned=None if pins is None else np.array([pins[1]]))
        named = own.set_index("code").loc[order]
        frames.append(gpd.GeoDataFrame({
            "level": "street", "code": order, "name": named["name"].to_numpy(),
            "kind": named["kind"].to_numpy(),
        }, geometry=cells, crs=METRIC_CRS))
    return pd.concat(frames, ignore_index=True)


def _meeting_seeds(districts: gpd.GeoDataFrame) -> dict[str, tuple[str, tuple[float, float]]]:
    """Seeds that make 广外 and 太平桥 meet on the real 西城/丰台 border (when both exist)."""
    by_code = dict(zip(districts["code"], districts.geometry, strict=True))
    if "110102" not in by_code or "110106" not in by_code:
        return {}
    anchor = meeting_point(by_code["110102"], by_code["110106"])
    seeds = {}
    for district, street in (("110102", GUANGWAI), ("110106", TAIPINGQIAO)):
        inner = by_code[district].buffer(-400)
        point = shapely.ops.nearest_points(inner, anchor)[0]
        seeds[district] = (street, (point.x, point.y))
    return seeds


def meeting_point(xicheng: BaseGeometry, fengtai: BaseGeometry) -> Point:
    """The point of the 西城/丰台 border nearest MEETING_LONLAT (METRIC_CRS)."""
    from gis.democity.model import to_metric

    x, y = to_metric(np.array([MEETING_LONLAT[0]]), np.array([MEETING_LONLAT[1]]))
    border = xicheng.boundary.intersection(fengtai.buffer(1.0))
    return shapely.ops.nearest_points(border, Point(x[0], y[0]))[0]


def _add_straddler(blds: gpd.GeoDataFrame, streets: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """The ~2000 m² two-storey building one third in 西城 (广外), two thirds in 丰台 (太平桥)."""
    by_code = dict(zip(streets["code"], streets.geometry, strict=True))
    if GUANGWAI not in by_code or TAIPINGQIAO not in by_code:
        return blds
    side_a, side_b = by_code[GUANGWAI], by_code[TAIPINGQIAO]
    border = side_a.boundary.intersection(side_b.buffer(1.0))
    anchor = border.interpolate(0.5, normalized=True)
    footprint = buildings.straddling_building(
        side_a, side_b, anchor, area_m2=STRADDLER["area_m2"], share_a=STRADDLER["share_a"],
        floors=int(STRADDLER["floors"]))
    blds = buildings.insert_building(
        blds, footprint, floors=int(STRADDLER["floors"]),
        households=int(STRADDLER["households"]), use="mixed")
    blds["name"] = None
    blds.loc[blds.index[-1], "name"] = STRADDLER_NAME
    return blds


def _communities_and_grids(
    streets: gpd.GeoDataFrame, blds: gpd.GeoDataFrame, scale: Scale, step: StepFn
) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame, pd.Series]:
    """Communities partition each street, grids partition each community, by households.
    Buildings count where the largest part of their footprint lies; returns the grid code
    of every building_id too."""
    street_of, _share = partition.majority_cells(blds.geometry.to_numpy(), list(streets.geometry))
    community_rows: list[dict[str, object]] = []
    grid_rows: list[dict[str, object]] = []
    grid_of: dict[int, str] = {}
    for index, (code, street, name) in enumerate(
            zip(streets["code"], streets.geometry, streets["name"], strict=True)):
        step("communities and grids (社区/全科网格)", index, len(streets))
        inside = blds[street_of == index]
        cells = partition.community_partition(
            street, inside, target_households=scale.community_households,
            grid_band=scale.households_band)
        for i, (community, ids) in enumerate(cells, start=1):
            ccode = f"{code}{i:03d}"
            community_rows.append({"level": "community", "code": ccode,
                                   "name": f"{name.removesuffix('街道')}第{i}社区",
                                   "kind": "社区", "geometry": community})
            members = inside[inside["building_id"].isin(ids)]
            for k, (grid, gids) in enumerate(
                    partition.grid_partition(community, members, band=scale.households_band),
                    start=1):
                gcode = f"{ccode}{k:03d}"
                grid_rows.append({"code": gcode, "name": f"第{k}网格", "households": 0,
                                  "geometry": grid})
                grid_of.update(dict.fromkeys(gids.tolist(), gcode))
    return (gpd.GeoDataFrame(community_rows, crs=METRIC_CRS),
            gpd.GeoDataFrame(grid_rows, crs=METRIC_CRS), pd.Series(grid_of))
