"""Diff and impact of a grid plan (网格调整方案) before it is applied: which plan grids keep
a live grid unchanged, which continue one (its code, as a new version) and which are new;
the live grids that close; households and buildings that change grid; core retention; open
incidents whose grid changes; grid workers to reassign; the areas that change grid
(GeoJSON); and the printable before/after comparison (A4 HTML with an inline SVG map).

Matching is by area overlap in the metric CRS between grids of the same community, in one SQL
statement; the rules then run on the small overlap table (pandas):
- a plan grid *continues* the live grid of which it holds the largest share, when it holds
  at least half of that grid's area and no other plan grid holds more of it (ties: the
  lowest plan grid id); it keeps that grid's code;
- it is *unchanged* when it continues its only predecessor (overlap above the tolerance),
  holds the same buildings and their symmetric difference is below the tolerance: it keeps
  its live row. A continuing grid that is not unchanged is *changed* (a new version of the
  code); a plan grid that continues nothing is *new* (a new code at apply);
- a live grid no plan grid continues is *closed*; its successor is the plan grid holding
  most of its area (grid workers go there).
Buildings are assigned by their representative point (ST_PointOnSurface), as plan cells
assign them. A building moves when its plan grid is not the continuation of its live grid.

"Live" is the grids in force now; for an applied plan, the grids in force just before its
effective date (so the comparison of an applied plan still prints what it changed).
Empty plan grids (no geometry) take no part. Incidents count as open unless closed (结案)
or void (作废): a ledger case (挂账) is unresolved and may reopen, so it moves with its grid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Connection, text

from gis.database import TIMEZONE
from gis.errors import InvalidInput, NotFound

OPEN_STATUSES = ("pending", "registered", "dispatched", "handling", "feedback", "verifying",
                 "ledger")
CONTINUE_SHARE = 0.5  # a plan grid continues a live grid when it holds at least this share
TEMPLATES_DIR = Path(__file__).resolve().parents[1] / "web" / "templates"
SVG_WIDTH = 1000.0  # SVG user units; the map prints 180 mm wide
SVG_PAD = 12.0

# The plan, its people, and the instant its "live" grids are read at.
_PLAN = text("""
    SELECT p.id, p.name, p.status, p.community_codes, p.district_code, p.revision,
           p.created_at, p.approved_at, p.applied_at, p.effective_from,
           coalesce(au.display_name, au.username) AS author,
           coalesce(rv.display_name, rv.username) AS reviewer,
           CASE WHEN p.status = 'applied' AND p.effective_from IS NOT NULL
                THEN p.effective_from - interval '1 microsecond' ELSE now() END AS at,
           (SELECT coalesce(json_agg(json_build_object('code', j.code, 'name', j.name)
                                     ORDER BY j.code), '[]')
            FROM jurisdictions j
            WHERE j.level = 'community' AND j.code = ANY(p.community_codes)
              AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now()))
             AS communities,
           (SELECT name FROM jurisdictions j WHERE j.level = 'district'
              AND j.code = p.district_code AND j.valid_to IS NULL LIMIT 1) AS district_name
    FROM grid_plans p
    LEFT JOIN users au ON au.id = p.author_id
    LEFT JOIN users rv ON rv.id = p.reviewer_id
    WHERE p.id = :plan
""")

# Live grids (o) and non-empty plan grids (p) in metres, repaired only when needed.
_IN_FORCE = "g.valid_from <= :at AND (g.valid_to IS NULL OR g.valid_to > :at)"
_FRAMES = f"""
    o AS MATERIALIZED (
      SELECT g.id, g.code, g.community_code,
             CASE WHEN ST_IsValid(t.m) THEN t.m ELSE ST_MakeValid(t.m) END AS m
      FROM grids g, LATERAL (SELECT ST_Transform(g.geom, :srid) AS m) t
      WHERE g.community_code = ANY(:codes) AND {_IN_FORCE}),
    p AS MATERIALIZED (
      SELECT pg.id, pg.community_code,
             CASE WHEN ST_IsValid(t.m) THEN t.m ELSE ST_MakeValid(t.m) END AS m
      FROM grid_plan_grids pg, LATERAL (SELECT ST_Transform(pg.geom, :srid) AS m) t
      WHERE pg.plan_id = :plan AND pg.geom IS NOT NULL)"""  # noqa: S608 - constant

_LIVE = text(f"""
    SELECT g.id, g.code, g.name, g.households, g.valid_from, g.is_synthetic,
           ST_Area(ST_Transform(g.geom, :srid)) AS area_m2
    FROM grids g
    WHERE g.community_code = ANY(:codes) AND {_IN_FORCE}
    ORDER BY g.code
""")  # noqa: S608 - constant fragments; values are bound

_PLAN_GRIDS = text("""
    SELECT pg.id, pg.code AS plan_code, pg.name, pg.community_code, pg.households,
           pg.buildings, pg.source_grid_id, ST_Area(ST_Transform(pg.geom, :srid)) AS area_m2
    FROM grid_plan_grids pg
    WHERE pg.plan_id = :plan AND pg.geom IS NOT NULL
    ORDER BY pg.community_code, pg.code NULLS LAST, pg.id
""")

_EMPTY_PLAN_GRIDS = text("""
    SELECT id FROM grid_plan_grids WHERE plan_id = :plan AND geom IS NULL ORDER BY id
""")

_OVERLAPS = text(f"""
    WITH {_FRAMES}
    SELECT o.id AS old_id, p.id AS plan_grid_id, ST_Area(ST_Intersection(o.m, p.m)) AS area_m2
    FROM o JOIN p ON o.community_code = p.community_code AND o.m && p.m
                     AND ST_Intersects(o.m, p.m)
""")  # noqa: S608 - constant fragments; values are bound

# Every building touching a live or plan grid, with the live grid and the plan grid holding
# its representative point (index probes on the real tables).
_BUILDINGS = text(f"""
    WITH cand AS (
      SELECT b.id FROM grids g JOIN buildings b ON b.geom && g.geom
      WHERE g.community_code = ANY(:codes) AND {_IN_FORCE}
      UNION
      SELECT b.id FROM grid_plan_grids pg JOIN buildings b ON b.geom && pg.geom
      WHERE pg.plan_id = :plan)
    SELECT b.id AS building_id, b.households, o.id AS old_id, p.id AS plan_grid_id
    FROM cand JOIN buildings b ON b.id = cand.id
    CROSS JOIN LATERAL (SELECT ST_PointOnSurface(b.geom) AS pt) r
    LEFT JOIN LATERAL (
      SELECT g.id FROM grids g
      WHERE g.community_code = ANY(:codes) AND {_IN_FORCE} AND ST_Intersects(g.geom, r.pt)
      ORDER BY g.code LIMIT 1) o ON true
    LEFT JOIN LATERAL (
      SELECT pg.id FROM grid_plan_grids pg
      WHERE pg.plan_id = :plan AND ST_Intersects(pg.geom, r.pt)
      ORDER BY pg.id LIMIT 1) p ON true
    WHERE o.id IS NOT NULL OR p.id IS NOT NULL
""")  # noqa: S608 - constant fragments; values are bound

_INCIDENTS = text("""
    SELECT i.id, i.status, i.grid_id, i.grid_code, i.reported_at, i.address,
           ec.name AS event_name, round(ST_X(i.geom)::numeric, 6) AS lon,
           round(ST_Y(i.geom)::numeric, 6) AS lat,
           (SELECT pg.id FROM grid_plan_grids pg
            WHERE pg.plan_id = :plan AND ST_Intersects(pg.geom, i.geom)
            ORDER BY pg.community_code IS DISTINCT FROM i.community_code, pg.id
            LIMIT 1) AS plan_grid_id
    FROM incidents i JOIN event_classes ec ON ec.id = i.event_class_id
    WHERE i.grid_code = ANY(:grid_codes) AND i.grid_id = ANY(:grid_ids)
      AND i.status = ANY(:open)
    ORDER BY i.id
""")

_WORKERS = text("""
    SELECT a.id AS assignment_id, a.person_id, pe.name, pe.phone, a.role, a.grid_id,
           g.code AS from_code, a.valid_from
    FROM grid_assignments a
    JOIN people pe ON pe.id = a.person_id
    JOIN grids g ON g.id = a.grid_id
    WHERE a.grid_id = ANY(:grid_ids) AND (a.valid_to IS NULL OR a.valid_to > :at)
    ORDER BY g.code, a.role, pe.name, a.id
""")

# The pieces that change grid: old ∩ new for the given pairs (overlapping, the new grid not
# continuing the old one), and the parts of the given changing old grids no plan grid
# covers and of the given changing plan grids no live grid covered.
_DIFFERENCE = text(f"""
    WITH {_FRAMES},
    pieces AS (
      SELECT o.id AS from_grid_id, o.code AS from_code, p.id AS to_plan_grid_id,
             ST_CollectionExtract(ST_Intersection(o.m, p.m), 3) AS g
      FROM unnest(CAST(:pair_old AS bigint[]), CAST(:pair_new AS bigint[])) AS x(old_id, pid)
      JOIN o ON o.id = x.old_id JOIN p ON p.id = x.pid
      UNION ALL
      SELECT o.id, o.code, NULL,
             ST_CollectionExtract(coalesce(ST_Difference(o.m, (
               SELECT ST_Union(p.m) FROM p WHERE p.m && o.m)), o.m), 3)
      FROM o WHERE o.id = ANY(:changing_old)
      UNION ALL
      SELECT NULL, NULL, p.id,
             ST_CollectionExtract(coalesce(ST_Difference(p.m, (
               SELECT ST_Union(o.m) FROM o WHERE o.m && p.m)), p.m), 3)
      FROM p WHERE p.id = ANY(:changing_new))
    SELECT coalesce(json_agg(json_build_object(
             'type', 'Feature',
             'geometry', ST_AsGeoJSON(ST_Multi(ST_Transform(g, 4326)), 7)::json,
             'properties', json_build_object(
               'from_grid_id', from_grid_id, 'from_code', from_code,
               'to_plan_grid_id', to_plan_grid_id, 'area_m2', round(ST_Area(g)::numeric, 2)))
           ORDER BY from_code NULLS LAST, to_plan_grid_id NULLS LAST), '[]'::json)
    FROM pieces
    WHERE NOT ST_IsEmpty(g) AND ST_Area(g) >= :tol
""")  # noqa: S608 - constant fragments; values are bound


def _plan(conn: Connection, plan_id: int) -> dict[str, Any]:
    row = conn.execute(_PLAN, {"plan": plan_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no grid plan {plan_id}", field="plan_id")
    return dict(row)


def _check(metric_srid: int, tolerance_m2: float) -> None:
    if not (isinstance(metric_srid, int) and metric_srid > 0):
        raise InvalidInput(f"metric_srid must be a positive EPSG code; got {metric_srid!r}",
                           field="metric_srid")
    if not (math.isfinite(tolerance_m2) and tolerance_m2 > 0):
        raise InvalidInput(f"tolerance_m2 must be a positive number of m²; got {tolerance_m2!r}",
                           field="tolerance_m2")


def _r(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def _ids(values: pd.Series) -> pd.Series:
    """A column of ids (None allowed) as floats with NaN for None (exact below 2**53)."""
    return pd.to_numeric(values, errors="coerce").astype(float)


def _match(live: pd.DataFrame, planned: pd.DataFrame, overlaps: pd.DataFrame,
           blds: pd.DataFrame, tolerance_m2: float) -> dict[str, Any]:
    """The matching rules on the overlap table: which plan grid continues which live grid,
    each plan grid's status, the plan grid holding most of each live grid, and which
    buildings move (see the module docstring)."""
    old_area = live.set_index("id")["area_m2"].astype(float)
    plan_area = planned.set_index("id")["area_m2"].astype(float)
    ov = overlaps[overlaps["area_m2"] > tolerance_m2].copy()
    ov["share_old"] = ov["area_m2"] / ov["old_id"].map(old_area)
    # The plan grid holding most of each old grid (ties: lowest plan grid id).
    top = (ov.sort_values(["old_id", "area_m2", "plan_grid_id"], ascending=[True, False, True])
           .drop_duplicates("old_id").set_index("old_id"))
    # The old grid of which each plan grid holds the largest share (ties: lowest old id).
    best = (ov.sort_values(["plan_grid_id", "share_old", "old_id"],
                           ascending=[True, False, True])
            .drop_duplicates("plan_grid_id"))
    best = best[(best["share_old"] >= CONTINUE_SHARE)
                & (best["old_id"].map(top["plan_grid_id"]) == best["plan_grid_id"])]
    continues = {int(p): int(o) for p, o in zip(best["plan_grid_id"], best["old_id"],
                                                strict=True)}
    continued_by = {o: p for p, o in continues.items()}

    old_id, plan_id = _ids(blds["old_id"]), _ids(blds["plan_grid_id"])
    cont = old_id.map(lambda o: continued_by.get(int(o), math.nan) if o == o else math.nan)
    moved = old_id.isna() | plan_id.isna() | cont.ne(plan_id)

    pairs = ov.set_index(["old_id", "plan_grid_id"])["area_m2"]
    n_preds = ov.groupby("plan_grid_id")["old_id"].nunique()
    old_set = blds.groupby(old_id)["building_id"].agg(frozenset)
    new_set = blds.groupby(plan_id)["building_id"].agg(frozenset)
    status: dict[int, str] = {}
    for pid in planned["id"].astype(int):
        old = continues.get(pid)
        if old is None:
            status[pid] = "new"
            continue
        symdiff = float(old_area[old] + plan_area[pid] - 2 * pairs[(old, pid)])
        same = old_set.get(float(old), frozenset()) == new_set.get(float(pid), frozenset())
        status[pid] = ("unchanged" if int(n_preds.get(pid, 0)) == 1
                       and symdiff < tolerance_m2 and same else "changed")
    return {"ov": ov, "top": top, "pairs": pairs, "continues": continues,
            "continued_by": continued_by, "status": status, "moved": moved,
            "old_id": old_id, "plan_id": plan_id}


def plan_diff(conn: Connection, plan_id: int, metric_srid: int,
              tolerance_m2: float) -> dict[str, Any]:
    """The diff and impact of plan `plan_id` against the live grids of its communities.

    Returns {"plan": {id, name, status, author, reviewer, effective_from, …, communities},
    "reference": {at, kind live|before_apply}, "rules": {metric_srid, tolerance_m2,
    continue_share, building_rule}, "grids": [{plan_grid_id, name, community_code, status
    unchanged|changed|new, code (kept, or None for a new grid), plan_code, grid_id (the
    live row an unchanged grid keeps), continues_grid_id, predecessors [{grid_id, code,
    share_of_old, area_m2}], core_retention (share of the continued grid's area it keeps),
    core_retention_households (share of its households), households, households_before,
    buildings, buildings_moved_in, buildings_moved_out, area_m2}], "old_grids": [{grid_id,
    code, name, households, area_m2, fate unchanged|continued|closed, plan_grid_id}],
    "closed": [{grid_id, code, households, successor_plan_grid_id, successor_share}],
    "households_moved", "buildings_moved", "open_incidents": [{id, status, event_name,
    address, reported_at, from_grid_id, from_code, to_plan_grid_id, to_code, lon, lat}],
    "grid_workers": [{assignment_id, person_id, name, phone, role, from_grid_id, from_code,
    to_plan_grid_id, to_code, reassign (True: the old code ends)}], "difference":
    FeatureCollection (EPSG:4326) of the areas changing grid {from_grid_id, from_code,
    to_plan_grid_id, to_code, area_m2}, "summary": {counts, moved_area_m2},
    "empty_plan_grids": [ids]}.

    Open incidents are listed when their grid code changes (an incident in a continued
    grid stays in that code); grid workers of every closed or continued grid are listed
    (`reassign` False: their grid continues under its code as a new version).
    NotFound for an unknown plan; InvalidInput for a bad srid or tolerance."""
    _check(metric_srid, tolerance_m2)
    plan = _plan(conn, plan_id)
    # PostGIS functions' unknown costs inflate the estimates past the JIT threshold; JIT
    # compiling costs more than these statements run (for this transaction only).
    conn.execute(text("SET LOCAL jit = off"))
    params = {"plan": plan_id, "codes": list(plan["community_codes"]), "at": plan["at"],
              "srid": metric_srid}
    live = pd.DataFrame(conn.execute(_LIVE, params).mappings().all(),
                        columns=["id", "code", "name", "households", "valid_from",
                                 "is_synthetic", "area_m2"])
    planned = pd.DataFrame(conn.execute(_PLAN_GRIDS, params).mappings().all(),
                           columns=["id", "plan_code", "name", "community_code", "households",
                                    "buildings", "source_grid_id", "area_m2"])
    for frame, columns in ((live, ["name"]), (planned, ["plan_code", "name"])):
        for column in columns:  # text columns keep None (not NaN) for missing values
            frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    overlaps = pd.DataFrame(conn.execute(_OVERLAPS, params).mappings().all(),
                            columns=["old_id", "plan_grid_id", "area_m2"])
    blds = pd.DataFrame(conn.execute(_BUILDINGS, params).mappings().all(),
                        columns=["building_id", "households", "old_id", "plan_grid_id"])
    m = _match(live, planned, overlaps, blds, tolerance_m2)
    continues, continued_by, status = m["continues"], m["continued_by"], m["status"]
    ov, top, pairs, moved = m["ov"], m["top"], m["pairs"], m["moved"]
    old_id, plan_ids = m["old_id"], m["plan_id"]

    old_rows = live.set_index("id")
    code_of_old = {int(k): v for k, v in old_rows["code"].items()}
    hh = blds["households"].astype(int)
    hh_before = hh.groupby(old_id).sum()
    hh_kept = hh[~moved].groupby(old_id[~moved]).sum()
    n_new = plan_ids.value_counts()
    moved_in = plan_ids[moved].value_counts()
    moved_out = old_id[moved].value_counts()
    preds = {int(k): g for k, g in ov.sort_values(["share_old", "old_id"],
                                                   ascending=[False, True])
             .groupby("plan_grid_id")}

    grids: list[dict[str, Any]] = []
    for row in planned.itertuples(index=False):
        pid = int(row.id)
        old = continues.get(pid)
        mine = preds.get(pid, ov.iloc[0:0])
        before_hh = int(hh_before.get(float(old), 0)) if old is not None else 0
        grids.append({
            "plan_grid_id": pid, "name": row.name, "community_code": row.community_code,
            "status": status[pid], "code": code_of_old.get(old) if old is not None else None,
            "plan_code": row.plan_code,
            "grid_id": old if status[pid] == "unchanged" else None,
            "continues_grid_id": old,
            "predecessors": [{"grid_id": int(o.old_id), "code": code_of_old[int(o.old_id)],
                              "share_of_old": _r(o.share_old), "area_m2": _r(o.area_m2, 2)}
                             for o in mine.itertuples(index=False)],
            "core_retention": (_r(float(pairs[(old, pid)]) / float(old_rows.loc[old, "area_m2"]))
                               if old is not None else None),
            "core_retention_households": (
                _r(int(hh_kept.get(float(old), 0)) / before_hh)
                if old is not None and before_hh else None),
            "households": int(row.households),
            "households_before": (int(old_rows.loc[old, "households"])
                                  if old is not None else None),
            "buildings": int(n_new.get(float(pid), 0)),
            "buildings_moved_in": int(moved_in.get(float(pid), 0)),
            "buildings_moved_out": (int(moved_out.get(float(old), 0))
                                    if old is not None else 0),
            "area_m2": _r(float(row.area_m2), 2),
        })

    old_grids: list[dict[str, Any]] = []
    closed: list[dict[str, Any]] = []
    for row in live.itertuples(index=False):
        gid = int(row.id)
        successor = int(top.loc[gid, "plan_grid_id"]) if gid in top.index else None
        share = _r(float(top.loc[gid, "share_old"])) if gid in top.index else None
        pid = continued_by.get(gid)
        fate = ("closed" if pid is None else
                "unchanged" if status[pid] == "unchanged" else "continued")
        old_grids.append({"grid_id": gid, "code": row.code, "name": row.name,
                          "households": int(row.households), "area_m2": _r(row.area_m2, 2),
                          "fate": fate, "plan_grid_id": pid if pid is not None else successor})
        if pid is None:
            closed.append({"grid_id": gid, "code": row.code, "households": int(row.households),
                           "successor_plan_grid_id": successor, "successor_share": share})

    changing = [g["grid_id"] for g in old_grids if g["fate"] != "unchanged"]
    code_of_plan = {g["plan_grid_id"]: g["code"] for g in grids}
    successor_of = {g["grid_id"]: g["plan_grid_id"] for g in old_grids}

    incidents = []
    for r in conn.execute(_INCIDENTS, {
            **params, "grid_ids": changing, "open": list(OPEN_STATUSES),
            "grid_codes": [code_of_old[g] for g in changing]}).mappings():
        to = r["plan_grid_id"]
        if to is not None and continued_by.get(int(r["grid_id"])) == int(to):
            continue  # its grid continues under the same code
        incidents.append({"id": r["id"], "status": r["status"], "event_name": r["event_name"],
                          "address": r["address"], "reported_at": r["reported_at"],
                          "from_grid_id": r["grid_id"], "from_code": r["grid_code"],
                          "to_plan_grid_id": to,
                          "to_code": code_of_plan.get(int(to)) if to is not None else None,
                          "lon": float(r["lon"]), "lat": float(r["lat"])})

    workers = []
    for r in conn.execute(_WORKERS, {**params, "grid_ids": changing}).mappings():
        to = successor_of.get(int(r["grid_id"]))
        workers.append({"assignment_id": r["assignment_id"], "person_id": r["person_id"],
                        "name": r["name"], "phone": r["phone"], "role": r["role"],
                        "from_grid_id": r["grid_id"], "from_code": r["from_code"],
                        "to_plan_grid_id": to,
                        "to_code": code_of_plan.get(to) if to is not None else None,
                        "reassign": int(r["grid_id"]) not in continued_by})

    pairs_moving = ov[ov["old_id"].map(continued_by) != ov["plan_grid_id"]]
    features = conn.scalar(_DIFFERENCE, {
        **params, "tol": tolerance_m2,
        "pair_old": [int(v) for v in pairs_moving["old_id"]],
        "pair_new": [int(v) for v in pairs_moving["plan_grid_id"]],
        "changing_old": changing,
        "changing_new": [g["plan_grid_id"] for g in grids if g["status"] != "unchanged"],
    }) or []
    for feature in features:
        props = feature["properties"]
        to = props["to_plan_grid_id"]
        props["to_code"] = code_of_plan.get(to) if to is not None else None
        props["area_m2"] = float(props["area_m2"])

    counts = {s: sum(1 for g in grids if g["status"] == s)
              for s in ("unchanged", "changed", "new")}
    summary = {
        "grids_before": len(live), "grids_after": len(planned), **counts,
        "closed": len(closed), "households_before": int(live["households"].sum()),
        "households_after": int(planned["households"].sum()),
        "households_moved": int(hh[moved].sum()), "buildings_moved": int(moved.sum()),
        "buildings": len(blds), "open_incidents": len(incidents),
        "grid_workers": len(workers),
        "grid_workers_to_reassign": sum(1 for w in workers if w["reassign"]),
        "moved_area_m2": _r(sum(f["properties"]["area_m2"] for f in features), 2),
    }
    return {
        "plan": {k: plan[k] for k in (
            "id", "name", "status", "community_codes", "district_code", "district_name",
            "revision", "created_at", "approved_at", "applied_at", "effective_from", "author",
            "reviewer", "communities")},
        "reference": {"at": plan["at"],
                      "kind": "before_apply" if plan["status"] == "applied" else "live"},
        "rules": {"metric_srid": metric_srid, "tolerance_m2": tolerance_m2,
                  "continue_share": CONTINUE_SHARE,
                  "building_rule": "representative point (ST_PointOnSurface)"},
        "grids": grids, "old_grids": old_grids, "closed": closed,
        "households_moved": summary["households_moved"],
        "buildings_moved": summary["buildings_moved"],
        "open_incidents": incidents, "grid_workers": workers,
        "difference": {"type": "FeatureCollection", "features": features},
        "summary": summary,
        "empty_plan_grids": [int(i) for i in conn.scalars(_EMPTY_PLAN_GRIDS,
                                                         {"plan": plan_id})],
    }


# -- the printable comparison ------------------------------------------------------------------

# The map's extent: the changing grids (old and new), else every grid of the plan.
_EXTENT = text(f"""
    WITH {_FRAMES}
    SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e)
    FROM (SELECT coalesce(
            (SELECT ST_Extent(m) FROM (SELECT m FROM o WHERE o.id = ANY(:changing_old)
                                       UNION ALL
                                       SELECT m FROM p WHERE p.id = ANY(:changing_new)) x),
            (SELECT ST_Extent(m) FROM (SELECT m FROM o UNION ALL SELECT m FROM p) y)) AS e) z
""")  # noqa: S608 - constant fragments; values are bound

# Geometries in the map box as SVG path data: simplified to half a unit, scaled by :s and
# moved so the box's top-left corner lands at (:pad_x, :pad_y) (ST_AsSVG negates y). Only
# geometries meeting the box; unchanged plan grids are the context layer 'same'.
_SVG_OF = ("ST_AsSVG(ST_Affine(ST_SimplifyPreserveTopology({g}, :simplify), "
           ":s, 0, 0, :s, :xoff, :yoff), 0, 1)")
_SVG_PATHS = text(f"""
    WITH {_FRAMES},
    box AS (SELECT ST_MakeEnvelope(:minx, :miny, :maxx, :maxy, :srid) AS b),
    d AS (SELECT ST_Transform(ST_SetSRID(ST_GeomFromGeoJSON(f ->> 'geometry'), 4326), :srid)
                 AS m
          FROM jsonb_array_elements(CAST(:features AS jsonb)) AS f)
    SELECT 'old' AS layer, o.id, {_SVG_OF.format(g="o.m")} AS path,
           NULL::float8 AS x, NULL::float8 AS y
    FROM o, box WHERE o.id = ANY(:changing_old) AND o.m && box.b
    UNION ALL
    SELECT CASE WHEN p.id = ANY(:changing_new) THEN 'new' ELSE 'same' END, p.id,
           {_SVG_OF.format(g="p.m")},
           (ST_X(q) - :minx) * :s + :pad_x, (:maxy - ST_Y(q)) * :s + :pad_y
    FROM p, box, LATERAL (SELECT ST_PointOnSurface(p.m) AS q) l
    WHERE p.m && box.b
    UNION ALL
    SELECT 'diff', NULL, {_SVG_OF.format(g="d.m")}, NULL, NULL FROM d
""")  # noqa: S608 - constant fragments; values are bound

STATUS_ZH = {"unchanged": "不变", "changed": "调整", "new": "新增", "closed": "撤销",
             "continued": "调整"}
PLAN_STATUS_ZH = {"draft": "草稿", "validated": "已校验", "approved": "已批准",
                  "applied": "已实施", "rejected": "已驳回"}
INCIDENT_STATUS_ZH = {"pending": "待受理", "registered": "立案", "dispatched": "派遣",
                      "handling": "处置中", "feedback": "处置反馈", "verifying": "核查",
                      "ledger": "挂账"}
ROLE_ZH = {"grid_worker": "网格员", "grid_leader": "网格长"}


def svg_map(conn: Connection, diff: Mapping[str, Any], metric_srid: int) -> dict[str, Any]:
    """The comparison map of a diff, framed on the grids that change (all grids when none
    does): {width, height, old [{id, path}] (live grids that close or change), new [{id,
    path, x, y, label, status}] (changed and new plan grids), same [{id, path}] (unchanged
    grids, for context), diff [path] (areas changing grid)} in SVG user units, north up,
    one scale for both axes; PostGIS projects from the metric CRS with the parameters
    computed here."""
    plan = diff["plan"]
    changing_old = [g["grid_id"] for g in diff["old_grids"] if g["fate"] != "unchanged"]
    changing_new = [g["plan_grid_id"] for g in diff["grids"] if g["status"] != "unchanged"]
    params = {"plan": plan["id"], "codes": list(plan["community_codes"]),
              "at": diff["reference"]["at"], "srid": metric_srid,
              "changing_old": changing_old, "changing_new": changing_new}
    minx, miny, maxx, maxy = conn.execute(_EXTENT, params).one()
    empty: dict[str, Any] = {"width": SVG_WIDTH, "height": SVG_WIDTH / 2, "old": [],
                             "new": [], "same": [], "diff": []}
    if minx is None:
        return empty
    margin = 0.1 * max(maxx - minx, maxy - miny, 50.0)
    minx, miny, maxx, maxy = minx - margin, miny - margin, maxx + margin, maxy + margin
    dx, dy = maxx - minx, maxy - miny
    height = min(max(SVG_WIDTH * dy / dx, 300.0), 1300.0)
    s = min((SVG_WIDTH - 2 * SVG_PAD) / dx, (height - 2 * SVG_PAD) / dy)
    pad_x, pad_y = (SVG_WIDTH - dx * s) / 2, (height - dy * s) / 2
    rows = conn.execute(_SVG_PATHS, {
        **params, "features": json.dumps(diff["difference"]["features"]),
        "simplify": 0.5 / s, "s": s, "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy,
        "pad_x": pad_x, "pad_y": pad_y, "xoff": pad_x - minx * s,
        "yoff": -(maxy * s + pad_y)}).all()
    by_plan = {g["plan_grid_id"]: g for g in diff["grids"]}
    out = {**empty, "height": round(height, 1)}
    for r in rows:
        if r.layer in ("new", "same"):
            g = by_plan.get(int(r.id), {})
            code = g.get("code")
            out[r.layer].append({"id": r.id, "path": r.path, "x": round(r.x, 1),
                                 "y": round(r.y, 1), "status": g.get("status"),
                                 "label": code[-3:] if code else f"新{r.id}"})
        elif r.layer == "old":
            out["old"].append({"id": r.id, "path": r.path})
        elif r.path:
            out["diff"].append(r.path)
    return out


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES_DIR),
                      autoescape=select_autoescape(["html"]), trim_blocks=True,
                      lstrip_blocks=True)
    env.filters["when"] = _when
    env.filters["pct"] = _pct
    return env


def _when(value: datetime | None) -> str:
    """A time as Beijing local time (the database session's zone, gis.database)."""
    if value is None:
        return "—"
    if value.tzinfo is not None:
        value = value.astimezone(ZoneInfo(TIMEZONE))
    return value.strftime("%Y-%m-%d %H:%M")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def comparison_html(conn: Connection, plan_id: int, metric_srid: int = 4548,
                    tolerance_m2: float = 1.0, *, diff: Mapping[str, Any] | None = None,
                    generated_at: datetime | None = None) -> str:
    """The printable before/after comparison of plan `plan_id` (A4 HTML): plan name, status,
    author, reviewer, effective date; summary numbers; per-grid before/after table; open
    incidents and grid workers affected; an inline SVG map with old boundaries dashed, new
    ones solid and the areas changing grid hatched. No JavaScript, no external resources.
    `diff` reuses a plan_diff result computed with the same srid and tolerance."""
    diff = diff if diff is not None else plan_diff(conn, plan_id, metric_srid, tolerance_m2)
    now = generated_at or conn.scalar(text("SELECT now()"))
    return _environment().get_template("plan_comparison.html").render(
        d=diff, plan=diff["plan"], summary=diff["summary"], svg=svg_map(conn, diff, metric_srid),
        generated_at=now, status_zh=STATUS_ZH, plan_status_zh=PLAN_STATUS_ZH,
        incident_status_zh=INCIDENT_STATUS_ZH, role_zh=ROLE_ZH,
        old_code={g["grid_id"]: g["code"] for g in diff["old_grids"]})
