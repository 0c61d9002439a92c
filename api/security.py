"""Who is calling, and may they: `CurrentUser`, `require_role(...)`, the CSRF check, the
audit actor of a request, and per-client rate limits for public endpoints.

A request authenticates with `Authorization: Bearer <token>` (API clients) or the
HttpOnly session cookie (browsers). A state-changing request authenticated by the cookie
must echo the CSRF value (readable cookie `gridops_csrf`) in the `X-CSRF-Token` header.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyCookie, OAuth2PasswordBearer

from api.deps import ConnDep, EngineDep, SettingsDep
from api.settings import Settings
from gis import auth
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Forbidden, TooManyRequests, Unauthenticated

SESSION_COOKIE = "gridops_session"
CSRF_COOKIE = "gridops_csrf"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Declared for the OpenAPI document (Swagger's "Authorize" uses the password flow).
_bearer = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)
_cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False,
                       description="browser session (POST /api/v1/auth/login)")


def client_ip(request: Request) -> str:
    """The caller's address (the direct peer; no proxy headers are trusted)."""
    return request.client.host if request.client else "unknown"


def request_id(request: Request) -> str | None:
    """The request id set by the middleware (echoed in `X-Request-ID`)."""
    value: str | None = getattr(request.state, "request_id", None)
    return value


def get_principal(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    """The signed-in user; 401 when the credentials are missing, tampered, expired or
    revoked; 403 when a cookie-authenticated change lacks the CSRF header."""
    key = settings.signing_key()
    token = bearer or cookie
    if not token:
        raise Unauthenticated("sign in: send `Authorization: Bearer <token>` from "
                              "POST /api/v1/auth/token, or log in in the browser",
                              field="Authorization")
    session_id = auth.session_id_from(key, token)
    if session_id is None:
        raise Unauthenticated("the token is malformed or its signature does not match",
                              field="Authorization")
    principal = auth.principal_for(conn, session_id)
    if principal is None:
        raise Unauthenticated("the session has expired or was revoked; sign in again",
                              field="Authorization")
    if not bearer and request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent, auth.csrf_for(key, session_id)):
            raise Forbidden(f"CSRF check failed: send the value of the {CSRF_COOKIE} cookie "
                            f"in the {CSRF_HEADER} header", field=CSRF_HEADER)
    request.state.principal = principal
    return principal


CurrentUser = Annotated[Principal, Depends(get_principal)]


def get_optional_principal(
    request: Request,
    engine: EngineDep,
    settings: SettingsDep,
    bearer: Annotated[str | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal | None:
    """The signed-in user, or None (pages redirect to the login page instead of a 401).
    Without any credentials the database is not touched, so the redirect works while it
    is down."""
    if not (bearer or cookie):
        return None
    with engine.connect() as conn:
        try:
            return get_principal(request, conn, settings, bearer, cookie)
        except (Unauthenticated, Forbidden):
            return None


OptionalUser = Annotated[Principal | None, Depends(get_optional_principal)]


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the current user, who must hold one of `roles` (else 403)."""

    async def check(user: CurrentUser) -> Principal:
        if not user.has_any(*roles):
            raise Forbidden(f"this needs the role {' or '.join(roles)}; you have "
                            f"{', '.join(sorted(user.roles))}", field="role")
        return user

    return check


AdminUser = Annotated[Principal, Depends(require_role("admin"))]
Planner = Annotated[Principal, Depends(require_role("admin", "planner"))]
IncidentReporter = Annotated[Principal, Depends(require_role(
    "admin", "operator", "street_chief"))]
IncidentReader = Annotated[Principal, Depends(require_role(
    "admin", "operator", "dispatcher", "street_chief", "planner", "viewer"))]
Commander = Annotated[Principal, Depends(require_role("admin", "operator"))]  # command center
CaseWorker = Annotated[Principal, Depends(require_role(  # + departments, on their own tasks
    "admin", "operator", "dispatcher"))]


def actor_of(request: Request, user: Principal | None = None) -> Actor:
    """The audit actor of a request: its user (if any), the request id."""
    if user is None:
        return Actor("anonymous", request_id=request_id(request))
    return Actor(user.username, user_id=user.user_id, request_id=request_id(request))


class RateLimiter:
    """A sliding-window limit per (endpoint, client address), kept in this process."""

    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def hit(self, name: str, client: str, limit: int, window_s: float = 60.0) -> None:
        """Count one request; TooManyRequests when `limit` are already in the window."""
        now = time.monotonic()
        with self._lock:
            hits = self._hits[(name, client)]
            while hits and hits[0] <= now - window_s:
                hits.popleft()
            if len(hits) >= limit:
                raise TooManyRequests(
                    f"rate limit: at most {limit} requests {_per(window_s)} to {name}; "
                    "slow down",
                    retry_after=int(hits[0] + window_s - now) + 1)
            hits.append(now)


def _per(window_s: float) -> str:
    """A window in words: "per minute", "per hour", "per 90 s"."""
    return {60.0: "per minute", 3600.0: "per hour"}.get(float(window_s), f"per {window_s:g} s")


def _public_rate(settings: Settings) -> int:
    return settings.public_rate_per_minute


def rate_limited(name: str, limit_of: Callable[[Settings], int] = _public_rate,
                 window_s: float = 60.0) -> Callable[[Request, SettingsDep], Awaitable[None]]:
    """A dependency limiting each client address on endpoint `name` to `limit_of(settings)`
    requests per `window_s` seconds (default: the public rate per minute)."""

    async def limit(request: Request, settings: SettingsDep) -> None:
        limiter: RateLimiter = request.app.state.rate_limiter
        limiter.hit(name, client_ip(request), limit_of(settings), window_s)

    return limit
