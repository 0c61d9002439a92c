"""Dispatch (派遣) and whistles (吹哨报到): teams sent to an incident, their steps
dispatched → accepted → en route → on scene (报到) → done (or declined / cancelled), each
with time and actor, and the team's status following them."""

from __future__ import annotations

from typing import Literal

from sqlalchemy import Connection, text

from gis.audit import Actor

ACTIVE = ("dispatched", "accepted", "en_route", "on_scene")

_END_ACTIVE = text("""
    WITH active AS (
        SELECT id, team_id, status FROM dispatches
        WHERE incident_id = :incident_id
          AND status IN ('dispatched', 'accepted', 'en_route', 'on_scene')
        FOR UPDATE),
    ended AS (
        UPDATE dispatches d
        SET status = :to_status,
            done_at = CASE WHEN :to_status = 'done' THEN now() END,
            cancelled_at = CASE WHEN :to_status = 'cancelled' THEN now() END,
            reason = coalesce(CAST(:reason AS text), d.reason),
            out_of_remit = d.out_of_remit OR :out_of_remit
        FROM active a WHERE d.id = a.id
        RETURNING d.id, d.team_id, a.status AS from_status),
    steps AS (
        INSERT INTO dispatch_events (dispatch_id, actor_id, from_status, to_status, reason)
        SELECT id, :actor_id, from_status, :to_status, :reason FROM ended),
    freed AS (
        UPDATE teams t SET status = 'available', updated_at = now()
        FROM ended e WHERE t.id = e.team_id AND t.status = 'busy'
        RETURNING t.id)
    SELECT ended.id FROM ended ORDER BY ended.id
""")


def end_active(conn: Connection, incident_id: int, by: Actor, *,
               to_status: Literal["cancelled", "done"] = "cancelled",
               reason: str | None = None, out_of_remit: bool = False) -> list[int]:
    """End the incident's active dispatches — cancelled when the case is returned (退回),
    voided or put on the ledger, done when it closes — and free their busy teams. Returns
    the ended dispatch ids (caller commits)."""
    return [int(i) for i in conn.scalars(_END_ACTIVE, {
        "incident_id": incident_id, "to_status": to_status, "reason": reason,
        "out_of_remit": out_of_remit, "actor_id": by.user_id})]
