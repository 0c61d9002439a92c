"""Escalation of overdue cases on a real PostGIS: levels community → street → district over
simulated time on the real work calendar, cases that must not escalate, case events, audit
rows and notifications, two sweeps at once escalating each case once, and
`gridops worker run` (once, and as a loop stopped by SIGTERM)."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from api.cli import app
from gis import catalog, escalation
from gis.audit import Actor
from gis.events import CHANNEL as NOTIFY_CHANNEL

BEIJING = ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """An instant in November 2026, Beijing time (the 24th is a Tuesday)."""
    return datetime(2026, 11, day, hour, minute, tzinfo=BEIJING)


@pytest.fixture
def catalogued(engine: Engine) -> Engine:
    """A fresh database with the real event catalog (0101 暴露垃圾: handle 4 working hours)."""
    with engine.begin() as conn:
        catalog.load_into_db(conn, catalog.load_catalog(), by=Actor("test"))
    return engine


def new_case(conn: Connection, status: str, handle_due: datetime, *,
             joint: bool = False) -> int:
    deadlines = {"accept": "2026-11-24T10:00:00+08:00", "dispatch": "2026-11-24T11:00:00+08:00",
                 "handle": handle_due.isoformat(), "verify": "2026-11-25T12:00:00+08:00"}
    shares = {"jurisdictions": [{"level": "district", "code": "110102", "share": 0.33},
                                {"level": "district", "code": "110106", "share": 0.67}]}
    return int(conn.scalar(text("""
        INSERT INTO incidents (source, event_class_id, description, geom, status,
                               district_code, street_code, deadlines, is_joint, joint, closed_at)
        VALUES ('12345', (SELECT id FROM event_classes WHERE kind = 'event' AND code = '0101'),
                '暴露垃圾', ST_SetSRID(ST_MakePoint(116.345, 39.875), 4326), :status,
                '110102', '110102020', CAST(:deadlines AS jsonb), :joint,
                CAST(:shares AS jsonb), CASE WHEN :status = 'closed' THEN now() END)
        RETURNING id"""), {"status": status, "deadlines": json.dumps(deadlines),
                           "joint": joint, "shares": json.dumps(shares) if joint else None}))


def sweep(engine: Engine, now: datetime) -> list[dict[str, Any]]:
    with engine.begin() as conn:
        return escalation.sweep(conn, now)


def level_of(engine: Engine, incident_id: int) -> tuple[str | None, datetime | None]:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT escalation_level, escalated_at FROM incidents "
                                "WHERE id = :i"), {"i": incident_id}).one()
    return row.escalation_level, row.escalated_at


def test_an_overdue_case_climbs_one_level_per_stage_limit(catalogued: Engine) -> None:
    engine = catalogued
    with engine.begin() as conn:
        late = new_case(conn, "handling", at(24, 12))  # handle due Tue 12:00
        on_time = new_case(conn, "handling", at(26, 12))
        for status in ("closed", "void", "ledger"):
            new_case(conn, status, at(24, 12))
    assert sweep(engine, at(24, 11, 59)) == []
    first = sweep(engine, at(24, 12, 1))
    assert [(e["incident_id"], e["from_level"], e["level"], e["stage"]) for e in first] == \
        [(late, None, "community", "handle")]
    assert level_of(engine, late) == ("community", at(24, 12, 1))
    # the next level waits one more handle limit (4 working hours) from 12:01: the lunch
    # break (12:00–13:30) does not count, so until 17:30
    assert sweep(engine, at(24, 17, 29)) == []
    assert [e["level"] for e in sweep(engine, at(24, 17, 30))] == ["street"]
    # 4 working hours from Tue 17:30: Wed 09:00–12:00 and 13:30–14:30
    assert sweep(engine, at(25, 14, 29)) == []
    assert [e["level"] for e in sweep(engine, at(25, 14, 30))] == ["district"]
    assert sweep(engine, at(25, 23)) == []  # district is the top
    assert level_of(engine, on_time) == (None, None)
    with engine.connect() as conn:
        steps = conn.execute(text(
            "SELECT action, from_status, to_status, data ->> 'level' FROM case_events "
            "WHERE incident_id = :i ORDER BY id"), {"i": late}).all()
        assert [tuple(s) for s in steps] == [
            ("escalate", "handling", "handling", "community"),
            ("escalate", "handling", "handling", "street"),
            ("escalate", "handling", "handling", "district")]
        audited = conn.execute(text(
            "SELECT actor, after ->> 'escalation_level' FROM audit_log "
            "WHERE action = 'incident.escalate' AND object_id = :i ORDER BY id"),
            {"i": str(late)}).all()
        assert [tuple(a) for a in audited] == [("worker", "community"), ("worker", "street"),
                                               ("worker", "district")]
        # nothing else was touched
        assert conn.scalar(text("SELECT count(*) FROM incidents "
                                "WHERE escalation_level IS NOT NULL")) == 1


def test_a_case_back_on_time_waits_for_its_new_deadline(catalogued: Engine) -> None:
    engine = catalogued
    with engine.begin() as conn:
        incident_id = new_case(conn, "handling", at(24, 12))
    sweep(engine, at(24, 12, 1))
    with engine.begin() as conn:  # an approved extension: handle due Thu 10:00
        conn.execute(text("UPDATE incidents SET deadlines = deadlines || "
                          "'{\"handle\": \"2026-11-26T10:00:00+08:00\"}' WHERE id = :i"),
                     {"i": incident_id})
    assert sweep(engine, at(25, 17, 0)) == []  # not overdue any more
    # overdue again, but street only one limit (4 working hours) after 10:00: 15:30
    assert sweep(engine, at(26, 15, 29)) == []
    assert [e["level"] for e in sweep(engine, at(26, 15, 30))] == ["street"]


def test_escalations_are_announced(catalogued: Engine) -> None:
    engine = catalogued
    with engine.begin() as conn:
        incident_id = new_case(conn, "dispatched", at(24, 12), joint=True)
    raw = engine.raw_connection()
    raw.detach()
    try:
        raw.set_isolation_level(0)  # autocommit: LISTEN takes effect at once
        raw.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
        sweep(engine, at(24, 15))
        select.select([raw], [], [], 5)
        raw.poll()  # type: ignore[attr-defined]
        payloads = [json.loads(n.payload) for n in raw.notifies]  # type: ignore[attr-defined]
    finally:
        raw.close()
    keys = ("type", "incident_id", "level", "from_level", "stage", "codes")
    assert [{k: p[k] for k in keys} for p in payloads] == [
        {"type": "incident.escalated", "incident_id": incident_id, "level": "community",
         "from_level": None, "stage": "handle", "codes": ["110102", "110102020", "110106"]}]
    assert payloads[0]["layers"] == ["incidents"] and len(payloads[0]["points"]) == 1


def test_two_sweeps_at_once_escalate_each_case_once(catalogued: Engine) -> None:
    engine = catalogued
    with engine.begin() as conn:
        cases = [new_case(conn, "handling", at(24, 12)) for _ in range(30)]
    # one sweep holds its transaction open while the other runs: the second does nothing
    swept = threading.Event()
    second_done = threading.Event()
    results: dict[str, list[dict[str, Any]]] = {}

    def holder() -> None:
        with engine.begin() as conn:
            results["first"] = escalation.sweep(conn, at(24, 13))
            swept.set()
            second_done.wait(30)

    def other() -> None:
        swept.wait(30)
        try:
            results["second"] = sweep(engine, at(24, 13))
        finally:
            second_done.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(e["incident_id"] for e in results["first"]) == cases
    assert results["second"] == []
    # free-running: sweeps racing at the next level still escalate each case once
    barrier = threading.Barrier(4)
    made: list[list[dict[str, Any]]] = []

    def racer() -> None:
        barrier.wait(30)
        made.append(sweep(engine, at(24, 17, 45)))

    threads = [threading.Thread(target=racer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(e["incident_id"] for batch in made for e in batch) == cases
    with engine.connect() as conn:
        counts = conn.execute(text(
            "SELECT incident_id, count(*) FROM case_events WHERE action = 'escalate' "
            "GROUP BY incident_id")).all()
        assert {tuple(c) for c in counts} == {(i, 2) for i in cases}
        assert conn.scalar(text("SELECT count(*) FROM audit_log "
                                "WHERE action = 'incident.escalate'")) == 60


def test_worker_run_once(catalogued: Engine, db_url: str) -> None:
    with catalogued.begin() as conn:
        incident_id = new_case(conn, "handling", at(2, 12))  # long overdue by the real clock
    result = CliRunner().invoke(app, ["worker", "run", "--once"],
                                env={"DATABASE_URL": db_url})
    assert result.exit_code == 0, result.output
    assert f"incident {incident_id}" in result.output and "community" in result.output
    assert level_of(catalogued, incident_id)[0] == "community"
    again = CliRunner().invoke(app, ["worker", "run", "--once"],
                               env={"DATABASE_URL": db_url})
    assert again.exit_code == 0 and "nothing to escalate" in again.output


def test_worker_loop_stops_cleanly_on_sigterm(catalogued: Engine, db_url: str) -> None:
    with catalogued.begin() as conn:
        incident_id = new_case(conn, "handling", at(2, 12))
    gridops = os.path.join(os.path.dirname(sys.executable), "gridops")
    proc = subprocess.Popen([gridops, "worker", "run", "--interval", "3600"],
                            env={**os.environ, "DATABASE_URL": db_url,
                                 "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:  # wait for the first sweep's summary
            lines.append(line)
            if "escalated 1 case" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, "".join(lines) + rest
    assert "escalation worker stopped" in rest
    assert level_of(catalogued, incident_id)[0] == "community"
