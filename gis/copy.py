"""Bulk loading helpers: frames → PostgreSQL COPY (CSV), geometries as EWKB hex in 4326."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any, cast

import geopandas as gpd
import numpy as np
import pandas as pd
import psycopg2.extensions
import shapely
from psycopg2 import sql
from sqlalchemy import Connection


def ewkb(geoms: gpd.GeoSeries | np.ndarray, *, multi: str | None = None) -> np.ndarray:
    """EWKB hex (SRID 4326) of geometries already in EPSG:4326; `multi` = 'polygon' or
    'line' promotes single parts to Multi* (the columns are typed MultiPolygon etc.)."""
    array = np.asarray(geoms, dtype=object)
    if multi is not None:
        parts, index = shapely.get_parts(array, return_index=True)
        build = shapely.multipolygons if multi == "polygon" else shapely.multilinestrings
        array = build(parts, indices=index)
    return np.asarray(shapely.to_wkb(shapely.set_srid(array, 4326), hex=True, include_srid=True))


def pg_array(values: Sequence[Sequence[str]]) -> list[str]:
    """Python lists of strings → PostgreSQL text[] literals (values must not hold , { } ")."""
    return ["{" + ",".join(v) + "}" for v in values]


def json_column(values: Sequence[Any]) -> list[str]:
    return [json.dumps(v, ensure_ascii=False) for v in values]


def copy_rows(conn: Connection, table: str, frame: pd.DataFrame) -> int:
    """COPY every column of `frame` (named as the table's columns) into `table`."""
    if frame.empty:
        return 0
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, na_rep="")
    buffer.seek(0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL '')").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    )
    with _psycopg2(conn).cursor() as cursor:
        cursor.copy_expert(statement.as_string(cursor), buffer)
    return len(frame)


def _psycopg2(conn: Connection) -> psycopg2.extensions.connection:
    """The driver connection under a SQLAlchemy connection (for COPY and sql.Composed)."""
    return cast(psycopg2.extensions.connection, conn.connection.dbapi_connection)


def reset_sequence(conn: Connection, table: str, column: str = "id") -> None:
    """Move a serial column's sequence past the explicit ids we loaded."""
    conn.exec_driver_sql(
        sql.SQL("SELECT setval(pg_get_serial_sequence(%s, %s), "
                "coalesce((SELECT max({col}) FROM {tbl}), 0) + 1, false)").format(
            col=sql.Identifier(column), tbl=sql.Identifier(table)
        ).as_string(_psycopg2(conn)),
        (table, column),
    )
