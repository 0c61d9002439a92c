"""Reading incidents (事件/部件 cases), filtered by the reader's scope inside the query."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from api.deps import ConnDep, SettingsDep
from api.routers.boundaries import AtQuery, BBoxQuery, GeoJSONResponse, LimitQuery, collection
from api.security import IncidentReader
from gis import features, incidents
from gis.incidents import IncidentFilter, Status

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
    grid: Annotated[str | None, Query(description="grid code (15 digits)")] = None,
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
        district_code=None if district is None else features.check_code(
            district, ("district",), "district"),
        street_code=None if street is None else features.check_code(
            street, ("street",), "street"),
        grid_code=None if grid is None else features.check_code(grid, ("grid",), "grid"),
        is_joint=joint,
        since=None if since is None else features.parse_at(since, "since"),
        until=None if until is None else features.parse_at(until, "until"),
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
