"""The 数字城管 case workflow: which action moves a case from which state to which, who may
take it, the stage deadlines it restarts, the deadline state of a case (overdue, near
overdue), extensions (延期) and supervision (督办).

States (incidents.status) and the actions (case_events.action) between them:

    pending    --accept-->   registered      pending    --reject--> void
    registered --dispatch--> dispatched      (the system: gis.dispatch)
    dispatched --start-->    handling        dispatched, handling --return--> registered
    handling   --feedback--> feedback        feedback   --verify--> verifying
    verifying  --close-->    closed          verifying  --rework--> handling
    registered … verifying --ledger--> ledger --reopen--> registered
    supervise (督办) changes no state.

Every transition locks the incident row, writes a case event, an audit row and a change
notification in the caller's transaction (the caller commits)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis import audit, catalog, dispatch, events
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.incidents import CURRENT_DEADLINE, CURRENT_STAGE
from gis.scope import incident_visible
from gis.workcalendar import UNITS, WorkCalendar

Who = Literal["command", "task", "system"]
COMMAND_ROLES = ("admin", "operator")  # 指挥中心: accept, verify, close, ...
OPEN = ("pending", "registered", "dispatched", "handling", "feedback", "verifying")
ENDED = ("void", "closed", "ledger")
MAX_REASON = 2000
MAX_NOTE = 2000
NEAR_FRACTION = 0.2  # near overdue: less than 20 % of the stage's limit left
# The largest extension one request may ask for, per unit.
MAX_EXTENSION = {"work_hours": 200.0, "work_days": 30.0, "hours": 720.0}

# The stage a case is in, by status (its deadline is the one that can be overdue).
STAGE_OF: dict[str, str] = {
    "pending": "accept", "registered": "dispatch", "dispatched": "handle",
    "handling": "handle", "feedback": "verify", "verifying": "verify"}


@dataclass(frozen=True)
class Rule:
    """One action: the states it leaves, the state it reaches (None: no status change),
    who may take it, whether it needs a reason, the stages whose deadlines restart from
    now, and how dispatches still active end."""

    sources: tuple[str, ...]
    target: str | None
    who: Who
    label: str
    needs_reason: bool = False
    restarts: tuple[str, ...] = ()
    ends_dispatches: Literal["cancelled", "done"] | None = None


RULES: dict[str, Rule] = {
    "accept": Rule(("pending",), "registered", "command", "立案",
                   restarts=("dispatch", "handle", "verify")),
    "reject": Rule(("pending",), "void", "command", "不立案/作废", needs_reason=True,
                   ends_dispatches="cancelled"),
    "dispatch": Rule(("registered",), "dispatched", "system", "派遣",
                     restarts=("handle", "verify")),
    "start": Rule(("dispatched",), "handling", "task", "处置中"),
    "feedback": Rule(("handling",), "feedback", "task", "处置反馈", restarts=("verify",)),
    "verify": Rule(("feedback",), "verifying", "command", "核查"),
    "close": Rule(("verifying",), "closed", "command", "结案", ends_dispatches="done"),
    "rework": Rule(("verifying",), "handling", "command", "返工", needs_reason=True,
                   restarts=("handle", "verify")),
    "return": Rule(("dispatched", "handling"), "registered", "task", "退回", needs_reason=True,
                   restarts=("dispatch", "handle", "verify"), ends_dispatches="cancelled"),
    "ledger": Rule(("registered", "dispatched", "handling", "feedback", "verifying"), "ledger",
                   "command", "挂账", needs_reason=True, ends_dispatches="cancelled"),
    "reopen": Rule(("ledger",), "registered", "command", "重新立案",
                   restarts=("dispatch", "handle", "verify")),
    "supervise": Rule((*OPEN, "ledger"), None, "command", "督办", needs_reason=True),
}
# Case event actions that are not transitions (recorded by other functions).
NOT_TRANSITIONS = {
    "report": "a report creates the incident (POST /api/v1/incidents)",
    "extend": "ask for an extension (POST /api/v1/incidents/{id}/extensions)",
    "escalate": "escalation is done by the worker (`gridops worker run`)",
}
DISPATCH_HINT = "dispatch teams with POST /api/v1/incidents/{incident_id}/dispatches"


# -- deadlines -----------------------------------------------------------------------------


def limit_seconds(limit: Mapping[str, Any], seconds_per_day: int) -> float:
    """A stage limit {value, unit} as seconds (a working day counts its working seconds):
    the length the near-overdue rule and the escalation interval are measured against."""
    value = float(limit["value"])
    return value * (seconds_per_day if limit["unit"] == "work_days" else 3600)


@dataclass(frozen=True)
class DeadlineSql:
    """SQL expressions over incidents aliased `i` (no other join needed)."""

    stage: str
    due_at: str
    limit_s: str
    overdue: str
    near_overdue: str


def deadline_sql(seconds_per_day: int, at: str = "now()") -> DeadlineSql:
    """The current stage, its deadline and limit, overdue and near overdue as SQL for lists
    and filters; `at` is the instant compared with (an SQL expression, default now())."""
    stage, due = CURRENT_STAGE, CURRENT_DEADLINE
    day = int(seconds_per_day)
    limit = (
        f"(SELECT (c.time_limits -> {stage} ->> 'value')::float8 * "  # noqa: S608
        f"CASE c.time_limits -> {stage} ->> 'unit' WHEN 'work_days' THEN {day} "
        f"ELSE 3600 END FROM event_classes c WHERE c.id = i.event_class_id)")
    overdue = f"coalesce({due} < {at}, false)"
    near = (f"coalesce({due} >= {at} AND {due} < {at} + "
            f"make_interval(secs => {NEAR_FRACTION} * {limit}), false)")
    return DeadlineSql(stage, due, limit, overdue, near)


def deadline_state(status: str, deadlines: Mapping[str, str], time_limits: Mapping[str, Any],
                   now: datetime, seconds_per_day: int) -> dict[str, Any]:
    """The deadline state of a case at `now`: its stage, the stage's deadline and limit,
    seconds left (negative when past), overdue (past the deadline) and near_overdue (not
    past, less than 20 % of the stage's limit left, in clock time)."""
    stage = STAGE_OF.get(status)
    if stage is None or stage not in deadlines:
        return {"stage": stage, "due_at": None, "limit_s": None, "remaining_s": None,
                "overdue": False, "near_overdue": False}
    due = datetime.fromisoformat(deadlines[stage])
    limit = (limit_seconds(time_limits[stage], seconds_per_day)
             if stage in time_limits else None)
    remaining = (due - now).total_seconds()
    return {"stage": stage, "due_at": due, "limit_s": limit, "remaining_s": remaining,
            "overdue": remaining < 0,
            "near_overdue": remaining >= 0 and limit is not None
            and remaining < NEAR_FRACTION * limit}


def _restart(calendar: WorkCalendar, now: datetime, deadlines: Mapping[str, str],
             time_limits: Mapping[str, Any], stages: Sequence[str]) -> dict[str, str]:
    """`deadlines` with `stages` scheduled afresh from `now` (one after another)."""
    if not stages:
        return dict(deadlines)
    fresh = catalog.stage_deadlines(calendar, now, time_limits, stages)
    return {**deadlines, **{stage: moment.isoformat() for stage, moment in fresh.items()}}


# -- loading and permissions ------------------------------------------------------------------


_LOCK = """
    SELECT i.id, i.status, i.deadlines, i.district_code, i.street_code, i.joint,
           i.supervised, i.escalation_level, ec.time_limits, now() AS now,
           EXISTS (SELECT 1 FROM dispatches d JOIN teams t ON t.id = d.team_id
                   WHERE d.incident_id = i.id
                     AND t.department_id = CAST(:task_department AS bigint)
                     AND d.status IN ('dispatched', 'accepted', 'en_route', 'on_scene'))
             AS has_task
    FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
    WHERE i.id = :incident_id AND ({visible})
"""


def _load(conn: Connection, incident_id: int, reader: Principal | None, *,
          lock: bool) -> Any:
    """The incident as `reader` may see it (locked when `lock`); NotFound otherwise."""
    visible, params = ("true", {}) if reader is None else incident_visible(reader)
    department = None
    if reader is not None and reader.has_any("dispatcher"):
        department = reader.department_id
    sql = _LOCK.format(visible=visible) + (" FOR UPDATE OF i" if lock else "")
    row = conn.execute(text(sql), {**params, "incident_id": incident_id,
                                   "task_department": department}).one_or_none()
    if row is None:
        raise NotFound(f"no incident {incident_id} (or not in your scope)", field="incident_id")
    return row


def _permitted(rule: Rule, reader: Principal | None, has_task: bool) -> bool:
    if reader is None:
        return True
    if rule.who == "system":
        return False
    if reader.has_any(*COMMAND_ROLES):
        return True
    return rule.who == "task" and reader.has_any("dispatcher") and has_task


def _allowed(status: str, reader: Principal | None, has_task: bool) -> list[str]:
    return [name for name, rule in RULES.items()
            if status in rule.sources and _permitted(rule, reader, has_task)]


def _event(conn: Connection, row: Any, by: Actor, action: str, to_status: str | None,
           reason: str | None, data: Mapping[str, Any]) -> dict[str, Any]:
    event = conn.execute(text("""
        INSERT INTO case_events (incident_id, actor_id, action, from_status, to_status, reason,
                                 data, district_code)
        VALUES (:incident_id, :actor_id, :action, :from_status, :to_status, :reason,
                CAST(:data AS jsonb), :district)
        RETURNING id, at
    """), {"incident_id": row.id, "actor_id": by.user_id, "action": action,
           "from_status": row.status, "to_status": to_status, "reason": reason,
           "data": json.dumps(data, ensure_ascii=False, default=str),
           "district": row.district_code}).one()
    return {"id": int(event.id), "at": event.at, "incident_id": int(row.id), "action": action,
            "from_status": row.status, "to_status": to_status, "reason": reason,
            "data": dict(data), "actor": by.name}


def _clean_reason(reason: str | None, needed: bool, fld: str = "reason") -> str | None:
    value = (reason or "").strip() or None
    if needed and value is None:
        raise InvalidInput(f"{fld} is required: say why", field=fld)
    if value is not None and len(value) > MAX_REASON:
        raise InvalidInput(f"{fld} is {len(value)} characters; at most {MAX_REASON}", field=fld)
    if value is not None and any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise InvalidInput(f"{fld} contains control characters", field=fld)
    return value


def _rule(action: str) -> Rule:
    rule = RULES.get(action)
    if rule is None:
        hint = NOT_TRANSITIONS.get(action)
        raise InvalidInput(hint or f"unknown action {action!r}; actions: "
                           f"{', '.join(RULES)}", field="action")
    return rule


# -- transitions ------------------------------------------------------------------------------


def transition(conn: Connection, incident_id: int, action: str, by: Actor,
               reader: Principal | None, *, reason: str | None = None,
               data: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Take `action` on the incident (caller commits). `reader` None is the system (e.g.
    gis.dispatch moving registered → dispatched): no role or scope checks then.

    InvalidInput for an unknown action, a missing reason or bad data; NotFound when the
    incident is missing or outside `reader`'s scope; Forbidden when `reader` may not take
    the action; Conflict when the case's state does not allow it (`detail["allowed"]` lists
    the actions allowed now). Returns the case event with the new status and deadlines."""
    rule = _rule(action)
    if reader is not None and rule.who == "system":
        raise InvalidInput(f"{action} is not a case transition you can request: "
                           + DISPATCH_HINT.format(incident_id=incident_id), field="action")
    reason = _clean_reason(reason, rule.needs_reason)
    extra = dict(data or {})
    out_of_remit = extra.get("out_of_remit", False)
    if not isinstance(out_of_remit, bool):
        raise InvalidInput("out_of_remit must be true or false", field="out_of_remit")
    row = _load(conn, incident_id, reader, lock=True)
    if reader is not None and not _permitted(rule, reader, bool(row.has_task)):
        who = ("an operator, or a dispatcher of a department with an active task on this "
               "case" if rule.who == "task" else "an operator")
        raise Forbidden(f"{action} ({rule.label}) needs {who}; you have "
                        f"{', '.join(sorted(reader.roles))}", field="action")
    if row.status not in rule.sources:
        allowed = _allowed(row.status, reader, bool(row.has_task))
        hint = ("; " + DISPATCH_HINT.format(incident_id=incident_id)
                if row.status == "registered" and reader is not None else "")
        raise Conflict(f"cannot {action} ({rule.label}) a case that is {row.status}; "
                       f"allowed now: {', '.join(allowed) or 'none'}{hint}", field="action",
                       detail={"status": row.status, "allowed": allowed})
    if action == "return":
        extra["out_of_remit"] = out_of_remit
    else:
        extra.pop("out_of_remit", None)
    to_status = rule.target or row.status
    deadlines = dict(row.deadlines or {})
    if rule.restarts:
        deadlines = _restart(catalog.current_calendar(conn), row.now, deadlines,
                             row.time_limits or {}, rule.restarts)
    ended: list[int] = []
    if rule.ends_dispatches is not None:
        ended = dispatch.end_active(conn, incident_id, by, to_status=rule.ends_dispatches,
                                    reason=reason, out_of_remit=out_of_remit)
    conn.execute(text("""
        UPDATE incidents
        SET status = :status, deadlines = CAST(:deadlines AS jsonb),
            closed_at = CASE WHEN :status = 'closed' THEN now() ELSE closed_at END,
            supervised = supervised OR :supervise, updated_at = now()
        WHERE id = :id
    """), {"status": to_status, "deadlines": json.dumps(deadlines), "id": incident_id,
           "supervise": action == "supervise"})
    if ended:
        extra["ended_dispatches"] = ended
    if rule.restarts:
        extra["deadlines"] = {stage: deadlines[stage] for stage in rule.restarts
                              if stage in deadlines}
    event = _event(conn, row, by, action, to_status, reason, extra)
    audit.record(conn, by, action=f"incident.{action}", object_type="incident",
                 object_id=str(incident_id),
                 before={"status": row.status, "deadlines": row.deadlines,
                         "supervised": row.supervised},
                 after={"status": to_status, "deadlines": deadlines, "reason": reason,
                        "supervised": row.supervised or action == "supervise",
                        **({"ended_dispatches": ended} if ended else {})},
                 district_code=row.district_code)
    freed = [int(t) for t in conn.scalars(text(
        "SELECT DISTINCT team_id FROM dispatches WHERE id = ANY(:ids) ORDER BY team_id"),
        {"ids": ended})] if ended else []
    events.emit_incident(conn, "incident.status", incident_id, team_ids=freed, action=action,
                         **{"from": row.status, "to": to_status})
    return {**event, "deadlines": deadlines}


def supervise(conn: Connection, incident_id: int, by: Actor, reader: Principal | None, *,
              reason: str) -> dict[str, Any]:
    """督办: mark the case supervised (operators, admins), with a case event 'supervise'."""
    return transition(conn, incident_id, "supervise", by, reader, reason=reason)


def allowed_actions(conn: Connection, incident_id: int, reader: Principal) -> dict[str, Any]:
    """What `reader` may do with the incident now (the command card's buttons), and the
    deadline state of its current stage. NotFound when not visible."""
    row = _load(conn, incident_id, reader, lock=False)
    names = _allowed(row.status, reader, bool(row.has_task))
    actions = [{"action": name, "label": RULES[name].label, "to_status": RULES[name].target,
                "reason_required": RULES[name].needs_reason} for name in names]
    calendar = catalog.current_calendar(conn)
    return {"incident_id": incident_id, "status": row.status, "actions": actions,
            "may_dispatch": row.status == "registered" and reader.has_any(*COMMAND_ROLES),
            "deadline": deadline_state(row.status, row.deadlines or {}, row.time_limits or {},
                                       row.now, calendar.seconds_per_day)}


def incident_deadline(conn: Connection, incident_id: int, reader: Principal | None,
                      at: datetime | None = None) -> dict[str, Any]:
    """The deadline state (`deadline_state`) of one incident at `at` (default now)."""
    row = _load(conn, incident_id, reader, lock=False)
    calendar = catalog.current_calendar(conn)
    return deadline_state(row.status, row.deadlines or {}, row.time_limits or {},
                          at or row.now, calendar.seconds_per_day)


_TIMELINE = text("""
    SELECT * FROM (
      SELECT 'case' AS kind, ce.id, ce.at, ce.action, ce.from_status, ce.to_status,
             ce.reason, ce.data, u.username AS actor, CAST(NULL AS bigint) AS dispatch_id,
             CAST(NULL AS bigint) AS team_id, CAST(NULL AS text) AS team_name
      FROM case_events ce LEFT JOIN users u ON u.id = ce.actor_id
      WHERE ce.incident_id = :incident_id
      UNION ALL
      SELECT 'dispatch', de.id, de.at, 'dispatch.' || de.to_status, de.from_status,
             de.to_status, de.reason, '{}'::jsonb, u.username, d.id, t.id, t.name
      FROM dispatch_events de
      JOIN dispatches d ON d.id = de.dispatch_id
      JOIN teams t ON t.id = d.team_id
      LEFT JOIN users u ON u.id = de.actor_id
      WHERE d.incident_id = :incident_id
    ) x
    ORDER BY at, kind, id
""")


def timeline(conn: Connection, incident_id: int, reader: Principal) -> list[dict[str, Any]]:
    """The case's history, oldest first: its case events (with actor usernames) and the
    steps of its dispatches (with team names). NotFound when not visible."""
    _load(conn, incident_id, reader, lock=False)
    return [dict(r) for r in conn.execute(_TIMELINE, {"incident_id": incident_id}).mappings()]


# -- extensions (延期) ---------------------------------------------------------------------------


def _check_extension(value: float, unit: str) -> None:
    if unit not in UNITS:
        raise InvalidInput(f"unknown unit {unit!r} (units: {', '.join(UNITS)})", field="unit")
    if isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise InvalidInput(f"value must be a positive number, not {value!r}", field="value")
    if value > MAX_EXTENSION[unit]:
        raise InvalidInput(f"at most {MAX_EXTENSION[unit]:g} {unit} per request",
                           field="value")


def _stage_ahead(status: str, stage: str | None, deadlines: Mapping[str, str]) -> str:
    """The stage an extension is for: `stage`, or the current one; it must be the current
    stage or one ahead of it, with a deadline."""
    current = STAGE_OF.get(status)
    if current is None:
        raise Conflict(f"a case that is {status} has no running deadline to extend",
                       field="incident_id", detail={"status": status})
    wanted = stage or current
    if wanted not in catalog.STAGES:
        raise InvalidInput(f"unknown stage {wanted!r} (stages: {', '.join(catalog.STAGES)})",
                           field="stage")
    if catalog.STAGES.index(wanted) < catalog.STAGES.index(current):
        raise InvalidInput(f"the {wanted} stage is over (the case is in {current})",
                           field="stage")
    if wanted not in deadlines:
        raise Conflict(f"the case has no {wanted} deadline", field="stage")
    return wanted


def request_extension(conn: Connection, incident_id: int, by: Actor, reader: Principal | None,
                      *, value: float, unit: str, reason: str,
                      stage: str | None = None) -> dict[str, Any]:
    """Ask for more time (延期) for `stage` (default the current one): operators, admins, and
    dispatchers of a department with an active task on the case. One pending request per
    incident (Conflict otherwise). Returns the request (caller commits)."""
    _check_extension(value, unit)
    clean = _clean_reason(reason, True)
    row = _load(conn, incident_id, reader, lock=True)
    if reader is not None and not (reader.has_any(*COMMAND_ROLES)
                                   or (reader.has_any("dispatcher") and row.has_task)):
        raise Forbidden("an extension is asked for by an operator, or by a dispatcher of a "
                        "department with an active task on this case", field="role")
    wanted = _stage_ahead(row.status, stage, row.deadlines or {})
    pending = conn.scalar(text("SELECT id FROM extension_requests WHERE incident_id = :i "
                               "AND status = 'pending'"), {"i": incident_id})
    if pending is not None:
        raise Conflict(f"extension request {pending} for this case is still pending; wait "
                       "for its decision", field="incident_id", detail={"pending": pending})
    request = conn.execute(text("""
        INSERT INTO extension_requests (incident_id, stage, value, unit, reason, requested_by,
                                        old_deadline, district_code)
        VALUES (:i, :stage, :value, :unit, :reason, :by, :old, :district)
        RETURNING id, incident_id, stage, value, unit, reason, status, requested_by,
                  requested_at, old_deadline
    """), {"i": incident_id, "stage": wanted, "value": float(value), "unit": unit,
           "reason": clean, "by": by.user_id, "old": row.deadlines[wanted],
           "district": row.district_code}).mappings().one()
    out = dict(request)
    audit.record(conn, by, action="extension.request", object_type="extension_request",
                 object_id=str(out["id"]), after={**out, "incident_id": incident_id},
                 district_code=row.district_code)
    events.emit_incident(conn, "incident.extension", incident_id, request_id=out["id"],
                         status="pending")
    return out


def decide_extension(conn: Connection, request_id: int, by: Actor, reader: Principal | None,
                     *, approve: bool, note: str | None = None) -> dict[str, Any]:
    """Approve or reject a pending extension request (operators, admins). Approval moves the
    stage's deadline, and those of the later stages, by the extension in working time and
    records a case event 'extend' {stage, old, new}. Returns the decided request."""
    if reader is not None and not reader.has_any(*COMMAND_ROLES):
        raise Forbidden("extensions are decided by an operator", field="role")
    clean_note = _clean_reason(note, False, "note")
    incident_id = conn.scalar(text("SELECT incident_id FROM extension_requests WHERE id = :r"),
                              {"r": request_id})
    missing = NotFound(f"no extension request {request_id} (or not in your scope)",
                       field="request_id")
    if incident_id is None:
        raise missing
    try:
        row = _load(conn, int(incident_id), reader, lock=True)  # the incident first, always
    except NotFound:
        raise missing from None
    request = conn.execute(text("SELECT * FROM extension_requests WHERE id = :r FOR UPDATE"),
                           {"r": request_id}).mappings().one()
    if request["status"] != "pending":
        raise Conflict(f"extension request {request_id} is already {request['status']}",
                       field="request_id", detail={"status": request["status"]})
    deadlines = dict(row.deadlines or {})
    moved: dict[str, dict[str, str]] = {}
    if approve:
        try:
            stage = _stage_ahead(row.status, request["stage"], deadlines)
        except (InvalidInput, Conflict) as exc:
            raise Conflict(f"the case has moved on: {exc.message}; reject the request",
                           field="request_id") from None
        calendar = catalog.current_calendar(conn)
        for later in catalog.STAGES[catalog.STAGES.index(stage):]:
            if later in deadlines:
                old = datetime.fromisoformat(deadlines[later])
                new = calendar.deadline(old, float(request["value"]), str(request["unit"]))
                moved[later] = {"old": deadlines[later], "new": new.isoformat()}
                deadlines[later] = new.isoformat()
        conn.execute(text("UPDATE incidents SET deadlines = CAST(:d AS jsonb), "
                          "updated_at = now() WHERE id = :i"),
                     {"d": json.dumps(deadlines), "i": row.id})
    decided = conn.execute(text("""
        UPDATE extension_requests
        SET status = :status, decided_by = :by, decided_at = now(), decision_note = :note,
            old_deadline = coalesce(CAST(:old AS timestamptz), old_deadline),
            new_deadline = CAST(:new AS timestamptz)
        WHERE id = :r
        RETURNING id, incident_id, stage, value, unit, reason, status, requested_by,
                  requested_at, decided_by, decided_at, decision_note, old_deadline,
                  new_deadline
    """), {"status": "approved" if approve else "rejected", "by": by.user_id,
           "note": clean_note, "r": request_id,
           "old": moved.get(request["stage"], {}).get("old"),
           "new": moved.get(request["stage"], {}).get("new")}).mappings().one()
    out = dict(decided)
    if approve:
        first = moved[request["stage"]]
        out["event"] = _event(conn, row, by, "extend", row.status, request["reason"], {
            "stage": request["stage"], "old": first["old"], "new": first["new"],
            "value": float(request["value"]), "unit": request["unit"],
            "request_id": request_id,
            "later": {s: m["new"] for s, m in moved.items() if s != request["stage"]}})
    audit.record(conn, by, action="extension.approve" if approve else "extension.reject",
                 object_type="extension_request", object_id=str(request_id),
                 before={"status": "pending", "deadlines": row.deadlines},
                 after={"status": out["status"], "note": clean_note, "deadlines": deadlines},
                 district_code=row.district_code)
    events.emit_incident(conn, "incident.extension", int(row.id), request_id=request_id,
                         status=out["status"])
    out["deadlines"] = deadlines
    return out


def list_extensions(conn: Connection, incident_id: int, reader: Principal) -> list[dict[str, Any]]:
    """The extension requests of an incident, newest first (NotFound when not visible)."""
    _load(conn, incident_id, reader, lock=False)
    rows = conn.execute(text("""
        SELECT e.id, e.incident_id, e.stage, e.value, e.unit, e.reason, e.status,
               e.requested_at, r.username AS requested_by, e.decided_at,
               d.username AS decided_by, e.decision_note, e.old_deadline, e.new_deadline
        FROM extension_requests e
        LEFT JOIN users r ON r.id = e.requested_by
        LEFT JOIN users d ON d.id = e.decided_by
        WHERE e.incident_id = :i ORDER BY e.id DESC
    """), {"i": incident_id}).mappings()
    return [dict(r) for r in rows]
