"""Applying an approved grid plan (网格调整方案实施): in the caller's single transaction the
live grids the plan changes are closed and its grids opened as new versions, and everything
that hangs on a grid follows — buildings' grid codes and grid-level area shares, open
incidents, grid workers' assignments — then tile caches are told, the change is audited
and the plan marked applied. Any failure leaves nothing changed (the caller rolls back).

What it does, in order (the matching rules are gis/plan_diff.py's):
1. lock the plan (FOR UPDATE): it must be approved; lock the live grids of its
   communities; refuse a stale plan: a grid of those communities opened or closed since
   the plan was made, or a grid the plan redraws no longer in force (Conflict);
2. effective_from (default now): not in the future — applying makes the plan live now —
   and after the start of every grid and grid-worker assignment it ends (InvalidInput);
3. close every live grid that is not unchanged (valid_to = effective_from) and insert the
   plan's changed and new grids (valid_from = effective_from, plan_id, source 'plan'): a
   grid continuing a live grid keeps its code; a new grid takes its plan code when no grid
   version ever used it, else the next number after the highest any version in its
   community ever used (never reusing a retired code). Unchanged grids keep their rows;
4. buildings of the plan's grids: grid_code = the grid in force holding the building's
   representative point (in the building's district); grid-level building_shares
   recomputed as the demo loader defines them (gis/democity/load.py: straddling buildings
   only, parts ≥ MIN_SHARE of the footprint, shares of the kept parts, geography m²);
5. open incidents (not closed, not void) on a closed grid are re-placed: the grid holding
   the point at effective_from, in the incident's community (closed incidents keep their
   historical grid, whose row stays with its valid_to);
6. grid workers' assignments on a closed grid end at effective_from and reopen on its
   successor (the grid continuing it, else the plan grid holding most of it);
7. a live event boundaries.changed (layers grids, buildings, and incidents when any moved,
   with the bbox) so tile caches drop those tiles; an audit row grid_plan.apply; the plan
   becomes applied (applied_at, effective_from).

Joint zones (联合哨) are not rebuilt: they are bands along district and street boundaries
(gis/joint_zones.py derives them from jurisdictions only), and placement's joint test reads
zones and district/street building shares — a grid plan changes none of these.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from gis import events
from gis.audit import Actor, record
from gis.democity.load import MIN_SHARE
from gis.errors import Conflict, InvalidInput, NotFound
from gis.plan_diff import OPEN_STATUSES, plan_diff

_LOCK_PLAN = text("""
    SELECT id, name, status, community_codes, district_code, created_at
    FROM grid_plans WHERE id = :plan FOR UPDATE
""")

_LOCK_LIVE = text("""
    SELECT id FROM grids
    WHERE community_code = ANY(:codes) AND valid_from <= now()
      AND (valid_to IS NULL OR valid_to > now())
    ORDER BY id FOR UPDATE
""")

# Grids of the plan's communities opened or closed since the plan was made, and grids the
# plan redraws that are no longer in force.
_STALE = text("""
    SELECT g.code, g.valid_from, g.valid_to FROM grids g
    WHERE g.community_code = ANY(:codes)
      AND (g.valid_from > :created OR (g.valid_to IS NOT NULL AND g.valid_to > :created))
    UNION
    SELECT g.code, g.valid_from, g.valid_to
    FROM grid_plan_grids pg JOIN grids g ON g.id = pg.source_grid_id
    WHERE pg.plan_id = :plan AND NOT (g.valid_from <= now()
                                      AND (g.valid_to IS NULL OR g.valid_to > now()))
    ORDER BY 1, 2 LIMIT 10
""")

_STRAY = text("""
    SELECT DISTINCT community_code FROM grid_plan_grids
    WHERE plan_id = :plan AND geom IS NOT NULL AND NOT community_code = ANY(:codes)
    ORDER BY 1
""")

_LATEST_START = text("""
    SELECT greatest(
      (SELECT max(valid_from) FROM grids WHERE id = ANY(:ids)),
      (SELECT max(valid_from) FROM grid_assignments
       WHERE grid_id = ANY(:ids) AND (valid_to IS NULL OR valid_to > :eff)))
""")

_CLOSE_GRIDS = text("""
    UPDATE grids SET valid_to = :eff
    WHERE id = ANY(:ids) AND valid_from < :eff AND (valid_to IS NULL OR valid_to > :eff)
    RETURNING id, code
""")

_USED_CODES = text("""
    SELECT DISTINCT code FROM grids WHERE community_code = ANY(:codes)
""")

_INSERT_GRIDS = text("""
    INSERT INTO grids (code, name, households, geom, valid_from, plan_id, source,
                       is_synthetic, properties)
    SELECT x.code, coalesce(pg.name, og.name, x.default_name), pg.households, pg.geom, :eff,
           :plan, 'plan',
           coalesce(og.is_synthetic, (SELECT bool_or(g.is_synthetic) FROM grids g
                                      WHERE g.id = ANY(:closed_ids)
                                        AND g.community_code = pg.community_code), false),
           jsonb_build_object('plan_grid_id', pg.id, 'continues_grid_id', x.continues,
                              'plan_status', x.status)
    FROM unnest(CAST(:pids AS bigint[]), CAST(:codes AS text[]), CAST(:conts AS bigint[]),
                CAST(:statuses AS text[]), CAST(:names AS text[]))
         AS x(pid, code, continues, status, default_name)
    JOIN grid_plan_grids pg ON pg.id = x.pid AND pg.plan_id = :plan
    LEFT JOIN grids og ON og.id = x.continues
    RETURNING id, code, (properties ->> 'plan_grid_id')::bigint AS plan_grid_id
""")

# The grid in force at :eff holding a building's representative point in its district, else
# (a point in a gap, or across a district line) the grid of its district it overlaps most.
_RECODE_BUILDINGS = text("""
    WITH touched AS (
      SELECT DISTINCT b.id FROM grids g JOIN buildings b ON b.geom && g.geom
      WHERE g.id = ANY(:grid_ids) AND ST_Intersects(b.geom, g.geom)
      UNION
      SELECT b.id FROM buildings b WHERE b.grid_code = ANY(:closed_codes)),
    placed AS (
      SELECT b.id, coalesce(
        (SELECT g.code FROM grid_parts gp JOIN grids g ON g.id = gp.grid_id
         WHERE ST_Intersects(gp.geom, ST_PointOnSurface(b.geom))
           AND gp.valid_from <= :eff AND (gp.valid_to IS NULL OR gp.valid_to > :eff)
           AND g.district_code = b.district_code
         ORDER BY g.code LIMIT 1),
        (SELECT g.code FROM grids g
         WHERE ST_Intersects(g.geom, b.geom) AND g.district_code = b.district_code
           AND g.valid_from <= :eff AND (g.valid_to IS NULL OR g.valid_to > :eff)
         ORDER BY ST_Area(ST_Intersection(g.geom, b.geom)) DESC, g.code LIMIT 1)) AS code
      FROM buildings b WHERE b.id IN (SELECT id FROM touched))
    UPDATE buildings b SET grid_code = placed.code
    FROM placed
    WHERE placed.id = b.id AND b.grid_code IS DISTINCT FROM placed.code
    RETURNING b.id
""")

_TOUCHED_BY_GRIDS = """
    SELECT DISTINCT b.id FROM grids g JOIN buildings b ON b.geom && g.geom
    WHERE g.id = ANY(:grid_ids) AND ST_Intersects(b.geom, g.geom)"""

_DROP_GRID_SHARES = text(f"""
    DELETE FROM building_shares
    WHERE level = 'grid' AND building_id IN ({_TOUCHED_BY_GRIDS})
""")  # noqa: S608 - constant fragments; values are bound

# gis/democity/load.py's definition, for the touched buildings and the grids in force.
_GRID_SHARES = text(f"""
    WITH touched AS ({_TOUCHED_BY_GRIDS}),
    hits AS (
      SELECT b.id AS building_id, g.code, b.geom AS bg, g.geom AS gg
      FROM touched t JOIN buildings b ON b.id = t.id
      JOIN grids g ON g.geom && b.geom AND ST_Intersects(g.geom, b.geom)
      WHERE g.valid_from <= :eff AND (g.valid_to IS NULL OR g.valid_to > :eff)),
    crossing AS (SELECT building_id FROM hits GROUP BY building_id HAVING count(*) > 1),
    parts AS (
      SELECT h.building_id, h.code, ST_Area(ST_Intersection(h.bg, h.gg)::geography) AS area_m2,
             ST_Area(h.bg::geography) AS total_m2
      FROM hits h JOIN crossing USING (building_id)),
    kept AS (SELECT * FROM parts WHERE area_m2 / nullif(total_m2, 0) >= :min_share),
    straddling AS (SELECT building_id FROM kept GROUP BY building_id HAVING count(*) > 1)
    INSERT INTO building_shares (building_id, level, code, share, area_m2)
    SELECT k.building_id, 'grid', k.code,
           k.area_m2 / sum(k.area_m2) OVER (PARTITION BY k.building_id), k.area_m2
    FROM kept k JOIN straddling USING (building_id)
""")  # noqa: S608 - constant fragments; values are bound

_REPLACE_INCIDENTS = text("""
    WITH moving AS (
      SELECT i.id, i.grid_id AS old_id, i.grid_code AS old_code,
             (SELECT g.id FROM grid_parts gp JOIN grids g ON g.id = gp.grid_id
              WHERE ST_Intersects(gp.geom, i.geom)
                AND gp.valid_from <= :eff AND (gp.valid_to IS NULL OR gp.valid_to > :eff)
                AND g.community_code = i.community_code
              ORDER BY g.code LIMIT 1) AS new_id
      FROM incidents i
      WHERE i.grid_code = ANY(:closed_codes) AND i.grid_id = ANY(:closed_ids)
        AND i.status = ANY(:open)
      FOR UPDATE OF i),
    target AS (
      SELECT m.id, m.old_id, m.old_code, g.id AS new_id, g.code AS new_code
      FROM moving m LEFT JOIN grids g ON g.id = m.new_id)
    UPDATE incidents i SET grid_id = t.new_id, grid_code = t.new_code, updated_at = now()
    FROM target t WHERE i.id = t.id
    RETURNING i.id, t.old_id, t.old_code, t.new_id, t.new_code
""")

_ASSIGNMENTS = text("""
    SELECT a.id, a.person_id, pe.name, a.role, a.grid_id, g.code
    FROM grid_assignments a JOIN people pe ON pe.id = a.person_id
    JOIN grids g ON g.id = a.grid_id
    WHERE a.grid_id = ANY(:ids) AND (a.valid_to IS NULL OR a.valid_to > :eff)
    ORDER BY a.id FOR UPDATE OF a
""")

_REOPEN_ASSIGNMENTS = text("""
    INSERT INTO grid_assignments (grid_id, person_id, role, valid_from, valid_to)
    SELECT DISTINCT ON (x.new_id, a.person_id, a.role) x.new_id, a.person_id, a.role, :eff,
           a.valid_to
    FROM unnest(CAST(:ids AS bigint[]), CAST(:new_ids AS bigint[])) AS x(id, new_id)
    JOIN grid_assignments a ON a.id = x.id
    WHERE x.new_id IS NOT NULL
    ORDER BY x.new_id, a.person_id, a.role, a.valid_to DESC NULLS FIRST
    RETURNING id, person_id, grid_id
""")

_END_ASSIGNMENTS = text("""
    UPDATE grid_assignments SET valid_to = :eff WHERE id = ANY(:ids)
""")

_EXTENT = text("""
    SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
    FROM (SELECT ST_Extent(geom) AS e FROM grids WHERE id = ANY(:ids)) x
""")

_MARK_APPLIED = text("""
    UPDATE grid_plans SET status = 'applied', applied_at = now(), effective_from = :eff,
           updated_at = now(),
           comments = comments || jsonb_build_array(jsonb_build_object(
             'at', now(), 'user', CAST(:user AS text), 'kind', 'transition',
             'text', CAST(:note AS text), 'from', 'approved', 'to', 'applied'))
    WHERE id = :plan
    RETURNING applied_at, effective_from
""")


def _effective_from(conn: Connection, value: datetime | None) -> datetime:
    """The instant the plan takes effect: `value`, or the transaction's now(). Must carry a
    time zone and not lie in the future."""
    if value is None:
        now: datetime = conn.scalar(text("SELECT now()"))
        return now
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput("effective_from needs a time zone (e.g. 2026-12-01T00:00:00+08:00)",
                           field="effective_from")
    if conn.scalar(text("SELECT CAST(:v AS timestamptz) > clock_timestamp()"), {"v": value}):
        raise InvalidInput("effective_from is in the future; applying makes the plan live now "
                           "— apply it on or after that date", field="effective_from")
    return value


def _new_codes(conn: Connection, grids: list[dict[str, Any]],
               community_codes: list[str]) -> dict[int, str]:
    """Codes of the plan's new grids, by plan grid id: its plan code when no version of
    any grid ever used it (and no other grid of the plan claims it), else the next number
    after the highest any grid version of its community ever used (then the lowest never
    used), skipping the codes this plan claims. Conflict when a community has no number
    left."""
    ever = set(conn.scalars(_USED_CODES, {"codes": community_codes}))
    claimed = ever | {g["code"] for g in grids if g["code"]}
    out: dict[int, str] = {}
    waiting = []
    for g in sorted(grids, key=lambda g: g["plan_grid_id"]):
        if g["status"] != "new":
            continue
        wanted = g["plan_code"]
        if wanted and wanted[:12] == g["community_code"] and wanted not in claimed:
            out[g["plan_grid_id"]] = wanted
            claimed.add(wanted)
        else:
            waiting.append(g)
    for g in waiting:
        community = g["community_code"]
        top = max((int(c[12:]) for c in ever if c[:12] == community), default=0)
        taken = {int(c[12:]) for c in claimed if c[:12] == community}
        number = next((n for n in [*range(top + 1, 1000), *range(1, top + 1)]
                       if n not in taken), None)
        if number is None:
            raise Conflict(f"community {community} has no grid number left (001–999 all "
                           "used)", field="community_codes")
        out[g["plan_grid_id"]] = f"{community}{number:03d}"
        claimed.add(out[g["plan_grid_id"]])
    return out


def apply_plan(conn: Connection, plan_id: int, actor: Actor, metric_srid: int,
               tolerance_m2: float, effective_from: datetime | None = None) -> dict[str, Any]:
    """Apply approved plan `plan_id` in the caller's transaction (steps in the module
    docstring); the caller commits, or rolls back on any exception.

    Returns {"plan_id", "status": "applied", "effective_from", "applied_at", "grids":
    {unchanged, changed, new, closed, opened}, "opened": [{plan_grid_id, grid_id, code,
    status, continues_grid_id}], "closed": [{grid_id, code}], "unchanged": [{grid_id,
    code}], "buildings_recoded", "building_shares", "incidents": [{id, from_grid_id,
    from_code, to_grid_id, to_code}], "assignments": [{assignment_id, person_id, name,
    role, from_grid_id, from_code, to_grid_id, to_code, new_assignment_id}], "event_id"
    (None when nothing changed), "joint_zones": "unchanged…"}.

    NotFound: no such plan. Conflict: the plan is not approved (the message names its
    status), it is stale, it has no grids, or a community ran out of grid numbers.
    InvalidInput (field effective_from): no time zone, in the future, or not after the
    start of a grid or assignment it ends."""
    plan = conn.execute(_LOCK_PLAN, {"plan": plan_id}).mappings().one_or_none()
    if plan is None:
        raise NotFound(f"no grid plan {plan_id}", field="plan_id")
    if plan["status"] != "approved":
        raise Conflict(f"plan {plan_id} is {plan['status']}; only an approved plan can be "
                       "applied", field="status", detail={"status": plan["status"]})
    codes = list(plan["community_codes"])
    conn.execute(_LOCK_LIVE, {"codes": codes}).all()
    stale = conn.execute(_STALE, {"codes": codes, "created": plan["created_at"],
                                  "plan": plan_id}).all()
    if stale:
        changed = ", ".join(sorted({r.code for r in stale}))
        raise Conflict(f"plan {plan_id} is stale: the live grids of its communities changed "
                       f"since it was made ({changed}); make a new plan from the live grids",
                       field="plan_id", detail={"codes": sorted({r.code for r in stale})})
    stray = conn.scalars(_STRAY, {"plan": plan_id, "codes": codes}).all()
    if stray:
        raise Conflict(f"plan {plan_id} has grids in communities it does not cover "
                       f"({', '.join(stray)}); validate the plan", field="plan_id")
    eff = _effective_from(conn, effective_from)

    diff = plan_diff(conn, plan_id, metric_srid, tolerance_m2)
    if not diff["grids"]:
        raise Conflict(f"plan {plan_id} has no grids to apply", field="plan_id")
    grids = diff["grids"]
    closing = [g for g in diff["old_grids"] if g["fate"] != "unchanged"]
    closing_ids = [g["grid_id"] for g in closing]
    latest = (conn.scalar(_LATEST_START, {"ids": closing_ids, "eff": eff})
              if closing_ids else None)
    if latest is not None and eff <= latest:
        raise InvalidInput(f"effective_from must be after {latest.isoformat()}, when a grid "
                           "or grid-worker assignment the plan ends began",
                           field="effective_from")

    # 3. close and open grids
    closed_rows = conn.execute(_CLOSE_GRIDS, {"ids": closing_ids, "eff": eff}).all()
    if len(closed_rows) != len(closing_ids):
        raise Conflict(f"plan {plan_id} is stale: a live grid it changes was changed "
                       "meanwhile", field="plan_id")
    opening = [g for g in grids if g["status"] != "unchanged"]
    by_plan = {g["plan_grid_id"]: g for g in opening}
    new_codes = _new_codes(conn, grids, codes)
    code_of = {g["plan_grid_id"]: g["code"] or new_codes[g["plan_grid_id"]] for g in opening}
    inserted = conn.execute(_INSERT_GRIDS, {
        "eff": eff, "plan": plan_id, "closed_ids": closing_ids,
        "pids": [g["plan_grid_id"] for g in opening],
        "codes": [code_of[g["plan_grid_id"]] for g in opening],
        "conts": [g["continues_grid_id"] for g in opening],
        "statuses": [g["status"] for g in opening],
        "names": [f"第{int(code_of[g['plan_grid_id']][12:])}网格" for g in opening],
    }).mappings().all()
    live_of_plan = {r["plan_grid_id"]: r["id"] for r in inserted}
    live_of_plan.update({g["plan_grid_id"]: g["grid_id"] for g in grids
                         if g["status"] == "unchanged"})
    new_ids = [r["id"] for r in inserted]
    touched_grids = closing_ids + new_ids
    closed_codes = [g["code"] for g in closing]

    # 4. buildings
    recoded = conn.execute(_RECODE_BUILDINGS, {
        "grid_ids": touched_grids, "closed_codes": closed_codes, "eff": eff}).all()
    conn.execute(_DROP_GRID_SHARES, {"grid_ids": touched_grids})
    shares = conn.execute(_GRID_SHARES, {"grid_ids": touched_grids, "eff": eff,
                                         "min_share": MIN_SHARE}).rowcount

    # 5. open incidents
    moved = conn.execute(_REPLACE_INCIDENTS, {
        "closed_ids": closing_ids, "closed_codes": closed_codes, "eff": eff,
        "open": list(OPEN_STATUSES)}).mappings().all()

    # 6. grid workers
    successor = {g["grid_id"]: live_of_plan.get(g["plan_grid_id"]) for g in closing}
    assignments = conn.execute(_ASSIGNMENTS, {"ids": closing_ids, "eff": eff}).mappings().all()
    targets = [successor.get(a["grid_id"]) for a in assignments]
    reopened = conn.execute(_REOPEN_ASSIGNMENTS, {
        "eff": eff, "ids": [a["id"] for a in assignments], "new_ids": targets}).all()
    conn.execute(_END_ASSIGNMENTS, {"eff": eff, "ids": [a["id"] for a in assignments]})
    reopened_of = {(r.person_id, r.grid_id): r.id for r in reopened}
    code_by_id = {r["id"]: r["code"] for r in inserted}
    code_by_id.update({g["grid_id"]: g["code"] for g in grids if g["status"] == "unchanged"})

    # 7. announce, audit, mark applied
    event_id = None
    if touched_grids:  # a plan that changes nothing changes no tile
        box = conn.execute(_EXTENT, {"ids": touched_grids}).one()
        layers = ["grids", "buildings"] + (["incidents"] if moved else [])
        event_id = events.emit(
            conn, "boundaries.changed",
            [plan["district_code"], *sorted({c[:9] for c in codes}), *codes],
            kind="grid_plan", plan_id=plan_id, layers=layers, bbox=events.bbox(*box),
            closed=len(closing_ids), opened=len(new_ids))
    summary: dict[str, Any] = {
        "plan_id": plan_id, "status": "applied",
        "grids": {"unchanged": diff["summary"]["unchanged"],
                  "changed": diff["summary"]["changed"], "new": diff["summary"]["new"],
                  "closed": len(closing_ids), "opened": len(new_ids)},
        "opened": [{"plan_grid_id": r["plan_grid_id"], "grid_id": r["id"], "code": r["code"],
                    "status": by_plan[r["plan_grid_id"]]["status"],
                    "continues_grid_id": by_plan[r["plan_grid_id"]]["continues_grid_id"]}
                   for r in inserted],
        "closed": [{"grid_id": r.id, "code": r.code} for r in closed_rows],
        "unchanged": [{"grid_id": g["grid_id"], "code": g["code"]}
                      for g in grids if g["status"] == "unchanged"],
        "buildings_recoded": len(recoded), "building_shares": shares,
        "incidents": [{"id": r["id"], "from_grid_id": r["old_id"], "from_code": r["old_code"],
                       "to_grid_id": r["new_id"], "to_code": r["new_code"]} for r in moved],
        "assignments": [{"assignment_id": a["id"], "person_id": a["person_id"],
                         "name": a["name"], "role": a["role"], "from_grid_id": a["grid_id"],
                         "from_code": a["code"], "to_grid_id": t,
                         "to_code": code_by_id.get(t) if t is not None else None,
                         "new_assignment_id": reopened_of.get((a["person_id"], t))}
                        for a, t in zip(assignments, targets, strict=True)],
        "event_id": event_id,
        "joint_zones": "unchanged: derived from district and street boundaries only",
    }
    record(conn, actor, action="grid_plan.apply", object_type="grid_plan",
           object_id=str(plan_id),
           before={"status": "approved",
                   "grids": [{"grid_id": g["grid_id"], "code": g["code"]} for g in closing]},
           after=_audit_after(summary, diff), district_code=plan["district_code"])
    applied_at, eff_stored = conn.execute(_MARK_APPLIED, {
        "plan": plan_id, "eff": eff, "user": actor.name,
        "note": f"实施 applied: {len(closing_ids)} closed, {len(new_ids)} opened"}).one()
    summary["effective_from"] = eff_stored
    summary["applied_at"] = applied_at
    return summary


def _audit_after(summary: Mapping[str, Any], diff: Mapping[str, Any]) -> dict[str, Any]:
    """What the audit row keeps of an application (ids and codes, no geometry)."""
    keep = ("grids", "opened", "closed", "unchanged", "buildings_recoded", "building_shares",
            "incidents", "assignments", "event_id")
    out = {k: summary[k] for k in keep}
    out["status"] = "applied"
    out["households_moved"] = diff["households_moved"]
    out["buildings_moved"] = diff["buildings_moved"]
    return json.loads(json.dumps(out, default=str))
