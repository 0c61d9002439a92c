"""`GET /api/v1/event-classes`: the loaded event catalog (事件/部件 classes with their
responsible departments and stage time limits), for any signed-in user."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel

from api.deps import ConnDep
from api.security import CurrentUser
from gis import catalog

router = APIRouter(tags=["catalog"])


class Department(BaseModel):
    type: str
    role: Literal["primary", "assisting"]
    type_name: str | None  # e.g. 城管执法 (from the catalog's department types)


class TimeLimit(BaseModel):
    value: float
    unit: Literal["work_hours", "work_days", "hours"]


class EventClass(BaseModel):
    kind: Literal["event", "component"]
    code: str
    major_code: str
    major_name: str
    name: str
    departments: list[Department]
    time_limits: dict[str, TimeLimit]
    default_whistle: str | None
    active: bool


@router.get("/event-classes", response_model=list[EventClass],
            summary="Event and component classes (the catalog)")
def list_event_classes(
    conn: ConnDep,
    _user: CurrentUser,
    kind: Annotated[Literal["event", "component"] | None, Query()] = None,
    major: Annotated[str | None, Query(description="major code (2 digits) or name")] = None,
    active: Annotated[bool, Query(description="active classes, or only retired ones")] = True,
    q: Annotated[str | None, Query(max_length=100,
                                   description="substring of the name or code")] = None,
) -> list[EventClass]:
    """Classes, events first then by code, with their departments and time limits."""
    rows = catalog.list_classes(conn, kind=kind, major=major, active=active, q=q)
    return [EventClass.model_validate(row) for row in rows]
