"""Loading checked features: COPY into a temporary staging table (EWKB hex), close the
versions a boundary revision replaces, INSERT … SELECT into the target table and append
the audit row — all inside the caller's transaction.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gis.import_read import Kind

STAGING_COLUMNS = (
    "feature", "code", "name", "level", "parent_code", "parent_level", "households", "floors",
    "district_code", "grid_code", "road_class", "valid_from", "valid_to", "properties", "geom",
)
CREATE_STAGING = """
CREATE TEMP TABLE import_staging (
  feature integer PRIMARY KEY,
  code text, name text, level text, parent_code text, parent_level text,
  households integer, floors integer, district_code text, grid_code text, road_class text,
  valid_from timestamptz, valid_to timestamptz, properties jsonb NOT NULL DEFAULT '{}',
  geom geometry(Geometry, 4326)
) ON COMMIT DROP
"""
COPY_STAGING = (
    "COPY import_staging (feature, code, name, level, parent_code, parent_level, households, "
    "floors, district_code, grid_code, road_class, valid_from, valid_to, properties, geom) "
    "FROM STDIN WITH (FORMAT csv, NULL '')"
)
INDEX_STAGING = (
    "CREATE INDEX ON import_staging (code);"
    "CREATE INDEX ON import_staging USING gist (geom);"
    "ANALYZE import_staging"
)
# A later version in the file closes the stored open version of its code.
CLOSE_REVISED = {
    "jurisdictions": """
        UPDATE jurisdictions j SET valid_to = (
          SELECT min(s.valid_from) FROM import_staging s
          WHERE s.code = j.code AND s.valid_from > j.valid_from)
        WHERE j.valid_to IS NULL AND EXISTS (
          SELECT 1 FROM import_staging s WHERE s.code = j.code AND s.valid_from > j.valid_from)
    """,
    "grids": """
        UPDATE grids g SET valid_to = (
          SELECT min(s.valid_from) FROM import_staging s
          WHERE s.code = g.code AND s.valid_from > g.valid_from)
        WHERE g.valid_to IS NULL AND EXISTS (
          SELECT 1 FROM import_staging s WHERE s.code = g.code AND s.valid_from > g.valid_from)
    """,
}
INSERT = {
    "jurisdictions": """
        INSERT INTO jurisdictions (level, code, name, geom, valid_from, valid_to, source,
                                   is_synthetic, properties)
        SELECT level, code, name, geom, valid_from, valid_to, :source, :synthetic, properties
        FROM import_staging ORDER BY feature
    """,
    "grids": """
        INSERT INTO grids (code, name, households, geom, valid_from, valid_to, source,
                           is_synthetic, properties)
        SELECT code, name, households, geom, valid_from, valid_to, :source, :synthetic,
               properties
        FROM import_staging ORDER BY feature
    """,
    "buildings": """
        INSERT INTO buildings (code, name, district_code, grid_code, floors, households, geom,
                               source, is_synthetic, properties)
        SELECT code, name, district_code, grid_code, floors, households, geom, :source,
               :synthetic, properties
        FROM import_staging ORDER BY feature
    """,
    "streets": """
        INSERT INTO streets (code, name, road_class, district_code, geom, source, is_synthetic,
                             properties)
        SELECT code, name, road_class, district_code, geom, :source, :synthetic, properties
        FROM import_staging ORDER BY feature
    """,
}
AUDIT = """
INSERT INTO audit_log (actor, action, object_type, after)
VALUES (:actor, 'import', :kind, CAST(:after AS jsonb))
"""


def stage(conn: Connection, table: pd.DataFrame, geoms: npt.NDArray[np.object_]) -> None:
    """Create `import_staging` and COPY the rows into it (geometry as EWKB hex)."""
    conn.execute(text(CREATE_STAGING))
    with_srid = shapely.set_srid(np.asarray(geoms, dtype=object), 4326)
    rows = table.loc[:, list(STAGING_COLUMNS[:-1])].copy()
    rows["geom"] = shapely.to_wkb(with_srid, hex=True, include_srid=True)
    buffer = io.StringIO()
    rows.to_csv(buffer, header=False, index=False, na_rep="")
    buffer.seek(0)
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.copy_expert(COPY_STAGING, buffer)
    for statement in INDEX_STAGING.split(";"):
        conn.execute(text(statement))


def close_revised_versions(conn: Connection, kind: Kind) -> int:
    """Close stored open versions that a later version in the file replaces; count them."""
    if kind not in CLOSE_REVISED:
        return 0
    return int(conn.execute(text(CLOSE_REVISED[kind])).rowcount)


def insert_rows(conn: Connection, kind: Kind, *, source: str, synthetic: bool) -> int:
    """INSERT … SELECT the staged rows into the kind's table; the number inserted."""
    result = conn.execute(text(INSERT[kind]), {"source": source, "synthetic": synthetic})
    return int(result.rowcount)


def append_audit(conn: Connection, kind: Kind, actor: str, after: dict[str, Any]) -> None:
    """One audit_log row for the import."""
    conn.execute(text(AUDIT), {"actor": actor, "kind": kind,
                               "after": json.dumps(after, ensure_ascii=False)})
