"""`gridops db ...`: the local PostGIS cluster (or DATABASE_URL) and its migrations."""

from __future__ import annotations

import os
import shutil

import typer
from rich.console import Console
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from api.settings import Settings
from gis import migrate
from gis.database import drop_database, make_engine, normalise_url, safe_url, server_info
from gis.errors import ClusterError, DatabaseUnavailable
from gis.provision import provision

db_app = typer.Typer(help="Manage the PostGIS database.", no_args_is_help=True)
out = Console(highlight=False)


def _log(message: str) -> None:
    out.print(f"[dim]·[/] {message}")


def bring_up(settings: Settings) -> str:
    """Make the database reachable with its extensions; return its URL. Idempotent."""
    cluster = settings.cluster() if settings.uses_local_cluster else None
    return provision(settings.database_url, cluster, _log)


@db_app.command()
def up() -> None:
    """Install missing packages (as root), init and start the local cluster, create the DB."""
    settings = Settings()
    url = bring_up(settings)
    out.print(f"[green]database ready[/] {safe_url(url)}")


@db_app.command()
def down(purge: bool = typer.Option(False, help="also delete the cluster's files")) -> None:
    """Stop the local cluster (fast shutdown)."""
    settings = Settings()
    if not settings.uses_local_cluster:
        raise ClusterError("DATABASE_URL is set: that server is not managed by gridops")
    cluster = settings.cluster()
    if not cluster.stop(_log):
        out.print("cluster was not running")
    if purge:
        cluster.purge()
        out.print(f"removed {cluster.root}")


@db_app.command()
def status() -> None:
    """Show where the database is, whether it runs, versions and migration state."""
    settings = Settings()
    if settings.uses_local_cluster:
        cluster = settings.cluster()
        pid = cluster.running_pid()
        out.print(f"cluster   {cluster.data_dir} (port {cluster.port})")
        if not cluster.initialized():
            out.print("state     not initialised; run `gridops db up`")
            raise typer.Exit(3)
        if not pid:
            out.print("state     stopped; run `gridops db up`")
            raise typer.Exit(3)
        out.print(f"state     running (pid {pid})")
    url = settings.db_url()
    out.print(f"url       {safe_url(url)}")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            info = server_info(conn)
            current = migrate.current_revision(conn)
    except SQLAlchemyError as exc:
        raise DatabaseUnavailable(f"cannot connect to {safe_url(url)}: {exc}") from exc
    finally:
        engine.dispose()
    out.print(f"postgres  {info.postgresql}")
    out.print(f"postgis   {info.postgis or 'MISSING'}")
    out.print(f"pgrouting {info.pgrouting or 'MISSING'}")
    out.print(f"migration {current or 'none'} (head {migrate.head_revision()})")


@db_app.command(name="migrate")
def migrate_cmd(revision: str = typer.Argument("head", help="target revision")) -> None:
    """Upgrade the schema (to head by default)."""
    url = bring_up(Settings())
    migrate.upgrade(url, revision)
    out.print(f"[green]migrated to[/] {migrate.current_revision_for(url)}")


@db_app.command()
def downgrade(revision: str = typer.Argument("base", help="target revision")) -> None:
    """Downgrade the schema (to base by default: drops every GridOps table)."""
    url = Settings().live_db_url()
    migrate.downgrade(url, revision)
    out.print(f"downgraded to {migrate.current_revision_for(url) or 'base'}")


@db_app.command()
def reset(yes: bool = typer.Option(False, "--yes", help="do not ask for confirmation")) -> None:
    """Drop the database, recreate it with its extensions and migrate to head."""
    settings = Settings()
    url = settings.db_url()
    if not yes:
        typer.confirm(f"Drop ALL data in {safe_url(url)}?", abort=True)
    bring_up(settings)
    drop_database(url)
    bring_up(settings)
    migrate.upgrade(url)
    out.print(f"[green]database reset[/] {safe_url(url)}")


@db_app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def psql(ctx: typer.Context) -> None:
    """Open psql on the database (extra arguments are passed to psql)."""
    psql_bin = shutil.which("psql")
    if not psql_bin:
        raise ClusterError("psql is not installed (Debian package postgresql-client-15)")
    url = make_url(normalise_url(Settings().live_db_url())).set(drivername="postgresql")
    os.execv(psql_bin, ["psql", url.render_as_string(hide_password=False), *ctx.args])

