"""A small world for grid-plan tests: one street office (广外, 西城) with two communities.

Community 110102020001 is a 400 m × 300 m rectangle with two live grids, 001 (west half)
and 002 (east half), split by a north–south street; an east–west street crosses both.
Each of its grids holds 12 buildings of 35 households (420). Community 110102020002, east
of it, has one grid 001 with 12 buildings of 30 households (360). Users: two planners, an
admin, a viewer, a planner scoped to 丰台 and a dispatcher.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Engine, text

from gis import users
from gis.audit import Actor

PASSWORD = "correct horse battery"
X0, Y0 = 116.300, 39.900
DX, DY = 400 / 85_300, 300 / 111_000  # degrees for 400 m east and 300 m north
COMMUNITY_A, COMMUNITY_B = "110102020001", "110102020002"
GRID_WEST, GRID_EAST, GRID_B = "110102020001001", "110102020001002", "110102020002001"
HOUSEHOLDS_A, HOUSEHOLDS_B = 35, 30


def box(x0: float, y0: float, x1: float, y1: float) -> str:
    return f"MULTIPOLYGON((({x0} {y0},{x1} {y0},{x1} {y1},{x0} {y1},{x0} {y0})))"


@dataclass
class PlanWorld:
    """What build_plan_world made: building ids by live grid code."""

    buildings: dict[str, list[int]] = field(default_factory=dict)


def _buildings(x0: float, y0: float, width: float, households: int) -> list[str]:
    """12 footprints (3 columns × 4 rows, 20 m × 15 m) spread inside a cell of the given
    width and the community's height, clear of the streets."""
    bw, bh = 20 / 85_300, 15 / 111_000
    out = []
    for col in range(3):
        for row in range(4):
            x = x0 + width * (col + 0.5) / 3 - bw / 2
            y = y0 + DY * (row + 0.5) / 4 - bh / 2 + (0.0002 if row >= 2 else -0.0002)
            out.append(box(x, y, x + bw, y + bh))
    return out


def build_plan_world(engine: Engine) -> PlanWorld:
    world = PlanWorld()
    mid = X0 + DX / 2
    with engine.begin() as conn:
        for level, code, name, geom in (
            ("district", "110102", "西城区", box(X0 - 0.02, Y0 - 0.02, X0 + 0.05, Y0 + 0.02)),
            ("district", "110106", "丰台区", box(X0 - 0.02, Y0 - 0.06, X0 + 0.05, Y0 - 0.02)),
            ("street", "110102020", "广安门外街道", box(X0, Y0, X0 + 2 * DX, Y0 + DY)),
            ("community", COMMUNITY_A, "测试一社区", box(X0, Y0, X0 + DX, Y0 + DY)),
            ("community", COMMUNITY_B, "测试二社区", box(X0 + DX, Y0, X0 + 2 * DX, Y0 + DY)),
        ):
            conn.execute(text("INSERT INTO jurisdictions (level, code, name, geom) "
                              "VALUES (:l, :c, :n, ST_GeomFromText(:g, 4326))"),
                         {"l": level, "c": code, "n": name, "g": geom})
        grids = ((GRID_WEST, X0, mid, HOUSEHOLDS_A), (GRID_EAST, mid, X0 + DX, HOUSEHOLDS_A),
                 (GRID_B, X0 + DX, X0 + 2 * DX, HOUSEHOLDS_B))
        for code, x0, x1, households in grids:
            conn.execute(text(
                "INSERT INTO grids (code, name, households, geom) "
                "VALUES (:c, :n, :h, ST_GeomFromText(:g, 4326))"),
                {"c": code, "n": f"网格{code[-3:]}", "h": 12 * households,
                 "g": box(x0, Y0, x1, Y0 + DY)})
            world.buildings[code] = [int(conn.scalar(text(
                "INSERT INTO buildings (district_code, grid_code, households, geom) "
                "VALUES ('110102', :grid, :h, ST_GeomFromText(:g, 4326)) RETURNING id"),
                {"grid": code, "h": households, "g": footprint}))
                for footprint in _buildings(x0, Y0, x1 - x0, households)]
        for name, line in (
            ("测试南北街", f"MULTILINESTRING(({mid} {Y0 - 0.001},{mid} {Y0 + DY + 0.001}))"),
            ("测试东西街", f"MULTILINESTRING(({X0 - 0.001} {Y0 + DY / 2},"
                           f"{X0 + 2 * DX + 0.001} {Y0 + DY / 2}))"),
        ):
            conn.execute(text(
                "INSERT INTO streets (name, road_class, district_code, street_office_code, "
                "geom) VALUES (:n, 'branch', '110102', '110102020', "
                "ST_GeomFromText(:g, 4326))"), {"n": name, "g": line})
        for username, roles, scope in (
            ("planner", ["planner"], []), ("planner2", ["planner"], []),
            ("admin", ["admin"], []), ("viewer", ["viewer"], []),
            ("planner_ft", ["planner"], ["110106"]), ("op_ft", ["operator"], ["110106"]),
        ):
            users.add_user(conn, username=username, password=PASSWORD, roles=roles,
                           scope_codes=scope, by=Actor("test"))
    return world
