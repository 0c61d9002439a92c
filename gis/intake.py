"""Incident intake: resolve the event class, place the point, set the case state and the
stage deadlines, store the incident with its first case event, audit row and change
notification — one transaction, idempotent by key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis import catalog, events
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput
from gis.placement import PLACE_CALL, Point, place_params, placement_of

Source = Literal["12345", "grid_worker", "street_chief", "steward", "citizen", "sensor",
                 "other"]
# Reports from the system's own inspectors are registered (立案) at once; the public's wait
# for an operator to accept them (待受理).
TRUSTED_SOURCES = frozenset({"grid_worker", "street_chief", "steward"})
MAX_DESCRIPTION = 4000
DUPLICATE_RADIUS_M = 50.0
DUPLICATE_WINDOW = "24 hours"
ROUTED_STREET_M = 300.0


@dataclass(frozen=True)
class NewIncident:
    """What a reporter sends (the point already converted to WGS84)."""

    event_code: str
    point: Point
    description: str
    source: Source
    event_kind: str = "event"  # 事件; 部件 reports say "component"
    address: str | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    reported_at: datetime | None = None
    idempotency_key: str | None = None
    # The 街巷 the report is routed to instead of the nearest one (the QR form on a
    # street's public sign); the point must be within ROUTED_STREET_M of it.
    street_id: int | None = None
    patrol_id: int | None = None  # reported during this patrol (日巡)


@dataclass(frozen=True)
class Intake:
    """The stored incident's id, whether this call created it, and what intake found."""

    incident_id: int
    created: bool
    placement: dict[str, Any] | None
    duplicates: list[dict[str, Any]]


def jurisdiction_codes(placement: dict[str, Any]) -> set[str]:
    """The district and street of a placement and every jurisdiction of its joint case."""
    codes = {placement["district"]["code"]}
    if placement["street"]:
        codes.add(placement["street"]["code"])
    codes.update(j["code"] for j in placement["joint"]["jurisdictions"])
    return codes


def check_scope(reporter: Principal | None, placement: dict[str, Any]) -> None:
    """Operators report within their scope (a joint case counts for every side); public
    channels (reporter None: Open311, the citizen form) report anywhere in the city."""
    if reporter is None or reporter.has_any("admin", "street_chief") or reporter.city_wide:
        return
    codes = jurisdiction_codes(placement)
    if not codes.intersection(reporter.scope_codes):
        raise Forbidden(f"the point is in {placement['district']['name']} "
                        f"({', '.join(sorted(codes))}), outside your scope "
                        f"({', '.join(reporter.scope_codes)})", field="lon")


# Everything intake reads, in one round trip: the database clock, the class, the catalog
# version (its calendar is cached per process), an earlier report with the same key, the
# placement at the report time, and the possible duplicates (open incidents of the same
# class within 50 m reported in the 24 hours before; nearest first, then the latest).
_CONTEXT = text(f"""
    WITH ask AS (SELECT coalesce(CAST(:at AS timestamptz), now()) AS at,
                        ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS geom)
    SELECT now() AS now, ask.at, c.id AS class_id, c.kind, c.code, c.time_limits,
           cat.id AS catalog_id, cat.loaded_at AS catalog_loaded_at,
           e.id AS earlier_id, e.event_class_id AS earlier_class_id,
           e.description AS earlier_description, ST_X(e.geom) AS earlier_lon,
           ST_Y(e.geom) AS earlier_lat,
           CASE WHEN e.id IS NULL AND c.id IS NOT NULL AND ask.at <= now()
                THEN {PLACE_CALL.replace(":at", "ask.at")} END AS placement,
           (SELECT coalesce(json_agg(d ORDER BY d.distance_m, d.reported_at DESC, d.id), '[]')
            FROM (SELECT o.id, o.status, o.reported_at,
                         round(ST_Distance(o.geom::geography, ask.geom::geography)::numeric, 1)
                           AS distance_m
                  FROM incidents o
                  WHERE e.id IS NULL AND o.event_class_id = c.id
                    AND o.geom && ST_Expand(ask.geom, 0.001)  -- > 50 m at any latitude here
                    AND ST_DWithin(o.geom::geography, ask.geom::geography, :radius)
                    AND o.reported_at BETWEEN ask.at - interval '{DUPLICATE_WINDOW}' AND ask.at
                    AND o.status NOT IN ('closed', 'void', 'ledger')
                  ORDER BY distance_m, o.reported_at DESC, o.id LIMIT 10) d) AS duplicates
    FROM ask
    LEFT JOIN event_classes c ON c.kind = :kind AND c.code = :code AND c.active
    LEFT JOIN LATERAL (SELECT id, loaded_at FROM catalogs ORDER BY id DESC LIMIT 1) cat ON true
    LEFT JOIN incidents e ON e.idempotency_key = :key
""")  # noqa: S608 - constant fragments; values are bound

# The incident, its first case event, its audit row and its live event (gridops_emit;
# notified on commit) in one statement; no row when a concurrent request with the same key won.
_STORE = text("""
    WITH inc AS (
        INSERT INTO incidents (idempotency_key, source, event_class_id, description, address,
            reporter_name, reporter_phone, reported_at, geom, input_crs, status,
            district_code, street_code, community_code, grid_code, grid_id, building_id,
            street_id, chief_person_id, is_joint, joint, deadlines, created_by, patrol_id)
        VALUES (:key, :source, :class_id, :description, :address, :reporter_name,
            :reporter_phone, :reported_at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :crs,
            :status, :district, :street, :community, :grid_code, :grid_id, :building_id,
            :street_id, :chief_id, :is_joint, CAST(:joint AS jsonb), CAST(:deadlines AS jsonb),
            :user_id, :patrol_id)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id),
    event AS (
        INSERT INTO case_events (incident_id, actor_id, action, to_status, data, district_code)
        SELECT id, :user_id, 'report', :status, CAST(:event_data AS jsonb), :district FROM inc),
    audit AS (
        INSERT INTO audit_log (user_id, actor, action, object_type, object_id, after,
                               request_id, district_code)
        SELECT :user_id, :actor, 'incident.create', 'incident', CAST(id AS text),
               CAST(:audit_after AS jsonb), :request_id, :district FROM inc)
    SELECT id, gridops_emit('incident.created', CAST(:codes AS text[]),
               jsonb_build_object('incident_id', id, 'incident_status', CAST(:status AS text),
                                  'is_joint', CAST(:is_joint AS boolean),
                                  'event_code', CAST(:event_code AS text))
               || CAST(:live AS jsonb))
    FROM inc
""")


_ROUTED_STREET = text("""
    SELECT json_build_object(
      'id', s.id, 'name', s.name, 'road_class', s.road_class,
      'street_office_code', s.street_office_code,
      'distance_m', round(ST_Distance(s.geom::geography, p.g::geography)::numeric, 2),
      'chief', (SELECT json_build_object('person_id', pe.id, 'name', pe.name,
                                         'phone', pe.phone, 'role', sa.role)
                FROM street_assignments sa JOIN people pe ON pe.id = sa.person_id
                WHERE sa.street_id = s.id AND sa.role IN ('street_chief', 'alley_chief')
                  AND sa.valid_from <= :at AND (sa.valid_to IS NULL OR sa.valid_to > :at)
                ORDER BY sa.valid_from DESC, sa.id LIMIT 1),
      'stewards', coalesce((SELECT json_agg(json_build_object(
                    'person_id', pe.id, 'name', pe.name, 'phone', pe.phone) ORDER BY pe.id)
                FROM street_assignments sa JOIN people pe ON pe.id = sa.person_id
                WHERE sa.street_id = s.id AND sa.role = 'steward'
                  AND sa.valid_from <= :at AND (sa.valid_to IS NULL OR sa.valid_to > :at)),
                '[]'::json)) AS segment
    FROM streets s, (SELECT ST_SetSRID(ST_MakePoint(:lon, :lat), 4326) AS g) p
    WHERE s.id = :street_id
""")


def routed_street(conn: Connection, street_id: int, point: Point,
                  at: datetime) -> dict[str, Any]:
    """The placement's `street_segment` for a report routed to street `street_id` (shaped
    like the nearest-street one: id, name, distance, chief, stewards); InvalidInput naming
    `street_id` for an unknown street or a point farther than ROUTED_STREET_M from it."""
    segment = conn.scalar(_ROUTED_STREET, {"street_id": street_id, "lon": point.lon,
                                           "lat": point.lat, "at": at})
    if segment is None:
        raise InvalidInput(f"street {street_id} does not exist", field="street_id")
    if segment["distance_m"] > ROUTED_STREET_M:
        raise InvalidInput(f"the position is {segment['distance_m']:.0f} m from "
                           f"{segment['name']}; a report for this street must be within "
                           f"{ROUTED_STREET_M:.0f} m of it", field="lon")
    return dict(segment)


def _check_retry(ctx: Any, key: str, new: NewIncident) -> Intake:
    """The incident an earlier request with `key` created; Conflict when the key was used
    for a different report."""
    same = (ctx.earlier_class_id == ctx.class_id
            and ctx.earlier_description == new.description.strip()
            and abs(ctx.earlier_lon - new.point.lon) < 1e-7
            and abs(ctx.earlier_lat - new.point.lat) < 1e-7)
    if not same:
        raise Conflict(f"Idempotency-Key {key!r} was already used for another report "
                       f"(incident {ctx.earlier_id}); use a new key for a new report",
                       field="Idempotency-Key")
    return Intake(int(ctx.earlier_id), False, None, [])


def _check_text(new: NewIncident) -> str:
    """The description, stripped; InvalidInput for control characters or a bad length."""
    for name in ("description", "address", "reporter_name", "reporter_phone"):
        value = getattr(new, name)
        if value and any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
            raise InvalidInput(f"{name} contains control characters", field=name)
    description = new.description.strip()
    if not description:
        raise InvalidInput("description must not be empty", field="description")
    if len(description) > MAX_DESCRIPTION:
        raise InvalidInput(f"description is {len(description)} characters; at most "
                           f"{MAX_DESCRIPTION}", field="description")
    return description


def create_incident(conn: Connection, new: NewIncident, reporter: Principal | None,
                    by: Actor) -> Intake:
    """Store a new incident (caller commits). `reporter` is the signed-in user, or None for
    a public channel (`by` then names the channel, e.g. the Open311 client). A retry with
    the same idempotency key returns the first incident (created=False), not a second one.
    Two round trips: what intake reads (`_CONTEXT`), then what it writes (`_STORE`)."""
    description = _check_text(new)
    ask = {**place_params(new.point, new.reported_at), "kind": new.event_kind,
           "code": new.event_code, "key": new.idempotency_key,
           "radius": DUPLICATE_RADIUS_M}
    ctx = conn.execute(_CONTEXT, ask).one()
    if ctx.class_id is None:  # raises, naming the closest codes
        catalog.find_class(conn, new.event_kind, new.event_code)
    if ctx.earlier_id is not None:  # a retry: no second placement, no second incident
        return _check_retry(ctx, str(new.idempotency_key), new)
    if ctx.at > ctx.now:
        raise InvalidInput("reported_at is in the future", field="reported_at")
    placement = placement_of(conn, new.point, ctx.at, ctx.placement)
    if new.street_id is not None:
        placement["street_segment"] = routed_street(conn, new.street_id, new.point, ctx.at)
    check_scope(reporter, placement)
    status = "registered" if new.source in TRUSTED_SOURCES else "pending"
    version = None if ctx.catalog_id is None else (ctx.catalog_id, ctx.catalog_loaded_at)
    deadlines = {stage: moment.isoformat() for stage, moment in catalog.stage_deadlines(
        catalog.calendar_of(conn, version), ctx.at, ctx.time_limits).items()}
    segment = placement["street_segment"] or {}
    joint = placement["joint"]
    district = placement["district"]["code"]
    grid = placement["grid"] or {}
    incident_id = conn.scalar(_STORE, {
        "key": new.idempotency_key, "source": new.source, "class_id": ctx.class_id,
        "description": description, "address": new.address,
        "reporter_name": new.reporter_name, "reporter_phone": new.reporter_phone,
        "reported_at": ctx.at, "lon": new.point.lon, "lat": new.point.lat,
        "crs": new.point.input_crs, "status": status, "district": district,
        "street": (placement["street"] or {}).get("code"),
        "community": (placement["community"] or {}).get("code"),
        "grid_code": grid.get("code"), "grid_id": grid.get("id"),
        "building_id": (placement["building"] or {}).get("id"),
        "street_id": segment.get("id"),
        "chief_id": (segment.get("chief") or {}).get("person_id"),
        "is_joint": joint["is_joint"],
        "joint": json.dumps(joint, ensure_ascii=False) if joint["is_joint"] else None,
        "deadlines": json.dumps(deadlines), "user_id": by.user_id,
        "patrol_id": new.patrol_id,
        "event_data": json.dumps({"source": new.source, "routed_street_id": new.street_id,
                                  "patrol_id": new.patrol_id}),
        "actor": by.name, "request_id": by.request_id,
        "audit_after": json.dumps({"event": f"{ctx.kind}:{ctx.code}", "status": status,
                                   "grid_code": grid.get("code"),
                                   "is_joint": joint["is_joint"]}),
        "codes": sorted(jurisdiction_codes(placement)), "event_code": f"{ctx.kind}:{ctx.code}",
        "live": json.dumps(_live_fields(new, segment, by))})
    if incident_id is None:  # a concurrent request with the same key won; it has committed
        return _check_retry(conn.execute(_CONTEXT, {**ask, "at": ctx.at}).one(),
                            str(new.idempotency_key), new)
    return Intake(int(incident_id), True, placement, list(ctx.duplicates))


def _live_fields(new: NewIncident, segment: dict[str, Any], by: Actor) -> dict[str, Any]:
    """The live event's place and audience (gis/events.py): the incident layer, its point,
    its street chief, its reporter; no department has a task on it yet."""
    chief = (segment.get("chief") or {}).get("person_id")
    return {"layers": ["incidents"], "points": [events.point(new.point.lon, new.point.lat)],
            "person_ids": [chief] if chief is not None else [],
            "user_ids": [by.user_id] if by.user_id is not None else [],
            "department_ids": []}
