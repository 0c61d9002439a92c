"""Dispatch (派遣) and whistles (吹哨报到): teams sent to an incident, their steps
dispatched → accepted → en route → on scene (报到) → done (or declined / cancelled), each
with time and actor, and the team's status following them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, RowMapping, text

from gis import audit, events, roadgraph, workflow
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.recommend import need_of
from gis.scope import incident_visible

ETA_HORIZON_S = 4 * 3600.0  # ETA recorded at dispatch time: any team reachable in 4 h

_END_ACTIVE = text("""
    WITH active AS (
        SELECT id, team_id, status FROM dispatches
        WHERE incident_id = :incident_id
          AND status IN ('dispatched', 'accepted', 'en_route', 'on_scene')
        FOR UPDATE),
    ended AS (
        UPDATE dispatches d
        SET status = :to_status,
            done_at = CASE WHEN :to_status = 'done' THEN now() END,
            cancelled_at = CASE WHEN :to_status = 'cancelled' THEN now() END,
            reason = coalesce(CAST(:reason AS text), d.reason),
            out_of_remit = d.out_of_remit OR :out_of_remit
        FROM active a WHERE d.id = a.id
        RETURNING d.id, d.team_id, a.status AS from_status),
    steps AS (
        INSERT INTO dispatch_events (dispatch_id, actor_id, from_status, to_status, reason)
        SELECT id, :actor_id, from_status, :to_status, :reason FROM ended),
    freed AS (
        UPDATE teams t SET status = 'available', updated_at = now()
        FROM ended e WHERE t.id = e.team_id AND t.status = 'busy'
        RETURNING t.id)
    SELECT ended.id FROM ended ORDER BY ended.id
""")


def end_active(conn: Connection, incident_id: int, by: Actor, *,
               to_status: Literal["cancelled", "done"] = "cancelled",
               reason: str | None = None, out_of_remit: bool = False) -> list[int]:
    """End the incident's active dispatches — cancelled when the case is returned (退回),
    voided or put on the ledger, done when it closes — and free their busy teams. Returns
    the ended dispatch ids (caller commits)."""
    return [int(i) for i in conn.scalars(_END_ACTIVE, {
        "incident_id": incident_id, "to_status": to_status, "reason": reason,
        "out_of_remit": out_of_remit, "actor_id": by.user_id})]


# -- sending teams ------------------------------------------------------------------------

DISPATCHABLE = ("registered", "dispatched", "handling")  # 立案 and not yet fed back
WHISTLE_KINDS = {"enforcement": "综合执法哨", "priority": "重点工作哨",
                 "emergency": "应急处置哨", "joint": "联合哨"}
MAX_TEAMS = 20
MAX_TEXT = 500


@dataclass(frozen=True)
class Order:
    """A dispatch order: the teams to send, optionally under a whistle, and the reason
    for sending a team that lacks the capability (allowed only with one)."""

    team_ids: list[int]
    whistle_id: int | None = None
    override_reason: str | None = None


_CASE = """
    SELECT i.id, i.status, i.district_code, i.street_code, i.is_joint, i.joint,
           ST_X(i.geom) AS lon, ST_Y(i.geom) AS lat, ec.kind, ec.code, ec.departments
    FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
    WHERE i.id = :id AND ({visible})
    FOR UPDATE OF i
"""


def _case(conn: Connection, reader: Principal, incident_id: int) -> RowMapping:
    """The incident (locked for this transaction) if `reader` may see it."""
    visible, params = incident_visible(reader)
    row = conn.execute(text(_CASE.format(visible=visible)),
                       {**params, "id": incident_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no incident {incident_id} (or not in your scope)", field="incident_id")
    return row


def _check_text(value: str | None, name: str) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > MAX_TEXT:
        raise InvalidInput(f"{name} must be 1–{MAX_TEXT} characters", field=name)
    return value


_TEAMS = text("""
    SELECT t.id, t.name, t.status, t.capabilities, t.home_code, t.department_id,
           ST_X(t.position) AS lon, ST_Y(t.position) AS lat,
           a.id AS holder_dispatch, a.incident_id AS holder_incident
    FROM teams t
    LEFT JOIN dispatches a ON a.team_id = t.id
     AND a.status IN ('dispatched', 'accepted', 'en_route', 'on_scene')
    WHERE t.id = ANY(:ids)
""")

# The conditional update settles races: of concurrent orders for one team, the first to
# commit turns it busy and every other finds it no longer available.
_TAKE = text("""
    UPDATE teams SET status = 'busy', updated_at = now()
    WHERE id = ANY(:ids) AND status = 'available'
    RETURNING id
""")

_INSERT = text("""
    WITH made AS (
        INSERT INTO dispatches (incident_id, whistle_id, team_id, dispatched_by,
                                override_reason, eta_s, district_code)
        SELECT :incident_id, :whistle_id, u.team_id, :actor_id,
               CASE WHEN u.override THEN :override END, u.eta_s, :district
        FROM unnest(CAST(:team_ids AS bigint[]), CAST(:overrides AS boolean[]),
                    CAST(:etas AS integer[])) AS u(team_id, override, eta_s)
        RETURNING id, team_id),
    steps AS (
        INSERT INTO dispatch_events (dispatch_id, actor_id, from_status, to_status, reason)
        SELECT id, :actor_id, NULL, 'dispatched', :override FROM made)
    SELECT id, team_id FROM made ORDER BY id
""")


def _refusal(team: RowMapping) -> str:
    if team["holder_dispatch"] is not None:
        return (f"team {team['id']} ({team['name']}) is already on incident "
                f"{team['holder_incident']} (dispatch {team['holder_dispatch']})")
    return f"team {team['id']} ({team['name']}) is {team['status']}, not available"


def dispatch(conn: Connection, incident_id: int, order: Order, by: Actor,
             reader: Principal) -> list[dict[str, Any]]:
    """Send teams to an incident (caller commits): every team must exist, be available and
    capable (or the order gives an override reason); one refusal sends none. The case
    moves 立案 → 派遣 with the first dispatch. Returns the dispatches made."""
    ids = list(dict.fromkeys(order.team_ids))
    if not 1 <= len(ids) <= MAX_TEAMS:
        raise InvalidInput(f"team_ids must list 1–{MAX_TEAMS} teams", field="team_ids")
    override = _check_text(order.override_reason, "override_reason")
    case = _case(conn, reader, incident_id)
    if case["status"] not in DISPATCHABLE:
        raise Conflict(f"incident {incident_id} is {case['status']}: teams are sent once it is "
                       f"registered (立案) and until it is fed back", field="incident_id",
                       detail={"status": case["status"]})
    teams = {int(t["id"]): t for t in conn.execute(_TEAMS, {"ids": ids}).mappings()}
    for k, team_id in enumerate(ids):
        if team_id not in teams:
            raise NotFound(f"no team {team_id}", field=f"team_ids[{k}]")
    need = need_of(case["kind"], case["code"], _departments(case["departments"]))
    lacking = [t for t in ids if not set(need.capabilities) & set(teams[t]["capabilities"])]
    if lacking and override is None:
        raise InvalidInput(
            f"team {lacking[0]} ({teams[lacking[0]]['name']}) lacks the capability "
            f"({', '.join(need.capabilities)}); send override_reason to dispatch it anyway",
            field="team_ids", detail={"lacking": lacking})
    taken = set(conn.scalars(_TAKE, {"ids": ids}))
    refused = [teams[t] for t in ids if t not in taken]
    if refused:
        raise Conflict("; ".join(_refusal(t) for t in refused), field="team_ids",
                       detail={"refused": [{"team_id": t["id"], "status": t["status"],
                                            "holder_incident": t["holder_incident"],
                                            "holder_dispatch": t["holder_dispatch"]}
                                           for t in refused]})
    etas = _etas(conn, case, [teams[t] for t in ids])
    made = conn.execute(_INSERT, {
        "incident_id": incident_id, "whistle_id": order.whistle_id, "actor_id": by.user_id,
        "override": override, "district": case["district_code"], "team_ids": ids,
        "overrides": [t in lacking for t in ids], "etas": etas}).mappings().all()
    if case["status"] == "registered":
        workflow.transition(conn, incident_id, "dispatch", by, None,
                            data={"team_ids": ids})
    audit.record(conn, by, action="dispatch.create", object_type="incident",
                 object_id=str(incident_id), district_code=case["district_code"],
                 after={"team_ids": ids, "dispatch_ids": [m["id"] for m in made],
                        "whistle_id": order.whistle_id, "override_reason": override})
    events.emit_incident(conn, "dispatch.created", incident_id, team_ids=ids,
                         dispatch_ids=[m["id"] for m in made])
    return [{"dispatch_id": m["id"], "team_id": m["team_id"], "status": "dispatched",
             "eta_s": etas[ids.index(m["team_id"])]} for m in made]


def _departments(value: Any) -> list[dict[str, str]]:
    return list(json.loads(value) if isinstance(value, str) else value)


def _etas(conn: Connection, case: RowMapping, teams: list[RowMapping]) -> list[int | None]:
    """Road ETA of each team at dispatch time (None without a position or beyond reach)."""
    located = [t for t in teams if t["lon"] is not None]
    out: dict[int, int | None] = {int(t["id"]): None for t in teams}
    if located:
        etas = roadgraph.graph_for(conn).etas_to(
            case["lon"], case["lat"], [t["lon"] for t in located],
            [t["lat"] for t in located], budget_s=ETA_HORIZON_S)
        for t, eta in zip(located, etas.eta_s, strict=True):
            out[int(t["id"])] = round(float(eta)) if eta != float("inf") else None
    return [out[int(t["id"])] for t in teams]


# -- a dispatch's steps ---------------------------------------------------------------------

STEP_ORDER = ("dispatched", "accepted", "en_route", "on_scene")
STEP_ROLES = {"accepted": "team", "en_route": "team", "on_scene": "team", "done": "team",
              "declined": "team", "cancelled": "command"}

_DISPATCH = """
    SELECT d.id, d.status, d.incident_id, d.team_id, t.department_id, t.name AS team_name
    FROM dispatches d JOIN teams t ON t.id = d.team_id JOIN incidents i ON i.id = d.incident_id
    WHERE d.id = :id AND ({visible})
    FOR UPDATE OF d
"""

_STEP = text("""
    WITH moved AS (
        UPDATE dispatches SET status = :to,
            accepted_at = CASE WHEN :to = 'accepted' THEN now() ELSE accepted_at END,
            en_route_at = CASE WHEN :to = 'en_route' THEN now() ELSE en_route_at END,
            on_scene_at = CASE WHEN :to = 'on_scene' THEN now() ELSE on_scene_at END,
            done_at = CASE WHEN :to = 'done' THEN now() ELSE done_at END,
            declined_at = CASE WHEN :to = 'declined' THEN now() ELSE declined_at END,
            cancelled_at = CASE WHEN :to = 'cancelled' THEN now() ELSE cancelled_at END,
            reason = coalesce(CAST(:reason AS text), reason),
            out_of_remit = out_of_remit OR :out_of_remit
        WHERE id = :id
        RETURNING id, team_id),
    step AS (
        INSERT INTO dispatch_events (dispatch_id, actor_id, from_status, to_status, reason)
        SELECT id, :actor_id, :from, :to, :reason FROM moved),
    freed AS (
        UPDATE teams t SET status = 'available', updated_at = now()
        FROM moved WHERE t.id = moved.team_id AND :to IN ('done', 'declined', 'cancelled')
          AND t.status = 'busy'
        RETURNING t.id)
    SELECT (SELECT count(*) FROM freed) AS freed,
           (SELECT count(*) FROM dispatches
            WHERE incident_id = :incident_id AND id <> :id
              AND status IN ('dispatched', 'accepted', 'en_route', 'on_scene')) AS others
""")


def allowed_steps(status: str) -> list[str]:
    """The steps a dispatch in `status` may take next."""
    if status not in STEP_ORDER:
        return []
    later = list(STEP_ORDER[STEP_ORDER.index(status) + 1:])
    done = ["done"] if status == "on_scene" else []
    declined = ["declined"] if status in ("dispatched", "accepted") else []
    return later + done + declined + ["cancelled"]


def step(conn: Connection, dispatch_id: int, to: str, by: Actor, reader: Principal, *,
         reason: str | None = None, out_of_remit: bool = False) -> dict[str, Any]:
    """Move a dispatch one step (caller commits): the team's own department reports
    accepted, en route, on scene (报到), done or declined; operators may also cancel. The
    team is freed when the dispatch ends; the case starts handling (处置中) at the first
    arrival and is fed back (处置反馈) when its last active dispatch is done."""
    if to not in STEP_ROLES:
        raise InvalidInput(f"status must be one of {', '.join(STEP_ROLES)}", field="status")
    reason = _check_text(reason, "reason")
    if to in ("declined", "cancelled") and reason is None:
        raise InvalidInput(f"a {to} dispatch needs a reason", field="reason")
    if out_of_remit and to != "declined":
        raise InvalidInput("out_of_remit is for a dispatch declined as not in remit",
                           field="out_of_remit")
    # lock the case before the dispatch, as the workflow does (no deadlock with a 退回)
    incident_id = conn.scalar(text("SELECT incident_id FROM dispatches WHERE id = :id"),
                              {"id": dispatch_id})
    missing = NotFound(f"no dispatch {dispatch_id} (or not in your scope)", field="dispatch_id")
    if incident_id is None:
        raise missing
    try:
        _case(conn, reader, int(incident_id))
    except NotFound:
        raise missing from None
    visible, params = incident_visible(reader)
    row = conn.execute(text(_DISPATCH.format(visible=visible)),
                       {**params, "id": dispatch_id}).mappings().one()
    own_team = reader.has_any("dispatcher") and reader.department_id == row["department_id"]
    command = reader.has_any("admin", "operator")
    if not (command or (own_team and STEP_ROLES[to] == "team")):
        raise Forbidden(f"only {'an operator' if STEP_ROLES[to] == 'command' else 'the team'}"
                        f"'s department or an operator may mark dispatch {dispatch_id} {to}",
                        field="status")
    allowed = allowed_steps(row["status"])
    if to not in allowed:
        raise Conflict(f"dispatch {dispatch_id} is {row['status']}; it may go to "
                       f"{', '.join(allowed) or 'nothing (it has ended)'}", field="status",
                       detail={"allowed": allowed})
    moved = conn.execute(_STEP, {"id": dispatch_id, "to": to, "from": row["status"],
                                 "reason": reason, "out_of_remit": out_of_remit,
                                 "actor_id": by.user_id,
                                 "incident_id": row["incident_id"]}).mappings().one()
    case = _case(conn, reader, row["incident_id"])
    if to == "on_scene" and case["status"] == "dispatched":
        workflow.transition(conn, case["id"], "start", by, None, data={"dispatch_id": dispatch_id})
    if to == "done" and moved["others"] == 0 and case["status"] == "handling":
        workflow.transition(conn, case["id"], "feedback", by, None,
                            data={"dispatch_id": dispatch_id})
    audit.record(conn, by, action=f"dispatch.{to}", object_type="dispatch",
                 object_id=str(dispatch_id), district_code=case["district_code"],
                 before={"status": row["status"]},
                 after={"status": to, "reason": reason, "out_of_remit": out_of_remit})
    events.emit_incident(conn, "dispatch.status", int(case["id"]),
                         team_ids=[int(row["team_id"])], dispatch_id=dispatch_id,
                         team_id=row["team_id"], status=to)
    return {"dispatch_id": dispatch_id, "team_id": row["team_id"], "from": row["status"],
            "status": to, "team_freed": bool(moved["freed"])}


# -- whistles (吹哨) ---------------------------------------------------------------------------

REQUIRED_ARRIVAL_S = 1800  # 30 minutes to report (报到)


@dataclass(frozen=True)
class WhistleOrder:
    """A whistle: its kind (code or Chinese name), the departments summoned, teams to send
    at once, the arrival time required and a note."""

    kind: str
    department_ids: list[int]
    team_ids: list[int]
    required_arrival_s: int = REQUIRED_ARRIVAL_S
    note: str | None = None


def whistle_kind(value: str) -> str:
    """The kind code of a whistle given by code (joint) or name (联合哨)."""
    by_name = {name: code for code, name in WHISTLE_KINDS.items()}
    kind = by_name.get(value.strip(), value.strip())
    if kind not in WHISTLE_KINDS:
        raise InvalidInput("kind must be one of " + ", ".join(
            f"{code} ({name})" for code, name in WHISTLE_KINDS.items()), field="kind")
    return kind


def covers(department_code: str, jurisdiction_code: str) -> bool:
    """A department answers for a jurisdiction it contains, or one containing it."""
    return (jurisdiction_code.startswith(department_code)
            or department_code.startswith(jurisdiction_code))


_DEPARTMENTS = text("""
    SELECT d.id, d.name, d.jurisdiction_code FROM departments d WHERE d.id = ANY(:ids)
    UNION
    SELECT d.id, d.name, d.jurisdiction_code
    FROM teams t JOIN departments d ON d.id = t.department_id WHERE t.id = ANY(:teams)
""")

_WHISTLE = text("""
    WITH w AS (
        INSERT INTO whistles (incident_id, kind, blown_by, required_arrival_s,
                              jurisdiction_codes, note, district_code)
        VALUES (:incident_id, :kind, :actor_id, :required, :codes, :note, :district)
        RETURNING id),
    s AS (
        INSERT INTO whistle_summons (whistle_id, department_id, jurisdiction_code)
        SELECT w.id, u.department_id, u.code FROM w,
               unnest(CAST(:departments AS bigint[]), CAST(:summon_codes AS text[]))
                 AS u(department_id, code))
    SELECT id FROM w
""")


def blow_whistle(conn: Connection, incident_id: int, order: WhistleOrder, by: Actor,
                 reader: Principal) -> dict[str, Any]:
    """Blow a whistle on a case (caller commits): summon departments (those of the teams
    sent count too) to arrive within the required time, and send the teams. A 联合哨
    needs a joint case and a department from every jurisdiction it names."""
    kind = whistle_kind(order.kind)
    if not 60 <= order.required_arrival_s <= 24 * 3600:
        raise InvalidInput("required_arrival_s must be between 60 and 86400 seconds",
                           field="required_arrival_s")
    note = _check_text(order.note, "note")
    case = _case(conn, reader, incident_id)
    if case["status"] in ("pending", "void", "closed", "ledger"):
        raise Conflict(f"incident {incident_id} is {case['status']}: whistles are blown on "
                       "registered (立案), open cases", field="incident_id")
    named = [(j["code"], j["name"]) for j in case["joint"]["jurisdictions"]] \
        if case["is_joint"] and case["joint"] else []
    if kind == "joint" and len(named) < 2:
        raise InvalidInput("a 联合哨 (joint whistle) needs a case on a jurisdiction line; "
                           f"incident {incident_id} lies in one jurisdiction only", field="kind")
    codes = [c for c, _ in named] if kind == "joint" else \
        [case["street_code"] or case["district_code"]]
    departments = {int(d["id"]): d for d in conn.execute(_DEPARTMENTS, {
        "ids": order.department_ids, "teams": order.team_ids}).mappings()}
    for k, department_id in enumerate(order.department_ids):
        if department_id not in departments:
            raise NotFound(f"no department {department_id}", field=f"department_ids[{k}]")
    if not departments:
        raise InvalidInput("summon at least one department (department_ids or team_ids)",
                           field="department_ids")
    missing = [name for code, name in named if kind == "joint" and not any(
        covers(d["jurisdiction_code"], code) for d in departments.values())]
    if missing:
        raise InvalidInput(f"a 联合哨 must summon a department from every side; none from "
                           f"{', '.join(missing)}", field="department_ids",
                           detail={"missing": missing})
    summon_codes = [next((c for c in codes if covers(d["jurisdiction_code"], c)),
                         d["jurisdiction_code"]) for d in departments.values()]
    whistle_id = int(conn.scalar(_WHISTLE, {
        "incident_id": incident_id, "kind": kind, "actor_id": by.user_id,
        "required": order.required_arrival_s, "codes": codes, "note": note,
        "district": case["district_code"], "departments": list(departments),
        "summon_codes": summon_codes}))
    audit.record(conn, by, action="whistle.blow", object_type="incident",
                 object_id=str(incident_id), district_code=case["district_code"],
                 after={"whistle_id": whistle_id, "kind": kind,
                        "department_ids": list(departments), "team_ids": order.team_ids})
    events.emit_incident(conn, "whistle.blown", incident_id, whistle_id=whistle_id, kind=kind,
                         summoned_department_ids=list(departments))
    # teams sent under a whistle are the commander's explicit choice, capable or not
    sent = dispatch(conn, incident_id, Order(order.team_ids, whistle_id,
                                             f"summoned by {WHISTLE_KINDS[kind]}"), by, reader) \
        if order.team_ids else []
    return {"whistle_id": whistle_id, "kind": kind, "name": WHISTLE_KINDS[kind],
            "jurisdiction_codes": codes, "required_arrival_s": order.required_arrival_s,
            "summoned": [{"department_id": d, "name": departments[d]["name"],
                          "jurisdiction_code": c}
                         for d, c in zip(departments, summon_codes, strict=True)],
            "dispatches": sent}


# -- reading ------------------------------------------------------------------------------

_LIST = """
    SELECT d.id, d.team_id, t.name AS team_name, t.department_id, dep.name AS department_name,
           d.status, d.whistle_id, w.kind AS whistle_kind, d.eta_s, d.override_reason,
           d.reason, d.out_of_remit, d.dispatched_at, d.accepted_at, d.en_route_at,
           d.on_scene_at, d.done_at, d.declined_at, d.cancelled_at,
           extract(epoch FROM d.on_scene_at - d.dispatched_at) AS arrival_s,
           coalesce(w.required_arrival_s, :required) AS required_arrival_s
    FROM incidents i JOIN dispatches d ON d.incident_id = i.id
    JOIN teams t ON t.id = d.team_id JOIN departments dep ON dep.id = t.department_id
    LEFT JOIN whistles w ON w.id = d.whistle_id
    WHERE i.id = :id AND ({visible})
    ORDER BY d.id
"""

_WHISTLES = """
    SELECT w.id, w.kind, w.blown_at, u.username AS blown_by, w.required_arrival_s,
           w.jurisdiction_codes, w.note,
           (SELECT coalesce(json_agg(json_build_object(
                      'department_id', s.department_id, 'name', dep.name,
                      'jurisdiction_code', s.jurisdiction_code) ORDER BY s.department_id), '[]')
            FROM whistle_summons s JOIN departments dep ON dep.id = s.department_id
            WHERE s.whistle_id = w.id) AS summoned
    FROM incidents i JOIN whistles w ON w.incident_id = i.id
    LEFT JOIN users u ON u.id = w.blown_by
    WHERE i.id = :id AND ({visible})
    ORDER BY w.id
"""


def _visible_rows(conn: Connection, reader: Principal, incident_id: int,
                  sql: str) -> list[dict[str, Any]]:
    visible, params = incident_visible(reader)
    if conn.execute(text(f"SELECT 1 FROM incidents i WHERE i.id = :id AND ({visible})"),  # noqa: S608
                    {**params, "id": incident_id}).first() is None:
        raise NotFound(f"no incident {incident_id} (or not in your scope)", field="incident_id")
    rows = conn.execute(text(sql.format(visible=visible)),
                        {**params, "id": incident_id, "required": REQUIRED_ARRIVAL_S})
    return [dict(r) for r in rows.mappings()]


def list_dispatches(conn: Connection, reader: Principal, incident_id: int) -> list[dict[str, Any]]:
    """An incident's dispatches with their teams, steps, ETA and arrival time (报到)."""
    out = _visible_rows(conn, reader, incident_id, _LIST)
    for d in out:
        d["arrived_in_time"] = None if d["arrival_s"] is None else \
            d["arrival_s"] <= d["required_arrival_s"]
        d["next"] = allowed_steps(d["status"])
    return out


def list_whistles(conn: Connection, reader: Principal, incident_id: int) -> list[dict[str, Any]]:
    """The whistles blown on an incident with the departments they summoned."""
    return _visible_rows(conn, reader, incident_id, _WHISTLES)
