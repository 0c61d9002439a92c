"""The work log (工作日志) of a 街巷长 or 小巷管家 for one day (Beijing date): streets
patrolled with coverage and time spent, checklist results (十有十无 items ok / not ok with
notes), problems reported that day and their current state; as a JSON-ready dict and as
flat CSV rows. Coverage follows docs/patrol-evaluation.md.

Who may read it (`check_access`): admins; operators, viewers and planners whose scope holds
the person (their district, or a street assigned to them or patrolled by them that day);
the person themself (a street chief's login bound to that person, `me`). A street chief
asking for someone else's log gets 403; a reader outside their scope 404 (as if missing).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, text

from gis import catalog, patrol_settings, workflow
from gis.auth import Principal
from gis.errors import Forbidden, InvalidInput, NotFound
from gis.scope import SCOPED_READERS, sees_all
from gis.workcalendar import days_between


def resolve_person(user: Principal, person: str) -> int:
    """The person id a path names: a positive integer, or `me` (the signed-in chief)."""
    if person == "me":
        if user.person_id is None:
            raise Forbidden("`me` needs a login bound to a person (街巷长 or 小巷管家)",
                            field="person_id")
        return user.person_id
    if not person.isascii() or not person.isdigit() or not 1 <= int(person) < 2**63:
        raise InvalidInput(f"person_id must be a positive integer or `me`, not {person!r}",
                           field="person_id")
    return int(person)


def check_access(conn: Connection, user: Principal, person_id: int, day: date,
                 tz: str) -> None:
    """NotFound for an unknown person (or one outside a scoped reader's jurisdictions),
    Forbidden for a street chief asking for someone else or for other roles."""
    if not conn.scalar(text("SELECT EXISTS (SELECT 1 FROM people WHERE id = :p)"),
                       {"p": person_id}):
        raise NotFound(f"no person {person_id}", field="person_id")
    if sees_all(user):
        return
    if user.person_id == person_id and user.has_any("street_chief"):
        return
    if user.has_any(*SCOPED_READERS):
        t0, t1 = days_between(day, day, tz)
        inside = conn.scalar(text("""
            SELECT EXISTS (SELECT 1 FROM people p WHERE p.id = :p
                           AND p.district_code = ANY(CAST(:codes AS text[])))
                OR EXISTS (SELECT 1 FROM streets s
                           WHERE (s.district_code = ANY(CAST(:codes AS text[]))
                                  OR s.street_office_code = ANY(CAST(:codes AS text[])))
                             AND (s.id IN (SELECT a.street_id FROM street_assignments a
                                           WHERE a.person_id = :p)
                                  OR s.id IN (SELECT pt.street_id FROM patrols pt
                                              WHERE pt.person_id = :p AND pt.started_at >= :t0
                                                AND pt.started_at < :t1)))
        """), {"p": person_id, "codes": list(user.scope_codes), "t0": t0, "t1": t1})
        if inside:
            return
        raise NotFound(f"no person {person_id} in your scope", field="person_id")
    if user.has_any("street_chief"):
        raise Forbidden("a street chief may read only their own work log", field="person_id")
    raise Forbidden("work logs are for admins, operators, viewers, planners and the chief "
                    f"themself; you have {', '.join(sorted(user.roles))}", field="role")


# The day's patrols of the person (started that Beijing date), every status.
_PATROLS = """
    SELECT p.id, p.street_id, p.started_at, p.ended_at, p.status, p.coverage, p.track,
           greatest(0, extract(epoch FROM coalesce(
             p.ended_at, to_timestamp(ST_M(ST_EndPoint(p.track))), p.started_at)
             - p.started_at)) AS duration_s
    FROM patrols p
    WHERE p.person_id = :person AND p.started_at >= :t0 AND p.started_at < :t1
"""

_STREETS = f"""
WITH pat AS MATERIALIZED ({_PATROLS}),
asg AS (
  SELECT a.street_id, min(a.role) AS role FROM street_assignments a
  WHERE a.person_id = :person AND a.valid_from < :t1
    AND (a.valid_to IS NULL OR a.valid_to > :t0)
  GROUP BY a.street_id),
ids AS (SELECT street_id FROM asg UNION SELECT street_id FROM pat)
SELECT s.id AS street_id, s.name, s.road_class, s.street_office_code, asg.role,
       asg.street_id IS NOT NULL AS assigned,
       round(ST_Length(ST_Transform(s.geom, :srid))::numeric, 1) AS length_m,
       gridops_street_coverage(s.geom, (
         SELECT ST_Collect(track) FROM pat WHERE pat.street_id = s.id
           AND pat.status <> 'abandoned' AND pat.track IS NOT NULL), :radius, :srid) AS coverage,
       (SELECT sum(duration_s) FROM pat WHERE pat.street_id = s.id) AS time_spent_s,
       (SELECT min(started_at) FROM pat WHERE pat.street_id = s.id) AS started_at,
       (SELECT max(ended_at) FROM pat WHERE pat.street_id = s.id) AS ended_at,
       (SELECT coalesce(jsonb_agg(jsonb_build_object(
           'id', id, 'status', status, 'started_at', started_at, 'ended_at', ended_at,
           'duration_s', round(duration_s::numeric, 0),
           'coverage', round(coverage::numeric, 4)) ORDER BY started_at, id), '[]')
        FROM pat WHERE pat.street_id = s.id) AS patrols
FROM ids JOIN streets s ON s.id = ids.street_id
LEFT JOIN asg ON asg.street_id = s.id
ORDER BY asg.street_id IS NULL, started_at NULLS LAST, s.name, s.id
"""  # noqa: S608 (constant fragments only)

_CHECKS = f"""
SELECT pc.patrol_id, pat.street_id, s.name AS street, pc.item_code AS code,
       ci.item_group AS "group", ci.zh, ci.en, pc.ok, pc.note, pc.checked_at
FROM ({_PATROLS}) pat
JOIN patrol_checks pc ON pc.patrol_id = pat.id
JOIN checklist_items ci ON ci.code = pc.item_code
JOIN streets s ON s.id = pat.street_id
ORDER BY pat.started_at, pat.id, ci.position
"""  # noqa: S608


def _problems_sql(seconds_per_day: int) -> str:
    dl = workflow.deadline_sql(seconds_per_day)
    return f"""
SELECT i.id AS incident_id, i.patrol_id, i.street_id, s.name AS street, i.source,
       ec.kind AS event_kind, ec.code AS event_code, ec.name AS event_name,
       ec.major_name, i.description, i.address, i.reported_at, i.status, i.closed_at,
       {dl.stage} AS stage, {dl.due_at} AS due_at,
       CASE WHEN {dl.due_at} IS NULL THEN 'none' WHEN {dl.overdue} THEN 'overdue'
            WHEN {dl.near_overdue} THEN 'near_overdue' ELSE 'on_time' END AS deadline_state
FROM incidents i
JOIN event_classes ec ON ec.id = i.event_class_id
LEFT JOIN streets s ON s.id = i.street_id
WHERE i.patrol_id IN (SELECT id FROM ({_PATROLS}) pat)
   OR (i.created_by IN (SELECT u.id FROM users u WHERE u.person_id = :person)
       AND i.reported_at >= :t0 AND i.reported_at < :t1)
ORDER BY i.reported_at, i.id
"""  # noqa: S608


def _ratio(value: Any) -> float | None:
    return None if value is None else round(float(value), 4)


def worklog(conn: Connection, person_id: int, day: date, *, srid: int = 4548) -> dict[str, Any]:
    """The work log of `person_id` on `day` (Beijing date; the caller checked access)."""
    cal = catalog.current_calendar(conn)
    config = patrol_settings.current(conn)
    radius = float(config["coverage"]["radius_m"])
    threshold = float(config["coverage"]["daily_threshold"])
    t0, t1 = days_between(day, day, cal.timezone)
    params = {"person": person_id, "t0": t0, "t1": t1, "srid": srid, "radius": radius}
    person = conn.execute(text(
        "SELECT id, name, phone, post, organisation, district_code FROM people WHERE id = :p"),
        {"p": person_id}).mappings().one()
    working = cal.is_workday(day)
    streets = []
    for r in conn.execute(text(_STREETS), params).mappings():
        walked = bool(r["patrols"])
        coverage = _ratio(r["coverage"]) if walked else (0.0 if r["assigned"] else None)
        required = bool(r["assigned"]) and working
        streets.append({
            "street_id": r["street_id"], "name": r["name"], "road_class": r["road_class"],
            "street_office_code": r["street_office_code"], "role": r["role"],
            "assigned": bool(r["assigned"]), "required": required,
            "length_m": float(r["length_m"]), "patrolled": walked, "coverage": coverage,
            "compliant": (coverage or 0.0) >= threshold if required else None,
            "time_spent_s": round(float(r["time_spent_s"] or 0)),
            "started_at": r["started_at"], "ended_at": r["ended_at"],
            "patrol_ids": [p["id"] for p in r["patrols"]], "patrols": r["patrols"],
        })
    checks = [dict(r) for r in conn.execute(text(_CHECKS), params).mappings()]
    problems = [dict(r) for r in conn.execute(
        text(_problems_sql(cal.seconds_per_day)), params).mappings()]
    due = [s for s in streets if s["required"]]
    return {
        "person": dict(person), "date": day.isoformat(), "working_day": working,
        "timezone": cal.timezone,
        "settings": {"radius_m": radius, "daily_threshold": threshold},
        "streets": streets, "checks": checks, "problems": problems,
        "totals": {
            "streets_assigned": sum(1 for s in streets if s["assigned"]),
            "streets_required": len(due),
            "streets_patrolled": sum(1 for s in streets if s["patrolled"]),
            "streets_compliant": sum(1 for s in due if s["compliant"]),
            "patrols": sum(len(s["patrol_ids"]) for s in streets),
            "time_spent_s": sum(s["time_spent_s"] for s in streets),
            "checks_ok": sum(1 for c in checks if c["ok"]),
            "checks_not_ok": sum(1 for c in checks if not c["ok"]),
            "problems": len(problems),
        },
    }


CSV_COLUMNS = ("section", "person_id", "person", "date", "street_id", "street", "assigned",
               "patrol_ids", "started_at", "ended_at", "time_spent_s", "coverage",
               "compliant", "item_code", "item_group", "item", "ok", "note", "checked_at",
               "incident_id", "event_code", "event_name", "status", "deadline_state",
               "due_at", "description")


def _iso(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def csv_rows(log: dict[str, Any]) -> list[dict[str, Any]]:
    """The log as flat rows for CSV: `section` is street, check or problem; every row names
    the person and the date; the other cells of a row belong to its section."""
    base = {name: None for name in CSV_COLUMNS}
    who = {"person_id": log["person"]["id"], "person": log["person"]["name"],
           "date": log["date"]}
    out: list[dict[str, Any]] = []
    for s in log["streets"]:
        out.append({**base, **who, "section": "street", "street_id": s["street_id"],
                    "street": s["name"], "assigned": s["assigned"],
                    "patrol_ids": " ".join(str(i) for i in s["patrol_ids"]),
                    "started_at": _iso(s["started_at"]), "ended_at": _iso(s["ended_at"]),
                    "time_spent_s": s["time_spent_s"], "coverage": s["coverage"],
                    "compliant": s["compliant"]})
    for c in log["checks"]:
        out.append({**base, **who, "section": "check", "street_id": c["street_id"],
                    "street": c["street"], "patrol_ids": str(c["patrol_id"]),
                    "item_code": c["code"], "item_group": c["group"], "item": c["zh"],
                    "ok": c["ok"], "note": c["note"], "checked_at": _iso(c["checked_at"])})
    for p in log["problems"]:
        out.append({**base, **who, "section": "problem", "street_id": p["street_id"],
                    "street": p["street"],
                    "patrol_ids": None if p["patrol_id"] is None else str(p["patrol_id"]),
                    "incident_id": p["incident_id"], "event_code": p["event_code"],
                    "event_name": p["event_name"], "status": p["status"],
                    "deadline_state": p["deadline_state"], "due_at": _iso(p["due_at"]),
                    "description": p["description"]})
    return out
