"""Teams over HTTP on a small world (tests/auth_world.py): the list and its scope, status
rules (busy belongs to dispatching, an active dispatch blocks available/off duty), admin
edits with capability validation, and GPS fixes — idempotent, all or nothing, impossible
speeds and future times rejected, GCJ-02 converted, old fixes never moving a team back,
stale positions flagged — with audit rows and change notifications."""

from __future__ import annotations

import json
import select
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from api.settings import Settings
from gis.crs import gcj02_to_wgs84
from gis.database import drop_database, make_engine
from gis.events import CHANNEL as NOTIFY_CHANNEL
from gis.teams import MAX_SPEED_MPS
from tests.auth_world import World, bearer, build_world

# Points inside the world's districts (squares 0.05° wide from these corners).
XICHENG_PT = (116.36, 39.89)
FENGTAI_PT = (116.30, 39.89)
OUTSIDE_PT = (116.10, 39.60)


@pytest.fixture(scope="module")
def world_template(new_database: Callable[[], str]) -> tuple[str, World, dict[str, int]]:
    """The auth world plus two free teams, built once; each test gets a copy. Teams:
    XC-CG-1 (holds the world's dispatch), XC-CG-2 and FT-CG-1 (free)."""
    url = new_database()
    engine = make_engine(url)
    world = build_world(engine)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO teams (code, name, department_id, home_code, status, capabilities)
            VALUES ('XC-CG-2', '西城城管二队', :xc, '110102', 'available',
                    '{urban_management}'),
                   ('FT-CG-1', '丰台城管一队', :ft, '110106', 'available',
                    '{urban_management,event:0101}')
        """), {"xc": world.department_id, "ft": world.other_department_id})
        rows = conn.execute(text("SELECT code, id FROM teams")).all()
    engine.dispose()  # a template must have no connections
    return url, world, {code: int(team_id) for code, team_id in rows}


@pytest.fixture
def world_url(world_template: tuple[str, World, dict[str, int]]) -> Iterator[str]:
    """A fresh copy of the world for one test."""
    template = make_url(world_template[0])
    url = template.set(database=f"gridops_teams_{uuid.uuid4().hex[:12]}")
    admin = make_engine(template.set(database="postgres").render_as_string(
        hide_password=False), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{url.database}" TEMPLATE "{template.database}"')
    admin.dispose()
    rendered = url.render_as_string(hide_password=False)
    yield rendered
    drop_database(rendered)


@pytest.fixture
def engine(world_url: str) -> Iterator[Engine]:
    eng = make_engine(world_url)
    yield eng
    eng.dispose()


@pytest.fixture
def world(world_template: tuple[str, World, dict[str, int]]) -> World:
    return world_template[1]


@pytest.fixture
def ids(world_template: tuple[str, World, dict[str, int]]) -> dict[str, int]:
    return world_template[2]


@pytest.fixture
def client(world_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(env="test", database_url=world_url, home=tmp_path / "home")
    with TestClient(create_app(settings), base_url="https://testserver") as c:
        yield c


def as_user(client: TestClient, username: str) -> TestClient:
    client.headers.update(bearer(client, username))
    return client


def ago(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat()


def fix(minutes_ago: float, lon: float = XICHENG_PT[0], lat: float = XICHENG_PT[1],
        **extra: Any) -> dict[str, Any]:
    return {"at": ago(minutes_ago), "lon": lon, "lat": lat, **extra}


def history(engine: Engine, team_id: int) -> list[tuple[datetime, float, float, str]]:
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT at, ST_X(geom), ST_Y(geom), district_code FROM team_positions "
            "WHERE team_id = :t ORDER BY at"), {"t": team_id}).all()
    return [(r[0], float(r[1]), float(r[2]), str(r[3])) for r in rows]


def team_row(engine: Engine, team_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT status, position_at, ST_X(position) AS lon, ST_Y(position) AS lat, "
            "capabilities FROM teams WHERE id = :t"), {"t": team_id}).one()


def audit_actions(engine: Engine, team_id: int) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text(
            "SELECT action FROM audit_log WHERE object_type = 'team' AND object_id = :t "
            "ORDER BY id"), {"t": str(team_id)}))


class Listener:
    """A LISTEN connection on the change channel."""

    def __init__(self, engine: Engine) -> None:
        self.raw = engine.raw_connection()
        self.raw.detach()
        self.raw.set_isolation_level(0)
        self.raw.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
        self.payloads: list[dict[str, Any]] = []

    def until(self, done: Callable[[list[dict[str, Any]]], bool],
              timeout: float = 5.0) -> list[dict[str, Any]]:
        """Collect notifications until `done(payloads)` (or the timeout)."""
        deadline = datetime.now(UTC) + timedelta(seconds=timeout)
        while not done(self.payloads):
            left = (deadline - datetime.now(UTC)).total_seconds()
            if left <= 0:
                break
            select.select([self.raw], [], [], left)
            self.raw.poll()
            notifies = self.raw.notifies
            self.payloads += [json.loads(n.payload) for n in notifies]
            notifies.clear()
        return self.payloads

    def close(self) -> None:
        self.raw.close()


# -- positions -------------------------------------------------------------------------


def test_fixes_are_stored_and_move_the_team_but_older_ones_never_move_it_back(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "op_xc")
    listener = Listener(engine)
    try:
        # out of order within the batch: the newest (5 min ago) is the position
        first = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
            fix(5, 116.3610, 39.8900), fix(10, 116.3600, 39.8900)]})
        assert first.status_code == 201, first.text
        body = first.json()
        assert (body["accepted"], body["duplicates"], body["stale"]) == (2, 0, False)
        assert body["position"]["coordinates"] == pytest.approx([116.361, 39.89])
        moved_at = team_row(engine, team).position_at
        # older than the current position: kept in the history, the team does not move back
        older = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
            fix(20, 116.3500, 39.8900), fix(15, 116.3550, 39.8900)]})
        assert older.status_code == 201, older.text
        assert older.json()["accepted"] == 2
        assert older.json()["position"]["coordinates"] == pytest.approx([116.361, 39.89])
        # newer again: moves
        newer = client.post(f"/api/v1/teams/{team}/positions",
                            json={"fixes": [fix(1, 116.3620, 39.8905)]})
        assert newer.json()["position"]["coordinates"] == pytest.approx([116.362, 39.8905])
        payloads = listener.until(
            lambda ps: sum(p["type"] == "team.position" for p in ps) >= 2)
    finally:
        listener.close()
    stored = history(engine, team)
    assert len(stored) == 5
    assert [round(lon, 4) for _, lon, _, _ in stored] == [116.35, 116.355, 116.36, 116.361,
                                                          116.362]
    assert {d for *_, d in stored} == {"110102"}
    row = team_row(engine, team)
    assert row.position_at > moved_at
    # one notification per batch that moved the team (2 of 3), naming its district
    moves = [p for p in payloads if p["type"] == "team.position" and p["team_id"] == team]
    assert len(moves) == 2 and "110102" in moves[0]["codes"]
    assert audit_actions(engine, team) == ["team.positions"] * 3


def test_resending_a_batch_counts_duplicates_and_stores_nothing_new(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "admin")
    batch = {"fixes": [fix(12), fix(11, 116.361), fix(10, 116.362)]}
    assert client.post(f"/api/v1/teams/{team}/positions", json=batch).status_code == 201
    again = client.post(f"/api/v1/teams/{team}/positions", json=batch)
    assert again.status_code == 200, again.text
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 3)
    # the same time with another position is a duplicate too: the first fix stands
    moved = dict(batch["fixes"][2], lon=116.3625)
    same_time = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [moved]})
    assert (same_time.json()["accepted"], same_time.json()["duplicates"]) == (0, 1)
    stored = history(engine, team)
    assert len(stored) == 3 and stored[-1][1] == pytest.approx(116.362)
    assert audit_actions(engine, team) == ["team.positions"]  # nothing new, nothing audited


def test_an_impossible_speed_rejects_the_whole_batch(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "op_xc")
    stored_at = ago(10)
    assert client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
        {"at": stored_at, "lon": 116.36, "lat": 39.89}]}).status_code == 201
    # within the batch: 0.04° (~3.4 km) in 30 s, after a plausible first fix
    t0 = datetime.now(UTC) - timedelta(minutes=8)
    batch = {"fixes": [
        {"at": t0.isoformat(), "lon": 116.362, "lat": 39.89},
        {"at": (t0 + timedelta(seconds=30)).isoformat(), "lon": 116.385, "lat": 39.915}]}
    response = client.post(f"/api/v1/teams/{team}/positions", json=batch)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert detail[0]["index"] == 1 and detail[0]["field"] == "fixes[1].at"
    assert "impossible speed" in detail[0]["reason"]
    assert f"at most {MAX_SPEED_MPS:g} m/s" in detail[0]["reason"]
    neighbour = t0.astimezone(datetime.fromisoformat("2026-01-01T00:00+08:00").tzinfo)
    assert neighbour.isoformat() in detail[0]["reason"]
    # against the stored history: 5 km within a minute of the stored fix
    jump = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
        {"at": (datetime.fromisoformat(stored_at) + timedelta(seconds=60)).isoformat(),
         "lon": 116.36, "lat": 39.935}]})
    assert jump.status_code == 422
    assert "impossible speed" in jump.json()["detail"][0]["reason"]
    assert len(history(engine, team)) == 1  # nothing from either batch
    # a plausible pace is fine: ~855 m in 60 s (14 m/s)
    ok = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
        {"at": (datetime.fromisoformat(stored_at) + timedelta(seconds=60)).isoformat(),
         "lon": 116.37, "lat": 39.89}]})
    assert ok.status_code == 201, ok.text


def test_every_bad_fix_is_listed_and_nothing_is_stored(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "op_xc")
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    response = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
        fix(3),
        {"at": future, "lon": 116.36, "lat": 39.89},
        {"at": ago(2), "lon": 39.89, "lat": 116.36},  # swapped
        fix(1, accuracy_m=-5),
        {"at": "yesterday", "lon": 116.36, "lat": 39.89},
        fix(0.5, crs="epsg3857"),
    ]})
    assert response.status_code == 422, response.text
    body = response.json()
    found = {(d["index"], d["field"].split(".")[-1]) for d in body["detail"]}
    assert found == {(1, "at"), (2, "lat"), (3, "accuracy_m"), (4, "at"), (5, "crs")}
    assert "in the future" in body["detail"][0]["reason"]
    assert body["message"].startswith("fixes[1].at")
    assert "swapped" in body["detail"][1]["reason"]
    assert history(engine, team) == []
    # a time a minute ahead is clock skew, not an error
    skewed = (datetime.now(UTC) + timedelta(seconds=60)).isoformat()
    ok = client.post(f"/api/v1/teams/{team}/positions",
                     json={"fixes": [{"at": skewed, "lon": 116.36, "lat": 39.89}]})
    assert ok.status_code == 201, ok.text
    # batch size and shape are checked too
    assert client.post(f"/api/v1/teams/{team}/positions",
                       json={"fixes": []}).status_code == 422
    assert client.post(f"/api/v1/teams/{team}/positions",
                       json={"fixes": [fix(1)] * 501}).status_code == 422


def test_a_gcj02_fix_is_converted_and_placed_in_its_district(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "disp_xc")
    lon, lat = 116.3600, 39.8900  # as Amap would report it
    expect_x, expect_y = gcj02_to_wgs84(np.array([lon]), np.array([lat]))
    response = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
        {"at": ago(3), "lon": lon, "lat": lat, "crs": "gcj02", "accuracy_m": 8,
         "speed_mps": 1.2},
        {"at": ago(2), "lon": FENGTAI_PT[0], "lat": FENGTAI_PT[1]},  # across the line
        {"at": ago(1), "lon": OUTSIDE_PT[0], "lat": OUTSIDE_PT[1]}]})
    # the last two are 5+ km apart within a minute: impossible
    assert response.status_code == 422
    response = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [
        {"at": ago(60), "lon": lon, "lat": lat, "crs": "gcj02", "accuracy_m": 8,
         "speed_mps": 1.2},
        {"at": ago(40), "lon": FENGTAI_PT[0], "lat": FENGTAI_PT[1]},
        {"at": ago(20), "lon": OUTSIDE_PT[0], "lat": OUTSIDE_PT[1]}]})
    assert response.status_code == 201, response.text
    stored = history(engine, team)
    assert stored[0][1] == pytest.approx(float(expect_x[0]), abs=1e-7)
    assert stored[0][2] == pytest.approx(float(expect_y[0]), abs=1e-7)
    assert abs(stored[0][1] - lon) > 0.003  # the offset is hundreds of metres
    # each fix in the district containing it, else the team's district
    assert [d for *_, d in stored] == ["110102", "110106", "110102"]
    page = client.get(f"/api/v1/teams/{team}/positions").json()
    assert page["features"][-1]["properties"]["accuracy_m"] == 8


def test_a_position_older_than_the_limit_is_stale(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "op_xc")
    got = client.get(f"/api/v1/teams/{team}").json()
    assert got["geometry"] is None and got["properties"]["stale"] is True  # never reported
    response = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [fix(40)]})
    assert response.json()["stale"] is True
    assert client.get(f"/api/v1/teams/{team}").json()["properties"]["stale"] is True
    stale_ids = {f["id"] for f in client.get("/api/v1/teams?fresh=false").json()["features"]}
    assert team in stale_ids
    response = client.post(f"/api/v1/teams/{team}/positions", json={"fixes": [fix(1)]})
    assert response.json()["stale"] is False
    fresh_ids = {f["id"] for f in client.get("/api/v1/teams?fresh=true").json()["features"]}
    assert fresh_ids == {team}


def test_position_history_is_newest_first_and_paged(
        client: TestClient, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    as_user(client, "op_xc")
    fixes = [fix(m, 116.36 + m * 1e-4) for m in (9, 7, 5, 3, 1)]
    assert client.post(f"/api/v1/teams/{team}/positions",
                       json={"fixes": fixes}).status_code == 201
    page = client.get(f"/api/v1/teams/{team}/positions?limit=2").json()
    ats = [f["properties"]["at"] for f in page["features"]]
    assert len(ats) == 2 and ats == sorted(ats, reverse=True)
    seen = list(ats)
    while (nxt := next((link["href"] for link in page["links"] if link["rel"] == "next"),
                       None)):
        page = client.get(nxt).json()
        seen += [f["properties"]["at"] for f in page["features"]]
    assert len(seen) == 5 and len(set(seen)) == 5
    since = client.get(f"/api/v1/teams/{team}/positions",
                       params={"since": ago(6)}).json()
    assert since["numberReturned"] == 3


# -- who may do what -------------------------------------------------------------------


def test_positions_only_for_teams_in_scope_or_the_own_department(
        client: TestClient, ids: dict[str, int]) -> None:
    xc, ft = ids["XC-CG-2"], ids["FT-CG-1"]
    batch = {"fixes": [fix(2)]}
    # out of scope answers like a missing team
    assert as_user(client, "op_dc").post(f"/api/v1/teams/{xc}/positions",
                                         json=batch).status_code == 404
    assert as_user(client, "disp_ft").post(f"/api/v1/teams/{xc}/positions",
                                           json=batch).status_code == 404
    assert client.post("/api/v1/teams/999999/positions", json=batch).status_code == 404
    assert as_user(client, "op_xc").post(f"/api/v1/teams/{xc}/positions",
                                         json=batch).status_code == 201
    assert as_user(client, "disp_ft").post(
        f"/api/v1/teams/{ft}/positions",
        json={"fixes": [fix(2, *FENGTAI_PT)]}).status_code == 201
    assert as_user(client, "op_city").post(
        f"/api/v1/teams/{ft}/positions",
        json={"fixes": [fix(1, *FENGTAI_PT)]}).status_code == 201
    # roles that may not send positions at all
    for who in ("viewer", "planner", "chief"):
        assert as_user(client, who).post(f"/api/v1/teams/{xc}/positions",
                                         json=batch).status_code == 403, who


def test_the_team_list_follows_the_readers_scope(
        client: TestClient, ids: dict[str, int], world: World) -> None:
    def visible(username: str) -> set[str]:
        response = as_user(client, username).get("/api/v1/teams")
        assert response.status_code == 200, response.text
        return {f["properties"]["code"] for f in response.json()["features"]}

    assert visible("admin") == {"XC-CG-1", "XC-CG-2", "FT-CG-1"}
    assert visible("op_city") == {"XC-CG-1", "XC-CG-2", "FT-CG-1"}
    assert visible("op_xc") == {"XC-CG-1", "XC-CG-2"}
    assert visible("viewer") == {"XC-CG-1", "XC-CG-2"}  # a 西城 viewer
    assert visible("op_dc") == set()
    assert visible("disp_ft") == {"FT-CG-1"}
    assert visible("planner") == {"XC-CG-1", "XC-CG-2", "FT-CG-1"}
    assert as_user(client, "chief").get("/api/v1/teams").status_code == 403
    assert client.get(f"/api/v1/teams/{ids['XC-CG-1']}").status_code == 403
    assert as_user(client, "op_dc").get(f"/api/v1/teams/{ids['XC-CG-1']}").status_code == 404
    assert as_user(client, "disp_xc").get(f"/api/v1/teams/{ids['FT-CG-1']}").status_code == 404
    assert as_user(client, "chief").get("/api/v1/departments").status_code == 403
    departments = as_user(client, "viewer").get("/api/v1/departments").json()
    assert {d["code"]: d["teams"] for d in departments} == {"XC-CG": 2, "FT-CG": 1}
    assert departments[0]["dept_type_name"] is None  # 'chengguan' is not a catalog type


def test_team_features_carry_department_dispatch_and_filters(
        client: TestClient, ids: dict[str, int], world: World) -> None:
    as_user(client, "admin")
    one = client.get(f"/api/v1/teams/{ids['XC-CG-1']}").json()
    props = one["properties"]
    assert props["department"]["code"] == "XC-CG"
    assert props["active_dispatch"]["incident_id"] == world.incidents["xicheng"]
    assert client.get(f"/api/v1/teams/{ids['XC-CG-2']}").json()["properties"][
        "active_dispatch"] is None

    def codes(query: str) -> list[str]:
        response = client.get(f"/api/v1/teams?{query}")
        assert response.status_code == 200, response.text
        return [f["properties"]["code"] for f in response.json()["features"]]

    assert codes("capability=event:0101") == ["FT-CG-1"]
    assert codes(f"department_id={world.other_department_id}") == ["FT-CG-1"]
    assert codes("district=110102&status=available") == ["XC-CG-2"]
    assert codes("status=off_duty") == ["XC-CG-1"]
    client.post(f"/api/v1/teams/{ids['FT-CG-1']}/positions",
                json={"fixes": [fix(1, *FENGTAI_PT)]})
    assert codes("bbox=116.28,39.87,116.33,39.92") == ["FT-CG-1"]
    first = client.get("/api/v1/teams?limit=2").json()
    assert first["numberReturned"] == 2
    nxt = next(link["href"] for link in first["links"] if link["rel"] == "next")
    assert client.get(nxt).json()["numberReturned"] == 1
    assert client.get("/api/v1/teams?district=1101").status_code == 422
    assert client.get("/api/v1/teams?status=sleeping").status_code == 422


def test_status_rules(client: TestClient, engine: Engine, ids: dict[str, int],
                      world: World) -> None:
    held, free = ids["XC-CG-1"], ids["XC-CG-2"]
    as_user(client, "op_xc")
    busy = client.post(f"/api/v1/teams/{free}/status", json={"status": "busy"})
    assert busy.status_code == 422
    assert "dispatching" in busy.json()["detail"][0]["msg"]
    # XC-CG-1 holds the world's dispatch: not available, not off duty
    with engine.connect() as conn:
        dispatch_id = conn.scalar(text("SELECT id FROM dispatches WHERE team_id = :t"),
                                  {"t": held})
    for status in ("available", "off_duty"):
        blocked = client.post(f"/api/v1/teams/{held}/status", json={"status": status})
        assert blocked.status_code == 409, blocked.text
        msg = blocked.json()["detail"][0]["msg"]
        assert f"dispatch {dispatch_id}" in msg
        assert f"incident {world.incidents['xicheng']}" in msg
    assert team_row(engine, held).status == "off_duty"  # unchanged
    # out of service is allowed (a breakdown), and once the dispatch ends, available too
    assert client.post(f"/api/v1/teams/{held}/status",
                       json={"status": "out_of_service"}).status_code == 200
    with engine.begin() as conn:
        conn.execute(text("UPDATE dispatches SET status = 'done', done_at = now() "
                          "WHERE id = :d"), {"d": dispatch_id})
    listener = Listener(engine)
    try:
        response = client.post(f"/api/v1/teams/{held}/status",
                               json={"status": "available", "reason": "修好了"})
        assert response.status_code == 200, response.text
        assert response.json()["properties"]["status"] == "available"
        payloads = listener.until(lambda ps: any(p["type"] == "team.status" for p in ps))
    finally:
        listener.close()
    note = next(p for p in payloads if p["type"] == "team.status")
    assert {k: note[k] for k in ("type", "team_id", "status", "codes")} == {
        "type": "team.status", "team_id": held, "status": "available", "codes": ["110102"]}
    assert note["layers"] == ["teams"] and note["department_ids"]
    # no change, no audit row
    assert client.post(f"/api/v1/teams/{held}/status",
                       json={"status": "available"}).status_code == 200
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT action, before, after, actor FROM audit_log WHERE object_type = 'team' "
            "AND object_id = :t ORDER BY id"), {"t": str(held)}).all()
    assert [(r.before["status"], r.after["status"]) for r in rows] == [
        ("off_duty", "out_of_service"), ("out_of_service", "available")]
    assert rows[1].after["reason"] == "修好了" and rows[1].actor == "op_xc"
    # scope and roles
    assert as_user(client, "op_dc").post(f"/api/v1/teams/{free}/status",
                                         json={"status": "off_duty"}).status_code == 404
    assert as_user(client, "viewer").post(f"/api/v1/teams/{free}/status",
                                          json={"status": "off_duty"}).status_code == 403
    assert as_user(client, "disp_xc").post(f"/api/v1/teams/{free}/status",
                                           json={"status": "off_duty"}).status_code == 200


def test_admin_edits_with_capability_validation(
        client: TestClient, engine: Engine, ids: dict[str, int]) -> None:
    team = ids["XC-CG-2"]
    url = f"/api/v1/teams/{team}"
    assert as_user(client, "op_xc").patch(url, json={"name": "x"}).status_code == 403
    as_user(client, "admin")
    bad = client.patch(url, json={"capabilities": ["urban_management", "teleportation",
                                                   "event:9999"]})
    assert bad.status_code == 422
    msg = bad.json()["detail"][0]["msg"]
    assert "'teleportation'" in msg and "'event:9999'" in msg
    assert bad.json()["detail"][0]["field"] == "capabilities"
    assert team_row(engine, team).capabilities == ["urban_management"]
    ok = client.patch(url, json={"capabilities": ["sanitation", "event:0101", "sanitation"],
                                 "shift_start": "08:00", "shift_end": "17:30",
                                 "name": "西城环卫队", "home_code": "110102020"})
    assert ok.status_code == 200, ok.text
    props = ok.json()["properties"]
    assert props["capabilities"] == ["sanitation", "event:0101"]
    assert props["home_code"] == "110102020" and props["shift_start"] == "08:00:00"
    assert props["name"] == "西城环卫队"
    for body, field in (({"home_code": "110109"}, "home_code"),
                        ({"shift_start": "25:00"}, "shift_start"),
                        ({"shift_start": None}, "shift_start"),
                        ({"name": "  "}, "name"),
                        ({}, "body")):
        response = client.patch(url, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["field"] == field, body
    assert client.patch(url, json={"status": "busy"}).status_code == 422
    assert client.patch("/api/v1/teams/999999", json={"name": "x"}).status_code == 404
    with engine.connect() as conn:
        after = conn.scalar(text(
            "SELECT after FROM audit_log WHERE action = 'team.update' AND object_id = :t"),
            {"t": str(team)})
    assert after["capabilities"] == ["sanitation", "event:0101"]
    assert after["home_code"] == "110102020"
