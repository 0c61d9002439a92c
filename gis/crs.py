"""Coordinate reference systems at the edge: parse a `crs` argument and convert to WGS84.

Besides EPSG codes (via pyproj) this handles the two Chinese obfuscated systems that no
EPSG code describes: GCJ-02 (Amap, WeChat, Tencent) and BD-09 (Baidu). Their forward
transforms are the widely published ones; the inverses iterate the forward transform
to 1e-9 degrees (sub-millimetre), instead of the usual one-step approximation (~1-2 m).
All functions are vectorised over numpy arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pyproj
import shapely
from pyproj.exceptions import CRSError

from gis.errors import InvalidInput

FloatArray = npt.NDArray[np.float64]
Offset = Literal["gcj02", "bd09"]

WGS84 = pyproj.CRS.from_epsg(4326)

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 algorithm.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0
_TOLERANCE_DEG = 1e-9
_MAX_ITERATIONS = 50

_ALIASES: dict[str, Offset | int] = {
    "wgs84": 4326, "wgs-84": 4326, "wgs 84": 4326, "gps": 4326,
    "cgcs2000": 4490,
    "gcj02": "gcj02", "gcj-02": "gcj02", "gcj": "gcj02", "amap": "gcj02", "mars": "gcj02",
    "bd09": "bd09", "bd-09": "bd09", "bd09ll": "bd09", "baidu": "bd09",
}

_OFFSET_NAMES: dict[Offset, str] = {"gcj02": "GCJ-02", "bd09": "BD-09"}


@dataclass(frozen=True)
class InputCrs:
    """A source coordinate system: a pyproj CRS, or an offset system over WGS84 lon/lat."""

    name: str
    crs: pyproj.CRS
    offset: Offset | None = None

    @property
    def is_projected(self) -> bool:
        return self.offset is None and bool(self.crs.is_projected)

    @property
    def is_wgs84(self) -> bool:
        return self.offset is None and self.crs.equals(WGS84, ignore_axis_order=True)


def parse_crs(value: str) -> InputCrs:
    """Parse `EPSG:4548`, `4548`, `wgs84`, `cgcs2000`, `gcj02` or `bd09` (any case)."""
    key = value.strip().lower()
    alias = _ALIASES.get(key)
    if alias == "gcj02" or alias == "bd09":
        return InputCrs(name=_OFFSET_NAMES[alias], crs=WGS84, offset=alias)
    try:
        if isinstance(alias, int):
            crs = pyproj.CRS.from_epsg(alias)
        elif key.isdigit():
            crs = pyproj.CRS.from_epsg(int(key))
        else:
            crs = pyproj.CRS.from_user_input(value.strip())
    except CRSError as exc:
        raise InvalidInput(
            f"unknown coordinate reference system {value!r}: use an EPSG code "
            "(e.g. EPSG:4548 or 4548), wgs84, cgcs2000, gcj02 or bd09",
            field="crs",
        ) from exc
    return from_pyproj(crs)


def from_pyproj(crs: pyproj.CRS) -> InputCrs:
    """Wrap a CRS read from a file."""
    epsg = crs.to_epsg()
    return InputCrs(name=f"EPSG:{epsg}" if epsg else crs.name, crs=crs)


# -- GCJ-02 / BD-09 ----------------------------------------------------------------------


def out_of_china(lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """The usual bounding box outside which GCJ-02 leaves coordinates unchanged."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    return ~((x > 73.66) & (x < 135.05) & (y > 3.86) & (y < 53.55))


def _delta(lon: FloatArray, lat: FloatArray) -> tuple[FloatArray, FloatArray]:
    """GCJ-02 offset (degrees) of WGS84 points, zero outside China."""
    x = lon - 105.0
    y = lat - 35.0
    pi = np.pi
    sqrt_abs_x = np.sqrt(np.abs(x))
    common = (20.0 * np.sin(6.0 * x * pi) + 20.0 * np.sin(2.0 * x * pi)) * 2.0 / 3.0
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * pi) + 40.0 * np.sin(y / 3.0 * pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * pi) + 320.0 * np.sin(y * pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * pi) + 40.0 * np.sin(x / 3.0 * pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * pi) + 300.0 * np.sin(x / 30.0 * pi)) * 2.0 / 3.0
    radlat = lat / 180.0 * pi
    magic = 1.0 - _EE * np.sin(radlat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(radlat) * pi)
    outside = out_of_china(lon, lat)
    return np.where(outside, 0.0, dlon), np.where(outside, 0.0, dlat)


def wgs84_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The standard (forward) WGS84 → GCJ-02 transform."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    dlon, dlat = _delta(x, y)
    return x + dlon, y + dlat


def gcj02_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """The standard (forward) GCJ-02 → BD-09 transform."""
    x = np.asarray(lon, dtype=np.float64)
    y = np.asarray(lat, dtype=np.float64)
    z = np.sqrt(x * x + y * y) + 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) + 0.000003 * np.cos(x * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def wgs84_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """WGS84 → GCJ-02 → BD-09."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def _invert(
    forward: Callable[[FloatArray, FloatArray], tuple[FloatArray, FloatArray]],
    lon: npt.ArrayLike,
    lat: npt.ArrayLike,
    first_guess: tuple[FloatArray, FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Solve forward(x, y) = (lon, lat) by fixed-point iteration (the offset is smooth)."""
    target_x = np.asarray(lon, dtype=np.float64)
    target_y = np.asarray(lat, dtype=np.float64)
    x, y = first_guess if first_guess is not None else (target_x.copy(), target_y.copy())
    for _ in range(_MAX_ITERATIONS):
        fx, fy = forward(x, y)
        ex = fx - target_x
        ey = fy - target_y
        x = x - ex
        y = y - ey
        error = np.abs(np.concatenate([np.ravel(ex), np.ravel(ey)]))
        error = error[np.isfinite(error)]
        if error.size == 0 or float(error.max()) < _TOLERANCE_DEG:
            break
    return x, y


def gcj02_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Exact inverse of `wgs84_to_gcj02` (iterated to < 1e-9 degrees)."""
    return _invert(wgs84_to_gcj02, lon, lat)


def bd09_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Inverse of `gcj02_to_bd09`: the standard closed form, refined by iteration."""
    x = np.asarray(lon, dtype=np.float64) - 0.0065
    y = np.asarray(lat, dtype=np.float64) - 0.006
    z = np.sqrt(x * x + y * y) - 0.00002 * np.sin(y * _X_PI)
    theta = np.arctan2(y, x) - 0.000003 * np.cos(x * _X_PI)
    guess = (z * np.cos(theta), z * np.sin(theta))
    return _invert(gcj02_to_bd09, lon, lat, first_guess=guess)


def bd09_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """BD-09 → GCJ-02 → WGS84."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


# -- geometries -------------------------------------------------------------------------


def _coords_function(source: InputCrs) -> Callable[[FloatArray], FloatArray] | None:
    """A function mapping an (N, 2) array of source coordinates to WGS84 lon/lat."""
    if source.offset is not None:
        inverse = gcj02_to_wgs84 if source.offset == "gcj02" else bd09_to_wgs84

        def unshift(coords: FloatArray) -> FloatArray:
            x, y = inverse(coords[:, 0], coords[:, 1])
            return np.column_stack([x, y])

        return unshift
    if source.is_wgs84:
        return None
    transformer = pyproj.Transformer.from_crs(source.crs, WGS84, always_xy=True)

    def reproject(coords: FloatArray) -> FloatArray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1], errcheck=False)
        return np.column_stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)])

    return reproject


def geometries_to_wgs84(geoms: npt.ArrayLike, source: InputCrs) -> npt.NDArray[np.object_]:
    """Convert an array of shapely geometries (2D) from `source` to WGS84 lon/lat.

    Coordinates that cannot be converted become inf; callers check the range.
    """
    array = np.asarray(geoms, dtype=object)
    function = _coords_function(source)
    if function is None:
        return array
    return np.asarray(shapely.transform(array, function), dtype=object)


def to_wgs84(frame: gpd.GeoDataFrame, source: InputCrs) -> gpd.GeoDataFrame:
    """A copy of `frame` with its geometry converted from `source` to EPSG:4326."""
    converted = geometries_to_wgs84(frame.geometry.to_numpy(), source)
    result = frame.set_crs(None, allow_override=True)
    result[frame.geometry.name] = gpd.GeoSeries(converted, index=frame.index)
    return result.set_crs(4326)

