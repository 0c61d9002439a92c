"""`GET /api/v1/health`: database reachability, server versions, migration state.

- 200 `{"status": "ok", ...}`: database reachable, schema at the migration head;
- 200 `{"status": "degraded", ...}`: database reachable but its schema revision is not
  the code's head (the API answers; some endpoints may fail until `gridops db migrate`);
  200 so that a load balancer keeps a live process in rotation while an operator migrates;
- 503 `{"status": "unavailable", "detail": ...}`: the database cannot be reached.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import exc as sa_exc

from api.deps import engine_of
from api.errors import RETRY_AFTER_SECONDS, database_message
from api.security import rate_limited
from gis import migrate
from gis.database import server_info
from gis.errors import DatabaseUnavailable

router = APIRouter(tags=["health"])


class Migration(BaseModel):
    current: str | None
    head: str | None


class Health(BaseModel):
    status: str
    postgresql: str
    postgis: str | None
    pgrouting: str | None
    migration: Migration
    detail: str | None = None


class Unavailable(BaseModel):
    status: str = "unavailable"
    detail: str


@router.get(
    "/health",
    response_model=Health,
    response_model_exclude_unset=True,
    responses={503: {"model": Unavailable, "description": "database unreachable"}},
    summary="Service health",
    dependencies=[Depends(rate_limited("health"))],
)
def health(request: Request) -> Any:
    """Database versions and migration state; 503 when the database is unreachable."""
    try:
        engine = engine_of(request.app)
        with engine.connect() as conn:
            info = server_info(conn)
            current = migrate.current_revision(conn)
    except DatabaseUnavailable as exc:
        return _unavailable(exc.message)
    except (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.TimeoutError) as exc:
        return _unavailable(database_message(exc, None))
    head = migrate.head_revision()
    result = Health(
        status="ok",
        postgresql=info.postgresql,
        postgis=info.postgis,
        pgrouting=info.pgrouting,
        migration=Migration(current=current, head=head),
    )
    if current != head:
        result.status = "degraded"
        result.detail = (f"database schema is at revision {current or 'none'}, the code "
                         f"expects {head}: run `gridops db migrate`")
    return result


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"status": "unavailable", "detail": f"database unavailable: {reason}"},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )
