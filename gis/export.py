"""Exporting a layer to GeoJSON or GeoPackage: PostGIS selects the versions valid at an
instant, geopandas reads them (read_postgis), pyogrio writes the file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio
from pyogrio.errors import DataLayerError, DataSourceError
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from gis.errors import DatabaseUnavailable, InvalidInput
from gis.import_read import CHINA_TZ, KINDS, Kind

FORMATS = {".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GPKG"}
GEOMETRY_TYPES: dict[Kind, str] = {"jurisdictions": "MultiPolygon", "grids": "MultiPolygon",
                                   "buildings": "MultiPolygon", "streets": "MultiLineString"}
VERSIONED: tuple[Kind, ...] = ("jurisdictions", "grids")
QUERIES: dict[Kind, str] = {
    "jurisdictions": """
        SELECT code, name, level, parent_code, district_code, kind, valid_from, valid_to,
               source, is_synthetic, geom
        FROM jurisdictions
        WHERE tstzrange(valid_from, valid_to) @> CAST(:at AS timestamptz)
          AND (CAST(:level AS text) IS NULL OR level = CAST(:level AS text))
        ORDER BY code
    """,
    "grids": """
        SELECT code, name, community_code AS parent_code, street_code, district_code,
               households, population, valid_from, valid_to, source, is_synthetic, geom
        FROM grids
        WHERE tstzrange(valid_from, valid_to) @> CAST(:at AS timestamptz)
        ORDER BY code
    """,
    "buildings": """
        SELECT code, name, address, district_code, grid_code, floors, households, use, source,
               is_synthetic, geom
        FROM buildings ORDER BY id
    """,
    "streets": """
        SELECT code, name, road_class, district_code, street_office_code, source, is_synthetic,
               geom
        FROM streets ORDER BY id
    """,
}
LEVELS = ("district", "street", "community")


def export_layer(engine: Engine, kind: Kind, out: Path, *, level: str | None = None,
                 at: datetime | None = None) -> int:
    """Write `kind` to `out` (.geojson or .gpkg, layer named after the kind); the count.

    Jurisdictions and grids: the versions valid at `at` (default now); `level` filters
    jurisdictions. A GeoPackage keeps its other layers.
    """
    out = Path(out)
    if kind not in KINDS:
        raise InvalidInput(f"unknown layer {kind!r}: use {', '.join(KINDS)}", field="kind")
    driver = FORMATS.get(out.suffix.lower())
    if driver is None:
        raise InvalidInput(f"{out.name}: unsupported output format; use .geojson or .gpkg",
                           field="out")
    if level is not None and kind != "jurisdictions":
        raise InvalidInput("--level applies to jurisdictions only", field="level")
    if level is not None and level not in LEVELS:
        raise InvalidInput(f"unknown level {level!r}: use {', '.join(LEVELS)}", field="level")
    if at is not None and kind not in VERSIONED:
        raise InvalidInput(f"--at applies to versioned layers ({', '.join(VERSIONED)}); "
                           f"{kind} have no versions", field="at")
    if not out.parent.is_dir():
        raise InvalidInput(f"{out.parent}: no such folder", field="out")
    instant = at if at is not None else datetime.now(UTC)
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=CHINA_TZ)
    try:
        with engine.connect() as conn:
            frame = gpd.read_postgis(text(QUERIES[kind]), conn, geom_col="geom",
                                     crs="EPSG:4326", params={"at": instant, "level": level})
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        raise DatabaseUnavailable(f"cannot export {kind}: {reason}") from exc
    # GeoPackage stores date-times in UTC; GeoJSON readers see Beijing time.
    zone = UTC if driver == "GPKG" else CHINA_TZ
    for column in ("valid_from", "valid_to"):
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], utc=True).dt.tz_convert(zone)
    if driver == "GeoJSON" and out.exists():
        out.unlink()
    try:
        pyogrio.write_dataframe(frame, out, layer=kind, driver=driver,
                                geometry_type=GEOMETRY_TYPES[kind])
    except (DataSourceError, DataLayerError) as exc:
        raise InvalidInput(f"{out.name}: cannot write: {exc}", field="out") from exc
    return len(frame)
