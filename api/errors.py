"""Error mapping: one table from domain (and database) exceptions to HTTP status.

Installed once by the app factory, so `gis` never imports FastAPI. Bodies:

- bad input (4xx): `{"detail": [{"loc": [...], "field": "...", "msg": "...", "type": "..."}]}`
  — the shape of FastAPI's request validation errors, which are rewritten so that every
  `msg` names its field;
- database down or too slow (503): `{"detail": "database unavailable: ..."}` with a
  `Retry-After` header.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from psycopg2 import errors as pg_errors
from sqlalchemy import exc as sa_exc

from gis import errors

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "5"

# The table. Lookup follows the exception's MRO, so the most specific class wins.
STATUS_CODES: dict[type[Exception], int] = {
    errors.GridOpsError: status.HTTP_400_BAD_REQUEST,
    errors.InvalidInput: status.HTTP_422_UNPROCESSABLE_CONTENT,
    errors.ImportRejected: status.HTTP_422_UNPROCESSABLE_CONTENT,
    errors.NotFound: status.HTTP_404_NOT_FOUND,
    errors.Conflict: status.HTTP_409_CONFLICT,
    errors.Unauthenticated: status.HTTP_401_UNAUTHORIZED,
    errors.Forbidden: status.HTTP_403_FORBIDDEN,
    errors.TooManyRequests: status.HTTP_429_TOO_MANY_REQUESTS,
    errors.DatabaseUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    errors.ClusterError: status.HTTP_503_SERVICE_UNAVAILABLE,
    # Database errors that escape the domain (safety nets: never a 500 for these).
    sa_exc.OperationalError: status.HTTP_503_SERVICE_UNAVAILABLE,  # server down, timeout
    sa_exc.InterfaceError: status.HTTP_503_SERVICE_UNAVAILABLE,  # connection lost
    sa_exc.TimeoutError: status.HTTP_503_SERVICE_UNAVAILABLE,  # connection pool exhausted
    sa_exc.DataError: status.HTTP_422_UNPROCESSABLE_CONTENT,  # a value PostgreSQL rejects
    sa_exc.IntegrityError: status.HTTP_409_CONFLICT,  # a constraint the request broke
}


def status_for(exc: BaseException) -> int:
    """The status of `exc` from the table (500 for anything not in it)."""
    if _schema_missing(exc):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    for cls in type(exc).__mro__:
        if cls in STATUS_CODES:
            return STATUS_CODES[cls]
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return status.HTTP_503_SERVICE_UNAVAILABLE
    return status.HTTP_500_INTERNAL_SERVER_ERROR


def _schema_missing(exc: BaseException) -> bool:
    """The database has no (or an old) schema: a deployment problem, not a bug."""
    orig = getattr(exc, "orig", None)
    return isinstance(orig, pg_errors.UndefinedTable)


def field_error(loc: Sequence[str | int], field: str | None, msg: str, kind: str) -> dict[str, Any]:
    """One entry of a `detail` list."""
    return {"loc": list(loc), "field": field, "msg": msg, "type": kind}


def _where(request: Request, field: str) -> str:
    """Where a named field came from: path, query or body."""
    if field in request.path_params:
        return "path"
    if field in request.query_params:
        return "query"
    return "body"


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _unavailable(message: str) -> JSONResponse:
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": f"database unavailable: {message}"},
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A `gis.errors.GridOpsError`: its message, naming its field, with the table's status."""
    assert isinstance(exc, errors.GridOpsError)
    code = status_for(exc)
    if code == status.HTTP_503_SERVICE_UNAVAILABLE:
        return _unavailable(exc.message)
    loc = [_where(request, exc.field), exc.field] if exc.field else []
    content: dict[str, Any] = {
        "detail": [field_error(loc, exc.field, exc.message, _snake(type(exc).__name__))]
    }
    if exc.detail is not None:
        content["report"] = jsonable_encoder(exc.detail)
    return JSONResponse(status_code=code, content=content, headers=_headers(exc))


def _headers(exc: errors.GridOpsError) -> dict[str, str] | None:
    """Headers a status needs: how to authenticate (401), when to retry (429)."""
    if isinstance(exc, errors.Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, errors.TooManyRequests):
        return {"Retry-After": str(exc.retry_after)}
    return None


def database_message(exc: sa_exc.SQLAlchemyError, timeout_ms: int | None) -> str:
    """A one-line, readable reason for a database error (no SQL, no parameters)."""
    orig = getattr(exc, "orig", None)
    if isinstance(orig, pg_errors.QueryCanceled):
        limit = f" ({timeout_ms} ms)" if timeout_ms else ""
        return (f"the query took longer than the statement timeout{limit}; "
                "narrow the request (bbox, limit, filters) or retry later")
    if _schema_missing(exc):
        return (f"the database schema is missing or out of date ({_first_line(orig)}); "
                "run `gridops db migrate`")
    if isinstance(exc, sa_exc.TimeoutError):
        return "all database connections are busy; retry later"
    diag = getattr(orig, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    return _first_line(orig if orig is not None else exc)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


async def database_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """SQLAlchemy errors: 503 when the server is down or too slow, else 4xx with the reason."""
    assert isinstance(exc, sa_exc.SQLAlchemyError)
    settings = getattr(request.app.state, "settings", None)
    message = database_message(exc, getattr(settings, "statement_timeout_ms", None))
    code = status_for(exc)
    if code == status.HTTP_503_SERVICE_UNAVAILABLE:
        logger.warning("database unavailable on %s %s: %s", request.method, request.url.path,
                       message)
        return _unavailable(message)
    if code >= status.HTTP_500_INTERNAL_SERVER_ERROR:
        raise exc  # a bug: let the server log it and answer 500
    kind = "conflict" if code == status.HTTP_409_CONFLICT else "invalid_value"
    return JSONResponse(status_code=code,
                        content={"detail": [field_error([], None, message, kind)]})


def _field_name(loc: Sequence[str | int]) -> str:
    """`["query", "limit"]` -> `limit`; `["body", "items", 0, "x"]` -> `items[0].x`."""
    parts = list(loc[1:]) if len(loc) > 1 else list(loc)
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 shape, with `field` added and every `msg` naming its field."""
    assert isinstance(exc, RequestValidationError)
    details = []
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        field = _field_name(loc)
        entry = {key: value for key, value in error.items() if key not in {"ctx", "url"}}
        if "ctx" in error:  # may hold exception objects
            entry["ctx"] = {key: str(value) for key, value in error["ctx"].items()}
        entry["field"] = field
        msg = str(error.get("msg", "invalid value"))
        if field and loc and loc[0] == "body" and len(loc) == 1:
            msg = f"request body: {msg}"
        elif field:
            msg = f"{field}: {msg}"
        entry["msg"] = msg
        details.append(entry)
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
        content={"detail": jsonable_encoder(details)},
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the table's handlers and the validation-error handler on `app`."""
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    for cls in STATUS_CODES:
        if issubclass(cls, errors.GridOpsError):
            app.add_exception_handler(cls, domain_error_handler)
        else:
            app.add_exception_handler(cls, database_error_handler)
    app.add_exception_handler(sa_exc.DBAPIError, database_error_handler)
