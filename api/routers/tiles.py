"""Vector tiles of the command-center map (gis/tiles.py; docs/tiles.md).

Who may call: every signed-in user (any role; bearer token or the session cookie the map
page sends), on every route — 401 without credentials. The reference layers are the same
for everyone; incidents and teams are filtered by the reader's scope (a street chief's
teams tile is empty, as the teams API shows them no team).

- GET /tiles/layers.json: each layer's name, zooms, fields and tile URL template;
- GET /tiles/{layer}/{z}/{x}/{y}.mvt: one tile (application/vnd.mapbox-vector-tile). Below
  the layer's minimum zoom, or where it has no features, the tile is empty: 200 with an
  empty body (a valid MVT; MapLibre draws nothing and logs nothing). Strong ETag (hash of
  the bytes) and If-None-Match → 304. Cache-Control: `private, max-age=60` for the
  reference layers (not `public`: a shared cache would hand them out without sign-in),
  `private, no-cache` for incidents and teams (the browser revalidates every time).
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from api.deps import SettingsDep, engine_of
from api.security import SESSION_COOKIE, CurrentUser, get_principal
from gis import tiles
from gis.tiles import Layer, Tile, TileCache

MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
REFERENCE_CACHE_CONTROL = "private, max-age=60"
SCOPED_CACHE_CONTROL = "private, no-cache"
URL_TEMPLATE = "/tiles/{layer}/{z}/{x}/{y}.mvt"

router = APIRouter(tags=["tiles"])
_cache_lock = threading.Lock()


def tile_cache(app: FastAPI) -> TileCache:
    """The app's tile cache (`app.state.tile_cache`), created on first use if the app
    factory did not make one."""
    cache: TileCache | None = getattr(app.state, "tile_cache", None)
    if cache is None:
        with _cache_lock:
            cache = getattr(app.state, "tile_cache", None)
            if cache is None:
                cache = TileCache()
                app.state.tile_cache = cache
    return cache


def _matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match holds `etag` (weak comparison, as RFC 9110 has it for this header)."""
    if not if_none_match:
        return False
    tags = [t.strip() for t in if_none_match.split(",")]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)


@router.get("/layers.json", summary="The tile layers: zooms, fields, URL template")
def layers(request: Request, _user: CurrentUser) -> JSONResponse:
    """Every layer with its minimum and maximum zoom, feature cap, fields and the URL of
    its tiles (absolute, as MapLibre needs them)."""
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {"layers": tiles.describe_layers(base + URL_TEMPLATE),
         "extent": tiles.EXTENT, "buffer": tiles.BUFFER, "max_zoom": tiles.MAX_ZOOM},
        headers={"Cache-Control": REFERENCE_CACHE_CONTROL})


def _credentials(request: Request) -> tuple[str | None, str | None]:
    """The bearer token and the session cookie, read as api.security's schemes read them."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return bearer, request.cookies.get(SESSION_COOKIE) or None


@router.get("/{layer}/{z}/{x}/{y}.mvt", summary="One vector tile",
            response_class=Response,
            openapi_extra={"security": [{"OAuth2PasswordBearer": []}, {"APIKeyCookie": []}]},
            responses={200: {"content": {MEDIA_TYPE: {}}, "description": "MVT (may be empty)"},
                       304: {"description": "not modified (If-None-Match)"}})
async def tile(
    request: Request,
    settings: SettingsDep,
    layer: Annotated[str, Path(description="layer name (see /tiles/layers.json)")],
    z: Annotated[int, Path(description=f"zoom, 0 … {tiles.MAX_ZOOM}")],
    x: Annotated[int, Path(description="column, 0 … 2^z − 1")],
    y: Annotated[int, Path(description="row, 0 … 2^z − 1 (XYZ, from the north)")],
    if_none_match: Annotated[str | None, Header()] = None,
) -> Response:
    """The tile of `layer` at z/x/y as the reader may see it (sign-in required).

    A map asks for dozens of tiles at once and most come from the cache, so the request
    makes one hop to the thread pool for its database work — the sign-in check
    (api.security.get_principal, as `CurrentUser` does it) and, on a cache miss, the
    tile — instead of one per dependency."""
    bearer, cookie = _credentials(request)
    cache = tile_cache(request.app)
    stale_after = timedelta(minutes=settings.position_stale_minutes)

    def serve() -> tuple[Layer, Tile]:
        with engine_of(request.app).connect() as conn:
            user = get_principal(request, conn, settings, bearer, cookie)
            spec = tiles.layer_of(layer)
            return spec, tiles.get_tile(conn, cache, spec, z, x, y, user,
                                        stale_after=stale_after)

    spec, found = await run_in_threadpool(serve)
    headers = {"ETag": found.etag,
               "Cache-Control": SCOPED_CACHE_CONTROL if spec.scope else REFERENCE_CACHE_CONTROL}
    if _matches(if_none_match, found.etag):
        return Response(status_code=304, headers=headers)
    return Response(found.data, media_type=MEDIA_TYPE, headers=headers)
