"""User accounts: roles, jurisdiction scope, argon2 password hashes. Every change is audited
in the same transaction."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Connection, text

from gis import audit
from gis.errors import Conflict, InvalidInput, NotFound

ROLES = ("admin", "operator", "dispatcher", "street_chief", "planner", "viewer")
USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{2,64}$")
MIN_PASSWORD = 8
_hasher = PasswordHasher()

PUBLIC_COLUMNS = ("id", "username", "display_name", "roles", "scope_codes", "department_id",
                  "person_id", "is_active", "is_demo", "created_at")


def hash_password(password: str) -> str:
    """An argon2id hash of `password`."""
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """True when `password` matches `password_hash` (False for any mismatch or bad hash)."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def add_user(
    conn: Connection, *, username: str, password: str, roles: Sequence[str],
    scope_codes: Sequence[str] = (), department_code: str | None = None,
    person_id: int | None = None, display_name: str | None = None, is_demo: bool = False,
    by: audit.Actor,
) -> dict[str, Any]:
    """Create a user; InvalidInput names the bad field, Conflict a taken username."""
    if not USERNAME.match(username):
        raise InvalidInput("username: 2–64 letters, digits or _ . @ -", field="username")
    _check_password(password)
    roles = _check_roles(roles)
    scope = _check_scope(conn, scope_codes)
    department_id = _department_id(conn, department_code)
    if "dispatcher" in roles and department_id is None:
        raise InvalidInput("a department dispatcher needs --department", field="department")
    if "street_chief" in roles and person_id is None:
        raise InvalidInput("a street chief needs --person (the 街巷长 or 小巷管家 it is)",
                           field="person")
    if person_id is not None and not conn.scalar(
            text("SELECT 1 FROM people WHERE id = :id"), {"id": person_id}):
        raise InvalidInput(f"no person with id {person_id}", field="person")
    if conn.scalar(text("SELECT 1 FROM users WHERE username = :u"), {"u": username}):
        raise Conflict(f"user {username!r} already exists", field="username")
    row = conn.execute(
        text(f"""
            INSERT INTO users (username, display_name, password_hash, roles, scope_codes,
                               department_id, person_id, is_demo)
            VALUES (:username, :display_name, :hash, :roles, :scope, :department_id,
                    :person_id, :is_demo)
            RETURNING {", ".join(PUBLIC_COLUMNS)}
        """),  # noqa: S608 - column names are the constant above
        {"username": username, "display_name": display_name, "hash": hash_password(password),
         "roles": list(roles), "scope": list(scope), "department_id": department_id,
         "person_id": person_id, "is_demo": is_demo},
    ).mappings().one()
    user = dict(row)
    audit.record(conn, by, action="user.add", object_type="user",
                 object_id=str(user["id"]), after=user)
    return user


def list_users(conn: Connection) -> list[dict[str, Any]]:
    """Every user (without password hashes), by username."""
    rows = conn.execute(text(
        f"SELECT {', '.join(PUBLIC_COLUMNS)} FROM users ORDER BY username"))  # noqa: S608
    return [dict(r) for r in rows.mappings()]


def set_password(conn: Connection, username: str, password: str, *, by: audit.Actor) -> None:
    """Replace a user's password."""
    _check_password(password)
    user_id = _user_id(conn, username)
    conn.execute(text("UPDATE users SET password_hash = :h, password_changed_at = now() "
                      "WHERE id = :id"), {"h": hash_password(password), "id": user_id})
    audit.record(conn, by, action="user.passwd", object_type="user",
                 object_id=str(user_id))


def disable_user(conn: Connection, username: str, *, by: audit.Actor) -> dict[str, Any]:
    """Disable a user (accounts are never deleted: the audit log refers to them); the
    account as it is now."""
    user_id = _user_id(conn, username)
    row = conn.execute(
        text(f"UPDATE users SET is_active = false WHERE id = :id "  # noqa: S608
             f"RETURNING {', '.join(PUBLIC_COLUMNS)}"),  # constant column names
        {"id": user_id}).mappings().one()
    audit.record(conn, by, action="user.disable", object_type="user",
                 object_id=str(user_id), before={"is_active": True}, after={"is_active": False})
    return dict(row)


def active_demo_users(conn: Connection) -> list[str]:
    """Usernames of active demo accounts (production refuses to start while any exist)."""
    return list(conn.scalars(text(
        "SELECT username FROM users WHERE is_demo AND is_active ORDER BY username")))


def _user_id(conn: Connection, username: str) -> int:
    user_id = conn.scalar(text("SELECT id FROM users WHERE username = :u"), {"u": username})
    if user_id is None:
        raise NotFound(f"no user {username!r}", field="username")
    return int(user_id)


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise InvalidInput(f"password: at least {MIN_PASSWORD} characters", field="password")


def _check_roles(roles: Sequence[str]) -> list[str]:
    wanted = [r.strip() for r in roles if r.strip()]
    unknown = [r for r in wanted if r not in ROLES]
    if unknown or not wanted:
        raise InvalidInput(f"role: {', '.join(unknown) or 'none given'}; one or more of "
                           f"{', '.join(ROLES)}", field="role")
    return list(dict.fromkeys(wanted))


def _check_scope(conn: Connection, codes: Sequence[str]) -> list[str]:
    wanted = list(dict.fromkeys(c.strip() for c in codes if c.strip()))
    known = set(conn.scalars(
        text("SELECT code FROM jurisdictions WHERE code = ANY(:codes) "
             "AND level IN ('district', 'street')"), {"codes": wanted}))
    unknown = [c for c in wanted if c not in known]
    if unknown:
        raise InvalidInput(f"scope: no district or street with code {', '.join(unknown)}",
                           field="scope")
    return wanted


def _department_id(conn: Connection, code: str | None) -> int | None:
    if code is None:
        return None
    department_id = conn.scalar(text("SELECT id FROM departments WHERE code = :c"), {"c": code})
    if department_id is None:
        raise InvalidInput(f"no department with code {code!r}", field="department")
    return int(department_id)
