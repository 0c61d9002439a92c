"""The case workflow over HTTP: transitions (立案, 处置, 核查, 结案, 返工, 退回, 挂账 …), the
case timeline, the actions allowed now, extensions (延期) and supervision (督办)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ConnDep, IncidentId, json_response
from api.security import CaseWorker, Commander, IncidentReader, actor_of
from gis import incidents, workflow

router = APIRouter(tags=["workflow"], default_response_class=JSONResponse)



class TransitionOrder(BaseModel):
    """One workflow action on a case."""

    action: str = Field(min_length=1, max_length=32, description=(
        "accept (立案), reject (不立案), start (处置中), feedback (处置反馈), verify (核查), "
        "close (结案), rework (返工), return (退回), ledger (挂账), reopen, supervise (督办)"),
        examples=["accept"])
    reason: str | None = Field(default=None, max_length=workflow.MAX_REASON, description=(
        "why: required for reject, rework, return, ledger and supervise"))
    out_of_remit: bool = Field(default=False, description=(
        "return only: the case is not in the department's remit (退回, 非职责范围)"))


@router.post("/incidents/{incident_id}/transitions", summary="Take a workflow action",
             responses={404: {"description": "no such incident, or not in your scope"},
                        409: {"description": "not allowed from the case's current state; "
                                             "`report.allowed` lists what is"}})
def take_transition(request: Request, conn: ConnDep, user: CaseWorker,
                    incident_id: IncidentId, body: TransitionOrder) -> JSONResponse:
    """Move the case (operators: accept, reject, verify, close, rework, ledger, reopen,
    supervise; the dispatcher of a department with an active task, or an operator: start,
    feedback, return). Dispatching goes through POST …/dispatches."""
    data = {"out_of_remit": body.out_of_remit} if body.action == "return" else None
    event = workflow.transition(conn, incident_id, body.action, actor_of(request, user), user,
                                reason=body.reason, data=data)
    conn.commit()
    return json_response({"incident": incidents.get_incident(conn, user, incident_id),
                  "event": event})


@router.get("/incidents/{incident_id}/transitions", summary="The actions you may take now")
def allowed_transitions(conn: ConnDep, user: IncidentReader,
                        incident_id: IncidentId) -> JSONResponse:
    """The actions allowed now for you (the command card's buttons), and the deadline state
    of the case's current stage (due_at, overdue, near_overdue)."""
    return json_response(workflow.allowed_actions(conn, incident_id, user))


@router.get("/incidents/{incident_id}/events", summary="The case timeline")
def case_timeline(conn: ConnDep, user: IncidentReader, incident_id: IncidentId) -> JSONResponse:
    """Case events (with actor usernames) and the steps of the case's dispatches (with team
    names), oldest first."""
    return json_response({"incident_id": incident_id,
                  "events": workflow.timeline(conn, incident_id, user)})


class ExtensionAsk(BaseModel):
    """A request for more time (延期)."""

    stage: Literal["accept", "dispatch", "handle", "verify"] | None = Field(
        default=None, description="the stage to extend (default the current one)")
    value: float = Field(gt=0, description="how much more time", examples=[1])
    unit: Literal["work_hours", "work_days", "hours"] = Field(
        description="工作时, 工作日 or natural hours", examples=["work_days"])
    reason: str = Field(min_length=1, max_length=workflow.MAX_REASON)


@router.post("/incidents/{incident_id}/extensions", status_code=status.HTTP_201_CREATED,
             summary="Ask for an extension (延期)",
             responses={409: {"description": "a request is already pending, or the case has "
                                             "no running deadline"}})
def ask_extension(request: Request, conn: ConnDep, user: CaseWorker, incident_id: IncidentId,
                  body: ExtensionAsk) -> JSONResponse:
    """Operators, or the dispatcher of a department with an active task on the case; one
    pending request per case."""
    made = workflow.request_extension(conn, incident_id, actor_of(request, user), user,
                                      stage=body.stage, value=body.value, unit=body.unit,
                                      reason=body.reason)
    conn.commit()
    return json_response(made, status.HTTP_201_CREATED)


@router.get("/incidents/{incident_id}/extensions", summary="A case's extension requests")
def list_extensions(conn: ConnDep, user: IncidentReader,
                    incident_id: IncidentId) -> JSONResponse:
    """Every extension request of the case, newest first."""
    return json_response(workflow.list_extensions(conn, incident_id, user))


class ExtensionDecision(BaseModel):
    """An operator's decision on an extension request."""

    approve: bool
    note: str | None = Field(default=None, max_length=workflow.MAX_NOTE)


@router.post("/extensions/{request_id}/decision", summary="Approve or reject an extension",
             responses={404: {"description": "no such request, or its case is not in your "
                                             "scope"},
                        409: {"description": "already decided, or the case has moved on"}})
def decide_extension(request: Request, conn: ConnDep, user: Commander,
                     request_id: Annotated[int, Path(ge=1, description="request id")],
                     body: ExtensionDecision) -> JSONResponse:
    """Approval moves the stage's deadline (and the later stages') by the extension in
    working time."""
    decided = workflow.decide_extension(conn, request_id, actor_of(request, user), user,
                                        approve=body.approve, note=body.note)
    conn.commit()
    return json_response(decided)


class SuperviseOrder(BaseModel):
    """督办: why the case is supervised."""

    reason: str = Field(min_length=1, max_length=workflow.MAX_REASON)


@router.post("/incidents/{incident_id}/supervise", summary="Supervise a case (督办)")
def supervise(request: Request, conn: ConnDep, user: Commander, incident_id: IncidentId,
              body: SuperviseOrder) -> JSONResponse:
    """Mark the case supervised, with a case event 'supervise'."""
    event = workflow.supervise(conn, incident_id, actor_of(request, user), user,
                               reason=body.reason)
    conn.commit()
    return json_response({"incident": incidents.get_incident(conn, user, incident_id),
                  "event": event})
