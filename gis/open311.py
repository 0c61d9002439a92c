"""Open311 GeoReport v2, the domain side: API keys of client apps (only a SHA-256 of each
key is stored), services from the event catalog, service requests created through the same
intake as every other report (placement, case state, deadlines, audit, notification) and
read back as Open311 dicts — never with the reporter's contacts — and the XML form of
those documents.

A service code is `<kind>-<code>` (`event-0101`, `component-0101`): the catalog numbers
事件 and 部件 separately, so a bare code would be ambiguous.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from gis import audit, catalog, intake
from gis.audit import Actor
from gis.errors import Conflict, Forbidden, GridOpsError, InvalidInput, NotFound
from gis.features import parse_at
from gis.intake import NewIncident
from gis.placement import POINT_CRS, to_wgs84

SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
CHANGESET = "2026-11-21T00:00:00+08:00"  # when this implementation last changed
FORMATS = {"json": "application/json", "xml": "text/xml"}
KEY_PREFIX = "o311_"
MAX_KEY_LENGTH = 200
_KEY_NAME = re.compile(r"^[\w.-]{1,100}$")
_SERVICE_CODE = re.compile(r"^(event|component)-([0-9]{4})$")
_REQUEST_ID = re.compile(r"^[0-9]{1,18}$")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
KIND_LABELS = {"event": "事件", "component": "部件"}
CLOSED_STATUSES = ("closed", "void", "ledger")
STATUS_NOTES = {
    "pending": "待受理: received; waiting for an operator to accept it",
    "registered": "立案: accepted; waiting to be dispatched",
    "dispatched": "派遣: sent to the responsible department",
    "handling": "处置: being handled",
    "feedback": "反馈: the department has reported back; awaiting verification",
    "verifying": "核查: being verified on site",
    "closed": "结案: handled and closed",
    "void": "作废: not taken up (duplicate, not actionable, or not ours)",
    "ledger": "挂账: recorded for long-term follow-up",
}
PUBLIC_SOURCES = ["citizen"]  # the reports GET shows: those the public sent
MAX_REQUEST_IDS = 100
MAX_SPAN = timedelta(days=90)
MAX_CONTACT = 100
MIN_IDEMPOTENCY_KEY, MAX_IDEMPOTENCY_KEY = 8, 128
# Our domain's field names, as the GeoReport v2 form calls them.
OPEN311_FIELDS = {"lon": "long", "event_code": "service_code", "address": "address_string",
                  "reporter_name": "first_name", "reporter_phone": "phone", "crs": "attribute[crs]"}
CRS_ATTRIBUTE: dict[str, Any] = {
    "variable": True, "code": "crs", "datatype": "singlevaluelist", "required": False,
    "datatype_description": "send as attribute[crs]; default wgs84",
    "order": 1,
    "description": "坐标系 of lat/long: WGS84 (GPS, the default); GCJ-02 (高德, 腾讯, 微信); "
                   "BD-09 (百度). A point sent in the wrong one lands ~500 m off.",
    "values": [{"key": "wgs84", "name": "WGS84 (GPS)"},
               {"key": "gcj02", "name": "GCJ-02 (高德/腾讯/微信)"},
               {"key": "bd09", "name": "BD-09 (百度)"}],
}


# -- API keys ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiClient:
    """The client app a valid key belongs to."""

    id: int
    name: str


def hash_key(key: str) -> str:
    """The stored form of a key: SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(conn: Connection, name: str, *, by: Actor) -> tuple[dict[str, Any], str]:
    """A new key for client `name` (caller commits): its row and the key itself, which is
    not stored and cannot be shown again. Conflict when the name is taken (revoked or not)."""
    name = name.strip()
    if not _KEY_NAME.match(name):
        raise InvalidInput(f"a client name is 1-100 letters, digits, '.', '-' or '_'; got "
                           f"{name!r}", field="name")
    if conn.scalar(text("SELECT 1 FROM open311_keys WHERE name = :n"), {"n": name}):
        raise Conflict(f"an Open311 client named {name!r} already exists (keys are never "
                       f"reused: revoke it and pick another name)", field="name")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = conn.execute(text("""
        INSERT INTO open311_keys (name, key_hash) VALUES (:name, :hash)
        RETURNING id, name, created_at, revoked_at, last_used_at
    """), {"name": name, "hash": hash_key(key)}).mappings().one()
    audit.record(conn, by, action="open311_key.create", object_type="open311_key",
                 object_id=name, after={"name": name, "created_at": row["created_at"]})
    return dict(row), key


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    """Every client key (name and dates; never the hash), oldest first."""
    rows = conn.execute(text("SELECT id, name, created_at, revoked_at, last_used_at "
                             "FROM open311_keys ORDER BY created_at, id"))
    return [dict(r) for r in rows.mappings()]


def revoke_key(conn: Connection, name: str, *, by: Actor) -> dict[str, Any]:
    """Revoke client `name`'s key (caller commits); revoking twice keeps the first date.
    NotFound when there is no such client."""
    before = conn.execute(text("SELECT revoked_at FROM open311_keys WHERE name = :n FOR UPDATE"),
                          {"n": name}).first()
    if before is None:
        raise NotFound(f"no Open311 client named {name!r} (see `gridops open311 key list`)",
                       field="name")
    row = conn.execute(text("""
        UPDATE open311_keys SET revoked_at = coalesce(revoked_at, now()) WHERE name = :n
        RETURNING id, name, created_at, revoked_at, last_used_at
    """), {"n": name}).mappings().one()
    if before[0] is None:
        audit.record(conn, by, action="open311_key.revoke", object_type="open311_key",
                     object_id=name, before={"revoked_at": None},
                     after={"revoked_at": row["revoked_at"]})
    return dict(row)


def verify_key(conn: Connection, key: str | None) -> ApiClient:
    """The client holding `key`; Forbidden (naming api_key) when it is missing, unknown or
    revoked. The hash is compared with every stored one in constant time."""
    if not key or not key.strip():
        raise Forbidden("api_key is required to create a service request; ask the operator "
                        "of this service for one", field="api_key")
    if len(key.strip()) > MAX_KEY_LENGTH:
        raise Forbidden("api_key is not valid", field="api_key")
    digest = hash_key(key.strip())
    match = None
    for row in conn.execute(text("SELECT id, name, key_hash, revoked_at FROM open311_keys")):
        if hmac.compare_digest(row.key_hash, digest):  # no early exit: every row is compared
            match = row
    if match is None:
        raise Forbidden("api_key is not valid", field="api_key")
    if match.revoked_at is not None:
        raise Forbidden(f"api_key was revoked on {match.revoked_at:%Y-%m-%d}; ask the operator "
                        f"for a new one", field="api_key")
    return ApiClient(int(match.id), str(match.name))


# -- services ----------------------------------------------------------------------------


def service_code(kind: str, code: str) -> str:
    """The Open311 service code of catalog class (kind, code)."""
    return f"{kind}-{code}"


def parse_service_code(value: str, field: str = "service_code") -> tuple[str, str]:
    """(kind, code) of a service code such as event-0101; InvalidInput naming `field`."""
    match = _SERVICE_CODE.match(value.strip())
    if match is None:
        raise InvalidInput(f"{field} must look like event-0101 or component-0101 (see "
                           f"services.json); got {value!r}", field=field)
    return match.group(1), match.group(2)


def _agency(departments: list[dict[str, Any]]) -> str | None:
    """The primary responsible department type's name, e.g. 城管执法."""
    primary = next((d for d in departments if d.get("role") == "primary"), None)
    return None if primary is None else primary.get("type_name") or primary.get("type")


def _service(row: dict[str, Any]) -> dict[str, Any]:
    agency = _agency(row["departments"])
    return {
        "service_code": service_code(row["kind"], row["code"]),
        "service_name": row["name"],
        "description": f"{KIND_LABELS[row['kind']]} {row['major_name']} / {row['name']}"
                       + (f" (责任单位: {agency})" if agency else ""),
        "metadata": True,  # every service takes the crs attribute
        "type": "realtime",
        "keywords": f"{row['major_name']}, {KIND_LABELS[row['kind']]}",
        "group": row["major_name"],
    }


def services(conn: Connection) -> list[dict[str, Any]]:
    """The active catalog classes as Open311 services, events first, by code."""
    return [_service(row) for row in catalog.list_classes(conn)]


def _find_class(conn: Connection, value: str) -> dict[str, Any]:
    """The active class of a service code; InvalidInput naming service_code (with the
    closest service codes) when there is none."""
    kind, code = parse_service_code(value)
    try:
        return catalog.find_class(conn, kind, code, field_name="service_code")
    except InvalidInput as exc:
        close = [service_code(s["kind"], s["code"]) + f" {s['name']}"
                 for s in (exc.detail or {}).get("suggestions", [])]
        hint = f"; did you mean {', '.join(close)}" if close else ""
        raise InvalidInput(f"service_code {value!r} is not a service here{hint} (see "
                           f"services.json)", field="service_code") from exc


def service_definition(conn: Connection, value: str) -> dict[str, Any]:
    """The definition of one service: its attributes (the point's coordinate system).
    NotFound naming service_code when the code is unknown."""
    try:
        event = _find_class(conn, value)
    except InvalidInput as exc:
        if _SERVICE_CODE.match(value.strip()):
            raise NotFound(exc.message, field="service_code") from exc
        raise
    return {"service_code": service_code(event["kind"], event["code"]),
            "attributes": [CRS_ATTRIBUTE]}


# -- creating a service request ----------------------------------------------------------


@dataclass(frozen=True)
class RequestForm:
    """A POST requests form as sent (strings, unchecked); fields GridOps does not use
    (email, media_url, device_id, account_id) are accepted and dropped."""

    service_code: str | None = None
    lat: str | None = None
    long: str | None = None
    address_string: str | None = None
    address_id: str | None = None
    description: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None
    crs: str | None = None
    idempotency_key: str | None = None


def _blank(value: str | None) -> bool:
    return value is None or not value.strip()


def _coordinate(value: str | None, field: str, bound: float) -> float:
    if _blank(value):
        raise InvalidInput(f"{field} is required (WGS84 degrees)", field=field)
    assert value is not None
    try:
        number = float(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a number in degrees; got {value!r}",
                           field=field) from None
    if not math.isfinite(number):
        raise InvalidInput(f"{field} must be a finite number; got {value!r}", field=field)
    if abs(number) > bound:
        raise InvalidInput(f"{field} must be within -{bound:g}..{bound:g} degrees; got "
                           f"{number:g}", field=field)
    return number


def _point_of(form: RequestForm) -> tuple[float, float]:
    """(long, lat) of the form; address_string alone is refused (no geocoder)."""
    if _blank(form.lat) and _blank(form.long):
        given = "address_string" if not _blank(form.address_string) else (
            "address_id" if not _blank(form.address_id) else None)
        if given:
            raise InvalidInput(f"lat/long are required: GridOps places every report on the map "
                               f"by its coordinates, and {given} alone is not supported; send "
                               f"lat and long (WGS84 degrees, or set attribute[crs])",
                               field="lat")
    lat = _coordinate(form.lat, "lat", math.inf)
    lon = _coordinate(form.long, "long", 180.0)
    if abs(lat) > 90:
        hint = " (lat and long look swapped)" if abs(lon) <= 90 else ""
        raise InvalidInput(f"lat must be within -90..90 degrees; got {lat:g}{hint}",
                           field="lat")
    return lon, lat


def _optional(value: str | None, field: str, limit: int) -> str | None:
    if _blank(value):
        return None
    assert value is not None
    value = value.strip()
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters; at most {limit}", field=field)
    return value


def submit_request(conn: Connection, api_key: str | None, form: RequestForm, *,
                   request_id: str | None = None) -> tuple[list[dict[str, Any]], bool]:
    """Create the incident a client reports (caller commits): the key is checked first,
    then the form; the report goes through intake as a public `citizen` report audited as
    `open311:<client>`. Returns the Open311 answer and whether it was created (False: a
    retry with the same Idempotency-Key, answered with the first request's id)."""
    client = verify_key(conn, api_key)
    for name, value in vars(form).items():
        if value and _CONTROL.search(value):
            field = {"crs": "attribute[crs]", "idempotency_key": "Idempotency-Key"}.get(
                name, name)
            raise InvalidInput(f"{field} contains control characters", field=field)
    if _blank(form.service_code):
        raise InvalidInput("service_code is required (see services.json)", field="service_code")
    assert form.service_code is not None
    event = _find_class(conn, form.service_code)
    lon, lat = _point_of(form)
    crs = (form.crs or "wgs84").strip().lower() or "wgs84"
    if crs not in POINT_CRS:
        raise InvalidInput(f"attribute[crs] must be one of {', '.join(POINT_CRS)}; got "
                           f"{form.crs!r}", field="attribute[crs]")
    if _blank(form.description):
        raise InvalidInput("description is required: say what is wrong", field="description")
    names = [_optional(form.first_name, "first_name", MAX_CONTACT),
             _optional(form.last_name, "last_name", MAX_CONTACT)]
    key = _optional(form.idempotency_key, "Idempotency-Key", MAX_IDEMPOTENCY_KEY)
    if key is not None and len(key) < MIN_IDEMPOTENCY_KEY:
        raise InvalidInput(f"Idempotency-Key must be {MIN_IDEMPOTENCY_KEY}-"
                           f"{MAX_IDEMPOTENCY_KEY} characters (e.g. a UUID)",
                           field="Idempotency-Key")
    new = NewIncident(
        event_code=event["code"], event_kind=event["kind"], point=to_wgs84(lon, lat, crs),
        description=(form.description or "").strip(), source="citizen",
        address=_optional(form.address_string, "address_string", 500),
        reporter_name=" ".join(n for n in names if n) or None,
        reporter_phone=_optional(form.phone, "phone", 40),
        # Keys are scoped per client, so two apps' keys never collide.
        idempotency_key=None if key is None else f"open311:{client.id}:{key}")
    try:
        result = intake.create_incident(conn, new, None,
                                        Actor(f"open311:{client.name}", request_id=request_id))
    except Conflict as exc:  # the client's key, not our scoped form of it
        first = conn.scalar(text("SELECT id FROM incidents WHERE idempotency_key = :k"),
                            {"k": new.idempotency_key})
        raise Conflict(f"Idempotency-Key {key!r} was already used for another report "
                       f"(service request {first}); use a new key for a new report",
                       field="Idempotency-Key") from exc
    conn.execute(text("UPDATE open311_keys SET last_used_at = now() WHERE id = :id"),
                 {"id": client.id})
    one = get_request(conn, str(result.incident_id))
    notice = "; ".join(part for part in (
        one["status_notes"],
        one["agency_responsible"] and f"responsible: {one['agency_responsible']}",
        one["expected_datetime"] and f"expected by {one['expected_datetime']}") if part)
    return [{"service_request_id": one["service_request_id"], "service_notice": notice,
             "account_id": None}], result.created


# -- reading service requests ------------------------------------------------------------


# A timestamptz as a W3C datetime in Beijing time (UTC+8, no DST): to_char(t AT TIME ZONE
# 'Asia/Shanghai', :w3c).
W3C_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS"+08:00"'


# The Open311 request, built by PostgreSQL; no reporter contacts.
_REQUEST = """
    json_build_object(
      'service_request_id', CAST(i.id AS text),
      'status', CASE WHEN i.status IN ('closed', 'void', 'ledger') THEN 'closed'
                     ELSE 'open' END,
      'status_notes', CAST(:notes AS jsonb)->>i.status,
      'service_name', ec.name,
      'service_code', ec.kind || '-' || ec.code,
      'description', i.description,
      'agency_responsible', (
        SELECT coalesce(CAST(:types AS jsonb)->>(d->>'type'), d->>'type')
        FROM jsonb_array_elements(ec.departments) d WHERE d->>'role' = 'primary' LIMIT 1),
      'service_notice', NULL,
      'requested_datetime', to_char(i.reported_at AT TIME ZONE 'Asia/Shanghai', :w3c),
      'updated_datetime', to_char(coalesce(i.closed_at, i.updated_at)
                                  AT TIME ZONE 'Asia/Shanghai', :w3c),
      'expected_datetime', to_char(CAST(i.deadlines->>'handle' AS timestamptz)
                                   AT TIME ZONE 'Asia/Shanghai', :w3c),
      'address', i.address,
      'address_id', NULL,
      'zipcode', NULL,
      'lat', round(CAST(ST_Y(i.geom) AS numeric), 7),
      'long', round(CAST(ST_X(i.geom) AS numeric), 7),
      'media_url', NULL)
"""


@dataclass(frozen=True)
class RequestQuery:
    """Filters of GET requests (already checked): ids override every other filter."""

    ids: list[int] | None = None
    service_codes: list[str] | None = None
    start: datetime | None = None
    end: datetime | None = None
    statuses: list[str] | None = None


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def _request_id(value: str, field: str = "service_request_id") -> int:
    if not _REQUEST_ID.match(value.strip()):
        raise InvalidInput(f"{field} must be a number such as 1234; got {value!r}", field=field)
    return int(value.strip())


def parse_query(*, service_request_id: str | None = None, service_code: str | None = None,
                start_date: str | None = None, end_date: str | None = None,
                status: str | None = None, now: datetime | None = None) -> RequestQuery:
    """Check GET requests' filters: comma lists, W3C dates, a window of at most 90 days
    (the last 90 days by default); InvalidInput names the parameter."""
    ids = [_request_id(part) for part in _split(service_request_id)]
    if len(ids) > MAX_REQUEST_IDS:
        raise InvalidInput(f"service_request_id lists {len(ids)} ids; at most "
                           f"{MAX_REQUEST_IDS}", field="service_request_id")
    if ids:
        return RequestQuery(ids=ids)
    codes = _split(service_code)
    for code in codes:
        parse_service_code(code)
    statuses = [s.lower() for s in _split(status)]
    for value in statuses:
        if value not in ("open", "closed"):
            raise InvalidInput(f"status must be open or closed (comma separated); got "
                               f"{value!r}", field="status")
    start = None if _blank(start_date) else parse_at(start_date, "start_date")
    end = None if _blank(end_date) else parse_at(end_date, "end_date")
    if start is None and end is None:
        end = now or datetime.now(UTC)
    try:
        if start is None:
            assert end is not None
            start = end - MAX_SPAN
        if end is None:
            end = start + MAX_SPAN
    except OverflowError:
        raise InvalidInput("start_date/end_date: the window must lie within years 1..9999",
                           field="start_date" if end is None else "end_date") from None
    if end < start:
        raise InvalidInput("end_date is before start_date", field="end_date")
    if end - start > MAX_SPAN:
        raise InvalidInput(f"start_date..end_date spans {(end - start).days} days; at most "
                           f"{MAX_SPAN.days}", field="end_date")
    return RequestQuery(service_codes=codes or None, start=start, end=end,
                        statuses=sorted(set(statuses)) or None)


def _params(conn: Connection) -> dict[str, Any]:
    return {"notes": json.dumps(STATUS_NOTES, ensure_ascii=False),
            "types": json.dumps(catalog.department_types(conn), ensure_ascii=False),
            "sources": PUBLIC_SOURCES, "w3c": W3C_FORMAT}


def find_requests(conn: Connection, query: RequestQuery, *, limit: int) -> list[dict[str, Any]]:
    """Public service requests matching `query`, newest first, at most `limit`."""
    want = set(query.statuses or ("open", "closed"))
    rows = conn.scalars(text(f"""
        SELECT {_REQUEST}
        FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
        WHERE i.source = ANY(:sources)
          AND (CAST(:ids AS bigint[]) IS NULL OR i.id = ANY(CAST(:ids AS bigint[])))
          AND (CAST(:codes AS text[]) IS NULL
               OR ec.kind || '-' || ec.code = ANY(CAST(:codes AS text[])))
          AND (CAST(:start AS timestamptz) IS NULL OR i.reported_at >= :start)
          AND (CAST(:end AS timestamptz) IS NULL OR i.reported_at <= :end)
          AND ((:open AND i.status NOT IN ('closed', 'void', 'ledger'))
               OR (:closed AND i.status IN ('closed', 'void', 'ledger')))
        ORDER BY i.reported_at DESC, i.id DESC
        LIMIT :limit
    """), {**_params(conn), "ids": query.ids, "codes": query.service_codes,  # noqa: S608
           "start": query.start, "end": query.end, "open": "open" in want,
           "closed": "closed" in want, "limit": limit}).all()
    return [dict(r) for r in rows]


def get_request(conn: Connection, value: str) -> dict[str, Any]:
    """One public service request; NotFound naming service_request_id otherwise."""
    found = find_requests(conn, RequestQuery(ids=[_request_id(value)]), limit=1)
    if not found:
        raise NotFound(f"no service request {value.strip()}", field="service_request_id")
    return found[0]


# -- discovery and formats -----------------------------------------------------------------


def discovery(endpoint_url: str, *, production: bool) -> dict[str, Any]:
    """The discovery document for the endpoint at `endpoint_url`."""
    return {
        "changeset": CHANGESET,
        "contact": "the operator of this GridOps installation",
        "key_service": "API keys for POST requests are issued by the operator "
                       "(`gridops open311 key create NAME`)",
        "endpoints": [{"specification": SPECIFICATION, "url": endpoint_url,
                       "changeset": CHANGESET, "type": "production" if production else "test",
                       "formats": list(FORMATS.values())}],
    }


def describe(exc: GridOpsError) -> tuple[str | None, str]:
    """(field as Open311 names it, a description naming it) of a domain error."""
    field = OPEN311_FIELDS.get(exc.field or "", exc.field)
    message = exc.message
    if field and not message.startswith(field) and not (
            exc.field and message.startswith(exc.field)):
        message = f"{field}: {message}"
    return field, message


# XML: a list under key K is an element K holding one element per item, named as below.
_ITEMS = {"services": "service", "service_requests": "request", "attributes": "attribute",
          "values": "value", "endpoints": "endpoint", "formats": "format", "errors": "error"}
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("", str(value))


def _fill(element: ET.Element, name: str, value: Any) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _fill(ET.SubElement(element, key), key, item)
    elif isinstance(value, list):
        for item in value:
            _fill(ET.SubElement(element, _ITEMS[name]), _ITEMS[name], item)
    else:
        element.text = _xml_text(value)


def to_xml(root: str, document: dict[str, Any] | list[Any]) -> bytes:
    """An Open311 document as XML: `root` is services, service_requests, errors,
    service_definition or discovery."""
    element = ET.Element(root)
    _fill(element, root, document)
    return ET.tostring(element, encoding="utf-8", xml_declaration=True)
