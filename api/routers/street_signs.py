"""Public signs (公示牌) of 街巷 and the citizen report form behind their QR code.

Under /api/v1 (`router`):
- `GET /streets/{street_id}/sign.svg` — the printable sign (A4 portrait SVG): admin;
  operator, viewer or planner whose scope covers the street's district or street office
  (empty scope: the whole city); a street chief or steward assigned to the street.
  401 anonymous, 403 (field `role`) for dispatchers, 403 (field `street_id`) outside the
  scope, 404 for an unknown street.
- `GET /public/streets/{street_id}` — public, rate-limited: what the report form shows.
- `POST /public/street-reports` — public, rate-limited per client address
  (Settings.public_report_per_hour per hour), `Idempotency-Key` required: a citizen
  report (multipart form, optional photo) routed to that street's chief.

HTML pages at the site root (`pages_router`):
- `GET /report/street/{street_id}` — the public report form (no sign-in; mobile first);
- `GET /signs?street_office=CODE` — every sign of a street office the user may print,
  one per printed page (signed-in; anyone else goes to the login page).

The QR code encodes `{base}/report/street/{id}`, where base is Settings.public_base_url
when set (the address citizens reach), else the request's own base URL.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    Path,
    Query,
    Request,
    Response,
    UploadFile,
    status,
)
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from fastapi.routing import APIRoute
from markupsafe import Markup

from api.deps import ConnDep, SettingsDep, TemplatesDep
from api.routers.pages import NO_STORE, login_url
from api.security import CurrentUser, OptionalUser, rate_limited, request_id
from api.settings import Settings
from gis import signs, street_reports
from gis.audit import Actor
from gis.errors import Forbidden, GridOpsError, InvalidInput, NotFound
from gis.street_reports import StreetReport

# Room for the form's text fields and multipart framing around the largest photo.
FORM_MARGIN_BYTES = 64 * 1024
CHANNEL = "street_sign"  # the audit actor of public reports


def _report_rate(settings: Settings) -> int:
    return settings.public_report_per_hour


REPORT_LIMIT = rate_limited("street-report", _report_rate, window_s=3600.0)
PUBLIC_LIMIT = rate_limited("public-street")
PAGE_LIMIT = rate_limited("report-page")


def public_base(request: Request, settings: Settings) -> str:
    """The base URL citizens reach: Settings.public_base_url, else this request's."""
    return settings.public_base_url or str(request.base_url)


class _BufferedRequest(Request):
    """A request whose body was already read (bounded) by `BoundedReportRoute`."""

    def __init__(self, request: Request, body: bytes) -> None:
        super().__init__(request.scope)
        self._body = body


async def _bounded_body(request: Request, limit: int) -> bytes:
    """The request body, refused (422 naming `photo`) past `limit` bytes without reading
    further: by the declared Content-Length, else while it streams in."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidInput(f"photo: the upload is {int(declared):,} bytes; the photo may be "
                           f"at most {limit - FORM_MARGIN_BYTES:,}", field="photo")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise InvalidInput(f"photo: the upload is over {limit:,} bytes; the photo may be "
                               f"at most {limit - FORM_MARGIN_BYTES:,}", field="photo")
        chunks.append(chunk)
    return b"".join(chunks)


class BoundedReportRoute(APIRoute):
    """The public report's route: the per-address rate limit is counted, and the body read
    with a bound (photo_max_bytes + a margin for the text fields), before FastAPI parses
    the form — an anonymous client can neither make it spool an unbounded upload nor spend
    a parse past its rate."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            await REPORT_LIMIT(request, settings)
            body = await _bounded_body(request, settings.photo_max_bytes + FORM_MARGIN_BYTES)
            return await handler(_BufferedRequest(request, body))

        return bounded


router = APIRouter(tags=["street signs"])
report_router = APIRouter(tags=["street signs"], route_class=BoundedReportRoute)
pages_router = APIRouter(include_in_schema=False)  # HTML pages, outside /api/v1

StreetId = Annotated[int, Path(ge=1, description="street (街巷) id")]
SVG_TYPE = "image/svg+xml"


@router.get("/streets/{street_id}/sign.svg", response_class=Response,
            summary="A street's public sign (公示牌) as a printable A4 SVG",
            responses={200: {"content": {SVG_TYPE: {}}},
                       403: {"description": "a dispatcher, or a street outside your scope"},
                       404: {"description": "no such street"}})
def sign_svg(request: Request, conn: ConnDep, settings: SettingsDep, user: CurrentUser,
             street_id: StreetId) -> Response:
    """The street's name, its 街长/巷长 (name, post, organisation), 小巷管家, duties, phone
    and a QR code to its public report form."""
    signs.check_role(user)
    sign = signs.sign_for(conn, street_id)
    signs.check_access(user, sign)
    url = signs.report_url(public_base(request, settings), street_id)
    return Response(signs.render_document(sign, url), media_type=SVG_TYPE, headers={
        "Content-Disposition": f'inline; filename="sign-{street_id}.svg"',
        "Cache-Control": "private, no-store"})


@router.get("/public/streets/{street_id}", response_class=JSONResponse,
            summary="Public: what a street's report form shows",
            dependencies=[Depends(PUBLIC_LIMIT)],
            responses={404: {"description": "no such street"},
                       429: {"description": "too many requests from this address"}})
def public_street(conn: ConnDep, street_id: StreetId) -> JSONResponse:
    """The street (id, name), its chief (name, role, title, phone — as on the printed
    sign), the default position (the street's middle) and the classes offered."""
    return JSONResponse(jsonable_encoder(signs.public_view(conn, street_id)))


@report_router.post(
    "/public/street-reports", status_code=status.HTTP_201_CREATED, response_class=JSONResponse,
    summary="Public: report a problem on a street (the QR form of its sign)",
    responses={200: {"description": "a retry with the same Idempotency-Key: the first "
                                    "report"},
               404: {"description": "no such street"},
               409: {"description": "the Idempotency-Key was used for another report"},
               422: {"description": "a bad field: photo, event_code, description, "
                                    "reporter_phone, lon/lat (over 300 m from the street)"},
               429: {"description": "too many reports from this address"}})
async def create_street_report(
    request: Request,
    conn: ConnDep,
    settings: SettingsDep,
    street_id: Annotated[int, Form(ge=1, description="the sign's street")],
    event_code: Annotated[str, Form(min_length=1, max_length=16,
                                    description="class code, e.g. 0101")],
    description: Annotated[str, Form(min_length=1,
                                      max_length=street_reports.MAX_DESCRIPTION)],
    idempotency_key: Annotated[str, Header(
        alias="Idempotency-Key", min_length=8, max_length=128,
        description="a unique key per report (e.g. a UUID): a retry returns the same "
                    "report")],
    event_kind: Annotated[Literal["event", "component"], Form(
        description="事件 (event, the default) or 部件 (component)")] = "event",
    lon: Annotated[float | None, Form(description="WGS84 longitude of the phone's fix")] = None,
    lat: Annotated[float | None, Form(description="WGS84 latitude of the phone's fix")] = None,
    reporter_name: Annotated[str | None, Form(max_length=street_reports.MAX_NAME)] = None,
    reporter_phone: Annotated[str | None, Form(max_length=40,
                                               description="7–20 digits")] = None,
    photo: Annotated[UploadFile | None, File(
        description="JPEG, PNG or WebP, checked by its bytes, at most "
                    "Settings.photo_max_bytes")] = None,
) -> JSONResponse:
    """Creates a `citizen` incident (待受理) routed to the street and its chief, with the
    photo, in one transaction: any 4xx leaves nothing behind. Without lon/lat the street's
    middle is used."""
    data = await _photo_bytes(photo, settings.photo_max_bytes)
    report = StreetReport(
        street_id=street_id, event_code=event_code.strip(), event_kind=event_kind,
        description=description, idempotency_key=idempotency_key, lon=lon, lat=lat,
        reporter_name=reporter_name, reporter_phone=reporter_phone, photo=data)
    result = street_reports.submit(conn, report, settings.photo_max_bytes,
                                   Actor(CHANNEL, request_id=request_id(request)))
    conn.commit()
    created = result.pop("created")
    return JSONResponse(jsonable_encoder(result),
                        status_code=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


async def _photo_bytes(photo: UploadFile | None, max_bytes: int) -> bytes | None:
    """The uploaded photo's bytes (at most max_bytes + 1 are read), or None when no photo
    was sent (also an empty file part without a name, as a blank file input sends)."""
    if photo is None:
        return None
    data: bytes = await photo.read(max_bytes + 1)
    if not data and not photo.filename:
        return None
    return data


router.include_router(report_router)


# -- pages ---------------------------------------------------------------------------------


def _error_page(request: Request, templates: Any, template: str, code: int,
                exc: GridOpsError, context: dict[str, Any] | None = None) -> Response:
    return templates.TemplateResponse(request, template, {
        **(context or {}), "error": exc.message, "status_code": code}, status_code=code,
        headers=NO_STORE)


@pages_router.get("/report/street/{street_id}", response_class=HTMLResponse,
                  dependencies=[Depends(PAGE_LIMIT)])
def report_page(request: Request, conn: ConnDep, settings: SettingsDep,
                templates: TemplatesDep, street_id: int) -> Response:
    """The public report form of a street (no sign-in): it loads the street from
    /api/v1/public/streets/{id} and posts to /api/v1/public/street-reports."""
    context: dict[str, Any] = {"config": {
        "apiBase": "/api/v1", "streetId": street_id, "photoMaxBytes": settings.photo_max_bytes,
        "maxDescription": street_reports.MAX_DESCRIPTION}}
    name = signs.street_name(conn, street_id) if street_id >= 1 else None
    if name is None:
        return _error_page(request, templates, "street_report.html", 404,
                           NotFound(f"no street with id {street_id}"), context)
    context["street_name"] = name
    return templates.TemplateResponse(request, "street_report.html", context)


@pages_router.get("/signs", response_class=HTMLResponse)
def signs_sheet(request: Request, conn: ConnDep, settings: SettingsDep,
                templates: TemplatesDep, user: OptionalUser,
                street_office: Annotated[str, Query(
                    description="street office code (9 digits)")] = "") -> Response:
    """Every sign of a street office that the user may print, one per printed A4 page.
    Anonymous visitors go to the login page; then the code is checked (422, 404 for an
    unknown office), then the role and scope (403)."""
    if user is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(login_url(here), status_code=303, headers=NO_STORE)
    try:
        office_name, found = signs.signs_of_office(conn, street_office.strip())
        signs.check_role(user)
        visible = [s for s in found if signs.may_get(user, s)]
        if found and not visible:
            raise Forbidden(f"the streets of {office_name} are outside your scope",
                            field="street_office")
    except (InvalidInput, NotFound, Forbidden) as exc:
        code = 422 if isinstance(exc, InvalidInput) else 404 if isinstance(exc, NotFound) \
            else 403
        return _error_page(request, templates, "signs.html", code, exc,
                           {"office_code": street_office, "signs": []})
    base = public_base(request, settings)
    # the SVG comes from the XML writer, every text in it escaped: safe to inline
    sheets = [{"street_id": s.street_id, "name": s.name,
               "svg": Markup(signs.render_svg(s, signs.report_url(base, s.street_id)))}
              for s in visible]
    return templates.TemplateResponse(request, "signs.html", {
        "office_code": street_office, "office_name": office_name, "signs": sheets,
        "hidden": len(found) - len(visible), "user": user}, headers=NO_STORE)
