"""Patrol reports: the work log (工作日志) of a 街巷长 / 小巷管家 per day (JSON, CSV, printable
HTML), the evaluation (日巡 compliance, 周查, 月评 with difficulty coefficients, ranking and
月度优秀街巷长) with the map of uncovered streets, the patrol settings, and the supervisor page.
Definitions: docs/patrol-evaluation.md.

Who may call (anonymous: 401; pages redirect to the login page instead):
- GET /people/{id}/worklog: admin; operator/viewer/planner whose scope holds the person
  (404 outside it); a street chief for themself only (`me` or their person id; 403 for
  anyone else); dispatcher 403.
- GET /patrol-evaluation, GET /patrol-evaluation/streets: admin and city-wide readers (all
  rows), scoped operator/viewer/planner (their jurisdictions; 403 for a street office
  outside them), a street chief (only their own row / streets, ranked within the street
  office(s) of their streets); dispatcher 403.
- GET /patrol-settings: admin, operator, viewer, planner. PUT: admin.
- Page /patrol/supervise: admin, operator, viewer, planner (403 page for other roles).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from api.deps import ConnDep, SettingsDep, TemplatesDep
from api.routers.boundaries import GeoJSONResponse
from api.routers.pages import LOGIN_PATH, NO_STORE, login_url, maplibre_installed
from api.routers.stats import CSV_MEDIA_TYPE, csv_bytes
from api.security import (
    CSRF_COOKIE,
    AdminUser,
    CurrentUser,
    OptionalUser,
    actor_of,
    require_role,
)
from gis import catalog, patrol_eval, patrol_settings, worklog
from gis.auth import Principal
from gis.errors import InvalidInput

router = APIRouter(tags=["patrol reports"])
pages_router = APIRouter(include_in_schema=False)  # HTML pages, outside /api/v1

SUPERVISORS = ("admin", "operator", "viewer", "planner")
SettingsReader = Annotated[Principal, Depends(require_role(*SUPERVISORS))]
PeriodQuery = Annotated[Literal["day", "week", "month"], Query(
    description="day (日巡), week (周查, ISO week Monday–Sunday) or month (月评)")]
DateQuery = Annotated[str | None, Query(
    alias="date", description="a day in the period, YYYY-MM-DD (default: today, Beijing)")]
StreetOfficeQuery = Annotated[str | None, Query(
    description="only this street office (9-digit code); default: your scope")]


# -- the work log ----------------------------------------------------------------------------


@router.get("/people/{person_id}/worklog", summary="A chief's or steward's work log for a day",
            responses={200: {"content": {"text/csv": {}, "text/html": {}},
                             "description": "the log (JSON, CSV or printable HTML)"},
                       403: {"description": "another chief's log, or a role without access"},
                       404: {"description": "no such person, or not in your scope"}})
def get_worklog(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    user: CurrentUser,
    person_id: Annotated[str, Path(max_length=20,
                                   description="person id, or `me` (the signed-in chief)")],
    day: Annotated[str | None, Query(alias="date", description="the day, YYYY-MM-DD "
                                                               "(default: today, Beijing)")] = None,
    output: Annotated[Literal["json", "csv", "html"], Query(
        alias="format", description="json (default), csv (UTF-8 with BOM) or html "
                                    "(printable, A4)")] = "json",
) -> Response:
    """Streets patrolled (coverage, time spent, patrol ids, start and end), checklist results
    (ok / not ok with notes) and the problems reported that day with their current state."""
    pid = worklog.resolve_person(user, person_id)
    cal = catalog.current_calendar(conn)
    when = patrol_eval.parse_day(day, "date") or patrol_eval.beijing_today(conn, cal)
    worklog.check_access(conn, user, pid, when, cal.timezone)
    log = worklog.worklog(conn, pid, when, srid=settings.metric_crs)
    if output == "csv":
        name = f"worklog-{pid}-{when.isoformat()}.csv"
        return Response(csv_bytes(worklog.CSV_COLUMNS, worklog.csv_rows(log)),
                        media_type=CSV_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    if output == "html":
        return templates.TemplateResponse(
            request, "worklog.html",
            {"log": log, "clock": _clock(cal.timezone), "minutes": _minutes,
             "percent": _percent, "printed_at": datetime.now(ZoneInfo(cal.timezone))},
            headers=NO_STORE)
    return JSONResponse(jsonable_encoder(log))


def _clock(tz: str) -> Any:
    zone = ZoneInfo(tz)

    def clock(value: Any) -> str:
        """HH:MM in the calendar's zone, for a datetime or an ISO string."""
        if value is None:
            return "—"
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        return moment.astimezone(zone).strftime("%H:%M")

    return clock


def _minutes(seconds: Any) -> str:
    """Whole minutes ("12 min")."""
    return f"{round(float(seconds or 0) / 60)} min"


def _percent(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.0f}%"


# -- the evaluation --------------------------------------------------------------------------


@router.get("/patrol-evaluation", summary="日巡 compliance, 周查 and 月评 scores and ranking",
            responses={200: {"content": {"text/csv": {}},
                             "description": "rows per person (`format=csv`: a CSV file)"}})
def get_evaluation(
    conn: ConnDep,
    settings: SettingsDep,
    user: CurrentUser,
    period: PeriodQuery = "month",
    day: DateQuery = None,
    street_office: StreetOfficeQuery = None,
    output: Annotated[Literal["json", "csv"], Query(
        alias="format", description="json (default) or csv (UTF-8 with BOM)")] = "json",
) -> Response:
    """One row per 街巷长 (ranked together) and per 小巷管家 (ranked separately): streets with
    their difficulty, compliance, coverage, problems found / reported by others and quality;
    the score (100 · Σ d·q / Σ d), rank and the excellent flag (月度优秀街巷长)."""
    result = patrol_eval.evaluate(conn, user, period, patrol_eval.parse_day(day, "date"),
                                  street_office=street_office, srid=settings.metric_crs)
    if output == "csv":
        p = result["period"]
        name = f"patrol-evaluation-{period}-{p['from']}-{p['to']}.csv"
        return Response(csv_bytes(patrol_eval.CSV_COLUMNS, patrol_eval.csv_rows(result)),
                        media_type=CSV_MEDIA_TYPE,
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return JSONResponse(jsonable_encoder(result))


@router.get("/patrol-evaluation/streets", response_class=GeoJSONResponse,
            summary="The evaluated streets (covered or not) as GeoJSON")
def get_evaluation_streets(
    conn: ConnDep,
    settings: SettingsDep,
    user: CurrentUser,
    period: PeriodQuery = "month",
    day: DateQuery = None,
    street_office: StreetOfficeQuery = None,
) -> GeoJSONResponse:
    """A FeatureCollection of the assigned streets with {street_id, name, chief, compliance,
    coverage, difficulty, covered, state} (the map of uncovered streets)."""
    return GeoJSONResponse(patrol_eval.street_map(
        conn, user, period, patrol_eval.parse_day(day, "date"), street_office=street_office,
        srid=settings.metric_crs))


@router.get("/patrol-evaluation/street-offices",
            summary="Street offices you may evaluate, with their patrols in the period")
def get_evaluation_offices(
    conn: ConnDep,
    user: CurrentUser,
    period: PeriodQuery = "month",
    day: DateQuery = None,
) -> list[dict[str, Any]]:
    """[{code, name, patrols}] by code: the filter choices of the supervisor page."""
    return patrol_eval.offices_for(conn, user, period, patrol_eval.parse_day(day, "date"))


# -- settings ------------------------------------------------------------------------------


@router.get("/patrol-settings", summary="Patrol settings (cleaning, coverage, evaluation)")
def get_patrol_settings(conn: ConnDep, _user: SettingsReader) -> dict[str, Any]:
    """The settings in force (keys: docs/patrol-evaluation.md)."""
    return patrol_settings.current(conn)


@router.put("/patrol-settings", summary="Replace the patrol settings (admin)",
            responses={422: {"description": "a missing, unknown or out-of-range key, named "
                                            "e.g. `coverage.radius_m`"}})
def put_patrol_settings(
    request: Request, conn: ConnDep, user: AdminUser,
    body: Annotated[dict[str, Any], Body(description="the whole settings document",
                                         examples=[{
                                             "cleaning": {"max_accuracy_m": 50,
                                                          "max_speed_mps": 12},
                                             "coverage": {"radius_m": 30,
                                                          "daily_threshold": 0.8},
                                             "difficulty": {"length_weight": 0.2,
                                                            "density_weight": 0.2,
                                                            "mix_weight": 0.1,
                                                            "window_days": 90, "min": 0.8,
                                                            "max": 1.5},
                                             "score": {"compliance_weight": 0.6,
                                                       "coverage_weight": 0.2,
                                                       "discovery_weight": 0.2},
                                             "excellent": {"top_share": 0.1,
                                                           "min_score": 90}}])],
) -> dict[str, Any]:
    """Check the whole document and replace the settings with it (audited)."""
    new = patrol_settings.replace(conn, body, actor_of(request, user))
    conn.commit()
    return new


# -- the supervisor page ---------------------------------------------------------------------


@pages_router.get("/patrol/supervise", response_class=HTMLResponse)
def supervise(request: Request, templates: TemplatesDep, user: OptionalUser,
              period: Annotated[str | None, Query(max_length=8)] = None,
              day: Annotated[str | None, Query(alias="date", max_length=10)] = None,
              street_office: Annotated[str | None, Query(max_length=9)] = None) -> Response:
    """The supervisor page (ranking table and map of uncovered streets) for admins,
    operators, viewers and planners; others get a 403 page, anyone signed out the login."""
    if user is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(login_url(here), status_code=303, headers=NO_STORE)
    allowed = user.has_any(*SUPERVISORS)
    return templates.TemplateResponse(
        request, "supervise.html",
        {"user": user, "allowed": allowed, "maplibre_installed": maplibre_installed(),
         "config": {"apiBase": "/api/v1", "csrfCookie": CSRF_COOKIE, "loginPath": LOGIN_PATH,
                    "period": period if period in patrol_eval.PERIODS else None,
                    "date": _valid_day(day), "streetOffice": street_office,
                    "roles": sorted(user.roles)}},
        status_code=200 if allowed else 403, headers=NO_STORE)


def _valid_day(value: str | None) -> str | None:
    try:
        parsed: date | None = patrol_eval.parse_day(value, "date")
    except InvalidInput:
        return None
    return None if parsed is None else parsed.isoformat()
