"""Live events: every change notification is also a row of `live_events`, so a live feed
(Server-Sent Events) can replay what a client missed after a dropped connection
(Last-Event-ID), across API worker processes. `gridops_emit(type, codes, payload)` appends
the row and notifies channel `gridops_events` with its id (delivered on commit).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-21
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

STATEMENTS = [
    """
    CREATE TABLE live_events (
      id bigserial PRIMARY KEY,
      at timestamptz NOT NULL DEFAULT now(),
      type text NOT NULL CHECK (type ~ '^[a-z_]+(\\.[a-z_]+)*$'),
      codes text[] NOT NULL DEFAULT '{}',
      payload jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(payload) = 'object')
    )
    """,
    "CREATE INDEX live_events_at_idx ON live_events USING brin (at)",
    # The notification carries the whole event when it fits NOTIFY's 8000-byte limit, else
    # only its id and type (listeners then read the row).
    """
    CREATE FUNCTION gridops_emit(p_type text, p_codes text[], p_payload jsonb)
    RETURNS bigint LANGUAGE plpgsql AS $$
    DECLARE
      v_id bigint;
      v_message text;
    BEGIN
      INSERT INTO live_events (type, codes, payload)
      VALUES (p_type, coalesce(p_codes, '{}'), coalesce(p_payload, '{}'))
      RETURNING id INTO v_id;
      v_message := (coalesce(p_payload, '{}') || jsonb_build_object(
        'id', v_id, 'type', p_type, 'codes', to_jsonb(coalesce(p_codes, '{}'))))::text;
      IF octet_length(v_message) > 7900 THEN
        v_message := jsonb_build_object('id', v_id, 'type', p_type, 'codes',
                                        to_jsonb(coalesce(p_codes, '{}')), 'truncated', true)::text;
      END IF;
      PERFORM pg_notify('gridops_events', v_message);
      RETURN v_id;
    END $$
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP FUNCTION gridops_emit(text, text[], jsonb)")
    op.execute("DROP TABLE live_events")
