"""Authentication: login checks with throttling, revocable sessions, signed tokens and CSRF
values. HTTP-free: the API turns these into bearer tokens and cookies.

A token is `<session id>.<signature>`: the signature (HMAC-SHA256 with the secret key)
rejects tampered or forged tokens without a database read; the session row decides expiry,
revocation (logout, disabled user, changed password)."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis.errors import TooManyRequests
from gis.users import hash_password, verify_password

SessionKind = Literal["bearer", "cookie"]


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the username is unknown, so both cases cost one argon2 check."""
    return hash_password(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class Principal:
    """The signed-in user of a request: roles, scope and bindings, and the session used."""

    user_id: int
    username: str
    display_name: str | None
    roles: frozenset[str]
    scope_codes: tuple[str, ...]
    department_id: int | None
    person_id: int | None
    session_id: str
    session_kind: SessionKind
    expires_at: datetime

    def has_any(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    @property
    def city_wide(self) -> bool:
        """An empty scope means the whole city."""
        return not self.scope_codes


@dataclass(frozen=True)
class ThrottlePolicy:
    max_per_user: int
    max_per_ip: int
    window: timedelta


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _mac(key: bytes, purpose: str, session_id: str) -> str:
    return _b64(hmac.new(key, f"{purpose}:{session_id}".encode(), hashlib.sha256).digest())


def token_for(key: bytes, session_id: str) -> str:
    """The bearer token (or cookie value) of a session."""
    return f"{session_id}.{_mac(key, 'session', session_id)}"


def session_id_from(key: bytes, token: str) -> str | None:
    """The session id of a well-signed token; None when malformed, tampered or forged."""
    session_id, _, signature = token.rpartition(".")
    if not session_id or not hmac.compare_digest(signature, _mac(key, "session", session_id)):
        return None
    return session_id


def csrf_for(key: bytes, session_id: str) -> str:
    """The CSRF value of a cookie session (double submit: readable cookie + header)."""
    return _mac(key, "csrf", session_id)


def check_throttle(conn: Connection, username: str, client_ip: str,
                   policy: ThrottlePolicy) -> None:
    """TooManyRequests when the username or the client address failed too often lately."""
    row = conn.execute(
        text("""
            SELECT count(*) FILTER (WHERE username = :username) AS by_user,
                   min(at) FILTER (WHERE username = :username) AS user_oldest,
                   count(*) FILTER (WHERE client_ip = :ip) AS by_ip,
                   min(at) FILTER (WHERE client_ip = :ip) AS ip_oldest,
                   now() AS now
            FROM login_failures
            WHERE (username = :username OR client_ip = :ip) AND at > now() - :window
        """),
        {"username": username, "ip": client_ip, "window": policy.window},
    ).mappings().one()
    for count, limit, oldest, what in (
            (row["by_user"], policy.max_per_user, row["user_oldest"], "this username"),
            (row["by_ip"], policy.max_per_ip, row["ip_oldest"], "this address")):
        if count >= limit:
            wait = oldest + policy.window - row["now"]
            raise TooManyRequests(
                f"too many failed logins for {what}; try again in "
                f"{int(wait.total_seconds()) // 60 + 1} min",
                retry_after=int(wait.total_seconds()) + 1, field="username")


def verify_login(conn: Connection, username: str, password: str,
                 client_ip: str) -> dict[str, Any] | None:
    """The active user with these credentials, or None (the failure is recorded on `conn`;
    commit it). Unknown users cost the same argon2 check as known ones."""
    user = conn.execute(
        text("SELECT id, username, password_hash, is_active FROM users WHERE username = :u"),
        {"u": username},
    ).mappings().one_or_none()
    ok = verify_password(user["password_hash"] if user else _dummy_hash(), password)
    if user is not None and ok and user["is_active"]:
        conn.execute(text("DELETE FROM login_failures WHERE username = :u"), {"u": username})
        return {"id": user["id"], "username": user["username"]}
    conn.execute(text("INSERT INTO login_failures (username, client_ip) VALUES (:u, :ip)"),
                 {"u": username, "ip": client_ip})
    return None


def create_session(conn: Connection, user_id: int, kind: SessionKind, ttl: timedelta, *,
                   client_ip: str | None = None, user_agent: str | None = None,
                   ) -> tuple[str, datetime]:
    """A new session for `user_id`: (its id, when it expires)."""
    session_id = secrets.token_urlsafe(32)
    expires_at = conn.scalar(
        text("""
            INSERT INTO auth_sessions (id, user_id, kind, expires_at, client_ip, user_agent)
            VALUES (:id, :user_id, :kind, now() + :ttl, :ip, left(:ua, 300))
            RETURNING expires_at
        """),
        {"id": session_id, "user_id": user_id, "kind": kind, "ttl": ttl, "ip": client_ip,
         "ua": user_agent},
    )
    return session_id, expires_at


def principal_for(conn: Connection, session_id: str) -> Principal | None:
    """The user behind a live session; None when the session is unknown, expired, revoked,
    older than the user's last password change, or the user is disabled."""
    row = conn.execute(
        text("""
            SELECT u.id, u.username, u.display_name, u.roles, u.scope_codes, u.department_id,
                   u.person_id, s.kind, s.expires_at
            FROM auth_sessions s JOIN users u ON u.id = s.user_id
            WHERE s.id = :sid AND s.revoked_at IS NULL AND s.expires_at > now()
              AND u.is_active AND s.created_at >= u.password_changed_at
        """),
        {"sid": session_id},
    ).mappings().one_or_none()
    if row is None:
        return None
    return Principal(
        user_id=row["id"], username=row["username"], display_name=row["display_name"],
        roles=frozenset(row["roles"]), scope_codes=tuple(row["scope_codes"]),
        department_id=row["department_id"], person_id=row["person_id"],
        session_id=session_id, session_kind=row["kind"], expires_at=row["expires_at"])


def revoke_session(conn: Connection, session_id: str) -> None:
    """End a session now (logout)."""
    conn.execute(text("UPDATE auth_sessions SET revoked_at = now() "
                      "WHERE id = :sid AND revoked_at IS NULL"), {"sid": session_id})
