"""Domain errors. The API maps each class to an HTTP status in one table (api/errors.py)."""

from __future__ import annotations

from typing import Any


class GridOpsError(Exception):
    """Base class: `message` is shown to the user as is."""

    def __init__(self, message: str, *, field: str | None = None, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.detail = detail


class InvalidInput(GridOpsError):
    """A value the caller sent is wrong; `field` names it."""


class NotFound(GridOpsError):
    """The object asked for does not exist."""


class Conflict(GridOpsError):
    """The request contradicts the current state (duplicate code, busy team, ...)."""


class DatabaseUnavailable(GridOpsError):
    """PostgreSQL cannot be reached."""


class ClusterError(GridOpsError):
    """The local PostgreSQL cluster could not be set up, started or stopped."""


class MissingSystemPackages(ClusterError):
    """Debian packages the cluster needs are missing (and we may not install them)."""


class MissingExtension(ClusterError):
    """A PostgreSQL extension (postgis, pgrouting, ...) is unavailable on the server."""


class ImportRejected(GridOpsError):
    """A file failed validation; `detail` is the validation report. Nothing was loaded."""


class Unauthenticated(GridOpsError):
    """No valid credentials: missing, wrong, tampered, expired or revoked."""


class Forbidden(GridOpsError):
    """Authenticated, but the user's roles do not allow this (or a CSRF check failed)."""


class TooManyRequests(GridOpsError):
    """A rate limit or login throttle; retry after `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: int = 60, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = max(1, retry_after)
