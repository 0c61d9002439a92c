"""Demo data: the small synthetic fixture in data/boundaries/fixture (until the demo city
lands), and row counts per table."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, text

from gis.importers import ImportOptions, import_file

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "boundaries" / "fixture"
COUNTED_TABLES = (
    "jurisdictions", "grids", "buildings", "streets", "road_nodes", "road_edges", "people",
    "departments", "teams", "event_classes", "incidents", "joint_zones", "users",
)


def load_fixture(engine: Engine) -> bool:
    """Load the fixture's jurisdictions and grids once. False when already loaded."""
    with engine.connect() as conn:
        if conn.scalar(text("SELECT EXISTS (SELECT 1 FROM jurisdictions)")):
            return False
    options = ImportOptions(synthetic=True, source="data/boundaries/fixture (synthetic)",
                            actor="demo")
    import_file(engine, "jurisdictions", FIXTURE / "jurisdictions.geojson", options)
    import_file(engine, "grids", FIXTURE / "grids.geojson", options)
    return True


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows per core table (current versions only for versioned tables)."""
    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in COUNTED_TABLES:
            # Table names come from the constant above, never from input.
            counts[table] = int(conn.scalar(text(f"SELECT count(*) FROM {table}")) or 0)  # noqa: S608
    return counts
