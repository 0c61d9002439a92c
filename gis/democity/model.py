"""Shared shapes of the demo-city generators. All geometry is in METRIC_CRS (metres) while
generating; the loader converts to EPSG:4326.

Frames are GeoDataFrames (geometry column `geometry`) or DataFrames with these columns:

- jurisdictions: level ('district'|'street'|'community'), code, name, kind, geometry (Polygon or
  MultiPolygon); streets (街道) partition their district, communities partition their street.
- grids: code (15 digits), name, households, geometry; partition their community.
- road nodes: node_id (int64), geometry (Point).
- road edges: edge_id (int64), source, target (node ids), name, road_class
  ('arterial'|'secondary'|'branch'|'alley'), speed_kmh, length_m, oneway (bool: only
  source→target), geometry (LineString from source node to target node).
- buildings: building_id (int64), floors, households, use ('residential'|'mixed'|'office'|
  'public'|'commercial'), geometry (Polygon footprint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import geopandas as gpd
import numpy as np
import pandas as pd

from gis.catalog import Catalog

METRIC_CRS = "EPSG:4548"  # CGCS2000 3-degree Gauss-Kruger, CM 117E (Beijing)
ROAD_CLASSES = ("arterial", "secondary", "branch", "alley")
ROAD_CLASS_ZH = {
    "arterial": "主干道", "secondary": "次干道", "branch": "支路", "alley": "胡同/小巷",
}


class StepFn(Protocol):
    """Progress callback: step(name) starts a step; step(name, done, total) reports within it."""

    def __call__(self, name: str, done: int = 0, total: int = 0) -> None: ...


def no_progress(name: str, done: int = 0, total: int = 0) -> None:
    """A StepFn that reports nothing."""


@dataclass(frozen=True)
class Scale:
    """How big the generated city is."""

    name: str
    district_codes: tuple[str, ...]
    buildings_per_km2_core: float  # density at the city centre, decaying outwards
    min_buildings_per_km2: float = 120.0  # floor so every township has households
    households_band: tuple[int, int] = (300, 500)  # grid households (全科网格)
    community_households: int = 3000  # target households per community
    incident_days: int = 90
    incidents: int = 20_000
    teams_per_street: int = 8


DEMO = Scale(
    name="demo",
    district_codes=("110101", "110102", "110106"),
    buildings_per_km2_core=900.0,
)
CITY = Scale(
    name="city",
    district_codes=(
        "110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111",
        "110112", "110113", "110114", "110115", "110116", "110117", "110118", "110119",
    ),
    buildings_per_km2_core=4000.0,
    min_buildings_per_km2=40.0,
    incidents=1_000_000,
    incident_days=180,
    teams_per_street=15,
)
SCALES = {s.name: s for s in (DEMO, CITY)}

# Tiananmen: the centre that urban density decays from (WGS84 lon, lat).
CITY_CENTRE_LONLAT = (116.3975, 39.9087)


@dataclass
class City:
    """Everything the generators produce, ready for the loader (gis/democity/load.py)."""

    seed: int
    scale: Scale
    jurisdictions: gpd.GeoDataFrame  # districts, streets, communities
    grids: gpd.GeoDataFrame
    road_nodes: gpd.GeoDataFrame
    road_edges: gpd.GeoDataFrame
    buildings: gpd.GeoDataFrame
    jiexiang: gpd.GeoDataFrame  # 街巷: street_key, name, road_class, district_code, ...
    edge_street: pd.Series  # edge_id -> street_key
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # org, people, history
    catalog: Catalog | None = None  # the event catalog the history was drawn from


def rng_for(seed: int, part: str) -> np.random.Generator:
    """An independent, reproducible random stream per generator part."""
    return np.random.default_rng([seed, *part.encode()])


# The old city (inside the 2nd ring road, roughly): 胡同 alleys and courtyard houses (WGS84).
OLD_CITY_LONLAT_BBOX = (116.357, 39.865, 116.435, 39.948)
_TO_METRIC = None


def to_metric(lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat -> METRIC_CRS x/y (vectorised)."""
    global _TO_METRIC
    if _TO_METRIC is None:
        from pyproj import Transformer

        _TO_METRIC = Transformer.from_crs("EPSG:4326", METRIC_CRS, always_xy=True)
    x, y = _TO_METRIC.transform(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    return np.asarray(x), np.asarray(y)


def urban_intensity(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """How urban a place is, 1 at the city centre falling to ~0.2 at 12 km and ~0.04 at
    30 km: drives road spacing, building density and incident rates (metric x/y)."""
    cx, cy = to_metric(np.array([CITY_CENTRE_LONLAT[0]]), np.array([CITY_CENTRE_LONLAT[1]]))
    r_km = np.hypot(np.asarray(x) - cx[0], np.asarray(y) - cy[0]) / 1000.0
    return np.asarray(1.0 / (1.0 + (r_km / 6.0) ** 2))


def old_city_polygon():  # type: ignore[no-untyped-def]
    """The old city as a polygon in METRIC_CRS."""
    from shapely import box

    x0, y0, x1, y1 = OLD_CITY_LONLAT_BBOX
    xs, ys = to_metric(np.array([x0, x1]), np.array([y0, y1]))
    return box(xs[0], ys[0], xs[1], ys[1])
