"""Grid plans (网格调整方案): create (from the live grids, an imported layer, or 多网合一
from specialised layers), edit (paint cells, split, merge), validate, diff, approve, apply;
and the planner page. Domain logic lives in gis/plans*.py and gis/plan_*.py; docs/plans.md.

Who may call (anonymous: 401):
- reads (GET): admin, planner, operator, viewer — scoped users see the plans touching
  their districts or street offices (404 for others); dispatcher and street chief 403.
- writes (create, edit, validate, comment, approve, reject, apply): admin and planner,
  for plans whose communities are all inside their scope (403 otherwise). The author of a
  plan cannot approve it (an admin can).
- page /planner: admin and planner edit, operator and viewer read; other roles get a 403
  page, anyone signed out the login page.
"""

from __future__ import annotations

import tempfile
from datetime import datetime
from pathlib import Path as FilePath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy import Connection

from api.deps import ConnDep, SettingsDep, TemplatesDep, json_response
from api.routers.boundaries import GeoJSONResponse
from api.routers.pages import LOGIN_PATH, NO_STORE, login_url, maplibre_installed
from api.security import CSRF_COOKIE, OptionalUser, actor_of, require_role
from api.settings import Settings
from gis import plan_apply, plan_diff, plan_edits, plan_sources, plan_validation, plans
from gis.auth import Principal
from gis.errors import InvalidInput

router = APIRouter(tags=["grid plans"])
pages_router = APIRouter(include_in_schema=False)  # the planner page, outside /api/v1

READERS = ("admin", "planner", "operator", "viewer")
WRITERS = ("admin", "planner")
PlanReader = Annotated[Principal, Depends(require_role(*READERS))]
PlanWriter = Annotated[Principal, Depends(require_role(*WRITERS))]
PlanId = Annotated[int, Path(ge=1, description="plan id")]
MAX_LAYER_BYTES = 64 * 1024 * 1024
LAYER_SUFFIXES = (".geojson", ".json", ".gpkg", ".zip")


class PlanCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="plan name")
    community_codes: list[str] | None = Field(
        default=None, min_length=1, max_length=200, description="12-digit community codes")
    street_code: str | None = Field(
        default=None, description="or every community of this street office (9 digits)")


class Move(BaseModel):
    cell_id: int = Field(ge=1)
    grid_id: int = Field(ge=1)


class Moves(BaseModel):
    moves: list[Move] = Field(description="cells and the grid each one moves to")


class SplitBody(BaseModel):
    grid_id: int = Field(ge=1)
    line: dict[str, Any] = Field(description="GeoJSON LineString, WGS84 lon/lat")


class MergeBody(BaseModel):
    grid_ids: list[int] = Field(min_length=2, max_length=50,
                                description="grids to merge; the cells go into the first")


class NewGrid(BaseModel):
    community_code: str = Field(pattern=r"^[0-9]{12}$")
    name: str | None = Field(default=None, max_length=100)


class ReviewBody(BaseModel):
    comment: str | None = Field(default=None, max_length=2000)


class CommentBody(BaseModel):
    text: str = Field(min_length=1, max_length=2000)


class ApplyBody(BaseModel):
    effective_from: datetime | None = Field(
        default=None, description="when the new grids take effect (default: now)")


def _report(conn: Connection, plan_id: int, settings: Settings) -> dict[str, Any]:
    """The validation report of the plan now."""
    return plan_validation.validate_plan(conn, plan_id,
                                         plan_validation.PlanRules.from_settings(settings))


def _detail(conn: Connection, plan_id: int, user: Principal, code: int = 200) -> JSONResponse:
    return json_response(plans.get_plan(conn, plan_id, user), code)


def _edited(conn: Connection, settings: Settings, user: Principal, plan_id: int,
            edit: plan_edits.Edit) -> JSONResponse:
    """Commit an edit; answer with its moves, the changed grids and the metrics now."""
    conn.commit()
    body: dict[str, Any] = {
        "moves": edit.moves,
        "grids": plans.grids_geojson(conn, plan_id, sorted(edit.grid_ids)),
        "metrics": _report(conn, plan_id, settings),
        "plan": plans.get_plan(conn, plan_id, user),
    }
    if edit.created_grid_id is not None:
        body["created_grid_id"] = edit.created_grid_id
        body["snapped_line"] = edit.snapped_line
    return json_response(body)


# -- plans --------------------------------------------------------------------------------------


@router.get("/plans", summary="Grid plans I may see")
def list_plans(conn: ConnDep, user: PlanReader,
               plan_status: Annotated[str | None, Query(alias="status")] = None
               ) -> JSONResponse:
    """Plans, newest change first (optionally one status)."""
    return json_response({"plans": plans.list_plans(conn, user, plan_status)})


@router.post("/plans", status_code=status.HTTP_201_CREATED,
             summary="A new plan copied from the live grids of some communities")
def create_plan(request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
                body: PlanCreate) -> JSONResponse:
    """Name the communities, or a street office for all of its communities."""
    if (body.community_codes is None) == (body.street_code is None):
        raise InvalidInput("give community_codes or street_code (one of them)",
                           field="community_codes")
    codes = body.community_codes or plan_sources.communities_of_street(conn, body.street_code
                                                                      or "")
    plan_id = plan_sources.from_live(conn, name=body.name, community_codes=codes, author=user,
                                     actor=actor_of(request, user),
                                     metric_srid=settings.metric_crs)
    conn.commit()
    return _detail(conn, plan_id, user, 201)


async def _saved(upload: UploadFile, folder: FilePath, field: str) -> FilePath:
    """Store an uploaded layer file under its own name; refuse odd types and sizes."""
    name = FilePath(upload.filename or "layer").name
    if not name.lower().endswith(LAYER_SUFFIXES):
        raise InvalidInput(f"{name}: upload a GeoJSON (.geojson), GeoPackage (.gpkg) or a "
                           "zipped Shapefile (.zip)", field=field)
    data = await upload.read(MAX_LAYER_BYTES + 1)
    if len(data) > MAX_LAYER_BYTES:
        raise InvalidInput(f"{name}: larger than {MAX_LAYER_BYTES // 2**20} MiB", field=field)
    path = folder / name
    path.write_bytes(data)
    return path


def _codes(value: str | None) -> list[str] | None:
    codes = [c.strip() for c in (value or "").split(",") if c.strip()]
    return codes or None


@router.post("/plans/import", status_code=status.HTTP_201_CREATED,
             summary="A new plan from an imported grid layer (GeoJSON, GPKG, zipped Shapefile)")
async def import_plan(
    request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
    file: Annotated[UploadFile, File(description="the layer file")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    community_codes: Annotated[str | None, Form(
        description="comma-separated 12-digit codes; default: where the features lie")] = None,
    layer: Annotated[str | None, Form(description="layer name (multi-layer files)")] = None,
    crs: Annotated[str | None, Form(description="the file's CRS if it names none "
                                                "(EPSG:4548, wgs84, gcj02, bd09)")] = None,
) -> JSONResponse:
    """Each polygon becomes a plan grid; fields code, name, community_code are read when
    present. The file loads whole or not at all."""
    with tempfile.TemporaryDirectory() as folder:
        path = await _saved(file, FilePath(folder), "file")
        frame = plan_sources.read_layer(path, layer=layer, crs=crs)
    plan_id = plan_sources.from_layer(conn, name=name, frame=frame,
                                      community_codes=_codes(community_codes), author=user,
                                      actor=actor_of(request, user),
                                      metric_srid=settings.metric_crs, source_name=path.name)
    conn.commit()
    return _detail(conn, plan_id, user, 201)


@router.post("/plans/merge-layers", status_code=status.HTTP_201_CREATED,
             summary="多网合一: a new plan merging specialised grid layers")
async def merge_layers(
    request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
    files: Annotated[list[UploadFile], File(description="two or more layer files")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    community_codes: Annotated[str, Form(description="comma-separated 12-digit codes")],
    crs: Annotated[str | None, Form(description="the files' CRS if they name none")] = None,
) -> JSONResponse:
    """Proposes 全科网格 per community in the household band, tiling each community."""
    if len(files) < 2:
        raise InvalidInput("多网合一 needs at least two layer files", field="files")
    codes = _codes(community_codes)
    if not codes:
        raise InvalidInput("name the communities to merge", field="community_codes")
    with tempfile.TemporaryDirectory() as folder:
        layers, names = [], []
        for i, upload in enumerate(files):
            sub = FilePath(folder) / str(i)
            sub.mkdir()
            path = await _saved(upload, sub, "files")
            layers.append(plan_sources.read_layer(path, crs=crs))
            names.append(path.name)
    plan_id, _summary = plan_sources.from_layers(
        conn, name=name, layers=layers, layer_names=names, community_codes=codes,
        band=(settings.grid_households_min, settings.grid_households_max), author=user,
        actor=actor_of(request, user), metric_srid=settings.metric_crs)
    conn.commit()
    return _detail(conn, plan_id, user, 201)


@router.get("/plans/{plan_id}", summary="One plan with its history and last validation")
def get_plan(conn: ConnDep, user: PlanReader, plan_id: PlanId) -> JSONResponse:
    return _detail(conn, plan_id, user)


@router.get("/plans/{plan_id}/grids", response_class=GeoJSONResponse,
            summary="The plan's grids (FeatureCollection)")
def plan_grids(conn: ConnDep, user: PlanReader, plan_id: PlanId) -> GeoJSONResponse:
    plans.get_plan(conn, plan_id, user)
    return GeoJSONResponse(plans.grids_geojson(conn, plan_id))


@router.get("/plans/{plan_id}/cells", response_class=GeoJSONResponse,
            summary="The plan's cells, the pieces painted between grids")
def plan_cells(conn: ConnDep, user: PlanReader, plan_id: PlanId) -> GeoJSONResponse:
    plans.get_plan(conn, plan_id, user)
    return GeoJSONResponse(plans.cells_geojson(conn, plan_id))


@router.get("/plans/{plan_id}/buildings", response_class=GeoJSONResponse,
            summary="Building footprints in the plan, with their cell and grid")
def plan_buildings(conn: ConnDep, user: PlanReader, plan_id: PlanId) -> GeoJSONResponse:
    plans.get_plan(conn, plan_id, user)
    return GeoJSONResponse(plans.buildings_geojson(conn, plan_id))


@router.get("/plans/{plan_id}/metrics", summary="Validation metrics computed now (not stored)")
def plan_metrics(conn: ConnDep, settings: SettingsDep, user: PlanReader,
                 plan_id: PlanId) -> JSONResponse:
    plans.get_plan(conn, plan_id, user)
    return json_response(_report(conn, plan_id, settings))


# -- editing ------------------------------------------------------------------------------------


@router.post("/plans/{plan_id}/assign", summary="Move cells (painted buildings) between grids")
def assign(request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
           plan_id: PlanId, body: Moves) -> JSONResponse:
    edit = plan_edits.assign(conn, plan_id, user, actor_of(request, user),
                             [m.model_dump() for m in body.moves])
    return _edited(conn, settings, user, plan_id, edit)


@router.post("/plans/{plan_id}/split", summary="Split a grid by a line snapped to streets")
def split(request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
          plan_id: PlanId, body: SplitBody) -> JSONResponse:
    edit = plan_edits.split(conn, plan_id, user, actor_of(request, user), body.grid_id,
                            body.line, metric_srid=settings.metric_crs,
                            snap_m=settings.plan_street_snap_m)
    return _edited(conn, settings, user, plan_id, edit)


@router.post("/plans/{plan_id}/merge", summary="Merge grids of one community")
def merge(request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
          plan_id: PlanId, body: MergeBody) -> JSONResponse:
    edit = plan_edits.merge(conn, plan_id, user, actor_of(request, user), body.grid_ids)
    return _edited(conn, settings, user, plan_id, edit)


@router.post("/plans/{plan_id}/grids", status_code=status.HTTP_201_CREATED,
             summary="A new empty grid to paint cells into")
def add_grid(request: Request, conn: ConnDep, user: PlanWriter, plan_id: PlanId,
             body: NewGrid) -> JSONResponse:
    grid_id = plan_edits.add_grid(conn, plan_id, user, actor_of(request, user),
                                  body.community_code, body.name)
    conn.commit()
    grid = plans.grids_geojson(conn, plan_id, [grid_id])["features"][0]
    return json_response({"grid": grid["properties"]}, 201)


# -- review and apply ---------------------------------------------------------------------------


@router.post("/plans/{plan_id}/validate",
             summary="Validate; a draft without errors becomes validated")
def validate(request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
             plan_id: PlanId) -> JSONResponse:
    plan = plans.locked(conn, plan_id, user)
    report = _report(conn, plan_id, settings)
    plans.store_validation(conn, plan, user, actor_of(request, user), report)
    conn.commit()
    return json_response({"plan": plans.get_plan(conn, plan_id, user), "validation": report})


@router.post("/plans/{plan_id}/approve", summary="Approve a validated plan (reviewer)")
def approve(request: Request, conn: ConnDep, user: PlanWriter, plan_id: PlanId,
            body: ReviewBody | None = None) -> JSONResponse:
    plan = plans.locked(conn, plan_id, user)
    plans.approve(conn, plan, user, actor_of(request, user), body.comment if body else None)
    conn.commit()
    return _detail(conn, plan_id, user)


@router.post("/plans/{plan_id}/reject", summary="Reject a plan, saying why")
def reject(request: Request, conn: ConnDep, user: PlanWriter, plan_id: PlanId,
           body: ReviewBody) -> JSONResponse:
    plan = plans.locked(conn, plan_id, user)
    plans.reject(conn, plan, user, actor_of(request, user), body.comment)
    conn.commit()
    return _detail(conn, plan_id, user)


@router.post("/plans/{plan_id}/comments", summary="Comment on a plan")
def comment(request: Request, conn: ConnDep, user: PlanWriter, plan_id: PlanId,
            body: CommentBody) -> JSONResponse:
    plans.locked(conn, plan_id, user)
    plans.add_comment(conn, plan_id, user, actor_of(request, user), body.text)
    conn.commit()
    return _detail(conn, plan_id, user)


@router.get("/plans/{plan_id}/diff", summary="What applying the plan changes, and for whom")
def diff(conn: ConnDep, settings: SettingsDep, user: PlanReader,
         plan_id: PlanId) -> JSONResponse:
    plans.get_plan(conn, plan_id, user)
    return json_response(plan_diff.plan_diff(conn, plan_id, settings.metric_crs,
                                              settings.plan_area_tolerance_m2))


@router.get("/plans/{plan_id}/comparison", response_class=HTMLResponse,
            summary="Printable before/after comparison (HTML)")
def comparison(conn: ConnDep, settings: SettingsDep, user: PlanReader,
               plan_id: PlanId) -> HTMLResponse:
    plans.get_plan(conn, plan_id, user)
    return HTMLResponse(plan_diff.comparison_html(
        conn, plan_id, settings.metric_crs, settings.plan_area_tolerance_m2))


@router.post("/plans/{plan_id}/apply",
             summary="Apply an approved plan: the live grids change in one transaction")
def apply(request: Request, conn: ConnDep, settings: SettingsDep, user: PlanWriter,
          plan_id: PlanId, body: ApplyBody | None = None) -> JSONResponse:
    plans.locked(conn, plan_id, user)
    summary = plan_apply.apply_plan(conn, plan_id, actor_of(request, user),
                                    settings.metric_crs, settings.plan_area_tolerance_m2,
                                    body.effective_from if body else None)
    conn.commit()
    return json_response({"plan": plans.get_plan(conn, plan_id, user), "applied": summary})



# -- the planner page ---------------------------------------------------------------------------


@pages_router.get("/planner", response_class=HTMLResponse)
def planner_page(request: Request, settings: SettingsDep, templates: TemplatesDep,
                 user: OptionalUser,
                 plan: Annotated[str | None, Query(description="a plan to open")] = None
                 ) -> Response:
    """The planner page (规划/网格办): plans, the map editor with live metrics, the review
    workflow; planners and admins edit, operators and viewers read. Other roles get a 403
    page, anyone signed out the login page (303)."""
    if user is None:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(login_url(here), status_code=303, headers=NO_STORE)
    allowed = user.has_any(*READERS)
    return templates.TemplateResponse(
        request, "planner.html",
        {"user": user, "allowed": allowed, "maplibre_installed": maplibre_installed(),
         "config": {"apiBase": "/api/v1", "csrfCookie": CSRF_COOKIE, "loginPath": LOGIN_PATH,
                    "basemapUrl": settings.basemap_url,
                    "roles": sorted(user.roles), "username": user.username,
                    "displayName": user.display_name, "writer": user.has_any(*WRITERS),
                    "householdsMin": settings.grid_households_min,
                    "householdsMax": settings.grid_households_max,
                    "plan": int(plan) if plan and plan.isdigit() and len(plan) < 13 else None}},
        status_code=200 if allowed else 403, headers=NO_STORE)
