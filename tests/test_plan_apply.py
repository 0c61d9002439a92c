"""Applying a grid plan (gis/plan_apply.py) on the crafted world of tests/test_plan_diff.py:
A unchanged (…001 keeps its row), P3 continues B (…002 as a new version), C closes, P2 and
P4 are new (…004 and …005, the next numbers after the highest ever used). Open incidents,
grid workers, building grid codes and grid-level shares follow; closed incidents keep
their historical grid; "which grid held this point at time t" answers the old grid before
the effective date and the new one after; a failure mid-apply leaves everything as it was;
only an approved, up-to-date plan applies."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from gis import events, tiles
from gis.audit import Actor
from gis.errors import Conflict, InvalidInput
from gis.plan_apply import apply_plan
from gis.plan_diff import plan_diff
from tests.test_plan_diff import (
    COMMUNITY,
    POINT,
    SRID,
    TOL,
    World,
    build_world,
    code,
)

ACTOR = Actor("planner_b", user_id=None)
BJ = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def world(engine: Engine) -> World:
    with engine.begin() as conn:
        return build_world(conn)


def _apply(engine: Engine, plan_id: int, effective_from: datetime | None = None
           ) -> dict[str, Any]:
    with engine.begin() as conn:
        return apply_plan(conn, plan_id, ACTOR, SRID, TOL, effective_from)


def _rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params).mappings())


def _grid(engine: Engine, grid_id: int) -> Any:
    return _rows(engine, "SELECT * FROM grids WHERE id = :i", i=grid_id)[0]


def test_apply_closes_opens_and_moves_what_hangs_on_grids(engine: Engine,
                                                         world: World) -> None:
    out = _apply(engine, world.plan_id)
    eff = out["effective_from"]
    assert out["status"] == "applied"
    assert out["grids"] == {"unchanged": 1, "changed": 1, "new": 2, "closed": 2, "opened": 3}
    # Unchanged: A keeps its row and code, untouched.
    a = _grid(engine, world.grids["A"])
    assert (a["code"], a["valid_to"], a["plan_id"]) == (code(1), None, None)
    # B and C closed at the effective date; the closed rows stay.
    for key in ("B", "C"):
        assert _grid(engine, world.grids[key])["valid_to"] == eff
    live = {r["code"]: r for r in _rows(engine, """
        SELECT g.*, ST_Equals(g.geom, pg.geom) AS same_geom
        FROM grids g LEFT JOIN grid_plan_grids pg
          ON pg.id = (g.properties ->> 'plan_grid_id')::bigint
        WHERE g.valid_to IS NULL ORDER BY g.code""")}
    assert sorted(live) == [code(1), code(2), code(4), code(5)]
    b2 = live[code(2)]  # B continued by P3: same code, a new version
    assert b2["id"] != world.grids["B"]
    assert (b2["valid_from"], b2["plan_id"], b2["source"], b2["households"]) == (
        eff, world.plan_id, "plan", 270)
    assert b2["same_geom"] and b2["name"] == "第2网格" and b2["is_synthetic"]
    assert b2["properties"]["plan_grid_id"] == world.plan_grids["P3"]
    assert b2["properties"]["continues_grid_id"] == world.grids["B"]
    new_of = {r["properties"]["plan_grid_id"]: c for c, r in live.items() if r["plan_id"]}
    assert new_of[world.plan_grids["P2"]] == code(4)  # next after the highest ever used
    assert new_of[world.plan_grids["P4"]] == code(5)  # its plan code …003 is C's: not reused
    assert live[code(4)]["valid_from"] == eff and live[code(4)]["households"] == 120
    assert _rows(engine, "SELECT count(*) AS n FROM grid_parts WHERE grid_id = :i",
                 i=b2["id"])[0]["n"] >= 1

    # Open incidents re-placed (even in a continued grid: its row changed); the closed one
    # keeps the grid that held it; the one in the unchanged grid is untouched.
    inc = {r["id"]: r for r in _rows(engine, "SELECT id, grid_id, grid_code, community_code "
                                             "FROM incidents")}
    i = world.incidents
    assert (inc[i["i_c"]]["grid_id"], inc[i["i_c"]]["grid_code"]) == (b2["id"], code(2))
    assert (inc[i["i_b"]]["grid_id"], inc[i["i_b"]]["grid_code"]) == (b2["id"], code(2))
    assert (inc[i["i_b2"]]["grid_id"], inc[i["i_b2"]]["grid_code"]) == (
        live[code(4)]["id"], code(4))
    assert (inc[i["i_closed"]]["grid_id"], inc[i["i_closed"]]["grid_code"]) == (
        world.grids["C"], code(3))
    assert (inc[i["i_a"]]["grid_id"], inc[i["i_a"]]["grid_code"]) == (world.grids["A"], code(1))
    assert {x["id"] for x in out["incidents"]} == {i["i_c"], i["i_b"], i["i_b2"]}

    # Grid workers: the old assignment ends, the same person and role start on the successor.
    asg = _rows(engine, "SELECT * FROM grid_assignments ORDER BY id")
    by_id = {r["id"]: r for r in asg}
    for key, role in (("w_c", "grid_worker"), ("w_b", "grid_leader")):
        assert by_id[world.assignments[key]]["valid_to"] == eff
        new = [r for r in asg if r["person_id"] == world.people[key] and r["valid_to"] is None]
        assert [(r["grid_id"], r["role"], r["valid_from"]) for r in new] == [
            (b2["id"], role, eff)]
    assert by_id[world.assignments["w_a"]]["valid_to"] is None
    assert by_id[world.assignments["w_a"]]["grid_id"] == world.grids["A"]
    moved = {x["person_id"]: x for x in out["assignments"]}
    assert moved[world.people["w_c"]]["to_code"] == code(2)
    assert moved[world.people["w_c"]]["from_code"] == code(3)

    # Buildings: the grid holding their representative point; the straddler's grid shares.
    codes = {r["name"]: r["grid_code"] for r in _rows(engine, "SELECT name, grid_code "
                                                              "FROM buildings")}
    assert codes == {"b1": code(1), "b2": code(4), "b3": code(2), "b4": code(2),
                     "b5": code(5), "b6": code(2)}
    shares = {(r["name"], r["code"]): r["share"] for r in _rows(engine, """
        SELECT b.name, s.code, s.share FROM building_shares s
        JOIN buildings b ON b.id = s.building_id WHERE s.level = 'grid'""")}
    assert shares == {("b6", code(2)): pytest.approx(8 / 14, abs=2e-3),
                      ("b6", code(5)): pytest.approx(6 / 14, abs=2e-3)}

    # The plan, the audit row and the live event for the tile caches.
    plan = _rows(engine, "SELECT * FROM grid_plans WHERE id = :p", p=world.plan_id)[0]
    assert (plan["status"], plan["effective_from"]) == ("applied", eff)
    assert plan["applied_at"] is not None and plan["comments"][-1]["to"] == "applied"
    audit = _rows(engine, "SELECT * FROM audit_log WHERE action = 'grid_plan.apply'")
    assert len(audit) == 1 and audit[0]["object_id"] == str(world.plan_id)
    assert audit[0]["actor"] == "planner_b" and audit[0]["district_code"] == "110102"
    assert {g["code"] for g in audit[0]["before"]["grids"]} == {code(2), code(3)}
    assert audit[0]["after"]["status"] == "applied"
    assert {g["code"] for g in audit[0]["after"]["opened"]} == {code(2), code(4), code(5)}
    event = _rows(engine, "SELECT * FROM live_events WHERE id = :i", i=out["event_id"])[0]
    assert event["type"] == "boundaries.changed"
    assert event["payload"]["kind"] == "grid_plan"
    assert set(event["payload"]["layers"]) == {"grids", "buildings", "incidents"}
    minx, miny, maxx, maxy = event["payload"]["bbox"]
    assert 116.3 < minx < maxx < 116.4 and 39.8 < miny < maxy < 39.9
    # A tile cache receiving the event drops the grid tile over the plan, not a far one.
    cache = tiles.TileCache()
    x0, _, y0, _ = tiles.tile_range((minx, miny, maxx, maxy), 16)
    here, far = tiles.TileKey("grids", 16, x0, y0), tiles.TileKey("grids", 16, x0 + 50, y0)
    for tile_key in (here, far):
        cache.put(tile_key, tiles.Tile.of(b"mvt"), cache.version("grids"))
    with engine.connect() as conn:
        notified = events.fetch(conn, out["event_id"])
    assert notified is not None and cache.invalidate(notified) == 1
    assert cache.get(here) is None and cache.get(far) is not None

    # The plan's diff still reads what it changed (against the grids before it).
    with engine.connect() as conn:
        d = plan_diff(conn, world.plan_id, SRID, TOL)
    assert d["reference"]["kind"] == "before_apply"
    assert {g["plan_grid_id"]: g["status"] for g in d["grids"]} == {
        world.plan_grids["P1"]: "unchanged", world.plan_grids["P2"]: "new",
        world.plan_grids["P3"]: "changed", world.plan_grids["P4"]: "new"}


def test_which_grid_held_a_point_before_and_after(engine: Engine, world: World) -> None:
    with engine.connect() as conn:
        now = conn.scalar(text("SELECT now()"))
    effective = now - timedelta(hours=2)
    _apply(engine, world.plan_id, effective)
    points = {"in C, now P3": (300, 60), "in B, now P2": (120, 60), "in A": (50, 60)}

    def grid_at(x: float, y: float, at: datetime) -> str:
        with engine.connect() as conn:
            return str(conn.scalar(text(
                f"SELECT gridops_place(ST_X(p), ST_Y(p), :at, 5, 50) -> 'grid' ->> 'code' "  # noqa: S608
                f"FROM (SELECT {POINT} AS p) x"), {"x": x, "y": y, "at": at}))

    before, after = effective - timedelta(minutes=1), effective + timedelta(minutes=1)
    assert grid_at(*points["in C, now P3"], before) == code(3)
    assert grid_at(*points["in C, now P3"], after) == code(2)
    assert grid_at(*points["in C, now P3"], now) == code(2)
    assert grid_at(*points["in B, now P2"], before) == code(2)
    assert grid_at(*points["in B, now P2"], after) == code(4)
    assert grid_at(*points["in A"], before) == grid_at(*points["in A"], after) == code(1)
    assert grid_at(*points["in C, now P3"], datetime(2025, 6, 1, tzinfo=BJ)) == code(3)


SNAPSHOT = ("grids", "grid_parts", "incidents", "grid_assignments", "buildings",
            "building_shares", "grid_plans", "grid_plan_grids", "audit_log", "live_events")


def _snapshot(engine: Engine) -> dict[str, list[str]]:
    """Every row of the tables apply touches, as JSON text, in a stable order."""
    with engine.connect() as conn:
        # table names from the constant above
        return {t: sorted(conn.scalars(text(f"SELECT row_to_json(x)::text FROM {t} x")))  # noqa: S608
                for t in SNAPSHOT}


@pytest.mark.parametrize("trigger", [
    "BEFORE UPDATE ON incidents",
    "BEFORE INSERT ON grid_assignments",
])
def test_a_failure_mid_apply_leaves_everything_untouched(engine: Engine, world: World,
                                                         trigger: str) -> None:
    with engine.begin() as conn:
        # The failure reports how many plan grids were already inserted when it struck.
        conn.execute(text("""
            CREATE FUNCTION test_boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              RAISE EXCEPTION 'boom after % plan grids',
                (SELECT count(*) FROM grids WHERE plan_id IS NOT NULL);
            END $$"""))
        conn.execute(text(f"CREATE TRIGGER test_boom {trigger} "
                          "FOR EACH ROW EXECUTE FUNCTION test_boom()"))
    before = _snapshot(engine)
    with pytest.raises(DBAPIError, match="boom after 3 plan grids"):
        _apply(engine, world.plan_id)
    assert _snapshot(engine) == before
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT status FROM grid_plans WHERE id = :p"),
                           {"p": world.plan_id}) == "approved"


@pytest.mark.parametrize("status", ["draft", "validated", "rejected"])
def test_only_an_approved_plan_applies(engine: Engine, status: str) -> None:
    with engine.begin() as conn:
        w = build_world(conn, plan_status=status)
    before = _snapshot(engine)
    with pytest.raises(Conflict, match=f"is {status}; only an approved plan") as refused:
        _apply(engine, w.plan_id)
    assert refused.value.detail == {"status": status}
    assert _snapshot(engine) == before


def test_a_plan_applies_once(engine: Engine, world: World) -> None:
    _apply(engine, world.plan_id)
    with pytest.raises(Conflict, match="is applied"):
        _apply(engine, world.plan_id)


@pytest.mark.parametrize("change", [
    # a live grid closed after the plan was made
    "UPDATE grids SET valid_to = now() WHERE code = '110102020001003'",
    # a grid opened in the community after the plan was made
    """INSERT INTO grids (code, households, valid_from, geom)
       SELECT '110102020001007', 0, now(), geom FROM grids WHERE code = '110102020001001'
       AND valid_to IS NULL""",
])
def test_a_stale_plan_is_refused(engine: Engine, world: World, change: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(change))
    before = _snapshot(engine)
    with pytest.raises(Conflict, match="stale") as refused:
        _apply(engine, world.plan_id)
    assert refused.value.field == "plan_id"
    assert _snapshot(engine) == before


def test_effective_from_must_be_past_the_grids_start_and_not_future(engine: Engine,
                                                                    world: World) -> None:
    for bad, why in ((datetime.now(BJ) + timedelta(days=1), "in the future"),
                     (datetime(2024, 6, 1, tzinfo=BJ), "must be after"),
                     (datetime(2026, 1, 1), "time zone")):
        with pytest.raises(InvalidInput, match=why) as refused:
            _apply(engine, world.plan_id, bad)
        assert refused.value.field == "effective_from"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM grids WHERE plan_id IS NOT NULL")) == 0


def test_a_new_grid_keeps_an_unused_plan_code(engine: Engine) -> None:
    with engine.begin() as conn:
        w = build_world(conn, plan_codes={"P4": code(9), "P2": code(3)})
    out = _apply(engine, w.plan_id)
    opened = {g["plan_grid_id"]: g["code"] for g in out["opened"]}
    assert opened[w.plan_grids["P4"]] == code(9)  # never used: kept
    assert opened[w.plan_grids["P2"]] == code(4)  # …003 was C's: the next free number
    assert opened[w.plan_grids["P3"]] == code(2)
    assert all(c.startswith(COMMUNITY) for c in opened.values())


def test_a_second_plan_for_the_same_community_is_stale_once_one_applied(
        engine: Engine, world: World) -> None:
    with engine.begin() as conn:
        second = int(conn.scalar(text("""
            INSERT INTO grid_plans (name, status, community_codes, district_code, approved_at)
            SELECT '另一方案', 'approved', community_codes, district_code, now()
            FROM grid_plans WHERE id = :p RETURNING id"""), {"p": world.plan_id}))
        conn.execute(text("""
            INSERT INTO grid_plan_grids (plan_id, code, community_code, households, geom)
            SELECT :s, code, community_code, households, geom FROM grid_plan_grids
            WHERE plan_id = :p"""), {"s": second, "p": world.plan_id})
    _apply(engine, world.plan_id)
    with pytest.raises(Conflict, match="stale"):
        _apply(engine, second)


def test_a_plan_that_changes_nothing_applies_without_touching_grids(engine: Engine) -> None:
    with engine.begin() as conn:
        w = build_world(conn)
        conn.execute(text("DELETE FROM grid_plan_grids WHERE plan_id = :p"), {"p": w.plan_id})
        conn.execute(text("""
            INSERT INTO grid_plan_grids (plan_id, code, community_code, households, buildings,
                                         source_grid_id, geom)
            SELECT :p, code, community_code, households, 1, id, geom FROM grids"""),
            {"p": w.plan_id})
    before = _snapshot(engine)
    out = _apply(engine, w.plan_id)
    after = _snapshot(engine)
    assert out["grids"] == {"unchanged": 3, "changed": 0, "new": 0, "closed": 0, "opened": 0}
    assert out["event_id"] is None and out["incidents"] == [] and out["assignments"] == []
    for table in ("grids", "grid_parts", "incidents", "grid_assignments", "buildings",
                  "building_shares"):
        assert after[table] == before[table], table
