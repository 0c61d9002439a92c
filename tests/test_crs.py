"""CRS parsing and the GCJ-02 / BD-09 transforms (vectorised, exact inverses)."""

from __future__ import annotations

from collections.abc import Callable

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import Point, box

from gis.crs import (
    bd09_to_gcj02,
    bd09_to_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    geometries_to_wgs84,
    out_of_china,
    parse_crs,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from gis.errors import InvalidInput

GEOD = pyproj.Geod(ellps="WGS84")


def metres(lon0: np.ndarray, lat0: np.ndarray, lon1: np.ndarray, lat1: np.ndarray) -> np.ndarray:
    return np.asarray(GEOD.inv(lon0, lat0, lon1, lat1)[2])


@pytest.fixture
def china() -> tuple[np.ndarray, np.ndarray]:
    """A grid of points across mainland China (Kashgar to Harbin, Sanya to Mohe)."""
    lon, lat = np.meshgrid(np.linspace(75.0, 134.0, 60), np.linspace(18.0, 53.0, 40))
    return lon.ravel(), lat.ravel()


@pytest.mark.parametrize(("value", "name", "projected"), [
    ("EPSG:4548", "EPSG:4548", True), ("4548", "EPSG:4548", True), ("epsg:3857", "EPSG:3857", True),
    ("wgs84", "EPSG:4326", False), ("WGS84", "EPSG:4326", False), ("4326", "EPSG:4326", False),
    ("cgcs2000", "EPSG:4490", False), ("gcj02", "GCJ-02", False), ("GCJ-02", "GCJ-02", False),
    ("bd09", "BD-09", False), ("BD-09", "BD-09", False),
])
def test_parse_crs(value: str, name: str, projected: bool) -> None:
    crs = parse_crs(value)
    assert crs.name == name and crs.is_projected is projected
    assert crs.is_wgs84 is (name == "EPSG:4326")


@pytest.mark.parametrize("value", ["moon", "EPSG:99999999", "", "4548x"])
def test_unknown_crs_names_the_field(value: str) -> None:
    with pytest.raises(InvalidInput, match="unknown coordinate reference system") as caught:
        parse_crs(value)
    assert caught.value.field == "crs"


def test_gcj02_offset_is_hundreds_of_metres_in_beijing() -> None:
    lon, lat = np.array([116.3912757]), np.array([39.906217])  # Tiananmen, WGS84
    glon, glat = wgs84_to_gcj02(lon, lat)
    offset = metres(lon, lat, glon, glat)[0]
    assert 300 < offset < 800
    assert glon[0] > lon[0] and glat[0] > lat[0]  # the usual north-east shift in Beijing


def test_gcj02_inverse_is_exact(china: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china
    back_lon, back_lat = gcj02_to_wgs84(*wgs84_to_gcj02(lon, lat))
    assert np.abs(back_lon - lon).max() < 1e-9
    assert np.abs(back_lat - lat).max() < 1e-9
    assert metres(lon, lat, back_lon, back_lat).max() < 1e-3


def test_bd09_inverse_is_exact(china: tuple[np.ndarray, np.ndarray]) -> None:
    lon, lat = china
    blon, blat = wgs84_to_bd09(lon, lat)
    assert metres(lon, lat, blon, blat).min() > 100  # BD-09 is never close to WGS84
    back_lon, back_lat = bd09_to_wgs84(blon, blat)
    assert np.abs(back_lon - lon).max() < 1e-9
    assert np.abs(back_lat - lat).max() < 1e-9
    glon, glat = bd09_to_gcj02(*gcj02_to_bd09(lon, lat))
    assert np.abs(glon - lon).max() < 1e-9 and np.abs(glat - lat).max() < 1e-9


def test_gcj02_leaves_points_outside_china_alone() -> None:
    lon = np.array([2.35, -74.0, 139.69, 100.5])  # Paris, New York, Tokyo, Bangkok (2.0 N)
    lat = np.array([48.85, 40.7, 35.69, 2.0])
    assert out_of_china(lon, lat).all()
    assert np.array_equal(np.column_stack(wgs84_to_gcj02(lon, lat)), np.column_stack([lon, lat]))
    assert np.array_equal(np.column_stack(gcj02_to_wgs84(lon, lat)), np.column_stack([lon, lat]))


def test_geometries_convert_from_any_supported_crs() -> None:
    original = np.array([box(116.36, 39.90, 116.361, 39.901), Point(116.4, 39.9), None],
                        dtype=object)

    def shift(forward: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
              ) -> np.ndarray:
        return np.asarray(shapely.transform(
            original, lambda c: np.column_stack(forward(c[:, 0], c[:, 1]))), dtype=object)

    for name, shifted in (("gcj02", shift(wgs84_to_gcj02)), ("bd09", shift(wgs84_to_bd09))):
        back = geometries_to_wgs84(shifted, parse_crs(name))
        assert back[2] is None
        assert shapely.hausdorff_distance(back[:2], original[:2]).max() < 1e-9
    assert geometries_to_wgs84(original, parse_crs("wgs84")) is not None


def test_frame_to_wgs84_uses_pyproj_for_epsg_codes() -> None:
    to_gk = pyproj.Transformer.from_crs(4326, 4548, always_xy=True)
    x, y = to_gk.transform(116.39, 39.91)
    frame = gpd.GeoDataFrame({"code": ["P"]}, geometry=[Point(x, y)], crs="EPSG:4548")
    converted = to_wgs84(frame, parse_crs("EPSG:4548"))
    assert converted.crs.to_epsg() == 4326 and frame.crs.to_epsg() == 4548
    point = converted.geometry.iloc[0]
    assert point.x == pytest.approx(116.39, abs=1e-9) and point.y == pytest.approx(39.91, abs=1e-9)
    assert list(converted["code"]) == ["P"]
