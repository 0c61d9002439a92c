"""Dispatch and case workflow: the road graph's version (in-memory graphs reload when it
changes), escalation of overdue cases, extension requests (延期), dispatch step history
with actors, out-of-remit returns, street offices' ratings of departments (reverse
evaluation) and follow-up results (回访) for the evaluation.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CODE9 = "'^[0-9]{9}$'"

STATEMENTS = [
    # -- road graph version: bumped by any change to the edges -----------------------------
    """
    CREATE TABLE road_graph_state (
      one boolean PRIMARY KEY DEFAULT true CHECK (one),
      version bigint NOT NULL DEFAULT 0,
      changed_at timestamptz NOT NULL DEFAULT now()
    )
    """,
    "INSERT INTO road_graph_state DEFAULT VALUES",
    """
    CREATE FUNCTION gridops_road_graph_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      UPDATE road_graph_state SET version = version + 1, changed_at = now();
      RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER road_edges_changed
      AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON road_edges
      FOR EACH STATEMENT EXECUTE FUNCTION gridops_road_graph_changed()
    """,
    # -- escalation (community → street → district) -----------------------------------------
    """
    ALTER TABLE incidents
      ADD COLUMN escalation_level text
        CHECK (escalation_level IN ('community', 'street', 'district')),
      ADD COLUMN escalated_at timestamptz,
      ADD CONSTRAINT incidents_escalated_has_time
        CHECK ((escalation_level IS NULL) = (escalated_at IS NULL))
    """,
    # -- extension requests (延期), decided by an operator ----------------------------------
    """
    CREATE TABLE extension_requests (
      id bigserial PRIMARY KEY,
      incident_id bigint NOT NULL REFERENCES incidents (id),
      stage text NOT NULL CHECK (stage IN ('accept', 'dispatch', 'handle', 'verify')),
      value double precision NOT NULL CHECK (value > 0),
      unit text NOT NULL CHECK (unit IN ('work_hours', 'work_days', 'hours')),
      reason text NOT NULL CHECK (btrim(reason) <> ''),
      status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'approved', 'rejected', 'withdrawn')),
      requested_by bigint REFERENCES users (id),
      requested_at timestamptz NOT NULL DEFAULT now(),
      decided_by bigint REFERENCES users (id),
      decided_at timestamptz,
      decision_note text,
      old_deadline timestamptz,
      new_deadline timestamptz,
      district_code text NOT NULL CHECK (district_code ~ '^[0-9]{6}$'),
      CONSTRAINT extension_requests_decided CHECK (
        (status IN ('pending', 'withdrawn')) = (decided_at IS NULL))
    )
    """,
    "CREATE INDEX extension_requests_incident_idx ON extension_requests (incident_id)",
    """
    CREATE UNIQUE INDEX extension_requests_one_pending ON extension_requests (incident_id)
      WHERE status = 'pending'
    """,
    # -- dispatch steps with their actors; returns as not in remit --------------------------
    """
    ALTER TABLE dispatches
      ADD COLUMN out_of_remit boolean NOT NULL DEFAULT false
    """,
    """
    CREATE TABLE dispatch_events (
      id bigserial PRIMARY KEY,
      dispatch_id bigint NOT NULL REFERENCES dispatches (id),
      at timestamptz NOT NULL DEFAULT now(),
      actor_id bigint REFERENCES users (id),
      from_status text,
      to_status text NOT NULL,
      reason text
    )
    """,
    "CREATE INDEX dispatch_events_dispatch_idx ON dispatch_events (dispatch_id, at)",
    "CREATE INDEX dispatches_team_idx ON dispatches (team_id)",
    # -- reverse evaluation: street offices rate departments, per month ---------------------
    f"""
    CREATE TABLE department_ratings (
      id bigserial PRIMARY KEY,
      department_id bigint NOT NULL REFERENCES departments (id),
      street_code text NOT NULL CHECK (street_code ~ {CODE9}),
      period date NOT NULL CHECK (extract(day FROM period) = 1),
      score double precision NOT NULL CHECK (score >= 0 AND score <= 100),
      comment text,
      rated_by bigint REFERENCES users (id),
      rated_at timestamptz NOT NULL DEFAULT now(),
      UNIQUE (department_id, street_code, period)
    )
    """,
    # -- follow-up results (回访) for 响应率 / 解决率 / 满意率 --------------------------------
    """
    CREATE TABLE incident_followups (
      incident_id bigint PRIMARY KEY REFERENCES incidents (id),
      at timestamptz NOT NULL DEFAULT now(),
      responded boolean NOT NULL,
      resolved boolean NOT NULL,
      satisfaction text NOT NULL
        CHECK (satisfaction IN ('satisfied', 'basically_satisfied', 'dissatisfied')),
      note text,
      recorded_by bigint REFERENCES users (id)
    )
    """,
]


def upgrade() -> None:
    for statement in STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    for statement in (
        "DROP TABLE incident_followups",
        "DROP TABLE department_ratings",
        "DROP INDEX dispatches_team_idx",
        "DROP TABLE dispatch_events",
        "ALTER TABLE dispatches DROP COLUMN out_of_remit",
        "DROP TABLE extension_requests",
        "ALTER TABLE incidents DROP CONSTRAINT incidents_escalated_has_time, "
        "DROP COLUMN escalated_at, DROP COLUMN escalation_level",
        "DROP TRIGGER road_edges_changed ON road_edges",
        "DROP FUNCTION gridops_road_graph_changed()",
        "DROP TABLE road_graph_state",
    ):
        op.execute(statement)
