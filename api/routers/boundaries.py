"""Read endpoints for jurisdictions (区/街道/社区) and grids (网格) as GeoJSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from api.deps import ConnDep, SettingsDep
from api.security import get_principal
from gis import features
from gis.features import FeaturePage, Level


class GeoJSONResponse(JSONResponse):
    """A JSON response with the GeoJSON media type."""

    media_type = "application/geo+json"


# Boundaries are read by every signed-in role (operators see neighbours on the map too);
# only the case data on them (incidents, teams, tasks) is scoped.
router = APIRouter(tags=["boundaries"], default_response_class=GeoJSONResponse,
                   dependencies=[Depends(get_principal)])

BBoxQuery = Annotated[str | None, Query(
    description="minlon,minlat,maxlon,maxlat in WGS84 degrees; features intersecting it",
    examples=["116.30,39.85,116.45,39.95"],
)]
AtQuery = Annotated[str | None, Query(
    description="ISO 8601 date or datetime: the versions in force at that instant "
                "(default now; without an offset, Beijing time UTC+8)",
    examples=["2024-05-01T08:00:00+08:00"],
)]
LimitQuery = Annotated[int | None, Query(
    ge=1, description="page size (default 100, at most the server's page_max)",
)]
AfterQuery = Annotated[str | None, Query(
    description="keyset cursor: return features with codes after this one "
                "(use the `next` link rather than building it)",
)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "no such code, or no version in force at `at`"},
}


def collection(request: Request, page: FeaturePage, cursor: str = "after") -> GeoJSONResponse:
    """The page's FeatureCollection with `self` and (when more exist) `next` links; the
    next link carries the page's cursor in the query parameter `cursor`."""
    links = [{"rel": "self", "type": "application/geo+json", "href": str(request.url)}]
    if page.next_after is not None:
        href = str(request.url.include_query_params(**{cursor: page.next_after}))
        links.append({"rel": "next", "type": "application/geo+json", "href": href})
    return GeoJSONResponse({**page.collection, "links": links})


@router.get("/jurisdictions", summary="Jurisdictions (区/街道/社区) as a FeatureCollection")
def list_jurisdictions(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    level: Annotated[Level | None, Query(description="district, street or community")] = None,
    parent: Annotated[str | None, Query(
        description="code of the parent: a district (6 digits) for streets, a street "
                    "(9 digits) for communities")] = None,
    bbox: BBoxQuery = None,
    at: AtQuery = None,
    limit: LimitQuery = None,
    after: AfterQuery = None,
) -> GeoJSONResponse:
    """Jurisdictions in force at `at`, ordered by code, paged with `limit` and `after`."""
    page = features.list_jurisdictions(
        conn,
        level=level,
        parent=parent,
        bbox=features.parse_bbox(bbox),
        at=features.parse_at(at),
        limit=features.check_limit(limit, settings.page_max),
        after=after,
    )
    return collection(request, page)


@router.get("/jurisdictions/{code}", summary="One jurisdiction as a Feature",
            responses=NOT_FOUND)
def get_jurisdiction(
    conn: ConnDep,
    code: Annotated[str, Path(description="division code: 6, 9 or 12 digits")],
    at: AtQuery = None,
) -> GeoJSONResponse:
    """The version of jurisdiction `code` in force at `at` (default now)."""
    return GeoJSONResponse(features.get_jurisdiction(conn, code, at=features.parse_at(at)))


@router.get("/grids", summary="Grids (全科网格) as a FeatureCollection")
def list_grids(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    community: Annotated[str | None, Query(description="community code (12 digits)")] = None,
    street: Annotated[str | None, Query(description="street code (9 digits)")] = None,
    district: Annotated[str | None, Query(description="district code (6 digits)")] = None,
    bbox: BBoxQuery = None,
    at: AtQuery = None,
    limit: LimitQuery = None,
    after: AfterQuery = None,
) -> GeoJSONResponse:
    """Grids in force at `at`, ordered by code, paged with `limit` and `after`."""
    page = features.list_grids(
        conn,
        community=community,
        street=street,
        district=district,
        bbox=features.parse_bbox(bbox),
        at=features.parse_at(at),
        limit=features.check_limit(limit, settings.page_max),
        after=after,
    )
    return collection(request, page)


@router.get("/grids/{code}", summary="One grid as a Feature", responses=NOT_FOUND)
def get_grid(
    conn: ConnDep,
    code: Annotated[str, Path(description="grid code: 15 digits")],
    at: AtQuery = None,
) -> GeoJSONResponse:
    """The version of grid `code` in force at `at` (default now)."""
    return GeoJSONResponse(features.get_grid(conn, code, at=features.parse_at(at)))
