"""Placement: subdivided lookup copies of jurisdictions and grids (ST_Subdivide to at most
64 vertices per part, so point-in-polygon tests stay cheap), kept in step by triggers so
that every writer (importer, demo COPY, plan apply) keeps them right; and the loaded event
catalog's metadata (name, department types, work calendar).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE jurisdiction_parts (
      jurisdiction_id bigint NOT NULL REFERENCES jurisdictions (id) ON DELETE CASCADE,
      level text NOT NULL,
      code text NOT NULL,
      valid_from timestamptz NOT NULL,
      valid_to timestamptz,
      geom geometry(Polygon, 4326) NOT NULL
    )
    """,
    "CREATE INDEX jurisdiction_parts_geom_idx ON jurisdiction_parts USING gist (geom)",
    "CREATE INDEX jurisdiction_parts_owner_idx ON jurisdiction_parts (jurisdiction_id)",
    """
    CREATE TABLE grid_parts (
      grid_id bigint NOT NULL REFERENCES grids (id) ON DELETE CASCADE,
      code text NOT NULL,
      valid_from timestamptz NOT NULL,
      valid_to timestamptz,
      geom geometry(Polygon, 4326) NOT NULL
    )
    """,
    "CREATE INDEX grid_parts_geom_idx ON grid_parts USING gist (geom)",
    "CREATE INDEX grid_parts_owner_idx ON grid_parts (grid_id)",
    """
    CREATE FUNCTION gridops_refresh_parts() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      IF TG_TABLE_NAME = 'jurisdictions' THEN
        DELETE FROM jurisdiction_parts WHERE jurisdiction_id = NEW.id;
        INSERT INTO jurisdiction_parts (jurisdiction_id, level, code, valid_from, valid_to, geom)
        SELECT NEW.id, NEW.level, NEW.code, NEW.valid_from, NEW.valid_to, part
        FROM ST_Subdivide(NEW.geom, 64) AS part;
      ELSE
        DELETE FROM grid_parts WHERE grid_id = NEW.id;
        INSERT INTO grid_parts (grid_id, code, valid_from, valid_to, geom)
        SELECT NEW.id, NEW.code, NEW.valid_from, NEW.valid_to, part
        FROM ST_Subdivide(NEW.geom, 64) AS part;
      END IF;
      RETURN NULL;
    END
    $$
    """,
    """
    CREATE TRIGGER jurisdictions_parts AFTER INSERT OR UPDATE OF geom, code, level, valid_from,
      valid_to ON jurisdictions FOR EACH ROW EXECUTE FUNCTION gridops_refresh_parts()
    """,
    """
    CREATE TRIGGER grids_parts AFTER INSERT OR UPDATE OF geom, code, valid_from, valid_to
      ON grids FOR EACH ROW EXECUTE FUNCTION gridops_refresh_parts()
    """,
    # Rows that exist already (databases migrated with data).
    """
    INSERT INTO jurisdiction_parts (jurisdiction_id, level, code, valid_from, valid_to, geom)
    SELECT j.id, j.level, j.code, j.valid_from, j.valid_to, ST_Subdivide(j.geom, 64)
    FROM jurisdictions j
    """,
    """
    INSERT INTO grid_parts (grid_id, code, valid_from, valid_to, geom)
    SELECT g.id, g.code, g.valid_from, g.valid_to, ST_Subdivide(g.geom, 64)
    FROM grids g
    """,
    """
    CREATE TABLE catalogs (
      id serial PRIMARY KEY,
      name text NOT NULL CHECK (btrim(name) <> ''),
      format text NOT NULL,
      synthetic boolean NOT NULL DEFAULT false,
      department_types jsonb NOT NULL DEFAULT '{}'
        CHECK (jsonb_typeof(department_types) = 'object'),
      calendar jsonb NOT NULL CHECK (jsonb_typeof(calendar) = 'object'),
      loaded_at timestamptz NOT NULL DEFAULT now(),
      loaded_by text NOT NULL
    )
    """,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE catalogs")
    op.execute("DROP TRIGGER grids_parts ON grids")
    op.execute("DROP TRIGGER jurisdictions_parts ON jurisdictions")
    op.execute("DROP FUNCTION gridops_refresh_parts()")
    op.execute("DROP TABLE grid_parts")
    op.execute("DROP TABLE jurisdiction_parts")
