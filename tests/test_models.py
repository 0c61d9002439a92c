"""The ORM models mirror the migrated schema on a real PostGIS, and round-trip a row."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from geoalchemy2 import Geography, WKTElement
from sqlalchemy import Engine, Table, UniqueConstraint, cast, func, inspect, select
from sqlalchemy.engine import Inspector
from sqlalchemy.engine.interfaces import ReflectedColumn
from sqlalchemy.orm import Session

from gis.models import Base, Jurisdiction

# PostGIS and Alembic own these; they have no model.
UNMODELLED = {"spatial_ref_sys", "alembic_version"}
SQUARE = "MULTIPOLYGON(((116.3 39.9,116.31 39.9,116.31 39.91,116.3 39.91,116.3 39.9)))"


def model_tables() -> list[Table]:
    return [t for t in Base.metadata.sorted_tables if isinstance(t, Table)]


def mismatches(
    engine: Engine,
    model_side: Callable[[Table], object],
    db_side: Callable[[Inspector, str], object],
) -> dict[str, tuple[object, object]]:
    """{table: (model, database)} for every model table whose two sides differ; for
    per-column dicts, only the differing columns."""
    insp = inspect(engine)
    found: dict[str, tuple[object, object]] = {}
    for table in model_tables():
        ours, theirs = model_side(table), db_side(insp, table.name)
        if ours == theirs:
            continue
        if isinstance(ours, dict) and isinstance(theirs, dict):
            keys = {k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k)}
            ours = {k: ours.get(k) for k in keys}
            theirs = {k: theirs.get(k) for k in keys}
        found[table.name] = (ours, theirs)
    return found


def db_columns(insp: Inspector, name: str) -> dict[str, ReflectedColumn]:
    return {c["name"]: c for c in insp.get_columns(name)}


def test_every_table_has_a_model_and_every_model_a_table(engine: Engine) -> None:
    in_db = set(inspect(engine).get_table_names(schema="public")) - UNMODELLED
    assert {t.name for t in model_tables()} == in_db
    assert len(in_db) == 43


def test_columns_and_nullability_match(engine: Engine) -> None:
    assert mismatches(
        engine,
        lambda t: set(t.columns.keys()),
        lambda insp, name: set(db_columns(insp, name)),
    ) == {}
    assert mismatches(
        engine,
        lambda t: {c.name: c.nullable for c in t.columns},
        lambda insp, name: {n: c["nullable"] for n, c in db_columns(insp, name).items()},
    ) == {}


def test_primary_keys_match(engine: Engine) -> None:
    assert mismatches(
        engine,
        lambda t: [c.name for c in t.primary_key.columns],
        lambda insp, name: insp.get_pk_constraint(name)["constrained_columns"],
    ) == {}


def test_foreign_keys_match(engine: Engine) -> None:
    """Constrained columns → referred table and columns, and the ON DELETE action."""
    assert mismatches(
        engine,
        lambda t: {
            (tuple(c.name for c in fk.columns), fk.referred_table.name,
             tuple(e.column.name for e in fk.elements), fk.ondelete)
            for fk in t.foreign_key_constraints
        },
        lambda insp, name: {
            (tuple(fk["constrained_columns"]), fk["referred_table"],
             tuple(fk["referred_columns"]), fk["options"].get("ondelete"))
            for fk in insp.get_foreign_keys(name)
        },
    ) == {}


def test_column_types_match(engine: Engine) -> None:
    def spelled(type_: Any) -> str:
        return str(type_.compile(dialect=engine.dialect)).upper()

    assert mismatches(
        engine,
        lambda t: {c.name: spelled(c.type) for c in t.columns},
        lambda insp, name: {n: spelled(c["type"]) for n, c in db_columns(insp, name).items()},
    ) == {}


@pytest.fixture
def probe(engine: Engine) -> str:
    """The models' own DDL, created in a scratch schema of the test database, so that
    PostgreSQL spells model and migration expressions the same way."""
    schema = "orm_probe"
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        Base.metadata.create_all(conn.execution_options(schema_translate_map={None: schema}))
    return schema


def column_info(key: str, schema: str | None = None) -> Callable[[Inspector, str], object]:
    """{column: spelled `key`} (e.g. computed, default) for the columns that have one."""

    def spelled(info: Any) -> str:
        return str(info["sqltext"] if isinstance(info, dict) else info)

    def side(insp: Inspector, name: str) -> dict[str, str]:
        return {
            c["name"]: spelled(c[key])  # type: ignore[literal-required]
            for c in insp.get_columns(name, schema=schema)
            if c.get(key) and not str(c.get(key)).startswith("nextval(")
        }

    return side


def test_generated_columns_are_computed_with_the_same_expression(
    engine: Engine, probe: str
) -> None:
    """Computed in the model, so the ORM never writes them."""
    models = column_info("computed", probe)
    assert mismatches(engine, lambda t: models(inspect(engine), t.name),
                      column_info("computed")) == {}
    generated = {(t.name, c.name) for t in model_tables() for c in t.columns if c.computed}
    assert ("jurisdictions", "parent_code") in generated
    assert len(generated) == 9


def test_server_defaults_match(engine: Engine, probe: str) -> None:
    """Same default expressions (serial ids aside: those are autoincrement keys)."""
    models = column_info("default", probe)
    assert mismatches(engine, lambda t: models(inspect(engine), t.name),
                      column_info("default")) == {}


def test_unique_constraints_match(engine: Engine) -> None:
    assert mismatches(
        engine,
        lambda t: {
            frozenset(c.columns.keys()) for c in t.constraints if isinstance(c, UniqueConstraint)
        } | {frozenset([c.name]) for c in t.columns if c.unique},
        lambda insp, name: {
            frozenset(u["column_names"]) for u in insp.get_unique_constraints(name)
        },
    ) == {}


def test_district_round_trips_through_the_orm(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(Jurisdiction(
            level="district", code="110102", name="西城区",
            geom=WKTElement(SQUARE, srid=4326),
        ))
        session.commit()

    with Session(engine) as session:
        district = session.scalars(select(Jurisdiction)).one()
        area_deg2, area_m2, srid = session.execute(
            select(
                func.ST_Area(Jurisdiction.geom),
                func.ST_Area(cast(Jurisdiction.geom, Geography)),
                func.ST_SRID(Jurisdiction.geom),
            ).where(Jurisdiction.id == district.id)
        ).one()

    assert district.code == "110102"
    assert district.district_code == "110102"
    assert district.parent_code is None
    assert district.valid_to is None
    assert district.valid_from == datetime(2000, 1, 1, tzinfo=timezone(timedelta(hours=8)))
    assert district.is_synthetic is False
    assert district.properties == {}
    assert srid == 4326
    assert area_deg2 == pytest.approx(1e-4)
    # 0.01° x 0.01° at 39.9°N is about 854 m x 1110 m.
    assert area_m2 == pytest.approx(948_000, rel=0.01)
