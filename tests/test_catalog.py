"""The event catalog in the database: `gridops catalog load/show`, idempotent reloads, classes
missing from a new file deactivated (never deleted), bad files refused naming the entry and
loading nothing, "did you mean" codes, the loaded work calendar's deadlines, and
`GET /api/v1/event-classes`."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis.audit import Actor
from gis.catalog import (
    DEFAULT_CATALOG_PATH,
    current_calendar,
    find_class,
    load_into_db,
    parse_catalog,
    stage_deadlines,
    suggest_codes,
)
from gis.errors import InvalidInput
from tests.auth_world import sign_in

TZ = ZoneInfo("Asia/Shanghai")
RAW: dict[str, Any] = json.loads(DEFAULT_CATALOG_PATH.read_text(encoding="utf-8"))
TEST = Actor("test")
TOTAL = 95  # 58 events + 37 components in data/catalog/events.json


def _at(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=TZ)


def cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "catalog", *args],
                          env={**os.environ, "DATABASE_URL": db_url}, capture_output=True,
                          text=True, timeout=120, check=False)


def scalar(engine: Engine, sql: str) -> Any:
    with engine.connect() as conn:
        return conn.scalar(text(sql))


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "events.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def without_event_0102(raw: dict[str, Any]) -> dict[str, Any]:
    """The catalog with event 0102 (积存垃圾渣土) dropped and 0101 renamed."""
    data = copy.deepcopy(raw)
    classes = data["majors"][0]["classes"]
    data["majors"][0]["classes"] = [c for c in classes if c["code"] != "0102"]
    data["majors"][0]["classes"][0]["name"] = "暴露垃圾(含袋装)"
    return data


def test_cli_load_show_and_idempotent_reload(db_url: str, engine: Engine) -> None:
    first = cli(db_url, "load", str(DEFAULT_CATALOG_PATH))
    assert first.returncode == 0, first.stderr
    assert f"{TOTAL} added, 0 updated, 0 unchanged, 0 deactivated" in first.stdout
    with engine.connect() as conn:
        counts = dict(conn.execute(text(
            "SELECT kind, count(*) FROM event_classes WHERE active GROUP BY kind")).all())
        cat = conn.execute(text("SELECT name, format, synthetic, department_types, calendar, "
                                "loaded_by FROM catalogs")).mappings().one()
    assert counts == {"event": 58, "component": 37}
    assert cat["name"] == RAW["name"] and cat["format"] == "gridops-event-catalog/1"
    assert cat["synthetic"] is True and cat["department_types"]["fire"] == "消防"
    assert cat["calendar"]["timezone"] == "Asia/Shanghai"
    assert cat["loaded_by"].startswith("cli:")

    again = cli(db_url, "load", str(DEFAULT_CATALOG_PATH))
    assert again.returncode == 0, again.stderr
    assert f"0 added, 0 updated, {TOTAL} unchanged, 0 deactivated" in again.stdout
    assert scalar(engine, "SELECT count(*) FROM event_classes") == TOTAL
    assert scalar(engine, "SELECT count(*) FROM catalogs") == 1
    assert scalar(engine, "SELECT count(*) FROM audit_log WHERE action = 'catalog.load'") == 2
    after = scalar(engine, "SELECT after FROM audit_log ORDER BY id DESC LIMIT 1")
    assert after["unchanged"] == TOTAL and after["added"] == 0

    shown = cli(db_url, "show")
    assert shown.returncode == 0, shown.stderr
    assert RAW["name"] in shown.stdout and "市容环境" in shown.stdout
    assert "公用设施" in shown.stdout and str(TOTAL) in shown.stdout


def test_cli_show_without_a_catalog(db_url: str) -> None:
    shown = cli(db_url, "show")
    assert shown.returncode == 0, shown.stderr
    assert "no catalog loaded" in shown.stdout


def test_a_class_missing_from_the_file_is_deactivated_not_deleted(
        db_url: str, engine: Engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        load_into_db(conn, parse_catalog(RAW), by=TEST)
        class_id = conn.scalar(text(
            "SELECT id FROM event_classes WHERE kind = 'event' AND code = '0102'"))
        conn.execute(text("""
            INSERT INTO incidents (source, event_class_id, geom, district_code)
            VALUES ('12345', :c, ST_SetSRID(ST_MakePoint(116.35, 39.88), 4326), '110102')
        """), {"c": class_id})
    reloaded = cli(db_url, "load", str(write(tmp_path, without_event_0102(RAW))))
    assert reloaded.returncode == 0, reloaded.stderr
    assert f"0 added, 1 updated, {TOTAL - 2} unchanged, 1 deactivated" in reloaded.stdout
    with engine.connect() as conn:
        state = dict(conn.execute(text(
            "SELECT code, active FROM event_classes WHERE kind = 'event' AND code IN "
            "('0101', '0102')")).all())
        assert conn.scalar(text("SELECT name FROM event_classes WHERE kind = 'event' "
                                "AND code = '0101'")) == "暴露垃圾(含袋装)"
        assert conn.scalar(text("SELECT event_class_id FROM incidents")) == class_id
    assert state == {"0101": True, "0102": False}
    # Loading the full file again brings the class back (same id) and the old name.
    with engine.begin() as conn:
        counts = load_into_db(conn, parse_catalog(RAW), by=TEST)
        assert conn.scalar(text("SELECT id FROM event_classes WHERE kind = 'event' "
                                "AND code = '0102' AND active")) == class_id
    assert counts == {"classes": TOTAL, "added": 0, "updated": 2, "unchanged": TOTAL - 2,
                      "deactivated": 0}


@pytest.mark.parametrize(("path", "value", "where"), [
    (("majors", 0, "classes", 0, "departments", 0, "type"), "firee",
     "classes[event:0101].departments[0].type"),
    (("majors", 0, "classes", 1, "code"), "12", "majors[0].classes[1].code"),
    (("calendar", "timezone"), "Mars/Olympus", "calendar.timezone"),
])
def test_a_bad_file_exits_1_naming_the_entry_and_loads_nothing(
        db_url: str, engine: Engine, tmp_path: Path, path: tuple[Any, ...], value: Any,
        where: str) -> None:
    data = copy.deepcopy(RAW)
    target: Any = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    bad = write(tmp_path, data)
    refused = cli(db_url, "load", str(bad))
    assert refused.returncode == 1
    message = " ".join(refused.stderr.split())
    assert where in message and str(bad.name) in message, refused.stderr
    assert "Traceback" not in refused.stderr
    for table in ("event_classes", "catalogs", "audit_log"):
        assert scalar(engine, f"SELECT count(*) FROM {table}") == 0, table  # noqa: S608


def test_missing_file_exits_1(db_url: str, tmp_path: Path) -> None:
    refused = cli(db_url, "load", str(tmp_path / "nope.json"))
    assert refused.returncode == 1 and "cannot read catalog file" in refused.stderr


def test_suggest_codes_for_unknown_codes_and_names(engine: Engine) -> None:
    with engine.begin() as conn:
        load_into_db(conn, parse_catalog(without_event_0102(RAW)), by=TEST)
        load_into_db(conn, parse_catalog(RAW), by=TEST)  # 0102 is back …
        load_into_db(conn, parse_catalog(without_event_0102(RAW)), by=TEST)  # … and retired
    with engine.connect() as conn:
        near = suggest_codes(conn, "0102", kind="event")
        assert [c["code"] for c in near[:2]] == ["0101", "0103"]
        assert all(c["code"].startswith("01") for c in near) and len(near) == 5
        both = suggest_codes(conn, "0102", limit=4)
        assert [(c["kind"], c["code"]) for c in both] == [
            ("component", "0102"), ("event", "0101"), ("component", "0101"), ("event", "0103")]
        assert suggest_codes(conn, "102", kind="component")[0]["code"] == "0102"
        assert suggest_codes(conn, "暴露垃级")[0]["name"] == "暴露垃圾(含袋装)"
        assert "积存垃圾渣土" not in {c["name"] for c in suggest_codes(conn, "积存垃圾渣土")}
        assert suggest_codes(conn, "路灯坏了")[0]["name"] == "路灯"
        assert suggest_codes(conn, "zzzz") == [] and suggest_codes(conn, " ") == []
        found = find_class(conn, "component", "0109")
        assert found["name"] == "路灯" and found["departments"][0]["type_name"] == "市政市容"
        with pytest.raises(InvalidInput) as err:
            find_class(conn, "event", "0102")
    assert err.value.field == "event_code" and "0101" in err.value.message
    assert [s["code"] for s in err.value.detail["suggestions"][:2]] == ["0101", "0103"]


def test_current_calendar_reads_the_loaded_catalog(engine: Engine) -> None:
    friday = _at(2026, 11, 20, 16)
    with engine.connect() as conn:
        default = current_calendar(conn)  # nothing loaded: the file's calendar
    # Friday 16:00 + 4 working hours: 1.5 h on Friday, the weekend skipped, 2.5 h Monday.
    assert default.deadline(friday, 4, "work_hours") == _at(2026, 11, 23, 11, 30)
    data = copy.deepcopy(RAW)
    data["calendar"]["holidays"].append({"name": "测试假日", "from": "2026-11-23",
                                         "to": "2026-11-24"})
    with engine.begin() as conn:
        load_into_db(conn, parse_catalog(data), by=TEST)
    with engine.connect() as conn:
        loaded = current_calendar(conn)
    assert loaded.holidays[_at(2026, 11, 24, 0).date()] == "测试假日"
    assert loaded.holidays == parse_catalog(data).calendar.holidays
    assert loaded.adjusted_working_days == default.adjusted_working_days
    # Monday and Tuesday are now holidays: the deadline moves to Wednesday.
    assert loaded.deadline(friday, 4, "work_hours") == _at(2026, 11, 25, 11, 30)
    assert loaded.deadline(friday, 1, "work_days") == _at(2026, 11, 25, 16)
    limits = {"accept": {"value": 1, "unit": "work_hours"},
              "dispatch": {"value": 30, "unit": "hours"},
              "handle": {"value": 1, "unit": "work_days"}}
    assert stage_deadlines(loaded, friday, limits) == {
        "accept": _at(2026, 11, 20, 17),
        "dispatch": _at(2026, 11, 21, 23),
        "handle": _at(2026, 11, 25, 17, 30),  # a full working day from Wednesday 09:00
    }
    with pytest.raises(InvalidInput):
        loaded.deadline(datetime(2026, 11, 20, 16), 1, "work_hours")  # naive start


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    with engine.begin() as conn:
        load_into_db(conn, parse_catalog(RAW), by=TEST)
        load_into_db(conn, parse_catalog(without_event_0102(RAW)), by=TEST)  # 0102 retired
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def test_event_classes_endpoint_needs_sign_in(client: TestClient) -> None:
    response = client.get("/api/v1/event-classes")
    assert response.status_code == 401


def test_event_classes_endpoint_with_filters(client: TestClient, engine: Engine) -> None:
    sign_in(client, engine, "viewer")
    everything = client.get("/api/v1/event-classes").json()
    assert len(everything) == TOTAL - 1
    assert everything[0]["kind"] == "event" and everything[0]["code"] == "0101"
    assert everything[-1]["kind"] == "component"
    events = client.get("/api/v1/event-classes", params={"kind": "event"}).json()
    assert len(events) == 57 and {c["kind"] for c in events} == {"event"}
    major = client.get("/api/v1/event-classes", params={"kind": "event", "major": "02"}).json()
    assert [c["code"] for c in major][:2] == ["0201", "0202"]
    assert {c["major_name"] for c in major} == {"宣传广告"}
    by_name = client.get("/api/v1/event-classes", params={"major": "宣传广告"}).json()
    assert by_name == major
    garbage = client.get("/api/v1/event-classes", params={"q": "垃圾"}).json()
    assert {c["name"] for c in garbage} >= {"暴露垃圾(含袋装)", "垃圾分类不规范"}
    assert "积存垃圾渣土" not in {c["name"] for c in garbage}  # retired
    light = client.get("/api/v1/event-classes", params={"q": "0109", "kind": "component"})
    (lamp,) = light.json()
    assert lamp == {
        "kind": "component", "code": "0109", "major_code": "01", "major_name": "公用设施",
        "name": "路灯", "active": True, "default_whistle": lamp["default_whistle"],
        "departments": [{"type": "municipal", "role": "primary", "type_name": "市政市容"}],
        "time_limits": lamp["time_limits"]}
    assert set(lamp["time_limits"]) == {"accept", "dispatch", "handle", "verify"}
    retired = client.get("/api/v1/event-classes", params={"active": "false"}).json()
    assert [(c["kind"], c["code"], c["name"]) for c in retired] == [
        ("event", "0102", "积存垃圾渣土")]
    first = everything[0]
    assert first["departments"][0] == {"type": "sanitation", "role": "primary",
                                       "type_name": "环卫"}
    assert client.get("/api/v1/event-classes", params={"kind": "incident"}).status_code == 422
