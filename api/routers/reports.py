"""Boundary dispute reports (边界争议报告): `GET /reports/boundary` as JSON, a printable HTML
page with an offline Leaflet map, GeoJSON or CSV. Domain logic lives in
gis/boundary_report.py (data) and gis/boundary_report_html.py (outputs); definitions in
docs/boundary-report.md.

Who may call (anonymous: 401): admin and city-wide operators, viewers and planners (any
areas); scoped operators, viewers and planners only when their scope holds both sides (404
otherwise, as for anything outside a scope; the incidents listed are those they may see);
dispatchers and street chiefs 403.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse

from api.deps import ConnDep, SettingsDep
from api.routers.boundaries import GeoJSONResponse
from api.routers.stats import CSV_MEDIA_TYPE
from api.security import require_role
from gis import boundary_report as br
from gis import boundary_report_html as brh
from gis.auth import Principal
from gis.features import parse_at
from gis.scope import SCOPED_READERS

router = APIRouter(tags=["reports"])

REPORT_READERS = ("admin", *SCOPED_READERS)
ReportReader = Annotated[Principal, Depends(require_role(*REPORT_READERS))]
CodeQuery = Annotated[str | None, Query(
    max_length=32, description="a district (6 digits), street office (9), community (12) or "
                               "grid (15) code", examples=["110102020"])]


@router.get(
    "/reports/boundary", summary="Boundary dispute report between two areas",
    responses={
        200: {"content": {"text/html": {}, "application/geo+json": {}, "text/csv": {}},
              "description": "the report (JSON, printable HTML, GeoJSON or CSV)"},
        403: {"description": "a role without access (dispatcher, street chief)"},
        404: {"description": "an area, building or incident that does not exist at `at`, "
                             "or outside your scope"},
        422: {"description": "a bad or missing code (named), the same code twice, areas "
                             "that do not touch (with their distance), a bad buffer"},
        503: {"description": "Leaflet is not installed (format=html)"}})
def boundary_report(
    conn: ConnDep,
    settings: SettingsDep,
    user: ReportReader,
    a: CodeQuery = None,
    b: CodeQuery = None,
    building: Annotated[int | None, Query(
        ge=1, le=2**62, description="instead of a and b: the two areas this building "
                                    "straddles")] = None,
    incident: Annotated[int | None, Query(
        ge=1, le=2**62, description="instead of a and b: the two areas nearest this "
                                    "incident's point (the one holding it first)")] = None,
    level: Annotated[Literal["district", "street", "community", "grid"] | None, Query(
        description="building/incident reports: the level of the two areas (default: "
                    "street offices; a building falls back to the first level it "
                    "straddles)")] = None,
    at: Annotated[str | None, Query(
        max_length=40, description="versions in force at this instant, ISO 8601 (no offset "
                                   "= Beijing time); default now")] = None,
    buffer_m: Annotated[float | None, Query(
        gt=0, le=br.MAX_BUFFER_M, description="incidents within this many metres of the "
                                              "line (default: the setting "
                                              "boundary_report_buffer_m)")] = None,
    output: Annotated[Literal["json", "html", "geojson", "csv"], Query(
        alias="format", description="json (default), html (printable, works offline), "
                                    "geojson or csv (UTF-8 with BOM)")] = "json",
    table: Annotated[Literal["buildings", "incidents"], Query(
        description="format=csv: which table")] = "buildings",
) -> Response:
    """The shared boundary and its length, overlaps and gaps (areas), straddling buildings
    (shares, households per side, the majority-share assignment and whether the stored one
    agrees), incidents within `buffer_m` of the line by side, class and month with response
    times, whistles on that stretch with each summoned department's arrival, the versions
    of both areas; the data date, CRS and tolerances."""
    when = parse_at(at) if at is not None else None
    report = br.boundary_report(conn, a=a, b=b, building=building, incident=incident,
                                level=level, at=when,
                                rules=br.ReportRules.from_settings(settings, buffer_m),
                                reader=user)
    stem = f"boundary-{report['a']['code']}-{report['b']['code']}"
    if output == "html":
        if not brh.leaflet_installed():
            return JSONResponse(status_code=503, content={
                "detail": "Leaflet is not installed under web/node_modules; run "
                          "`npm ci --prefix web`"})
        return HTMLResponse(brh.report_html(report, settings.basemap_url),
                            headers={"Content-Disposition": f'inline; filename="{stem}.html"'})
    if output == "geojson":
        return GeoJSONResponse(jsonable_encoder(brh.report_geojson(report)))
    if output == "csv":
        body = brh.buildings_csv(report) if table == "buildings" else brh.incidents_csv(report)
        return Response(body, media_type=CSV_MEDIA_TYPE, headers={
            "Content-Disposition": f'attachment; filename="{stem}-{table}.csv"'})
    content: Any = jsonable_encoder(report)
    return JSONResponse(content)
