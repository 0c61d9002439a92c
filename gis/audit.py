"""The append-only audit log: one row per state change, written in the change's transaction,
and read back (by admins) with filters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text


@dataclass(frozen=True)
class Actor:
    """Who makes a change: a user (API), or a named operator of the CLI."""

    name: str
    user_id: int | None = None
    request_id: str | None = None


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False, default=str)


def record(
    conn: Connection, by: Actor, *, action: str, object_type: str, object_id: str | None,
    before: Any = None, after: Any = None, district_code: str | None = None,
) -> None:
    """Append an audit row on `conn` (so it commits or rolls back with the change)."""
    conn.execute(
        text("""
            INSERT INTO audit_log (user_id, actor, action, object_type, object_id, before, after,
                                   request_id, district_code)
            VALUES (:user_id, :actor, :action, :object_type, :object_id, CAST(:before AS jsonb),
                    CAST(:after AS jsonb), :request_id, :district_code)
        """),
        {"user_id": by.user_id, "actor": by.name, "action": action, "object_type": object_type,
         "object_id": object_id, "request_id": by.request_id, "district_code": district_code,
         "before": _json(before), "after": _json(after)},
    )


@dataclass(frozen=True)
class AuditFilter:
    """Filters of `GET /api/v1/audit`; None means any."""

    actor: str | None = None
    user_id: int | None = None
    action: str | None = None
    object_type: str | None = None
    object_id: str | None = None
    district_code: str | None = None
    request_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def list_entries(conn: Connection, where: AuditFilter, *, limit: int,
                 before_id: int | None = None) -> tuple[list[dict[str, Any]], int | None]:
    """Entries matching `where`, newest first, at most `limit`, with ids below `before_id`;
    and the cursor of the next page (None on the last)."""
    rows = conn.execute(
        text("""
            SELECT id, at, user_id, actor, action, object_type, object_id, before, after,
                   request_id, district_code
            FROM audit_log
            WHERE (CAST(:actor AS text) IS NULL OR actor = :actor)
              AND (CAST(:user_id AS bigint) IS NULL OR user_id = :user_id)
              AND (CAST(:action AS text) IS NULL OR action = :action)
              AND (CAST(:object_type AS text) IS NULL OR object_type = :object_type)
              AND (CAST(:object_id AS text) IS NULL OR object_id = :object_id)
              AND (CAST(:district_code AS text) IS NULL OR district_code = :district_code)
              AND (CAST(:request_id AS text) IS NULL OR request_id = :request_id)
              AND (CAST(:since AS timestamptz) IS NULL OR at >= :since)
              AND (CAST(:until AS timestamptz) IS NULL OR at < :until)
              AND (CAST(:before_id AS bigint) IS NULL OR id < :before_id)
            ORDER BY id DESC
            LIMIT :limit
        """),
        {**where.__dict__, "before_id": before_id, "limit": limit + 1},
    ).mappings().all()
    entries = [dict(r) for r in rows[:limit]]
    return entries, (entries[-1]["id"] if len(rows) > limit else None)
