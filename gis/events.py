"""Live events: change notifications that are also rows of `live_events`, so a live feed
can replay what a client missed (migration 0009, `gridops_emit`), and who may see which.

Every event is {"id", "type", "codes": [jurisdiction codes concerned], ...payload}; where the
change has a place the payload names the tile "layers" it changed and its "points"
([[lon, lat], …]) or "bbox" ([minx, miny, maxx, maxy], WGS84), plus the ids it concerns
(incident_id, team_id, dispatch_id …) and, for row-level visibility, "department_ids"
(departments with a task on it), "person_ids" (street chiefs answering for it) and
"user_ids" (its reporter).

Visibility (`visible`) mirrors gis/scope.py and gis/teams.py:
- admins, and operators/planners/viewers with a city-wide scope: every event;
- map-wide changes (boundaries, joint zones, the road graph): every signed-in user;
- operators, planners, viewers: events naming a code at or below one of their scope codes
  (a district scope '110102' sees '110102' and '110102…'; a street scope sees an event
  only when it names that street — a district-level event such as a team's status in the
  district, or a bulk import, is not shown to a street scope; the one exception, as for
  team rows, is a team whose home is the street scope's district);
- dispatchers: events whose `department_ids` hold their department;
- street chiefs: events whose `person_ids` hold their person, or `user_ids` their user
  (the cases they answer for or reported) — as incident visibility has it, a street
  chief's scope codes do not widen this.
A user with several roles sees the union.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.errors import InvalidInput

CHANNEL = "gridops_events"
SCOPED_READERS = ("operator", "viewer", "planner")
# Changes to what every map shows: readable by every signed-in user.
PUBLIC_TYPES = frozenset({"boundaries.changed", "joint_zones.changed", "road_graph.imported"})
LAYERS = ("districts", "streets", "communities", "grids", "buildings", "lanes", "joint_zones",
          "incidents", "teams")
MAX_REPLAY = 1000
PRUNE_BATCH = 10_000
COORD_DECIMALS = 6

_EMIT = text("SELECT gridops_emit(:type, CAST(:codes AS text[]), CAST(:payload AS jsonb))")


def _json(payload: Mapping[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, default=str)


def emit(conn: Connection, type: str, codes: Iterable[str], **payload: Any) -> int:
    """Append a live event and notify listeners (delivered on commit; nothing if the
    caller rolls back). Returns the event id."""
    return int(conn.scalar(_EMIT, {"type": type, "codes": sorted({c for c in codes if c}),
                                   "payload": _json(payload)}))


def incident_codes_sql(alias: str = "i") -> str:
    """SQL: the sorted codes an incident row concerns — district, street and every
    jurisdiction of its joint case — as text[]."""
    return (f"ARRAY(SELECT DISTINCT c FROM unnest(ARRAY[{alias}.district_code, "  # noqa: S608
            f"{alias}.street_code] || ARRAY(SELECT jj ->> 'code' FROM jsonb_array_elements("
            f"coalesce({alias}.joint -> 'jurisdictions', '[]'::jsonb)) AS jj)) AS c "
            "WHERE c IS NOT NULL ORDER BY c)")


def incident_payload_sql(alias: str = "i") -> str:
    """SQL: the payload fields every incident event carries (jsonb): incident_id, incident_status,
    layers, points (its location), person_ids (its street chief and the chiefs assigned to
    its street now), user_ids (its reporter) and department_ids (departments dispatched
    to it or summoned by a whistle on it)."""
    a = alias
    return f"""jsonb_build_object(
        'incident_id', {a}.id, 'incident_status', {a}.status, 'is_joint', {a}.is_joint,
        'layers', jsonb_build_array('incidents'),
        'points', jsonb_build_array(jsonb_build_array(
            round(ST_X({a}.geom)::numeric, {COORD_DECIMALS}),
            round(ST_Y({a}.geom)::numeric, {COORD_DECIMALS}))),
        'person_ids', (SELECT coalesce(jsonb_agg(DISTINCT p.pid ORDER BY p.pid), '[]'::jsonb)
            FROM (SELECT {a}.chief_person_id AS pid
                  UNION SELECT sa.person_id FROM street_assignments sa
                  WHERE sa.street_id = {a}.street_id AND sa.valid_from <= now()
                    AND (sa.valid_to IS NULL OR sa.valid_to > now())) p
            WHERE p.pid IS NOT NULL),
        'user_ids', CASE WHEN {a}.created_by IS NULL THEN '[]'::jsonb
                         ELSE jsonb_build_array({a}.created_by) END,
        'department_ids', (SELECT coalesce(jsonb_agg(DISTINCT d.did ORDER BY d.did),
                                           '[]'::jsonb)
            FROM (SELECT t.department_id AS did FROM dispatches x
                  JOIN teams t ON t.id = x.team_id WHERE x.incident_id = {a}.id
                  UNION SELECT ws.department_id FROM whistles w
                  JOIN whistle_summons ws ON ws.whistle_id = w.id
                  WHERE w.incident_id = {a}.id) d))"""  # noqa: S608 - an alias


_TEAM_POINTS = f"""(SELECT coalesce(jsonb_agg(jsonb_build_array(
        round(ST_X(t.position)::numeric, {COORD_DECIMALS}),
        round(ST_Y(t.position)::numeric, {COORD_DECIMALS})) ORDER BY t.id), '[]'::jsonb)
     FROM teams t WHERE t.id = ANY(CAST(:team_ids AS bigint[])) AND t.position IS NOT NULL)"""  # noqa: S608

_EMIT_INCIDENT = text(f"""
    SELECT gridops_emit(:type, {incident_codes_sql("i")},
        {incident_payload_sql("i")}
        || CASE WHEN cardinality(CAST(:team_ids AS bigint[])) > 0 THEN jsonb_build_object(
               'team_ids', to_jsonb(CAST(:team_ids AS bigint[])),
               'layers', jsonb_build_array('incidents', 'teams'),
               'points', jsonb_build_array(jsonb_build_array(
                   round(ST_X(i.geom)::numeric, {COORD_DECIMALS}),
                   round(ST_Y(i.geom)::numeric, {COORD_DECIMALS}))) || {_TEAM_POINTS})
           ELSE '{{}}'::jsonb END
        || CAST(:payload AS jsonb))
    FROM incidents i WHERE i.id = :incident_id
""")  # noqa: S608 - constant fragments; values are bound


def emit_incident(conn: Connection, type: str, incident_id: int, *,
                  team_ids: Sequence[int] = (), **payload: Any) -> int:
    """Emit an event about an incident, its codes, place and audience read from the row
    (one statement). With `team_ids` the event also concerns those teams: layer teams and
    their positions among the points. `payload` adds (or overrides) fields."""
    event_id = conn.scalar(_EMIT_INCIDENT, {
        "type": type, "incident_id": incident_id, "team_ids": [int(t) for t in team_ids],
        "payload": _json(payload)})
    if event_id is None:
        raise InvalidInput(f"no incident {incident_id}", field="incident_id")
    return int(event_id)


def point(lon: float | None, lat: float | None) -> list[float] | None:
    """A [lon, lat] pair for a payload (None when unknown)."""
    if lon is None or lat is None:
        return None
    return [round(float(lon), COORD_DECIMALS), round(float(lat), COORD_DECIMALS)]


def bbox(minx: float | None, miny: float | None, maxx: float | None,
         maxy: float | None) -> list[float] | None:
    """A [minx, miny, maxx, maxy] box for a payload (None when empty)."""
    values = [v for v in (minx, miny, maxx, maxy) if v is not None]
    if len(values) < 4:
        return None
    return [round(float(v), COORD_DECIMALS) for v in values]


def as_event(row: Any) -> dict[str, Any]:
    """The event of a live_events row, shaped as its notification is."""
    return {**dict(row.payload or {}), "id": int(row.id), "type": row.type,
            "codes": list(row.codes or [])}


def replay(conn: Connection, after_id: int, limit: int = MAX_REPLAY) -> list[dict[str, Any]]:
    """Events with id > `after_id`, oldest first, at most `limit` (1–MAX_REPLAY)."""
    if not 1 <= limit <= MAX_REPLAY:
        raise InvalidInput(f"limit must be 1–{MAX_REPLAY}", field="limit")
    rows = conn.execute(text("""
        SELECT id, type, codes, payload FROM live_events
        WHERE id > :after ORDER BY id LIMIT :limit
    """), {"after": after_id, "limit": limit}).all()
    return [as_event(r) for r in rows]


def latest(conn: Connection, limit: int = MAX_REPLAY) -> list[dict[str, Any]]:
    """The newest `limit` events, oldest first."""
    rows = conn.execute(text("""
        SELECT * FROM (SELECT id, type, codes, payload FROM live_events
                       ORDER BY id DESC LIMIT :limit) x ORDER BY id
    """), {"limit": limit}).all()
    return [as_event(r) for r in rows]


def last_id(conn: Connection) -> int:
    """The newest event id (0 when there is none)."""
    return int(conn.scalar(text("SELECT coalesce(max(id), 0) FROM live_events")) or 0)


def fetch(conn: Connection, event_id: int) -> dict[str, Any] | None:
    """One event by id (a truncated notification's full row), or None once pruned."""
    row = conn.execute(text("SELECT id, type, codes, payload FROM live_events WHERE id = :id"),
                       {"id": event_id}).one_or_none()
    return None if row is None else as_event(row)


def prune(conn: Connection, older_than: timedelta, limit: int = PRUNE_BATCH) -> int:
    """Delete at most `limit` events older than `older_than` (oldest first; caller commits).
    Returns how many were deleted."""
    return int(conn.execute(text("""
        DELETE FROM live_events WHERE id IN (
            SELECT id FROM live_events WHERE at < now() - CAST(:age AS interval)
            ORDER BY id LIMIT :limit)
    """), {"age": older_than, "limit": limit}).rowcount)


def _ids(event: Mapping[str, Any], key: str) -> list[Any]:
    value = event.get(key)
    return list(value) if isinstance(value, list) else []


def _in_scope(scope: Sequence[str], event: Mapping[str, Any]) -> bool:
    codes = [c for c in _ids(event, "codes") if isinstance(c, str)]
    if any(c.startswith(s) for c in codes for s in scope):
        return True
    home = event.get("home_code")  # a team based in the district of a street scope
    return isinstance(home, str) and len(home) == 6 and any(s[:6] == home for s in scope)


def visible(reader: Principal, event: Mapping[str, Any]) -> bool:
    """Whether `reader` may see `event` on the live feed (rules in the module docstring)."""
    if reader.has_any("admin") or event.get("type") in PUBLIC_TYPES:
        return True
    if reader.has_any(*SCOPED_READERS) and (reader.city_wide
                                            or _in_scope(reader.scope_codes, event)):
        return True
    if (reader.has_any("dispatcher") and reader.department_id is not None
            and reader.department_id in _ids(event, "department_ids")):
        return True
    return reader.has_any("street_chief") and (
        (reader.person_id is not None and reader.person_id in _ids(event, "person_ids"))
        or reader.user_id in _ids(event, "user_ids"))


def replay_visible(conn: Connection, reader: Principal, after_id: int, limit: int,
                   scan_limit: int = 100_000) -> tuple[list[dict[str, Any]], int]:
    """Up to `limit` events after `after_id` that `reader` may see, oldest first, reading
    at most `scan_limit` rows; and the last id read (continue after it)."""
    found: list[dict[str, Any]] = []
    cursor = after_id
    scanned = 0
    while len(found) < limit and scanned < scan_limit:
        page = replay(conn, cursor, MAX_REPLAY)
        if not page:
            break
        scanned += len(page)
        for event in page:
            cursor = event["id"]
            if visible(reader, event):
                found.append(event)
                if len(found) == limit:
                    break
    return found, cursor
