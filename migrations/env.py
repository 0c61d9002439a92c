"""Alembic environment: the URL comes from gis.migrate.alembic_config (or DATABASE_URL)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import pool

from gis.database import make_engine

config = context.config
url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL", "")
if not url:
    raise SystemExit("no database URL: use `gridops db migrate` or set DATABASE_URL")

engine = make_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
