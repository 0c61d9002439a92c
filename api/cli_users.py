"""`gridops users ...`: accounts, roles and jurisdiction scopes (every change audited)."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from gis import users
from gis.audit import Actor
from gis.database import engine_for

users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
out = Console(highlight=False)
ACTOR = Actor(f"cli:{getpass.getuser()}")


def _split(values: list[str]) -> list[str]:
    """`--role a --role b` and `--role a,b` both work."""
    return [part for value in values for part in value.split(",") if part.strip()]


@users_app.command()
def add(
    username: str,
    role: Annotated[list[str], typer.Option(help=f"one or more of {', '.join(users.ROLES)}")],
    password: Annotated[str | None, typer.Option(help="asked for when omitted")] = None,
    scope: Annotated[list[str] | None, typer.Option(
        help="district/street codes the user acts in (empty: the whole city)")] = None,
    department: Annotated[str | None, typer.Option(help="department code (dispatchers)")] = None,
    person: Annotated[int | None, typer.Option(help="person id (street chiefs)")] = None,
    display_name: Annotated[str | None, typer.Option(help="name shown in the UI")] = None,
) -> None:
    """Create a user."""
    secret = password or typer.prompt("password", hide_input=True, confirmation_prompt=True)
    with engine_for(Settings().live_db_url()) as engine:
        with engine.begin() as conn:
            user = users.add_user(conn, username=username, password=secret, roles=_split(role),
                                  scope_codes=_split(scope or []), department_code=department,
                                  person_id=person, display_name=display_name, by=ACTOR)
    out.print(f"[green]user {user['username']} created[/] (id {user['id']}, roles "
              f"{', '.join(user['roles'])}, scope {', '.join(user['scope_codes']) or 'city'})")


@users_app.command(name="list")
def list_() -> None:
    """List users (never their passwords)."""
    with engine_for(Settings().live_db_url()) as engine:
        with engine.connect() as conn:
            rows = users.list_users(conn)
    table = Table("username", "roles", "scope", "active", "demo")
    for row in rows:
        table.add_row(row["username"], ", ".join(row["roles"]),
                      ", ".join(row["scope_codes"]) or "city",
                      "yes" if row["is_active"] else "no", "yes" if row["is_demo"] else "")
    out.print(table)


@users_app.command()
def passwd(
    username: str,
    password: Annotated[str | None, typer.Option(help="asked for when omitted")] = None,
) -> None:
    """Set a user's password."""
    secret = password or typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    with engine_for(Settings().live_db_url()) as engine:
        with engine.begin() as conn:
            users.set_password(conn, username, secret, by=ACTOR)
    out.print(f"password of {username} changed")


@users_app.command()
def disable(username: str) -> None:
    """Disable a user (accounts are kept for the audit log)."""
    with engine_for(Settings().live_db_url()) as engine:
        with engine.begin() as conn:
            users.disable_user(conn, username, by=ACTOR)
    out.print(f"user {username} disabled")
