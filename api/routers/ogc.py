"""OGC API - Features under /ogc: landing page, conformance, collections and items
(GeoJSON built by PostGIS in gis.ogc), readable by GDAL's OAPIF driver and QGIS.

The landing page and conformance are public; collections and items need a signed-in user
(bearer token or session cookie), and incidents are filtered by the reader's scope.
Invalid query values answer 400 (OGC /req/core/query-param-invalid) in the project's
error shape (api/errors.py), naming the parameter. Unknown query parameters answer 400 on
items (a misspelt filter must not silently select everything) and are ignored on the
other documents, where clients such as GDAL repeat their own extra parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from api.deps import ConnDep
from api.errors import domain_error_handler, validation_error_handler
from api.routers.boundaries import GeoJSONResponse
from api.security import CurrentUser
from gis import ogc
from gis.errors import InvalidInput

JSON = "application/json"
GEOJSON = "application/geo+json"
OPENAPI = "application/vnd.oai.openapi+json;version=3.0"


class OGCRoute(APIRoute):
    """A route whose bad query values answer 400, as OGC API Features requires, in the
    project's error body (FastAPI's validation errors and gis InvalidInput alike)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ogc_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                response = await validation_error_handler(request, exc)
            except InvalidInput as exc:
                response = await domain_error_handler(request, exc)
            response.status_code = status.HTTP_400_BAD_REQUEST
            return response

        return ogc_handler


router = APIRouter(tags=["ogc"], route_class=OGCRoute, default_response_class=JSONResponse)

FQuery = Annotated[Literal["json"] | None, Query(
    description="output format: json (the only one; also chosen without f)")]
ItemsFQuery = Annotated[Literal["json", "geojson"] | None, Query(
    description="output format: GeoJSON (json or geojson; also chosen without f)")]
CollectionId = Annotated[str, Path(description="collection id, e.g. grids",
                                   examples=["grids"])]


def _only(request: Request, *allowed: str) -> None:
    """OGC /req/core/query-param-unknown: an unknown query parameter is a 400."""
    for name in request.query_params:
        if name not in allowed:
            raise InvalidInput(
                f"unknown query parameter {name!r}; this resource takes "
                f"{', '.join(allowed)}", field=name)


def _link(href: str, rel: str, media_type: str, title: str | None = None) -> dict[str, str]:
    link = {"href": href, "rel": rel, "type": media_type}
    if title:
        link["title"] = title
    return link


def _url(request: Request, name: str, **path: str) -> str:
    """An absolute URL of a route, from the request's scheme, host and root path (as the
    server saw them, proxy headers included)."""
    return str(request.url_for(name, **path))


@router.get("", name="ogc_landing", summary="OGC API Features landing page (public)")
def landing(request: Request, f: FQuery = None) -> JSONResponse:
    """Title, description and links to the API definition, conformance and collections."""
    base = str(request.base_url).rstrip("/")
    return JSONResponse({
        "title": "GridOps OGC API Features 网格化管理",
        "description": "Jurisdictions (区/街道/社区), grids (网格), buildings, streets and "
                       "alleys (街巷), joint zones (联合哨) and incidents of GridOps as "
                       "OGC API Features. Collections and items need a signed-in user.",
        "links": [
            _link(_url(request, "ogc_landing"), "self", JSON, "this document"),
            _link(base + request.app.openapi_url, "service-desc", OPENAPI,
                  "the API definition (OpenAPI 3)"),
            _link(base + "/docs", "service-doc", "text/html", "the API documentation"),
            _link(_url(request, "ogc_conformance"), "conformance", JSON,
                  "conformance classes implemented"),
            _link(_url(request, "ogc_collections"), "data", JSON, "the collections"),
        ],
    })


@router.get("/conformance", name="ogc_conformance",
            summary="Conformance classes implemented (public)")
def conformance(request: Request, f: FQuery = None) -> JSONResponse:
    """OGC API Features Part 1: core, GeoJSON, OpenAPI 3.0."""
    return JSONResponse({"conformsTo": list(ogc.CONFORMANCE)})


def _collection_links(request: Request, cid: str) -> list[dict[str, str]]:
    return [
        _link(_url(request, "ogc_collection", collection_id=cid), "self", JSON,
              "this collection"),
        _link(_url(request, "ogc_items", collection_id=cid), "items", GEOJSON,
              "the features"),
    ]


@router.get("/collections", name="ogc_collections", summary="The collections")
def collections(request: Request, conn: ConnDep, user: CurrentUser,
                f: FQuery = None) -> JSONResponse:
    """Every collection with its title, description and extent."""
    documents = [{**doc, "links": _collection_links(request, doc["id"])}
                 for doc in ogc.list_collections(conn)]
    return JSONResponse({
        "links": [_link(_url(request, "ogc_collections"), "self", JSON, "this document")],
        "collections": documents,
    })


@router.get("/collections/{collection_id}", name="ogc_collection",
            summary="One collection", responses={404: {"description": "no such collection"}})
def collection(request: Request, conn: ConnDep, user: CurrentUser,
               collection_id: CollectionId, f: FQuery = None) -> JSONResponse:
    """A collection's title, description, spatial (and temporal) extent and links."""
    document = ogc.collection_metadata(conn, collection_id)
    return JSONResponse({**document, "links": _collection_links(request, collection_id)})


@router.get(
    "/collections/{collection_id}/items", name="ogc_items", response_class=GeoJSONResponse,
    summary="Features of a collection (GeoJSON, keyset paged)",
    responses={200: {"content": {GEOJSON: {}}}, 404: {"description": "no such collection"}})
def items(
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    collection_id: CollectionId,
    bbox: Annotated[str | None, Query(
        description="minlon,minlat,maxlon,maxlat (WGS84 / CRS84 degrees): features "
                    "intersecting it", examples=["116.30,39.85,116.45,39.95"])] = None,
    datetime: Annotated[str | None, Query(
        description="incidents only: reported at an RFC 3339 instant, or in an interval "
                    "start/end with '..' for an open end (a date is a whole day; no "
                    "offset = Beijing time)",
        examples=["2026-11-01T00:00:00+08:00/.."])] = None,
    limit: Annotated[int, Query(
        ge=1, description=f"page size (default {ogc.LIMIT_DEFAULT}); values above "
                          f"{ogc.LIMIT_MAX} are served as {ogc.LIMIT_MAX}",
        json_schema_extra={"maximum": ogc.LIMIT_MAX})] = ogc.LIMIT_DEFAULT,
    after: Annotated[str | None, Query(
        description="keyset cursor: features with ids after this one (follow the `next` "
                    "link rather than building it)")] = None,
    f: ItemsFQuery = None,
) -> Response:
    """A page of features ordered by id, with numberMatched, numberReturned and links."""
    _only(request, "bbox", "datetime", "limit", "after", "f")
    page = ogc.items(conn, user, collection_id, bbox=bbox, datetime_=datetime, limit=limit,
                     after=after)
    base = request.url_for("ogc_items", collection_id=collection_id)
    query = dict(request.query_params)
    if page.limit_clamped:
        query["limit"] = str(page.limit)
    self_title = (f"this page (limit clamped to the maximum {ogc.LIMIT_MAX})"
                  if page.limit_clamped else "this page")
    links = [
        _link(str(base.include_query_params(**query)), "self", GEOJSON, self_title),
        _link(_url(request, "ogc_collection", collection_id=collection_id), "collection",
              JSON, "the collection"),
    ]
    if page.next_after is not None:
        following = {**query, "limit": str(page.limit), "after": page.next_after}
        links.append(_link(str(base.include_query_params(**following)), "next", GEOJSON,
                           "the next page"))
    return Response(page.to_json(links), media_type=GEOJSON)


@router.get(
    "/collections/{collection_id}/items/{feature_id}", name="ogc_item",
    response_class=GeoJSONResponse, summary="One feature",
    responses={200: {"content": {GEOJSON: {}}},
               404: {"description": "no such collection or feature (incidents: or not in "
                                    "your scope)"}})
def item(
    request: Request,
    conn: ConnDep,
    user: CurrentUser,
    collection_id: CollectionId,
    feature_id: Annotated[str, Path(description="feature id: a division code for "
                                                "jurisdictions and grids, else a number")],
    f: ItemsFQuery = None,
) -> GeoJSONResponse:
    """A feature by id, with links to itself and its collection."""
    feature = ogc.item(conn, user, collection_id, feature_id)
    feature["links"] = [
        _link(_url(request, "ogc_item", collection_id=collection_id, feature_id=feature_id),
              "self", GEOJSON, "this feature"),
        _link(_url(request, "ogc_collection", collection_id=collection_id), "collection",
              JSON, "the collection"),
    ]
    return GeoJSONResponse(feature)
