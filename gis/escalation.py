"""Escalation of overdue cases (超期升级): community → street → district.

A sweep looks at every open case (not closed, void or ledger) whose current stage deadline
has passed:
- not escalated yet: it goes to the community level at once;
- at community (or street) level: it goes one level up when one more limit of its current
  stage (in working time, by the work calendar) has passed since the later of its last
  escalation and its current deadline;
- at district level it stays.
One level per case per sweep. Each escalation updates incidents.escalation_level and
escalated_at and writes a case event 'escalate' {level}, an audit row (actor "worker") and
a live event "incident.escalated". Each sweep also prunes live events older than 7 days
(one bounded DELETE).

Several workers may sweep at once: a sweep takes a transaction-level advisory lock and
does nothing (returns []) when another sweep holds it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, text

from gis import catalog, events
from gis.audit import Actor
from gis.workcalendar import NS_PER_S, WorkCalendar
from gis.workflow import ENDED, deadline_sql, limit_seconds

LEVELS = ("community", "street", "district")
LOCK_KEY = 0x67726964_65736331  # "gridesc1": one sweep at a time, across processes
WORKER = Actor("worker")
LIVE_EVENTS_KEPT = timedelta(days=7)  # each sweep prunes older live events (gis/events.py)

_ANY_OPEN = "i.status NOT IN (" + ", ".join(f"'{s}'" for s in ENDED) + ")"

def _candidates_sql(seconds_per_day: int) -> str:
    d = deadline_sql(seconds_per_day, ":now")
    return f"""
        SELECT i.id, i.escalation_level, i.escalated_at, {d.stage} AS stage,
               {d.due_at} AS due_at, ec.time_limits -> {d.stage} AS stage_limit
        FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
        WHERE {_ANY_OPEN} AND {d.overdue}
          AND i.escalation_level IS DISTINCT FROM 'district'
        ORDER BY i.id
    """  # noqa: S608 - constant fragments; values are bound


def _apply_sql(seconds_per_day: int) -> str:
    d = deadline_sql(seconds_per_day, ":now")
    return f"""
        WITH todo AS (
          SELECT * FROM unnest(CAST(:ids AS bigint[]), CAST(:froms AS text[]),
                               CAST(:tos AS text[])) AS t(id, from_level, to_level)),
        u AS (
          UPDATE incidents i
          SET escalation_level = todo.to_level, escalated_at = :now, updated_at = now()
          FROM todo
          WHERE i.id = todo.id
            AND i.escalation_level IS NOT DISTINCT FROM todo.from_level
            AND {_ANY_OPEN} AND {d.overdue}
          RETURNING i.id, i.status, i.district_code, i.street_code, i.joint,
                    todo.from_level, todo.to_level, {d.stage} AS stage, {d.due_at} AS due_at),
        ev AS (
          INSERT INTO case_events (incident_id, action, from_status, to_status, data,
                                   district_code)
          SELECT id, 'escalate', status, status,
                 jsonb_build_object('level', to_level, 'from_level', from_level,
                                    'stage', stage, 'due_at', due_at, 'at', :now),
                 district_code
          FROM u),
        au AS (
          INSERT INTO audit_log (actor, action, object_type, object_id, before, after,
                                 district_code)
          SELECT :actor, 'incident.escalate', 'incident', CAST(id AS text),
                 jsonb_build_object('escalation_level', from_level),
                 jsonb_build_object('escalation_level', to_level, 'escalated_at', :now,
                                    'stage', stage, 'due_at', due_at),
                 district_code
          FROM u)
        SELECT u.id AS incident_id, u.from_level, u.to_level AS level, u.stage, u.due_at,
               u.status, u.district_code,
               gridops_emit('incident.escalated', {events.incident_codes_sql("i")},
                 {events.incident_payload_sql("i")} || jsonb_build_object(
                   'level', u.to_level, 'from_level', u.from_level, 'stage', u.stage))
                 AS event_id
        FROM u JOIN incidents i ON i.id = u.id ORDER BY u.id
    """  # noqa: S608 - constant fragments; values are bound


def next_due(calendar: WorkCalendar, rows: list[Any]) -> npt.NDArray[np.int64]:
    """Vectorised: when each already-escalated row may go one level up (epoch ns): one
    stage limit after the later of its last escalation and its current deadline (working
    time for working units, clock time for natural hours)."""
    if not rows:
        return np.zeros(0, dtype=np.int64)
    base = np.array([int(max(r.escalated_at, r.due_at).timestamp()) * NS_PER_S for r in rows],
                    dtype=np.int64)
    seconds = np.array([limit_seconds(r.stage_limit, calendar.seconds_per_day)
                        if r.stage_limit else 0.0 for r in rows])
    clock = np.array([bool(r.stage_limit) and r.stage_limit["unit"] == "hours" for r in rows])
    worked = calendar.add_working_seconds(base, np.where(clock, 0.0, seconds))
    return np.asarray(np.where(clock, base + np.round(seconds * NS_PER_S).astype(np.int64),
                               worked), dtype=np.int64)


def sweep(conn: Connection, now: datetime | None = None) -> list[dict[str, Any]]:
    """Escalate overdue open cases one level each (caller commits). `now` is the instant
    swept at (default the database clock; tests pass simulated times). Returns the
    escalations made; [] when another sweep is running."""
    if not conn.scalar(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": LOCK_KEY}):
        return []
    at = now or conn.scalar(text("SELECT now()"))
    calendar = catalog.current_calendar(conn)
    day = calendar.seconds_per_day
    rows = conn.execute(text(_candidates_sql(day)), {"now": at}).all()
    fresh = [r for r in rows if r.escalation_level is None]
    waiting = [r for r in rows if r.escalation_level is not None]
    due = next_due(calendar, waiting)
    now_ns = int(at.timestamp()) * NS_PER_S
    todo = [(r.id, None, LEVELS[0]) for r in fresh]
    todo += [(r.id, r.escalation_level, LEVELS[LEVELS.index(r.escalation_level) + 1])
             for r, when in zip(waiting, due, strict=True) if int(when) <= now_ns]
    events.prune(conn, LIVE_EVENTS_KEPT)  # the live feed's replay window (bounded batch)
    if not todo:
        return []
    todo.sort()
    done = conn.execute(text(_apply_sql(day)), {
        "ids": [t[0] for t in todo], "froms": [t[1] for t in todo],
        "tos": [t[2] for t in todo], "now": at, "actor": WORKER.name}).mappings().all()
    return [{k: v for k, v in r.items() if k != "event_id"} for r in done]
