"""Citizen reports through the QR code on a street's public sign (公示牌): checked, then
stored as a `citizen` incident routed to that street and its chief, with its photo, in one
transaction — a rejected photo, class or position leaves nothing behind. Idempotent by the
client's key (kept in its own namespace, so a public key never meets another channel's)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from gis import intake, photos, signs
from gis.audit import Actor
from gis.errors import InvalidInput
from gis.intake import NewIncident
from gis.placement import to_wgs84

KEY_PREFIX = "street-sign:"
MAX_DESCRIPTION = 1000
MAX_NAME = 50
_PHONE = re.compile(r"\+?[0-9]{7,20}")
_PHONE_SEPARATORS = re.compile(r"[\s\-()]")


@dataclass(frozen=True)
class StreetReport:
    """What the public form sends (the position in WGS84, or none: the street's own)."""

    street_id: int
    event_code: str
    description: str
    idempotency_key: str
    event_kind: str = "event"
    lon: float | None = None
    lat: float | None = None
    reporter_name: str | None = None
    reporter_phone: str | None = None
    photo: bytes | None = None


def check_phone(value: str | None) -> str | None:
    """The phone number without spaces, hyphens or brackets (7–20 digits, an optional
    leading +); None when blank; InvalidInput naming `reporter_phone` otherwise."""
    if value is None or not value.strip():
        return None
    phone = _PHONE_SEPARATORS.sub("", value)
    if not _PHONE.fullmatch(phone):
        raise InvalidInput("reporter_phone: 7 to 20 digits (spaces and hyphens allowed); "
                           f"got {value!r}", field="reporter_phone")
    return phone


def _optional_text(value: str | None, field: str, limit: int) -> str | None:
    if value is None or not value.strip():
        return None
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters; at most {limit}", field=field)
    return value


def submit(conn: Connection, report: StreetReport, photo_max_bytes: int,
           by: Actor) -> dict[str, Any]:
    """Store the report as an incident routed to the sign's street (caller commits): the
    receipt (`receipt`) and whether this call created it (a retry with the same key returns
    the first report and stores no second photo). NotFound naming `street_id` for an
    unknown street; InvalidInput naming `photo`, `event_code` (with close codes),
    `description`, `reporter_phone`, `reporter_name`, `lon` or `lat` (a position more than
    300 m from the street)."""
    sign = signs.sign_for(conn, report.street_id)
    phone = check_phone(report.reporter_phone)
    name = _optional_text(report.reporter_name, "reporter_name", MAX_NAME)
    if len(report.description.strip()) > MAX_DESCRIPTION:
        raise InvalidInput(f"description is {len(report.description.strip())} characters; "
                           f"at most {MAX_DESCRIPTION}", field="description")
    if (report.lon is None) != (report.lat is None):
        missing = "lat" if report.lat is None else "lon"
        raise InvalidInput(f"{missing}: send both lon and lat, or neither (the street's own "
                           "position is used then)", field=missing)
    if report.lon is not None and report.lat is not None:
        point = to_wgs84(report.lon, report.lat)
    else:
        point = to_wgs84(sign.lon, sign.lat)
    if report.photo is not None:  # checked before anything is placed or stored
        photos.check_image(report.photo, photo_max_bytes)
    result = intake.create_incident(conn, NewIncident(
        event_code=report.event_code, event_kind=report.event_kind, point=point,
        description=report.description, source="citizen", address=sign.name,
        reporter_name=name, reporter_phone=phone,
        idempotency_key=KEY_PREFIX + report.idempotency_key, street_id=sign.street_id),
        None, by)
    if result.created and report.photo is not None and result.placement is not None:
        photos.store_photo(conn, result.incident_id, result.placement["district"]["code"],
                           report.photo, photo_max_bytes, by)
    return {**receipt(conn, result.incident_id), "created": result.created}


_RECEIPT = text("""
    SELECT i.id AS report_id, i.status, i.reported_at, i.street_id, s.name AS street_name,
           pe.name AS chief_name, r.role AS chief_role,
           (SELECT count(*) FROM incident_photos p WHERE p.incident_id = i.id) AS photos
    FROM incidents i
    LEFT JOIN streets s ON s.id = i.street_id
    LEFT JOIN people pe ON pe.id = i.chief_person_id
    LEFT JOIN LATERAL (
        SELECT sa.role FROM street_assignments sa
        WHERE sa.street_id = i.street_id AND sa.person_id = i.chief_person_id
          AND sa.role IN ('street_chief', 'alley_chief')
        ORDER BY sa.valid_from DESC, sa.id LIMIT 1) r ON true
    WHERE i.id = :id
""")


def receipt(conn: Connection, incident_id: int) -> dict[str, Any]:
    """What the citizen gets back: the report number, its state, the street and the chief it
    went to (name and title only), when it was reported and how many photos it carries."""
    row = conn.execute(_RECEIPT, {"id": incident_id}).mappings().one()
    chief = None if row["chief_name"] is None else {
        "name": row["chief_name"], "role": row["chief_role"],
        "title": signs.ROLE_LABELS.get(row["chief_role"] or "", "街巷长")}
    return {"report_id": int(row["report_id"]), "status": row["status"],
            "reported_at": row["reported_at"],
            "street": {"id": row["street_id"], "name": row["street_name"]},
            "chief": chief, "photos": int(row["photos"])}
