"""Reading incidents as GeoJSON built by PostGIS, always through the reader's visibility
predicate (gis.scope): an incident outside it is "not found", exactly like a missing id."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.errors import NotFound
from gis.features import GEOJSON_DECIMALS, BBox, FeaturePage
from gis.scope import incident_visible, may_see_contacts

Status = Literal["pending", "registered", "void", "dispatched", "handling", "feedback",
                 "verifying", "closed", "ledger"]

# The stage a case is in (NULL once it has ended), and that stage's deadline: overdue when
# past. gis.workflow builds its deadline SQL (near-overdue, escalation) on the same stage.
CURRENT_STAGE = """(CASE i.status
    WHEN 'pending' THEN 'accept' WHEN 'registered' THEN 'dispatch'
    WHEN 'dispatched' THEN 'handle' WHEN 'handling' THEN 'handle'
    WHEN 'feedback' THEN 'verify' WHEN 'verifying' THEN 'verify' END)"""
CURRENT_DEADLINE = f"(i.deadlines ->> {CURRENT_STAGE})::timestamptz"

# An incident's properties (over incidents `i` joined to event_classes `ec`; bound
# :contacts), here and in the OGC collection; reporter contacts only for those who act on
# the case.
PROPERTIES = f"""json_build_object(
        'id', i.id, 'status', i.status, 'source', i.source,
        'event_kind', ec.kind, 'event_code', ec.code, 'event_name', ec.name,
        'major_name', ec.major_name,
        'description', i.description, 'address', i.address,
        'reporter_name', CASE WHEN :contacts THEN i.reporter_name END,
        'reporter_phone', CASE WHEN :contacts THEN i.reporter_phone END,
        'reported_at', i.reported_at, 'received_at', i.received_at,
        'district_code', i.district_code, 'street_code', i.street_code,
        'community_code', i.community_code, 'grid_code', i.grid_code,
        'building_id', i.building_id, 'street_id', i.street_id,
        'chief_person_id', i.chief_person_id,
        'is_joint', i.is_joint, 'joint', i.joint,
        'deadlines', i.deadlines, 'supervised', i.supervised,
        'escalation_level', i.escalation_level,
        'due_at', {CURRENT_DEADLINE},
        'overdue', coalesce({CURRENT_DEADLINE} < now(), false),
        'closed_at', i.closed_at, 'updated_at', i.updated_at)"""

# One Feature per incident.
_FEATURE = f"""
    json_build_object(
      'type', 'Feature',
      'id', i.id,
      'geometry', ST_AsGeoJSON(i.geom, {GEOJSON_DECIMALS})::json,
      'properties', {PROPERTIES})
"""


@dataclass(frozen=True)
class IncidentFilter:
    """Filters of the incident list; None means any."""

    status: Status | None = None
    district_code: str | None = None
    street_code: str | None = None
    community_code: str | None = None
    grid_code: str | None = None
    event_kind: str | None = None
    event_code: str | None = None
    source: str | None = None
    overdue: bool | None = None
    is_joint: bool | None = None
    since: datetime | None = None
    until: datetime | None = None
    bbox: BBox | None = None


def get_incident(conn: Connection, reader: Principal, incident_id: int) -> dict[str, Any]:
    """One incident as a Feature; NotFound when it does not exist or `reader` may not see it."""
    visible, params = incident_visible(reader)
    feature = conn.scalar(
        text(f"""
            SELECT {_FEATURE}
            FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
            WHERE i.id = :id AND ({visible})
        """),  # noqa: S608 - constant SQL fragments; values are bound
        {**params, "id": incident_id, "contacts": may_see_contacts(reader)},
    )
    if feature is None:
        raise NotFound(f"no incident {incident_id} (or not in your scope)", field="incident_id")
    return dict(feature)


def list_incidents(conn: Connection, reader: Principal, where: IncidentFilter, *, limit: int,
                   before_id: int | None = None) -> FeaturePage:
    """Incidents `reader` may see that match `where`, newest id first, keyset paged."""
    visible, params = incident_visible(reader)
    bbox = where.bbox or (None, None, None, None)
    rows = conn.scalars(
        text(f"""
            SELECT {_FEATURE}
            FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
            WHERE ({visible})
              AND (CAST(:status AS text) IS NULL OR i.status = :status)
              AND (CAST(:district AS text) IS NULL OR i.district_code = :district)
              AND (CAST(:street AS text) IS NULL OR i.street_code = :street)
              AND (CAST(:community AS text) IS NULL OR i.community_code = :community)
              AND (CAST(:grid AS text) IS NULL OR i.grid_code = :grid)
              AND (CAST(:event_kind AS text) IS NULL OR ec.kind = :event_kind)
              AND (CAST(:event_code AS text) IS NULL OR ec.code = :event_code)
              AND (CAST(:source AS text) IS NULL OR i.source = :source)
              AND (CAST(:overdue AS boolean) IS NULL
                   OR coalesce({CURRENT_DEADLINE} < now(), false) = :overdue)
              AND (CAST(:joint AS boolean) IS NULL OR i.is_joint = :joint)
              AND (CAST(:since AS timestamptz) IS NULL OR i.reported_at >= :since)
              AND (CAST(:until AS timestamptz) IS NULL OR i.reported_at < :until)
              AND (CAST(:minx AS float8) IS NULL
                   OR i.geom && ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, 4326))
              AND (CAST(:before_id AS bigint) IS NULL OR i.id < :before_id)
            ORDER BY i.id DESC
            LIMIT :limit
        """),  # noqa: S608 - constant SQL fragments; values are bound
        {**params, "contacts": may_see_contacts(reader), "status": where.status,
         "district": where.district_code, "street": where.street_code,
         "community": where.community_code, "grid": where.grid_code,
         "event_kind": where.event_kind, "event_code": where.event_code,
         "source": where.source, "overdue": where.overdue, "joint": where.is_joint,
         "since": where.since, "until": where.until,
         "minx": bbox[0], "miny": bbox[1], "maxx": bbox[2], "maxy": bbox[3],
         "before_id": before_id, "limit": limit + 1},
    ).all()
    features = [dict(r) for r in rows[:limit]]
    more = len(rows) > limit
    collection = {"type": "FeatureCollection", "features": features,
                  "numberReturned": len(features)}
    return FeaturePage(collection, str(features[-1]["id"]) if more else None)
