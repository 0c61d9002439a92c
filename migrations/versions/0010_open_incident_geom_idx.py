"""Index the points of open incidents: the command map's incident tiles and clusters look
up open cases by place (closed and voided ones are most of the history).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-21
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# the same list as gis.tiles.OPEN_STATUSES, so the planner can use the partial index
OPEN = "('pending', 'registered', 'dispatched', 'handling', 'feedback', 'verifying', 'ledger')"


def upgrade() -> None:
    op.execute(f"CREATE INDEX incidents_open_geom_idx ON incidents USING gist (geom) "
               f"WHERE status IN {OPEN}")


def downgrade() -> None:
    op.execute("DROP INDEX incidents_open_geom_idx")
