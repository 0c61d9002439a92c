"""The dashboard (`GET /api/v1/dashboard`, gis/dashboard.py) on a hand-built world whose
answers are worked out below; scope per reader; roles; bad input as 422 naming the field.

The world, at NOW = 2025-03-10 15:00 Beijing (today = from 2025-03-10 00:00 Beijing):

  districts 东城 110101, 西城 110102; streets S1 110101001 东华门街道, S2 110101002 景山街道
  (东城), S3 110102001 西长安街街道 (西城).

  key  street  status      reported        current deadline   other
  a    S1      pending     today 09:00     accept 13:00 (past: overdue)
  b    S1      dispatched  today 10:00     handle 18:00 (ahead)  dispatch today 11:00
  c    S1      handling    03-08 10:00     handle 03-09 (past)   supervised; dispatch 03-08
  d    S2      closed      03-09 10:00     —                     closed today 08:00;
                                                                  follow-up 03-10 09:00:
                                                                  responded, resolved, satisfied
  e    S2      registered  03-01 10:00     dispatch 03-12        follow-up none
  f    S3      closed      02-20 10:00     —                     closed 02-21; follow-up
                                                                  03-05: responded, not
                                                                  resolved, basically satisfied
  g    S3      verifying   today 00:30     verify 03-11          joint (西城 and 东城 110101)
  h    S2      closed      01-05 10:00     —                     follow-up 01-06 (older than
                                                                  30 days: not in 三率)
  i    S2      void        today 08:00     —                     (not open)
  j    S2      registered  yesterday 23:59 —                     (not today; open, no deadline)

  Reported today: a, b, g, i = 4 (j is 1 minute before midnight). Closed today: d = 1.
  Dispatched today: b = 1. Open: a, b, c, e, g, j = 6; pending: a; overdue: a, c = 2;
  joint: g; supervised: c.
  三率 over 30 days: follow-ups d, f = 2: responded 2 (100 %), resolved 1 (50 %), satisfied 2
  (100 %: 满意 + 基本满意).
  Top streets by open cases: S1 (a, b, c: open 3, overdue 2, today 2), S2 (e, j: open 2,
  overdue 0, today 1: i, void but reported today), S3 (g: open 1, overdue 0, today 1).

  An operator scoped to 西城 sees f, g (g is a joint case naming 西城's street S3 — and 东城,
  so the 东城 operator sees g too): today reported 1 (g), open 1 (g), joint 1, follow-ups 1 (f).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import auth, dashboard, users
from gis.audit import Actor
from gis.auth import Principal
from gis.features import CHINA_TZ
from tests.auth_world import PASSWORD, session_for, token

S1, S2, S3 = "110101001", "110101002", "110102001"
NOW = datetime(2025, 3, 10, 15, 0, tzinfo=CHINA_TZ)


def _at(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=CHINA_TZ)


def _square(x: float, y: float, size: float) -> str:
    return (f"MULTIPOLYGON((({x} {y},{x + size} {y},{x + size} {y + size},{x} {y + size},"
            f"{x} {y})))")


def _incident(conn: Connection, *, street: str, status: str, reported: datetime,
              deadlines: dict[str, datetime] | None = None, closed: datetime | None = None,
              supervised: bool = False, joint: bool = False) -> int:
    dl = {k: v.isoformat() for k, v in (deadlines or {}).items()}
    joint_json = ('{"jurisdictions": [{"level": "district", "code": "110102", "share": 0.5},'
                  ' {"level": "district", "code": "110101", "share": 0.5}]}') if joint else None
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, description, geom, status,
                               district_code, street_code, reported_at, deadlines, closed_at,
                               supervised, is_joint, joint)
        VALUES ('12345', (SELECT min(id) FROM event_classes), 'test',
                ST_SetSRID(ST_MakePoint(116.40, 39.90), 4326), :status, left(:street, 6),
                :street, :reported, CAST(:deadlines AS jsonb), :closed, :supervised,
                :joint IS NOT NULL, CAST(:joint AS jsonb))
        RETURNING id"""), {"street": street, "status": status, "reported": reported,
                           "deadlines": json.dumps(dl), "closed": closed,
                           "supervised": supervised, "joint": joint_json}))


def _followup(conn: Connection, incident: int, at: datetime, responded: bool, resolved: bool,
              satisfaction: str) -> None:
    conn.execute(text("INSERT INTO incident_followups (incident_id, at, responded, resolved, "
                      "satisfaction) VALUES (:i, :at, :rp, :rs, :s)"),
                 {"i": incident, "at": at, "rp": responded, "rs": resolved, "s": satisfaction})


def _dispatch(conn: Connection, incident: int, team: int, at: datetime) -> None:
    conn.execute(text("INSERT INTO dispatches (incident_id, team_id, district_code, status, "
                      "dispatched_at, done_at) VALUES (:i, :t, '110101', 'done', :at, :at)"),
                 {"i": incident, "t": team, "at": at})


def _places(conn: Connection) -> None:
    for level, code, name, x in (("district", "110101", "东城区", 116.40),
                                 ("district", "110102", "西城区", 116.34),
                                 ("street", S1, "东华门街道", 116.40),
                                 ("street", S2, "景山街道", 116.42),
                                 ("street", S3, "西长安街街道", 116.34)):
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                          "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                     {"l": level, "c": code, "n": name, "g": _square(x, 39.88, 0.02)})
    conn.execute(text("INSERT INTO event_classes (kind, code, major_name, name) "
                      "VALUES ('event', '0101', '市容环境', '暴露垃圾')"))


def _team(conn: Connection) -> int:
    dept = conn.scalar(text("INSERT INTO departments (code, name, dept_type, tier, "
                            "jurisdiction_code) VALUES ('DC-CG', '东城区城管执法局', "
                            "'chengguan', 'core', '110101') RETURNING id"))
    return int(conn.scalar(text("INSERT INTO teams (code, name, department_id, home_code) "
                                "VALUES ('DC-CG-1', '东城城管一队', :d, '110101') RETURNING id"),
                           {"d": dept}))


def _cases(conn: Connection) -> dict[str, int]:
    inc = {
        "a": _incident(conn, street=S1, status="pending", reported=_at(10, 9),
                       deadlines={"accept": _at(10, 13)}),
        "b": _incident(conn, street=S1, status="dispatched", reported=_at(10, 10),
                       deadlines={"handle": _at(10, 18)}),
        "c": _incident(conn, street=S1, status="handling", reported=_at(8, 10),
                       deadlines={"handle": _at(9, 10)}, supervised=True),
        "d": _incident(conn, street=S2, status="closed", reported=_at(9, 10),
                       closed=_at(10, 8)),
        "e": _incident(conn, street=S2, status="registered", reported=_at(1, 10),
                       deadlines={"dispatch": _at(12, 10)}),
        "f": _incident(conn, street=S3, status="closed", reported=_at(20, 10, month=2),
                       closed=_at(21, 10, month=2)),
        "g": _incident(conn, street=S3, status="verifying", reported=_at(10, 0, 30),
                       deadlines={"verify": _at(11, 10)}, joint=True),
        "h": _incident(conn, street=S2, status="closed", reported=_at(5, 10, month=1),
                       closed=_at(5, 12, month=1)),
        "i": _incident(conn, street=S2, status="void", reported=_at(10, 8)),
        "j": _incident(conn, street=S2, status="registered", reported=_at(9, 23, 59)),
    }
    team = _team(conn)
    _dispatch(conn, inc["b"], team, _at(10, 11))
    _dispatch(conn, inc["c"], team, _at(8, 11))
    _followup(conn, inc["d"], _at(10, 9), True, True, "satisfied")
    _followup(conn, inc["f"], _at(5, 9), True, False, "basically_satisfied")
    _followup(conn, inc["h"], _at(6, 9, month=1), False, False, "dissatisfied")
    return inc


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    with engine.begin() as conn:
        _places(conn)
        inc = _cases(conn)
        by = Actor("test")
        for username, roles, scope in (("op_city", ["operator"], []),
                                       ("op_xc", ["operator"], ["110102"]),
                                       ("op_dc", ["operator"], ["110101"]),
                                       ("admin", ["admin"], []),
                                       ("viewer", ["viewer"], []),
                                       ("planner", ["planner"], []),
                                       ("disp", ["dispatcher"], [])):
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, by=by,
                           department_code="DC-CG" if username == "disp" else None)
        person = conn.scalar(text("INSERT INTO people (name, post, district_code) VALUES "
                                  "('李四', 'street_chief', '110101') RETURNING id"))
        users.add_user(conn, username="chief", password=PASSWORD, roles=["street_chief"],
                       person_id=person, by=by)
    return inc


def _principal(conn: Connection, username: str) -> Principal:
    found = auth.principal_for(conn, session_for(conn, username))
    assert found is not None
    return found


def _board(engine: Engine, username: str, **kw: Any) -> dict[str, Any]:
    with engine.begin() as conn:
        return dashboard.dashboard(conn, _principal(conn, username), now=NOW, **kw)


def test_city_wide_counts_rates_and_top_streets(engine: Engine, world: dict[str, int]) -> None:
    board = _board(engine, "op_city")
    assert board["day_start"] == datetime(2025, 3, 10, tzinfo=CHINA_TZ)
    assert board["today"] == {"reported": 4, "dispatched": 1, "closed": 1}
    assert board["open"] == {"open": 6, "pending": 1, "overdue": 2, "joint": 1,
                             "supervised": 1}
    assert board["rates"] == {"days": 30, "followups": 2, "responded": 2, "response_rate": 1.0,
                              "resolved": 1, "resolution_rate": 0.5, "satisfied": 2,
                              "satisfaction_rate": 1.0}
    assert board["top_streets"] == [
        {"code": S1, "name": "东华门街道", "open": 3, "overdue": 2, "today": 2},
        {"code": S2, "name": "景山街道", "open": 2, "overdue": 0, "today": 1},
        {"code": S3, "name": "西长安街街道", "open": 1, "overdue": 0, "today": 1},
    ]


def test_a_longer_window_counts_older_follow_ups(engine: Engine, world: dict[str, int]) -> None:
    rates = _board(engine, "op_city", days=90)["rates"]
    assert (rates["followups"], rates["responded"], rates["resolved"], rates["satisfied"]) \
        == (3, 2, 1, 2)
    assert rates["response_rate"] == pytest.approx(2 / 3)


def test_top_is_a_limit(engine: Engine, world: dict[str, int]) -> None:
    assert [s["code"] for s in _board(engine, "op_city", top=1)["top_streets"]] == [S1]


def test_a_scoped_operator_counts_only_their_cases(engine: Engine,
                                                   world: dict[str, int]) -> None:
    board = _board(engine, "op_xc")
    assert board["today"] == {"reported": 1, "dispatched": 0, "closed": 0}
    assert board["open"] == {"open": 1, "pending": 0, "overdue": 0, "joint": 1,
                             "supervised": 0}
    assert board["rates"]["followups"] == 1 and board["rates"]["resolution_rate"] == 0.0
    assert [s["code"] for s in board["top_streets"]] == [S3]


def test_no_follow_ups_give_null_rates(engine: Engine, world: dict[str, int]) -> None:
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM incident_followups"))
    rates = _board(engine, "op_city")["rates"]
    assert rates["followups"] == 0
    assert rates["response_rate"] is None and rates["satisfaction_rate"] is None


def test_today_starts_at_midnight_beijing_time() -> None:
    # 16:30 UTC on 9 March is 00:30 Beijing on 10 March: "today" is 10 March
    assert dashboard.day_start(datetime(2025, 3, 9, 16, 30, tzinfo=UTC)) == \
        datetime(2025, 3, 10, tzinfo=CHINA_TZ)
    assert dashboard.day_start(datetime(2025, 3, 9, 15, 30, tzinfo=UTC)) == \
        datetime(2025, 3, 9, tzinfo=CHINA_TZ)


@pytest.fixture
def client(settings: Settings, world: dict[str, int]) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _get(client: TestClient, username: str, **params: Any) -> Any:
    return client.get("/api/v1/dashboard", params=params,
                      headers={"Authorization": f"Bearer {token(client, username)}"})


@pytest.mark.parametrize("username", ["admin", "op_city", "viewer", "planner"])
def test_readers_get_the_dashboard(client: TestClient, username: str) -> None:
    response = _get(client, username)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"as_of", "day_start", "today", "open", "rates", "top_streets"}
    assert body["open"]["open"] == 6  # now, not NOW: the open backlog does not depend on it


@pytest.mark.parametrize("username", ["chief", "disp"])
def test_other_roles_are_refused(client: TestClient, username: str) -> None:
    assert _get(client, username).status_code == 403


def test_anonymous_is_refused(client: TestClient) -> None:
    assert client.get("/api/v1/dashboard").status_code == 401


@pytest.mark.parametrize(("param", "value"), [("days", 0), ("days", 367), ("top", 0),
                                              ("top", 51), ("days", "x")])
def test_bad_input_names_the_field(client: TestClient, param: str, value: object) -> None:
    response = _get(client, "op_city", **{param: value})
    assert response.status_code == 422
    assert param in response.text
