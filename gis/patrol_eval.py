"""Patrol evaluation (考核 of 街巷长 and 小巷管家): 日巡 compliance, 周查 and 月评 scores with a
difficulty coefficient per street, problems found by a street's own chiefs and stewards vs
reported by others, the ranking and 月度优秀街巷长, and the map of uncovered streets.

Everything is computed set-based in one SQL statement per request (common table expressions
over streets, street_assignments, patrols, incidents and event_classes); only the list of
working days comes from Python (the work calendar). Definitions: docs/patrol-evaluation.md.
"""

from __future__ import annotations

import calendar as calmod
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Connection, text

from gis import catalog, patrol_settings
from gis.auth import Principal
from gis.errors import Forbidden, InvalidInput
from gis.features import GEOJSON_DECIMALS
from gis.scope import SCOPED_READERS, covers, sees_all
from gis.workcalendar import WorkCalendar, days_between

Period = Literal["day", "week", "month"]
PERIODS: tuple[str, ...] = ("day", "week", "month")
READERS = ("admin", *SCOPED_READERS)
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2099, 12, 31)  # what the system can hold


@dataclass(frozen=True)
class Window:
    """The evaluated period: [first, last] (dates, inclusive), the last day counted
    (`through` = last, or today when the period is still running) and its working days."""

    period: str
    first: date
    last: date
    through: date
    working_days: tuple[date, ...]

    def as_json(self) -> dict[str, Any]:
        return {"period": self.period, "from": self.first.isoformat(),
                "to": self.last.isoformat(), "through": self.through.isoformat(),
                "working_days": len(self.working_days),
                "dates": [d.isoformat() for d in self.working_days]}


@dataclass(frozen=True)
class EvalScope:
    """Which streets are evaluated together (the ranking set) and whose rows are shown.

    street_office: only streets of this street office (9 digits);
    codes: the caller's jurisdiction codes (None = the whole city);
    person_id: a street chief's own person: the ranking set is the street office(s) of
      their assignments (unless `street_office` is given) and only their rows are shown."""

    street_office: str | None
    codes: tuple[str, ...] | None
    person_id: int | None


def parse_day(value: str | None, field: str) -> date | None:
    """A YYYY-MM-DD date (None when not given); InvalidInput naming `field` otherwise."""
    if value is None or not value.strip():
        return None
    try:
        if not _DAY.fullmatch(value.strip()):
            raise ValueError(value)
        day = date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(f"{field} must be a date YYYY-MM-DD, not {value!r}",
                           field=field) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise InvalidInput(f"{field} must be between {FIRST_DAY} and {LAST_DAY}, not {day}",
                           field=field)
    return day


def beijing_today(conn: Connection, cal: WorkCalendar) -> date:
    """Today in the calendar's time zone (the database clock)."""
    now: datetime = conn.scalar(text("SELECT now()"))
    return now.astimezone(cal.tz).date()


def window(cal: WorkCalendar, period: str, day: date, today: date) -> Window:
    """The period (day, ISO week Monday–Sunday, calendar month) holding `day`, with its
    working days up to today (a period still running counts the days so far)."""
    if period not in PERIODS:
        raise InvalidInput(f"period must be one of {', '.join(PERIODS)}, not {period!r}",
                           field="period")
    if period == "day":
        first = last = day
    elif period == "week":
        first = day - timedelta(days=day.weekday())
        last = first + timedelta(days=6)
    else:
        first = day.replace(day=1)
        last = day.replace(day=calmod.monthrange(day.year, day.month)[1])
    through = min(last, today)
    days = tuple(first + timedelta(days=k) for k in range((through - first).days + 1))
    return Window(period, first, last, through, tuple(d for d in days if cal.is_workday(d)))


def scope_for(conn: Connection, user: Principal, street_office: str | None,
              win: Window, tz: str) -> EvalScope:
    """The evaluation scope of `user`: admins and city-wide readers see everything; scoped
    operators/viewers/planners their jurisdictions (Forbidden naming `street_office` for
    one outside them); a street chief (街巷长 or 小巷管家) only their own rows, ranked among
    the street office(s) of their streets. Other roles: Forbidden naming `role`."""
    if street_office is not None and (len(street_office) != 9 or not street_office.isdigit()):
        raise InvalidInput(f"street_office must be a 9-digit street office code, not "
                           f"{street_office!r}", field="street_office")
    if user.has_any(*READERS):
        if sees_all(user):
            return EvalScope(street_office, None, None)
        if street_office is not None and not covers(user, street_office, street_office[:6]):
            raise Forbidden(f"street office {street_office} is outside your scope "
                            f"({', '.join(user.scope_codes)})", field="street_office")
        return EvalScope(street_office, tuple(user.scope_codes), None)
    if user.has_any("street_chief"):
        if user.person_id is None:
            raise Forbidden("your login is not bound to a person (街巷长 or 小巷管家)",
                            field="person")
        if street_office is not None:
            p0, p1 = bounds(win, tz)
            mine = conn.scalar(text("""
                SELECT EXISTS (SELECT 1 FROM street_assignments a
                               JOIN streets s ON s.id = a.street_id
                               WHERE a.person_id = :p AND s.street_office_code = :so
                                 AND a.valid_from < :p1
                                 AND (a.valid_to IS NULL OR a.valid_to > :p0))
            """), {"p": user.person_id, "so": street_office, "p0": p0, "p1": p1})
            if not mine:
                raise Forbidden(f"you have no street in street office {street_office} in this "
                                "period", field="street_office")
        return EvalScope(street_office, None, user.person_id)
    raise Forbidden("the evaluation is for admins, operators, viewers, planners and (their own "
                    f"row) street chiefs; you have {', '.join(sorted(user.roles))}", field="role")


def bounds(win: Window, tz: str) -> tuple[datetime, datetime]:
    """[start of the first day, end of the last day counted) as instants in `tz`."""
    start, end = days_between(win.first, win.through, tz)
    return start, max(start, end)


# -- the SQL ---------------------------------------------------------------------------------

# The evaluated streets: in scope, with an assignment during the period.
_STREETS_IN_SCOPE = """
    (CAST(:so AS text) IS NULL OR s.street_office_code = :so)
    AND (CAST(:codes AS text[]) IS NULL OR s.district_code = ANY(CAST(:codes AS text[]))
         OR s.street_office_code = ANY(CAST(:codes AS text[])))
    AND (CAST(:me AS bigint) IS NULL OR CAST(:so AS text) IS NOT NULL
         OR s.street_office_code IN (
           SELECT s2.street_office_code FROM street_assignments a2
           JOIN streets s2 ON s2.id = a2.street_id
           WHERE a2.person_id = :me AND a2.valid_from < :p1
             AND (a2.valid_to IS NULL OR a2.valid_to > :p0)))
"""

_GROUP = "CASE WHEN a.role = 'steward' THEN 'steward' ELSE 'chief' END"

# Common table expressions shared by the ranking and the street map.
_CTES = f"""
WITH days AS (
  SELECT d AS day, (d::timestamp AT TIME ZONE :tz) AS t0,
         ((d + 1)::timestamp AT TIME ZONE :tz) AS t1
  FROM unnest(CAST(:days AS date[])) AS d),
ev AS (
  SELECT s.id, s.name, s.geom, s.street_office_code,
         ST_Length(ST_Transform(s.geom, :srid)) AS len_m
  FROM streets s
  WHERE {_STREETS_IN_SCOPE}
    AND EXISTS (SELECT 1 FROM street_assignments a WHERE a.street_id = s.id
                AND a.valid_from < :p1 AND (a.valid_to IS NULL OR a.valid_to > :p0))),
win AS (
  SELECT i.street_id, ec.kind, ec.major_code, count(*) AS n
  FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
  WHERE i.street_id IN (SELECT id FROM ev) AND i.status <> 'void'
    AND i.reported_at >= :w0 AND i.reported_at < :p1
  GROUP BY 1, 2, 3),
mix AS (
  SELECT street_id, sum(n) AS n, -sum((n / tot) * ln(n / tot)) AS ent
  FROM (SELECT street_id, n::float8 AS n,
               (sum(n) OVER (PARTITION BY street_id))::float8 AS tot FROM win) w
  GROUP BY street_id),
majors AS (
  SELECT count(*) AS m FROM (SELECT DISTINCT kind, major_code FROM event_classes
                             WHERE active) x),
raw AS (
  SELECT ev.id, ev.len_m, coalesce(mix.n, 0) AS window_incidents,
         coalesce(mix.n, 0) / nullif(ev.len_m / 1000.0, 0) AS rho,
         CASE WHEN majors.m > 1 THEN coalesce(mix.ent, 0) / ln(majors.m) ELSE 0 END AS h
  FROM ev LEFT JOIN mix ON mix.street_id = ev.id CROSS JOIN majors),
bars AS (SELECT avg(len_m) AS len_m, avg(rho) AS rho, avg(h) AS h FROM raw),
diff AS MATERIALIZED (
  SELECT raw.*,
         greatest(CAST(:dmin AS float8), least(CAST(:dmax AS float8), 1
           + :a * coalesce(raw.len_m / nullif(bars.len_m, 0) - 1, 0)
           + :b * coalesce(raw.rho / nullif(bars.rho, 0) - 1, 0)
           + :c * coalesce(raw.h - bars.h, 0))) AS d
  FROM raw CROSS JOIN bars),
ps AS (
  SELECT a.person_id, a.street_id, {_GROUP} AS grp,
         bool_or(a.role = 'street_chief') AS street_chief
  FROM street_assignments a JOIN ev ON ev.id = a.street_id
  WHERE a.valid_from < :p1 AND (a.valid_to IS NULL OR a.valid_to > :p0)
  GROUP BY 1, 2, 3),
req AS (
  SELECT DISTINCT a.person_id, a.street_id, {_GROUP} AS grp, days.day
  FROM street_assignments a JOIN ev ON ev.id = a.street_id
  JOIN days ON a.valid_from < days.t1 AND (a.valid_to IS NULL OR a.valid_to > days.t0)),
walked AS (
  SELECT p.person_id, p.street_id, (p.started_at AT TIME ZONE :tz)::date AS day,
         ST_Collect(p.track) AS tracks
  FROM patrols p
  WHERE p.started_at >= :p0 AND p.started_at < :p1 AND p.status <> 'abandoned'
    AND p.track IS NOT NULL AND p.street_id IN (SELECT id FROM ev)
  GROUP BY 1, 2, 3),
daily AS MATERIALIZED (
  SELECT req.person_id, req.street_id, req.grp, req.day,
         CASE WHEN w.tracks IS NULL THEN 0.0 ELSE coalesce(
           gridops_street_coverage(ev.geom, w.tracks, :radius, :srid), 0.0) END AS cov
  FROM req JOIN ev ON ev.id = req.street_id
  LEFT JOIN walked w ON w.person_id = req.person_id AND w.street_id = req.street_id
   AND w.day = req.day),
disc AS MATERIALIZED (
  SELECT i.street_id, count(*) AS total,
         count(*) FILTER (WHERE EXISTS (
           SELECT 1 FROM street_assignments a
           WHERE a.street_id = i.street_id AND a.person_id IN (u.person_id, pp.person_id)
             AND a.valid_from <= i.reported_at
             AND (a.valid_to IS NULL OR a.valid_to > i.reported_at))) AS found
  FROM incidents i
  LEFT JOIN users u ON u.id = i.created_by
  LEFT JOIN patrols pp ON pp.id = i.patrol_id
  WHERE i.street_id IN (SELECT id FROM ev) AND i.status <> 'void'
    AND i.reported_at >= :p0 AND i.reported_at < :p1
  GROUP BY i.street_id)
"""  # noqa: S608 (constant SQL fragments; values are bound)

_RANKING = _CTES + """,
pst AS MATERIALIZED (
  SELECT ps.person_id, ps.street_id, ps.grp, ps.street_chief,
         count(daily.day) AS required,
         count(daily.day) FILTER (WHERE daily.cov >= :threshold) AS compliant,
         coalesce(sum(daily.cov), 0) AS cov_sum
  FROM ps
  LEFT JOIN daily ON daily.person_id = ps.person_id AND daily.street_id = ps.street_id
   AND daily.grp = ps.grp
  GROUP BY ps.person_id, ps.street_id, ps.grp, ps.street_chief),
pq AS (
  SELECT pst.*, diff.d, ev.name AS street_name, ev.len_m,
         coalesce(disc.total, 0) AS total, coalesce(disc.found, 0) AS found,
         CASE WHEN required > 0 THEN compliant::float8 / required END AS compliance,
         CASE WHEN required > 0 THEN cov_sum / required END AS coverage,
         CASE WHEN coalesce(disc.total, 0) = 0 THEN 1.0
              ELSE disc.found::float8 / disc.total END AS discovery
  FROM pst JOIN diff ON diff.id = pst.street_id JOIN ev ON ev.id = pst.street_id
  LEFT JOIN disc ON disc.street_id = pst.street_id),
pq2 AS (
  SELECT pq.*, :wc * compliance + :wv * coverage + :wd * discovery AS q FROM pq),
per_person AS (
  SELECT person_id, grp,
         CASE WHEN grp = 'steward' THEN 'steward'
              WHEN bool_or(street_chief) THEN 'street_chief' ELSE 'alley_chief' END AS role,
         sum(required) AS required, sum(compliant) AS compliant,
         sum(compliant)::float8 / nullif(sum(required), 0) AS compliance,
         sum(cov_sum) / nullif(sum(required), 0) AS coverage,
         sum(found) AS found, sum(total - found) AS by_others,
         100 * sum(d * q) FILTER (WHERE q IS NOT NULL)
           / nullif(sum(d) FILTER (WHERE q IS NOT NULL), 0) AS score,
         jsonb_agg(jsonb_build_object(
           'street_id', street_id, 'name', street_name, 'length_m', round(len_m::numeric, 1),
           'difficulty', round(d::numeric, 4),
           'required_days', required, 'compliant_days', compliant,
           'compliance', round(compliance::numeric, 4),
           'coverage', round(coverage::numeric, 4),
           'found', found, 'by_others', total - found,
           'discovery', round(discovery::numeric, 4), 'q', round(q::numeric, 4))
           ORDER BY street_name, street_id) AS streets
  FROM pq2 GROUP BY person_id, grp),
ranked AS (
  SELECT r.*, p.name,
         CASE WHEN r.score IS NOT NULL THEN row_number() OVER (
           PARTITION BY r.grp ORDER BY round(r.score::numeric, 6) DESC NULLS LAST,
           round(r.compliance::numeric, 6) DESC NULLS LAST, p.name, r.person_id) END AS rank,
         count(r.score) OVER (PARTITION BY r.grp) AS ranked
  FROM per_person r JOIN people p ON p.id = r.person_id)
SELECT person_id, name, role, grp, streets, required, compliant,
       round(compliance::numeric, 4) AS compliance, round(coverage::numeric, 4) AS coverage,
       found, by_others, round(score::numeric, 2) AS score, rank,
       coalesce(rank <= greatest(1, floor(:top_share * ranked)) AND score >= :min_score,
                false) AS excellent
FROM ranked
WHERE CAST(:me AS bigint) IS NULL OR person_id = :me
ORDER BY grp = 'steward', rank NULLS LAST, name, person_id
"""  # noqa: S608 (constant SQL fragments; values are bound)

_STREET_MAP = _CTES + f""",
street_days AS (
  SELECT street_id, day, max(cov) AS cov FROM daily GROUP BY street_id, day),
per_street AS (
  SELECT street_id, count(*) AS required,
         count(*) FILTER (WHERE cov >= :threshold) AS compliant, avg(cov) AS coverage
  FROM street_days GROUP BY street_id),
names AS (
  SELECT ps.street_id,
         string_agg(p.name, '、' ORDER BY p.name) FILTER (WHERE ps.grp = 'chief') AS chief,
         string_agg(p.name, '、' ORDER BY p.name) FILTER (WHERE ps.grp = 'steward') AS stewards
  FROM ps JOIN people p ON p.id = ps.person_id GROUP BY ps.street_id),
shown AS (
  SELECT ev.*, diff.d, coalesce(per_street.required, 0) AS required,
         coalesce(per_street.compliant, 0) AS compliant, per_street.coverage,
         names.chief, names.stewards
  FROM ev JOIN diff ON diff.id = ev.id
  LEFT JOIN per_street ON per_street.street_id = ev.id
  LEFT JOIN names ON names.street_id = ev.id
  WHERE CAST(:me AS bigint) IS NULL
     OR ev.id IN (SELECT street_id FROM ps WHERE person_id = :me))
SELECT json_build_object('type', 'FeatureCollection', 'features', coalesce(json_agg(
  json_build_object(
    'type', 'Feature', 'id', id,
    'geometry', ST_AsGeoJSON(geom, {GEOJSON_DECIMALS})::json,
    'properties', json_build_object(
      'street_id', id, 'name', name, 'street_office_code', street_office_code,
      'chief', chief, 'stewards', stewards, 'length_m', round(len_m::numeric, 1),
      'required_days', required, 'compliant_days', compliant,
      'compliance', CASE WHEN required > 0 THEN round(compliant::numeric / required, 4) END,
      'coverage', round(coverage::numeric, 4),
      'difficulty', round(d::numeric, 4),
      'covered', required > 0 AND compliant = required,
      'state', CASE WHEN required = 0 THEN 'none' WHEN compliant = required THEN 'covered'
                    WHEN compliant = 0 THEN 'uncovered' ELSE 'partial' END))
  ORDER BY id), '[]'::json))
FROM shown
"""  # noqa: S608 (constant SQL fragments; values are bound)


def _params(win: Window, scope: EvalScope, config: dict[str, Any], tz: str,
            srid: int) -> dict[str, Any]:
    p0, p1 = bounds(win, tz)
    diff, score = config["difficulty"], config["score"]
    return {
        "tz": tz, "srid": srid, "days": list(win.working_days), "p0": p0, "p1": p1,
        "w0": p1 - timedelta(days=float(diff["window_days"])),
        "so": scope.street_office, "codes": None if scope.codes is None else list(scope.codes),
        "me": scope.person_id,
        "radius": float(config["coverage"]["radius_m"]),
        "threshold": float(config["coverage"]["daily_threshold"]),
        "a": float(diff["length_weight"]), "b": float(diff["density_weight"]),
        "c": float(diff["mix_weight"]), "dmin": float(diff["min"]), "dmax": float(diff["max"]),
        "wc": float(score["compliance_weight"]), "wv": float(score["coverage_weight"]),
        "wd": float(score["discovery_weight"]),
        "top_share": float(config["excellent"]["top_share"]),
        "min_score": float(config["excellent"]["min_score"]),
    }


def _prepare(conn: Connection, user: Principal, period: str, day: date | None,
             street_office: str | None, srid: int, today: date | None) -> tuple[Any, ...]:
    """The calendar, the period window, the caller's scope, the settings and the bound
    parameters of an evaluation query. JIT is off for the transaction: the coverage
    function's unknown cost inflates the estimates past the JIT threshold, and compiling
    costs seconds on a query that runs in well under one."""
    cal = catalog.current_calendar(conn)
    today = today or beijing_today(conn, cal)
    win = window(cal, period, day or today, today)
    scope = scope_for(conn, user, street_office, win, cal.timezone)
    config = patrol_settings.current(conn)
    conn.execute(text("SET LOCAL jit = off"))
    return cal, win, scope, config, _params(win, scope, config, cal.timezone, srid)


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def evaluate(conn: Connection, user: Principal, period: str, day: date | None = None, *,
             street_office: str | None = None, srid: int = 4548,
             today: date | None = None) -> dict[str, Any]:
    """The evaluation of the period holding `day` (default today): the settings used and one
    row per person and role group (街巷长 ranked together, 小巷管家 separately) with their
    streets, compliance, coverage, problems found / by others, score, rank and the
    excellent flag. Street chiefs get only their own rows."""
    cal, win, scope, config, params = _prepare(conn, user, period, day, street_office,
                                               srid, today)
    rows = conn.execute(text(_RANKING), params)
    out = []
    for r in rows.mappings():
        out.append({
            "person_id": r["person_id"], "name": r["name"], "role": r["role"],
            "streets": r["streets"], "required_days": int(r["required"] or 0),
            "compliant_days": int(r["compliant"] or 0),
            "compliance": _num(r["compliance"]), "coverage": _num(r["coverage"]),
            "found": int(r["found"] or 0), "by_others": int(r["by_others"] or 0),
            "score": _num(r["score"]), "rank": r["rank"], "excellent": bool(r["excellent"]),
        })
    return {"period": win.as_json(), "street_office": street_office,
            "timezone": cal.timezone, "settings": config, "rows": out,
            "street_offices": street_offices(conn, scope, win, cal.timezone)}


def street_map(conn: Connection, user: Principal, period: str, day: date | None = None, *,
               street_office: str | None = None, srid: int = 4548,
               today: date | None = None) -> dict[str, Any]:
    """The evaluated streets as a GeoJSON FeatureCollection (built by PostGIS) with the
    chief, compliance and coverage of the period (any assignee's patrol counts), the
    difficulty coefficient and `covered` (every required working day met the threshold).
    Street chiefs get only their own streets."""
    _, win, _, config, params = _prepare(conn, user, period, day, street_office, srid, today)
    collection = conn.scalar(text(_STREET_MAP), params)
    result: dict[str, Any] = dict(collection) if isinstance(collection, dict) else \
        json.loads(collection)
    result["period"] = win.as_json()
    result["threshold"] = config["coverage"]["daily_threshold"]
    return result


def offices_for(conn: Connection, user: Principal, period: str, day: date | None = None, *,
                today: date | None = None) -> list[dict[str, Any]]:
    """The street offices `user` may evaluate (with assigned streets in the period): code,
    name and the number of patrols in the period."""
    cal = catalog.current_calendar(conn)
    today = today or beijing_today(conn, cal)
    win = window(cal, period, day or today, today)
    return street_offices(conn, scope_for(conn, user, None, win, cal.timezone), win,
                          cal.timezone)


def street_offices(conn: Connection, scope: EvalScope, win: Window,
                   tz: str) -> list[dict[str, Any]]:
    """The street offices the caller may filter on (ignoring the current filter): code,
    name and the number of patrols in the period."""
    p0, p1 = bounds(win, tz)
    rows = conn.execute(text("""
        SELECT s.street_office_code AS code,
               (SELECT j.name FROM jurisdictions j WHERE j.level = 'street'
                  AND j.code = s.street_office_code ORDER BY j.valid_from DESC LIMIT 1) AS name,
               (SELECT count(*) FROM patrols p JOIN streets s3 ON s3.id = p.street_id
                WHERE s3.street_office_code = s.street_office_code
                  AND p.started_at >= :p0 AND p.started_at < :p1) AS patrols
        FROM (SELECT DISTINCT s.street_office_code FROM streets s
              WHERE s.street_office_code IS NOT NULL
                AND (CAST(:codes AS text[]) IS NULL OR s.district_code = ANY(CAST(:codes AS text[]))
                     OR s.street_office_code = ANY(CAST(:codes AS text[])))
                AND (CAST(:me AS bigint) IS NULL OR s.id IN (
                  SELECT a.street_id FROM street_assignments a WHERE a.person_id = :me))
                AND EXISTS (SELECT 1 FROM street_assignments a WHERE a.street_id = s.id
                            AND a.valid_from < :p1
                            AND (a.valid_to IS NULL OR a.valid_to > :p0))) s
        ORDER BY s.street_office_code
    """), {"codes": None if scope.codes is None else list(scope.codes), "me": scope.person_id,
           "p0": p0, "p1": p1})
    return [dict(r) for r in rows.mappings()]


CSV_COLUMNS = ("level", "rank", "person_id", "name", "role", "street_id", "street",
               "difficulty", "required_days", "compliant_days", "compliance", "coverage",
               "found", "by_others", "q", "score", "excellent")


def csv_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The evaluation as flat rows: one `person` row (totals) followed by one `street` row
    per street of that person."""
    out: list[dict[str, Any]] = []
    for row in result["rows"]:
        out.append({"level": "person", "rank": row["rank"], "person_id": row["person_id"],
                    "name": row["name"], "role": row["role"], "street_id": None,
                    "street": len(row["streets"]), "difficulty": None,
                    "required_days": row["required_days"],
                    "compliant_days": row["compliant_days"], "compliance": row["compliance"],
                    "coverage": row["coverage"], "found": row["found"],
                    "by_others": row["by_others"], "q": None, "score": row["score"],
                    "excellent": row["excellent"]})
        for s in row["streets"]:
            out.append({"level": "street", "rank": row["rank"], "person_id": row["person_id"],
                        "name": row["name"], "role": row["role"], "street_id": s["street_id"],
                        "street": s["name"], "difficulty": s["difficulty"],
                        "required_days": s["required_days"],
                        "compliant_days": s["compliant_days"], "compliance": s["compliance"],
                        "coverage": s["coverage"], "found": s["found"],
                        "by_others": s["by_others"], "q": s["q"], "score": None,
                        "excellent": None})
    return out


def difficulty(conn: Connection, user: Principal, day: date, *,
               street_office: str | None = None, srid: int = 4548,
               today: date | None = None) -> dict[int, dict[str, float]]:
    """street_id → {length_m, incidents, rho, h, d} for the month holding `day` (the
    components of the difficulty coefficient, for checks and the docs)."""
    *_, params = _prepare(conn, user, "month", day, street_office, srid, today)
    sql = _CTES + " SELECT id, len_m, window_incidents, rho, h, d FROM diff"  # noqa: S608
    rows = conn.execute(text(sql), params)
    return {int(r["id"]): {"length_m": float(r["len_m"]),
                           "incidents": float(r["window_incidents"]),
                           "rho": float(r["rho"] or 0), "h": float(r["h"]), "d": float(r["d"])}
            for r in rows.mappings()}
