"""Open311 GeoReport v2 under `/open311/v2` (no `/api/v1` prefix: clients expect the
standard paths), each document in JSON (`.json`) and XML (`.xml`).

Public but rate-limited per client address: discovery, services, service definitions,
and reading requests (citizen reports only, never the reporter's contacts). Creating a
request needs a valid, unrevoked `api_key` (403 otherwise). Errors come as Open311
clients expect them — `[{"code": 400, "description": "lat: ..."}]` or
`<errors><error><code>400</code>...` — with the description naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Header, Path, Query, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import exc as sa_exc

from api.deps import ConnDep, SettingsDep
from api.errors import RETRY_AFTER_SECONDS, database_message, status_for
from api.security import rate_limited, request_id
from gis import errors, open311
from gis.open311 import RequestForm

Format = Literal["json", "xml"]
PREFIX = "/open311/v2"


def response_format(request: Request) -> Format:
    """The format a path asks for by its suffix."""
    return "xml" if request.url.path.endswith(".xml") else "json"


def document(request: Request, root: str, content: dict[str, Any] | list[Any],
             status_code: int = status.HTTP_200_OK,
             headers: dict[str, str] | None = None) -> Response:
    """`content` in the path's format (`root` names the XML root element)."""
    if response_format(request) == "xml":
        return Response(open311.to_xml(root, jsonable_encoder(content)), status_code,
                        headers, media_type="text/xml; charset=utf-8")
    return JSONResponse(jsonable_encoder(content), status_code, headers)


def _validation_error(exc: RequestValidationError) -> tuple[int, str]:
    first = exc.errors()[0] if exc.errors() else {}
    loc = [str(part) for part in first.get("loc", ())]
    field = loc[-1] if loc else "request"
    return status.HTTP_400_BAD_REQUEST, f"{field}: {first.get('msg', 'invalid value')}"


def error_document(request: Request, exc: Exception) -> Response:
    """An Open311 error list for a domain, validation or database error (a bug re-raises:
    the server answers 500 and logs it)."""
    headers: dict[str, str] | None = None
    if isinstance(exc, RequestValidationError):
        code, description = _validation_error(exc)
    elif isinstance(exc, errors.GridOpsError):
        code, description = status_for(exc), open311.describe(exc)[1]
        if isinstance(exc, errors.TooManyRequests):
            headers = {"Retry-After": str(exc.retry_after)}
    else:
        assert isinstance(exc, sa_exc.SQLAlchemyError)
        code = status_for(exc)
        if code >= status.HTTP_500_INTERNAL_SERVER_ERROR \
                and code != status.HTTP_503_SERVICE_UNAVAILABLE:
            raise exc
        settings = getattr(request.app.state, "settings", None)
        description = database_message(exc, getattr(settings, "statement_timeout_ms", None))
    if code == status.HTTP_422_UNPROCESSABLE_CONTENT:
        code = status.HTTP_400_BAD_REQUEST  # Open311 says 400 for any bad input
    if code == status.HTTP_503_SERVICE_UNAVAILABLE:
        headers = {"Retry-After": RETRY_AFTER_SECONDS}
        if not description.startswith("database unavailable"):
            description = f"database unavailable: {description}"
    return document(request, "errors", [{"code": code, "description": description}],
                    code, headers)


class Open311Route(APIRoute):
    """A route whose errors are Open311 error lists (not the API's `detail` bodies)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except (errors.GridOpsError, RequestValidationError, sa_exc.SQLAlchemyError) as exc:
                return error_document(request, exc)

        return handle


router = APIRouter(prefix=PREFIX, tags=["open311"], route_class=Open311Route,
                   dependencies=[Depends(rate_limited("open311"))],
                   responses={400: {"description": "bad input: an Open311 error list"},
                              429: {"description": "rate limit: an Open311 error list"}})
Jurisdiction = Annotated[str | None, Query(
    description="accepted and ignored: this endpoint serves one jurisdiction")]
FormText = Annotated[str | None, Form()]


@router.get("/discovery.json", summary="Open311 discovery: endpoint, formats, key service")
@router.get("/discovery.xml", summary="Open311 discovery (XML)")
def discovery(request: Request, settings: SettingsDep) -> Response:
    """Where this GeoReport v2 endpoint is and what it speaks."""
    url = str(request.base_url).rstrip("/") + PREFIX
    return document(request, "discovery",
                    open311.discovery(url, production=settings.env == "production"))


@router.get("/services.json", summary="Open311 services: the event catalog's classes")
@router.get("/services.xml", summary="Open311 services (XML)")
def list_services(request: Request, conn: ConnDep,
                  jurisdiction_id: Jurisdiction = None) -> Response:
    """Every active 事件/部件 class as a service (`event-0101`, `component-0101`, …)."""
    return document(request, "services", open311.services(conn))


@router.get("/services/{service_code}.json", summary="Open311 service definition",
            responses={404: {"description": "no such service"}})
@router.get("/services/{service_code}.xml", summary="Open311 service definition (XML)",
            responses={404: {"description": "no such service"}})
def service_definition(
    request: Request, conn: ConnDep,
    service_code: Annotated[str, Path(max_length=32, description="e.g. event-0101")],
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    """A service's attributes: `crs`, the coordinate system of lat/long (default wgs84)."""
    return document(request, "service_definition",
                    open311.service_definition(conn, service_code))


@router.post("/requests.json", status_code=status.HTTP_201_CREATED,
             summary="Open311: report a problem (form-encoded, api_key required)",
             responses={200: {"description": "a retry with the same Idempotency-Key"},
                        403: {"description": "api_key missing, unknown or revoked"}})
@router.post("/requests.xml", status_code=status.HTTP_201_CREATED,
             summary="Open311: report a problem (XML answer)",
             responses={200: {"description": "a retry with the same Idempotency-Key"},
                        403: {"description": "api_key missing, unknown or revoked"}})
def create_request(
    request: Request,
    conn: ConnDep,
    api_key: FormText = None,
    service_code: FormText = None,
    lat: FormText = None,
    long: FormText = None,
    address_string: Annotated[str | None, Form(
        description="kept with the report; alone it is refused (GridOps needs lat/long)",
    )] = None,
    address_id: FormText = None,
    description: FormText = None,
    first_name: FormText = None,
    last_name: FormText = None,
    phone: FormText = None,
    email: Annotated[str | None, Form(description="accepted, not stored")] = None,
    device_id: Annotated[str | None, Form(description="accepted, not stored")] = None,
    account_id: Annotated[str | None, Form(description="accepted, not stored")] = None,
    media_url: Annotated[str | None, Form(description="accepted, ignored")] = None,
    jurisdiction_id: Annotated[str | None, Form(description="accepted, ignored")] = None,
    crs: Annotated[str | None, Form(
        alias="attribute[crs]", description="wgs84 (default), gcj02 or bd09")] = None,
    idempotency_key: Annotated[str | None, Header(
        alias="Idempotency-Key",
        description="a unique key per report (e.g. a UUID): a retry returns the same request",
    )] = None,
) -> Response:
    """Create a service request: placed, stored and announced like any report (待受理)."""
    form = RequestForm(service_code=service_code, lat=lat, long=long,
                       address_string=address_string, address_id=address_id,
                       description=description, first_name=first_name, last_name=last_name,
                       phone=phone, crs=crs, idempotency_key=idempotency_key)
    answer, created = open311.submit_request(conn, api_key, form,
                                             request_id=request_id(request))
    conn.commit()
    return document(request, "service_requests", answer,
                    status.HTTP_201_CREATED if created else status.HTTP_200_OK)


@router.get("/requests.json", summary="Open311: service requests (citizen reports)")
@router.get("/requests.xml", summary="Open311: service requests (XML)")
def list_requests(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    service_request_id: Annotated[str | None, Query(
        description="comma-separated ids; overrides every other filter")] = None,
    service_code: Annotated[str | None, Query(description="comma-separated service codes")
                            ] = None,
    start_date: Annotated[str | None, Query(description="W3C datetime")] = None,
    end_date: Annotated[str | None, Query(description="W3C datetime (at most 90 days "
                                                      "after start_date)")] = None,
    status_: Annotated[str | None, Query(alias="status", description="open, closed")] = None,
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    """Requests reported through public channels, newest first (last 90 days by default)."""
    query = open311.parse_query(service_request_id=service_request_id,
                                service_code=service_code, start_date=start_date,
                                end_date=end_date, status=status_)
    return document(request, "service_requests",
                    open311.find_requests(conn, query, limit=settings.page_max))


@router.get("/requests/{service_request_id}.json", summary="Open311: one service request",
            responses={404: {"description": "no such request"}})
@router.get("/requests/{service_request_id}.xml", summary="Open311: one service request (XML)",
            responses={404: {"description": "no such request"}})
def get_request(
    request: Request, conn: ConnDep,
    service_request_id: Annotated[str, Path(max_length=32)],
    jurisdiction_id: Jurisdiction = None,
) -> Response:
    """One request, as a list of one (as GeoReport v2 has it)."""
    return document(request, "service_requests",
                    [open311.get_request(conn, service_request_id)])
