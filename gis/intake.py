"""Incident intake: resolve the event class, place the point, set the case state and the
stage deadlines, store the incident with its first case event, audit row and change
notification — one transaction, idempotent by key."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis import audit, catalog
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput
from gis.placement import Point, place

Source = Literal["12345", "grid_worker", "street_chief", "steward", "citizen", "sensor",
                 "other"]
# Reports from the system's own inspectors are registered (立案) at once; the public's wait
# for an operator to accept them (待受理).
TRUSTED_SOURCES = frozenset({"grid_worker", "street_chief", "steward"})
MAX_DESCRIPTION = 4000
DUPLICATE_RADIUS_M = 50.0
DUPLICATE_WINDOW = "24 hours"
NOTIFY_CHANNEL = "gridops_events"


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


def _existing(conn: Connection, key: str | None, new: NewIncident,
              class_id: int) -> Intake | None:
    """The incident an earlier request with `key` created (None: no key, or none yet);
    Conflict when the key was used for a different report."""
    if key is None:
        return None
    row = conn.execute(text("""
        SELECT id, event_class_id, description, ST_X(geom) AS lon, ST_Y(geom) AS lat
        FROM incidents WHERE idempotency_key = :key
    """), {"key": key}).mappings().one_or_none()
    if row is None:
        return None
    same = (row["event_class_id"] == class_id and row["description"] == new.description.strip()
            and abs(row["lon"] - new.point.lon) < 1e-7 and abs(row["lat"] - new.point.lat) < 1e-7)
    if not same:
        raise Conflict(f"Idempotency-Key {key!r} was already used for another report "
                       f"(incident {row['id']}); use a new key for a new report",
                       field="Idempotency-Key")
    return Intake(int(row["id"]), False, None, [])


def create_incident(conn: Connection, new: NewIncident, reporter: Principal | None,
                    by: Actor) -> Intake:
    """Store a new incident (caller commits). `reporter` is the signed-in user, or None for
    a public channel (`by` then names the channel, e.g. the Open311 client). A retry with
    the same idempotency key returns the first incident (created=False), not a second one."""
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
    event = catalog.find_class(conn, new.event_kind, new.event_code)
    earlier = _existing(conn, new.idempotency_key, new, event["id"])
    if earlier is not None:  # a retry: no second placement, no second incident
        return earlier
    now = conn.scalar(text("SELECT now()"))
    reported_at = new.reported_at or now
    if reported_at > now:
        raise InvalidInput("reported_at is in the future", field="reported_at")
    placement = place(conn, new.point, reported_at)
    check_scope(reporter, placement)
    status = "registered" if new.source in TRUSTED_SOURCES else "pending"
    deadlines = {stage: moment.isoformat() for stage, moment in catalog.stage_deadlines(
        catalog.current_calendar(conn), reported_at, event["time_limits"]).items()}
    segment = placement["street_segment"] or {}
    joint = placement["joint"]
    incident_id = conn.scalar(text("""
        INSERT INTO incidents (idempotency_key, source, event_class_id, description, address,
            reporter_name, reporter_phone, reported_at, geom, input_crs, status,
            district_code, street_code, community_code, grid_code, grid_id, building_id,
            street_id, chief_person_id, is_joint, joint, deadlines, created_by)
        VALUES (:key, :source, :class_id, :description, :address, :reporter_name,
            :reporter_phone, :reported_at, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), :crs,
            :status, :district, :street, :community, :grid_code, :grid_id, :building_id,
            :street_id, :chief_id, :is_joint, CAST(:joint AS jsonb), CAST(:deadlines AS jsonb),
            :user_id)
        ON CONFLICT (idempotency_key) DO NOTHING
        RETURNING id
    """), {
        "key": new.idempotency_key, "source": new.source, "class_id": event["id"],
        "description": description, "address": new.address,
        "reporter_name": new.reporter_name, "reporter_phone": new.reporter_phone,
        "reported_at": reported_at, "lon": new.point.lon, "lat": new.point.lat,
        "crs": new.point.input_crs, "status": status,
        "district": placement["district"]["code"],
        "street": (placement["street"] or {}).get("code"),
        "community": (placement["community"] or {}).get("code"),
        "grid_code": (placement["grid"] or {}).get("code"),
        "grid_id": (placement["grid"] or {}).get("id"),
        "building_id": (placement["building"] or {}).get("id"),
        "street_id": segment.get("id"),
        "chief_id": (segment.get("chief") or {}).get("person_id"),
        "is_joint": joint["is_joint"],
        "joint": json.dumps(joint, ensure_ascii=False) if joint["is_joint"] else None,
        "deadlines": json.dumps(deadlines), "user_id": by.user_id})
    if incident_id is None:  # a concurrent request with the same key won
        winner = _existing(conn, new.idempotency_key, new, event["id"])
        assert winner is not None  # committed before ON CONFLICT let this insert go
        return winner
    district = placement["district"]["code"]
    conn.execute(text("""
        INSERT INTO case_events (incident_id, actor_id, action, to_status, data, district_code)
        VALUES (:id, :user_id, 'report', :status, CAST(:data AS jsonb), :district)
    """), {"id": incident_id, "user_id": by.user_id, "status": status,
           "district": district, "data": json.dumps({"source": new.source})})
    audit.record(conn, by, action="incident.create", object_type="incident",
                 object_id=str(incident_id), district_code=district,
                 after={"event": f"{event['kind']}:{event['code']}", "status": status,
                        "grid_code": (placement["grid"] or {}).get("code"),
                        "is_joint": joint["is_joint"]})
    notify(conn, "incident.created", incident_id, placement)
    return Intake(int(incident_id), True, placement, duplicates(conn, incident_id))


def notify(conn: Connection, kind: str, incident_id: int, placement: dict[str, Any]) -> None:
    """A change notification (delivered on commit) for live maps: what changed and which
    jurisdictions it concerns, so listeners can filter by scope."""
    codes = jurisdiction_codes(placement)
    conn.execute(text("SELECT pg_notify(:channel, :payload)"), {
        "channel": NOTIFY_CHANNEL,
        "payload": json.dumps({"type": kind, "incident_id": incident_id,
                               "codes": sorted(codes)})})


def duplicates(conn: Connection, incident_id: int) -> list[dict[str, Any]]:
    """Possible duplicates: open incidents of the same class within 50 m reported in the
    24 hours before this one."""
    rows = conn.execute(text(f"""
        SELECT o.id, o.status, o.reported_at,
               round(ST_Distance(o.geom::geography, i.geom::geography)::numeric, 1)
                 AS distance_m
        FROM incidents i JOIN incidents o
          ON o.event_class_id = i.event_class_id AND o.id <> i.id
         AND o.geom && ST_Expand(i.geom, 0.001)  -- index prefilter, > 50 m at any latitude here
         AND ST_DWithin(o.geom::geography, i.geom::geography, :radius)
         AND o.reported_at BETWEEN i.reported_at - interval '{DUPLICATE_WINDOW}'
                               AND i.reported_at
         AND o.status NOT IN ('closed', 'void', 'ledger')
        WHERE i.id = :id
        ORDER BY distance_m, o.id LIMIT 10
    """), {"id": incident_id, "radius": DUPLICATE_RADIUS_M})  # noqa: S608 - constant
    return [dict(r) for r in rows.mappings()]
