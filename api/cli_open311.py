"""`gridops open311 key ...`: API keys of Open311 (GeoReport v2) client apps. A key is
printed once, when created; only its SHA-256 is stored."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from api.settings import Settings
from gis import open311
from gis.audit import Actor
from gis.database import engine_for

open311_app = typer.Typer(help="Open311 GeoReport v2 (citizen apps).", no_args_is_help=True)
key_app = typer.Typer(help="API keys of Open311 client apps.", no_args_is_help=True)
open311_app.add_typer(key_app, name="key")
out = Console(highlight=False)
ACTOR = Actor(f"cli:{getpass.getuser()}")
NameArg = Annotated[str, typer.Argument(help="the client app, e.g. wechat-miniapp")]


@key_app.command()
def create(name: NameArg) -> None:
    """Create a key for client NAME; the key is the last word printed (shown only once)."""
    with engine_for(Settings().live_db_url()) as engine:
        with engine.begin() as conn:
            row, key = open311.create_key(conn, name, by=ACTOR)
    out.print(f"[green]Open311 key for {escape(row['name'])} created[/]; store it now, it is "
              "not shown again.")
    typer.echo(f"api_key: {key}")  # plain and unwrapped: scripts take the last word


@key_app.command(name="list")
def list_() -> None:
    """List client keys (names and dates; keys are never shown again)."""
    with engine_for(Settings().live_db_url()) as engine:
        with engine.connect() as conn:
            rows = open311.list_keys(conn)
    table = Table(Column("name", overflow="fold"), "created", "last used", "revoked")
    for row in rows:
        table.add_row(escape(row["name"]), f"{row['created_at']:%Y-%m-%d %H:%M}",
                      f"{row['last_used_at']:%Y-%m-%d %H:%M}" if row["last_used_at"] else "",
                      f"{row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "")
    out.print(table)


@key_app.command()
def revoke(name: NameArg) -> None:
    """Revoke client NAME's key: its POSTs are refused from now on (403)."""
    with engine_for(Settings().live_db_url()) as engine:
        with engine.begin() as conn:
            row = open311.revoke_key(conn, name, by=ACTOR)
    out.print(f"Open311 key of {escape(row['name'])} revoked "
              f"(since {row['revoked_at']:%Y-%m-%d %H:%M})")
