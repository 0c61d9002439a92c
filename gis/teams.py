"""Departments and their teams: who they are, their status (available, busy, off duty, out
of service) and live positions (GPS fixes, kept as history in team_positions), as GeoJSON
built by PostGIS and always read through the caller's visibility predicate.

Visibility (an out-of-scope team is "not found", exactly like a missing id):
- admin, and city-wide operators, planners and viewers: every team;
- scoped operators, planners and viewers: teams whose home (home_code) lies in their scope —
  home district or home street in the scope codes — plus the district-level teams
  (home_code a district) of the districts their scoped streets belong to;
- department dispatchers: the teams of their own department;
- street chiefs: none (the API answers 403 before reaching this module).
Changes (status, positions) follow the same rule restricted to admins, operators and
dispatchers; a viewer or planner who can see a team but not change it gets Forbidden.

Status: `busy` belongs to dispatching (a team becomes busy when dispatched and available
again when its task ends, gis.dispatch); people set available, off_duty or out_of_service.
A team holding an active dispatch (dispatched, accepted, en route, on scene) cannot be made
available or off duty: that dispatch must end first.

Positions are idempotent by (team, fix time): a re-sent fix is counted as a duplicate and
never stored twice; a re-sent time with another position is a duplicate too (the fix stored
first stands). A batch is validated whole (all or nothing): every bad fix is reported. Fixes
older than the team's current position go to the history but never move the team back.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis import catalog, events
from gis.audit import Actor, record
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.features import CHINA_TZ, GEOJSON_DECIMALS, BBox, FeaturePage, check_code
from gis.placement import to_wgs84
from gis.scope import any_of

TeamStatus = Literal["available", "busy", "off_duty", "out_of_service"]
STATUSES: tuple[TeamStatus, ...] = ("available", "busy", "off_duty", "out_of_service")
MANUAL_STATUSES: tuple[TeamStatus, ...] = ("available", "off_duty", "out_of_service")
ACTIVE_DISPATCH = ("dispatched", "accepted", "en_route", "on_scene")
DEFAULT_STALE_AFTER = timedelta(minutes=30)

MAX_FIXES = 500
MAX_SPEED_MPS = 55.0  # ≈ 200 km/h: faster than any team moves through a city
CLOCK_SKEW = timedelta(seconds=120)
EARLIEST_FIX = datetime(2000, 1, 1, tzinfo=UTC)
MAX_METRIC = 1e6  # accuracy (m) and speed (m/s) above this are garbage (and overflow `real`)
MAX_CAPABILITIES = 50
MAX_REASON = 500

_READERS = ("admin", "operator", "planner", "viewer", "dispatcher")
_WRITERS = ("admin", "operator", "dispatcher")
_SCOPED = ("operator", "planner", "viewer")
_CLASS_CAPABILITY = re.compile(r"^(event|component):([0-9]{4})$")
_DEPT_TYPE = re.compile(r"^[a-z_]+$")


# -- visibility ------------------------------------------------------------------------


def _predicate(p: Principal, roles: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """A boolean SQL expression over teams aliased `t`: true where `p`, acting in one of
    `roles`, may see (or change) the team; and its bound parameters."""
    held = [r for r in roles if p.has_any(r)]
    if "admin" in held or (p.city_wide and any(r in _SCOPED for r in held)):
        return "true", {}
    terms: list[str] = []
    params: dict[str, Any] = {}
    if any(r in _SCOPED for r in held):
        params["team_scope"] = list(p.scope_codes)
        terms.append("t.district_code = ANY(:team_scope) OR t.home_code = ANY(:team_scope) "
                     "OR (length(t.home_code) = 6 AND t.home_code IN "
                     "(SELECT left(c, 6) FROM unnest(CAST(:team_scope AS text[])) AS c))")
    if "dispatcher" in held and p.department_id is not None:
        params["team_department"] = p.department_id
        terms.append("t.department_id = :team_department")
    return any_of(terms), params


def team_visible(p: Principal) -> tuple[str, dict[str, Any]]:
    """SQL over teams `t`: the teams `p` may see, and the bound parameters."""
    return _predicate(p, _READERS)


def team_writable(p: Principal) -> tuple[str, dict[str, Any]]:
    """SQL over teams `t`: the teams whose status and positions `p` may change."""
    return _predicate(p, _WRITERS)


def _lock_writable(conn: Connection, p: Principal, team_id: int) -> Any:
    """The team row, locked for the change; NotFound when `p` cannot see it, Forbidden when
    `p` can see it but not change it."""
    writable, params = team_writable(p)
    row = conn.execute(text(f"""
        SELECT t.id, t.code, t.status, t.home_code, t.district_code, t.department_id,
               t.position_at,
               ST_X(t.position) AS lon, ST_Y(t.position) AS lat, now() AS now
        FROM teams t WHERE t.id = :id AND ({writable})
        FOR UPDATE OF t
    """), {**params, "id": team_id}).one_or_none()  # noqa: S608 - constant fragments
    if row is not None:
        return row
    visible, params = team_visible(p)
    if conn.scalar(text(f"SELECT 1 FROM teams t WHERE t.id = :id AND ({visible})"),  # noqa: S608
                   {**params, "id": team_id}):
        raise Forbidden(f"you may see team {team_id} but not change it (admins, operators "
                        "of its jurisdiction and its department's dispatchers may)",
                        field="team_id")
    raise NotFound(f"no team {team_id} (or not in your scope)", field="team_id")


def _notify(conn: Connection, kind: str, team: Any, codes: set[str],
            points: list[list[float] | None], **payload: Any) -> None:
    """A live event about a team (gis/events.py): delivered on commit, to readers of the
    team's jurisdictions and its department."""
    events.emit(conn, kind, codes, team_id=int(team.id), layers=["teams"],
                points=[p for p in points if p is not None],
                department_ids=[int(team.department_id)], home_code=team.home_code,
                **payload)


# -- reading ---------------------------------------------------------------------------

_ACTIVE_DISPATCH_SQL = """(SELECT json_build_object('id', x.id, 'incident_id', x.incident_id,
                                  'status', x.status, 'dispatched_at', x.dispatched_at)
     FROM dispatches x
     WHERE x.team_id = t.id AND x.status IN ('dispatched', 'accepted', 'en_route', 'on_scene')
     ORDER BY x.dispatched_at DESC, x.id DESC LIMIT 1)"""

_STALE_SQL = "(t.position_at IS NULL OR t.position_at < now() - CAST(:stale_after AS interval))"

# One Feature per team: the geometry is its current position (null when none is known).
_FEATURE = f"""
    json_build_object(
      'type', 'Feature',
      'id', t.id,
      'geometry', ST_AsGeoJSON(t.position, {GEOJSON_DECIMALS})::json,
      'properties', json_build_object(
        'id', t.id, 'code', t.code, 'name', t.name,
        'department', json_build_object('id', d.id, 'code', d.code, 'name', d.name,
                                        'dept_type', d.dept_type, 'tier', d.tier),
        'capabilities', t.capabilities, 'home_code', t.home_code,
        'district_code', t.district_code, 'status', t.status,
        'shift_start', t.shift_start, 'shift_end', t.shift_end,
        'members', t.members, 'phone', t.phone, 'position_at', t.position_at,
        'stale', {_STALE_SQL},
        'active_dispatch', {_ACTIVE_DISPATCH_SQL},
        'updated_at', t.updated_at))
"""


@dataclass(frozen=True)
class TeamFilter:
    """Filters of the team list; None means any."""

    department_id: int | None = None
    status: TeamStatus | None = None
    district_code: str | None = None  # the team's home district
    capability: str | None = None  # an exact element of capabilities
    fresh: bool | None = None  # position known and not stale (or the opposite)
    bbox: BBox | None = None


def list_departments(conn: Connection, *, district_code: str | None = None,
                     dept_type: str | None = None, tier: str | None = None
                     ) -> list[dict[str, Any]]:
    """Departments (1+5+N: core, stationed, on call; street offices), by code, each with
    its type's name from the catalog and its number of teams."""
    rows = conn.execute(text("""
        SELECT d.id, d.code, d.name, d.dept_type,
               CAST(:types AS jsonb) ->> d.dept_type AS dept_type_name, d.tier,
               d.jurisdiction_code, d.district_code, d.phone,
               (SELECT count(*) FROM teams t WHERE t.department_id = d.id) AS teams
        FROM departments d
        WHERE (CAST(:district AS text) IS NULL OR d.district_code = :district)
          AND (CAST(:dept_type AS text) IS NULL OR d.dept_type = :dept_type)
          AND (CAST(:tier AS text) IS NULL OR d.tier = :tier)
        ORDER BY d.code
    """), {"types": json.dumps(catalog.department_types(conn), ensure_ascii=False),
           "district": district_code, "dept_type": dept_type, "tier": tier}).mappings()
    return [dict(r) for r in rows]


def get_team(conn: Connection, reader: Principal, team_id: int,
             stale_after: timedelta = DEFAULT_STALE_AFTER) -> dict[str, Any]:
    """One team as a Feature; NotFound when it does not exist or `reader` may not see it."""
    visible, params = team_visible(reader)
    feature = conn.scalar(text(f"""
        SELECT {_FEATURE}
        FROM teams t JOIN departments d ON d.id = t.department_id
        WHERE t.id = :id AND ({visible})
    """), {**params, "id": team_id, "stale_after": stale_after})  # noqa: S608
    if feature is None:
        raise NotFound(f"no team {team_id} (or not in your scope)", field="team_id")
    return dict(feature)


def list_teams(conn: Connection, reader: Principal, where: TeamFilter,
               stale_after: timedelta = DEFAULT_STALE_AFTER, *, limit: int,
               after_id: int | None = None) -> FeaturePage:
    """Teams `reader` may see that match `where`, by id, keyset paged (ids after
    `after_id`)."""
    visible, params = team_visible(reader)
    bbox = where.bbox or (None, None, None, None)
    rows = conn.scalars(text(f"""
        SELECT {_FEATURE}
        FROM teams t JOIN departments d ON d.id = t.department_id
        WHERE ({visible})
          AND (CAST(:department_id AS bigint) IS NULL OR t.department_id = :department_id)
          AND (CAST(:status AS text) IS NULL OR t.status = :status)
          AND (CAST(:district AS text) IS NULL OR t.district_code = :district)
          AND (CAST(:capability AS text) IS NULL OR :capability = ANY(t.capabilities))
          AND (CAST(:fresh AS boolean) IS NULL OR {_STALE_SQL} <> :fresh)
          AND (CAST(:minx AS float8) IS NULL
               OR t.position && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326))
          AND (CAST(:after_id AS bigint) IS NULL OR t.id > :after_id)
        ORDER BY t.id
        LIMIT :limit
    """), {**params, "stale_after": stale_after,  # noqa: S608 - constant fragments
           "department_id": where.department_id, "status": where.status,
           "district": where.district_code, "capability": where.capability,
           "fresh": where.fresh, "minx": bbox[0], "miny": bbox[1], "maxx": bbox[2],
           "maxy": bbox[3], "after_id": after_id, "limit": limit + 1}).all()
    features = [dict(r) for r in rows[:limit]]
    collection = {"type": "FeatureCollection", "features": features,
                  "numberReturned": len(features)}
    more = len(rows) > limit
    return FeaturePage(collection, str(features[-1]["id"]) if more else None)


_HISTORY = text(f"""
    SELECT p.at, json_build_object(
      'type', 'Feature',
      'geometry', ST_AsGeoJSON(p.geom, {GEOJSON_DECIMALS})::json,
      'properties', json_build_object(
        'team_id', p.team_id, 'at', p.at, 'accuracy_m', p.accuracy_m,
        'speed_mps', p.speed_mps, 'district_code', p.district_code,
        'received_at', p.received_at)) AS feature
    FROM team_positions p
    WHERE p.team_id = :id
      AND (CAST(:since AS timestamptz) IS NULL OR p.at >= :since)
      AND (CAST(:until AS timestamptz) IS NULL OR p.at < :until)
    ORDER BY p.at DESC
    LIMIT :limit
""")  # noqa: S608 - a constant


def list_positions(conn: Connection, reader: Principal, team_id: int, *,
                   since: datetime | None = None, until: datetime | None = None,
                   limit: int) -> FeaturePage:
    """The team's position history (fixes at `since` ≤ at < `until`), newest first, as a
    FeatureCollection; the cursor of the next page is the last fix time (pass it as
    `until`). NotFound when `reader` may not see the team."""
    visible, params = team_visible(reader)
    if not conn.scalar(text(f"SELECT 1 FROM teams t WHERE t.id = :id AND ({visible})"),  # noqa: S608
                       {**params, "id": team_id}):
        raise NotFound(f"no team {team_id} (or not in your scope)", field="team_id")
    rows = conn.execute(_HISTORY, {"id": team_id, "since": since, "until": until,
                                   "limit": limit + 1}).all()
    features = [dict(r.feature) for r in rows[:limit]]
    collection = {"type": "FeatureCollection", "features": features,
                  "numberReturned": len(features)}
    more = len(rows) > limit
    return FeaturePage(collection, rows[limit - 1].at.isoformat() if more else None)


# -- status ----------------------------------------------------------------------------


def set_status(conn: Connection, team_id: int, status: str, by: Actor, reader: Principal,
               reason: str | None = None) -> bool:
    """Set a team's status by hand (caller commits): available, off_duty or
    out_of_service. `busy` is refused (dispatching sets it); a team holding an active
    dispatch cannot become available or off duty (Conflict naming the dispatch). Returns
    whether the status changed (no audit row or notification when it did not)."""
    if status == "busy":
        raise InvalidInput("status 'busy' is set by dispatching (派遣), not by hand: a team "
                           "becomes busy when dispatched and available when its task ends",
                           field="status")
    if status not in MANUAL_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(MANUAL_STATUSES)}; got "
                           f"{status!r}", field="status")
    if reason is not None:
        reason = reason.strip() or None
        if reason and (len(reason) > MAX_REASON
                       or any(ord(ch) < 32 and ch not in "\t\n\r" for ch in reason)):
            raise InvalidInput(f"reason must be at most {MAX_REASON} characters of text",
                               field="reason")
    team = _lock_writable(conn, reader, team_id)
    if status in ("available", "off_duty"):
        active = conn.execute(text("""
            SELECT id, incident_id, status FROM dispatches
            WHERE team_id = :id AND status IN ('dispatched', 'accepted', 'en_route', 'on_scene')
            ORDER BY dispatched_at, id LIMIT 1
        """), {"id": team_id}).one_or_none()
        if active is not None:
            raise Conflict(
                f"team {team.code} holds dispatch {active.id} ({active.status}) for incident "
                f"{active.incident_id}: it cannot become {status} until that dispatch ends "
                "(done, declined or cancelled)", field="status",
                detail={"dispatch_id": active.id, "incident_id": active.incident_id})
    if team.status == status:
        return False
    conn.execute(text("UPDATE teams SET status = :status, updated_at = now() WHERE id = :id"),
                 {"status": status, "id": team_id})
    record(conn, by, action="team.status", object_type="team", object_id=str(team_id),
           before={"status": team.status}, after={"status": status, "reason": reason},
           district_code=team.district_code)
    _notify(conn, "team.status", team, {team.district_code, team.home_code},
            [events.point(team.lon, team.lat)], status=status)
    return True


# -- admin edits -----------------------------------------------------------------------

EDITABLE = ("capabilities", "shift_start", "shift_end", "name", "phone", "home_code",
            "members")


def _check_text(value: Any, name: str, max_len: int, *, required: bool) -> str | None:
    if value is None:
        if required:
            raise InvalidInput(f"{name} must not be empty", field=name)
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string", field=name)
    stripped = value.strip()
    if any(ord(ch) < 32 for ch in stripped):
        raise InvalidInput(f"{name} contains control characters", field=name)
    if len(stripped) > max_len:
        raise InvalidInput(f"{name} is {len(stripped)} characters; at most {max_len}",
                           field=name)
    if not stripped:
        if required:
            raise InvalidInput(f"{name} must not be empty", field=name)
        return None
    return stripped


def _check_time(value: Any, name: str) -> time | None:
    if value is None or isinstance(value, time):
        return value
    if isinstance(value, str):
        try:
            return time.fromisoformat(value.strip())
        except ValueError:
            pass
    raise InvalidInput(f"{name} must be a time of day such as 08:00; got {value!r}",
                       field=name)


def check_capabilities(conn: Connection, value: Any) -> list[str]:
    """Capabilities as stored: department types of the loaded catalog, or classes
    `event:CODE` / `component:CODE` that exist; duplicates dropped, order kept.
    InvalidInput naming every unknown item."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput("capabilities must be a list of strings (department types such as "
                           "urban_management, or classes such as event:0103)",
                           field="capabilities")
    items = list(dict.fromkeys(v.strip() for v in value))
    if len(items) > MAX_CAPABILITIES:
        raise InvalidInput(f"at most {MAX_CAPABILITIES} capabilities; got {len(items)}",
                           field="capabilities")
    types = catalog.department_types(conn)
    classes = [m.groups() for v in items if (m := _CLASS_CAPABILITY.match(v))]
    known = {f"{k}:{c}" for k, c in conn.execute(text("""
        SELECT kind, code FROM event_classes
        WHERE (kind, code) IN (SELECT * FROM unnest(CAST(:kinds AS text[]),
                                                    CAST(:codes AS text[])))
    """), {"kinds": [k for k, _ in classes], "codes": [c for _, c in classes]}).all()}
    unknown = [v for v in items
               if not (v in known or (_DEPT_TYPE.match(v) and v in types))]
    if unknown:
        raise InvalidInput(
            f"unknown capabilit{'y' if len(unknown) == 1 else 'ies'}: "
            f"{', '.join(repr(u) for u in unknown)} — use a department type of the catalog "
            f"({', '.join(sorted(types))}) or an existing class such as event:0101",
            field="capabilities", detail={"unknown": unknown})
    return items


def _check_changes(conn: Connection, changes: Mapping[str, Any]) -> dict[str, Any]:
    """The validated values of `changes` (only the keys given)."""
    extra = sorted(set(changes) - set(EDITABLE))
    if extra:
        raise InvalidInput(f"cannot change {', '.join(extra)}; editable: "
                           f"{', '.join(EDITABLE)}", field=extra[0])
    if not changes:
        raise InvalidInput(f"nothing to change: send one of {', '.join(EDITABLE)}",
                           field="body")
    out: dict[str, Any] = {}
    for key, value in changes.items():
        if key == "capabilities":
            out[key] = check_capabilities(conn, value)
        elif key in ("shift_start", "shift_end"):
            out[key] = _check_time(value, key)
        elif key == "name":
            out[key] = _check_text(value, key, 200, required=True)
        elif key == "phone":
            out[key] = _check_text(value, key, 40, required=False)
        elif key == "members":
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or not 1 <= value <= 1000):
                raise InvalidInput("members must be a whole number from 1 to 1000",
                                   field=key)
            out[key] = value
        else:  # home_code
            code = check_code(str(value), ("district", "street"), key) \
                if isinstance(value, str) else None
            if code is None or not conn.scalar(text(
                    "SELECT 1 FROM jurisdictions WHERE code = :c AND valid_to IS NULL "
                    "AND level IN ('district', 'street')"), {"c": code}):
                raise InvalidInput(f"home_code {value!r} is not a loaded district or street "
                                   "code", field=key)
            out[key] = code
    return out


_UPDATE = text("""
    UPDATE teams SET
      capabilities = CASE WHEN :set_capabilities THEN CAST(:capabilities AS text[])
                          ELSE capabilities END,
      shift_start = CASE WHEN :set_shift_start THEN CAST(:shift_start AS time)
                         ELSE shift_start END,
      shift_end = CASE WHEN :set_shift_end THEN CAST(:shift_end AS time) ELSE shift_end END,
      name = CASE WHEN :set_name THEN CAST(:name AS text) ELSE name END,
      phone = CASE WHEN :set_phone THEN CAST(:phone AS text) ELSE phone END,
      home_code = CASE WHEN :set_home_code THEN CAST(:home_code AS text) ELSE home_code END,
      members = CASE WHEN :set_members THEN CAST(:members AS smallint) ELSE members END,
      updated_at = now()
    WHERE id = :id
    RETURNING id, district_code, home_code, department_id, ST_X(position) AS lon,
              ST_Y(position) AS lat
""")


def update_team(conn: Connection, team_id: int, changes: Mapping[str, Any],
                by: Actor) -> dict[str, Any]:
    """Admin edits of a team (caller commits): capabilities, shift_start/shift_end, name,
    phone, home_code, members. InvalidInput names the field (and every unknown
    capability); NotFound for a missing team. Returns the changed fields' new values."""
    values = _check_changes(conn, changes)
    before = conn.execute(text("""
        SELECT capabilities, shift_start, shift_end, name, phone, home_code, members,
               district_code
        FROM teams WHERE id = :id FOR UPDATE
    """), {"id": team_id}).mappings().one_or_none()
    if before is None:
        raise NotFound(f"no team {team_id}", field="team_id")
    start = values.get("shift_start", before["shift_start"])
    end = values.get("shift_end", before["shift_end"])
    if (start is None) != (end is None):
        raise InvalidInput("a shift needs both shift_start and shift_end (or neither)",
                           field="shift_start" if start is None else "shift_end")
    changed = {k: v for k, v in values.items() if before[k] != v}
    if not changed:
        return {}
    params: dict[str, Any] = {"id": team_id}
    for key in EDITABLE:
        params[f"set_{key}"] = key in changed
        params[key] = changed.get(key)
    after = conn.execute(_UPDATE, params).one()
    record(conn, by, action="team.update", object_type="team", object_id=str(team_id),
           before={k: before[k] for k in changed}, after=changed,
           district_code=after.district_code)
    _notify(conn, "team.updated", after, {before["district_code"], after.district_code,
                                          before["home_code"], after.home_code},
            [events.point(after.lon, after.lat)], fields=sorted(changed))
    return changed


# -- positions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fix:
    """One GPS fix as a client sends it: `at` an aware datetime or an ISO 8601 string (no
    offset = Beijing time), lon/lat in `crs` (wgs84, gcj02 or bd09)."""

    at: datetime | str
    lon: float
    lat: float
    crs: str = "wgs84"
    accuracy_m: float | None = None
    speed_mps: float | None = None


class InvalidFixes(InvalidInput):
    """A batch of fixes was rejected whole; `problems` (also `detail`) lists every bad fix
    as {index, field, reason}, by index; the message names the first."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        first = problems[0]
        more = len(problems) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        where = f"fixes[{first['index']}].{first['field']}"
        super().__init__(f"{where}: {first['reason']}{tail}; nothing was stored",
                         field=where, detail=problems)
        self.problems = problems


@dataclass(frozen=True)
class _Parsed:
    index: int
    at: datetime
    lon: float
    lat: float
    accuracy_m: float | None
    speed_mps: float | None


def _parse_at(value: datetime | str, now: datetime) -> datetime:
    """An aware instant (naive = Beijing time); ValueError with the reason when the value
    is not a datetime, implausibly old, or in the future beyond the clock skew."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError("must be an ISO 8601 datetime such as 2026-11-20T16:40:00+08:00 "
                             f"(no offset = Beijing time); got {value!r}") from None
    if not isinstance(value, datetime):
        raise ValueError("must be an ISO 8601 datetime")
    if value.year < EARLIEST_FIX.year:
        raise ValueError(f"{value.isoformat()} is implausibly old")
    at = value if value.tzinfo is not None else value.replace(tzinfo=CHINA_TZ)
    try:
        ahead = (at - now).total_seconds()
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range") from None
    if ahead > CLOCK_SKEW.total_seconds():
        raise ValueError(f"{at.isoformat()} is {ahead:.0f} s in the future (clock skew "
                         f"allowed: {CLOCK_SKEW.total_seconds():.0f} s)")
    return at


def _parse_fix(i: int, fix: Fix, now: datetime) -> tuple[_Parsed | None, list[dict[str, Any]]]:
    """One fix checked on its own: (it in WGS84, or None; its problems)."""
    problems: list[dict[str, Any]] = []
    at = point = None
    try:
        at = _parse_at(fix.at, now)
    except ValueError as exc:
        problems.append({"index": i, "field": "at", "reason": str(exc)})
    try:
        point = to_wgs84(float(fix.lon), float(fix.lat), fix.crs)
    except InvalidInput as exc:
        problems.append({"index": i, "field": exc.field or "lon", "reason": exc.message})
    except (TypeError, ValueError):
        problems.append({"index": i, "field": "lon", "reason": "lon and lat must be numbers"})
    for name in ("accuracy_m", "speed_mps"):
        value = getattr(fix, name)
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)
                                      and 0 <= value < MAX_METRIC):
            problems.append({"index": i, "field": name, "reason": (
                f"must be a finite number from 0 to {MAX_METRIC:g}; got {value}")})
    if problems or at is None or point is None:
        return None, problems
    return _Parsed(i, at, point.lon, point.lat, fix.accuracy_m, fix.speed_mps), []


# The batch merged with the stored history around it (and the team's current position),
# sorted by time: every consecutive pair involving a new fix whose implied speed is above
# the limit. Fixes at a stored time are duplicates and take no part.
_SPEEDING = text("""
    WITH batch AS (
        SELECT b.idx, b.at, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326) AS geom
        FROM jsonb_to_recordset(CAST(:fixes AS jsonb))
             AS b(idx int, at timestamptz, lon float8, lat float8)),
    bounds AS (SELECT min(at) AS lo, max(at) AS hi FROM batch),
    near AS (
        SELECT DISTINCT ON (at) at, geom FROM (
            SELECT p.at, p.geom FROM team_positions p, bounds
            WHERE p.team_id = :team_id AND p.at BETWEEN bounds.lo AND bounds.hi
            UNION ALL
            (SELECT p.at, p.geom FROM team_positions p, bounds
             WHERE p.team_id = :team_id AND p.at < bounds.lo ORDER BY p.at DESC LIMIT 1)
            UNION ALL
            (SELECT p.at, p.geom FROM team_positions p, bounds
             WHERE p.team_id = :team_id AND p.at > bounds.hi ORDER BY p.at LIMIT 1)
            UNION ALL
            SELECT t.position_at, t.position FROM teams t
            WHERE t.id = :team_id AND t.position IS NOT NULL) k
        ORDER BY at),
    seq AS (
        SELECT idx, at, geom FROM batch WHERE at NOT IN (SELECT at FROM near)
        UNION ALL
        SELECT NULL, at, geom FROM near),
    pairs AS (
        SELECT idx, at, geom, lag(idx) OVER w AS prev_idx, lag(at) OVER w AS prev_at,
               lag(geom) OVER w AS prev_geom
        FROM seq WINDOW w AS (ORDER BY at))
    SELECT idx, prev_idx, at, prev_at,
           ST_Distance(geom::geography, prev_geom::geography) AS metres,
           CAST(extract(epoch FROM at - prev_at) AS float8) AS seconds
    FROM pairs
    WHERE prev_geom IS NOT NULL AND (idx IS NOT NULL OR prev_idx IS NOT NULL)
      AND ST_Distance(geom::geography, prev_geom::geography)
          > :max_speed * extract(epoch FROM at - prev_at)
    ORDER BY at
""")

# Store the new fixes (each in the district containing it, else the team's), move the team
# when the newest stored fix is newer than its position, and report where it stands.
_STORE = text("""
    WITH batch AS (
        SELECT b.at, ST_SetSRID(ST_MakePoint(b.lon, b.lat), 4326) AS geom, b.accuracy_m,
               b.speed_mps
        FROM jsonb_to_recordset(CAST(:fixes AS jsonb))
             AS b(idx int, at timestamptz, lon float8, lat float8, accuracy_m real,
                  speed_mps real)),
    stored AS (
        INSERT INTO team_positions (team_id, at, geom, accuracy_m, speed_mps, district_code)
        SELECT :team_id, b.at, b.geom, b.accuracy_m, b.speed_mps,
               coalesce((SELECT jp.code FROM jurisdiction_parts jp
                         WHERE jp.level = 'district' AND jp.valid_to IS NULL
                           AND ST_Intersects(jp.geom, b.geom)
                         ORDER BY jp.code LIMIT 1), :team_district)
        FROM batch b
        ON CONFLICT (team_id, at) DO NOTHING
        RETURNING at, geom, district_code),
    newest AS (SELECT at, geom, district_code FROM stored ORDER BY at DESC LIMIT 1),
    moved AS (
        UPDATE teams t SET position = n.geom, position_at = n.at, updated_at = now()
        FROM newest n
        WHERE t.id = :team_id AND (t.position_at IS NULL OR n.at > t.position_at)
        RETURNING n.district_code, ST_X(n.geom) AS lon, ST_Y(n.geom) AS lat)
    SELECT (SELECT count(*) FROM stored) AS accepted,
           (SELECT district_code FROM moved) AS moved_to,
           (SELECT lon FROM moved) AS lon, (SELECT lat FROM moved) AS lat
""")


def add_positions(conn: Connection, team_id: int, fixes: Sequence[Fix], by: Actor,
                  now: datetime | None = None, *, writer: Principal,
                  stale_after: timedelta = DEFAULT_STALE_AFTER) -> dict[str, Any]:
    """Store a batch of GPS fixes for a team (caller commits), all or nothing.

    InvalidFixes lists every bad fix (time in the future beyond the clock skew, bad or
    swapped coordinates, negative accuracy or speed, an implied speed above MAX_SPEED_MPS
    to a time-neighbour in the stored history or the batch). Fixes at a time already stored
    (or repeated in the batch) are duplicates: counted, not stored again. Only a fix newer
    than the team's position moves it. `now` defaults to the database clock. Returns
    {accepted, duplicates, position, position_at, stale}."""
    if not 1 <= len(fixes) <= MAX_FIXES:
        raise InvalidInput(f"send 1 to {MAX_FIXES} fixes; got {len(fixes)}", field="fixes")
    team = _lock_writable(conn, writer, team_id)
    clock: datetime = now or team.now
    parsed: list[_Parsed] = []
    problems: list[dict[str, Any]] = []
    for i, fix in enumerate(fixes):
        good, wrong = _parse_fix(i, fix, clock)
        problems.extend(wrong)
        if good is not None:
            parsed.append(good)
    unique: dict[datetime, _Parsed] = {}
    for one in parsed:  # a time repeated within the batch: the first fix stands
        unique.setdefault(one.at, one)
    rows = json.dumps([{"idx": f.index, "at": f.at.isoformat(), "lon": f.lon, "lat": f.lat,
                        "accuracy_m": f.accuracy_m, "speed_mps": f.speed_mps}
                       for f in unique.values()])
    speeding: Sequence[Any] = conn.execute(_SPEEDING, {
        "fixes": rows, "team_id": team_id, "max_speed": MAX_SPEED_MPS}).all() if unique else []
    for bad in speeding:
        index, neighbour = ((bad.idx, bad.prev_at) if bad.idx is not None
                            else (bad.prev_idx, bad.at))
        speed = bad.metres / bad.seconds
        problems.append({"index": index, "field": "at", "reason": (
            f"impossible speed: {speed:.1f} m/s ({speed * 3.6:.0f} km/h) over "
            f"{bad.metres:.0f} m in {bad.seconds:g} s to the fix at "
            f"{neighbour.astimezone(CHINA_TZ).isoformat()}; at most {MAX_SPEED_MPS:g} m/s")})
    if problems:
        problems.sort(key=lambda p: p["index"])
        raise InvalidFixes(problems)
    result = conn.execute(_STORE, {"fixes": rows, "team_id": team_id,
                                   "team_district": team.district_code}).one()
    accepted = int(result.accepted)
    if accepted:
        record(conn, by, action="team.positions", object_type="team", object_id=str(team_id),
               after={"accepted": accepted, "duplicates": len(fixes) - accepted,
                      "moved": result.moved_to is not None},
               district_code=team.district_code)
    if result.moved_to is not None:
        _notify(conn, "team.position", team,
                {team.district_code, team.home_code, result.moved_to},
                [events.point(team.lon, team.lat), events.point(result.lon, result.lat)])
    now_row = conn.execute(text("""
        SELECT ST_AsGeoJSON(position, :decimals)::json AS position, position_at,
               (position_at IS NULL OR position_at < :now - CAST(:stale_after AS interval))
                 AS stale
        FROM teams WHERE id = :id
    """), {"id": team_id, "decimals": GEOJSON_DECIMALS, "now": clock,
           "stale_after": stale_after}).one()
    return {"accepted": accepted, "duplicates": len(fixes) - accepted,
            "position": now_row.position, "position_at": now_row.position_at,
            "stale": bool(now_row.stale)}
