"""The 数字城管 case workflow on a real PostGIS: the full path 待受理 → 立案 → 派遣 → 处置中 →
处置反馈 → 核查 → 结案 with 返工, deadlines restarted on the real catalog's work calendar,
out-of-order actions (409 listing what is allowed), reasons, 退回 freeing the team, scope
and roles, 延期 across a holiday and a weekend, 督办, 挂账, the timeline, overdue and near
overdue, case events, audit rows and notifications."""

from __future__ import annotations

import json
import select
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import auth, catalog, workflow
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.events import CHANNEL as NOTIFY_CHANNEL
from tests.auth_world import GUANGWAI, XICHENG, World, bearer, build_world, session_for

BEIJING = ZoneInfo("Asia/Shanghai")
SYSTEM = Actor("system")
STAGES = ("accept", "dispatch", "handle", "verify")


@pytest.fixture
def world(engine: Engine) -> World:
    """auth_world's users and departments, with the real event catalog (and its calendar)."""
    made = build_world(engine)
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
    return made


@pytest.fixture
def client(settings: Settings, world: World) -> Iterator[TestClient]:
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        yield c


def principal(conn: Connection, username: str) -> Principal:
    found = auth.principal_for(conn, session_for(conn, username))
    assert found is not None
    return found


def new_case(conn: Connection, status: str = "pending", *, district: str = XICHENG,
             street: str | None = GUANGWAI) -> int:
    """A 暴露垃圾 (0101) case with its planned deadlines from now."""
    row = conn.execute(text("SELECT id, time_limits, now() AS now FROM event_classes "
                            "WHERE kind = 'event' AND code = '0101'")).one()
    deadlines = {stage: moment.isoformat() for stage, moment in catalog.stage_deadlines(
        catalog.current_calendar(conn), row.now, row.time_limits).items()}
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, description, geom, status,
                               district_code, street_code, deadlines)
        VALUES ('12345', :c, '路边有暴露垃圾', ST_SetSRID(ST_MakePoint(116.345, 39.875), 4326),
                :status, :district, :street, CAST(:deadlines AS jsonb))
        RETURNING id"""), {"c": row.id, "status": status, "district": district,
                           "street": street, "deadlines": json.dumps(deadlines)}))


def new_team(conn: Connection, world: World, code: str) -> int:
    return int(conn.scalar(text(
        "INSERT INTO teams (code, name, department_id, home_code, status, capabilities) "
        "VALUES (:code, :name, :d, '110102', 'available', '{urban_management}') RETURNING id"),
        {"code": code, "name": f"西城城管{code}", "d": world.department_id}))


def send_team(conn: Connection, incident_id: int, team_id: int) -> int:
    """What gis.dispatch does, directly: a dispatch row, the team busy, a step event."""
    dispatch_id = int(conn.scalar(text(
        "INSERT INTO dispatches (incident_id, team_id, district_code) "
        "VALUES (:i, :t, '110102') RETURNING id"), {"i": incident_id, "t": team_id}))
    conn.execute(text("UPDATE teams SET status = 'busy' WHERE id = :t"), {"t": team_id})
    conn.execute(text("INSERT INTO dispatch_events (dispatch_id, to_status) "
                      "VALUES (:d, 'dispatched')"), {"d": dispatch_id})
    return dispatch_id


def case(conn: Connection, incident_id: int) -> Any:
    return conn.execute(text("SELECT * FROM incidents WHERE id = :i"), {"i": incident_id}).one()


def events(conn: Connection, incident_id: int) -> list[tuple[str, str | None, str | None]]:
    return [tuple(r) for r in conn.execute(text(
        "SELECT action, from_status, to_status FROM case_events WHERE incident_id = :i "
        "ORDER BY id"), {"i": incident_id})]


def event_at(conn: Connection, incident_id: int, action: str) -> datetime:
    at: datetime = conn.scalar(text(
        "SELECT max(at) FROM case_events WHERE incident_id = :i AND action = :a"),
        {"i": incident_id, "a": action})
    return at


def planned(conn: Connection, start: datetime, stages: tuple[str, ...]) -> dict[str, datetime]:
    limits = conn.scalar(text("SELECT time_limits FROM event_classes WHERE code = '0101' "
                              "AND kind = 'event'"))
    return catalog.stage_deadlines(catalog.current_calendar(conn), start, limits, stages)


def deadlines_of(conn: Connection, incident_id: int) -> dict[str, datetime]:
    return {k: datetime.fromisoformat(v) for k, v in case(conn, incident_id).deadlines.items()}


def act(client: TestClient, user: str, incident_id: int, action: str,
        **body: Any) -> Any:
    return client.post(f"/api/v1/incidents/{incident_id}/transitions",
                       json={"action": action, **body}, headers=bearer(client, user))


# -- the full path ------------------------------------------------------------------------------


def test_the_full_workflow_with_rework(client: TestClient, engine: Engine,
                                       world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn)
        team_id = new_team(conn, world, "XC-CG-9")
        reported = deadlines_of(conn, incident_id)

    accepted = act(client, "op_xc", incident_id, "accept")
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    assert body["incident"]["properties"]["status"] == "registered"
    assert body["event"]["action"] == "accept"
    assert (body["event"]["from_status"], body["event"]["to_status"]) == ("pending",
                                                                          "registered")
    with engine.connect() as conn:
        # dispatch, handle and verify restart from the acceptance on the work calendar
        at = event_at(conn, incident_id, "accept")
        now = deadlines_of(conn, incident_id)
        assert now["accept"] == reported["accept"]
        assert {s: now[s] for s in STAGES[1:]} == planned(conn, at, STAGES[1:])

    with engine.begin() as conn:  # 派遣: the system moves the case with the first dispatch
        dispatch_id = send_team(conn, incident_id, team_id)
        workflow.transition(conn, incident_id, "dispatch", SYSTEM, None,
                            data={"team_ids": [team_id]})
    with engine.connect() as conn:
        at = event_at(conn, incident_id, "dispatch")
        assert {s: deadlines_of(conn, incident_id)[s] for s in ("handle", "verify")} == \
            planned(conn, at, ("handle", "verify"))

    for user, action, to in (("disp_xc", "start", "handling"),
                             ("disp_xc", "feedback", "feedback"),
                             ("op_xc", "verify", "verifying")):
        response = act(client, user, incident_id, action)
        assert response.status_code == 200, response.text
        assert response.json()["incident"]["properties"]["status"] == to

    allowed = client.get(f"/api/v1/incidents/{incident_id}/transitions",
                         headers=bearer(client, "op_xc")).json()
    assert {a["action"] for a in allowed["actions"]} == {"close", "rework", "ledger",
                                                         "supervise"}
    assert allowed["deadline"]["stage"] == "verify"

    rework = act(client, "op_xc", incident_id, "rework", reason="现场仍有垃圾")
    assert rework.status_code == 200, rework.text
    assert rework.json()["incident"]["properties"]["status"] == "handling"
    with engine.connect() as conn:  # 返工 restarts handle and verify from now
        at = event_at(conn, incident_id, "rework")
        assert {s: deadlines_of(conn, incident_id)[s] for s in ("handle", "verify")} == \
            planned(conn, at, ("handle", "verify"))

    for user, action in (("disp_xc", "feedback"), ("op_xc", "verify"), ("op_xc", "close")):
        response = act(client, user, incident_id, action)
        assert response.status_code == 200, response.text
    closed = response.json()["incident"]["properties"]
    assert closed["status"] == "closed" and closed["closed_at"] is not None

    with engine.connect() as conn:
        assert events(conn, incident_id) == [
            ("accept", "pending", "registered"), ("dispatch", "registered", "dispatched"),
            ("start", "dispatched", "handling"), ("feedback", "handling", "feedback"),
            ("verify", "feedback", "verifying"), ("rework", "verifying", "handling"),
            ("feedback", "handling", "feedback"), ("verify", "feedback", "verifying"),
            ("close", "verifying", "closed")]
        # closing ends the team's task as done and frees the team
        assert conn.scalar(text("SELECT status FROM dispatches WHERE id = :d"),
                           {"d": dispatch_id}) == "done"
        assert conn.scalar(text("SELECT status FROM teams WHERE id = :t"),
                           {"t": team_id}) == "available"
        audited: dict[str, int] = dict(conn.execute(text(
            "SELECT action, count(*) FROM audit_log WHERE object_type = 'incident' "
            "AND object_id = :i GROUP BY action"), {"i": str(incident_id)}).all())
        assert audited == {"incident.accept": 1, "incident.dispatch": 1, "incident.start": 1,
                           "incident.feedback": 2, "incident.verify": 2,
                           "incident.rework": 1, "incident.close": 1}
        reason = conn.scalar(text("SELECT reason FROM case_events WHERE incident_id = :i "
                                  "AND action = 'rework'"), {"i": incident_id})
        assert reason == "现场仍有垃圾"

    timeline = client.get(f"/api/v1/incidents/{incident_id}/events",
                          headers=bearer(client, "op_xc")).json()["events"]
    assert [e["at"] for e in timeline] == sorted(e["at"] for e in timeline)
    case_steps = [e for e in timeline if e["kind"] == "case"]
    assert case_steps[0]["actor"] == "op_xc" and case_steps[0]["action"] == "accept"
    team_steps = [e for e in timeline if e["kind"] == "dispatch"]
    assert [e["to_status"] for e in team_steps] == ["dispatched", "done"]
    assert {e["team_name"] for e in team_steps} == {"西城城管XC-CG-9"}


# -- refusals -----------------------------------------------------------------------------------


def test_an_action_out_of_order_is_409_listing_what_is_allowed(
        client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn, "registered")
    response = act(client, "op_xc", incident_id, "close")
    assert response.status_code == 409
    body = response.json()
    assert body["detail"][0]["field"] == "action"
    assert body["report"]["allowed"] == ["ledger", "supervise"]
    assert "allowed now: ledger, supervise" in body["detail"][0]["msg"]
    assert "/dispatches" in body["detail"][0]["msg"]  # how to dispatch instead
    with engine.connect() as conn:
        with pytest.raises(Conflict) as refused:
            workflow.transition(conn, incident_id, "start", SYSTEM, None)
        assert refused.value.detail["allowed"] == ["dispatch", "ledger", "supervise"]
        assert events(conn, incident_id) == []  # nothing half-applied


def test_bad_actions_and_missing_reasons_are_422_naming_the_field(
        client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        pending = new_case(conn)
        registered = new_case(conn, "registered")
    for incident_id, body, fld in (
            (pending, {"action": "reject"}, "reason"),
            (pending, {"action": "reject", "reason": "   "}, "reason"),
            (pending, {"action": "fly"}, "action"),
            (registered, {"action": "dispatch"}, "action"),
            (registered, {"action": "extend"}, "action"),
            (registered, {"action": "ledger"}, "reason")):
        response = act(client, "op_xc", incident_id, **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["field"] == fld, body
    said = act(client, "op_xc", registered, "dispatch").json()["detail"][0]["msg"]
    assert f"POST /api/v1/incidents/{registered}/dispatches" in said
    rejected = act(client, "op_xc", pending, "reject", reason="重复上报")
    assert rejected.status_code == 200
    assert rejected.json()["incident"]["properties"]["status"] == "void"


def test_scope_and_roles(client: TestClient, engine: Engine, world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn)
        dispatched = new_case(conn, "dispatched")
        send_team(conn, dispatched, new_team(conn, world, "XC-CG-8"))
    # out of scope answers 404, exactly like a missing incident
    assert act(client, "op_dc", incident_id, "accept").status_code == 404
    assert act(client, "op_xc", 999_999, "accept").status_code == 404
    assert client.get(f"/api/v1/incidents/{incident_id}/events",
                      headers=bearer(client, "op_ft")).status_code == 404
    assert act(client, "disp_ft", dispatched, "start").status_code == 404
    # roles: viewers may not act; dispatchers only with an active task, and not accept
    assert act(client, "viewer", incident_id, "accept").status_code == 403
    assert act(client, "disp_xc", dispatched, "verify").status_code == 403
    card = client.get(f"/api/v1/incidents/{dispatched}/transitions",
                      headers=bearer(client, "disp_xc")).json()
    assert [a["action"] for a in card["actions"]] == ["start", "return"]
    viewer_card = client.get(f"/api/v1/incidents/{incident_id}/transitions",
                             headers=bearer(client, "viewer")).json()
    assert viewer_card["actions"] == []
    with engine.connect() as conn:
        with pytest.raises(NotFound):
            workflow.transition(conn, incident_id, "accept", Actor("op_dc"),
                                principal(conn, "op_dc"))
        # a dispatcher whose department's task has ended may no longer act
        conn.execute(text("UPDATE dispatches SET status = 'done', done_at = now() "
                          "WHERE incident_id = :i"), {"i": dispatched})
        with pytest.raises(Forbidden):
            workflow.transition(conn, dispatched, "start", Actor("disp_xc"),
                                principal(conn, "disp_xc"))
    assert act(client, "op_city", incident_id, "accept").status_code == 200


def test_return_out_of_remit_cancels_the_dispatch_and_frees_the_team(
        client: TestClient, engine: Engine, world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn, "registered")
        team_id = new_team(conn, world, "XC-CG-7")
        dispatch_id = send_team(conn, incident_id, team_id)
        workflow.transition(conn, incident_id, "dispatch", SYSTEM, None)
    response = act(client, "disp_xc", incident_id, "return", reason="不属于城管职责",
                   out_of_remit=True)
    assert response.status_code == 200, response.text
    assert response.json()["incident"]["properties"]["status"] == "registered"
    assert response.json()["event"]["data"]["out_of_remit"] is True
    assert response.json()["event"]["data"]["ended_dispatches"] == [dispatch_id]
    with engine.connect() as conn:
        row = conn.execute(text("SELECT status, out_of_remit, cancelled_at, reason "
                                "FROM dispatches WHERE id = :d"), {"d": dispatch_id}).one()
        assert (row.status, row.out_of_remit, row.reason) == ("cancelled", True,
                                                              "不属于城管职责")
        assert row.cancelled_at is not None
        assert conn.scalar(text("SELECT status FROM teams WHERE id = :t"),
                           {"t": team_id}) == "available"
        data = conn.scalar(text("SELECT data FROM case_events WHERE incident_id = :i "
                                "AND action = 'return'"), {"i": incident_id})
        assert data["out_of_remit"] is True
        at = event_at(conn, incident_id, "return")  # re-dispatch gets fresh time
        assert {s: deadlines_of(conn, incident_id)[s] for s in STAGES[1:]} == \
            planned(conn, at, STAGES[1:])
    # the department's task has ended: it may no longer act on the case
    assert act(client, "disp_xc", incident_id, "return", reason="x").status_code == 403


def test_ledger_and_reopen(engine: Engine, world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn, "registered")
        team_id = new_team(conn, world, "XC-CG-6")
        dispatch_id = send_team(conn, incident_id, team_id)
        workflow.transition(conn, incident_id, "dispatch", SYSTEM, None)
        op = principal(conn, "op_xc")
        with pytest.raises(InvalidInput):
            workflow.transition(conn, incident_id, "ledger", Actor("op_xc"), op)
        workflow.transition(conn, incident_id, "ledger", Actor("op_xc"), op,
                            reason="需市级协调，限期内无法解决")
        assert case(conn, incident_id).status == "ledger"
        assert conn.scalar(text("SELECT status FROM dispatches WHERE id = :d"),
                           {"d": dispatch_id}) == "cancelled"
        workflow.transition(conn, incident_id, "reopen", Actor("op_xc"), op)
        assert case(conn, incident_id).status == "registered"
        assert case(conn, incident_id).closed_at is None


# -- 督办 and notifications ---------------------------------------------------------------------


def test_supervise(client: TestClient, engine: Engine) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn, "registered")
    url = f"/api/v1/incidents/{incident_id}/supervise"
    assert client.post(url, json={"reason": "群众反映强烈"},
                       headers=bearer(client, "disp_xc")).status_code == 403
    assert client.post(url, json={"reason": ""},
                       headers=bearer(client, "op_xc")).status_code == 422
    done = client.post(url, json={"reason": "群众反映强烈"}, headers=bearer(client, "op_xc"))
    assert done.status_code == 200, done.text
    assert done.json()["incident"]["properties"]["supervised"] is True
    with engine.connect() as conn:
        assert events(conn, incident_id) == [("supervise", "registered", "registered")]
        assert case(conn, incident_id).status == "registered"


def test_transitions_are_announced_on_commit(engine: Engine, world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn)
    raw = engine.raw_connection()
    raw.detach()
    try:
        raw.set_isolation_level(0)  # autocommit: LISTEN takes effect at once
        raw.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
        with engine.begin() as conn:
            workflow.transition(conn, incident_id, "accept", Actor("op_xc"),
                                principal(conn, "op_xc"))
        select.select([raw], [], [], 5)
        raw.poll()  # type: ignore[attr-defined]
        payloads = [json.loads(n.payload) for n in raw.notifies]  # type: ignore[attr-defined]
    finally:
        raw.close()
    mine = [p for p in payloads if p.get("incident_id") == incident_id]
    keys = ("type", "incident_id", "action", "from", "to", "codes")
    assert [{k: p[k] for k in keys} for p in mine] == [
        {"type": "incident.status", "incident_id": incident_id, "action": "accept",
         "from": "pending", "to": "registered", "codes": [XICHENG, GUANGWAI]}]
    assert mine[0]["layers"] == ["incidents"] and mine[0]["incident_status"] == "registered"


# -- 延期 ---------------------------------------------------------------------------------------


def set_deadlines(conn: Connection, incident_id: int, **stages: str) -> None:
    conn.execute(text("UPDATE incidents SET deadlines = deadlines || CAST(:d AS jsonb) "
                      "WHERE id = :i"), {"d": json.dumps(stages), "i": incident_id})


def test_an_extension_across_national_day_and_an_adjusted_working_day(
        client: TestClient, engine: Engine, world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn, "registered")
        send_team(conn, incident_id, new_team(conn, world, "XC-CG-5"))
        workflow.transition(conn, incident_id, "dispatch", SYSTEM, None)
        # due Wed 30 Sep 2026 16:30; 1–7 Oct is National Day, Sat 10 Oct a working day
        set_deadlines(conn, incident_id, handle="2026-09-30T16:30:00+08:00",
                      verify="2026-10-09T10:00:00+08:00")
    asked = client.post(f"/api/v1/incidents/{incident_id}/extensions",
                        json={"value": 1, "unit": "work_days", "reason": "需协调产权单位"},
                        headers=bearer(client, "disp_xc"))
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["id"]
    assert asked.json()["stage"] == "handle" and asked.json()["status"] == "pending"
    again = client.post(f"/api/v1/incidents/{incident_id}/extensions",
                        json={"value": 2, "unit": "work_hours", "reason": "再延"},
                        headers=bearer(client, "op_xc"))
    assert again.status_code == 409  # one pending request per case
    decision = f"/api/v1/extensions/{request_id}/decision"
    assert client.post(decision, json={"approve": True},
                       headers=bearer(client, "disp_xc")).status_code == 403
    assert client.post(decision, json={"approve": True},
                       headers=bearer(client, "op_dc")).status_code == 404
    approved = client.post(decision, json={"approve": True, "note": "同意"},
                           headers=bearer(client, "op_xc"))
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert client.post(decision, json={"approve": False},
                       headers=bearer(client, "op_xc")).status_code == 409
    with engine.connect() as conn:
        now = deadlines_of(conn, incident_id)
        # 16:30–17:30 on 30 Sep, then 8 Oct 09:00–12:00 and 13:30–16:30: 7 working hours
        assert now["handle"] == datetime(2026, 10, 8, 16, 30, tzinfo=BEIJING)
        # later stages move too: Fri 9 Oct 10:00–17:30 is 6 h, Sat 10 Oct (调休) 09:00–10:00
        assert now["verify"] == datetime(2026, 10, 10, 10, 0, tzinfo=BEIJING)
        row = conn.execute(text("SELECT old_deadline, new_deadline, decided_at "
                                "FROM extension_requests WHERE id = :r"),
                           {"r": request_id}).one()
        assert row.old_deadline == datetime(2026, 9, 30, 16, 30, tzinfo=BEIJING)
        assert row.new_deadline == datetime(2026, 10, 8, 16, 30, tzinfo=BEIJING)
        data = conn.scalar(text("SELECT data FROM case_events WHERE incident_id = :i "
                                "AND action = 'extend'"), {"i": incident_id})
        assert data["stage"] == "handle"
        assert datetime.fromisoformat(data["old"]) == row.old_deadline
        assert datetime.fromisoformat(data["new"]) == row.new_deadline
        assert conn.scalar(text("SELECT count(*) FROM audit_log WHERE object_type = "
                                "'extension_request' AND object_id = :r"),
                           {"r": str(request_id)}) == 2  # requested, approved


def test_an_extension_across_a_weekend_and_a_rejected_one(engine: Engine,
                                                           world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn, "registered")
        op = principal(conn, "op_xc")
        by = Actor("op_xc", user_id=op.user_id)
        set_deadlines(conn, incident_id, dispatch="2026-11-27T17:00:00+08:00",
                      handle="2026-11-27T17:30:00+08:00")  # Friday
        with pytest.raises(InvalidInput) as bad:
            workflow.request_extension(conn, incident_id, by, op, value=1, unit="weeks",
                                       reason="x")
        assert bad.value.field == "unit"
        with pytest.raises(InvalidInput) as over:
            workflow.request_extension(conn, incident_id, by, op, stage="accept", value=1,
                                       unit="work_hours", reason="x")
        assert over.value.field == "stage"
        first = workflow.request_extension(conn, incident_id, by, op, value=1,
                                           unit="work_hours", reason="先看看")
        workflow.decide_extension(conn, first["id"], by, op, approve=False, note="不同意")
        assert deadlines_of(conn, incident_id)["dispatch"] == datetime(
            2026, 11, 27, 17, tzinfo=BEIJING)
        assert "extend" not in [e[0] for e in events(conn, incident_id)]
        second = workflow.request_extension(conn, incident_id, by, op, value=2,
                                            unit="work_hours", reason="等待产权单位")
        decided = workflow.decide_extension(conn, second["id"], by, op, approve=True)
        assert decided["event"]["data"]["stage"] == "dispatch"
        now = deadlines_of(conn, incident_id)
        # Fri 17:00–17:30, then Monday 09:00–10:30
        assert now["dispatch"] == datetime(2026, 11, 30, 10, 30, tzinfo=BEIJING)
        assert now["handle"] == datetime(2026, 11, 30, 11, 0, tzinfo=BEIJING)


# -- overdue and near overdue -------------------------------------------------------------------


def test_overdue_and_near_overdue_agree_in_python_and_sql(engine: Engine,
                                                           world: World) -> None:
    with engine.begin() as conn:
        now = conn.scalar(text("SELECT now()"))
        ids = {}
        # 0101's handle limit is 4 working hours: near overdue under 48 minutes left
        for name, left in (("overdue", -60), ("near", 40 * 60), ("fine", 3 * 3600)):
            ids[name] = new_case(conn, "handling")
            set_deadlines(conn, ids[name],
                          handle=(now + timedelta(seconds=left)).isoformat())
        ids["void"] = new_case(conn, "void")
        day = catalog.current_calendar(conn).seconds_per_day
        sql = workflow.deadline_sql(day)
        found = {r.id: (r.stage, r.overdue, r.near) for r in conn.execute(text(
            f"SELECT i.id, {sql.stage} AS stage, {sql.overdue} AS overdue, "  # noqa: S608
            f"{sql.near_overdue} AS near FROM incidents i WHERE i.id = ANY(:ids)"),
            {"ids": list(ids.values())})}
        for name, incident_id in ids.items():
            state = workflow.incident_deadline(conn, incident_id, None, at=now)
            assert found[incident_id] == (state["stage"], state["overdue"],
                                          state["near_overdue"]), name
    assert found[ids["overdue"]] == ("handle", True, False)
    assert found[ids["near"]] == ("handle", False, True)
    assert found[ids["fine"]] == ("handle", False, False)
    assert found[ids["void"]] == (None, False, False)


def test_two_operators_accepting_at_once_make_one_transition(engine: Engine,
                                                              world: World) -> None:
    with engine.begin() as conn:
        incident_id = new_case(conn)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept() -> None:
        with engine.connect() as conn:
            op = principal(conn, "op_xc")
            barrier.wait(30)
            try:
                workflow.transition(conn, incident_id, "accept", Actor("op_xc"), op)
                conn.commit()
                outcomes.append("accepted")
            except Conflict:
                outcomes.append("conflict")

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["accepted", "conflict"]
    with engine.connect() as conn:
        assert events(conn, incident_id) == [("accept", "pending", "registered")]
