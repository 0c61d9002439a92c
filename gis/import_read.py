"""Reading import files: open GeoJSON / GeoPackage / Shapefile with pyogrio, pick the layer,
work out the source CRS and map source fields to target columns.

Problems with the file as a whole raise `InvalidInput` naming the file (and the field);
per-feature problems are the validator's business (gis/import_validate.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Literal, get_args

import geopandas as gpd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError

from gis.crs import InputCrs, from_pyproj
from gis.errors import InvalidInput

Kind = Literal["jurisdictions", "grids", "buildings", "streets"]
KINDS: tuple[Kind, ...] = get_args(Kind)

# Beijing time: naive date-times given by users or files mean local time.
CHINA_TZ = timezone(timedelta(hours=8))
DRIVERS = {"GeoJSON": "GeoJSON", "GeoJSONSeq": "GeoJSON", "GPKG": "GeoPackage",
           "ESRI Shapefile": "Shapefile"}

# Target columns each kind reads from the file (source field name defaults to the target).
TARGETS: dict[Kind, tuple[str, ...]] = {
    "jurisdictions": ("code", "name", "level", "parent_code", "valid_from", "valid_to"),
    "grids": ("code", "name", "parent_code", "households", "valid_from", "valid_to"),
    "buildings": ("code", "name", "households", "floors", "district_code", "grid_code"),
    "streets": ("code", "name", "road_class", "district_code"),
}
REQUIRED: dict[Kind, tuple[str, ...]] = {
    "jurisdictions": ("code", "name"),
    "grids": ("code",),
    "buildings": (),
    "streets": ("name", "road_class"),
}
# CLI option that maps each target, for hints in messages.
OPTION_FOR = {
    "code": "--code-field", "name": "--name-field", "level": "--level-field",
    "parent_code": "--parent-field", "households": "--households-field",
    "floors": "--floors-field", "district_code": "--district-field",
    "road_class": "--class-field", "grid_code": "--grid-field",
}


@dataclass(frozen=True)
class SourceFile:
    """The features of one layer, as read, with the CRS they are in."""

    frame: gpd.GeoDataFrame
    driver: str
    layer: str
    crs: InputCrs | None


def parse_instant(value: str, field: str = "valid_from") -> datetime:
    """Parse an ISO 8601 date or date-time; a naive one is Beijing time (UTC+8)."""
    try:
        instant = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(
            f"{field}: {value!r} is not an ISO 8601 date or date-time "
            "(e.g. 2024-07-01 or 2024-07-01T00:00:00+08:00)",
            field=field,
        ) from exc
    return instant if instant.tzinfo else instant.replace(tzinfo=CHINA_TZ)


def read_source(path: Path, layer: str | None) -> SourceFile:
    """Open `path` and read one layer; raise `InvalidInput` naming the file when it can't."""
    name = path.name
    if not path.exists():
        raise InvalidInput(f"{path}: no such file", field="file")
    if path.is_dir():
        raise InvalidInput(f"{path}: is a folder; name the .geojson, .gpkg or .shp file",
                           field="file")
    if path.stat().st_size == 0:
        raise InvalidInput(f"{name}: the file is empty (0 bytes)", field="file")
    try:
        layers = [str(row[0]) for row in pyogrio.list_layers(path)]
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(
            f"{name}: not a readable geo file (expected GeoJSON, GeoPackage or Shapefile): "
            f"{_gdal_reason(exc, path)}",
            field="file",
        ) from exc
    if not layers:
        raise InvalidInput(f"{name}: the file has no layers", field="file")
    if layer is None:
        if len(layers) > 1:
            raise InvalidInput(
                f"{name}: the file has {len(layers)} layers ({', '.join(layers)}); "
                "choose one with --layer",
                field="layer",
            )
        layer = layers[0]
    elif layer not in layers:
        raise InvalidInput(f"{name}: no layer named {layer!r} (layers: {', '.join(layers)})",
                           field="layer")
    try:
        info = pyogrio.read_info(path, layer=layer)
        driver = str(info["driver"])
        if driver not in DRIVERS:
            raise InvalidInput(
                f"{name}: {driver} files are not supported; use GeoJSON, GeoPackage or Shapefile",
                field="file",
            )
        if not info.get("geometry_type"):
            raise InvalidInput(f"{name}: layer {layer!r} has no geometry column", field="file")
        frame = pyogrio.read_dataframe(path, layer=layer)
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"{name}: cannot read layer {layer!r}: {_gdal_reason(exc, path)}",
                           field="file") from exc
    if not isinstance(frame, gpd.GeoDataFrame):
        raise InvalidInput(f"{name}: layer {layer!r} has no geometry column", field="file")
    crs = from_pyproj(frame.crs) if frame.crs is not None else None
    return SourceFile(frame=frame, driver=DRIVERS[driver], layer=layer, crs=crs)


def resolve_crs(source: SourceFile, given: InputCrs | None) -> InputCrs:
    """--crs wins over the file's own CRS; a file without one needs --crs."""
    if given is not None:
        return given
    if source.crs is None:
        raise InvalidInput(
            f"the file declares no coordinate reference system ({source.driver}"
            f"{' without a .prj file' if source.driver == 'Shapefile' else ''}); pass --crs "
            "(an EPSG code such as EPSG:4548, or wgs84, gcj02, bd09)",
            field="crs",
        )
    return source.crs


def map_fields(
    columns: list[str], kind: Kind, fields: dict[str, str]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Match target columns to source fields: explicit `fields` first, else the default name.

    Names match exactly, then case-insensitively. Returns (target -> source field, problems),
    each problem a (field, reason) pair about the file as a whole.
    """
    problems: list[tuple[str, str]] = []
    by_fold = {column.casefold(): column for column in reversed(columns)}
    available = ", ".join(columns) or "none"
    mapping: dict[str, str] = {}
    for target, source in fields.items():
        if target not in TARGETS[kind]:
            problems.append((target, f"{kind} have no column {target!r} to map"))
            continue
        found = source if source in columns else by_fold.get(source.casefold())
        if found is None:
            problems.append((source, f"the file has no field {source!r} (fields: {available})"))
        else:
            mapping[target] = found
    for target in TARGETS[kind]:
        if target in mapping or target in fields:
            continue
        found = target if target in columns else by_fold.get(target.casefold())
        if found is not None:
            mapping[target] = found
        elif target in REQUIRED[kind]:
            problems.append((target, f"the file has no field {target!r} (fields: {available}); "
                                     f"map one with {OPTION_FOR[target]}"))
    return mapping, problems


def _gdal_reason(exc: Exception, path: Path) -> str:
    """GDAL's message, without the path it repeats and the driver-prefix advice."""
    reason = str(exc).split("; It might help")[0]
    for quoted in (f"'{path}'", f"`{path}'", str(path)):
        reason = reason.replace(quoted, "")
    reason = reason.strip().rstrip(".").strip()
    return f"GDAL says: {reason}" if reason else "GDAL cannot open it"
