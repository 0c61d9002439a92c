"""Evaluation (考核): case and dispatch indicators per department, team, street, grid or event
class, computed in one SQL statement over the incidents a reader may see; street offices'
ratings of departments (reverse evaluation, 反向考核); follow-up results (回访).

The window is [date_from, date_to) on `incidents.reported_at`; outcomes (closed, handled,
followed up, ...) are as of the query time. Definitions (docs/evaluation.md says the same):

- reported (上报): incidents reported in the window.
- registered (立案): status other than pending/void, or an `accept` case event.
- dispatched (派遣): at least one dispatch. closed (结案): status closed.
  closure_rate (结案率) = closed / registered.
- handled: at least one `feedback` event. on_time_handle_rate (按期处置率) = handled cases
  whose latest feedback is at or before the handle deadline in force at that moment /
  handled. on_time_close_rate (按期结案率) = closed cases with `closed_at` at or before the
  verify deadline in force at that moment / closed. The deadline in force at a moment is the
  `new` of the latest `extend` event of that stage at or before it, else the `old` of the
  first one after it, else `incidents.deadlines` (the current one); no deadline = on time.
- rework_rate (返工率) = handled cases with a `rework` event / handled.
  extension_rate (延期率) = registered cases with an `extend` event / registered.
- accurate_dispatch_rate (准确派遣率) = dispatches not `out_of_remit` / all dispatches.
- arrival_rate (报到率) = dispatches on scene within the whistle's `required_arrival_s`
  (1800 s without a whistle) / dispatches due to arrive: all except those cancelled before
  arrival and those still under way within their allowed time. median_arrival_s: median of
  on_scene_at − dispatched_at over the dispatches that arrived.
- response_rate / resolution_rate / satisfaction_rate (响应率/解决率/满意率): responded /
  resolved / satisfied-or-basically-satisfied follow-ups over incidents with a follow-up.
- by=department only: rating = mean score of `department_ratings` whose month starts in the
  window; performance = 100 × mean of the available rates among on_time_handle_rate,
  on_time_close_rate, accurate_dispatch_rate and arrival_rate; score = (1 − w) × performance
  + w × rating (w = the reverse-rating weight); score = performance without a rating (and
  rating without a performance).

Department and team groups go through the teams of an incident's dispatches (an incident
dispatched to two departments counts for both); their dispatch indicators count only their
own dispatches. Every rate is null when its denominator is 0.
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import Connection, text

from gis import events
from gis.audit import Actor, record
from gis.auth import Principal
from gis.errors import Conflict, Forbidden, InvalidInput, NotFound
from gis.features import CHINA_TZ
from gis.scope import SCOPED_READERS, any_of, incident_visible, sees_all

GroupBy = Literal["department", "street", "grid", "team", "event_class"]
GROUP_BYS: tuple[str, ...] = get_args(GroupBy)
Satisfaction = Literal["satisfied", "basically_satisfied", "dissatisfied"]
SATISFACTIONS: tuple[str, ...] = get_args(Satisfaction)
MAX_WINDOW_DAYS = 366
DEFAULT_ARRIVAL_S = 1800  # 报到 within 30 minutes unless the whistle says otherwise
MAX_TEXT = 2000
_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")

# Columns of a row, in order (the CSV header): the group's, then the indicators.
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "department": ("id", "key", "name"),
    "team": ("id", "key", "name", "department_id"),
    "street": ("key", "name"),
    "grid": ("key", "name"),
    "event_class": ("key", "kind", "code", "name"),
}
METRIC_COLUMNS: tuple[str, ...] = (
    "reported", "registered", "dispatched", "closed", "closure_rate",
    "handled", "handled_on_time", "on_time_handle_rate",
    "closed_on_time", "on_time_close_rate",
    "reworked", "rework_rate", "extended", "extension_rate",
    "dispatches", "accurate_dispatches", "accurate_dispatch_rate",
    "arrivals_due", "arrived_on_time", "arrival_rate", "median_arrival_s",
    "followups", "responded", "response_rate", "resolved", "resolution_rate",
    "satisfied", "satisfaction_rate",
)
SCORE_COLUMNS: tuple[str, ...] = ("ratings", "rating", "performance", "score")


def columns(by: str) -> tuple[str, ...]:
    """The columns of a stats row grouped `by` (also the CSV header)."""
    extra = SCORE_COLUMNS if by == "department" else ()
    return GROUP_COLUMNS[by] + METRIC_COLUMNS + extra


def _deadline_at(stage: str, moment: str) -> str:
    """SQL: the `stage` deadline of incident `w` in force at `moment` (see the module doc)."""
    ext = ("FROM case_events x WHERE x.incident_id = w.id AND x.action = 'extend' "
           f"AND x.data ->> 'stage' = '{stage}'")
    return (f"coalesce((SELECT CAST(x.data ->> 'new' AS timestamptz) {ext} "
            f"AND x.at <= {moment} ORDER BY x.at DESC, x.id DESC LIMIT 1), "
            f"(SELECT CAST(x.data ->> 'old' AS timestamptz) {ext} "
            f"AND x.at > {moment} ORDER BY x.at, x.id LIMIT 1), "
            f"CAST(w.deadlines ->> '{stage}' AS timestamptz), 'infinity')")


# Incidents in the window visible to the reader, and one row of facts per incident (their
# case events aggregated in one pass; deadlines rebuilt only where an extension happened).
_FACTS = f"""
    win AS (
        SELECT i.id, i.status, i.closed_at, i.deadlines, i.street_code, i.grid_code,
               i.event_class_id
        FROM incidents i
        WHERE i.reported_at >= :date_from AND i.reported_at < :date_to
          AND (CAST(:district AS text) IS NULL OR i.district_code = :district)
          AND ({{visible}})),
    ev AS (
        SELECT e.incident_id AS id,
               bool_or(e.action = 'accept') AS accepted,
               max(e.at) FILTER (WHERE e.action = 'feedback') AS feedback_at,
               bool_or(e.action = 'rework') AS reworked,
               bool_or(e.action = 'extend') AS extended
        FROM case_events e JOIN win w ON w.id = e.incident_id
        WHERE e.action IN ('accept', 'feedback', 'rework', 'extend')
        GROUP BY e.incident_id),
    facts AS (
        SELECT w.id,
               w.status NOT IN ('pending', 'void') OR coalesce(ev.accepted, false)
                 AS registered,
               EXISTS (SELECT 1 FROM dispatches d WHERE d.incident_id = w.id) AS dispatched,
               w.status = 'closed' AS closed,
               ev.feedback_at IS NOT NULL AS handled,
               ev.feedback_at <= CASE WHEN ev.extended
                   THEN {_deadline_at('handle', 'ev.feedback_at')}
                   ELSE coalesce(CAST(w.deadlines ->> 'handle' AS timestamptz), 'infinity')
                   END AS handled_on_time,
               w.status = 'closed' AND w.closed_at <= CASE WHEN ev.extended
                   THEN {_deadline_at('verify', 'w.closed_at')}
                   ELSE coalesce(CAST(w.deadlines ->> 'verify' AS timestamptz), 'infinity')
                   END AS closed_on_time,
               coalesce(ev.reworked, false) AS reworked,
               coalesce(ev.extended, false) AS extended,
               f.incident_id IS NOT NULL AS followed_up,
               f.responded, f.resolved,
               f.satisfaction IN ('satisfied', 'basically_satisfied') AS satisfied
        FROM win w
        LEFT JOIN ev ON ev.id = w.id
        LEFT JOIN incident_followups f ON f.incident_id = w.id)"""  # noqa: S608 - constants

# Per grouping: which incidents belong to which group (`members`), which dispatches count
# for it (`gdisp`), and the group's labels (over `k.gid`).
_DISPATCH_COLS = ("d.out_of_remit, d.status, d.dispatched_at, d.on_scene_at, d.cancelled_at, "
                  f"coalesce(wh.required_arrival_s, {DEFAULT_ARRIVAL_S}) AS required_s")
_DISPATCHES = ("FROM dispatches d JOIN win w ON w.id = d.incident_id "
               "JOIN teams t ON t.id = d.team_id LEFT JOIN whistles wh ON wh.id = d.whistle_id")


def _by_incident(gid: str) -> dict[str, str]:
    """Groups by a column of the incident; no value = the group '' (null in the output)."""
    key = f"coalesce(CAST({gid} AS text), '')"
    return {"members": f"SELECT {key} AS gid, w.id FROM win w",  # noqa: S608
            "gdisp": f"SELECT {key} AS gid, {_DISPATCH_COLS} {_DISPATCHES}"}


def _by_dispatch(gid: str) -> dict[str, str]:
    return {"members": f"SELECT DISTINCT CAST({gid} AS text) AS gid, w.id {_DISPATCHES}",
            "gdisp": f"SELECT CAST({gid} AS text) AS gid, {_DISPATCH_COLS} {_DISPATCHES}"}


_GROUPS: dict[str, dict[str, str]] = {
    "department": {**_by_dispatch("t.department_id"),
                   "labels": "dp.id, dp.code AS key, dp.name",
                   "join": "LEFT JOIN departments dp ON CAST(dp.id AS text) = k.gid"},
    "team": {**_by_dispatch("t.id"),
             "labels": "tm.id, tm.code AS key, tm.name, tm.department_id",
             "join": "LEFT JOIN teams tm ON CAST(tm.id AS text) = k.gid"},
    "street": {**_by_incident("w.street_code"),
               "labels": "nullif(k.gid, '') AS key, (SELECT j.name FROM jurisdictions j "
                         "WHERE j.level = 'street' AND j.code = k.gid "
                         "ORDER BY j.valid_from DESC LIMIT 1) AS name",
               "join": ""},
    "grid": {**_by_incident("w.grid_code"),
             "labels": "nullif(k.gid, '') AS key, (SELECT g.name FROM grids g WHERE g.code = k.gid "
                       "ORDER BY g.valid_from DESC LIMIT 1) AS name",
             "join": ""},
    "event_class": {**_by_incident("w.event_class_id"),
                    "labels": "ec.kind || ':' || ec.code AS key, ec.kind, ec.code, ec.name",
                    "join": "LEFT JOIN event_classes ec ON CAST(ec.id AS text) = k.gid"},
}


def _rate(num: str, den: str) -> str:
    return f"CASE WHEN {den} > 0 THEN CAST({num} AS float8) / {den} END"


_COUNTS = ("reported", "registered", "dispatched", "closed", "handled", "handled_on_time",
           "closed_on_time", "reworked", "extended", "dispatches", "accurate_dispatches",
           "arrivals_due", "arrived_on_time", "followups", "responded", "resolved",
           "satisfied")
_RATES = {
    "closure_rate": ("closed", "registered"),
    "on_time_handle_rate": ("handled_on_time", "handled"),
    "on_time_close_rate": ("closed_on_time", "closed"),
    "rework_rate": ("reworked", "handled"),
    "extension_rate": ("extended", "registered"),
    "accurate_dispatch_rate": ("accurate_dispatches", "dispatches"),
    "arrival_rate": ("arrived_on_time", "arrivals_due"),
    "response_rate": ("responded", "followups"),
    "resolution_rate": ("resolved", "followups"),
    "satisfaction_rate": ("satisfied", "followups"),
}
_DISPATCH_COUNTS = ("dispatches", "accurate_dispatches", "arrivals_due", "arrived_on_time")
PERFORMANCE_RATES = ("on_time_handle_rate", "on_time_close_rate", "accurate_dispatch_rate",
                     "arrival_rate")


def _stats_sql(by: str, visible: str, ratings: str) -> str:
    group = _GROUPS[by]
    counts = ", ".join(f"coalesce({'dm' if c in _DISPATCH_COUNTS else 'im'}.{c}, 0) AS {c}"
                       for c in _COUNTS)
    rates = ", ".join(f"{_rate(num, den)} AS {name}" for name, (num, den) in _RATES.items())
    perf = ", ".join(PERFORMANCE_RATES)
    return f"""
    WITH {_FACTS.replace("{visible}", visible)},
    members AS ({group["members"]}),
    gdisp AS ({group["gdisp"]}),
    im AS (
        SELECT m.gid, count(*) AS reported,
               count(*) FILTER (WHERE f.registered) AS registered,
               count(*) FILTER (WHERE f.dispatched) AS dispatched,
               count(*) FILTER (WHERE f.closed) AS closed,
               count(*) FILTER (WHERE f.handled) AS handled,
               count(*) FILTER (WHERE f.handled AND f.handled_on_time) AS handled_on_time,
               count(*) FILTER (WHERE f.closed_on_time) AS closed_on_time,
               count(*) FILTER (WHERE f.handled AND f.reworked) AS reworked,
               count(*) FILTER (WHERE f.registered AND f.extended) AS extended,
               count(*) FILTER (WHERE f.followed_up) AS followups,
               count(*) FILTER (WHERE f.responded) AS responded,
               count(*) FILTER (WHERE f.resolved) AS resolved,
               count(*) FILTER (WHERE f.satisfied) AS satisfied
        FROM members m JOIN facts f ON f.id = m.id
        GROUP BY m.gid),
    dm AS (
        SELECT g.gid, count(*) AS dispatches,
               count(*) FILTER (WHERE NOT g.out_of_remit) AS accurate_dispatches,
               count(*) FILTER (WHERE g.due) AS arrivals_due,
               count(*) FILTER (WHERE g.due AND g.on_scene_at IS NOT NULL
                                  AND g.on_scene_at - g.dispatched_at
                                      <= g.required_s * interval '1 second')
                 AS arrived_on_time,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY CAST(extract(epoch FROM
                   g.on_scene_at - g.dispatched_at) AS float8)) AS median_arrival_s
        FROM (SELECT gd.*,
                     NOT (gd.on_scene_at IS NULL AND (
                          gd.cancelled_at IS NOT NULL
                          OR (gd.status IN ('dispatched', 'accepted', 'en_route')
                              AND now() < gd.dispatched_at
                                          + gd.required_s * interval '1 second'))) AS due
              FROM gdisp gd) g
        GROUP BY g.gid),
    rt AS ({ratings}),
    k AS (SELECT gid FROM im UNION SELECT gid FROM rt),
    c AS (
        SELECT k.gid, {counts}, dm.median_arrival_s,
               coalesce(rt.ratings, 0) AS ratings, rt.rating
        FROM k
        LEFT JOIN im ON im.gid = k.gid
        LEFT JOIN dm ON dm.gid = k.gid
        LEFT JOIN rt ON rt.gid = k.gid),
    r AS (SELECT c.*, {rates} FROM c),
    p AS (SELECT r.*, 100 * (SELECT avg(x) FROM unnest(ARRAY[{perf}]) AS x) AS performance
          FROM r)
    SELECT {group["labels"]}, k.*, coalesce(coalesce(
               (1 - CAST(:weight AS float8)) * k.performance
               + CAST(:weight AS float8) * k.rating, k.performance), k.rating) AS score
    FROM p AS k {group["join"]}
    ORDER BY key NULLS LAST, k.gid
    """  # noqa: S608 - constant fragments chosen by `by`; values are bound


def _rating_visible(p: Principal) -> tuple[str, dict[str, Any]]:
    """A boolean SQL expression over department_ratings aliased `r`: the ratings `p` may
    read (admins and city-wide readers all; scoped readers those of streets in their
    scope; a dispatcher those of their department)."""
    if sees_all(p):
        return "true", {}
    terms: list[str] = []
    params: dict[str, Any] = {}
    if p.has_any(*SCOPED_READERS):
        params["rating_codes"] = list(p.scope_codes)
        terms.append("r.street_code = ANY(:rating_codes) "
                     "OR left(r.street_code, 6) = ANY(:rating_codes)")
    if p.has_any("dispatcher") and p.department_id is not None:
        params["rating_department"] = p.department_id
        terms.append("r.department_id = :rating_department")
    return any_of(terms), params


_NO_RATINGS = ("SELECT CAST(NULL AS text) AS gid, CAST(NULL AS bigint) AS ratings, "
               "CAST(NULL AS float8) AS rating WHERE false")
_RATINGS = """
    SELECT CAST(r.department_id AS text) AS gid, count(*) AS ratings, avg(r.score) AS rating
    FROM department_ratings r
    WHERE CAST(r.period AS timestamp) AT TIME ZONE 'Asia/Shanghai' >= :date_from
      AND CAST(r.period AS timestamp) AT TIME ZONE 'Asia/Shanghai' < :date_to
      AND (CAST(:district AS text) IS NULL OR left(r.street_code, 6) = :district)
      AND ({visible})
    GROUP BY r.department_id"""


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=CHINA_TZ)


def check_window(date_from: datetime, date_to: datetime) -> tuple[datetime, datetime]:
    """The window as aware datetimes (naive = Beijing); InvalidInput when `from` is not
    before `to` or the window is longer than 366 days."""
    start, end = _aware(date_from), _aware(date_to)
    if start >= end:
        raise InvalidInput(f"to ({end.isoformat()}) must be after from ({start.isoformat()})",
                           field="to")
    if end - start > timedelta(days=MAX_WINDOW_DAYS):
        raise InvalidInput(f"the window from {start.isoformat()} to {end.isoformat()} is "
                           f"longer than {MAX_WINDOW_DAYS} days; ask for a shorter one",
                           field="to")
    return start, end


def stats(conn: Connection, reader: Principal, by: str, date_from: datetime,
          date_to: datetime, district: str | None = None, *,
          weight: float = 0.3) -> list[dict[str, Any]]:
    """Indicator rows per group `by` (department, street, grid, team, event_class) over the
    incidents reported in [date_from, date_to) that `reader` may see, optionally in one
    district; by=department adds the reverse-evaluation rating and the score with rating
    weight `weight` (0..1). Definitions: the module docstring and docs/evaluation.md."""
    if by not in GROUP_BYS:
        raise InvalidInput(f"by must be one of {', '.join(GROUP_BYS)}; got {by!r}", field="by")
    if not (0.0 <= weight <= 1.0):
        raise InvalidInput(f"the rating weight must be within 0..1; got {weight}",
                           field="weight")
    if district is not None and not re.fullmatch(r"[0-9]{6}", district):
        raise InvalidInput(f"district must be a 6-digit district code; got {district!r}",
                           field="district")
    start, end = check_window(date_from, date_to)
    visible, params = incident_visible(reader)
    ratings, rating_params = (_rating_visible(reader) if by == "department"
                              else (_NO_RATINGS, {}))
    if by == "department":
        ratings = _RATINGS.replace("{visible}", ratings)
    sql = _stats_sql(by, visible, ratings)
    rows = conn.execute(text(sql), {**params, **rating_params, "date_from": start,
                                    "date_to": end, "district": district,
                                    "weight": weight}).mappings().all()
    wanted = columns(by)
    return [{name: row[name] for name in wanted} for row in rows]


# -- reverse evaluation: street offices rate departments ---------------------------------


def _check_text(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise InvalidInput(f"{field} contains control characters", field=field)
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise InvalidInput(f"{field} is {len(value)} characters; at most {MAX_TEXT}",
                           field=field)
    return value or None


def parse_period(period: str, field: str = "period") -> date:
    """A rating month `YYYY-MM` as its first day; not after the current month (Beijing)."""
    match = _PERIOD.fullmatch(period.strip()) if isinstance(period, str) else None
    if match is None or int(match.group(1)) < 1900:
        raise InvalidInput(f"{field} must be a month as YYYY-MM, e.g. 2025-03; got {period!r}",
                           field=field)
    month = date(int(match.group(1)), int(match.group(2)), 1)
    today = datetime.now(CHINA_TZ).date()
    if month > today.replace(day=1):
        raise InvalidInput(f"{field} {period} is in the future", field=field)
    return month


def _may_rate(reader: Principal, street_code: str) -> bool:
    if reader.has_any("admin"):
        return True
    return reader.has_any("operator") and (
        reader.city_wide or street_code in reader.scope_codes
        or street_code[:6] in reader.scope_codes)


_RATING_COLS = ("r.id, r.department_id, r.street_code, to_char(r.period, 'YYYY-MM') AS period, "
                "r.score, r.comment, r.rated_by, r.rated_at")


def rate_department(conn: Connection, department_id: int, street_code: str, period: str,
                    score: float, comment: str | None, by: Actor,
                    reader: Principal) -> dict[str, Any]:
    """A street office's rating (0..100) of a department for a month (反向考核): admins, or
    operators whose scope includes the street or its district. One rating per (department,
    street, month): a second one replaces the first. Audited; the caller commits. The row
    has `created` (False when it replaced an earlier rating)."""
    if not reader.has_any("admin", "operator"):
        raise Forbidden("rating departments needs the role admin or operator", field="role")
    if not re.fullmatch(r"[0-9]{9}", street_code or ""):
        raise InvalidInput(f"street_code must be a 9-digit street code; got {street_code!r}",
                           field="street_code")
    month = parse_period(period)
    if not (isinstance(score, int | float) and math.isfinite(score) and 0 <= score <= 100):
        raise InvalidInput(f"score must be a number from 0 to 100; got {score!r}",
                           field="score")
    note = _check_text(comment, "comment")
    if not conn.scalar(text("SELECT 1 FROM departments WHERE id = :id"), {"id": department_id}):
        raise NotFound(f"no department with id {department_id}", field="department_id")
    if not conn.scalar(text("SELECT 1 FROM jurisdictions WHERE level = 'street' "
                            "AND code = :c"), {"c": street_code}):
        raise InvalidInput(f"no street (街道) with code {street_code}", field="street_code")
    if not _may_rate(reader, street_code):
        raise Forbidden(f"street {street_code} is outside your scope "
                        f"({', '.join(reader.scope_codes)})", field="street_code")
    key = {"d": department_id, "s": street_code, "p": month}
    before = conn.execute(text(f"""
        SELECT {_RATING_COLS} FROM department_ratings r
        WHERE r.department_id = :d AND r.street_code = :s AND r.period = :p FOR UPDATE
    """), key).mappings().one_or_none()  # noqa: S608 - constant column list
    row = conn.execute(text(f"""
        WITH up AS (
            INSERT INTO department_ratings AS r (department_id, street_code, period, score,
                                                 comment, rated_by)
            VALUES (:d, :s, :p, :score, :comment, :user_id)
            ON CONFLICT (department_id, street_code, period) DO UPDATE
              SET score = EXCLUDED.score, comment = EXCLUDED.comment,
                  rated_by = EXCLUDED.rated_by, rated_at = now()
            RETURNING r.*, (r.xmax = 0) AS created)
        SELECT {_RATING_COLS}, r.created FROM up r
    """), {**key, "score": float(score), "comment": note,  # noqa: S608
           "user_id": by.user_id}).mappings().one()
    result = dict(row)
    record(conn, by, action="department.rate", object_type="department_rating",
           object_id=str(result["id"]), before=None if before is None else dict(before),
           after={k: v for k, v in result.items() if k != "created"},
           district_code=street_code[:6])
    events.emit(conn, "department.rated", [street_code[:6], street_code],
                department_id=department_id, department_ids=[department_id],
                street_code=street_code, period=month)
    return result


def list_ratings(conn: Connection, reader: Principal, department_id: int) -> dict[str, Any]:
    """A department's ratings that `reader` may read (newest month first) with their mean;
    NotFound for a missing department, or a dispatcher's other department."""
    dept = conn.execute(text("SELECT id, code, name FROM departments WHERE id = :id"),
                        {"id": department_id}).mappings().one_or_none()
    other_department = (reader.has_any("dispatcher") and reader.department_id != department_id
                        and not reader.has_any("admin", *SCOPED_READERS))
    if dept is None or other_department:
        raise NotFound(f"no department with id {department_id}", field="department_id")
    visible, params = _rating_visible(reader)
    rows = conn.execute(text(f"""
        SELECT {_RATING_COLS} FROM department_ratings r
        WHERE r.department_id = :d AND ({visible})
        ORDER BY r.period DESC, r.street_code
    """), {**params, "d": department_id}).mappings().all()  # noqa: S608
    ratings = [dict(r) for r in rows]
    mean = sum(r["score"] for r in ratings) / len(ratings) if ratings else None
    return {"department": dict(dept), "ratings": ratings, "average": mean}


# -- follow-ups (回访) --------------------------------------------------------------------


_FOLLOWUP_COLS = ("f.incident_id, f.at, f.responded, f.resolved, f.satisfaction, f.note, "
                  "f.recorded_by")


def record_followup(conn: Connection, incident_id: int, responded: bool, resolved: bool,
                    satisfaction: str, note: str | None, by: Actor,
                    reader: Principal) -> dict[str, Any]:
    """Record the follow-up call (回访) of a closed incident: responded?, resolved?,
    satisfaction (satisfied, basically_satisfied, dissatisfied). Operators (in scope) and
    admins; NotFound outside the scope, Conflict unless the case is closed; a second call
    replaces the first. Audited; the caller commits. The row has `created`."""
    if not reader.has_any("admin", "operator"):
        raise Forbidden("recording follow-ups needs the role admin or operator", field="role")
    if satisfaction not in SATISFACTIONS:
        raise InvalidInput(f"satisfaction must be one of {', '.join(SATISFACTIONS)}; got "
                           f"{satisfaction!r}", field="satisfaction")
    if not isinstance(responded, bool) or not isinstance(resolved, bool):
        raise InvalidInput("responded and resolved must be true or false",
                           field="responded" if not isinstance(responded, bool) else "resolved")
    text_note = _check_text(note, "note")
    visible, params = incident_visible(reader)
    case = conn.execute(text(f"""
        SELECT i.id, i.status, i.district_code, i.street_code,
               ARRAY(SELECT jj ->> 'code' FROM jsonb_array_elements(
                   coalesce(i.joint -> 'jurisdictions', '[]'::jsonb)) AS jj) AS joint_codes
        FROM incidents i WHERE i.id = :id AND ({visible}) FOR UPDATE OF i
    """), {**params, "id": incident_id}).one_or_none()  # noqa: S608
    if case is None:
        raise NotFound(f"no incident with id {incident_id}", field="incident_id")
    if case.status != "closed":
        raise Conflict(f"incident {incident_id} is {case.status}; a follow-up (回访) is "
                       "recorded once the case is closed", field="incident_id")
    before = conn.execute(text(f"SELECT {_FOLLOWUP_COLS} FROM incident_followups f "  # noqa: S608
                               "WHERE f.incident_id = :id"),
                          {"id": incident_id}).mappings().one_or_none()
    row = conn.execute(text(f"""
        WITH up AS (
            INSERT INTO incident_followups AS f (incident_id, responded, resolved,
                                                 satisfaction, note, recorded_by)
            VALUES (:id, :responded, :resolved, :satisfaction, :note, :user_id)
            ON CONFLICT (incident_id) DO UPDATE
              SET responded = EXCLUDED.responded, resolved = EXCLUDED.resolved,
                  satisfaction = EXCLUDED.satisfaction, note = EXCLUDED.note,
                  recorded_by = EXCLUDED.recorded_by, at = now()
            RETURNING f.*, (f.xmax = 0) AS created)
        SELECT {_FOLLOWUP_COLS}, f.created FROM up f
    """), {"id": incident_id, "responded": responded, "resolved": resolved,  # noqa: S608
           "satisfaction": satisfaction, "note": text_note,
           "user_id": by.user_id}).mappings().one()
    result = dict(row)
    record(conn, by, action="incident.followup", object_type="incident",
           object_id=str(incident_id), before=None if before is None else dict(before),
           after={k: v for k, v in result.items() if k != "created"},
           district_code=case.district_code)
    events.emit_incident(conn, "incident.followup", incident_id)
    return result
