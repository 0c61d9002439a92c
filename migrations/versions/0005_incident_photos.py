"""Incident photos: images attached to an incident after it is reported, stored in the
database (transactional with the audit row; sized by the API's limit).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("""
        CREATE TABLE incident_photos (
          id bigserial PRIMARY KEY,
          incident_id bigint NOT NULL REFERENCES incidents (id),
          content_type text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png',
                                                             'image/webp')),
          data bytea NOT NULL,
          size_bytes integer NOT NULL CHECK (size_bytes > 0),
          sha256 text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
          uploaded_by bigint REFERENCES users (id),
          uploaded_at timestamptz NOT NULL DEFAULT now(),
          district_code text NOT NULL CHECK (district_code ~ '^[0-9]{6}$'),
          UNIQUE (incident_id, sha256)
        )
    """)


def downgrade() -> None:
    op.execute("DROP TABLE incident_photos")
