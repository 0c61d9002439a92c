"""The command page's dashboard: today's counts, the open and overdue backlog, the three
rates (三率) of recent follow-ups and the streets with the most open cases — over the
incidents a reader may see (gis.scope), in two SQL statements.

Definitions:
- today: from 00:00 Beijing time (UTC+8) of the day of `now` to `now`. reported = incidents
  reported today; closed = incidents whose `closed_at` is today; dispatched = incidents with a
  dispatch made today.
- open: status pending, registered, dispatched, handling, feedback or verifying (a case on
  the ledger 挂账 or ended is not open); pending = 待受理; overdue = open cases past the
  deadline of their current stage (as the incident list's `overdue` filter); joint = open
  joint (联合哨) cases; supervised = open cases under 督办.
- 三率 (Beijing 12345's three rates) over the follow-ups (回访) recorded in the last `days`
  days: 响应率 responded / follow-ups, 解决率 resolved / follow-ups, 满意率 satisfied or
  basically satisfied / follow-ups (as gis.stats counts them); null without follow-ups.
- top streets: the streets (街道) with the most open cases, then the most overdue, then by
  code; with today's reports. Cases without a street are left out.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from gis.auth import Principal
from gis.errors import InvalidInput
from gis.features import CHINA_TZ
from gis.incidents import CURRENT_DEADLINE
from gis.scope import incident_visible

OPEN_STATUSES = ("pending", "registered", "dispatched", "handling", "feedback", "verifying")
MAX_DAYS = 366
MAX_TOP = 50

_OPEN = "i.status = ANY(:open_statuses)"
_OVERDUE = f"coalesce({CURRENT_DEADLINE} < :now, false)"

_COUNTS = f"""
    WITH vis AS (SELECT i.* FROM incidents i WHERE ({{visible}})),
    f AS (SELECT f.* FROM incident_followups f JOIN vis v ON v.id = f.incident_id
          WHERE f.at >= :rates_from AND f.at <= :now)
    SELECT
      (SELECT count(*) FROM vis i WHERE i.reported_at >= :day_start
                                    AND i.reported_at <= :now) AS reported,
      (SELECT count(*) FROM vis i WHERE i.closed_at >= :day_start
                                    AND i.closed_at <= :now) AS closed,
      (SELECT count(DISTINCT d.incident_id) FROM dispatches d JOIN vis i
         ON i.id = d.incident_id
       WHERE d.dispatched_at >= :day_start AND d.dispatched_at <= :now) AS dispatched,
      (SELECT count(*) FROM vis i WHERE {_OPEN}) AS open,
      (SELECT count(*) FROM vis i WHERE i.status = 'pending') AS pending,
      (SELECT count(*) FROM vis i WHERE {_OPEN} AND {_OVERDUE}) AS overdue,
      (SELECT count(*) FROM vis i WHERE {_OPEN} AND i.is_joint) AS joint,
      (SELECT count(*) FROM vis i WHERE {_OPEN} AND i.supervised) AS supervised,
      (SELECT count(*) FROM f) AS followups,
      (SELECT count(*) FROM f WHERE f.responded) AS responded,
      (SELECT count(*) FROM f WHERE f.resolved) AS resolved,
      (SELECT count(*) FROM f WHERE f.satisfaction IN ('satisfied', 'basically_satisfied'))
        AS satisfied
"""  # noqa: S608 - constant fragments; values are bound

_TOP_STREETS = f"""
    SELECT i.street_code AS code,
           (SELECT j.name FROM jurisdictions j WHERE j.level = 'street'
              AND j.code = i.street_code ORDER BY j.valid_from DESC LIMIT 1) AS name,
           count(*) FILTER (WHERE {_OPEN}) AS open,
           count(*) FILTER (WHERE {_OPEN} AND {_OVERDUE}) AS overdue,
           count(*) FILTER (WHERE i.reported_at >= :day_start
                              AND i.reported_at <= :now) AS today
    FROM incidents i
    WHERE ({{visible}}) AND i.street_code IS NOT NULL
    GROUP BY i.street_code
    HAVING count(*) FILTER (WHERE {_OPEN}) > 0
    ORDER BY open DESC, overdue DESC, code
    LIMIT :top
"""  # noqa: S608 - constant fragments; values are bound


def day_start(now: datetime) -> datetime:
    """00:00 Beijing time of the day `now` falls on (Beijing time)."""
    local = now.astimezone(CHINA_TZ)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _rates(row: dict[str, Any], days: int) -> dict[str, Any]:
    n = int(row["followups"])
    return {"days": days, "followups": n,
            "responded": row["responded"], "response_rate": _rate(row["responded"], n),
            "resolved": row["resolved"], "resolution_rate": _rate(row["resolved"], n),
            "satisfied": row["satisfied"], "satisfaction_rate": _rate(row["satisfied"], n)}


def dashboard(conn: Connection, reader: Principal, *, now: datetime | None = None,
              days: int = 30, top: int = 5) -> dict[str, Any]:
    """The dashboard for `reader` at `now` (default the database's now): see the module doc.
    InvalidInput (field `days` or `top`) when out of range."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_DAYS}", field="days")
    if not 1 <= top <= MAX_TOP:
        raise InvalidInput(f"top must be between 1 and {MAX_TOP}", field="top")
    if now is None:
        now = conn.scalar(text("SELECT now()"))
    elif now.tzinfo is None:
        now = now.replace(tzinfo=CHINA_TZ)
    assert now is not None
    visible, params = incident_visible(reader)
    args = {**params, "now": now, "day_start": day_start(now),
            "rates_from": now - timedelta(days=days), "open_statuses": list(OPEN_STATUSES),
            "top": top}
    row = dict(conn.execute(text(_COUNTS.format(visible=visible)), args).mappings().one())
    streets = [dict(r) for r in conn.execute(text(_TOP_STREETS.format(visible=visible)),
                                               args).mappings()]
    return {"as_of": now, "day_start": args["day_start"],
            "today": {k: row[k] for k in ("reported", "dispatched", "closed")},
            "open": {k: row[k] for k in ("open", "pending", "overdue", "joint", "supervised")},
            "rates": _rates(row, days), "top_streets": streets}
