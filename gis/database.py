"""Engines, database creation and PostGIS/pgRouting extension checks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from gis.cluster import EXTENSIONS
from gis.errors import DatabaseUnavailable, MissingExtension

TIMEZONE = "Asia/Shanghai"

# Which Debian package brings each extension, for error messages.
EXTENSION_PACKAGES = {
    "postgis": "postgresql-15-postgis-3",
    "pgrouting": "postgresql-15-pgrouting",
    "btree_gist": "postgresql-contrib (part of postgresql-15)",
}


def normalise_url(url: str) -> str:
    """Accept postgres:// and postgresql:// URLs; use the psycopg2 driver."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def make_engine(url: str, *, statement_timeout_ms: int | None = None, **kwargs: object) -> Engine:
    """An engine with pre-ping (survives server restarts) and an optional statement timeout."""
    # Times are shown in Beijing time whatever the server's default zone.
    options = f"-c timezone={TIMEZONE}"
    if statement_timeout_ms:
        options += f" -c statement_timeout={int(statement_timeout_ms)}"
    connect_args: dict[str, object] = {
        "connect_timeout": 5, "application_name": "gridops", "options": options,
    }
    return create_engine(
        normalise_url(url), pool_pre_ping=True, connect_args=connect_args, **kwargs
    )


def ensure_database(url: str) -> bool:
    """Create the database named in `url` if it does not exist. True when created."""
    target = make_url(normalise_url(url))
    admin = make_engine(target.set(database="postgres").render_as_string(hide_password=False),
                        isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
            )
            if exists:
                return False
            quoted = conn.dialect.identifier_preparer.quote(target.database or "")
            conn.execute(text(f"CREATE DATABASE {quoted}"))
            return True
    except OperationalError as exc:
        raise DatabaseUnavailable(
            f"cannot reach PostgreSQL at {safe_url(url)}: {_reason(exc)}"
        ) from exc
    finally:
        admin.dispose()


def drop_database(url: str) -> None:
    """Drop the database named in `url` (terminating its sessions)."""
    target = make_url(normalise_url(url))
    admin = make_engine(target.set(database="postgres").render_as_string(hide_password=False),
                        isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            quoted = conn.dialect.identifier_preparer.quote(target.database or "")
            conn.execute(text(f"DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
    finally:
        admin.dispose()


def ensure_extensions(conn: Connection, names: tuple[str, ...] = EXTENSIONS) -> list[str]:
    """CREATE EXTENSION for each of `names`; raise naming any the server lacks."""
    available = set(conn.scalars(text("SELECT name FROM pg_available_extensions")))
    missing = [name for name in names if name not in available]
    if missing:
        hints = "; ".join(
            f"{name} (Debian package {EXTENSION_PACKAGES.get(name, 'unknown')})" for name in missing
        )
        raise MissingExtension(
            f"the PostgreSQL server lacks the extension(s): {hints}; install them on the server"
        )
    created = []
    for name in names:
        if not conn.scalar(text("SELECT 1 FROM pg_extension WHERE extname = :n"), {"n": name}):
            conn.execute(text(f'CREATE EXTENSION IF NOT EXISTS "{name}"'))
            created.append(name)
    return created


@contextmanager
def engine_for(url: str, **kwargs: Any) -> Iterator[Engine]:
    """An engine for the duration of a block (commands that connect once), then disposed."""
    engine = make_engine(url, **kwargs)
    try:
        yield engine
    finally:
        engine.dispose()


@dataclass(frozen=True)
class ServerInfo:
    postgresql: str
    postgis: str | None
    pgrouting: str | None


def server_info(conn: Connection) -> ServerInfo:
    """Versions of PostgreSQL and the installed spatial extensions."""
    rows = conn.execute(
        text("SELECT extname, extversion FROM pg_extension "
             "WHERE extname IN ('postgis', 'pgrouting')")
    )
    versions = {name: version for name, version in rows}
    return ServerInfo(
        postgresql=conn.scalar(text("SHOW server_version")) or "",
        postgis=versions.get("postgis"),
        pgrouting=versions.get("pgrouting"),
    )


def safe_url(url: str) -> str:
    """The URL with its password hidden (for messages)."""
    return make_url(normalise_url(url)).render_as_string(hide_password=True)


def _reason(exc: OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
