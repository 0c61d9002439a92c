"""Street-chief patrols (日巡): my streets today, the checklist, and a patrol's life —
start, GPS fixes, checklist ticks, problem reports, end — and reading patrols.

Who may call (rules in gis/patrols.py and docs/patrols.md):
- GET /patrol/me, POST /patrols, POST …/fixes, PUT …/checks/{item}, POST …/reports,
  POST …/end: a patrol user (role street_chief bound to a person; 403 naming `role` or
  `person` otherwise), on their own patrols (another's patrol: 404 when they may not read
  it, 403 when they may);
- GET /patrol/checklist: every signed-in user; PUT /patrol/checklist: admin;
- GET /patrols, /patrols/{id}, /patrols/{id}/points: every signed-in user, rows filtered
  (admins; operators, viewers, planners of the street's district or street office; the
  person themself) — a patrol outside that is 404.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from api.deps import ConnDep, SettingsDep
from api.routers.boundaries import GeoJSONResponse, LimitQuery
from api.security import AdminUser, CurrentUser, actor_of, require_role
from gis import features, incidents, intake, patrols, placement
from gis.auth import Principal
from gis.patrol_track import MAX_FIXES, Fix
from gis.patrols import PatrolFilter, Report
from gis.placement import PointCrs

router = APIRouter(tags=["patrols"], default_response_class=GeoJSONResponse)

PatrolUser = Annotated[Principal, Depends(require_role("street_chief"))]
PatrolId = Annotated[int, Path(ge=1, description="patrol id")]
ItemCode = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_]{1,63}$",
                               description="checklist item code, e.g. no_disorderly_parking")]
IdempotencyKey = Annotated[str, Header(
    alias="Idempotency-Key", min_length=patrols.KEY_MIN, max_length=patrols.KEY_MAX,
    description="a unique key made on the phone (e.g. a UUID): a retry returns the same "
                "result")]
NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {"description": "not a patrol user, or a patrol you may read but do not own"},
    404: {"description": "no such patrol, or not one you may see"},
}


# -- my day and the checklist ------------------------------------------------------------


@router.get("/patrol/me", response_class=JSONResponse,
            summary="My streets with today's patrol status (街巷长/小巷管家)")
def my_day(conn: ConnDep, settings: SettingsDep, user: PatrolUser) -> JSONResponse:
    """Today's date (Beijing), who I am, the patrol under way, the coverage settings and
    the page's GPS rhythm, and my streets as a FeatureCollection with today's status."""
    day = patrols.my_day(conn, user, srid=settings.metric_crs)
    day = {**day, "fix_interval_s": settings.patrol_fix_interval_s,
           "upload_batch": settings.patrol_upload_batch}
    order = ("date", "person", "coverage_threshold", "radius_m", "fix_interval_s",
             "upload_batch", "active_patrol", "streets")
    return JSONResponse(jsonable_encoder({k: day[k] for k in order}))


class ChecklistEntry(BaseModel):
    code: str
    group: str = Field(description="e.g. 十无 or 十有")
    zh: str
    en: str


class ChecklistItemIn(BaseModel):
    """One item of the checklist configuration."""

    model_config = ConfigDict(extra="forbid")

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$", examples=["no_disorderly_parking"])
    group: str = Field(min_length=1, max_length=patrols.MAX_GROUP, examples=["十无"])
    zh: str = Field(min_length=1, max_length=patrols.MAX_LABEL, examples=["无乱停车"])
    en: str = Field(min_length=1, max_length=patrols.MAX_LABEL,
                    examples=["No disorderly parking"])
    active: bool = True


class ChecklistItemOut(ChecklistItemIn):
    pass


@router.get("/patrol/checklist", response_model=list[ChecklistEntry],
            response_class=JSONResponse, summary="The patrol checklist (巡查清单)")
def get_checklist(conn: ConnDep, _user: CurrentUser) -> list[ChecklistEntry]:
    """The active items in order (e.g. the 十无 then the 十有)."""
    return [ChecklistEntry.model_validate(item) for item in patrols.checklist(conn)]


@router.put("/patrol/checklist", response_model=list[ChecklistItemOut],
            response_class=JSONResponse, summary="Replace the patrol checklist (admin)")
def put_checklist(request: Request, conn: ConnDep, user: AdminUser,
                  body: list[ChecklistItemIn]) -> list[ChecklistItemOut]:
    """Replace the configuration with these items in this order; items left out are
    deleted, or deactivated when past patrols ticked them. Returns every item."""
    items = patrols.replace_checklist(conn, [item.model_dump() for item in body],
                                      actor_of(request, user))
    conn.commit()
    return [ChecklistItemOut.model_validate(item) for item in items]


# -- a patrol's life ---------------------------------------------------------------------


class PatrolStart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    street_id: int = Field(ge=1, description="one of my streets (GET /patrol/me)")
    started_at: AwareDatetime | None = Field(
        default=None, description="when the patrol started on the phone (default now)")


def _patrol(conn: ConnDep, user: Principal, patrol_id: int, srid: int,
            code: int = 200) -> GeoJSONResponse:
    headers = {"Location": f"/api/v1/patrols/{patrol_id}"} if code == 201 else None
    return GeoJSONResponse(patrols.get_patrol(conn, user, patrol_id, srid=srid),
                           status_code=code, headers=headers)


@router.post("/patrols", status_code=status.HTTP_201_CREATED,
             summary="Start a patrol on one of my streets",
             responses={200: {"description": "a retry with the same Idempotency-Key: the "
                                             "patrol started the first time"},
                        403: {"description": "not a patrol user, or not my street"},
                        409: {"description": "a patrol is already under way, or the key "
                                             "started another patrol"}})
def start_patrol(request: Request, conn: ConnDep, settings: SettingsDep, user: PatrolUser,
                 body: PatrolStart, idempotency_key: IdempotencyKey) -> GeoJSONResponse:
    """Start a patrol (日巡) of a street assigned to me now; returns the Patrol."""
    patrol_id, created = patrols.start_patrol(conn, user, body.street_id, idempotency_key,
                                              actor_of(request, user), body.started_at)
    conn.commit()
    return _patrol(conn, user, patrol_id, settings.metric_crs, 201 if created else 200)


class FixIn(BaseModel):
    """One GPS fix."""

    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime = Field(description="ISO 8601 with offset: when the fix was taken",
                              examples=["2026-11-20T16:40:00+08:00"])
    lon: float = Field(description="longitude in `crs`", examples=[116.3355])
    lat: float = Field(description="latitude in `crs`", examples=[39.8800])
    accuracy_m: float | None = Field(default=None, ge=0,
                                     description="horizontal accuracy, metres")
    crs: PointCrs = "wgs84"


class FixBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fixes: list[FixIn] = Field(min_length=1, max_length=MAX_FIXES)


class FixResult(BaseModel):
    received: int
    new: int = Field(description="fixes not stored before (a re-sent fix is ignored)")
    kept: int = Field(description="the patrol's fixes kept by the cleaning")
    dropped: int = Field(description="the patrol's fixes dropped (accuracy or speed)")
    coverage: float = Field(description="share of the street within the radius of the track")
    track_points: int


@router.post("/patrols/{patrol_id}/fixes", response_model=FixResult,
             response_class=JSONResponse, summary="Send GPS fixes (1–1000, idempotent)",
             responses={**NOT_YOURS,
                        409: {"description": "fixes after the end of an ended patrol"},
                        422: {"description": "a bad fix, named e.g. fixes[3].at; nothing "
                                             "stored"}})
def add_fixes(request: Request, conn: ConnDep, settings: SettingsDep, user: PatrolUser,
              patrol_id: PatrolId, body: FixBatch) -> FixResult:
    """Store the fixes, re-clean the patrol's fixes, rebuild its track and coverage."""
    fixes = [Fix(at=f.at, lon=f.lon, lat=f.lat, accuracy_m=f.accuracy_m, crs=f.crs)
             for f in body.fixes]
    result = patrols.add_fixes(conn, user, patrol_id, fixes, actor_of(request, user),
                               srid=settings.metric_crs)
    conn.commit()
    return FixResult.model_validate(result)


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ok: bool = Field(description="true: the street meets the item; false: a problem")
    note: str | None = Field(default=None, max_length=patrols.MAX_NOTE)
    checked_at: AwareDatetime = Field(description="when it was ticked on the phone")


class CheckOut(BaseModel):
    code: str
    group: str
    zh: str
    en: str
    ok: bool
    note: str | None
    checked_at: datetime


@router.put("/patrols/{patrol_id}/checks/{item_code}", response_model=CheckOut,
            response_class=JSONResponse, summary="Tick a checklist item (the later wins)",
            responses={**NOT_YOURS, 404: {"description": "no such patrol (or not yours "
                                                         "to see), or no such item"}})
def set_check(request: Request, conn: ConnDep, user: PatrolUser, patrol_id: PatrolId,
              item_code: ItemCode, body: CheckIn) -> CheckOut:
    """Record the item as ok or not, with a note; an older tick never overwrites a newer."""
    check = patrols.set_check(conn, user, patrol_id, item_code, ok=body.ok, note=body.note,
                              checked_at=body.checked_at, by=actor_of(request, user))
    conn.commit()
    return CheckOut.model_validate(check)


class ProblemReport(BaseModel):
    """A problem seen on the patrol (photos follow: POST /incidents/{id}/photos)."""

    model_config = ConfigDict(extra="forbid")

    event_code: str = Field(min_length=1, max_length=16, examples=["0101"])
    event_kind: Literal["event", "component"] = "event"
    lon: float = Field(description="longitude in `crs`", examples=[116.3355])
    lat: float = Field(description="latitude in `crs`", examples=[39.8801])
    crs: PointCrs = "wgs84"
    description: str = Field(min_length=1, max_length=intake.MAX_DESCRIPTION)
    address: str | None = Field(default=None, max_length=500)
    reported_at: datetime | None = Field(
        default=None, description="when it was seen (default now; no offset = Beijing)")


@router.post("/patrols/{patrol_id}/reports", status_code=status.HTTP_201_CREATED,
             response_class=JSONResponse, summary="Report a problem seen on the patrol",
             responses={**NOT_YOURS,
                        200: {"description": "a retry with the same Idempotency-Key"},
                        409: {"description": "the key was used for another report, or the "
                                             "patrol ended before reported_at"}})
def report_problem(request: Request, conn: ConnDep, user: PatrolUser, patrol_id: PatrolId,
                   body: ProblemReport, idempotency_key: IdempotencyKey) -> JSONResponse:
    """An incident through the normal intake (placement, deadlines, live map), routed to
    the patrol's street, source street_chief or steward, linked to the patrol."""
    reported_at = body.reported_at
    if reported_at is not None and reported_at.tzinfo is None:
        reported_at = reported_at.replace(tzinfo=features.CHINA_TZ)
    problem = Report(event_code=body.event_code, event_kind=body.event_kind,
                     point=placement.to_wgs84(body.lon, body.lat, body.crs),
                     description=body.description, address=body.address,
                     reported_at=reported_at)
    result = patrols.report_problem(conn, user, patrol_id, problem, idempotency_key,
                                    actor_of(request, user))
    conn.commit()
    content = {"incident": incidents.get_incident(conn, user, result.incident_id),
               "created": result.created, "placement": result.placement,
               "duplicates": result.duplicates}
    return JSONResponse(jsonable_encoder(content), status_code=201 if result.created else 200,
                        headers={"Location": f"/api/v1/incidents/{result.incident_id}"})


class PatrolEnd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ended_at: AwareDatetime | None = Field(
        default=None, description="when it ended on the phone (default now; never before "
                                  "the last fix, tick or report stored)")


@router.post("/patrols/{patrol_id}/end", summary="End the patrol: its summary",
             responses=NOT_YOURS)
def end_patrol(request: Request, conn: ConnDep, settings: SettingsDep, user: PatrolUser,
               patrol_id: PatrolId, body: PatrolEnd | None = None) -> GeoJSONResponse:
    """End the patrol and store its summary; ending it again returns it unchanged."""
    patrols.end_patrol(conn, user, patrol_id, actor_of(request, user),
                       body.ended_at if body is not None else None)
    conn.commit()
    return _patrol(conn, user, patrol_id, settings.metric_crs)


# -- reading -------------------------------------------------------------------------------


@router.get("/patrols", summary="Patrols you may see, newest first")
def list_patrols(
    conn: ConnDep,
    settings: SettingsDep,
    user: CurrentUser,
    person_id: Annotated[int | None, Query(ge=1, description="the person patrolling")] = None,
    street_id: Annotated[int | None, Query(ge=1, description="the street")] = None,
    day: Annotated[date | None, Query(alias="date",
                                      description="Beijing date the patrol started")] = None,
    limit: LimitQuery = None,
) -> GeoJSONResponse:
    """A FeatureCollection of patrols (geometry: the cleaned track)."""
    found = patrols.list_patrols(
        conn, user, PatrolFilter(person_id=person_id, street_id=street_id, day=day),
        limit=features.check_limit(limit, settings.page_max), srid=settings.metric_crs)
    return GeoJSONResponse(found)


@router.get("/patrols/{patrol_id}", summary="One patrol",
            responses={404: {"description": "no such patrol, or not one you may see"}})
def get_patrol(conn: ConnDep, settings: SettingsDep, user: CurrentUser,
               patrol_id: PatrolId) -> GeoJSONResponse:
    """The patrol as a Feature: track, street, person, times, coverage, fixes, checks,
    reports, summary."""
    return _patrol(conn, user, patrol_id, settings.metric_crs)


@router.get("/patrols/{patrol_id}/points", summary="A patrol's raw GPS fixes",
            responses={404: {"description": "no such patrol, or not one you may see"}})
def list_points(conn: ConnDep, user: CurrentUser, patrol_id: PatrolId) -> GeoJSONResponse:
    """Every fix received, kept or dropped (with the reason), by time."""
    return GeoJSONResponse(patrols.list_points(conn, user, patrol_id))
