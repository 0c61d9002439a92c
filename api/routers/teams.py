"""Departments and teams: the team list and map layer (status, freshness of positions,
active dispatch), manual status changes, admin edits, GPS fixes and position history.

Who may call (403 for other roles; a team outside the caller's scope answers 404):
- GET departments, teams, one team, position history: admin, operator, dispatcher,
  planner, viewer (rows filtered: scoped operators/planners/viewers see the teams of their
  jurisdictions, dispatchers their department's);
- POST status, POST positions: admin, operator (team in scope), dispatcher (own
  department);
- PATCH a team: admin.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.deps import ConnDep, SettingsDep
from api.errors import field_error
from api.routers.boundaries import (
    AtQuery,
    BBoxQuery,
    GeoJSONResponse,
    LimitQuery,
    collection,
)
from api.security import AdminUser, CaseWorker, actor_of, require_role
from api.settings import Settings
from gis import features, teams
from gis.auth import Principal
from gis.teams import Fix, InvalidFixes, TeamFilter, TeamStatus

router = APIRouter(tags=["teams"], default_response_class=GeoJSONResponse)

TeamReader = Annotated[Principal, Depends(require_role(
    "admin", "operator", "dispatcher", "planner", "viewer"))]
TeamId = Annotated[int, Path(ge=1, description="team id")]


def stale_after(settings: Settings) -> timedelta:
    """How old a position may be before the team counts as stale (not recommended)."""
    return timedelta(minutes=settings.position_stale_minutes)


# -- departments and teams -------------------------------------------------------------


class Department(BaseModel):
    id: int
    code: str
    name: str
    dept_type: str
    dept_type_name: str | None  # e.g. 城管执法 (from the catalog's department types)
    tier: Literal["core", "stationed", "on_call"]
    jurisdiction_code: str
    district_code: str
    phone: str | None
    teams: int


@router.get("/departments", response_model=list[Department], response_class=JSONResponse,
            summary="Departments (1+5+N) by code")
def list_departments(
    conn: ConnDep,
    _user: TeamReader,
    district: Annotated[str | None, Query(description="district code (6 digits)")] = None,
    dept_type: Annotated[str | None, Query(max_length=64,
                                           description="e.g. urban_management")] = None,
    tier: Annotated[Literal["core", "stationed", "on_call"] | None, Query(
        description="core (1), stationed (5) or on call (N)")] = None,
) -> list[Department]:
    """Every department with its type's name and number of teams."""
    rows = teams.list_departments(
        conn, district_code=features.opt_code(district, ("district",), "district"),
        dept_type=dept_type, tier=tier)
    return [Department.model_validate(r) for r in rows]


@router.get("/teams", summary="Teams in your scope, with status and live position")
def list_teams(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    user: TeamReader,
    department_id: Annotated[int | None, Query(ge=1, description="department id")] = None,
    status: Annotated[TeamStatus | None, Query(description="team status")] = None,
    district: Annotated[str | None, Query(
        description="home district code (6 digits)")] = None,
    capability: Annotated[str | None, Query(
        max_length=64, description="a capability the team lists: a department type "
                                   "(urban_management) or a class (event:0103)")] = None,
    fresh: Annotated[bool | None, Query(
        description="only teams with a fresh position (true) or a stale/missing one "
                    "(false)")] = None,
    bbox: BBoxQuery = None,
    limit: LimitQuery = None,
    after: Annotated[int | None, Query(ge=0, description="keyset cursor: ids after this "
                                                           "(use the `next` link)")] = None,
) -> GeoJSONResponse:
    """Teams as a FeatureCollection (geometry: current position), by id."""
    where = TeamFilter(
        department_id=department_id, status=status,
        district_code=features.opt_code(district, ("district",), "district"),
        capability=capability, fresh=fresh, bbox=features.parse_bbox(bbox))
    page = teams.list_teams(conn, user, where, stale_after(settings),
                            limit=features.check_limit(limit, settings.page_max),
                            after_id=after)
    return collection(request, page, cursor="after")


@router.get("/teams/{team_id}", summary="One team",
            responses={404: {"description": "no such team, or not in your scope"}})
def get_team(conn: ConnDep, settings: SettingsDep, user: TeamReader,
             team_id: TeamId) -> GeoJSONResponse:
    """One team as a Feature (404 outside your scope, as for a missing id)."""
    return GeoJSONResponse(teams.get_team(conn, user, team_id, stale_after(settings)))


class TeamChanges(BaseModel):
    """Fields an admin may change; only the fields sent are changed."""

    model_config = ConfigDict(extra="forbid")

    capabilities: list[Annotated[str, Field(max_length=64)]] | None = Field(
        default=None, max_length=teams.MAX_CAPABILITIES,
        description="department types of the catalog or classes such as event:0103",
        examples=[["urban_management", "event:0103"]])
    shift_start: str | None = Field(default=None, max_length=16, examples=["08:00"])
    shift_end: str | None = Field(default=None, max_length=16, examples=["17:30"])
    name: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    home_code: str | None = Field(default=None, max_length=9,
                                  description="a loaded district or street code")
    members: int | None = Field(default=None, ge=1, le=1000)


@router.patch("/teams/{team_id}", summary="Edit a team (admin)",
              responses={404: {"description": "no such team"}})
def update_team(request: Request, conn: ConnDep, settings: SettingsDep, user: AdminUser,
                team_id: TeamId, body: TeamChanges) -> GeoJSONResponse:
    """Change capabilities, shift, name, phone, home or members; returns the team."""
    teams.update_team(conn, team_id, body.model_dump(exclude_unset=True),
                      actor_of(request, user))
    conn.commit()
    return GeoJSONResponse(teams.get_team(conn, user, team_id, stale_after(settings)))


class StatusChange(BaseModel):
    status: TeamStatus = Field(description="available, off_duty or out_of_service (busy is "
                                           "set by dispatching)")
    reason: str | None = Field(default=None, max_length=teams.MAX_REASON)


@router.post("/teams/{team_id}/status", summary="Set a team's status by hand",
             responses={404: {"description": "no such team, or not in your scope"},
                        409: {"description": "the team holds an active dispatch"}})
def set_status(request: Request, conn: ConnDep, settings: SettingsDep, user: CaseWorker,
               team_id: TeamId, body: StatusChange) -> GeoJSONResponse:
    """available, off duty or out of service; returns the team."""
    teams.set_status(conn, team_id, body.status, actor_of(request, user), user, body.reason)
    conn.commit()
    return GeoJSONResponse(teams.get_team(conn, user, team_id, stale_after(settings)))


# -- positions -------------------------------------------------------------------------


class FixIn(BaseModel):
    """One GPS fix."""

    at: str = Field(max_length=64, description="ISO 8601 datetime of the fix (no offset = "
                                               "Beijing time)",
                    examples=["2026-11-20T16:40:00+08:00"])
    lon: float = Field(description="longitude in `crs`", examples=[116.3655])
    lat: float = Field(description="latitude in `crs`", examples=[39.8948])
    crs: str = Field(default="wgs84", max_length=16,
                     description="wgs84, gcj02 (Amap, WeChat) or bd09 (Baidu)")
    accuracy_m: float | None = Field(default=None, description="horizontal accuracy, metres")
    speed_mps: float | None = Field(default=None, description="speed the device reports, m/s")


class FixBatch(BaseModel):
    fixes: list[FixIn] = Field(min_length=1, max_length=teams.MAX_FIXES)


def _bad_fixes(exc: InvalidFixes) -> JSONResponse:
    """422 with one `detail` entry per problem: {index, field, reason} and the usual
    loc/field/msg/type."""
    detail = [{**field_error(["body", "fixes", p["index"], p["field"]],
                             f"fixes[{p['index']}].{p['field']}",
                             f"fixes[{p['index']}].{p['field']}: {p['reason']}",
                             "invalid_input"),
               "index": p["index"], "reason": p["reason"]} for p in exc.problems]
    return JSONResponse(status_code=422, content={"detail": detail, "message": exc.message})


@router.post("/teams/{team_id}/positions", response_class=JSONResponse,
             summary="Send GPS fixes of a team (1–500, all or nothing, idempotent)",
             responses={201: {"description": "new fixes stored"},
                        404: {"description": "no such team, or not in your scope"},
                        422: {"description": "bad fixes, each listed with index, field and "
                                             "reason; nothing stored"}})
def add_positions(request: Request, conn: ConnDep, settings: SettingsDep, user: CaseWorker,
                  team_id: TeamId, body: FixBatch) -> JSONResponse:
    """Store fixes in the team's history and move the team to the newest one. Re-sent
    fixes (same time) are counted as duplicates; older fixes never move it back."""
    fixes = [Fix(at=f.at, lon=f.lon, lat=f.lat, crs=f.crs, accuracy_m=f.accuracy_m,
                 speed_mps=f.speed_mps) for f in body.fixes]
    try:
        result: dict[str, Any] = teams.add_positions(
            conn, team_id, fixes, actor_of(request, user), writer=user,
            stale_after=stale_after(settings))
    except InvalidFixes as exc:
        return _bad_fixes(exc)
    conn.commit()
    return JSONResponse(jsonable_encoder(result),
                        status_code=201 if result["accepted"] else 200)


@router.get("/teams/{team_id}/positions", summary="A team's position history, newest first",
            responses={404: {"description": "no such team, or not in your scope"}})
def list_positions(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    user: TeamReader,
    team_id: TeamId,
    since: AtQuery = None,
    until: Annotated[str | None, Query(
        description="ISO 8601: fixes before this instant (the `next` link sets it)")] = None,
    limit: LimitQuery = None,
) -> GeoJSONResponse:
    """Fixes as a FeatureCollection of points, newest first, paged by time."""
    page = teams.list_positions(
        conn, user, team_id, since=features.parse_opt_at(since, "since"),
        until=features.parse_opt_at(until, "until"),
        limit=features.check_limit(limit, settings.page_max))
    return collection(request, page, cursor="until")
