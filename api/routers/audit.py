"""`GET /api/v1/audit`: the append-only audit log, for admins (no endpoint changes it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from api.deps import ConnDep, SettingsDep
from api.routers.boundaries import AtQuery, LimitQuery
from api.security import AdminUser
from gis import audit, features

router = APIRouter(tags=["audit"])


class AuditEntry(BaseModel):
    id: int
    at: datetime
    user_id: int | None
    actor: str
    action: str
    object_type: str
    object_id: str | None
    before: Any
    after: Any
    request_id: str | None
    district_code: str | None


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next: str | None = None


@router.get("/audit", response_model=AuditPage, summary="Audit log (admins)")
def list_audit(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    _admin: AdminUser,
    actor: Annotated[str | None, Query(description="username (or cli:NAME, demo)")] = None,
    user_id: Annotated[int | None, Query(ge=1)] = None,
    action: Annotated[str | None, Query(description="e.g. user.add, auth.login")] = None,
    object_type: Annotated[str | None, Query(description="e.g. user, incident")] = None,
    object_id: Annotated[str | None, Query()] = None,
    district: Annotated[str | None, Query(description="district code (6 digits)")] = None,
    request_id: Annotated[str | None, Query(description="X-Request-ID of the change")] = None,
    since: AtQuery = None,
    until: AtQuery = None,
    limit: LimitQuery = None,
    before: Annotated[int | None, Query(ge=1, description="keyset cursor (use `next`)")] = None,
) -> AuditPage:
    """Entries newest first, filtered; `next` links the following page."""
    where = audit.AuditFilter(
        actor=actor, user_id=user_id, action=action, object_type=object_type,
        object_id=object_id,
        district_code=features.opt_code(district, ("district",), "district"),
        request_id=request_id,
        since=features.parse_opt_at(since, "since"),
        until=features.parse_opt_at(until, "until"))
    items, cursor = audit.list_entries(
        conn, where, limit=features.check_limit(limit, settings.page_max), before_id=before)
    next_link = (None if cursor is None
                 else str(request.url.include_query_params(before=cursor)))
    return AuditPage(items=[AuditEntry(**item) for item in items], next=next_link)
