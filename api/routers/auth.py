"""Sign in and out: OAuth2 password flow for API clients (bearer token), a session cookie
with CSRF protection for browsers. Logins are throttled after repeated failures."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from api.deps import ConnDep, SettingsDep
from api.security import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    CurrentUser,
    actor_of,
    client_ip,
    rate_limited,
)
from api.settings import Settings
from gis import audit, auth
from gis.auth import Principal, SessionKind, ThrottlePolicy
from gis.errors import Unauthenticated

router = APIRouter(prefix="/auth", tags=["auth"])
LOGIN_LIMIT = Depends(rate_limited("login"))


class Token(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds until the token expires")
    expires_at: datetime


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    id: int
    username: str
    display_name: str | None
    roles: list[str]
    scope_codes: list[str] = Field(description="district/street codes; empty = whole city")
    department_id: int | None
    person_id: int | None
    session: str = Field(description="bearer or cookie")
    expires_at: datetime


class BrowserSession(BaseModel):
    user: Me
    csrf_token: str = Field(description=f"send it as X-CSRF-Token (also in the {CSRF_COOKIE} "
                                        "cookie) on state-changing requests")


def _me(p: Principal) -> Me:
    return Me(id=p.user_id, username=p.username, display_name=p.display_name,
              roles=sorted(p.roles), scope_codes=list(p.scope_codes),
              department_id=p.department_id, person_id=p.person_id, session=p.session_kind,
              expires_at=p.expires_at)


def _sign_in(conn: Connection, settings: Settings, request: Request, username: str,
             password: str, kind: SessionKind) -> Principal:
    """Check the credentials (throttled) and open a session; audited."""
    ip = client_ip(request)
    auth.check_throttle(conn, username, ip, ThrottlePolicy(
        settings.login_max_failures, settings.login_ip_max_failures,
        timedelta(minutes=settings.login_window_minutes)))
    user = auth.verify_login(conn, username, password, ip)
    if user is None:
        conn.commit()  # keep the failure: it counts towards the throttle
        raise Unauthenticated("username or password is wrong (or the account is disabled)",
                              field="password")
    session_id, _ = auth.create_session(
        conn, user["id"], kind, timedelta(minutes=settings.session_ttl_minutes),
        client_ip=ip, user_agent=request.headers.get("user-agent"))
    principal = auth.principal_for(conn, session_id)
    assert principal is not None  # just created
    audit.record(conn, actor_of(request, principal), action="auth.login", object_type="user",
                 object_id=str(user["id"]), after={"session": kind, "client_ip": ip})
    conn.commit()
    return principal


@router.post("/token", response_model=Token, dependencies=[LOGIN_LIMIT],
             summary="OAuth2 password flow: a bearer token")
def token(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    """Exchange username and password (form fields) for a bearer token that expires."""
    p = _sign_in(conn, settings, request, form.username, form.password, "bearer")
    seconds = int(timedelta(minutes=settings.session_ttl_minutes).total_seconds())
    return Token(access_token=auth.token_for(settings.signing_key(), p.session_id),
                 expires_in=seconds, expires_at=p.expires_at)


@router.post("/login", response_model=BrowserSession, dependencies=[LOGIN_LIMIT],
             summary="Browser login: a session cookie (HttpOnly, Secure) and a CSRF value")
def login(request: Request, response: Response, conn: ConnDep, settings: SettingsDep,
          body: Credentials) -> BrowserSession:
    """Open a browser session: sets the HttpOnly session cookie and the CSRF cookie."""
    p = _sign_in(conn, settings, request, body.username, body.password, "cookie")
    key = settings.signing_key()
    csrf = auth.csrf_for(key, p.session_id)
    max_age = settings.session_ttl_minutes * 60
    response.set_cookie(SESSION_COOKIE, auth.token_for(key, p.session_id), max_age=max_age,
                        path="/", secure=settings.cookie_secure, httponly=True, samesite="lax")
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, path="/",
                        secure=settings.cookie_secure, httponly=False, samesite="strict")
    return BrowserSession(user=_me(p), csrf_token=csrf)


@router.post("/logout", summary="Revoke the current token or browser session")
def logout(request: Request, response: Response, conn: ConnDep, user: CurrentUser,
           settings: SettingsDep) -> dict[str, Any]:
    """End this session now: the token or cookie stops working everywhere."""
    auth.revoke_session(conn, user.session_id)
    audit.record(conn, actor_of(request, user), action="auth.logout", object_type="user",
                 object_id=str(user.user_id), after={"session": user.session_kind})
    conn.commit()
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=settings.cookie_secure)
    return {"status": "signed out"}


@router.get("/me", response_model=Me, summary="The signed-in user")
def me(user: CurrentUser) -> Me:
    """Roles, scope and bindings of the current user."""
    return _me(user)
