"""The live feed (issue 7): Server-Sent Events over a real uvicorn on the demo city — a new
incident on an open stream, per-user scope (东城 / 西城 / 丰台 operators, a joint case, a
department dispatcher), reconnection with Last-Event-ID delivering exactly what was
missed, two worker processes, the hub surviving a terminated LISTEN connection, a clean
server shutdown with open streams; the scope rule itself, /events/recent, and pruning."""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, text

from api.app import create_app
from api.live import Hub
from api.settings import Settings
from gis import events, users
from gis.audit import Actor
from gis.auth import Principal
from gis.democity.city import STRADDLER_NAME
from tests.auth_world import PASSWORD
from tests.live_server import serve

PROJECT = Path(__file__).resolve().parents[1]
WAIT_S = 15.0  # generous bound for "eventually" (failures only; success returns at once)
USERS = {  # name: (roles, scope, department code)
    "ev_admin": (["admin"], [], None),
    "ev_op_dc": (["operator"], ["110101"], None),
    "ev_op_xc": (["operator"], ["110102"], None),
    "ev_op_ft": (["operator"], ["110106"], None),
}


# -- an SSE client ------------------------------------------------------------------------


class Stream:
    """GET /api/v1/events, read on a thread; events and comments collected as they come."""

    def __init__(self, base: str, token: str, *, last_event_id: int | None = None,
                 query: str = "") -> None:
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port,
                                               timeout=60)
        headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        self.conn.request("GET", f"/api/v1/events{query}", headers=headers)
        self.response = self.conn.getresponse()
        assert self.response.status == 200, self.response.read()
        assert self.response.getheader("Content-Type", "").startswith("text/event-stream")
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.fields: list[tuple[str, str]] = []  # every non-data line (retry, comments)
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        frame: dict[str, str] = {}
        try:
            while True:
                raw = self.response.readline()
                if not raw:
                    break
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if "data" in frame:
                        event = json.loads(frame["data"])
                        assert str(event["id"]) == frame["id"]
                        assert event["type"] == frame["event"]
                        self.events.put(event)
                    frame = {}
                elif line.startswith(":"):
                    self.fields.append(("comment", line[1:].strip()))
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name in ("id", "event", "data"):
                        frame[name] = value
                    else:
                        self.fields.append((name, value))
        except (OSError, ValueError, AttributeError, http.client.HTTPException):
            pass  # the stream ended or was cut (http.client is not made for this)
        finally:
            self.ended.set()

    @property
    def worker_pid(self) -> int:
        """The serving process, from the stream's opening comment."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for kind, value in list(self.fields):
                if kind == "comment" and "(worker " in value:
                    return int(value.split("(worker ")[1].rstrip(")"))
            time.sleep(0.01)
        raise AssertionError("no opening comment on the stream")

    def until(self, done: Callable[[dict[str, Any]], bool],
              timeout: float = WAIT_S) -> list[dict[str, Any]]:
        """Events received up to and including the first for which `done` is true."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching event within {timeout} s; got {got}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            got.append(event)
            if done(event):
                return got

    def close(self) -> None:
        sock = self.conn.sock
        if sock is not None:  # the reader sees the end and stops; then close
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(5)
        self.conn.close()


@contextmanager
def streams(*opened: Stream) -> Iterator[tuple[Stream, ...]]:
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def created(incident_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda e: e["type"] == "incident.created" and e.get("incident_id") == incident_id


# -- the world ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def city_settings(city_url: str, city: Engine,
                  tmp_path_factory: pytest.TempPathFactory) -> Settings:
    with city.begin() as conn:
        for name, (roles, scope, department) in USERS.items():
            if not conn.scalar(text("SELECT 1 FROM users WHERE username = :u"), {"u": name}):
                users.add_user(conn, username=name, password=PASSWORD, roles=roles,
                               scope_codes=scope, department_code=department, by=Actor("test"))
    return Settings(env="test", database_url=city_url, home=tmp_path_factory.mktemp("home"),
                    public_rate_per_minute=100_000)


@pytest.fixture(scope="module")
def app(city_settings: Settings) -> FastAPI:
    return create_app(city_settings)


@pytest.fixture(scope="module")
def base(app: FastAPI) -> Iterator[str]:
    with serve(app) as url:
        assert app.state.hub.wait_connected(WAIT_S)
        yield url


_tokens: dict[tuple[str, str], str] = {}


def token_of(base: str, username: str) -> str:
    if (base, username) not in _tokens:
        response = httpx.post(f"{base}/api/v1/auth/token",
                              data={"username": username, "password": PASSWORD}, timeout=30)
        assert response.status_code == 200, response.text
        _tokens[(base, username)] = response.json()["access_token"]
    return _tokens[(base, username)]


def point_in(city: Engine, district: str) -> tuple[float, float]:
    with city.connect() as conn:
        row = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(g.geom) AS p FROM grids g "
            "WHERE g.valid_to IS NULL AND g.district_code = :d ORDER BY g.code LIMIT 1) x"),
            {"d": district}).one()
    return float(row[0]), float(row[1])


def straddler(city: Engine) -> tuple[float, float]:
    with city.connect() as conn:
        row = conn.execute(text(
            "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(geom) AS p FROM buildings "
            "WHERE name = :n) b"), {"n": STRADDLER_NAME}).one()
    return float(row[0]), float(row[1])


def post_incident(base: str, token: str, lon: float, lat: float,
                  source: str = "12345") -> dict[str, Any]:
    response = httpx.post(f"{base}/api/v1/incidents", timeout=30, json={
        "event_code": "0101", "description": "live feed test", "source": source,
        "lon": lon, "lat": lat}, headers={"Authorization": f"Bearer {token}",
                                          "Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text
    incident: dict[str, Any] = response.json()["incident"]
    return incident


# -- over HTTP ------------------------------------------------------------------------------


def test_a_new_incident_arrives_on_an_open_stream(base: str, app: FastAPI,
                                                  city: Engine) -> None:
    op = token_of(base, "ev_op_xc")
    hub: Hub = app.state.hub
    with streams(Stream(base, op)) as (stream,):
        assert len(hub._streams) == 1
        lon, lat = point_in(city, "110102")
        sent = time.monotonic()
        incident = post_incident(base, op, lon, lat)
        got = stream.until(created(incident["id"]), timeout=2.0)  # the bound
        assert time.monotonic() - sent < 2.0
    deadline = time.monotonic() + WAIT_S  # the server noticed the client leave
    while len(hub._streams):
        assert time.monotonic() < deadline, "the stream outlived its client"
        time.sleep(0.05)
    event = got[-1]
    assert event["id"] > 0 and "110102" in event["codes"]
    assert event["layers"] == ["incidents"]
    assert event["points"] == [[pytest.approx(lon, abs=1e-6), pytest.approx(lat, abs=1e-6)]]
    assert event["incident_status"] == "pending"
    assert ("retry", "3000") in stream.fields


def test_each_operator_sees_only_their_scope_and_joint_cases_reach_both_sides(
        base: str, city: Engine) -> None:
    admin = token_of(base, "ev_admin")
    names = ("ev_op_dc", "ev_op_xc", "ev_op_ft")
    with streams(*(Stream(base, token_of(base, n)) for n in names)) as (dc, xc, ft):
        xicheng = post_incident(base, admin, *point_in(city, "110102"))["id"]
        joint = post_incident(base, admin, *straddler(city))["id"]
        # a sentinel in each operator's own district closes what they may have received
        dc_end = post_incident(base, admin, *point_in(city, "110101"))["id"]
        ft_end = post_incident(base, admin, *point_in(city, "110106"))["id"]
        seen_dc = {e.get("incident_id") for e in dc.until(created(dc_end))}
        seen_ft = {e.get("incident_id") for e in ft.until(created(ft_end))}
        seen_xc = {e.get("incident_id") for e in xc.until(created(joint))}
    assert xicheng not in seen_dc and joint not in seen_dc
    assert joint in seen_ft and xicheng not in seen_ft
    assert {xicheng, joint} <= seen_xc
    assert dc_end not in seen_xc


def test_reconnecting_with_last_event_id_delivers_exactly_what_was_missed(
        base: str, city: Engine) -> None:
    op = token_of(base, "ev_op_xc")
    admin = token_of(base, "ev_admin")
    xc_point = point_in(city, "110102")
    with streams(Stream(base, op)) as (stream,):
        first = post_incident(base, op, *xc_point)["id"]
        last_seen = stream.until(created(first))[-1]["id"]
    missed = [post_incident(base, admin, *xc_point)["id"] for _ in range(3)]
    hidden = post_incident(base, admin, *point_in(city, "110101"))["id"]  # 东城: not for xc
    for kind, stream_args in (("header", {"last_event_id": last_seen}),
                              ("query", {"query": f"?last_event_id={last_seen}"})):
        with city.connect() as conn:  # what op_xc may see after last_seen, from the log
            reader = principal_of(conn, "ev_op_xc")
            expected = [e["id"] for e in events.replay(conn, last_seen, events.MAX_REPLAY)
                        if events.visible(reader, e)]
        with streams(Stream(base, op, **stream_args)) as (again,):
            last = expected[-1]
            replayed = again.until(lambda e: bool(e["id"] == last))  # noqa: B023
            after = post_incident(base, op, *xc_point)["id"]  # live, after the replay
            live = again.until(created(after))
        ids = [e["id"] for e in replayed]
        assert ids == expected, kind  # in order, no gap, no duplicate
        created_ids = [e["incident_id"] for e in replayed if e["type"] == "incident.created"]
        assert created_ids[:3] == missed and hidden not in created_ids, kind
        assert len({e["id"] for e in replayed + live}) == len(replayed + live), kind
        assert all(e["id"] > expected[-1] for e in live), kind


def test_a_dispatch_reaches_the_departments_dispatcher(base: str, city: Engine) -> None:
    with city.begin() as conn:
        department = conn.execute(text(
            "SELECT id, code FROM departments WHERE jurisdiction_code = '110102' "
            "ORDER BY id LIMIT 1")).one()
        lon, lat = point_in(city, "110102")
        team = int(conn.scalar(text("""
            INSERT INTO teams (code, name, department_id, home_code, status, capabilities,
                               position, position_at)
            VALUES (:code, '实时测试队', :d, '110102', 'available', '{chengguan}',
                    ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), now())
            RETURNING id"""), {"code": f"EV-{uuid.uuid4().hex[:8]}", "d": department.id,
                               "lon": lon + 0.001, "lat": lat}))
        name = f"ev_disp_{department.id}"
        if not conn.scalar(text("SELECT 1 FROM users WHERE username = :u"), {"u": name}):
            users.add_user(conn, username=name, password=PASSWORD, roles=["dispatcher"],
                           department_code=department.code, by=Actor("test"))
    admin = token_of(base, "ev_admin")
    with streams(Stream(base, token_of(base, name))) as (disp,):
        incident = post_incident(base, admin, lon, lat, source="grid_worker")["id"]
        response = httpx.post(f"{base}/api/v1/incidents/{incident}/dispatches", timeout=30,
                              json={"team_ids": [team], "override_reason": "live test"},
                              headers={"Authorization": f"Bearer {admin}"})
        assert response.status_code == 201, response.text
        got = disp.until(lambda e: e["type"] == "dispatch.created"
                         and e.get("incident_id") == incident)
    assert not any(e["type"] == "incident.created" and e.get("incident_id") == incident
                   for e in got)  # no task for the department yet when it was reported
    event = got[-1]
    assert department.id in event["department_ids"] and event["team_ids"] == [team]
    assert event["layers"] == ["incidents", "teams"] and len(event["points"]) == 2


def test_the_hub_survives_a_terminated_listen_connection(
        base: str, app: FastAPI, city: Engine) -> None:
    hub: Hub = app.state.hub
    op = token_of(base, "ev_op_xc")
    xc_point = point_in(city, "110102")
    with streams(Stream(base, op)) as (stream,):
        before = hub.connections
        with city.connect() as conn:
            assert conn.scalar(text("SELECT pg_terminate_backend(:pid)"),
                               {"pid": hub.backend_pid})
        during = post_incident(base, op, *xc_point)["id"]  # most likely in the gap
        deadline = time.monotonic() + WAIT_S
        while hub.connections == before or not hub.connected.is_set():
            assert time.monotonic() < deadline, "the hub did not reconnect"
            time.sleep(0.05)
        later = post_incident(base, op, *xc_point)["id"]
        got = stream.until(created(later))
    ids = [e.get("incident_id") for e in got if e["type"] == "incident.created"]
    assert ids.count(during) == 1 and ids.count(later) == 1
    assert hub.connections == before + 1


def test_recent_events_are_scoped(base: str, city: Engine) -> None:
    admin = token_of(base, "ev_admin")
    dongcheng = post_incident(base, admin, *point_in(city, "110101"))["id"]
    xicheng = post_incident(base, admin, *point_in(city, "110102"))["id"]

    def recent(user: str, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(f"{base}/api/v1/events/recent", params=params, timeout=30,
                             headers={"Authorization": f"Bearer {token_of(base, user)}"})
        assert response.status_code == 200, response.text
        body: list[dict[str, Any]] = response.json()
        return body

    everything = recent("ev_admin", limit=1000)
    ids = [e["id"] for e in everything]
    assert ids == sorted(ids)
    mine = {e.get("incident_id") for e in everything}
    assert {dongcheng, xicheng} <= mine
    xc = recent("ev_op_xc", limit=1000)
    assert xicheng in {e.get("incident_id") for e in xc}
    assert dongcheng not in {e.get("incident_id") for e in xc}
    after = next(e["id"] for e in everything if e.get("incident_id") == dongcheng)
    later = recent("ev_admin", after=after - 1, limit=2)
    assert [e.get("incident_id") for e in later] == [dongcheng, xicheng]


def test_the_feed_needs_a_signed_in_user_and_a_sane_last_event_id(base: str) -> None:
    assert httpx.get(f"{base}/api/v1/events", timeout=30).status_code == 401
    assert httpx.get(f"{base}/api/v1/events/recent", timeout=30).status_code == 401
    headers = {"Authorization": f"Bearer {token_of(base, 'ev_op_xc')}",
               "Last-Event-ID": "yesterday"}
    response = httpx.get(f"{base}/api/v1/events", headers=headers, timeout=30)
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "Last-Event-ID"
    response = httpx.get(f"{base}/api/v1/events/recent?limit=0", timeout=30,
                         headers={"Authorization": headers["Authorization"]})
    assert response.status_code == 422


def test_the_server_shuts_down_with_streams_open(city_settings: Settings) -> None:
    app = create_app(city_settings)
    with serve(app) as url:
        hub: Hub = app.state.hub
        opened = Stream(url, token_of(url, "ev_op_xc"))
    # the block ended: uvicorn ended the stream instead of waiting for it, then stopped
    # the hub in the lifespan shutdown
    assert opened.ended.wait(WAIT_S)
    assert hub._thread is not None and not hub._thread.is_alive()
    opened.close()


# -- two worker processes -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def gridops_serve(db_url: str, home: Path, workers: int) -> Iterator[str]:
    """`python -m api.cli serve --workers N` on `db_url`, in its own process group."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": db_url, "GRIDOPS_HOME": str(home),
           "GRIDOPS_SECRET_KEY": "live-feed-test-" + "k" * 40, "GRIDOPS_ENV": "test",
           "GRIDOPS_PUBLIC_RATE_PER_MINUTE": "100000"}
    log = (home / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--workers",
                             str(workers), "--port", str(port)], cwd=PROJECT, env=env,
                            stdout=log, stderr=log, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # every worker has started (each logs it), and the server answers
            try:
                started = (home / "serve.log").read_text().count("Application startup complete")
                if started >= workers and httpx.get(f"{base}/api/v1/health",
                                                    timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve did not start"
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)  # open streams must not hold the shutdown
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError("gridops serve did not stop on SIGTERM") from None
        finally:
            log.close()


def test_events_reach_streams_on_every_worker(city_url: str, city_settings: Settings,
                                              city: Engine, tmp_path: Path) -> None:
    opened: list[Stream] = []
    try:
        with gridops_serve(city_url, tmp_path, workers=2) as base:  # stops with streams open
            admin = token_of(base, "ev_admin")
            pids: set[int] = set()
            for _ in range(100):  # the kernel spreads connections over the workers
                stream = Stream(base, admin)
                if stream.worker_pid in pids:
                    stream.close()
                    time.sleep(0.02)
                    continue
                opened.append(stream)
                pids.add(stream.worker_pid)
                if len(pids) == 2:
                    break
            assert len(pids) == 2, "all streams landed on one worker"
            # a probe from the database itself: once every stream has it, every hub listens
            deadline = time.monotonic() + WAIT_S
            while True:
                with city.begin() as conn:
                    probe = events.emit(conn, "test.probe", [])
                try:
                    for s in opened:
                        s.until(lambda e: bool(e["id"] == probe), timeout=1.0)  # noqa: B023
                    break
                except AssertionError:
                    assert time.monotonic() < deadline, "a worker's hub does not listen"
            point = point_in(city, "110102")
            made = [post_incident(base, admin, *point)["id"] for _ in range(4)]
            for s in opened:
                got = s.until(created(made[-1]))
                assert [e["incident_id"] for e in got if e["type"] == "incident.created"
                        and e["incident_id"] in made] == made
        assert all(s.ended.wait(WAIT_S) for s in opened)  # the server ended them
    finally:
        for s in opened:
            s.close()


# -- the scope rule, pruning ----------------------------------------------------------------


def reader(roles: list[str], scope: tuple[str, ...] = (), *, department: int | None = None,
           person: int | None = None, user_id: int = 1) -> Principal:
    return Principal(user_id=user_id, username="u", display_name=None,
                     roles=frozenset(roles), scope_codes=scope, department_id=department,
                     person_id=person, session_id="s", session_kind="bearer",
                     expires_at=datetime.now(UTC) + timedelta(hours=1))


def principal_of(conn: Any, username: str) -> Principal:
    row = conn.execute(text("SELECT id, roles, scope_codes, department_id, person_id "
                            "FROM users WHERE username = :u"), {"u": username}).one()
    return reader(list(row.roles), tuple(row.scope_codes or ()), department=row.department_id,
                  person=row.person_id, user_id=row.id)


def test_visibility_mirrors_the_scope_rules() -> None:
    incident = {"id": 1, "type": "incident.created", "codes": ["110102", "110102020"],
                "department_ids": [7], "person_ids": [42], "user_ids": [5]}
    district_only = {"id": 2, "type": "incidents.imported", "codes": ["110102"]}
    team = {"id": 3, "type": "team.status", "codes": ["110102"], "home_code": "110102",
            "department_ids": [7]}
    boundary = {"id": 4, "type": "boundaries.changed", "codes": ["110101"]}
    assert events.visible(reader(["admin"]), incident)
    assert events.visible(reader(["viewer"]), incident)  # city-wide
    assert events.visible(reader(["operator"], ("110102",)), incident)
    assert not events.visible(reader(["operator"], ("110101",)), incident)
    street = reader(["planner"], ("110102020",))
    assert events.visible(street, incident)
    assert not events.visible(reader(["planner"], ("110102011",)), incident)
    assert not events.visible(street, district_only)  # a district-level event
    assert events.visible(street, team)  # a team based in the street's district
    assert events.visible(reader(["dispatcher"], department=7), incident)
    assert not events.visible(reader(["dispatcher"], department=8), incident)
    assert not events.visible(reader(["dispatcher"], department=8), team)
    assert events.visible(reader(["street_chief"], person=42), incident)
    assert events.visible(reader(["street_chief"], person=9, user_id=5), incident)
    assert not events.visible(reader(["street_chief"], ("110102",), person=9), incident)
    assert all(events.visible(reader([r], ("110106",), department=1, person=1), boundary)
               for r in ("operator", "dispatcher", "street_chief", "viewer"))
    assert events.visible(reader(["street_chief", "operator"], ("110102",), person=9),
                          incident)  # the union of roles


def test_old_events_are_pruned_in_bounded_batches(engine: Engine) -> None:
    with engine.begin() as conn:
        for age in (10, 9, 8, 1):
            event_id = events.emit(conn, "test.old", ["110102"], age=age)
            conn.execute(text("UPDATE live_events SET at = now() - make_interval(days => :d) "
                              "WHERE id = :id"), {"d": age, "id": event_id})
        assert events.prune(conn, timedelta(days=7), limit=2) == 2
        assert [e["age"] for e in events.replay(conn, 0, 10)] == [8, 1]
        assert events.prune(conn, timedelta(days=7)) == 1
        assert [e["age"] for e in events.replay(conn, 0, 10)] == [1]
        assert events.last_id(conn) == event_id


def test_a_big_event_is_read_back_from_the_table(db_url: str, engine: Engine) -> None:
    hub = Hub(db_url)
    got: list[dict[str, Any]] = []
    arrived = threading.Event()

    def collect(event: dict[str, Any]) -> None:
        got.append(event)
        arrived.set()

    unsubscribe = hub.subscribe(collect)
    hub.start()
    try:
        assert hub.wait_connected(WAIT_S)
        with engine.begin() as conn:  # > 8000 bytes: the notification is truncated
            big = events.emit(conn, "test.big", ["110102"], note="长" * 5000)
        assert arrived.wait(WAIT_S)
    finally:
        unsubscribe()
        hub.stop()
    assert got[0]["id"] == big and got[0]["note"] == "长" * 5000
    assert "truncated" not in got[0]
    assert hub._thread is not None and not hub._thread.is_alive()


def test_boundary_imports_and_zone_rebuilds_announce_what_changed(engine: Engine) -> None:
    from gis.importers import ImportOptions, import_file
    from gis.joint_zones import rebuild_joint_zones

    data = Path(__file__).parent / "data" / "xicheng_jurisdictions.geojson"
    import_file(engine, "jurisdictions", data, ImportOptions(dry_run=True))
    with engine.connect() as conn:
        assert events.replay(conn, 0, 100) == []  # a dry run announces nothing
    import_file(engine, "jurisdictions", data, ImportOptions())
    with engine.begin() as conn:
        rebuild_joint_zones(conn)
        got = events.replay(conn, 0, 100)
    changed = next(e for e in got if e["type"] == "boundaries.changed")
    assert changed["kind"] == "jurisdictions" and changed["loaded"] > 0
    assert "110102" in changed["codes"] and "districts" in changed["layers"]
    minx, miny, maxx, maxy = changed["bbox"]
    assert 115 < minx < maxx < 118 and 39 < miny < maxy < 41
    zones = [e for e in got if e["type"] == "joint_zones.changed"]
    assert len(zones) == 2  # the import's rebuild, then ours
    assert zones[-1]["layers"] == ["joint_zones"] and set(zones[-1]["counts"]) == {
        "district", "street"}


def test_the_hub_replays_what_was_committed_while_it_was_disconnected(
        db_url: str, engine: Engine) -> None:
    hub = Hub(db_url, backoff_min_s=2.0)  # a wide gap, so the emits below fall in it
    got: list[int] = []
    hub.subscribe(lambda e: got.append(int(e["id"])))
    hub.start()
    try:
        assert hub.wait_connected(WAIT_S)
        with engine.begin() as conn:
            before = events.emit(conn, "test.before", [])
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": hub.backend_pid})
        deadline = time.monotonic() + WAIT_S
        while hub.connected.is_set():  # it noticed
            assert time.monotonic() < deadline
            time.sleep(0.01)
        with engine.begin() as conn:
            gap = [events.emit(conn, "test.gap", [], n=n) for n in range(3)]
        assert hub.wait_connected(WAIT_S)
        with engine.begin() as conn:
            after = events.emit(conn, "test.after", [])
        deadline = time.monotonic() + WAIT_S
        while after not in got:
            assert time.monotonic() < deadline, got
            time.sleep(0.01)
    finally:
        hub.stop()
    assert got == [before, *gap, after]  # in order, each once
    assert hub.replayed == 3 and hub.connections == 2
