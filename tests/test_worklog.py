"""The work log (工作日志) of one hand-built day, 2026-10-15 (a Thursday), in 广安门外街道:
张三 is street chief of S1 (116.300–116.310 on lat 39.88, ~854 m) and S2 (116.320–116.325,
~427 m); 李四 of S3.

张三's day: S1 walked in two patrols, 09:00–09:20 over its west half and 10:00–10:15 over its
east half (together: all of it); S2 walked once, 14:00–14:10, over its west half (coverage
= (L/2 + 30 m) / L, the 30 m buffer reaching past the end of the track). Checklist: on the
first S1 patrol 堆物堆料 not ok ("楼道口堆放装修垃圾") and 私搭乱建 ok; on the S2 patrol
乱停车 not ok ("机动车占用人行道") and 绿植 ok. Problems: one reported during the first S1
patrol (registered, dispatch deadline 11:00 that day: overdue now), one reported by 张三's
login at 16:00 without a patrol (closed). Noise that must not show: a patrol the day before,
a problem by someone else that day, a problem of 张三's the day before."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, Engine, text

from api.app import create_app
from api.settings import Settings
from gis import catalog, users
from gis.audit import Actor
from tests.auth_world import PASSWORD, bearer

BJ = ZoneInfo("Asia/Shanghai")
XICHENG, FENGTAI, GUANGWAI = "110102", "110106", "110102020"
LAT = 39.88
DAY = "2026-10-15"


@dataclass
class Day:
    streets: dict[str, int] = field(default_factory=dict)
    length: dict[str, float] = field(default_factory=dict)
    patrols: dict[str, int] = field(default_factory=dict)
    incidents: dict[str, int] = field(default_factory=dict)
    zhang: int = 0
    li: int = 0


def _square(x: float, y: float, size: float = 0.1) -> str:
    return (f"MULTIPOLYGON((({x} {y},{x + size} {y},{x + size} {y + size},{x} {y + size},"
            f"{x} {y})))")


def _patrol(conn: Connection, person: int, street: int, start: str, end: str, x0: float,
            x1: float) -> int:
    return int(conn.scalar(text("""
        INSERT INTO patrols (person_id, street_id, started_at, ended_at, status, district_code,
                             track)
        VALUES (:p, :s, CAST(:t0 AS timestamptz), CAST(:t1 AS timestamptz), 'ended', '110102',
                ST_SetSRID(ST_MakeLine(
                  ST_MakePointM(:x0, :y, extract(epoch FROM CAST(:t0 AS timestamptz))),
                  ST_MakePointM(:x1, :y, extract(epoch FROM CAST(:t1 AS timestamptz)))), 4326))
        RETURNING id"""), {"p": person, "s": street, "t0": start, "t1": end, "x0": x0,
                            "x1": x1, "y": LAT}))


def _check(conn: Connection, patrol: int, code: str, ok: bool, note: str | None,
           at: str) -> None:
    conn.execute(text("INSERT INTO patrol_checks (patrol_id, item_code, ok, note, checked_at) "
                      "VALUES (:p, :c, :ok, :n, :at)"),
                 {"p": patrol, "c": code, "ok": ok, "n": note, "at": at})


def _incident(conn: Connection, street: int, code: str, at: str, *, status: str = "registered",
              patrol: int | None = None, created_by: int | None = None,
              deadlines: str = "{}", description: str = "") -> int:
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, description, reported_at, geom, status,
                               district_code, street_code, street_id, created_by, patrol_id,
                               deadlines, closed_at)
        VALUES ('street_chief', (SELECT id FROM event_classes WHERE kind = 'event' AND code = :c),
                :d, :at, ST_SetSRID(ST_MakePoint(116.305, 39.88), 4326), :st, '110102', :so, :s,
                :u, :p, CAST(:dl AS jsonb),
                CASE WHEN :st = 'closed' THEN CAST(:at AS timestamptz) + interval '1 hour' END)
        RETURNING id"""), {"c": code, "d": description, "at": at, "st": status, "so": GUANGWAI,
                           "s": street, "u": created_by, "p": patrol, "dl": deadlines}))


@pytest.fixture
def day(engine: Engine) -> Day:
    built = Day()
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
        for level, code, name, x in (("district", XICHENG, "西城区", 116.25),
                                     ("district", FENGTAI, "丰台区", 116.40),
                                     ("street", GUANGWAI, "广安门外街道", 116.25)):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                              "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                         {"l": level, "c": code, "n": name, "g": _square(x, 39.80)})
        for key, x0, x1 in (("S1", 116.300, 116.310), ("S2", 116.320, 116.325),
                            ("S3", 116.330, 116.340)):
            built.streets[key] = int(conn.scalar(text(
                "INSERT INTO streets (name, road_class, district_code, street_office_code, "
                "geom) VALUES (:n, 'branch', '110102', :so, ST_Multi(ST_MakeLine("
                "ST_MakePoint(:x0, :y), ST_MakePoint(:x1, :y)))) RETURNING id"),
                {"n": {"S1": "三义东街", "S2": "北线阁胡同", "S3": "南线阁街"}[key],
                 "so": GUANGWAI, "x0": x0, "x1": x1, "y": LAT}))
            built.length[key] = float(conn.scalar(text(
                "SELECT ST_Length(ST_Transform(geom, 4548)) FROM streets WHERE id = :i"),
                {"i": built.streets[key]}))
        built.zhang = int(conn.scalar(text(
            "INSERT INTO people (name, phone, post, organisation, district_code) VALUES "
            "('张三', '13900000001', '街道副主任', '广安门外街道办事处', '110102') RETURNING id")))
        built.li = int(conn.scalar(text(
            "INSERT INTO people (name, district_code) VALUES ('李四', '110102') RETURNING id")))
        for street, person in (("S1", built.zhang), ("S2", built.zhang), ("S3", built.li)):
            conn.execute(text("INSERT INTO street_assignments (street_id, person_id, role, "
                              "valid_from) VALUES (:s, :p, 'street_chief', '2026-01-01')"),
                         {"s": built.streets[street], "p": person})
        conn.execute(text("INSERT INTO departments (code, name, dept_type, tier, "
                          "jurisdiction_code) VALUES ('XC-CG', '西城区城管执法局', "
                          "'urban_management', 'core', '110102')"))
        by = Actor("test")
        made = {}
        for username, roles, scope, extra in (
                ("chief_zhang", ["street_chief"], [GUANGWAI], {"person_id": built.zhang}),
                ("chief_li", ["street_chief"], [GUANGWAI], {"person_id": built.li}),
                ("admin", ["admin"], [], {}), ("viewer", ["viewer"], [], {}),
                ("planner", ["planner"], [], {}), ("op_xc", ["operator"], [XICHENG], {}),
                ("op_ft", ["operator"], [FENGTAI], {}),
                ("disp", ["dispatcher"], [], {"department_code": "XC-CG"})):
            made[username] = users.add_user(conn, username=username, password=PASSWORD,
                                            roles=roles, scope_codes=scope, by=by, **extra)["id"]
        s1, s2 = built.streets["S1"], built.streets["S2"]
        p = built.patrols
        p["s1_west"] = _patrol(conn, built.zhang, s1, f"{DAY}T09:00:00+08:00",
                               f"{DAY}T09:20:00+08:00", 116.300, 116.305)
        p["s1_east"] = _patrol(conn, built.zhang, s1, f"{DAY}T10:00:00+08:00",
                               f"{DAY}T10:15:00+08:00", 116.305, 116.310)
        p["s2"] = _patrol(conn, built.zhang, s2, f"{DAY}T14:00:00+08:00",
                          f"{DAY}T14:10:00+08:00", 116.320, 116.3225)
        p["yesterday"] = _patrol(conn, built.zhang, s2, "2026-10-14T09:00:00+08:00",
                                 "2026-10-14T09:30:00+08:00", 116.320, 116.325)
        _check(conn, p["s1_west"], "no_piled_materials", False, "楼道口堆放装修垃圾",
               f"{DAY}T09:05:00+08:00")
        _check(conn, p["s1_west"], "no_illegal_building", True, None, f"{DAY}T09:06:00+08:00")
        _check(conn, p["s2"], "no_disorderly_parking", False, "机动车占用人行道",
               f"{DAY}T14:03:00+08:00")
        _check(conn, p["s2"], "has_greenery", True, None, f"{DAY}T14:04:00+08:00")
        _check(conn, p["yesterday"], "no_loose_wires", False, "昨天的记录",
               "2026-10-14T09:10:00+08:00")
        inc = built.incidents
        inc["piles"] = _incident(conn, s1, "0109", f"{DAY}T09:05:30+08:00",
                                 patrol=p["s1_west"], description="楼道口堆放装修垃圾",
                                 deadlines='{"dispatch": "2026-10-15T11:00:00+08:00"}')
        inc["parking"] = _incident(conn, s2, "0504", f"{DAY}T16:00:00+08:00", status="closed",
                                   created_by=made["chief_zhang"], description="人行道停车")
        _incident(conn, s2, "0101", f"{DAY}T12:00:00+08:00", created_by=made["admin"],
                  description="someone else's")
        _incident(conn, s1, "0101", "2026-10-14T12:00:00+08:00",
                  created_by=made["chief_zhang"], description="the day before")
    return built


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def expected_s2(day: Day) -> float:
    """S2's coverage: its west half plus the 30 m the buffer reaches past the track's end."""
    return (day.length["S2"] / 2 + 30) / day.length["S2"]


def test_the_json_log_equals_the_hand_computed_day(client: TestClient, day: Day) -> None:
    response = client.get("/api/v1/people/me/worklog", params={"date": DAY},
                          headers=bearer(client, "chief_zhang"))
    assert response.status_code == 200, response.text
    log = response.json()
    assert log["person"]["name"] == "张三" and log["date"] == DAY and log["working_day"]
    assert log["settings"] == {"radius_m": 30.0, "daily_threshold": 0.8}

    s1, s2 = log["streets"]  # in the order walked
    p = day.patrols
    assert (s1["name"], s2["name"]) == ("三义东街", "北线阁胡同")
    assert s1["coverage"] == 1.0 and s1["compliant"] is True
    assert s1["time_spent_s"] == 35 * 60
    assert s1["patrol_ids"] == [p["s1_west"], p["s1_east"]]
    assert datetime.fromisoformat(s1["started_at"]) == datetime(2026, 10, 15, 9, tzinfo=BJ)
    assert datetime.fromisoformat(s1["ended_at"]) == datetime(2026, 10, 15, 10, 15, tzinfo=BJ)
    assert s2["coverage"] == pytest.approx(expected_s2(day), abs=1e-4)
    assert s2["compliant"] is False and s2["time_spent_s"] == 600
    assert s2["patrol_ids"] == [p["s2"]]

    checks = {(c["patrol_id"], c["code"]): c for c in log["checks"]}
    assert set(checks) == {(p["s1_west"], "no_piled_materials"),
                           (p["s1_west"], "no_illegal_building"),
                           (p["s2"], "no_disorderly_parking"), (p["s2"], "has_greenery")}
    piles = checks[(p["s1_west"], "no_piled_materials")]
    assert piles["ok"] is False and piles["note"] == "楼道口堆放装修垃圾"
    assert piles["zh"] == "无堆物堆料" and piles["group"] == "十无"

    problems = {i["incident_id"]: i for i in log["problems"]}
    assert set(problems) == {day.incidents["piles"], day.incidents["parking"]}
    reported = problems[day.incidents["piles"]]
    assert reported["patrol_id"] == p["s1_west"] and reported["event_code"] == "0109"
    assert reported["status"] == "registered" and reported["deadline_state"] == "overdue"
    closed = problems[day.incidents["parking"]]
    assert closed["status"] == "closed" and closed["deadline_state"] == "none"

    assert log["totals"] == {"streets_assigned": 2, "streets_required": 2,
                             "streets_patrolled": 2, "streets_compliant": 1, "patrols": 3,
                             "time_spent_s": 45 * 60, "checks_ok": 2, "checks_not_ok": 2,
                             "problems": 2}


def test_csv_and_printable_html_carry_the_same_numbers(client: TestClient, day: Day) -> None:
    headers = bearer(client, "op_xc")
    path = f"/api/v1/people/{day.zhang}/worklog"
    response = client.get(path, params={"date": DAY, "format": "csv"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.content.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads the Chinese
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    streets = {r["street"]: r for r in rows if r["section"] == "street"}
    assert float(streets["三义东街"]["coverage"]) == 1.0
    assert float(streets["北线阁胡同"]["coverage"]) == pytest.approx(expected_s2(day), abs=1e-4)
    assert streets["三义东街"]["time_spent_s"] == "2100"
    assert streets["北线阁胡同"]["compliant"] == "False"
    checks = [r for r in rows if r["section"] == "check"]
    assert len(checks) == 4
    assert {r["note"] for r in checks if r["ok"] == "False"} == {"楼道口堆放装修垃圾",
                                                                 "机动车占用人行道"}
    problems = {int(r["incident_id"]): r for r in rows if r["section"] == "problem"}
    assert problems[day.incidents["piles"]]["deadline_state"] == "overdue"
    assert problems[day.incidents["parking"]]["status"] == "closed"
    assert {r["person"] for r in rows} == {"张三"} and {r["date"] for r in rows} == {DAY}

    response = client.get(path, params={"date": DAY, "format": "html"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    for shown in ("工作日志", "张三", "2026-10-15", "三义东街", "北线阁胡同", "100%",
                  f"{round(expected_s2(day) * 100)}%", "35 min", "09:00", "10:15",
                  "楼道口堆放装修垃圾", "机动车占用人行道", f"#{day.incidents['piles']}",
                  f"#{day.incidents['parking']}", "超期", "结案", "@page", "A4"):
        assert shown in page, shown
    assert "昨天的记录" not in page and "someone else" not in page


@pytest.mark.parametrize(("username", "status"), [
    ("chief_zhang", 200), ("admin", 200), ("viewer", 200), ("planner", 200),
    ("op_xc", 200), ("op_ft", 404), ("chief_li", 403), ("disp", 403)])
def test_who_may_read_a_log(client: TestClient, day: Day, username: str, status: int) -> None:
    response = client.get(f"/api/v1/people/{day.zhang}/worklog", params={"date": DAY},
                          headers=bearer(client, username))
    assert response.status_code == status, response.text
    if status == 403:
        assert response.json()["detail"][0]["field"] in ("person_id", "role")


def test_bad_requests_name_the_field(client: TestClient, day: Day) -> None:
    headers = bearer(client, "admin")
    assert client.get(f"/api/v1/people/{day.zhang}/worklog").status_code == 401
    for value in ("2026-02-30", "15/10/2026", "yesterday", "9999-12-31", "0001-01-01"):
        response = client.get(f"/api/v1/people/{day.zhang}/worklog", params={"date": value},
                              headers=headers)
        assert response.status_code == 422, value
        assert response.json()["detail"][0]["field"] == "date"
    for value in ("abc", "0", "99999999999999999999"):
        response = client.get(f"/api/v1/people/{value}/worklog", headers=headers)
        assert response.status_code == 422, value
        assert response.json()["detail"][0]["field"] == "person_id"
    response = client.get("/api/v1/people/999999/worklog", headers=headers)
    assert response.status_code == 404
    response = client.get("/api/v1/people/me/worklog", headers=headers)  # admin: no person
    assert response.status_code == 403 and response.json()["detail"][0]["field"] == "person_id"
    response = client.get(f"/api/v1/people/{day.zhang}/worklog",
                          params={"date": DAY, "format": "pdf"}, headers=headers)
    assert response.status_code == 422 and response.json()["detail"][0]["field"] == "format"
    # another chief's own log holds nothing of 张三's day
    log = client.get("/api/v1/people/me/worklog", params={"date": DAY},
                     headers=bearer(client, "chief_li")).json()
    assert [s["name"] for s in log["streets"]] == ["南线阁街"]
    assert log["streets"][0]["coverage"] == 0.0 and log["streets"][0]["compliant"] is False
    assert log["problems"] == [] and log["checks"] == []
