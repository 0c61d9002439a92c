"""Demo only: a synthetic patrol history (日巡) for the 街巷长 and 小巷管家 of some street
offices, so the work logs and the evaluation (周查/月评) show real-looking data.

For each working day (work calendar) of the last N, each person walks most of their
assigned streets: fixes every ~5 s at walking speed along the street with a few metres of
noise, a few poor-accuracy fixes and the odd spike (so the cleaning has work to do); some
street-days are skipped or only half walked, more so for the less diligent (a per-person
trait). Each patrol ticks the 十有十无 checklist; a few items are not ok, with a note, and
most of those are reported as problems (incidents with the patrol's id, source street_chief
or steward). Deterministic from the seed; everything is written set-based (INSERT … SELECT
with generate_series and ST_LineInterpolatePoint) and labelled synthetic (patrol summary
{"synthetic": true}, idempotency keys `demo-patrol:…`). Patrols are written as ended (one
active patrol per person is a schema rule). Running it again adds nothing already there.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, text

from gis import audit, catalog, patrol_settings
from gis.errors import InvalidInput

DEFAULT_STREET_OFFICES = ("110102020", "110106002")  # 广安门外 (西城), 太平桥 (丰台)
WALK_MPS = 1.3
FIX_INTERVAL_S = 5.0
MAX_DAYS = 366

# checklist item → (note when not ok, event class reported for it, or None)
PROBLEMS: dict[str, tuple[str, str | None]] = {
    "no_illegal_building": ("院墙外新搭彩钢棚", "0106"),
    "no_wall_openings": ("临街住宅开墙打洞改作商铺", "0114"),
    "no_disorderly_parking": ("机动车占用人行道停放", "0504"),
    "no_road_occupation": ("商户占道摆放货架", "0501"),
    "no_loose_wires": ("楼间私拉电线飞线充电", "0606"),
    "no_facade_damage": ("外墙瓷砖脱落", "0608"),
    "no_illegal_signs": ("未经审批设置门头牌匾", "0202"),
    "no_road_damage": ("路面坑槽约半平方米", "0401"),
    "no_illegal_trading": ("店外经营占用步道", "0503"),
    "no_piled_materials": ("楼道口堆放装修垃圾", "0109"),
    "has_public_sign": ("公示牌褪色，电话看不清", None),
    "has_greenery": ("树池缺株", None),
    "has_facilities": ("垃圾桶破损", None),
}


def _u(*parts: str) -> str:
    """SQL for a uniform number in [0, 1) hashed from the seed (:seed) and `parts`
    (SQL expressions): the same inputs give the same number, in any order of evaluation."""
    return (f"((hashtextextended(concat_ws(':', {', '.join(parts)}), :seed) & 2147483647)"
            "::float8 / 2147483648.0)")


def working_days(cal: Any, days: int, until: date) -> list[date]:
    """The last `days` working days up to `until` (inclusive), oldest first."""
    out: list[date] = []
    day = until
    while len(out) < days and (until - day).days <= 4 * days + 30:
        if cal.is_workday(day):
            out.append(day)
        day -= timedelta(days=1)
    return sorted(out)


_PARTS = """
CREATE TEMP TABLE demo_parts ON COMMIT DROP AS
WITH parts AS (
  SELECT s.id AS street_id, d.path[1] AS k, d.geom AS part, ST_Length(d.geom) AS len
  FROM streets s, ST_Dump(ST_Multi(ST_LineMerge(ST_Transform(s.geom, :srid)))) d
  WHERE s.street_office_code = ANY(CAST(:offices AS text[]))),
gaps AS (
  SELECT parts.*, coalesce(ST_Distance(ST_StartPoint(part),
           lag(ST_EndPoint(part)) OVER (PARTITION BY street_id ORDER BY k)), 0) AS gap
  FROM parts)
SELECT street_id, k, part, len,
       sum(len) OVER w - len AS cum0,          -- street metres walked before this part
       sum(gap) OVER w AS cum_gap,             -- metres walked between parts so far
       greatest(1, ceil(len / (:speed * :interval)))::int AS n
FROM gaps WINDOW w AS (PARTITION BY street_id ORDER BY k)
"""

_PLAN = f"""
CREATE TEMP TABLE demo_plan ON COMMIT DROP AS
WITH days AS (
  SELECT d AS day, (d::timestamp AT TIME ZONE :tz) AS t0
  FROM unnest(CAST(:days AS date[])) AS d),
pairs AS (
  SELECT DISTINCT ON (a.person_id, a.street_id, days.day)
         a.person_id, a.street_id, a.role, days.day, days.t0, s.district_code
  FROM street_assignments a JOIN streets s ON s.id = a.street_id
  JOIN days ON a.valid_from < days.t0 + interval '1 day'
   AND (a.valid_to IS NULL OR a.valid_to > days.t0)
  WHERE s.street_office_code = ANY(CAST(:offices AS text[]))
  ORDER BY a.person_id, a.street_id, days.day, a.valid_from DESC),
streets_len AS (
  SELECT street_id, sum(len) AS len, max(cum_gap) AS gaps, count(*) AS parts
  FROM demo_parts GROUP BY street_id),
rolled AS (
  SELECT pairs.*, sl.len, sl.gaps, sl.parts,
         {_u("'lazy'", "pairs.person_id")} AS lazy,
         {_u("'skip'", "pairs.person_id", "pairs.street_id", "pairs.day")} AS u_skip,
         {_u("'half'", "pairs.person_id", "pairs.street_id", "pairs.day")} AS u_half,
         {_u("'frac'", "pairs.person_id", "pairs.street_id", "pairs.day")} AS u_frac,
         {_u("'order'", "pairs.person_id", "pairs.street_id", "pairs.day")} AS u_order,
         {_u("'start'", "pairs.person_id", "pairs.day")} AS u_start
  FROM pairs JOIN streets_len sl ON sl.street_id = pairs.street_id),
decided AS (
  SELECT rolled.*,
         u_skip < 0.02 + 0.3 * lazy * lazy AS skip,
         CASE WHEN u_half < 0.03 + 0.15 * lazy THEN 0.3 + 0.35 * u_frac ELSE 1.0 END AS share
  FROM rolled),
timed AS (
  SELECT decided.*, share * len AS walk_len,
         (share * len + gaps) / :speed + 2 * parts AS duration_s
  FROM decided WHERE NOT skip)
SELECT timed.*,
       'demo-patrol:' || :seed || ':' || person_id || ':' || street_id || ':' || day AS key,
       t0 + interval '8 hours 30 minutes' + make_interval(secs => u_start * 2400
         + coalesce(sum(duration_s + 600) OVER (
             PARTITION BY person_id, day ORDER BY u_order, street_id
             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)) AS started_at
FROM timed
"""  # noqa: S608 (constant SQL fragments; values are bound)

_INSERT_PATROLS = """
WITH ins AS (
  INSERT INTO patrols (idempotency_key, person_id, street_id, started_at, ended_at, status,
                       district_code, user_id, summary)
  SELECT key, person_id, street_id, started_at,
         started_at + make_interval(secs => duration_s), 'ended', district_code,
         (SELECT min(u.id) FROM users u WHERE u.person_id = demo_plan.person_id),
         jsonb_build_object('synthetic', true, 'source', 'gridops demo patrols',
                            'seed', CAST(:seed AS bigint), 'walked_share', round(share::numeric, 3))
  FROM demo_plan
  WHERE started_at + make_interval(secs => duration_s) <= now()
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id, idempotency_key)
INSERT INTO demo_new (patrol_id, key) SELECT id, idempotency_key FROM ins
"""

_POINTS = f"""
INSERT INTO patrol_points (patrol_id, at, geom, accuracy_m, kept, district_code, received_at)
SELECT patrol_id, at, ST_Transform(ST_SetSRID(ST_Translate(pt, dx, dy), :srid), 4326),
       accuracy, true, district_code, at + interval '20 seconds'
FROM (
  SELECT n.patrol_id, pl.district_code,
         pl.started_at + make_interval(secs => (pp.cum0 + pp.cum_gap + g.i * pp.len / pp.n)
                                               / :speed + 2 * pp.k) AS at,
         ST_LineInterpolatePoint(pp.part, g.i::float8 / pp.n) AS pt,
         {_u("n.key", "pp.k", "g.i", "'x'")} AS ux,
         {_u("n.key", "pp.k", "g.i", "'y'")} AS uy,
         {_u("n.key", "pp.k", "g.i", "'acc'")} AS ua,
         {_u("n.key", "pp.k", "g.i", "'spike'")} AS us,
         {_u("n.key", "pp.k", "g.i", "'dir'")} AS ud
  FROM demo_new n
  JOIN demo_plan pl ON pl.key = n.key
  JOIN demo_parts pp ON pp.street_id = pl.street_id
  CROSS JOIN LATERAL generate_series(0, pp.n) AS g(i)
  WHERE pp.cum0 + g.i * pp.len / pp.n <= pl.walk_len + 0.01) f
CROSS JOIN LATERAL (SELECT
  CASE WHEN us < 0.004 THEN 150 + 100 * ux        -- a spike: 150–250 m off
       WHEN ua < 0.03 THEN 20 + 30 * ux           -- a poor fix, 20–50 m off
       ELSE 8 * (ux - 0.5) END AS r) AS off       -- a few metres of noise
CROSS JOIN LATERAL (SELECT
  CASE WHEN us < 0.004 OR ua < 0.03 THEN off.r * cos(2 * pi() * ud) ELSE off.r END AS dx,
  CASE WHEN us < 0.004 OR ua < 0.03 THEN off.r * sin(2 * pi() * ud)
       ELSE 8 * (uy - 0.5) END AS dy,
  CASE WHEN ua < 0.03 THEN round((60 + 90 * uy)::numeric, 1)
       ELSE round((4 + 11 * ud)::numeric, 1) END::real AS accuracy) AS noise
"""  # noqa: S608 (constant SQL fragments; values are bound)

_CLEAN_ACCURACY = """
UPDATE patrol_points pp SET kept = false, drop_reason = 'accuracy'
FROM demo_new n WHERE pp.patrol_id = n.patrol_id AND pp.accuracy_m > :max_accuracy
"""

# A spike: too fast from the previous accuracy-kept fix and to the next (or to its only
# neighbour).
_CLEAN_SPEED = """
WITH v AS (
  SELECT patrol_id, at,
         ST_DistanceSphere(geom, lag(geom) OVER w)
           / nullif(extract(epoch FROM at - lag(at) OVER w), 0) AS v_prev,
         ST_DistanceSphere(geom, lead(geom) OVER w)
           / nullif(extract(epoch FROM lead(at) OVER w - at), 0) AS v_next
  FROM patrol_points
  WHERE kept AND patrol_id IN (SELECT patrol_id FROM demo_new)
  WINDOW w AS (PARTITION BY patrol_id ORDER BY at))
UPDATE patrol_points pp SET kept = false, drop_reason = 'speed'
FROM v
WHERE pp.patrol_id = v.patrol_id AND pp.at = v.at
  AND (v.v_prev IS NOT NULL OR v.v_next IS NOT NULL)
  AND coalesce(v.v_prev > :max_speed, true) AND coalesce(v.v_next > :max_speed, true)
"""

_TRACKS = """
WITH t AS (
  SELECT patrol_id,
         ST_MakeLine(ST_SetSRID(ST_MakePointM(ST_X(geom), ST_Y(geom),
                                              extract(epoch FROM at)), 4326) ORDER BY at) AS track
  FROM patrol_points
  WHERE kept AND patrol_id IN (SELECT patrol_id FROM demo_new)
  GROUP BY patrol_id HAVING count(*) >= 2),
f AS (
  SELECT pp.patrol_id, count(*) AS total, count(*) FILTER (WHERE kept) AS kept,
         count(*) FILTER (WHERE drop_reason = 'accuracy') AS accuracy,
         count(*) FILTER (WHERE drop_reason = 'speed') AS speed
  FROM patrol_points pp JOIN demo_new n ON n.patrol_id = pp.patrol_id
  GROUP BY pp.patrol_id)
UPDATE patrols p
SET track = t.track,
    coverage = least(1.0, greatest(0.0, gridops_street_coverage(s.geom, t.track, :radius,
                                                                :srid))),
    summary = p.summary || jsonb_build_object(
      'distance_m', round(ST_Length(t.track::geography)::numeric, 1),
      'duration_s', round(extract(epoch FROM p.ended_at - p.started_at)),
      'fixes', jsonb_build_object('total', f.total, 'kept', f.kept, 'dropped',
                                  jsonb_build_object('accuracy', f.accuracy, 'speed', f.speed)))
FROM t, f, streets s
WHERE p.id = t.patrol_id AND f.patrol_id = t.patrol_id AND s.id = p.street_id
  AND ST_IsValid(t.track)
"""

_CHECKS = f"""
INSERT INTO patrol_checks (patrol_id, item_code, ok, note, checked_at, received_at)
SELECT n.patrol_id, ci.code, NOT bad, CASE WHEN bad THEN CAST(:notes AS jsonb) ->> ci.code END,
       at, at + interval '20 seconds'
FROM demo_new n
JOIN patrols p ON p.id = n.patrol_id
JOIN demo_plan pl ON pl.key = n.key
CROSS JOIN checklist_items ci
CROSS JOIN LATERAL (SELECT
  {_u("n.key", "ci.code", "'bad'")} < CASE WHEN ci.item_group = '十无' THEN 0.006
                                                  ELSE 0.004 END
    AND CAST(:notes AS jsonb) ? ci.code AS bad,
  p.started_at + (p.ended_at - p.started_at) * (ci.position::float8 / 21) AS at) x
WHERE ci.active AND (pl.share = 1.0 OR ci.item_group = '十无')
ON CONFLICT (patrol_id, item_code) DO NOTHING
"""  # noqa: S608 (constant SQL fragments; values are bound)

_REPORTS = f"""
INSERT INTO incidents (idempotency_key, source, event_class_id, description, address,
                       reported_at, received_at, geom, status, district_code, street_code,
                       community_code, grid_code, grid_id, street_id, chief_person_id,
                       closed_at, patrol_id, updated_at)
SELECT 'demo-patrol-report:' || n.key || ':' || pc.item_code,
       CASE WHEN pl.role = 'steward' THEN 'steward' ELSE 'street_chief' END,
       ec.id, s.name || pc.note, s.name, pc.checked_at, pc.checked_at + interval '20 seconds',
       fix.geom,
       CASE WHEN pc.checked_at < now() - interval '3 days' THEN 'closed' ELSE 'registered' END,
       coalesce(g.district_code, s.district_code), coalesce(g.street_code, s.street_office_code),
       g.community_code, g.code, g.id, s.id,
       (SELECT a.person_id FROM street_assignments a WHERE a.street_id = s.id
          AND a.role <> 'steward' AND a.valid_from <= pc.checked_at
          AND (a.valid_to IS NULL OR a.valid_to > pc.checked_at) LIMIT 1),
       CASE WHEN pc.checked_at < now() - interval '3 days'
            THEN pc.checked_at + interval '1 day' END,
       p.id, pc.checked_at
FROM demo_new n
JOIN patrols p ON p.id = n.patrol_id
JOIN demo_plan pl ON pl.key = n.key
JOIN patrol_checks pc ON pc.patrol_id = p.id AND NOT pc.ok
JOIN streets s ON s.id = p.street_id
JOIN event_classes ec ON ec.kind = 'event' AND ec.active
 AND ec.code = CAST(:events AS jsonb) ->> pc.item_code
CROSS JOIN LATERAL (
  SELECT pp.geom FROM patrol_points pp WHERE pp.patrol_id = p.id AND pp.kept
  ORDER BY abs(extract(epoch FROM pp.at - pc.checked_at)) LIMIT 1) fix
LEFT JOIN LATERAL (
  SELECT gr.id, gr.code, gr.community_code, gr.street_code, gr.district_code FROM grids gr
  WHERE ST_Intersects(gr.geom, fix.geom) AND gr.valid_to IS NULL LIMIT 1) g ON true
WHERE {_u("n.key", "pc.item_code", "'report'")} < 0.7
ON CONFLICT (idempotency_key) DO NOTHING
"""  # noqa: S608 (constant SQL fragments; values are bound)


def simulate_history(conn: Connection, days: int,
                     street_offices: Sequence[str] = DEFAULT_STREET_OFFICES, seed: int = 7,
                     until: date | None = None, *, srid: int = 4548,
                     by: audit.Actor | None = None) -> dict[str, Any]:
    """Write synthetic patrols for the chiefs and stewards of `street_offices` over the last
    `days` working days up to `until` (default: yesterday, Beijing) on `conn` (the caller
    commits). Returns counts: working days, street-days planned, patrols, fixes (kept,
    dropped), checks, problems reported."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days must be between 1 and {MAX_DAYS}, not {days}", field="days")
    offices = list(dict.fromkeys(street_offices))
    if not offices or any(len(c) != 9 or not c.isdigit() for c in offices):
        raise InvalidInput("street offices are 9-digit codes, e.g. 110102020",
                           field="street_office")
    known = set(conn.scalars(text(
        "SELECT DISTINCT street_office_code FROM streets "
        "WHERE street_office_code = ANY(CAST(:o AS text[]))"), {"o": offices}))
    missing = [c for c in offices if c not in known]
    if missing:
        raise InvalidInput(f"no streets in street office {', '.join(missing)}",
                           field="street_office")
    cal = catalog.current_calendar(conn)
    now: datetime = conn.scalar(text("SELECT now()"))
    until = until or (now.astimezone(cal.tz).date() - timedelta(days=1))
    dates = working_days(cal, days, until)
    config = patrol_settings.current(conn)
    params: dict[str, Any] = {
        "seed": seed, "srid": srid, "tz": cal.timezone, "offices": offices, "days": dates,
        "speed": WALK_MPS, "interval": FIX_INTERVAL_S,
        "max_accuracy": float(config["cleaning"]["max_accuracy_m"]),
        "max_speed": float(config["cleaning"]["max_speed_mps"]),
        "radius": float(config["coverage"]["radius_m"]),
        "notes": json.dumps({k: v[0] for k, v in PROBLEMS.items()}, ensure_ascii=False),
        "events": json.dumps({k: v[1] for k, v in PROBLEMS.items() if v[1]}),
    }
    conn.execute(text("CREATE TEMP TABLE demo_new (patrol_id bigint PRIMARY KEY, key text) "
                      "ON COMMIT DROP"))
    conn.execute(text(_PARTS), params)
    conn.execute(text(_PLAN), params)
    conn.execute(text("CREATE INDEX ON demo_plan (key)"))
    conn.execute(text("ANALYZE demo_plan"))
    conn.execute(text("ANALYZE demo_parts"))
    planned = conn.scalar(text("SELECT count(*) FROM demo_plan"))
    conn.execute(text(_INSERT_PATROLS), params)
    conn.execute(text("ANALYZE demo_new"))
    fixes = conn.execute(text(_POINTS), params).rowcount
    dropped_accuracy = conn.execute(text(_CLEAN_ACCURACY), params).rowcount
    dropped_speed = conn.execute(text(_CLEAN_SPEED), params).rowcount
    conn.execute(text(_TRACKS), params)
    checks = conn.execute(text(_CHECKS), params).rowcount
    reports = conn.execute(text(_REPORTS), params).rowcount
    patrols = conn.scalar(text("SELECT count(*) FROM demo_new"))
    counts = {"working_days": len(dates), "first_day": dates[0].isoformat() if dates else None,
              "last_day": dates[-1].isoformat() if dates else None,
              "street_days_patrolled": int(planned or 0), "patrols": int(patrols or 0),
              "fixes": fixes, "dropped_accuracy": dropped_accuracy,
              "dropped_speed": dropped_speed, "checks": checks, "problems": reports}
    audit.record(conn, by or audit.Actor("demo"), action="demo.patrols",
                 object_type="patrols", object_id=None,
                 after={"synthetic": True, "street_offices": offices, "seed": seed, **counts})
    conn.execute(text("DROP TABLE demo_new, demo_plan, demo_parts"))
    return counts
