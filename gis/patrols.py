"""Street-chief patrols (日巡): sessions on an assigned street, GPS fixes (cleaned into a
track, gis.patrol_track), checklist ticks (巡查清单, e.g. the 十有十无), problems reported
through the normal intake, the end with its summary; reading patrols as GeoJSON built by
PostGIS, and a person's streets with today's status. Rules: docs/patrols.md.

Who (the API answers 403 `role` before reaching here for other roles):
- a *patrol user* is a user with role street_chief bound to a person (Forbidden naming
  `role` or `person` otherwise); they start patrols only on streets assigned to their
  person now (any assignment role: street chief, alley chief, steward), and change only
  their own patrols;
- readers: admins; operators, viewers and planners whose scope holds the street's district
  or street office (an empty scope: the whole city); the person themself. A patrol the
  caller may not read is "not found" (404), exactly like a missing id; one they may read
  but do not own is Forbidden (403) to change.

Idempotency (an offline phone retries): a start by its key (the same key for another
street or person is a Conflict naming the key), fixes by (patrol, time), checks by
(patrol, item) where the later `checked_at` wins, reports by the incident's key, the end by
the patrol's state. The patrol row is locked for every change, so one patrol's changes
are serialised.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from gis import audit, events, intake, patrol_settings
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.features import CHINA_TZ, GEOJSON_DECIMALS
from gis.intake import Intake, NewIncident
from gis.patrol_track import (
    CLOCK_SKEW,
    EARLY_FIX,
    METRIC_SRID,
    Fix,
    check_batch,
    counts,
    rebuild,
    store,
)
from gis.placement import Point
from gis.scope import SCOPED_READERS, any_of, sees_all
from gis.workcalendar import days_between

PATROL_ROLE = "street_chief"
MAX_START_AGE = timedelta(hours=24)  # a start synced late by an offline phone
KEY_MIN, KEY_MAX = 8, 128
MAX_NOTE = 500
MAX_ITEMS = 200
MAX_LABEL = 200
MAX_GROUP = 32
ITEM_CODE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
TZ = "Asia/Shanghai"

# -- who -------------------------------------------------------------------------------


def patrol_person(user: Principal) -> int:
    """The person a patrol user patrols as; Forbidden naming `role` or `person`."""
    if not user.has_any(PATROL_ROLE):
        raise Forbidden("patrols are for 街巷长 and 小巷管家 (role street_chief); you have "
                        f"{', '.join(sorted(user.roles)) or 'no role'}", field="role")
    if user.person_id is None:
        raise Forbidden("your login is not bound to a person (街巷长/小巷管家): ask an "
                        "admin to bind it", field="person")
    return user.person_id


def patrol_visible(reader: Principal) -> tuple[str, dict[str, Any]]:
    """A boolean SQL expression over patrols `pa` joined to their street `s`: true where
    `reader` may read the patrol; and its bound parameters (prefixed `pv_`)."""
    if sees_all(reader):
        return "true", {}
    terms: list[str] = []
    params: dict[str, Any] = {}
    if reader.has_any(*SCOPED_READERS):
        params["pv_scope"] = list(reader.scope_codes)
        terms.append("pa.district_code = ANY(:pv_scope) "
                     "OR s.street_office_code = ANY(:pv_scope)")
    if reader.person_id is not None:
        params["pv_person"] = reader.person_id
        terms.append("pa.person_id = :pv_person")
    return any_of(terms), params


def _lock_own(conn: Connection, user: Principal, patrol_id: int) -> Any:
    """The patrol row of `user`'s person, locked for a change. Forbidden for a non-patrol
    user or a patrol they may read but do not own; NotFound when they may not read it."""
    person = patrol_person(user)
    visible, params = patrol_visible(user)
    row = conn.execute(text(f"""
        SELECT pa.id, pa.person_id, pa.user_id, pa.street_id, pa.status, pa.started_at,
               pa.ended_at, pa.district_code, s.street_office_code, s.name AS street_name,
               pe.name AS person_name, now() AS now
        FROM patrols pa JOIN streets s ON s.id = pa.street_id
        JOIN people pe ON pe.id = pa.person_id
        WHERE pa.id = :id AND ({visible})
        FOR UPDATE OF pa
    """), {**params, "id": patrol_id}).one_or_none()  # noqa: S608 - constant fragments
    if row is None:
        raise NotFound(f"no patrol {patrol_id} (or not one you may see)", field="patrol_id")
    if row.person_id != person:
        raise Forbidden(f"patrol {patrol_id} is {row.person_name}'s on {row.street_name}; "
                        "only the person patrolling may change it", field="patrol_id")
    return row


def _aware(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} needs an offset, e.g. 2026-11-20T16:40:00+08:00",
                           field=field)
    return value


def _stamp(value: datetime) -> str:
    return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def _check_time(value: datetime, field: str, *, now: datetime, started_at: datetime,
                ended_at: datetime | None) -> datetime:
    """A client's time of something done during a patrol: with an offset, not ahead of
    the database clock by more than CLOCK_SKEW, not more than EARLY_FIX before the start
    (InvalidInput); after the end of an ended patrol: Conflict."""
    _aware(value, field)
    if value > now + CLOCK_SKEW:
        raise InvalidInput(f"{field} {_stamp(value)} is in the future (server clock "
                           f"{_stamp(now)})", field=field)
    if value < started_at - EARLY_FIX:
        raise InvalidInput(f"{field} {_stamp(value)} is before the patrol started "
                           f"({_stamp(started_at)})", field=field)
    if ended_at is not None and value > ended_at:
        raise Conflict(f"{field} {_stamp(value)} is after the patrol ended "
                       f"({_stamp(ended_at)}); an ended patrol takes only what happened "
                       "before its end", field=field)
    return value


def _ended_at(row: Any) -> datetime | None:
    """None while the patrol is under way; its end (or its start, if none) afterwards."""
    if row.status == "active":
        return None
    return row.ended_at if row.ended_at is not None else row.started_at


def _emit(conn: Connection, kind: str, row: Any, user_id: int | None,
          **payload: Any) -> None:
    """A live event about a patrol (gis/events.py) for readers of its district and street
    office, and its person. Patrols are no tile layer: `layers` is empty."""
    events.emit(conn, kind, [row.district_code, row.street_office_code],
                patrol_id=int(row.id), street_id=int(row.street_id),
                person_ids=[int(row.person_id)],
                user_ids=[] if user_id is None else [int(user_id)], layers=[], **payload)


# -- the checklist ---------------------------------------------------------------------


def checklist(conn: Connection, *, include_inactive: bool = False) -> list[dict[str, Any]]:
    """The checklist items by position: [{code, group, zh, en}] (with `active` when
    `include_inactive`)."""
    rows = conn.execute(text("""
        SELECT code, item_group AS "group", zh, en, active FROM checklist_items
        WHERE active OR :all ORDER BY position, code
    """), {"all": include_inactive}).mappings().all()
    return [dict(r) if include_inactive else {k: r[k] for k in ("code", "group", "zh", "en")}
            for r in rows]


def _check_items(items: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The items, checked; InvalidInput naming `[i].field`."""
    if not 1 <= len(items) <= MAX_ITEMS:
        raise InvalidInput(f"send 1 to {MAX_ITEMS} items; got {len(items)}", field="items")
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        code = str(item.get("code", ""))
        if not ITEM_CODE.match(code):
            raise InvalidInput(f"[{i}].code {code!r}: 2–64 lower-case letters, digits or _, "
                               "starting with a letter", field=f"[{i}].code")
        if code in seen:
            raise InvalidInput(f"[{i}].code {code!r} is listed twice", field=f"[{i}].code")
        seen.add(code)
        clean = {"code": code}
        for name, limit in (("group", MAX_GROUP), ("zh", MAX_LABEL), ("en", MAX_LABEL)):
            value = str(item.get(name) or "").strip()
            if not value or len(value) > limit or any(ord(ch) < 32 for ch in value):
                raise InvalidInput(f"[{i}].{name} must be 1–{limit} printable characters",
                                   field=f"[{i}].{name}")
            clean[name] = value
        out.append({**clean, "active": bool(item.get("active", True))})
    return out


def replace_checklist(conn: Connection, items: Sequence[Mapping[str, Any]],
                      by: Actor) -> list[dict[str, Any]]:
    """Replace the checklist with `items` [{code, group, zh, en, active}] in this order
    (caller commits; audited with before and after). Items left out are deleted, or
    deactivated when a patrol has ticked them. Returns every item, inactive ones last."""
    new = _check_items(items)
    conn.execute(text("SELECT 1 FROM checklist_items FOR UPDATE"))
    before = checklist(conn, include_inactive=True)
    conn.execute(text("""
        INSERT INTO checklist_items (code, item_group, zh, en, position, active)
        SELECT b.code, b."group", b.zh, b.en, b.position, b.active
        FROM jsonb_to_recordset(CAST(:items AS jsonb))
             AS b(code text, "group" text, zh text, en text, active boolean, position int)
        ON CONFLICT (code) DO UPDATE SET item_group = EXCLUDED.item_group,
            zh = EXCLUDED.zh, en = EXCLUDED.en, position = EXCLUDED.position,
            active = EXCLUDED.active
    """), {"items": json.dumps([{**item, "position": i} for i, item in enumerate(new, 1)],
                               ensure_ascii=False)})
    kept = [item["code"] for item in new]
    conn.execute(text("""
        DELETE FROM checklist_items c WHERE NOT (c.code = ANY(:kept))
          AND NOT EXISTS (SELECT 1 FROM patrol_checks pc WHERE pc.item_code = c.code)
    """), {"kept": kept})
    conn.execute(text("""
        UPDATE checklist_items c SET active = false, position = :n + r.rank
        FROM (SELECT code, row_number() OVER (ORDER BY position, code) AS rank
              FROM checklist_items WHERE NOT (code = ANY(:kept))) r
        WHERE c.code = r.code
    """), {"kept": kept, "n": len(kept)})
    after = checklist(conn, include_inactive=True)
    audit.record(conn, by, action="patrol_checklist.replace", object_type="checklist",
                 object_id=None, before=before, after=after)
    return sorted(after, key=lambda item: not item["active"])


# -- starting --------------------------------------------------------------------------

_STREET = text("""
    SELECT s.id, s.name, s.district_code, s.street_office_code, now() AS now,
           EXISTS (SELECT 1 FROM street_assignments sa
                   WHERE sa.street_id = s.id AND sa.person_id = :person
                     AND sa.valid_from <= now()
                     AND (sa.valid_to IS NULL OR sa.valid_to > now())) AS assigned
    FROM streets s WHERE s.id = :street_id
""")

_BY_KEY = text("SELECT id, person_id, street_id FROM patrols WHERE idempotency_key = :key")


def _check_key(key: str | None, field: str = "Idempotency-Key") -> str:
    if key is None or not KEY_MIN <= len(key) <= KEY_MAX:
        raise InvalidInput(f"{field} is required: {KEY_MIN}–{KEY_MAX} characters (e.g. a "
                           "UUID made on the phone)", field=field)
    return key


def _retry(earlier: Any, key: str, person: int, street_id: int) -> tuple[int, bool]:
    """The patrol an earlier start with `key` made; Conflict when the key started another."""
    if earlier.person_id != person:
        raise Conflict(f"Idempotency-Key {key!r} was already used for another patrol; use "
                       "a new key for a new patrol", field="Idempotency-Key")
    if earlier.street_id != street_id:
        raise Conflict(f"Idempotency-Key {key!r} already started patrol {earlier.id} on "
                       f"street {earlier.street_id}; use a new key for a new patrol",
                       field="Idempotency-Key")
    return int(earlier.id), False


def start_patrol(conn: Connection, user: Principal, street_id: int, key: str | None,
                 by: Actor, started_at: datetime | None = None) -> tuple[int, bool]:
    """Start a patrol of `user`'s person on `street_id` (caller commits): (its id, whether
    this call created it). A retry with the same key returns the same patrol. Forbidden
    naming `street_id` when the street is not assigned to the person now; Conflict naming
    `street_id` when the person already has a patrol under way."""
    person = patrol_person(user)
    key = _check_key(key)
    earlier = conn.execute(_BY_KEY, {"key": key}).one_or_none()
    if earlier is not None:
        return _retry(earlier, key, person, street_id)
    street = conn.execute(_STREET, {"street_id": street_id, "person": person}).one_or_none()
    if street is None:
        raise NotFound(f"no street {street_id}", field="street_id")
    if not street.assigned:
        raise Forbidden(f"{street.name} (street {street_id}) is not assigned to you: you may "
                        "patrol only your own streets", field="street_id")
    at = street.now if started_at is None else _aware(started_at, "started_at")
    if at > street.now + CLOCK_SKEW:
        raise InvalidInput(f"started_at {_stamp(at)} is in the future (server clock "
                           f"{_stamp(street.now)})", field="started_at")
    if at < street.now - MAX_START_AGE:
        raise InvalidInput(f"started_at {_stamp(at)} is more than "
                           f"{MAX_START_AGE.total_seconds() / 3600:.0f} h ago",
                           field="started_at")
    # ON CONFLICT covers both the key and the one-active-patrol-per-person index.
    patrol_id = conn.scalar(text("""
        INSERT INTO patrols (idempotency_key, person_id, user_id, street_id, started_at,
                             status, district_code)
        VALUES (:key, :person, :user_id, :street_id, :at, 'active', :district)
        ON CONFLICT DO NOTHING
        RETURNING id
    """), {"key": key, "person": person, "user_id": user.user_id, "street_id": street_id,
           "at": at, "district": street.district_code})
    if patrol_id is None:
        earlier = conn.execute(_BY_KEY, {"key": key}).one_or_none()
        if earlier is not None:  # a concurrent retry with the same key won
            return _retry(earlier, key, person, street_id)
        active = conn.execute(text("""
            SELECT pa.id, s.name FROM patrols pa JOIN streets s ON s.id = pa.street_id
            WHERE pa.person_id = :person AND pa.status = 'active'
        """), {"person": person}).one_or_none()
        where = f"patrol {active.id} on {active.name}" if active else "another patrol"
        raise Conflict(f"you already have {where} under way: end it before starting "
                       "another", field="street_id")
    row = conn.execute(text("""
        SELECT pa.id, pa.person_id, pa.street_id, pa.district_code, s.street_office_code
        FROM patrols pa JOIN streets s ON s.id = pa.street_id WHERE pa.id = :id
    """), {"id": patrol_id}).one()
    audit.record(conn, by, action="patrol.start", object_type="patrol",
                 object_id=str(patrol_id), district_code=street.district_code,
                 after={"street_id": street_id, "person_id": person, "started_at": at,
                        "idempotency_key": key})
    _emit(conn, "patrol.started", row, user.user_id, status="active")
    return int(patrol_id), True


# -- fixes, checks, reports ------------------------------------------------------------


def add_fixes(conn: Connection, user: Principal, patrol_id: int, fixes: Sequence[Fix],
              by: Actor, *, srid: int = METRIC_SRID) -> dict[str, Any]:
    """Store a batch of fixes of `user`'s patrol (caller commits), all or nothing, then
    re-clean the patrol's fixes and rebuild its track and coverage. A fix at a time already
    stored is ignored. Returns {received, new, kept, dropped, coverage, track_points}
    (kept and dropped: the patrol's totals)."""
    row = _lock_own(conn, user, patrol_id)
    ended = _ended_at(row)
    batch = check_batch(fixes, now=row.now, started_at=row.started_at, ended_at=ended)
    new = store(conn, patrol_id, row.district_code, batch)
    if new:
        cfg = patrol_settings.current(conn)
        result = rebuild(conn, patrol_id, max_accuracy_m=cfg["cleaning"]["max_accuracy_m"],
                         max_speed_mps=cfg["cleaning"]["max_speed_mps"],
                         radius_m=cfg["coverage"]["radius_m"], srid=srid)
        if ended is not None:  # late fixes synced after the end: the summary follows
            _summarise(conn, patrol_id)
        audit.record(conn, by, action="patrol.fixes", object_type="patrol",
                     object_id=str(patrol_id), district_code=row.district_code,
                     after={"received": batch.received, "new": new, "kept": result.kept,
                            "dropped": result.dropped, "coverage": result.coverage})
    else:
        result = counts(conn, patrol_id)
    return {"received": batch.received, "new": new, "kept": result.kept,
            "dropped": result.dropped, "coverage": round(result.coverage, 4),
            "track_points": result.track_points}


_CHECK = """json_build_object(
    'code', c.item_code, 'group', ci.item_group, 'zh', ci.zh, 'en', ci.en, 'ok', c.ok,
    'note', c.note, 'checked_at', c.checked_at)"""


def set_check(conn: Connection, user: Principal, patrol_id: int, item_code: str, *,
              ok: bool, note: str | None, checked_at: datetime, by: Actor) -> dict[str, Any]:
    """Tick a checklist item on `user`'s patrol (caller commits): the tick with the later
    `checked_at` wins, so re-sending is harmless. NotFound naming `item_code` for an
    unknown item, InvalidInput for an inactive one. Returns the stored check."""
    row = _lock_own(conn, user, patrol_id)
    item = conn.execute(text("SELECT code, zh, active FROM checklist_items WHERE code = :c"),
                        {"c": item_code}).one_or_none()
    if item is None:
        raise NotFound(f"no checklist item {item_code!r} (GET /api/v1/patrol/checklist "
                       "lists them)", field="item_code")
    if not item.active:
        raise InvalidInput(f"checklist item {item_code!r} ({item.zh}) is no longer on the "
                           "checklist", field="item_code")
    note = (note or "").strip() or None
    if note is not None and (len(note) > MAX_NOTE
                             or any(ord(ch) < 32 and ch not in "\t\n\r" for ch in note)):
        raise InvalidInput(f"note must be at most {MAX_NOTE} printable characters",
                           field="note")
    _check_time(checked_at, "checked_at", now=row.now, started_at=row.started_at,
                ended_at=_ended_at(row))
    changed = conn.scalar(text("""
        INSERT INTO patrol_checks AS pc (patrol_id, item_code, ok, note, checked_at)
        VALUES (:patrol_id, :code, :ok, :note, :at)
        ON CONFLICT (patrol_id, item_code) DO UPDATE
        SET ok = EXCLUDED.ok, note = EXCLUDED.note, checked_at = EXCLUDED.checked_at,
            received_at = now()
        WHERE pc.checked_at < EXCLUDED.checked_at
        RETURNING true
    """), {"patrol_id": patrol_id, "code": item_code, "ok": ok, "note": note,
           "at": checked_at})
    if changed:
        audit.record(conn, by, action="patrol.check", object_type="patrol",
                     object_id=str(patrol_id), district_code=row.district_code,
                     after={"item_code": item_code, "ok": ok, "note": note,
                            "checked_at": checked_at})
    return dict(conn.scalar(text(f"""
        SELECT {_CHECK} FROM patrol_checks c JOIN checklist_items ci ON ci.code = c.item_code
        WHERE c.patrol_id = :patrol_id AND c.item_code = :code
    """), {"patrol_id": patrol_id, "code": item_code}))  # noqa: S608 - a constant


@dataclass(frozen=True)
class Report:
    """A problem seen during a patrol (the point already in WGS84)."""

    event_code: str
    point: Point
    description: str
    event_kind: str = "event"
    address: str | None = None
    reported_at: datetime | None = None


def report_problem(conn: Connection, user: Principal, patrol_id: int, problem: Report,
                   key: str | None, by: Actor) -> Intake:
    """Report a problem on `user`'s patrol through the normal intake (caller commits):
    routed to the patrol's street (the point within 300 m of it), source street_chief or
    steward by the person's role on the street, `patrol_id` set. A retry with the same
    key returns the first incident; a key used outside this patrol is a Conflict."""
    row = _lock_own(conn, user, patrol_id)
    key = _check_key(key)
    earlier = conn.execute(text("SELECT id, patrol_id FROM incidents "
                                "WHERE idempotency_key = :key"), {"key": key}).one_or_none()
    if earlier is not None and earlier.patrol_id != patrol_id:
        raise Conflict(f"Idempotency-Key {key!r} was already used for another report; use "
                       "a new key for a new report", field="Idempotency-Key")
    ended = _ended_at(row)
    if earlier is None:  # a new report: the patrol must still take it
        if problem.reported_at is not None:
            _check_time(problem.reported_at, "reported_at", now=row.now,
                        started_at=row.started_at, ended_at=ended)
        elif ended is not None:
            raise Conflict(f"patrol {patrol_id} ended at {_stamp(ended)}: send the report's "
                           "reported_at (when it was seen during the patrol), or report it "
                           "outside the patrol", field="reported_at")
    role = conn.scalar(text("""
        SELECT role FROM street_assignments WHERE person_id = :person AND street_id = :street
        ORDER BY (valid_to IS NULL) DESC, valid_from DESC LIMIT 1
    """), {"person": row.person_id, "street": row.street_id})
    new = NewIncident(
        event_code=problem.event_code, event_kind=problem.event_kind, point=problem.point,
        description=problem.description, address=problem.address,
        source="steward" if role == "steward" else "street_chief",
        reported_at=problem.reported_at, idempotency_key=key,
        street_id=int(row.street_id), patrol_id=patrol_id)
    return intake.create_incident(conn, new, user, by)


# -- the end ---------------------------------------------------------------------------

# The summary of a patrol (over patrols `pa`), as stored at its end.
_SUMMARY = """jsonb_build_object(
    'duration_s', round(extract(epoch FROM coalesce(pa.ended_at, now()) - pa.started_at)),
    'distance_m', round(CAST(coalesce(ST_Length(CAST(ST_Force2D(pa.track) AS geography)), 0)
                             AS numeric), 1),
    'coverage', round(CAST(pa.coverage AS numeric), 4),
    'fixes', (SELECT jsonb_build_object(
                'total', count(*), 'kept', count(*) FILTER (WHERE pp.kept),
                'dropped', count(*) FILTER (WHERE NOT pp.kept))
              FROM patrol_points pp WHERE pp.patrol_id = pa.id),
    'checks', jsonb_build_object(
        'done', (SELECT count(*) FROM patrol_checks pc JOIN checklist_items ci
                 ON ci.code = pc.item_code WHERE pc.patrol_id = pa.id AND ci.active),
        'total', (SELECT count(*) FROM checklist_items WHERE active)),
    'problems', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                    'code', pc.item_code, 'zh', ci.zh, 'en', ci.en, 'note', pc.note)
                    ORDER BY ci.position), '[]'::jsonb)
                 FROM patrol_checks pc JOIN checklist_items ci ON ci.code = pc.item_code
                 WHERE pc.patrol_id = pa.id AND NOT pc.ok),
    'reports', (SELECT count(*) FROM incidents i WHERE i.patrol_id = pa.id))"""


def _summarise(conn: Connection, patrol_id: int) -> dict[str, Any]:
    """Compute and store the patrol's summary."""
    return dict(conn.scalar(text(f"""
        UPDATE patrols pa SET summary = {_SUMMARY} WHERE pa.id = :id RETURNING pa.summary
    """), {"id": patrol_id}))  # noqa: S608 - a constant


def end_patrol(conn: Connection, user: Principal, patrol_id: int, by: Actor,
               ended_at: datetime | None = None) -> bool:
    """End `user`'s patrol (caller commits) at `ended_at` (default now; never before the
    last fix, tick or report already stored) and store its summary; whether this call
    ended it (an ended patrol is left as it is)."""
    row = _lock_own(conn, user, patrol_id)
    if row.status != "active":
        return False
    at = row.now if ended_at is None else _aware(ended_at, "ended_at")
    if at > row.now + CLOCK_SKEW:
        raise InvalidInput(f"ended_at {_stamp(at)} is in the future (server clock "
                           f"{_stamp(row.now)})", field="ended_at")
    if at < row.started_at:
        raise InvalidInput(f"ended_at {_stamp(at)} is before the patrol started "
                           f"({_stamp(row.started_at)})", field="ended_at")
    last = conn.scalar(text("""
        SELECT greatest((SELECT max(at) FROM patrol_points WHERE patrol_id = :id),
                        (SELECT max(checked_at) FROM patrol_checks WHERE patrol_id = :id),
                        (SELECT max(reported_at) FROM incidents WHERE patrol_id = :id))
    """), {"id": patrol_id})
    if last is not None and last > at:
        at = last
    conn.execute(text("UPDATE patrols SET status = 'ended', ended_at = :at WHERE id = :id"),
                 {"at": at, "id": patrol_id})
    summary = _summarise(conn, patrol_id)
    audit.record(conn, by, action="patrol.end", object_type="patrol",
                 object_id=str(patrol_id), district_code=row.district_code,
                 before={"status": "active"},
                 after={"status": "ended", "ended_at": at, "summary": summary})
    _emit(conn, "patrol.ended", row, user.user_id, status="ended",
          coverage=summary.get("coverage"))
    return True


# -- reading ---------------------------------------------------------------------------

# One patrol as a Feature (over patrols `pa`, streets `s`, people `pe`; bound :srid).
_FEATURE = f"""json_build_object(
    'type', 'Feature', 'id', pa.id,
    'geometry', CASE WHEN pa.track IS NOT NULL
                     THEN ST_AsGeoJSON(ST_Force2D(pa.track), {GEOJSON_DECIMALS})::json END,
    'properties', json_build_object(
        'id', pa.id, 'idempotency_key', pa.idempotency_key,
        'street', json_build_object(
            'id', s.id, 'name', s.name, 'road_class', s.road_class,
            'street_office_code', s.street_office_code,
            'length_m', round(CAST(ST_Length(ST_Transform(s.geom, :srid)) AS numeric), 1)),
        'person', json_build_object('id', pe.id, 'name', pe.name),
        'status', pa.status, 'started_at', pa.started_at, 'ended_at', pa.ended_at,
        'duration_s', round(extract(epoch FROM
            coalesce(pa.ended_at, greatest(now(), pa.started_at)) - pa.started_at)),
        'distance_m', round(CAST(coalesce(ST_Length(CAST(ST_Force2D(pa.track) AS geography)),
                                          0) AS numeric), 1),
        'coverage', round(CAST(pa.coverage AS numeric), 4),
        'fixes', (SELECT json_build_object(
                    'total', coalesce(sum(pp.n), 0),
                    'kept', coalesce(sum(pp.n) FILTER (WHERE pp.kept), 0),
                    'dropped', coalesce(json_object_agg(pp.drop_reason, pp.n)
                                        FILTER (WHERE NOT pp.kept
                                                AND pp.drop_reason IS NOT NULL), '{{}}'::json))
                  FROM (SELECT kept, drop_reason, count(*) AS n FROM patrol_points
                        WHERE patrol_id = pa.id GROUP BY kept, drop_reason) pp),
        'checks', (SELECT coalesce(json_agg({_CHECK} ORDER BY ci.position, c.item_code),
                                   '[]'::json)
                   FROM patrol_checks c JOIN checklist_items ci ON ci.code = c.item_code
                   WHERE c.patrol_id = pa.id),
        'reports', (SELECT coalesce(json_agg(json_build_object(
                        'incident_id', i.id, 'event_kind', ec.kind, 'event_code', ec.code,
                        'event_name', ec.name, 'status', i.status,
                        'description', i.description, 'reported_at', i.reported_at)
                        ORDER BY i.reported_at, i.id), '[]'::json)
                    FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
                    WHERE i.patrol_id = pa.id),
        'summary', pa.summary))"""  # noqa: S608 - constant fragments

_FROM = """FROM patrols pa JOIN streets s ON s.id = pa.street_id
           JOIN people pe ON pe.id = pa.person_id"""


def get_patrol(conn: Connection, reader: Principal, patrol_id: int, *,
               srid: int = METRIC_SRID) -> dict[str, Any]:
    """One patrol as a Feature (geometry: the cleaned track, 2D; null with fewer than two
    kept fixes); NotFound when it does not exist or `reader` may not see it."""
    visible, params = patrol_visible(reader)
    sql = f"SELECT {_FEATURE} {_FROM} WHERE pa.id = :id AND ({visible})"
    feature = conn.scalar(text(sql), {**params, "id": patrol_id, "srid": srid})
    if feature is None:
        raise NotFound(f"no patrol {patrol_id} (or not one you may see)", field="patrol_id")
    return dict(feature)


@dataclass(frozen=True)
class PatrolFilter:
    """Filters of the patrol list; None means any."""

    person_id: int | None = None
    street_id: int | None = None
    day: date | None = None  # Beijing date the patrol started


def list_patrols(conn: Connection, reader: Principal, where: PatrolFilter, *, limit: int,
                 srid: int = METRIC_SRID) -> dict[str, Any]:
    """Patrols `reader` may see matching `where`, newest first, at most `limit`, as a
    FeatureCollection."""
    visible, params = patrol_visible(reader)
    lo, hi = days_between(where.day, where.day, TZ) if where.day is not None else (None, None)
    features = conn.scalars(text(f"""
        SELECT {_FEATURE} {_FROM}
        WHERE ({visible})
          AND (CAST(:person AS bigint) IS NULL OR pa.person_id = :person)
          AND (CAST(:street AS bigint) IS NULL OR pa.street_id = :street)
          AND (CAST(:lo AS timestamptz) IS NULL OR (pa.started_at >= :lo
                                                   AND pa.started_at < :hi))
        ORDER BY pa.started_at DESC, pa.id DESC
        LIMIT :limit
    """), {**params, "person": where.person_id,
           "street": where.street_id, "lo": lo, "hi": hi, "limit": limit, "srid": srid}).all()
    return {"type": "FeatureCollection", "features": [dict(f) for f in features],
            "numberReturned": len(features)}


def list_points(conn: Connection, reader: Principal, patrol_id: int) -> dict[str, Any]:
    """The raw fixes of a patrol (kept and dropped, by time) as a FeatureCollection;
    NotFound when `reader` may not see the patrol."""
    visible, params = patrol_visible(reader)
    found = conn.scalar(text(f"""
        SELECT json_build_object('type', 'FeatureCollection',
          'features', (SELECT coalesce(json_agg(json_build_object(
              'type', 'Feature',
              'geometry', ST_AsGeoJSON(pp.geom, {GEOJSON_DECIMALS})::json,
              'properties', json_build_object(
                  'at', pp.at, 'accuracy_m', pp.accuracy_m, 'kept', pp.kept,
                  'drop_reason', pp.drop_reason)) ORDER BY pp.at), '[]'::json)
              FROM patrol_points pp WHERE pp.patrol_id = pa.id))
        FROM patrols pa JOIN streets s ON s.id = pa.street_id
        WHERE pa.id = :id AND ({visible})
    """), {**params, "id": patrol_id})  # noqa: S608 - constant fragments
    if found is None:
        raise NotFound(f"no patrol {patrol_id} (or not one you may see)", field="patrol_id")
    collection = dict(found)
    collection["numberReturned"] = len(collection["features"])
    return collection


# A person's day: who, the patrol under way, and each street assigned now with today's
# patrols (Beijing date) and the coverage of their tracks together.
_MY_DAY = text(f"""
    WITH day AS (
        SELECT d, CAST(d AS timestamp) AT TIME ZONE '{TZ}' AS lo,
               CAST(d + 1 AS timestamp) AT TIME ZONE '{TZ}' AS hi
        FROM (SELECT CAST(now() AT TIME ZONE '{TZ}' AS date) AS d) x),
    mine AS (
        SELECT DISTINCT ON (s.id) s.id, s.name, s.road_class, s.geom, sa.role
        FROM street_assignments sa JOIN streets s ON s.id = sa.street_id
        WHERE sa.person_id = :person AND sa.valid_from <= now()
          AND (sa.valid_to IS NULL OR sa.valid_to > now())
        ORDER BY s.id, sa.valid_from DESC),
    today AS (
        SELECT pa.street_id, array_agg(pa.id ORDER BY pa.started_at, pa.id) AS ids,
               ST_Collect(pa.track) AS tracks
        FROM patrols pa, day
        WHERE pa.person_id = :person AND pa.started_at >= day.lo AND pa.started_at < day.hi
        GROUP BY pa.street_id)
    SELECT json_build_object(
        'date', (SELECT d FROM day),
        'person', (SELECT json_build_object('id', id, 'name', name, 'phone', phone)
                   FROM people WHERE id = :person),
        'active_patrol', (SELECT json_build_object(
                              'id', pa.id, 'street_id', pa.street_id,
                              'started_at', pa.started_at,
                              'idempotency_key', pa.idempotency_key)
                          FROM patrols pa
                          WHERE pa.person_id = :person AND pa.status = 'active'),
        'streets', json_build_object('type', 'FeatureCollection', 'features',
            (SELECT coalesce(json_agg(json_build_object(
                'type', 'Feature', 'id', m.id,
                'geometry', ST_AsGeoJSON(m.geom, {GEOJSON_DECIMALS})::json,
                'properties', json_build_object(
                    'street_id', m.id, 'name', m.name, 'road_class', m.road_class,
                    'role', m.role,
                    'length_m', round(CAST(ST_Length(ST_Transform(m.geom, :srid))
                                           AS numeric), 1),
                    'today', json_build_object(
                        'patrolled', t.street_id IS NOT NULL,
                        'coverage', CASE WHEN t.street_id IS NOT NULL THEN round(CAST(
                            gridops_street_coverage(m.geom, t.tracks, :radius, :srid)
                            AS numeric), 4) END,
                        'patrol_ids', coalesce(to_json(t.ids), '[]'::json))))
                ORDER BY m.name, m.id), '[]'::json)
             FROM mine m LEFT JOIN today t ON t.street_id = m.id)))
""")  # noqa: S608 - constant fragments; values are bound


def my_day(conn: Connection, user: Principal, *, srid: int = METRIC_SRID) -> dict[str, Any]:
    """A patrol user's day (Beijing date): their person, the patrol under way, the
    coverage settings, and each street assigned now as a Feature with today's status
    {patrolled, coverage (of today's tracks together; null when not patrolled),
    patrol_ids}."""
    person = patrol_person(user)
    cfg = patrol_settings.current(conn)
    day = dict(conn.scalar(_MY_DAY, {"person": person, "srid": srid,
                                     "radius": cfg["coverage"]["radius_m"]}))
    return {"date": day["date"], "person": day["person"],
            "coverage_threshold": cfg["coverage"]["daily_threshold"],
            "radius_m": cfg["coverage"]["radius_m"],
            "active_patrol": day["active_patrol"], "streets": day["streets"]}
