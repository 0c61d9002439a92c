"""The append-only audit log: one row per state change, written in the change's transaction."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, text


def record(
    conn: Connection, *, actor: str, action: str, object_type: str, object_id: str | None,
    before: Any = None, after: Any = None, user_id: int | None = None,
    request_id: str | None = None, district_code: str | None = None,
) -> None:
    """Append an audit row on `conn` (so it commits or rolls back with the change)."""
    conn.execute(
        text("""
            INSERT INTO audit_log (user_id, actor, action, object_type, object_id, before, after,
                                   request_id, district_code)
            VALUES (:user_id, :actor, :action, :object_type, :object_id, CAST(:before AS jsonb),
                    CAST(:after AS jsonb), :request_id, :district_code)
        """),
        {"user_id": user_id, "actor": actor, "action": action, "object_type": object_type,
         "object_id": object_id, "request_id": request_id, "district_code": district_code,
         "before": None if before is None else json.dumps(before, ensure_ascii=False, default=str),
         "after": None if after is None else json.dumps(after, ensure_ascii=False, default=str)},
    )
