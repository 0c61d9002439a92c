"""What the database holds: row counts per table and which demo city was loaded."""

from __future__ import annotations

from sqlalchemy import Engine, text

COUNTED_TABLES = (
    "jurisdictions", "grids", "buildings", "building_shares", "streets", "road_nodes",
    "road_edges", "people", "street_assignments", "grid_assignments", "departments", "teams",
    "event_classes", "incidents", "joint_zones", "users",
)


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per core table."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in COUNTED_TABLES:
            # Table names come from the constant above, never from input.
            counts[table] = int(conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
    return counts


def loaded_demo(engine: Engine) -> str | None:
    """A description of the data already loaded, or None for an empty database."""
    with engine.connect() as conn:
        jurisdictions = conn.scalar(text("SELECT count(*) FROM jurisdictions"))
        if not jurisdictions:
            return None
        demo = conn.execute(text(
            "SELECT after->>'scale', after->>'seed' FROM audit_log "
            "WHERE action = 'demo.load' ORDER BY id DESC LIMIT 1")).first()
    if demo:
        return f"demo city, scale {demo[0]}, seed {demo[1]}"
    return f"{jurisdictions} jurisdictions"
