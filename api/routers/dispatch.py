"""Dispatch: recommendations (nearest capable teams by road), dispatches and their steps,
whistles (吹哨报到)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ConnDep, IncidentId, SettingsDep, json_response
from api.security import CaseWorker, Commander, IncidentReader, actor_of
from gis import dispatch, recommend

router = APIRouter(tags=["dispatch"])

DispatchId = Annotated[int, Path(ge=1, description="dispatch id")]


@router.get("/incidents/{incident_id}/recommendations",
            summary="Teams to send, nearest capable first by road ETA, with reasons")
def recommendations(conn: ConnDep, user: Commander, settings: SettingsDep,
                    incident_id: IncidentId,
                    limit: Annotated[int, Query(ge=1, le=recommend.MAX_LIMIT)] = 5,
                    ) -> JSONResponse:
    """Available teams with a fresh position whose capability matches the class's
    responsible departments, ranked by road travel time within the dispatch budget; one
    list per jurisdiction for a joint (联合哨) case; shortfalls say why a list is short."""
    return json_response(recommend.recommend(
        conn, user, incident_id, limit=limit, budget_s=settings.dispatch_budget_s,
        stale_after=timedelta(minutes=settings.position_stale_minutes)))


@router.get("/incidents/{incident_id}/route", summary="A team's road path to an incident")
def team_route(conn: ConnDep, user: Commander, settings: SettingsDep, incident_id: IncidentId,
               team_id: Annotated[int, Query(ge=1, description="team id")]) -> JSONResponse:
    """The fastest road path (GeoJSON LineString) with its ETA, to draw on the map."""
    return json_response(recommend.route(conn, user, incident_id, team_id,
                                         budget_s=settings.dispatch_budget_s))


class DispatchOrder(BaseModel):
    team_ids: list[int] = Field(min_length=1, max_length=dispatch.MAX_TEAMS)
    whistle_id: int | None = Field(default=None, ge=1)
    override_reason: str | None = Field(
        default=None, max_length=dispatch.MAX_TEXT,
        description="why a team without the capability is sent anyway")


@router.post("/incidents/{incident_id}/dispatches", status_code=status.HTTP_201_CREATED,
             summary="Send one or more teams (派遣)",
             responses={409: {"description": "a team is busy or off duty (names the holder)"}})
def create_dispatches(request: Request, conn: ConnDep, user: Commander,
                      incident_id: IncidentId, body: DispatchOrder) -> JSONResponse:
    """All teams or none: each must be available and capable (or override_reason given).
    Concurrent orders for one team: exactly one wins, the others get 409."""
    made = dispatch.dispatch(conn, incident_id, dispatch.Order(
        body.team_ids, body.whistle_id, body.override_reason), actor_of(request, user), user)
    conn.commit()
    return json_response({"incident_id": incident_id, "dispatches": made}, status.HTTP_201_CREATED)


@router.get("/incidents/{incident_id}/dispatches", summary="An incident's dispatches")
def incident_dispatches(conn: ConnDep, user: IncidentReader,
                        incident_id: IncidentId) -> JSONResponse:
    """Teams sent, each step's time, ETA at dispatch, arrival time (报到) against the
    required time, and the steps it may take next."""
    return json_response(dispatch.list_dispatches(conn, user, incident_id))


class Step(BaseModel):
    status: Literal["accepted", "en_route", "on_scene", "done", "declined", "cancelled"]
    reason: str | None = Field(default=None, max_length=dispatch.MAX_TEXT)
    out_of_remit: bool = Field(default=False, description="declined as not in the remit")


@router.post("/dispatches/{dispatch_id}/status", summary="Move a dispatch one step (报到 …)")
def dispatch_step(request: Request, conn: ConnDep, user: CaseWorker, dispatch_id: DispatchId,
                  body: Step) -> JSONResponse:
    """The team's department: accepted, en route, on scene (报到), done, declined;
    operators may also cancel. The team is freed when the dispatch ends."""
    moved = dispatch.step(conn, dispatch_id, body.status, actor_of(request, user), user,
                          reason=body.reason, out_of_remit=body.out_of_remit)
    conn.commit()
    return json_response(moved)


class Whistle(BaseModel):
    kind: str = Field(description="enforcement|priority|emergency|joint, or 综合执法哨|"
                                  "重点工作哨|应急处置哨|联合哨")
    department_ids: list[int] = Field(default_factory=list, max_length=50)
    team_ids: list[int] = Field(default_factory=list, max_length=dispatch.MAX_TEAMS)
    required_arrival_s: int = Field(default=dispatch.REQUIRED_ARRIVAL_S)
    note: str | None = Field(default=None, max_length=dispatch.MAX_TEXT)


@router.post("/incidents/{incident_id}/whistles", status_code=status.HTTP_201_CREATED,
             summary="Blow a whistle (吹哨): summon departments, send teams")
def blow_whistle(request: Request, conn: ConnDep, user: Commander, incident_id: IncidentId,
                 body: Whistle) -> JSONResponse:
    """A 联合哨 must summon a department from every jurisdiction the case names."""
    blown = dispatch.blow_whistle(conn, incident_id, dispatch.WhistleOrder(
        body.kind, body.department_ids, body.team_ids, body.required_arrival_s, body.note),
        actor_of(request, user), user)
    conn.commit()
    return json_response(blown, status.HTTP_201_CREATED)


@router.get("/incidents/{incident_id}/whistles", summary="Whistles blown on an incident")
def incident_whistles(conn: ConnDep, user: IncidentReader,
                      incident_id: IncidentId) -> JSONResponse:
    """Each whistle with its kind, required arrival and the departments summoned."""
    return json_response(dispatch.list_whistles(conn, user, incident_id))
