"""Grid plans (网格调整方案): where a plan came from, its edit revision and state times,
grids left empty while editing (geometry NULL), and plan cells — the atomic pieces a
planner paints between grids: each community cut by its streets, the plan's grids and
one Voronoi cell per building, so grids derived from cells tile the community.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-22
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    ALTER TABLE grid_plans
      ADD COLUMN source text NOT NULL DEFAULT 'live'
        CHECK (source IN ('live', 'import', 'merge')),
      ADD COLUMN properties jsonb NOT NULL DEFAULT '{}',
      ADD COLUMN revision integer NOT NULL DEFAULT 0 CHECK (revision >= 0),
      ADD COLUMN validated_at timestamptz,
      ADD COLUMN approved_at timestamptz
    """,
    "CREATE INDEX grid_plans_status_idx ON grid_plans (status, updated_at DESC)",
    """
    ALTER TABLE grid_plan_grids
      ALTER COLUMN geom DROP NOT NULL,
      ADD COLUMN buildings integer NOT NULL DEFAULT 0 CHECK (buildings >= 0),
      ADD COLUMN properties jsonb NOT NULL DEFAULT '{}',
      ADD CONSTRAINT grid_plan_grids_code_in_community
        CHECK (code IS NULL OR left(code, 12) = community_code)
    """,
    """
    CREATE TABLE grid_plan_cells (
      id bigserial PRIMARY KEY,
      plan_id bigint NOT NULL REFERENCES grid_plans (id) ON DELETE CASCADE,
      plan_grid_id bigint REFERENCES grid_plan_grids (id) ON DELETE SET NULL,
      community_code text NOT NULL CHECK (community_code ~ '^[0-9]{12}$'),
      building_id bigint REFERENCES buildings (id) ON DELETE SET NULL,
      households integer NOT NULL DEFAULT 0 CHECK (households >= 0),
      geom geometry(MultiPolygon, 4326) NOT NULL CHECK (gridops_geom_ok(geom))
    )
    """,
    "CREATE INDEX grid_plan_cells_plan_idx ON grid_plan_cells (plan_id, community_code)",
    "CREATE INDEX grid_plan_cells_grid_idx ON grid_plan_cells (plan_grid_id)",
    "CREATE INDEX grid_plan_cells_geom_idx ON grid_plan_cells USING gist (geom)",
    "CREATE INDEX grids_plan_idx ON grids (plan_id) WHERE plan_id IS NOT NULL",
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for statement in (
        "DROP INDEX grids_plan_idx",
        "DROP TABLE grid_plan_cells",
        "DELETE FROM grid_plan_grids WHERE geom IS NULL",
        """ALTER TABLE grid_plan_grids DROP CONSTRAINT grid_plan_grids_code_in_community,
             DROP COLUMN properties, DROP COLUMN buildings, ALTER COLUMN geom SET NOT NULL""",
        "DROP INDEX grid_plans_status_idx",
        """ALTER TABLE grid_plans DROP COLUMN approved_at, DROP COLUMN validated_at,
             DROP COLUMN revision, DROP COLUMN properties, DROP COLUMN source""",
    ):
        op.execute(statement)
