"""FastAPI dependencies as `Annotated` aliases: settings, engine, a connection per request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, Engine

from api.settings import Settings
from gis.database import make_engine
from gis.errors import ClusterError, DatabaseUnavailable

_engine_lock = threading.Lock()


def open_engine(settings: Settings) -> Engine:
    """The engine for `settings` (no connection is made yet). DatabaseUnavailable when the
    URL cannot even be formed, e.g. the local cluster was never set up."""
    try:
        url = settings.db_url()
    except ClusterError as exc:
        raise DatabaseUnavailable(exc.message) from exc
    return make_engine(url, statement_timeout_ms=settings.statement_timeout_ms)


async def get_settings(request: Request) -> Settings:
    """The settings the app was built with. (Dependencies without I/O are `async def`:
    FastAPI runs them on the event loop instead of a thread-pool hop each.)"""
    settings: Settings = request.app.state.settings
    return settings


def engine_of(app: FastAPI) -> Engine:
    """The app's engine; created now if it could not be at start-up (cluster set up since)."""
    state = app.state
    engine: Engine | None = getattr(state, "engine", None)
    if engine is None:
        with _engine_lock:
            engine = getattr(state, "engine", None)
            if engine is None:
                engine = open_engine(state.settings)
                state.engine = engine
    return engine


async def get_engine(request: Request) -> Engine:
    """The app's engine (`engine_of`)."""
    return engine_of(request.app)


def get_conn(engine: Annotated[Engine, Depends(get_engine)]) -> Iterator[Connection]:
    """One connection per request, returned to the pool (rolled back) afterwards."""
    with engine.connect() as conn:
        yield conn


async def get_templates(request: Request) -> Jinja2Templates:
    """The page templates (web/templates)."""
    templates: Jinja2Templates = request.app.state.templates
    return templates


def json_response(content: Any, status_code: int = 200) -> JSONResponse:
    """`content` (dicts, lists, datetimes, decimals …) as a JSON response."""
    return JSONResponse(jsonable_encoder(content), status_code=status_code)


IncidentId = Annotated[int, Path(ge=1, description="incident id")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
EngineDep = Annotated[Engine, Depends(get_engine)]
ConnDep = Annotated[Connection, Depends(get_conn)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]
