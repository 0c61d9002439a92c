"""Open311: API keys of GeoReport v2 clients (citizen apps). Only a SHA-256 of each key is
stored; the key itself is shown once, when it is created.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE open311_keys (
      id serial PRIMARY KEY,
      name text NOT NULL UNIQUE CHECK (btrim(name) <> '' AND char_length(name) <= 100),
      key_hash text NOT NULL UNIQUE CHECK (key_hash ~ '^[0-9a-f]{64}$'),
      created_at timestamptz NOT NULL DEFAULT now(),
      revoked_at timestamptz,
      last_used_at timestamptz,
      CHECK (revoked_at IS NULL OR revoked_at >= created_at)
    )
    """,
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE open311_keys")
