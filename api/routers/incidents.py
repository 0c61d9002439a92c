"""Reading incidents (事件/部件 cases), filtered by the reader's scope inside the query."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Header, Path, Query, Request, Response, UploadFile, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from api.deps import ConnDep, IncidentId, SettingsDep
from api.routers.boundaries import AtQuery, BBoxQuery, GeoJSONResponse, LimitQuery, collection
from api.security import IncidentReader, IncidentReporter, actor_of
from gis import features, incidents, intake, photos, placement
from gis.incidents import IncidentFilter, Status
from gis.intake import NewIncident, Source
from gis.placement import PointCrs

router = APIRouter(tags=["incidents"], default_response_class=GeoJSONResponse)


@router.get("/incidents", summary="Incidents in your scope, newest first")
def list_incidents(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    user: IncidentReader,
    status: Annotated[Status | None, Query(description="workflow state")] = None,
    district: Annotated[str | None, Query(description="district code (6 digits)")] = None,
    street: Annotated[str | None, Query(description="street code (9 digits)")] = None,
    community: Annotated[str | None, Query(description="community code (12 digits)")] = None,
    grid: Annotated[str | None, Query(description="grid code (15 digits)")] = None,
    event_code: Annotated[str | None, Query(description="event class code, e.g. 0101",
                                            pattern=r"^[0-9]{4}$")] = None,
    event_kind: Annotated[Literal["event", "component"] | None, Query(
        description="事件 (event) or 部件 (component)")] = None,
    source: Annotated[Source | None, Query(description="where the report came from")] = None,
    overdue: Annotated[bool | None, Query(
        description="only cases past the deadline of their current stage (or only not)")] = None,
    joint: Annotated[bool | None, Query(description="only joint (联合哨) cases, or none")] = None,
    since: AtQuery = None,
    until: AtQuery = None,
    bbox: BBoxQuery = None,
    limit: LimitQuery = None,
    before: Annotated[int | None, Query(ge=1, description="keyset cursor: ids below this "
                                                            "(use the `next` link)")] = None,
) -> GeoJSONResponse:
    """Incidents you may see (scope, department tasks or assigned streets), with filters."""
    where = IncidentFilter(
        status=status,
        district_code=features.opt_code(district, ("district",), "district"),
        street_code=features.opt_code(street, ("street",), "street"),
        community_code=features.opt_code(community, ("community",), "community"),
        grid_code=features.opt_code(grid, ("grid",), "grid"),
        event_kind=event_kind, event_code=event_code, source=source, overdue=overdue,
        is_joint=joint,
        since=features.parse_opt_at(since, "since"),
        until=features.parse_opt_at(until, "until"),
        bbox=features.parse_bbox(bbox),
    )
    page = incidents.list_incidents(conn, user, where,
                                    limit=features.check_limit(limit, settings.page_max),
                                    before_id=before)
    return collection(request, page, cursor="before")


@router.get("/incidents/{incident_id}", summary="One incident",
            responses={404: {"description": "no such incident, or not in your scope"}})
def get_incident(
    conn: ConnDep,
    user: IncidentReader,
    incident_id: Annotated[int, Path(ge=1, description="incident id")],
) -> GeoJSONResponse:
    """One incident as a Feature (404 when it is outside your scope, as for a missing id)."""
    return GeoJSONResponse(incidents.get_incident(conn, user, incident_id))


class IncidentReport(BaseModel):
    """A new incident as a reporter sends it (photos follow by a separate upload)."""

    event_code: str = Field(min_length=1, max_length=16, description="class code, e.g. 0101",
                            examples=["0101"])
    event_kind: Literal["event", "component"] = Field(
        default="event", description="事件 (event, the default) or 部件 (component): the "
                                     "catalog numbers each kind separately")
    lon: float = Field(description="longitude in `crs`", examples=[116.3355])
    lat: float = Field(description="latitude in `crs`", examples=[39.8748])
    crs: PointCrs = "wgs84"
    description: str = Field(min_length=1, max_length=intake.MAX_DESCRIPTION)
    source: Source
    address: str | None = Field(default=None, max_length=500)
    reporter_name: str | None = Field(default=None, max_length=100)
    reporter_phone: str | None = Field(default=None, max_length=40)
    reported_at: datetime | None = Field(
        default=None, description="when it was reported (default now; no offset = Beijing)")


@router.post("/incidents", status_code=status.HTTP_201_CREATED,
             summary="Report an incident: placed, stored, deadlines set",
             responses={200: {"description": "a retry with the same Idempotency-Key: the "
                                             "incident created the first time"},
                        409: {"description": "the Idempotency-Key was used for another report"}})
def create_incident(
    request: Request,
    response: Response,
    conn: ConnDep,
    user: IncidentReporter,
    body: IncidentReport,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key", min_length=8, max_length=128,
        description="a unique key per report (e.g. a UUID): retries return the same incident",
    )] = None,
) -> JSONResponse:
    """Place the point (grid, building, street chief, joint case), set 待受理 or 立案 by
    source, compute stage deadlines, store and announce the incident."""
    reported_at = body.reported_at
    if reported_at is not None and reported_at.tzinfo is None:
        reported_at = reported_at.replace(tzinfo=features.CHINA_TZ)
    new = NewIncident(
        event_code=body.event_code, event_kind=body.event_kind,
        point=placement.to_wgs84(body.lon, body.lat, body.crs),
        description=body.description, source=body.source, address=body.address,
        reporter_name=body.reporter_name, reporter_phone=body.reporter_phone,
        reported_at=reported_at, idempotency_key=idempotency_key)
    result = intake.create_incident(conn, new, user, actor_of(request, user))
    conn.commit()
    content: dict[str, Any] = {
        "incident": incidents.get_incident(conn, user, result.incident_id),
        "created": result.created, "placement": result.placement,
        "duplicates": result.duplicates}
    return JSONResponse(jsonable_encoder(content),
                        status_code=201 if result.created else 200,
                        headers={"Location": f"/api/v1/incidents/{result.incident_id}"})




@router.post("/incidents/{incident_id}/photos", status_code=status.HTTP_201_CREATED,
             response_class=JSONResponse, summary="Attach a photo (JPEG, PNG or WebP)")
async def add_photo(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    user: IncidentReporter,
    incident_id: IncidentId,
    photo: Annotated[UploadFile, File(description="the image (checked by its bytes)")],
) -> JSONResponse:
    """Attach an image to an incident in your scope; 422 for empty, oversize or non-image
    files, 409 for the same image twice."""
    data = await photo.read(settings.photo_max_bytes + 1)
    row = photos.add_photo(conn, user, incident_id, data, settings.photo_max_bytes,
                           actor_of(request, user))
    conn.commit()
    return JSONResponse(jsonable_encoder(row), status_code=201)


@router.get("/incidents/{incident_id}/photos", response_class=JSONResponse,
            summary="The photos of an incident")
def list_photos(conn: ConnDep, user: IncidentReader, incident_id: IncidentId) -> JSONResponse:
    """Photo ids, types and sizes (the images: GET …/photos/{photo_id})."""
    return JSONResponse(jsonable_encoder(photos.list_photos(conn, user, incident_id)))


@router.get("/incidents/{incident_id}/photos/{photo_id}", response_class=Response,
            summary="One photo's image")
def get_photo(conn: ConnDep, user: IncidentReader, incident_id: IncidentId,
              photo_id: Annotated[int, Path(ge=1)]) -> Response:
    """The image bytes with their content type."""
    content_type, data = photos.get_photo(conn, user, incident_id, photo_id)
    return Response(data, media_type=content_type,
                    headers={"Cache-Control": "private, max-age=86400"})
