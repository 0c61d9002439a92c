"""Auth: login sessions (bearer tokens and browser cookies, revocable) and failed logins
(for throttling across worker processes).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = [
    """
    CREATE TABLE auth_sessions (
      id text PRIMARY KEY CHECK (char_length(id) >= 32),
      user_id bigint NOT NULL REFERENCES users (id),
      kind text NOT NULL CHECK (kind IN ('bearer', 'cookie')),
      created_at timestamptz NOT NULL DEFAULT now(),
      expires_at timestamptz NOT NULL,
      revoked_at timestamptz,
      client_ip text,
      user_agent text,
      CHECK (expires_at > created_at)
    )
    """,
    "CREATE INDEX auth_sessions_user_idx ON auth_sessions (user_id)",
    """
    CREATE TABLE login_failures (
      id bigserial PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      username text NOT NULL,
      client_ip text NOT NULL
    )
    """,
    "CREATE INDEX login_failures_username_idx ON login_failures (username, at)",
    "CREATE INDEX login_failures_ip_idx ON login_failures (client_ip, at)",
]


def upgrade() -> None:
    for statement in UPGRADE:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE login_failures")
    op.execute("DROP TABLE auth_sessions")
