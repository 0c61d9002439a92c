"""Editing a plan on the planner page: move cells between the plan's grids (painting),
split a grid by a drawn line snapped to the streets, merge grids, add an empty grid.

Each edit moves whole cells (gis/plan_cells.py), so the grids derived from their cells tile
the community: no gaps or overlaps can appear. Each edit returns the moves it made
(cell, from, to); the page undoes an edit by sending the moves back reversed. Grids left
empty by an edit stay (geometry NULL) so that a redo can fill them again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.errors import ShapelyError
from shapely.geometry import shape
from sqlalchemy import Connection, RowMapping, text

from gis import plan_cells, plans
from gis.audit import Actor
from gis.auth import Principal
from gis.errors import InvalidInput

MAX_MOVES = 20_000
SEGMENT_M = 5.0  # a drawn line is densified to this spacing before snapping to streets


@dataclass
class Edit:
    """What an edit did: the cell moves (for undo), the grids whose geometry changed."""

    moves: list[dict[str, Any]]
    grid_ids: set[int] = field(default_factory=set)
    created_grid_id: int | None = None
    snapped_line: dict[str, Any] | None = None


def _finish(conn: Connection, plan: RowMapping, writer: Principal, actor: Actor,
            edit: Edit, kind: str) -> Edit:
    edit.grid_ids |= {m["from"] for m in edit.moves if m["from"] is not None}
    edit.grid_ids |= {m["to"] for m in edit.moves if m["to"] is not None}
    plan_cells.rederive_grids(conn, plan["id"], sorted(edit.grid_ids))
    plans.mark_edited(conn, plan, writer, actor,
                      {"edit": kind, "cells_moved": len(edit.moves),
                       "grids": sorted(edit.grid_ids)})
    return edit


def _move(conn: Connection, plan_id: int, cell_ids: Sequence[int],
          grid_ids: Sequence[int | None]) -> list[dict[str, Any]]:
    """Set each cell's grid; return the moves that changed something."""
    rows = conn.execute(text("""
        WITH m AS (SELECT * FROM unnest(CAST(:cells AS bigint[]), CAST(:grids AS bigint[]))
                   AS m(cell_id, grid_id)),
             old AS (SELECT c.id, c.plan_grid_id AS before, m.grid_id AS after
                     FROM grid_plan_cells c JOIN m ON m.cell_id = c.id
                     WHERE c.plan_id = :plan AND c.plan_grid_id IS DISTINCT FROM m.grid_id
                     FOR UPDATE OF c)
        UPDATE grid_plan_cells c SET plan_grid_id = old.after
        FROM old WHERE c.id = old.id
        RETURNING c.id, old.before, old.after
    """), {"plan": plan_id, "cells": list(cell_ids), "grids": list(grid_ids)}).all()
    return [{"cell_id": r[0], "from": r[1], "to": r[2]} for r in sorted(rows)]


def assign(conn: Connection, plan_id: int, writer: Principal, actor: Actor,
           moves: Sequence[Mapping[str, Any]]) -> Edit:
    """Move cells to grids of the same community (`moves`: [{cell_id, grid_id}])."""
    plan = plans.locked(conn, plan_id, writer)
    if not moves:
        raise InvalidInput("moves is empty; name at least one cell and its grid", field="moves")
    if len(moves) > MAX_MOVES:
        raise InvalidInput(f"at most {MAX_MOVES} moves per request", field="moves")
    cell_ids = [int(m["cell_id"]) for m in moves]
    grid_ids = [int(m["grid_id"]) for m in moves]
    if len(set(cell_ids)) != len(cell_ids):
        raise InvalidInput("a cell is named twice in moves", field="moves")
    checks = conn.execute(text("""
        SELECT m.n, c.id IS NOT NULL AS cell_ok, g.id IS NOT NULL AS grid_ok,
               c.community_code AS cell_community, g.community_code AS grid_community
        FROM unnest(CAST(:cells AS bigint[]), CAST(:grids AS bigint[]))
             WITH ORDINALITY AS m(cell_id, grid_id, n)
        LEFT JOIN grid_plan_cells c ON c.id = m.cell_id AND c.plan_id = :plan
        LEFT JOIN grid_plan_grids g ON g.id = m.grid_id AND g.plan_id = :plan
        WHERE c.id IS NULL OR g.id IS NULL OR c.community_code <> g.community_code
        ORDER BY m.n LIMIT 1
    """), {"plan": plan_id, "cells": cell_ids, "grids": grid_ids}).mappings().one_or_none()
    if checks is not None:
        i = checks["n"] - 1
        if not checks["cell_ok"]:
            raise InvalidInput(f"cell {cell_ids[i]} is not a cell of plan {plan_id}",
                               field=f"moves[{i}].cell_id")
        if not checks["grid_ok"]:
            raise InvalidInput(f"grid {grid_ids[i]} is not a grid of plan {plan_id}",
                               field=f"moves[{i}].grid_id")
        raise InvalidInput(
            f"cell {cell_ids[i]} lies in community {checks['cell_community']} but grid "
            f"{grid_ids[i]} belongs to {checks['grid_community']}; a grid stays inside "
            "one community", field=f"moves[{i}].grid_id")
    return _finish(conn, plan, writer, actor,
                   Edit(_move(conn, plan_id, cell_ids, grid_ids)), "assign")


def add_grid(conn: Connection, plan_id: int, writer: Principal, actor: Actor,
             community_code: str, name: str | None = None) -> int:
    """A new, empty grid in one of the plan's communities, to paint cells into."""
    plan = plans.locked(conn, plan_id, writer)
    if community_code not in plan["community_codes"]:
        raise InvalidInput(f"community {community_code} is not in plan {plan_id} "
                           f"({', '.join(plan['community_codes'])})", field="community_code")
    grid_id = int(conn.scalar(text(
        "INSERT INTO grid_plan_grids (plan_id, community_code, name) "
        "VALUES (:plan, :community, :name) RETURNING id"),
        {"plan": plan_id, "community": community_code, "name": name or "新网格"}))
    plans.mark_edited(conn, plan, writer, actor, {"edit": "add_grid", "grid": grid_id})
    return grid_id


def merge(conn: Connection, plan_id: int, writer: Principal, actor: Actor,
          grid_ids: Sequence[int]) -> Edit:
    """Move every cell of the other grids into the first one (same community)."""
    plan = plans.locked(conn, plan_id, writer)
    ids = list(dict.fromkeys(int(g) for g in grid_ids))
    if len(ids) < 2:
        raise InvalidInput("name at least two different grids to merge", field="grid_ids")
    found: dict[int, str] = dict(conn.execute(text(
        "SELECT id, community_code FROM grid_plan_grids WHERE plan_id = :plan "
        "AND id = ANY(:ids)"), {"plan": plan_id, "ids": ids}).all())
    missing = [g for g in ids if g not in found]
    if missing:
        raise InvalidInput(f"grid {missing[0]} is not a grid of plan {plan_id}",
                           field="grid_ids")
    if len(set(found.values())) > 1:
        raise InvalidInput("grids of different communities cannot be merged (a grid stays "
                           "inside one community)", field="grid_ids")
    cells = list(conn.scalars(text(
        "SELECT id FROM grid_plan_cells WHERE plan_id = :plan AND plan_grid_id = ANY(:ids) "
        "ORDER BY id"), {"plan": plan_id, "ids": ids[1:]}))
    edit = Edit(_move(conn, plan_id, cells, [ids[0]] * len(cells)), set(ids))
    return _finish(conn, plan, writer, actor, edit, "merge")


def parse_line(value: Any) -> str:
    """A GeoJSON LineString in WGS84 lon/lat with at least two points, as GeoJSON text."""
    try:
        line = shape(value)
    except (ShapelyError, AttributeError, KeyError, TypeError, ValueError, IndexError):
        raise InvalidInput("line must be a GeoJSON LineString", field="line") from None
    if line.geom_type != "LineString" or line.is_empty or len(line.coords) < 2:
        raise InvalidInput(f"line must be a LineString of at least two points; got "
                           f"{line.geom_type}", field="line")
    bounds = shapely.bounds(line)
    if not (-180 <= bounds[0] <= bounds[2] <= 180 and -90 <= bounds[1] <= bounds[3] <= 90):
        raise InvalidInput("line coordinates must be lon, lat in degrees (WGS84)",
                           field="line")
    return json.dumps(shapely.geometry.mapping(line))


# The drawn line in metres, densified, each point moved onto the nearest street within the
# snap distance; the grid cut by it; each cell's piece by its representative point.
_SPLIT = text("""
    WITH grid AS (
      SELECT ST_Transform(geom, :srid) AS g FROM grid_plan_grids
      WHERE id = :grid AND plan_id = :plan AND geom IS NOT NULL
    ), drawn AS (
      SELECT ST_SetSRID(ST_GeomFromGeoJSON(:line), 4326) AS l4
    ), pts AS (
      SELECT (dp).path[1] AS n, (dp).geom AS p
      FROM (SELECT ST_DumpPoints(ST_Segmentize(ST_Transform(l4, :srid), :seg)) AS dp
            FROM drawn) x
    ), near AS (  -- streets near the line; `follows`: how much of the line runs along each
      SELECT x.s, ST_Length(ST_Intersection(x.s, ST_Buffer(ST_Transform(drawn.l4, :srid),
                                                          :snap))) AS follows
      FROM drawn, LATERAL (SELECT ST_Transform(s.geom, :srid) AS s FROM streets s
                           WHERE s.geom && ST_Expand(drawn.l4, 0.01)) x
    ), snapped AS (  -- at a crossing, a point keeps to the street the line follows
      SELECT ST_MakeLine(coalesce(
               (SELECT ST_ClosestPoint(near.s, pts.p) FROM near
                WHERE ST_DWithin(near.s, pts.p, :snap)
                ORDER BY near.follows DESC, near.s <-> pts.p LIMIT 1),
               pts.p) ORDER BY pts.n) AS l
      FROM pts
    ), pieces AS (
      SELECT (d).path[1] AS piece, (d).geom AS g
      FROM (SELECT ST_Dump(ST_Split(grid.g, ST_SimplifyPreserveTopology(snapped.l, 0.01)))
            AS d FROM grid, snapped) x
    ), cells AS (
      SELECT c.id, c.households,
             (SELECT p.piece FROM pieces p
              WHERE ST_Intersects(p.g, ST_PointOnSurface(ST_Transform(c.geom, :srid)))
              ORDER BY p.piece LIMIT 1) AS piece
      FROM grid_plan_cells c WHERE c.plan_id = :plan AND c.plan_grid_id = :grid
    )
    SELECT (SELECT count(*) FROM pieces) AS pieces,
           (SELECT ST_AsGeoJSON(ST_Transform(l, 4326), 7) FROM snapped) AS snapped,
           (SELECT json_agg(json_build_object('id', id, 'households', households,
                                              'piece', piece)) FROM cells) AS cells,
           (SELECT count(*) FROM grid) AS found
""")


def split(conn: Connection, plan_id: int, writer: Principal, actor: Actor, grid_id: int,
          line: Any, *, metric_srid: int, snap_m: float) -> Edit:
    """Cut a grid in two along a drawn line (snapped to streets within `snap_m`): the
    cells on the side holding fewer households go to a new grid."""
    plan = plans.locked(conn, plan_id, writer)
    geojson = parse_line(line)
    row = conn.execute(_SPLIT, {"plan": plan_id, "grid": grid_id, "line": geojson,
                                "srid": metric_srid, "seg": SEGMENT_M,
                                "snap": snap_m}).mappings().one()
    if not row["found"]:
        raise InvalidInput(f"grid {grid_id} is not a non-empty grid of plan {plan_id}",
                           field="grid_id")
    if row["pieces"] != 2:
        raise InvalidInput(
            "the line must cross the grid from edge to edge once, cutting it in two; it "
            f"cuts it into {row['pieces']} piece(s)", field="line")
    cells = row["cells"] or []
    by_piece: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for cell in cells:
        by_piece.setdefault(cell["piece"] or 1, []).append(cell)
    weight = {k: (sum(c["households"] for c in v), len(v)) for k, v in by_piece.items()}
    moving = by_piece[min(weight, key=lambda k: (weight[k], -k))]
    if not moving or len(moving) == len(cells):
        raise InvalidInput("the line leaves every cell of the grid on one side; draw it "
                           "between buildings", field="line")
    community = conn.scalar(text(
        "SELECT community_code FROM grid_plan_grids WHERE id = :id"), {"id": grid_id})
    new_id = int(conn.scalar(text(
        "INSERT INTO grid_plan_grids (plan_id, community_code, name) "
        "VALUES (:plan, :community, '新网格') RETURNING id"),
        {"plan": plan_id, "community": community}))
    ids = [c["id"] for c in moving]
    edit = Edit(_move(conn, plan_id, ids, [new_id] * len(ids)), {grid_id, new_id}, new_id,
                json.loads(row["snapped"]))
    return _finish(conn, plan, writer, actor, edit, "split")
