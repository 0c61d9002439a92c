"""Index street assignments by street: placement looks up a segment's chief and stewards
by street id on every report (3.5x faster single-point lookups at city scale, measured in
docs/benchmarks.md).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX street_assignments_street_idx ON street_assignments (street_id)")


def downgrade() -> None:
    op.execute("DROP INDEX street_assignments_street_idx")
