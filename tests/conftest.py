"""Test harness: a real PostGIS (the project's local cluster, or DATABASE_URL), a
migrated template database per test session, and a fresh copy of it per test."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from api.settings import Settings
from gis import migrate
from gis.database import drop_database, make_engine, normalise_url
from gis.provision import provision

DATA = Path(__file__).parent / "data"
_counter = itertools.count()


def _with_db(url: str, name: str) -> str:
    return make_url(normalise_url(url)).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def server_url() -> str:
    """URL of the project database on a running server (started here if needed)."""
    base = Settings(env="test")
    cluster = base.cluster() if base.uses_local_cluster else None
    return provision(base.database_url, cluster, lambda message: None)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> Iterator[str]:
    """A database migrated to head, used as the template of every test database."""
    url = _with_db(server_url, f"gridops_tpl_{os.getpid()}")
    drop_database(url)
    provision(url, None, lambda message: None)
    migrate.upgrade(url)
    yield url
    drop_database(url)


def clone_template(template_url: str) -> str:
    """Create a fresh copy of the migrated template database; return its URL."""
    name = f"gridops_t_{os.getpid()}_{next(_counter)}"
    template = make_url(template_url).database
    admin = make_engine(_with_db(template_url, "postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    admin.dispose()
    return _with_db(template_url, name)


@pytest.fixture(scope="session")
def new_database(template_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh migrated databases, dropped at the end of the session."""
    made: list[str] = []

    def make() -> str:
        made.append(clone_template(template_url))
        return made[-1]

    yield make
    for url in made:
        drop_database(url)


@pytest.fixture
def db_url(template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test (a copy of the template)."""
    url = clone_template(template_url)
    yield url
    drop_database(url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Settings for an app or CLI run against this test's database."""
    return Settings(env="test", database_url=db_url, home=tmp_path / "home")


@pytest.fixture(scope="session")
def city_url(new_database: Callable[[], str]) -> str:
    """The demo city (seed 7, as of 2026-11-20 17:00 Beijing) in its own database, shared
    by the placement and intake tests (which only add rows)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from gis.democity.city import build_city
    from gis.democity.load import load_city
    from gis.democity.model import DEMO

    url = new_database()
    engine = make_engine(url)
    as_of = datetime(2026, 11, 20, 17, tzinfo=ZoneInfo("Asia/Shanghai"))
    load_city(engine, build_city(7, DEMO, as_of=as_of))
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def city(city_url: str) -> Iterator[Engine]:
    """An engine on the shared demo city."""
    eng = make_engine(city_url)
    yield eng
    eng.dispose()
