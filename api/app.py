"""The FastAPI application factory. Nothing is read from the environment at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Engine

from api.deps import open_engine
from api.errors import install_error_handlers
from api.live import Hub
from api.middleware import RequestIdMiddleware
from api.routers import (
    audit,
    auth,
    boundaries,
    dashboard,
    dispatch,
    event_classes,
    events,
    health,
    incidents,
    joint_zones,
    locate,
    ogc,
    open311,
    pages,
    patrol_reports,
    patrols,
    plans,
    reports,
    stats,
    street_signs,
    teams,
    tiles,
    users,
    workflow,
)
from api.security import RateLimiter
from api.settings import Settings
from gis.errors import DatabaseUnavailable
from gis.users import active_demo_users

API_PREFIX = "/api/v1"
logger = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    """Build the app for `settings`: routers, error table, static files, engine lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The engine connects lazily: the app starts (and /health answers 503) while the
        # database is down, and recovers on its own when it comes back.
        try:
            app.state.engine = open_engine(settings)
        except DatabaseUnavailable as exc:
            logger.warning("%s", exc.message)
            app.state.engine = None
        if settings.env == "production":
            _refuse_demo_users(app.state.engine)
        # The live-event hub (one LISTEN thread per process) retries on its own while
        # the database is down.
        engine = app.state.engine
        app.state.hub = None if engine is None else Hub(
            engine.url.render_as_string(hide_password=False))
        if app.state.hub is not None:
            # cached map tiles go stale as changes are committed, in any worker
            app.state.hub.subscribe(tiles.tile_cache(app).invalidate)
            app.state.hub.start()
        try:
            yield
        finally:
            if app.state.hub is not None:
                app.state.hub.stop()
            if app.state.engine is not None:
                app.state.engine.dispose()

    app = FastAPI(
        title="GridOps API",
        summary="GIS grid management (网格化管理) and map-based dispatch on PostGIS",
        version="0.1.0",
        docs_url=None,  # served by pages.docs with local assets (no CDN)
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = None
    app.state.hub = None
    app.state.templates = Jinja2Templates(directory=pages.TEMPLATES_DIR)
    app.state.rate_limiter = RateLimiter()
    install_error_handlers(app)
    app.add_middleware(RequestIdMiddleware)
    for router in (health.router, auth.router, boundaries.router, locate.router,
                   incidents.router, users.router, audit.router, event_classes.router,
                   joint_zones.router, teams.router, dispatch.router, workflow.router,
                   stats.router, events.router, dashboard.router, patrols.router,
                   patrol_reports.router, street_signs.router, plans.router,
                   reports.router):
        app.include_router(router, prefix=API_PREFIX)
    app.include_router(open311.router)
    app.include_router(tiles.router, prefix="/tiles")
    app.include_router(ogc.router, prefix="/ogc")
    app.include_router(pages.router)
    app.include_router(patrol_reports.pages_router)
    app.include_router(street_signs.pages_router)
    app.include_router(plans.pages_router)
    app.mount("/static", StaticFiles(directory=pages.STATIC_DIR), name="static")
    if pages.maplibre_installed():
        app.mount("/vendor/maplibre-gl", StaticFiles(directory=pages.MAPLIBRE_DIR),
                  name="maplibre")
    else:
        logger.warning("MapLibre GL JS is not installed; the map page cannot draw: %s",
                       pages.INSTALL_HINT)
    if pages.swagger_installed():
        app.mount("/vendor/swagger-ui", StaticFiles(directory=pages.SWAGGER_DIR),
                  name="swagger-ui")
    return app


def _refuse_demo_users(engine: Engine | None) -> None:
    """Production must not start with demo accounts (their passwords are public)."""
    if engine is None:
        raise RuntimeError("production start needs the database (to check for demo users)")
    with engine.connect() as conn:
        demo = active_demo_users(conn)
    if demo:
        raise RuntimeError(f"refusing to start in production: demo users present "
                           f"({', '.join(demo)}); disable them with `gridops users disable`")


def app_from_env() -> FastAPI:
    """The app configured from the environment (uvicorn factory for `gridops serve`)."""
    return create_app(Settings())
