"""Photos of an incident: images checked by their bytes (not the name or the declared type),
size-limited, stored in PostgreSQL with an audit row; read back through the reader's scope."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import Connection, text

from gis import audit
from gis.auth import Principal
from gis.errors import Conflict, InvalidInput, NotFound
from gis.incidents import get_incident

MAX_PHOTOS = 9
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


def sniff(data: bytes) -> str | None:
    """The image type of `data` from its first bytes: JPEG, PNG or WebP; None otherwise."""
    for magic, kind in _SIGNATURES:
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image(data: bytes, max_bytes: int) -> str:
    """The image type of `data` (JPEG, PNG or WebP, by its bytes); InvalidInput naming the
    field `photo` for an empty, oversize or non-image file."""
    if not data:
        raise InvalidInput("photo: the file is empty", field="photo")
    if len(data) > max_bytes:
        raise InvalidInput(f"photo: {len(data):,} bytes is over the limit of {max_bytes:,}",
                           field="photo")
    kind = sniff(data)
    if kind is None:
        raise InvalidInput("photo: not a JPEG, PNG or WebP image", field="photo")
    return kind


def store_photo(conn: Connection, incident_id: int, district_code: str, data: bytes,
                max_bytes: int, by: audit.Actor) -> dict[str, Any]:
    """Attach an image to incident `incident_id` (in district `district_code`) with an audit
    row, without a reader's scope check: the caller decides who may (caller commits).
    InvalidInput names `photo` for a bad file; a tenth photo or the same image twice is a
    Conflict naming the first copy."""
    kind = check_image(data, max_bytes)
    count = conn.scalar(text("SELECT count(*) FROM incident_photos WHERE incident_id = :i"),
                        {"i": incident_id})
    if count >= MAX_PHOTOS:
        raise Conflict(f"incident {incident_id} already has {MAX_PHOTOS} photos",
                       field="photo")
    digest = hashlib.sha256(data).hexdigest()
    existing = conn.scalar(text("SELECT id FROM incident_photos WHERE incident_id = :i "
                                "AND sha256 = :h"), {"i": incident_id, "h": digest})
    if existing is not None:
        raise Conflict(f"photo: this image is already attached (photo {existing})",
                       field="photo")
    row = conn.execute(text("""
        INSERT INTO incident_photos (incident_id, content_type, data, size_bytes, sha256,
                                     uploaded_by, district_code)
        VALUES (:i, :kind, :data, :size, :sha, :user, :district)
        RETURNING id, incident_id, content_type, size_bytes, sha256, uploaded_at
    """), {"i": incident_id, "kind": kind, "data": data, "size": len(data), "sha": digest,
           "user": by.user_id, "district": district_code}).mappings().one()
    photo = dict(row)
    audit.record(conn, by, action="incident.photo", object_type="incident",
                 object_id=str(incident_id), district_code=district_code,
                 after={"photo_id": photo["id"], "content_type": kind, "size_bytes": len(data)})
    return photo


def add_photo(conn: Connection, reader: Principal, incident_id: int, data: bytes,
              max_bytes: int, by: audit.Actor) -> dict[str, Any]:
    """Attach an image to an incident `reader` may see (caller commits): `store_photo`
    after the scope check (NotFound outside the scope)."""
    incident = get_incident(conn, reader, incident_id)
    return store_photo(conn, incident_id, incident["properties"]["district_code"], data,
                       max_bytes, by)


def list_photos(conn: Connection, reader: Principal, incident_id: int) -> list[dict[str, Any]]:
    """The photos of an incident `reader` may see (without their bytes)."""
    get_incident(conn, reader, incident_id)
    rows = conn.execute(text("""
        SELECT id, incident_id, content_type, size_bytes, sha256, uploaded_at
        FROM incident_photos WHERE incident_id = :i ORDER BY id"""), {"i": incident_id})
    return [dict(r) for r in rows.mappings()]


def get_photo(conn: Connection, reader: Principal, incident_id: int,
              photo_id: int) -> tuple[str, bytes]:
    """(content type, bytes) of one photo of an incident `reader` may see."""
    get_incident(conn, reader, incident_id)
    row = conn.execute(text("SELECT content_type, data FROM incident_photos "
                            "WHERE id = :p AND incident_id = :i"),
                       {"p": photo_id, "i": incident_id}).one_or_none()
    if row is None:
        raise NotFound(f"no photo {photo_id} on incident {incident_id}", field="photo_id")
    return str(row[0]), bytes(row[1])
