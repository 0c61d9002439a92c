"""Street-chief patrols (日巡) over HTTP on a small world in its own database:

  西城 110102 (广安门外街道 110102020, one community, one grid) west of x = 116.35 and
  丰台 110106 east of it; 广安门外大街, a straight west–east street of 1 000 m along
  lat 39.88 from x = 116.33, its chief 李四 and steward 王五; 三义东街 550 m north, its
  chief 赵六; the catalog's event classes; a user per role.

Coverage against a hand-computed value, cleaning (accuracy, a speed spike; raw points
kept, the track of the kept fixes with M = epoch seconds), a day's coverage over two
patrols, scope (another chief's street or patrol), idempotency of every step (also
concurrent starts), late fixes after the end, and bad input as 4xx naming the field.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import catalog, users
from gis.audit import Actor
from gis.database import make_engine
from gis.features import CHINA_TZ
from tests.auth_world import PASSWORD, token
from tests.live_server import serve

XICHENG, FENGTAI, GUANGWAI = "110102", "110106", "110102020"
LAT, LAT_B = 39.88, 39.885
# Degrees to metres at LAT on the CGCS2000/GRS80 ellipsoid, by hand: the parallel's radius
# N·cos φ and the meridian's radius M.
_A, _E2 = 6378137.0, 0.00669438002290
_S2 = math.sin(math.radians(LAT)) ** 2
M_PER_DEG_X = _A * math.cos(math.radians(LAT)) / math.sqrt(1 - _E2 * _S2) * math.pi / 180
M_PER_DEG_Y = _A * (1 - _E2) / (1 - _E2 * _S2) ** 1.5 * math.pi / 180
X0 = 116.33
X1 = round(X0 + 1000 / M_PER_DEG_X, 7)
LENGTH_M = (X1 - X0) * M_PER_DEG_X  # ≈ 1 000 m
RADIUS_M = 30.0


def _box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


@dataclass
class World:
    client: TestClient
    engine: Engine
    settings: Settings
    streets: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, who: str, key: str | None = None) -> dict[str, str]:
        if who not in self.tokens:
            self.tokens[who] = token(self.client, who)
        headers = {"Authorization": f"Bearer {self.tokens[who]}"}
        if key is not None:
            headers["Idempotency-Key"] = key
        return headers

    def now(self) -> datetime:
        with self.engine.connect() as conn:
            moment: datetime = conn.scalar(text("SELECT now()"))
            return moment


def _build(conn: Connection, world: World) -> None:
    catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
    west, east = (116.30, 39.86, 116.35, 39.90), (116.35, 39.86, 116.40, 39.90)
    for level, code, name, box in (("district", XICHENG, "西城区", west),
                                   ("district", FENGTAI, "丰台区", east),
                                   ("street", GUANGWAI, "广安门外街道", west),
                                   ("community", GUANGWAI + "001", "三义东里社区", west)):
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                          "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                     {"l": level, "c": code, "n": name, "g": _box(*box)})
    conn.execute(text("INSERT INTO grids (code, name, households, geom) "
                      "VALUES (:c, '三义东里1号网格', 400, ST_GeomFromText(:g, 4326))"),
                 {"c": GUANGWAI + "001001", "g": _box(*west)})
    for key, name, lat in (("a", "广安门外大街", LAT), ("b", "三义东街", LAT_B)):
        world.streets[key] = int(conn.scalar(text(
            "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
            "VALUES (:n, 'branch', :d, :s, ST_Multi(ST_MakeLine(ST_SetSRID(ST_MakePoint("
            ":x0, :y), 4326), ST_SetSRID(ST_MakePoint(:x1, :y), 4326)))) RETURNING id"),
            {"n": name, "d": XICHENG, "s": GUANGWAI, "x0": X0, "x1": X1, "y": lat}))
    for key, name, street, role in (("lisi", "李四", "a", "street_chief"),
                                    ("wangwu", "王五", "a", "steward"),
                                    ("zhaoliu", "赵六", "b", "street_chief")):
        world.people[key] = int(conn.scalar(text(
            "INSERT INTO people (name, phone, post, district_code) VALUES "
            "(:n, '13900000000', :r, :d) RETURNING id"), {"n": name, "r": role, "d": XICHENG}))
        conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, "
                          "valid_from) VALUES (:s, :p, :r, now() - interval '30 days')"),
                     {"s": world.streets[street], "p": world.people[key], "r": role})
    conn.execute(text("INSERT INTO departments (code, name, dept_type, tier, "
                      "jurisdiction_code) VALUES ('XC-CG', '西城区城管执法局', 'chengguan', "
                      "'core', :d)"), {"d": XICHENG})
    for username, roles, scope, extra in (
            ("chief1", ["street_chief"], [], {"person_id": world.people["lisi"]}),
            ("steward1", ["street_chief"], [], {"person_id": world.people["wangwu"]}),
            ("chief2", ["street_chief"], [], {"person_id": world.people["zhaoliu"]}),
            ("chief2_op", ["street_chief", "operator"], [XICHENG],
             {"person_id": world.people["zhaoliu"]}),
            ("admin", ["admin"], [], {}),
            ("op_xc", ["operator"], [XICHENG], {}),
            ("op_gw", ["operator"], [GUANGWAI], {}),
            ("op_ft", ["operator"], [FENGTAI], {}),
            ("planner_ft", ["planner"], [FENGTAI], {}),
            ("viewer", ["viewer"], [], {}),
            ("disp", ["dispatcher"], [], {"department_code": "XC-CG"})):
        users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                       scope_codes=scope, by=Actor("test"), **extra)


@pytest.fixture(scope="module")
def world(new_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    url = new_database()
    engine = make_engine(url)
    settings = Settings(env="test", database_url=url, home=tmp_path_factory.mktemp("home"))
    with TestClient(create_app(settings)) as client:
        built = World(client, engine, settings)
        with engine.begin() as conn:
            _build(conn, built)
        yield built
    engine.dispose()


@pytest.fixture(autouse=True)
def no_patrol_under_way(world: World) -> None:
    """Each test starts with nobody on patrol (one patrol under way per person)."""
    with world.engine.begin() as conn:
        conn.execute(text("UPDATE patrols SET status = 'ended', "
                          "ended_at = greatest(now(), started_at) WHERE status = 'active'"))


# -- helpers ---------------------------------------------------------------------------


def key() -> str:
    return str(uuid.uuid4())


def field_of(response: httpx.Response) -> str:
    return str(response.json()["detail"][0]["field"])


def msg_of(response: httpx.Response) -> str:
    return str(response.json()["detail"][0]["msg"])


def start(world: World, who: str, street: str, started_at: datetime | None = None,
          idem: str | None = None) -> httpx.Response:
    body: dict[str, Any] = {"street_id": world.streets[street]}
    if started_at is not None:
        body["started_at"] = started_at.isoformat()
    return world.client.post("/api/v1/patrols", json=body,
                             headers=world.auth(who, idem or key()))


def started(world: World, who: str, street: str, started_at: datetime) -> int:
    response = start(world, who, street, started_at)
    assert response.status_code == 201, response.text
    return int(response.json()["id"])


def walk(x_from: float, x_to: float, lat: float, t0: datetime, n: int, step_s: float,
         accuracy_m: float = 5.0) -> list[dict[str, Any]]:
    """n fixes evenly from x_from to x_to along `lat`, `step_s` apart from t0."""
    return [{"at": (t0 + timedelta(seconds=k * step_s)).isoformat(),
             "lon": x_from + (x_to - x_from) * k / max(n - 1, 1), "lat": lat,
             "accuracy_m": accuracy_m} for k in range(n)]


def send(world: World, who: str, patrol_id: int, fixes: list[dict[str, Any]]
         ) -> httpx.Response:
    return world.client.post(f"/api/v1/patrols/{patrol_id}/fixes", json={"fixes": fixes},
                             headers=world.auth(who))


def north(metres: float, lat: float = LAT) -> float:
    return lat + metres / M_PER_DEG_Y


def cap(offset_m: float) -> float:
    """How far past a track's end, along the street, its buffer reaches (offset_m off it)."""
    return math.sqrt(RADIUS_M ** 2 - offset_m ** 2)


# -- coverage and cleaning -------------------------------------------------------------


def test_coverage_matches_the_hand_computed_share(world: World) -> None:
    t0 = world.now() - timedelta(hours=1)
    patrol_id = started(world, "chief1", "a", t0)
    # from the street's west end to its midpoint, 10 m north of it, 1.4 m/s
    x_mid = (X0 + X1) / 2
    fixes = walk(X0, x_mid, north(10), t0, 73, 5.0)
    response = send(world, "chief1", patrol_id, fixes)
    assert response.status_code == 200, response.text
    result = response.json()
    expected = (LENGTH_M / 2 + cap(10)) / LENGTH_M  # ≈ 0.5283
    assert result["received"] == result["new"] == result["kept"] == 73
    assert result["dropped"] == 0 and result["track_points"] == 73
    assert result["coverage"] == pytest.approx(expected, rel=0.005)
    patrol = world.client.get(f"/api/v1/patrols/{patrol_id}", headers=world.auth("chief1"))
    assert patrol.status_code == 200
    props = patrol.json()["properties"]
    assert props["coverage"] == pytest.approx(expected, rel=0.005)
    assert props["street"]["length_m"] == pytest.approx(LENGTH_M, rel=0.001)
    assert props["distance_m"] == pytest.approx(LENGTH_M / 2, rel=0.002)
    assert patrol.json()["geometry"]["type"] == "LineString"
    assert len(patrol.json()["geometry"]["coordinates"]) == 73


def test_cleaning_drops_poor_accuracy_and_a_speed_spike(world: World) -> None:
    t0 = world.now() - timedelta(hours=1)
    patrol_id = started(world, "chief1", "a", t0)
    fixes = walk(X0, X0 + 200 / M_PER_DEG_X, LAT, t0, 21, 5.0)  # 10 m per 5 s
    fixes[6]["accuracy_m"] = 80.0
    fixes[12]["lat"] = north(500)  # 500 m away and back within 10 s
    response = send(world, "chief1", patrol_id, fixes)
    assert response.status_code == 200, response.text
    assert response.json() | {"coverage": None} == {
        "received": 21, "new": 21, "kept": 19, "dropped": 2, "coverage": None,
        "track_points": 19}
    points = world.client.get(f"/api/v1/patrols/{patrol_id}/points",
                              headers=world.auth("chief1")).json()
    assert len(points["features"]) == 21  # raw fixes are all kept
    verdicts = [(f["properties"]["kept"], f["properties"]["drop_reason"])
                for f in points["features"]]
    assert verdicts[6] == (False, "accuracy")
    assert verdicts[12] == (False, "speed")
    assert verdicts.count((True, None)) == 19  # the spike's neighbours stay
    assert points["features"][12]["geometry"]["coordinates"][1] == pytest.approx(north(500))
    with world.engine.connect() as conn:
        track = conn.execute(text("""
            SELECT ST_M(d.geom) AS m, ST_X(d.geom) AS x, ST_Y(d.geom) AS y
            FROM patrols p, ST_DumpPoints(p.track) d WHERE p.id = :id ORDER BY d.path
        """), {"id": patrol_id}).all()
        kind = conn.scalar(text("SELECT GeometryType(track) FROM patrols WHERE id = :id"),
                           {"id": patrol_id})
    assert kind == "LINESTRINGM"
    kept = [f for i, f in enumerate(fixes) if i not in (6, 12)]
    assert [round(r.m, 3) for r in track] == [
        round(datetime.fromisoformat(f["at"]).timestamp(), 3) for f in kept]
    assert max(r.y for r in track) == pytest.approx(LAT)
    props = world.client.get(f"/api/v1/patrols/{patrol_id}",
                             headers=world.auth("chief1")).json()["properties"]
    assert props["fixes"] == {"total": 21, "kept": 19,
                              "dropped": {"accuracy": 1, "speed": 1}}


def test_a_last_fix_too_fast_from_its_one_neighbour_waits_for_the_next(world: World) -> None:
    t0 = world.now() - timedelta(hours=1)
    patrol_id = started(world, "chief1", "a", t0)
    fixes = walk(X0, X0 + 40 / M_PER_DEG_X, LAT, t0, 5, 5.0)
    jump = {"at": (t0 + timedelta(seconds=25)).isoformat(), "lon": X0 + 40 / M_PER_DEG_X,
            "lat": north(300), "accuracy_m": 5.0}  # 300 m in 5 s: 60 m/s
    first = send(world, "chief1", patrol_id, [*fixes, jump]).json()
    assert (first["kept"], first["dropped"]) == (5, 1)
    # the next fix is near the jump: a real (if fast) move, so the jump is kept now
    then = {**jump, "at": (t0 + timedelta(seconds=30)).isoformat(), "lat": north(305)}
    second = send(world, "chief1", patrol_id, [then]).json()
    assert (second["new"], second["kept"], second["dropped"]) == (1, 7, 0)


def test_a_days_coverage_joins_the_days_patrols(world: World) -> None:
    now = world.now()
    local = now.astimezone(CHINA_TZ)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    base = max(now - timedelta(minutes=4), midnight + timedelta(seconds=1))
    length_deg = X1 - X0
    # first patrol: the west 30 % at 10 m/s; second: the east 40 %; 10 m north of the street
    first = started(world, "chief2", "b", base)
    assert send(world, "chief2", first, walk(X0, X0 + 0.3 * length_deg, north(10, LAT_B),
                                             base, 31, 1.0)).status_code == 200
    assert world.client.post(f"/api/v1/patrols/{first}/end",
                             headers=world.auth("chief2")).status_code == 200
    t1 = base + timedelta(seconds=31)
    second = started(world, "chief2", "b", t1)
    response = send(world, "chief2", second, walk(X0 + 0.6 * length_deg, X1,
                                                  north(10, LAT_B), t1, 41, 1.0))
    assert response.json()["coverage"] == pytest.approx(0.4 + cap(10) / LENGTH_M, rel=0.005)
    me = world.client.get("/api/v1/patrol/me", headers=world.auth("chief2"))
    assert me.status_code == 200, me.text
    day = me.json()
    assert day["date"] == local.date().isoformat()
    assert day["person"] == {"id": world.people["zhaoliu"], "name": "赵六",
                             "phone": "13900000000"}
    assert day["coverage_threshold"] == 0.8 and day["radius_m"] == 30
    assert day["fix_interval_s"] == 5 and day["upload_batch"] == 20
    assert day["active_patrol"]["id"] == second
    assert day["active_patrol"]["street_id"] == world.streets["b"]
    [street] = day["streets"]["features"]
    assert street["geometry"]["type"] == "MultiLineString"
    props = street["properties"]
    assert props["street_id"] == world.streets["b"] and props["role"] == "street_chief"
    assert props["today"]["patrolled"] is True
    assert props["today"]["patrol_ids"] == [first, second]
    assert props["today"]["coverage"] == pytest.approx(0.7 + 2 * cap(10) / LENGTH_M,
                                                       rel=0.005)
    # the steward of 广安门外大街 sees it, not yet patrolled by them today
    steward = world.client.get("/api/v1/patrol/me", headers=world.auth("steward1")).json()
    [mine] = steward["streets"]["features"]
    assert mine["properties"]["role"] == "steward"
    assert mine["properties"]["today"] == {"patrolled": False, "coverage": None,
                                           "patrol_ids": []}


# -- scope -----------------------------------------------------------------------------


def test_a_chief_patrols_only_their_own_streets_and_patrols(world: World) -> None:
    refused = start(world, "chief2", "a")
    assert refused.status_code == 403
    assert field_of(refused) == "street_id" and "广安门外大街" in msg_of(refused)
    t0 = world.now() - timedelta(minutes=30)
    patrol_id = started(world, "chief1", "a", t0)
    url = f"/api/v1/patrols/{patrol_id}"
    fixes = walk(X0, X0 + 0.0005, LAT, t0, 3, 5.0)
    for status, response in (
            (404, world.client.get(url, headers=world.auth("chief2"))),
            (404, world.client.get(f"{url}/points", headers=world.auth("chief2"))),
            (404, send(world, "chief2", patrol_id, fixes)),
            (404, world.client.post(f"{url}/end", headers=world.auth("chief2"))),
            (404, world.client.put(f"{url}/checks/no_road_damage", headers=world.auth(
                "chief2"), json={"ok": True, "checked_at": t0.isoformat()})),
            # visible (an operator of 西城 too) but not theirs
            (403, send(world, "chief2_op", patrol_id, fixes)),
            (403, world.client.post(f"{url}/end", headers=world.auth("chief2_op"))),
            (200, world.client.get(url, headers=world.auth("chief2_op"))),
            (200, world.client.get(url, headers=world.auth("admin"))),
            (200, world.client.get(url, headers=world.auth("op_xc"))),
            (200, world.client.get(url, headers=world.auth("op_gw"))),
            (200, world.client.get(url, headers=world.auth("viewer"))),
            (404, world.client.get(url, headers=world.auth("op_ft"))),
            (404, world.client.get(url, headers=world.auth("planner_ft"))),
            (404, world.client.get(url, headers=world.auth("disp"))),
            # only patrol users write
            (403, send(world, "admin", patrol_id, fixes)),
            (403, world.client.post("/api/v1/patrols", json={"street_id": 1},
                                    headers=world.auth("op_xc", key()))),
            (403, world.client.get("/api/v1/patrol/me", headers=world.auth("viewer"))),
            (401, world.client.get(url))):
        assert response.status_code == status, (status, response.request.url,
                                                 response.text)
    assert field_of(send(world, "admin", patrol_id, fixes)) == "role"
    assert send(world, "chief1", patrol_id, fixes).json()["new"] == 3
    listed = world.client.get("/api/v1/patrols", headers=world.auth("chief2")).json()
    assert patrol_id not in [f["id"] for f in listed["features"]]
    mine = world.client.get("/api/v1/patrols", params={"street_id": world.streets["a"]},
                            headers=world.auth("chief1")).json()
    assert mine["features"][0]["id"] == patrol_id  # newest first
    ft = world.client.get("/api/v1/patrols", headers=world.auth("op_ft")).json()
    assert ft["features"] == []
    unknown = world.client.post("/api/v1/patrols", json={"street_id": 999_999},
                                headers=world.auth("chief1", key()))
    assert unknown.status_code == 404 and field_of(unknown) == "street_id"


# -- idempotency -----------------------------------------------------------------------


def test_starting_twice_with_one_key_makes_one_patrol(world: World) -> None:
    idem = key()
    first = start(world, "chief1", "a", idem=idem)
    again = start(world, "chief1", "a", idem=idem)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    props = first.json()["properties"]
    assert props["status"] == "active" and props["idempotency_key"] == idem
    assert props["person"] == {"id": world.people["lisi"], "name": "李四"}
    assert first.json()["geometry"] is None
    other_street = start(world, "chief1", "b", idem=idem)
    assert other_street.status_code == 409 and field_of(other_street) == "Idempotency-Key"
    assert idem in msg_of(other_street)
    busy = start(world, "chief1", "a")
    assert busy.status_code == 409 and field_of(busy) == "street_id"
    assert str(first.json()["id"]) in msg_of(busy) and "广安门外大街" in msg_of(busy)
    with world.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM patrols WHERE idempotency_key = :k"),
                           {"k": idem}) == 1
        assert conn.scalar(text("SELECT count(*) FROM audit_log WHERE action = "
                                "'patrol.start' AND object_id = :id"),
                           {"id": str(first.json()["id"])}) == 1
        event = conn.execute(text("SELECT type, codes, payload FROM live_events "
                                  "WHERE payload ->> 'patrol_id' = :id"),
                             {"id": str(first.json()["id"])}).one()
    assert event.type == "patrol.started" and event.payload["layers"] == []
    assert event.payload["person_ids"] == [world.people["lisi"]]
    assert set(event.codes) == {XICHENG, GUANGWAI}


def test_concurrent_starts_make_one_patrol(world: World) -> None:
    idem = key()
    headers = world.auth("steward1", idem)
    body = {"street_id": world.streets["a"]}
    with serve(create_app(world.settings)) as url:

        def post(headers: dict[str, str]) -> httpx.Response:
            return httpx.post(f"{url}/api/v1/patrols", json=body, headers=headers, timeout=30)

        with ThreadPoolExecutor(8) as pool:
            same_key = list(pool.map(post, [headers] * 8))
        assert sorted(r.status_code for r in same_key) == [200] * 7 + [201]
        assert len({r.json()["id"] for r in same_key}) == 1
        world.client.post(f"/api/v1/patrols/{same_key[0].json()['id']}/end",
                          headers=world.auth("steward1"))
        with ThreadPoolExecutor(8) as pool:
            new_keys = list(pool.map(post, [world.auth("steward1", key()) for _ in range(8)]))
    assert sorted(r.status_code for r in new_keys) == [201] + [409] * 7
    assert {field_of(r) for r in new_keys if r.status_code == 409} == {"street_id"}


def test_fixes_checks_reports_and_the_end_are_idempotent(world: World) -> None:
    t0 = world.now() - timedelta(minutes=40)
    patrol_id = started(world, "chief1", "a", t0)
    url = f"/api/v1/patrols/{patrol_id}"
    fixes = walk(X0, X0 + 300 / M_PER_DEG_X, LAT, t0, 31, 10.0)
    fixes.append(dict(fixes[3], lon=X1))  # the same time again: the first fix stands
    first = send(world, "chief1", patrol_id, fixes).json()
    again = send(world, "chief1", patrol_id, fixes).json()
    assert first["received"] == 32 and first["new"] == 31 and first["dropped"] == 0
    assert again == {**first, "new": 0}
    # checks: the later checked_at wins, whatever order they arrive in
    check = f"{url}/checks/no_disorderly_parking"
    at = [t0 + timedelta(minutes=m) for m in (5, 6, 7)]
    put = world.client.put
    assert put(check, json={"ok": False, "note": "两辆车占道", "checked_at": at[1].isoformat()},
               headers=world.auth("chief1")).status_code == 200
    older = put(check, json={"ok": True, "checked_at": at[0].isoformat()},
                headers=world.auth("chief1"))
    assert older.status_code == 200 and older.json()["ok"] is False
    assert older.json()["note"] == "两辆车占道" and older.json()["zh"] == "无乱停车"
    same = put(check, json={"ok": False, "note": "两辆车占道", "checked_at": at[1].isoformat()},
               headers=world.auth("chief1"))
    assert same.json() == older.json()
    assert put(f"{url}/checks/has_public_sign", json={"ok": True, "checked_at":
               at[2].isoformat()}, headers=world.auth("chief1")).status_code == 200
    # a report: through intake, routed to the street, linked to the patrol
    report = {"event_code": "0101", "lon": X0 + 0.001, "lat": north(8),
              "description": "路边有暴露垃圾", "reported_at": at[2].isoformat()}
    idem = key()
    made = world.client.post(f"{url}/reports", json=report,
                             headers=world.auth("chief1", idem))
    retry = world.client.post(f"{url}/reports", json=report,
                              headers=world.auth("chief1", idem))
    assert (made.status_code, retry.status_code) == (201, 200), made.text
    incident = made.json()["incident"]
    assert retry.json()["incident"]["id"] == incident["id"]
    assert incident["properties"]["source"] == "street_chief"
    assert incident["properties"]["status"] == "registered"
    assert incident["properties"]["street_id"] == world.streets["a"]
    assert incident["properties"]["chief_person_id"] == world.people["lisi"]
    with world.engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM patrol_checks WHERE patrol_id = :p"),
                           {"p": patrol_id}) == 2
        assert conn.execute(text("SELECT patrol_id, source FROM incidents WHERE "
                                 "idempotency_key = :k"), {"k": idem}).all() == [
            (patrol_id, "street_chief")]
    # the end, twice
    ended = world.client.post(f"{url}/end", headers=world.auth("chief1"))
    twice = world.client.post(f"{url}/end", json={}, headers=world.auth("chief1"))
    assert (ended.status_code, twice.status_code) == (200, 200)
    assert ended.json() == twice.json()
    props = ended.json()["properties"]
    summary = props["summary"]
    assert props["status"] == "ended"
    assert summary["fixes"] == {"total": 31, "kept": 31, "dropped": 0}
    assert summary["checks"] == {"done": 2, "total": 20}
    assert summary["problems"] == [{"code": "no_disorderly_parking", "zh": "无乱停车",
                                    "en": "No disorderly parking", "note": "两辆车占道"}]
    assert summary["reports"] == 1
    assert summary["distance_m"] == pytest.approx(300, rel=0.003)
    assert summary["duration_s"] >= 300  # ended now, 40 min after the start
    assert [r["incident_id"] for r in props["reports"]] == [incident["id"]]
    assert [c["code"] for c in props["checks"]] == ["no_disorderly_parking",
                                                    "has_public_sign"]
    with world.engine.connect() as conn:
        actions = conn.scalars(text("SELECT action FROM audit_log WHERE object_type = "
                                    "'patrol' AND object_id = :id ORDER BY id"),
                               {"id": str(patrol_id)}).all()
    assert actions == ["patrol.start", "patrol.fixes", "patrol.check", "patrol.check",
                       "patrol.end"]


def test_a_stewards_report_has_source_steward(world: World) -> None:
    t0 = world.now() - timedelta(minutes=10)
    patrol_id = started(world, "steward1", "a", t0)
    made = world.client.post(f"/api/v1/patrols/{patrol_id}/reports", json={
        "event_code": "0101", "lon": X0 + 0.002, "lat": north(-5),
        "description": "垃圾桶满溢"}, headers=world.auth("steward1", key()))
    assert made.status_code == 201, made.text
    assert made.json()["incident"]["properties"]["source"] == "steward"


def test_late_fixes_after_the_end(world: World) -> None:
    t0 = world.now() - timedelta(minutes=20)
    patrol_id = started(world, "chief1", "a", t0)
    fixes = walk(X0, X0 + 100 / M_PER_DEG_X, LAT, t0, 11, 5.0)
    assert send(world, "chief1", patrol_id, fixes[:5]).json()["new"] == 5
    end_at = t0 + timedelta(seconds=60)
    ended = world.client.post(f"/api/v1/patrols/{patrol_id}/end",
                              json={"ended_at": end_at.isoformat()},
                              headers=world.auth("chief1"))
    assert ended.status_code == 200
    assert datetime.fromisoformat(ended.json()["properties"]["ended_at"]) == end_at
    assert ended.json()["properties"]["summary"]["fixes"]["total"] == 5
    late = send(world, "chief1", patrol_id, fixes[5:])  # up to t0 + 50 s: before the end
    assert late.status_code == 200 and late.json()["new"] == 6
    props = world.client.get(f"/api/v1/patrols/{patrol_id}",
                             headers=world.auth("chief1")).json()["properties"]
    assert props["summary"]["fixes"]["total"] == 11 and props["status"] == "ended"
    after = walk(X0, X0, LAT, end_at + timedelta(seconds=1), 1, 1.0)
    refused = send(world, "chief1", patrol_id, fixes[:2] + after)
    assert refused.status_code == 409 and field_of(refused) == "fixes[2].at"
    check = world.client.put(f"/api/v1/patrols/{patrol_id}/checks/no_road_damage",
                             json={"ok": True, "checked_at": (end_at + timedelta(
                                 seconds=5)).isoformat()}, headers=world.auth("chief1"))
    assert check.status_code == 409 and field_of(check) == "checked_at"
    report = world.client.post(f"/api/v1/patrols/{patrol_id}/reports", json={
        "event_code": "0101", "lon": X0, "lat": LAT, "description": "井盖缺失"},
        headers=world.auth("chief1", key()))
    assert report.status_code == 409 and field_of(report) == "reported_at"


# -- bad input -------------------------------------------------------------------------


def test_bad_input_is_a_4xx_naming_the_field(world: World) -> None:
    t0 = world.now() - timedelta(minutes=10)
    patrol_id = started(world, "chief1", "a", t0)
    url = f"/api/v1/patrols/{patrol_id}"
    good = walk(X0, X0 + 0.001, LAT, t0, 5, 5.0)

    def with_fix(i: int, **changes: Any) -> list[dict[str, Any]]:
        batch = [dict(f) for f in good]
        batch[i].update(changes)
        return batch

    future = (world.now() + timedelta(hours=1)).isoformat()
    cases: list[tuple[list[dict[str, Any]], str]] = [
        (with_fix(3, at="2026-11-20T10:00:00"), "fixes[3].at"),  # no offset
        (with_fix(1, at="yesterday"), "fixes[1].at"),
        (with_fix(2, at=future), "fixes[2].at"),
        (with_fix(0, at=(t0 - timedelta(minutes=6)).isoformat()), "fixes[0].at"),
        (with_fix(4, lon=200.0), "fixes[4].lon"),
        (with_fix(2, lon=LAT, lat=X0), "fixes[2].lat"),  # swapped
        (with_fix(1, accuracy_m=-3), "fixes[1].accuracy_m"),
        (with_fix(1, crs="epsg3857"), "fixes[1].crs"),
        (with_fix(1, speed=3), "fixes[1].speed"),
        ([], "fixes"),
        (walk(X0, X0 + 0.001, LAT, t0, 1001, 0.1), "fixes"),
    ]
    for batch, name in cases:
        response = send(world, "chief1", patrol_id, batch)
        assert response.status_code == 422, (name, response.text)
        assert field_of(response) == name, (name, response.text)
    nan = world.client.post(f"{url}/fixes", headers={
        **world.auth("chief1"), "Content-Type": "application/json"},
        content=json.dumps({"fixes": with_fix(2, lon=float("nan"))}))
    assert nan.status_code == 422 and field_of(nan) == "fixes[2].lon"
    assert send(world, "chief1", patrol_id, good).json()["new"] == 5  # nothing stored before
    checks = f"{url}/checks"
    at = {"ok": True, "checked_at": t0.isoformat()}
    for path, body, status, name in (
            ("no_such_item", at, 404, "item_code"),
            ("Bad-Code", at, 422, "item_code"),
            ("no_road_damage", {"ok": True, "checked_at": "2026-11-20T10:00:00"}, 422,
             "checked_at"),
            ("no_road_damage", {"ok": True}, 422, "checked_at"),
            ("no_road_damage", {**at, "note": "x" * 501}, 422, "note"),
            ("no_road_damage", {**at, "ok": "perhaps"}, 422, "ok")):
        response = world.client.put(f"{checks}/{path}", json=body,
                                    headers=world.auth("chief1"))
        assert response.status_code == status, (path, body, response.text)
        assert field_of(response) == name, (path, response.text)
    report = {"event_code": "0101", "lon": X0, "lat": LAT, "description": "路面破损"}
    for body, headers, status, name in (
            ({**report, "event_code": "9999"}, world.auth("chief1", key()), 422,
             "event_code"),
            ({**report, "lat": north(400)}, world.auth("chief1", key()), 422, "lon"),
            ({**report, "lon": 500}, world.auth("chief1", key()), 422, "lon"),
            ({**report, "description": ""}, world.auth("chief1", key()), 422,
             "description"),
            (report, world.auth("chief1"), 422, "Idempotency-Key"),
            (report, world.auth("chief1", "short"), 422, "Idempotency-Key")):
        response = world.client.post(f"{url}/reports", json=body, headers=headers)
        assert response.status_code == status, (body, response.text)
        assert field_of(response) == name, (body, response.text)
    starts: list[tuple[dict[str, Any], str]] = [
        ({"street_id": world.streets["a"], "started_at": future}, "started_at"),
        ({"street_id": world.streets["a"], "started_at": "2026-11-20T10:00:00"},
         "started_at"),
        ({"street_id": "a"}, "street_id"),
        ({"street_id": world.streets["a"], "extra": 1}, "extra")]
    for body, name in starts:
        response = world.client.post("/api/v1/patrols", json=body,
                                     headers=world.auth("chief1", key()))
        assert response.status_code == 422 and field_of(response) == name, response.text
    no_key = world.client.post("/api/v1/patrols", json={"street_id": world.streets["a"]},
                               headers=world.auth("chief1"))
    assert no_key.status_code == 422 and field_of(no_key) == "Idempotency-Key"
    early = world.client.post(f"{url}/end", json={"ended_at": (t0 - timedelta(
        minutes=1)).isoformat()}, headers=world.auth("chief1"))
    assert early.status_code == 422 and field_of(early) == "ended_at"
    for path, params, name in (("/api/v1/patrols/0", {}, "patrol_id"),
                               ("/api/v1/patrols", {"date": "20-11"}, "date"),
                               ("/api/v1/patrols", {"limit": 0}, "limit")):
        response = world.client.get(path, params=params, headers=world.auth("admin"))
        assert response.status_code == 422 and field_of(response) == name, response.text
    missing = world.client.get("/api/v1/patrols/999999", headers=world.auth("admin"))
    assert missing.status_code == 404 and field_of(missing) == "patrol_id"


# -- the checklist ---------------------------------------------------------------------


def test_the_checklist_is_read_by_all_and_replaced_by_admins(world: World) -> None:
    items = world.client.get("/api/v1/patrol/checklist", headers=world.auth("disp")).json()
    assert len(items) == 20
    assert items[0] == {"code": "no_illegal_building", "group": "十无", "zh": "无私搭乱建",
                        "en": "No illegal structures"}
    assert [i["group"] for i in items] == ["十无"] * 10 + ["十有"] * 10
    # a patrol ticks an item, so it can be deactivated but not deleted
    t0 = world.now() - timedelta(minutes=5)
    patrol_id = started(world, "chief1", "a", t0)
    assert world.client.put(f"/api/v1/patrols/{patrol_id}/checks/has_culture",
                            json={"ok": True, "checked_at": t0.isoformat()},
                            headers=world.auth("chief1")).status_code == 200
    full = world.client.get("/api/v1/patrol/checklist", headers=world.auth("admin")).json()
    new = [{**item, "active": True} for item in full
           if item["code"] not in ("has_culture", "has_greenery")]
    new.append({"code": "no_smoke", "group": "门前三包", "zh": "无油烟扰民",
                "en": "No cooking fumes", "active": True})
    refused = world.client.put("/api/v1/patrol/checklist", json=new,
                               headers=world.auth("op_xc"))
    assert refused.status_code == 403
    bad = world.client.put("/api/v1/patrol/checklist", json=[*new, {**new[0]}],
                           headers=world.auth("admin"))
    assert bad.status_code == 422 and field_of(bad) == f"[{len(new)}].code"
    bad_code = world.client.put("/api/v1/patrol/checklist",
                                json=[{**new[0], "code": "No Way"}],
                                headers=world.auth("admin"))
    assert bad_code.status_code == 422 and field_of(bad_code) == "[0].code"
    try:
        done = world.client.put("/api/v1/patrol/checklist", json=new,
                                headers=world.auth("admin"))
        assert done.status_code == 200, done.text
        codes = {i["code"]: i["active"] for i in done.json()}
        assert codes["has_culture"] is False and "has_greenery" not in codes
        assert codes["no_smoke"] is True and len(codes) == 20
        now_items = world.client.get("/api/v1/patrol/checklist",
                                     headers=world.auth("chief1")).json()
        assert [i["code"] for i in now_items][-1] == "no_smoke" and len(now_items) == 19
        retired = world.client.put(f"/api/v1/patrols/{patrol_id}/checks/has_culture",
                                   json={"ok": True, "checked_at": t0.isoformat()},
                                   headers=world.auth("chief1"))
        assert retired.status_code == 422 and field_of(retired) == "item_code"
        with world.engine.connect() as conn:
            assert conn.scalar(text("SELECT count(*) FROM audit_log "
                                    "WHERE action = 'patrol_checklist.replace'")) == 1
    finally:  # the other tests count 20 active items
        restored = world.client.put("/api/v1/patrol/checklist", json=full,
                                    headers=world.auth("admin"))
        assert restored.status_code == 200, restored.text
