"""The patrol evaluation (日巡 compliance, 周查, 月评) on crafted worlds in 广安门外街道
(110102020): three east–west streets on lat 39.88 whose patrols, tracks and incidents are
written here in SQL, so every number is computed by hand below.

Streets (lon): S1 116.300–116.310 (~854 m), S2 116.320–116.325 (~427 m), S3 116.330–116.345
(~1281 m). Tracks are straight lines on the street: a full walk covers it all; a half walk
from the west end to the middle covers half the street plus the 30 m buffer beyond the end.
The work calendar is the catalog's (data/catalog/events.json): 国庆节 2026-10-01..07 off,
2026-10-10 (Saturday) an adjusted working day (调休)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import catalog, patrol_eval, users
from gis.audit import Actor
from gis.auth import Principal
from tests.auth_world import PASSWORD, bearer

BJ = ZoneInfo("Asia/Shanghai")
XICHENG, FENGTAI, GUANGWAI = "110102", "110106", "110102020"
LAT = 39.88
STREETS = {"S1": (116.300, 116.310), "S2": (116.320, 116.325), "S3": (116.330, 116.345)}
OCTOBER_WORKING_DAYS = [date(2026, 10, d) for d in (8, 9, 10, 12, 13, 14, 15, 16, 19, 20, 21,
                                                    22, 23, 26, 27, 28, 29, 30)]


@dataclass
class World:
    streets: dict[str, int] = field(default_factory=dict)
    people: dict[str, int] = field(default_factory=dict)
    length: dict[str, float] = field(default_factory=dict)


def _square(x: float, y: float, size: float = 0.1) -> str:
    return (f"MULTIPOLYGON((({x} {y},{x + size} {y},{x + size} {y + size},{x} {y + size},"
            f"{x} {y})))")


def _base(conn: Connection, world: World) -> None:
    """Jurisdictions (for user scopes), the catalog (classes and calendar), the streets."""
    catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
    for level, code, name, x in (("district", XICHENG, "西城区", 116.25),
                                 ("district", FENGTAI, "丰台区", 116.40),
                                 ("street", GUANGWAI, "广安门外街道", 116.25)):
        conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                          "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                     {"l": level, "c": code, "n": name, "g": _square(x, 39.80)})
    for key, (x0, x1) in STREETS.items():
        world.streets[key] = int(conn.scalar(text(
            "INSERT INTO streets (name, road_class, district_code, street_office_code, geom) "
            "VALUES (:n, 'branch', :d, :s, ST_Multi(ST_MakeLine(ST_MakePoint(:x0, :y), "
            "ST_MakePoint(:x1, :y)))::geometry(MultiLineString, 4326)) RETURNING id"),
            {"n": f"街巷{key}", "d": XICHENG, "s": GUANGWAI, "x0": x0, "x1": x1, "y": LAT}))
        world.length[key] = float(conn.scalar(text(
            "SELECT ST_Length(ST_Transform(geom, 4548)) FROM streets WHERE id = :i"),
            {"i": world.streets[key]}))


def _person(conn: Connection, world: World, key: str, name: str,
            assignments: list[tuple[str, str]]) -> int:
    pid = int(conn.scalar(text("INSERT INTO people (name, district_code) VALUES (:n, :d) "
                               "RETURNING id"), {"n": name, "d": XICHENG}))
    for street, role in assignments:
        conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, valid_from) "
                          "VALUES (:s, :p, :r, '2026-01-01T00:00:00+08:00')"),
                     {"s": world.streets[street], "p": pid, "r": role})
    world.people[key] = pid
    return pid


def _patrols(conn: Connection, person: int, street: int, days: list[date], x0: float,
             x1: float, hour: int = 9) -> None:
    """One ended patrol per day, its track straight from x0 to x1 on the street's line,
    walked in 20 minutes from `hour` o'clock (Beijing)."""
    conn.execute(text("""
        INSERT INTO patrols (person_id, street_id, started_at, ended_at, status, district_code,
                             track)
        SELECT :p, :s, t0, t0 + interval '20 minutes', 'ended', '110102',
               ST_SetSRID(ST_MakeLine(ST_MakePointM(:x0, :y, extract(epoch FROM t0)),
                                      ST_MakePointM(:x1, :y, extract(epoch FROM t0) + 1200)),
                          4326)
        FROM (SELECT (d::timestamp + make_interval(hours => :h)) AT TIME ZONE 'Asia/Shanghai'
                     AS t0 FROM unnest(CAST(:days AS date[])) AS d) x
    """), {"p": person, "s": street, "days": days, "x0": x0, "x1": x1, "y": LAT, "h": hour})


def _incident(conn: Connection, street: int, code: str, at: datetime, *,
              created_by: int | None = None, source: str = "citizen") -> None:
    conn.execute(text("""
        INSERT INTO incidents (source, event_class_id, description, reported_at, geom,
                               district_code, street_code, street_id, created_by)
        VALUES (:src, (SELECT id FROM event_classes WHERE kind = 'event' AND code = :c), 'x',
                :at, ST_SetSRID(ST_MakePoint(116.305, 39.88), 4326), '110102', :so, :s, :u)
    """), {"src": source, "c": code, "at": at, "so": GUANGWAI, "s": street, "u": created_by})


def _user(conn: Connection, username: str, roles: list[str], scope: list[str] | None = None,
          person: int | None = None, department: str | None = None) -> int:
    made = users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                          scope_codes=scope or [], person_id=person,
                          department_code=department, by=Actor("test"))
    return int(made["id"])


def _department(conn: Connection) -> None:
    conn.execute(text("INSERT INTO departments (code, name, dept_type, tier, jurisdiction_code) "
                      "VALUES ('XC-CG', '西城区城管执法局', 'urban_management', 'core', '110102')"))


@pytest.fixture
def month_world(engine: Engine) -> World:
    """October 2026: 张三 (street chief of S1 and S2) walks S1 fully every working day and
    never S2; 李四 (street chief of S3) walks S3 fully on all but the last three working
    days; 王五 (steward of S1) walks half of S1 every working day. Incidents (window and
    period): S1 two reported by 张三 and one by a citizen in October (classes 0101, 0102,
    0501) and one in September (0502); S2 two in September (0101, 0103); S3 one citizen in
    October (0101)."""
    world = World()
    with engine.begin() as conn:
        _base(conn, world)
        zhang = _person(conn, world, "zhang", "张三", [("S1", "street_chief"),
                                                     ("S2", "street_chief")])
        li = _person(conn, world, "li", "李四", [("S3", "street_chief")])
        wang = _person(conn, world, "wang", "王五", [("S1", "steward")])
        _department(conn)
        zhang_user = _user(conn, "chief_zhang", ["street_chief"], [GUANGWAI], zhang)
        _user(conn, "chief_li", ["street_chief"], [GUANGWAI], li)
        _user(conn, "admin", ["admin"])
        _user(conn, "viewer", ["viewer"])
        _user(conn, "planner", ["planner"])
        _user(conn, "op_xc", ["operator"], [XICHENG])
        _user(conn, "op_ft", ["operator"], [FENGTAI])
        _user(conn, "disp", ["dispatcher"], [], department="XC-CG")
        s1, s2, s3 = (world.streets[k] for k in ("S1", "S2", "S3"))
        days = OCTOBER_WORKING_DAYS
        _patrols(conn, zhang, s1, days, *STREETS["S1"])
        _patrols(conn, li, s3, days[:-3], *STREETS["S3"])
        _patrols(conn, wang, s1, days, 116.300, 116.305, hour=14)
        oct_ = datetime(2026, 10, 15, 10, tzinfo=BJ)
        sep_ = datetime(2026, 9, 15, 10, tzinfo=BJ)
        _incident(conn, s1, "0101", oct_, created_by=zhang_user, source="street_chief")
        _incident(conn, s1, "0102", oct_, created_by=zhang_user, source="street_chief")
        _incident(conn, s1, "0501", oct_)
        _incident(conn, s1, "0502", sep_)
        _incident(conn, s2, "0101", sep_)
        _incident(conn, s2, "0103", sep_)
        _incident(conn, s3, "0101", oct_)
    return world


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def _majors() -> int:
    classes = catalog.load_catalog().classes
    return len(classes[["kind", "major_code"]].drop_duplicates())


def _expected_difficulty(world: World, weights: tuple[float, float, float] = (0.2, 0.2, 0.1),
                         bounds: tuple[float, float] = (0.8, 1.5)) -> dict[str, float]:
    """d_s by hand: lengths as PostGIS measures them (EPSG:4548); incident counts and class
    mixes of the fixture over the 90 days before 2026-11-01."""
    a, b, c = weights
    length = world.length
    counts = {"S1": 4, "S2": 2, "S3": 1}
    mix = {"S1": [2, 2],  # majors 01 (0101, 0102) and 05 (0501, 0502)
           "S2": [2],     # major 01 (0101, 0103)
           "S3": [1]}
    m = _majors()
    rho = {k: counts[k] / (length[k] / 1000) for k in length}
    h = {k: -sum(n / sum(ns) * math.log(n / sum(ns)) for n in ns) / math.log(m)
         for k, ns in mix.items()}
    lbar, rbar, hbar = (sum(v.values()) / 3 for v in (length, rho, h))
    return {k: min(bounds[1], max(bounds[0], 1 + a * (length[k] / lbar - 1)
                                  + b * (rho[k] / rbar - 1) + c * (h[k] - hbar)))
            for k in length}


ADMIN = Principal(user_id=0, username="test", display_name=None, roles=frozenset({"admin"}),
                  scope_codes=(), department_id=None, person_id=None, session_id="t",
                  session_kind="bearer", expires_at=datetime(2100, 1, 1, tzinfo=BJ))


def test_difficulty_coefficients_equal_a_hand_computation(engine: Engine,
                                                         month_world: World) -> None:
    assert _majors() == 11  # 6 event and 5 component majors in the catalog
    with engine.connect() as conn:
        got = patrol_eval.difficulty(conn, ADMIN, date(2026, 10, 15), street_office=GUANGWAI)
    want = _expected_difficulty(month_world)
    for key, street in month_world.streets.items():
        assert got[street]["d"] == pytest.approx(want[key], abs=1e-9), key
    # S1 (average length, busy, two majors) > S2 (short, busy, one major) > S3 (long, quiet)
    s1, s2, s3 = (got[month_world.streets[k]]["d"] for k in ("S1", "S2", "S3"))
    assert s1 > s2 > s3
    assert got[month_world.streets["S1"]]["incidents"] == 4


def test_difficulty_is_clamped_and_configurable(client: TestClient, engine: Engine,
                                                month_world: World) -> None:
    admin = bearer(client, "admin")
    config = client.get("/api/v1/patrol-settings", headers=admin).json()
    config["difficulty"].update({"length_weight": 1.0, "min": 0.95, "max": 1.1})
    assert client.put("/api/v1/patrol-settings", json=config, headers=admin).status_code == 200
    with engine.connect() as conn:
        got = patrol_eval.difficulty(conn, ADMIN, date(2026, 10, 15), street_office=GUANGWAI)
    want = _expected_difficulty(month_world, (1.0, 0.2, 0.1), (0.95, 1.1))
    for key, street in month_world.streets.items():
        assert got[street]["d"] == pytest.approx(want[key], abs=1e-9), key
    assert want["S3"] == 1.1 and want["S2"] == 0.95  # both bounds are hit


def test_month_scores_ranking_and_the_excellent_flag(client: TestClient,
                                                     month_world: World) -> None:
    admin = bearer(client, "admin")
    response = client.get("/api/v1/patrol-evaluation", headers=admin, params={
        "period": "month", "date": "2026-10-15", "street_office": GUANGWAI})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["period"]["from"] == "2026-10-01" and body["period"]["to"] == "2026-10-31"
    assert body["period"]["working_days"] == 18
    assert body["period"]["dates"] == [d.isoformat() for d in OCTOBER_WORKING_DAYS]
    assert body["settings"]["coverage"]["daily_threshold"] == 0.8
    rows = {r["name"]: r for r in body["rows"]}
    assert set(rows) == {"张三", "李四", "王五"}

    d = _expected_difficulty(month_world)
    half = (month_world.length["S1"] / 2 + 30) / month_world.length["S1"]  # 王五's coverage
    q1 = 0.6 * 1 + 0.2 * 1 + 0.2 * (2 / 3)  # 张三 on S1: found 2 of 3
    q2 = 0.6 * 0 + 0.2 * 0 + 0.2 * 1        # 张三 on S2: never walked, no problems
    q3 = 0.6 * 15 / 18 + 0.2 * 15 / 18 + 0.2 * 0  # 李四 on S3: 15 of 18 days, found 0 of 1
    q_wang = 0.6 * 0 + 0.2 * half + 0.2 * (2 / 3)
    zhang, li, wang = rows["张三"], rows["李四"], rows["王五"]

    assert zhang["role"] == "street_chief" and wang["role"] == "steward"
    assert zhang["score"] == pytest.approx(100 * (d["S1"] * q1 + d["S2"] * q2)
                                           / (d["S1"] + d["S2"]), abs=0.006)
    assert zhang["compliance"] == pytest.approx(18 / 36, abs=1e-4)
    assert zhang["coverage"] == pytest.approx(0.5, abs=1e-4)
    assert (zhang["found"], zhang["by_others"]) == (2, 1)
    by_street = {s["name"]: s for s in zhang["streets"]}
    assert by_street["街巷S1"]["compliance"] == 1.0 and by_street["街巷S2"]["compliance"] == 0.0
    assert by_street["街巷S1"]["q"] == pytest.approx(q1, abs=1e-4)
    assert by_street["街巷S2"]["q"] == pytest.approx(q2, abs=1e-4)
    assert by_street["街巷S1"]["difficulty"] == pytest.approx(d["S1"], abs=1e-4)

    assert li["score"] == pytest.approx(100 * q3, abs=0.006)
    assert li["compliance"] == pytest.approx(15 / 18, abs=1e-4)
    assert (li["found"], li["by_others"]) == (0, 1)

    assert wang["score"] == pytest.approx(100 * q_wang, abs=0.006)
    assert wang["compliance"] == 0.0
    assert wang["coverage"] == pytest.approx(half, abs=1e-3)
    assert (wang["found"], wang["by_others"]) == (2, 1)  # 张三's reports are S1's own

    # chiefs ranked together, stewards apart; nobody reaches 90, so nobody is excellent
    assert 100 * q3 > zhang["score"]
    assert (li["rank"], zhang["rank"], wang["rank"]) == (1, 2, 1)
    assert not any(r["excellent"] for r in body["rows"])
    assert [r["name"] for r in body["rows"]] == ["李四", "张三", "王五"]

    # with a lower bar the best chief (top 10 %, at least one) and the best steward qualify
    config = client.get("/api/v1/patrol-settings", headers=admin).json()
    config["excellent"]["min_score"] = 20
    assert client.put("/api/v1/patrol-settings", json=config, headers=admin).status_code == 200
    body = client.get("/api/v1/patrol-evaluation", headers=admin, params={
        "period": "month", "date": "2026-10-15", "street_office": GUANGWAI}).json()
    flags = {r["name"]: r["excellent"] for r in body["rows"]}
    assert flags == {"李四": True, "张三": False, "王五": True}

    csv_response = client.get("/api/v1/patrol-evaluation", headers=admin, params={
        "period": "month", "date": "2026-10-15", "street_office": GUANGWAI, "format": "csv"})
    assert csv_response.status_code == 200
    assert csv_response.content.startswith(b"\xef\xbb\xbf")
    table = list(csv.DictReader(io.StringIO(csv_response.content.decode("utf-8-sig"))))
    people = {r["name"]: r for r in table if r["level"] == "person"}
    assert float(people["张三"]["score"]) == pytest.approx(zhang["score"])
    assert people["李四"]["rank"] == "1" and people["李四"]["excellent"] == "True"
    assert sum(1 for r in table if r["level"] == "street") == 4


def test_the_street_map_marks_uncovered_streets(client: TestClient, month_world: World) -> None:
    admin = bearer(client, "admin")
    response = client.get("/api/v1/patrol-evaluation/streets", headers=admin, params={
        "period": "day", "date": "2026-10-30", "street_office": GUANGWAI})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/geo+json")
    features = {f["properties"]["name"]: f for f in response.json()["features"]}
    assert set(features) == {"街巷S1", "街巷S2", "街巷S3"}
    s1, s2, s3 = (features[f"街巷{k}"]["properties"] for k in ("S1", "S2", "S3"))
    assert s1["covered"] and s1["state"] == "covered" and s1["chief"] == "张三"
    assert s1["stewards"] == "王五"
    assert not s2["covered"] and s2["state"] == "uncovered" and s2["coverage"] == 0.0
    assert not s3["covered"]  # 李四 stopped walking S3 before 2026-10-28
    assert features["街巷S2"]["geometry"]["type"] == "MultiLineString"
    month = client.get("/api/v1/patrol-evaluation/streets", headers=admin, params={
        "period": "month", "date": "2026-10-30", "street_office": GUANGWAI}).json()
    states = {f["properties"]["name"]: f["properties"]["state"] for f in month["features"]}
    assert states == {"街巷S1": "covered", "街巷S2": "uncovered", "街巷S3": "partial"}
    d = _expected_difficulty(month_world)
    assert s1["difficulty"] == pytest.approx(d["S1"], abs=1e-4)


@pytest.fixture
def week_world(engine: Engine) -> World:
    """One street (S1), one chief (赵六) who walks it on 2026-10-06 (holiday), 10-08 (full),
    10-09 (half), 10-10 (Saturday, an adjusted working day: full) and 10-11 (Sunday)."""
    world = World()
    with engine.begin() as conn:
        _base(conn, world)
        zhao = _person(conn, world, "zhao", "赵六", [("S1", "street_chief")])
        _user(conn, "admin", ["admin"])
        s1 = world.streets["S1"]
        full = [date(2026, 10, 6), date(2026, 10, 8), date(2026, 10, 10), date(2026, 10, 11)]
        _patrols(conn, zhao, s1, full, *STREETS["S1"])
        _patrols(conn, zhao, s1, [date(2026, 10, 9)], 116.300, 116.305)
    return world


def test_compliance_counts_working_days_across_a_holiday_and_a_weekend(
        client: TestClient, week_world: World) -> None:
    admin = bearer(client, "admin")

    def row(period: str, day: str) -> tuple[dict[str, object], dict[str, object]]:
        response = client.get("/api/v1/patrol-evaluation", headers=admin,
                              params={"period": period, "date": day})
        assert response.status_code == 200, response.text
        body = response.json()
        [only] = body["rows"]
        return body["period"], only

    period, zhao = row("week", "2026-10-07")
    assert (period["from"], period["to"]) == ("2026-10-05", "2026-10-11")
    # 10-05..07 are 国庆节 holidays, 10-10 is a 调休 working Saturday, 10-11 a Sunday
    assert period["dates"] == ["2026-10-08", "2026-10-09", "2026-10-10"]
    assert (zhao["required_days"], zhao["compliant_days"]) == (3, 2)
    assert zhao["compliance"] == pytest.approx(2 / 3, abs=1e-4)
    half = (week_world.length["S1"] / 2 + 30) / week_world.length["S1"]
    assert zhao["coverage"] == pytest.approx((1 + half + 1) / 3, abs=1e-3)

    period, zhao = row("day", "2026-10-10")
    assert period["working_days"] == 1 and zhao["compliance"] == 1.0
    period, zhao = row("day", "2026-10-11")  # Sunday: nothing required
    assert period["working_days"] == 0
    assert zhao["compliance"] is None and zhao["score"] is None and zhao["rank"] is None

    # a lower daily threshold makes the half walk of 10-09 count
    config = client.get("/api/v1/patrol-settings", headers=admin).json()
    config["coverage"]["daily_threshold"] = 0.5
    assert client.put("/api/v1/patrol-settings", json=config, headers=admin).status_code == 200
    _, zhao = row("week", "2026-10-07")
    assert (zhao["required_days"], zhao["compliant_days"]) == (3, 3)


def test_who_may_read_the_evaluation(client: TestClient, month_world: World) -> None:
    params = {"period": "month", "date": "2026-10-15"}
    for username in ("admin", "viewer", "planner", "op_xc"):
        response = client.get("/api/v1/patrol-evaluation", params=params,
                              headers=bearer(client, username))
        assert response.status_code == 200, (username, response.text)
        assert len(response.json()["rows"]) == 3
    # a scoped operator elsewhere sees nobody, and may not ask for a street office outside
    ft = bearer(client, "op_ft")
    assert client.get("/api/v1/patrol-evaluation", params=params,
                      headers=ft).json()["rows"] == []
    response = client.get("/api/v1/patrol-evaluation", headers=ft,
                          params={**params, "street_office": GUANGWAI})
    assert response.status_code == 403 and response.json()["detail"][0]["field"] == "street_office"
    # a chief: only their own row, with its rank among the chiefs of the street office
    response = client.get("/api/v1/patrol-evaluation", params=params,
                          headers=bearer(client, "chief_zhang"))
    assert response.status_code == 200
    [own] = response.json()["rows"]
    assert own["name"] == "张三" and own["rank"] == 2
    streets = client.get("/api/v1/patrol-evaluation/streets", params=params,
                         headers=bearer(client, "chief_zhang")).json()
    assert {f["properties"]["name"] for f in streets["features"]} == {"街巷S1", "街巷S2"}
    response = client.get("/api/v1/patrol-evaluation", params=params,
                          headers=bearer(client, "disp"))
    assert response.status_code == 403 and response.json()["detail"][0]["field"] == "role"
    assert client.get("/api/v1/patrol-evaluation", params=params).status_code == 401
    admin = bearer(client, "admin")
    for name, value in (("date", "2026-13-01"), ("date", "20261015"), ("date", "9999-12-31"),
                        ("period", "year"), ("street_office", "1101")):
        response = client.get("/api/v1/patrol-evaluation", headers=admin,
                              params={**params, name: value})
        assert response.status_code == 422, (name, value)
        assert response.json()["detail"][0]["field"] == name


def test_patrol_settings_are_checked_and_audited(client: TestClient, engine: Engine,
                                                 month_world: World) -> None:
    admin = bearer(client, "admin")
    config = client.get("/api/v1/patrol-settings", headers=admin).json()
    assert config["coverage"] == {"radius_m": 30, "daily_threshold": 0.8}
    for role in ("viewer", "planner", "op_xc"):
        assert client.get("/api/v1/patrol-settings",
                          headers=bearer(client, role)).status_code == 200
    for role in ("chief_zhang", "disp"):
        assert client.get("/api/v1/patrol-settings",
                          headers=bearer(client, role)).status_code == 403
    assert client.put("/api/v1/patrol-settings", json=config,
                      headers=bearer(client, "viewer")).status_code == 403

    def put(change: dict[str, dict[str, object]]) -> tuple[int, str | None]:
        body = {k: dict(v) for k, v in config.items()}
        for section, values in change.items():
            body.setdefault(section, {}).update(values)
        response = client.put("/api/v1/patrol-settings", json=body, headers=admin)
        detail = response.json().get("detail") if response.status_code != 200 else None
        return response.status_code, detail[0]["field"] if detail else None

    assert put({"coverage": {"radius_m": 1}}) == (422, "coverage.radius_m")
    assert put({"coverage": {"daily_threshold": "high"}}) == (422, "coverage.daily_threshold")
    assert put({"score": {"compliance_weight": 0.9}}) == (422, "score")
    assert put({"difficulty": {"min": 1.0, "max": 1.0, "mix_weight": -1}}) == \
        (422, "difficulty.mix_weight")
    assert put({"extra": {"x": 1}}) == (422, "extra")
    response = client.put("/api/v1/patrol-settings", json=[1, 2], headers=admin)
    assert response.status_code == 422
    assert client.get("/api/v1/patrol-settings", headers=admin).json() == config  # unchanged

    assert put({"coverage": {"radius_m": 40}}) == (200, None)
    assert client.get("/api/v1/patrol-settings", headers=admin).json()["coverage"]["radius_m"] == 40
    with engine.connect() as conn:
        audit = conn.execute(text("SELECT actor, before, after FROM audit_log "
                                  "WHERE action = 'patrol_settings.replace'")).mappings().all()
    assert len(audit) == 1 and audit[0]["actor"] == "admin"
    assert audit[0]["before"]["coverage"]["radius_m"] == 30
    assert audit[0]["after"]["coverage"]["radius_m"] == 40


def test_a_period_still_running_counts_the_days_so_far() -> None:
    cal = catalog.load_catalog().calendar
    win = patrol_eval.window(cal, "month", date(2026, 11, 20), date(2026, 11, 20))
    assert (win.first, win.last, win.through) == (date(2026, 11, 1), date(2026, 11, 30),
                                                  date(2026, 11, 20))
    assert len(win.working_days) == 15 and win.working_days[-1] == date(2026, 11, 20)
    future = patrol_eval.window(cal, "week", date(2026, 12, 9), date(2026, 11, 20))
    assert future.first == date(2026, 12, 7) and future.working_days == ()


def test_the_demo_history_is_synthetic_clean_and_idempotent(engine: Engine) -> None:
    from gis.demo_patrols import simulate_history

    world = World()
    with engine.begin() as conn:
        _base(conn, world)
        # a street in two parts (a gap between them), as many demo streets are
        conn.execute(text("UPDATE streets SET geom = ST_GeomFromText('MULTILINESTRING("
                          "(116.330 39.88,116.336 39.88),(116.338 39.88,116.345 39.88))', 4326) "
                          "WHERE id = :s"), {"s": world.streets["S3"]})
        _person(conn, world, "chief", "张三", [("S1", "street_chief"), ("S3", "alley_chief")])
        _person(conn, world, "steward", "王五", [("S1", "steward")])
        counts = simulate_history(conn, 3, [GUANGWAI], seed=3, until=date(2026, 10, 16))
    assert (counts["working_days"], counts["first_day"], counts["last_day"]) == \
        (3, "2026-10-14", "2026-10-16")
    assert counts["patrols"] == counts["street_days_patrolled"] > 0
    with engine.connect() as conn:
        patrols = conn.execute(text(
            "SELECT status, summary, coverage, track IS NOT NULL AS tracked, "
            "ST_IsValid(track) AS valid, started_at, ended_at FROM patrols")).mappings().all()
        points = conn.execute(text("""
            SELECT count(*) AS total, count(*) FILTER (WHERE kept) AS kept,
                   array_agg(DISTINCT drop_reason) FILTER (WHERE NOT kept) AS reasons,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY step) AS median_step
            FROM (SELECT kept, drop_reason, extract(epoch FROM at - lag(at) OVER (
                    PARTITION BY patrol_id ORDER BY at)) AS step FROM patrol_points) x
        """)).mappings().one()
    assert len(patrols) == counts["patrols"]
    assert all(p["status"] == "ended" and p["summary"]["synthetic"] is True for p in patrols)
    assert all(p["tracked"] and p["valid"] and 0 <= p["coverage"] <= 1 for p in patrols)
    assert all(p["ended_at"] > p["started_at"] for p in patrols)
    assert points["total"] == counts["fixes"] and points["kept"] < points["total"]
    assert set(points["reasons"]) <= {"accuracy", "speed"}
    assert 4.5 <= points["median_step"] <= 5.5  # a fix every ~5 s at walking speed
    with engine.begin() as conn:  # a second run adds nothing
        again = simulate_history(conn, 3, [GUANGWAI], seed=3, until=date(2026, 10, 16))
    assert again["patrols"] == 0 and again["fixes"] == 0
    with engine.connect() as conn:
        result = patrol_eval.evaluate(conn, ADMIN, "week", date(2026, 10, 15),
                                      street_office=GUANGWAI)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["张三"]["role"] == "street_chief" and rows["王五"]["role"] == "steward"
    assert rows["张三"]["required_days"] == 10  # 2 streets × 5 working days (10-12..16)
    assert rows["张三"]["compliant_days"] >= 1
