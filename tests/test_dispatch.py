"""Dispatch on a hand-checkable road network: recommendations ranked by road ETA (a team
across the district line that is nearer by road wins; a team near in a straight line but
far by road ranks last), stale and busy teams left out with reasons, a list per side of a
joint case, the capability rule and its override, the dispatch steps with the team's status
and the case following, 50 concurrent dispatches of one team (exactly one wins), whistles
(a 联合哨 must summon both sides)."""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text

from api.app import create_app
from api.settings import Settings
from gis import roadgraph
from tests.auth_world import World, bearer, build_world
from tests.live_server import serve

LAT = 39.88  # the main road runs west–east along this latitude
NORTH = 39.89  # a side road, joined to the main road only at its west end
SPEED_MPS = 10.0  # 36 km/h on every edge
M_PER_DEG_X = 111_320 * math.cos(math.radians(LAT))
M_PER_DEG_Y = 110_574


@dataclass
class Dispatch:
    world: World
    teams: dict[str, int]
    client: TestClient


def _road(engine: Engine) -> None:
    """Main road nodes 1–6 along LAT; side road 7 (116.35, NORTH) – 8 (116.30, NORTH),
    joined to node 1 (116.30, LAT). Two-way, 10 m/s."""
    nodes = {1: (116.30, LAT), 2: (116.32, LAT), 3: (116.34, LAT), 4: (116.35, LAT),
             5: (116.36, LAT), 6: (116.38, LAT), 7: (116.35, NORTH), 8: (116.30, NORTH)}
    edges = [(1, 2), (2, 3), (3, 4), (4, 5), (5, 6), (7, 8), (8, 1)]
    with engine.begin() as conn:
        for node, (x, y) in nodes.items():
            conn.execute(text("INSERT INTO road_nodes (id, geom, district_code) VALUES "
                              "(:id, ST_SetSRID(ST_MakePoint(:x, :y), 4326), '110102')"),
                         {"id": node, "x": x, "y": y})
        for a, b in edges:
            conn.execute(text("""
                INSERT INTO road_edges (source, target, name, road_class, length_m, speed_kmh,
                                        cost, reverse_cost, geom, district_code)
                SELECT :a, :b, 'test road', 'secondary', len, 36, len / 10.0, len / 10.0, g,
                       '110102'
                FROM (SELECT g, ST_Length(g::geography) AS len FROM (SELECT ST_MakeLine(
                      (SELECT geom FROM road_nodes WHERE id = :a),
                      (SELECT geom FROM road_nodes WHERE id = :b)) AS g) x) y
            """), {"a": a, "b": b})


def _teams(engine: Engine, world: World) -> dict[str, int]:
    """Teams able to clear rubbish (chengguan) around the incident at (116.35, LAT)."""
    spec = {  # name: (department, home, x, y, status, minutes old, capabilities)
        "far_inside": (world.department_id, "110102", 116.31, LAT, "available", 1,
                       ["chengguan"]),
        "near_across": (world.other_department_id, "110106", 116.365, LAT, "available", 1,
                        ["chengguan"]),
        "north": (world.department_id, "110102", 116.35, NORTH - 0.0005, "available", 1,
                  ["chengguan"]),
        "busy": (world.department_id, "110102", 116.351, LAT, "busy", 1, ["chengguan"]),
        "stale": (world.department_id, "110102", 116.352, LAT, "available", 120,
                  ["chengguan"]),
        "no_skill": (world.department_id, "110102", 116.3505, LAT, "available", 1,
                     ["traffic"]),
    }
    out = {}
    with engine.begin() as conn:
        for name, (dept, home, x, y, status, age, caps) in spec.items():
            out[name] = int(conn.scalar(text("""
                INSERT INTO teams (code, name, department_id, home_code, status, capabilities,
                                   position, position_at)
                VALUES (:code, :name, :dept, :home, :status, :caps,
                        ST_SetSRID(ST_MakePoint(:x, :y), 4326),
                        now() - make_interval(mins => :age))
                RETURNING id"""), {"code": f"T-{name}", "name": f"队伍 {name}", "dept": dept,
                                   "home": home, "status": status, "caps": caps, "x": x, "y": y,
                                   "age": age}))
        conn.execute(text("UPDATE event_classes SET departments = "
                          "'[{\"type\": \"chengguan\", \"role\": \"primary\"}]'"))
        conn.execute(text("UPDATE incidents SET status = 'registered', "
                          "geom = ST_SetSRID(ST_MakePoint(116.35, :y), 4326)"), {"y": LAT + 0.0001})
    return out


@pytest.fixture
def world(engine: Engine, settings: Settings) -> Iterator[Dispatch]:
    built = build_world(engine)
    _road(engine)
    teams = _teams(engine, built)
    with TestClient(create_app(settings)) as client:
        yield Dispatch(built, teams, client)


def _msg(response: httpx.Response) -> str:
    return str(response.json()["detail"][0]["msg"])


def _field(response: httpx.Response) -> str:
    return str(response.json()["detail"][0]["field"])


def _road_s(x_from: float, x_to: float) -> float:
    return abs(x_to - x_from) * M_PER_DEG_X / SPEED_MPS


WALK_TO_ROAD_S = 0.0001 * M_PER_DEG_Y / roadgraph.WALK_MPS  # the incident is 11 m off the road


def _recommend(w: Dispatch, incident: str, user: str = "op_city", **params: object) -> dict:
    response = w.client.get(f"/api/v1/incidents/{w.world.incidents[incident]}/recommendations",
                            params=params, headers=bearer(w.client, user))
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_nearest_by_road_wins_even_across_the_district_line(world: Dispatch) -> None:
    body = _recommend(world, "xicheng_street")
    [group] = body["groups"]
    names = [t["name"] for t in group["teams"]]
    # 丰台's team 1.3 km east by road beats 西城's own team 3.4 km west; the team 1 km north
    # in a straight line must drive round by the west end: about 9.7 km
    assert names == ["队伍 near_across", "队伍 far_inside", "队伍 north"]
    near, far, north = group["teams"]
    assert near["eta_s"] == pytest.approx(_road_s(116.35, 116.365) + WALK_TO_ROAD_S, rel=0.02)
    assert far["eta_s"] == pytest.approx(_road_s(116.31, 116.35) + WALK_TO_ROAD_S, rel=0.02)
    north_road = (_road_s(116.30, 116.35) * 2 + (NORTH - LAT) * M_PER_DEG_Y / SPEED_MPS)
    north_walk = 0.0005 * M_PER_DEG_Y / roadgraph.WALK_MPS  # that team is 55 m off its road
    assert north["eta_s"] == pytest.approx(north_road + north_walk + WALK_TO_ROAD_S, rel=0.01)
    assert north["straight_m"] < far["straight_m"]  # nearer in a straight line, later by road
    assert near["jurisdiction"]["code"] == "110106"
    assert {r["kind"] for r in near["reasons"]} >= {"capability", "eta", "distance",
                                                     "jurisdiction"}


def test_ranking_equals_the_exact_dijkstra(world: Dispatch, engine: Engine) -> None:
    body = _recommend(world, "xicheng_street")
    teams = body["groups"][0]["teams"]
    with engine.connect() as conn:
        xy = {int(r.id): (r.x, r.y) for r in conn.execute(text(
            "SELECT id, ST_X(position) AS x, ST_Y(position) AS y FROM teams "
            "WHERE id = ANY(:ids)"), {"ids": [t["team_id"] for t in teams]})}
        exact = roadgraph.exact_etas_pgrouting(
            conn, 116.35, LAT + 0.0001, [xy[t["team_id"]][0] for t in teams],
            [xy[t["team_id"]][1] for t in teams])
    assert [t["eta_s"] for t in teams] == pytest.approx(list(exact), abs=0.1)


def test_busy_stale_and_incapable_teams_are_left_out_with_reasons(world: Dispatch) -> None:
    group = _recommend(world, "xicheng_street")["groups"][0]
    ids = {t["team_id"] for t in group["teams"]}
    assert not ids & {world.teams["busy"], world.teams["stale"], world.teams["no_skill"]}
    kinds = {s["kind"]: s for s in group["shortfalls"]}
    assert "some_busy" in kinds and "positions_stale" in kinds
    assert "30 min" in kinds["positions_stale"]["en"]


def test_a_short_budget_says_how_many_are_in_range(world: Dispatch, engine: Engine,
                                                   settings: Settings) -> None:
    short = settings.model_copy(update={"dispatch_budget_s": 600})
    with TestClient(create_app(short)) as client:
        response = client.get(
            f"/api/v1/incidents/{world.world.incidents['xicheng_street']}/recommendations",
            headers=bearer(client, "op_city"))
    group = response.json()["groups"][0]
    assert [t["name"] for t in group["teams"]] == ["队伍 near_across", "队伍 far_inside"]
    assert "fewer_than_asked" in {s["kind"] for s in group["shortfalls"]}


def test_a_joint_case_gets_a_list_per_side(world: Dispatch) -> None:
    body = _recommend(world, "joint")
    sides = {g["jurisdiction"]["code"]: [t["name"] for t in g["teams"]] for g in body["groups"]}
    assert sides == {"110102": ["队伍 far_inside", "队伍 north"],
                     "110106": ["队伍 near_across"]}


def test_recommendations_are_for_the_command_center_in_scope(world: Dispatch) -> None:
    incident = world.world.incidents["xicheng_street"]
    url = f"/api/v1/incidents/{incident}/recommendations"
    assert world.client.get(url, headers=bearer(world.client, "op_dc")).status_code == 404
    assert world.client.get(url, headers=bearer(world.client, "viewer")).status_code == 403
    assert world.client.get(url, params={"limit": 0},
                            headers=bearer(world.client, "op_xc")).status_code == 422


def _dispatch(w: Dispatch, incident: str, *teams: str, user: str = "op_city",
              **extra: object) -> httpx.Response:
    return w.client.post(f"/api/v1/incidents/{w.world.incidents[incident]}/dispatches",
                         json={"team_ids": [w.teams[t] for t in teams], **extra},
                         headers=bearer(w.client, user))


def _team_status(engine: Engine, team_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(text("SELECT status FROM teams WHERE id = :t"), {"t": team_id}))


def _case_status(engine: Engine, incident_id: int) -> str:
    with engine.connect() as conn:
        return str(conn.scalar(text("SELECT status FROM incidents WHERE id = :i"),
                               {"i": incident_id}))


def test_dispatch_steps_move_the_team_and_the_case(world: Dispatch, engine: Engine) -> None:
    incident = world.world.incidents["xicheng_street"]
    response = _dispatch(world, "xicheng_street", "far_inside")
    assert response.status_code == 201, response.text
    [made] = response.json()["dispatches"]
    assert made["eta_s"] == pytest.approx(_road_s(116.31, 116.35) + WALK_TO_ROAD_S, rel=0.02)
    team = world.teams["far_inside"]
    assert _team_status(engine, team) == "busy"
    assert _case_status(engine, incident) == "dispatched"
    again = _dispatch(world, "fengtai", "far_inside")
    assert again.status_code == 409
    assert f"incident {incident}" in _msg(again)  # names the holder
    disp = bearer(world.client, "disp_xc")
    url = f"/api/v1/dispatches/{made['dispatch_id']}/status"
    bad = world.client.post(url, json={"status": "done"}, headers=disp)
    assert bad.status_code == 409 and "on_scene" in _msg(bad)
    for step in ("accepted", "en_route", "on_scene"):
        assert world.client.post(url, json={"status": step}, headers=disp).status_code == 200
    assert _case_status(engine, incident) == "handling"  # 处置中 from the first arrival
    other = world.client.post(url, json={"status": "done"},
                              headers=bearer(world.client, "disp_ft"))
    assert other.status_code in (403, 404)  # not their team
    assert world.client.post(url, json={"status": "done"}, headers=disp).status_code == 200
    assert _team_status(engine, team) == "available"
    assert _case_status(engine, incident) == "feedback"  # 处置反馈 when the last one is done
    listed = world.client.get(f"/api/v1/incidents/{incident}/dispatches", headers=disp).json()
    assert listed[0]["status"] == "done" and listed[0]["arrived_in_time"] is True
    with engine.connect() as conn:
        steps = conn.scalars(text("SELECT to_status FROM dispatch_events WHERE dispatch_id = :d "
                                  "ORDER BY id"), {"d": made["dispatch_id"]}).all()
    assert steps == ["dispatched", "accepted", "en_route", "on_scene", "done"]


def test_declining_needs_a_reason_and_frees_the_team(world: Dispatch, engine: Engine) -> None:
    made = _dispatch(world, "xicheng_street", "near_across").json()["dispatches"][0]
    url = f"/api/v1/dispatches/{made['dispatch_id']}/status"
    disp = bearer(world.client, "disp_ft")
    assert world.client.post(url, json={"status": "declined"}, headers=disp).status_code == 422
    ok = world.client.post(url, json={"status": "declined", "reason": "不属于本部门职责",
                                      "out_of_remit": True}, headers=disp)
    assert ok.status_code == 200, ok.text
    assert _team_status(engine, world.teams["near_across"]) == "available"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT out_of_remit FROM dispatches WHERE id = :d"),
                           {"d": made["dispatch_id"]}) is True


def test_capability_is_required_unless_overridden(world: Dispatch) -> None:
    refused = _dispatch(world, "xicheng_street", "no_skill")
    assert refused.status_code == 422 and _field(refused) == "team_ids"
    assert "override_reason" in _msg(refused)
    ok = _dispatch(world, "xicheng_street", "no_skill", override_reason="就近协助疏导")
    assert ok.status_code == 201


def test_one_refused_team_sends_none(world: Dispatch, engine: Engine) -> None:
    response = _dispatch(world, "xicheng_street", "far_inside", "busy")
    assert response.status_code == 409
    assert _team_status(engine, world.teams["far_inside"]) == "available"
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM dispatches WHERE team_id = :t"),
                           {"t": world.teams["far_inside"]}) == 0


def test_bad_dispatch_input_is_a_clear_4xx(world: Dispatch) -> None:
    assert _dispatch(world, "xicheng_street").status_code == 422  # no teams
    missing = world.client.post(
        f"/api/v1/incidents/{world.world.incidents['xicheng_street']}/dispatches",
        json={"team_ids": [999999]}, headers=bearer(world.client, "op_city"))
    assert missing.status_code == 404 and _field(missing) == "team_ids[0]"
    unknown = world.client.post("/api/v1/incidents/999999/dispatches", json={"team_ids": [1]},
                                headers=bearer(world.client, "op_city"))
    assert unknown.status_code == 404


def test_fifty_concurrent_dispatches_of_one_team_have_one_winner(
        world: Dispatch, settings: Settings) -> None:
    incident = world.world.incidents["xicheng_street"]
    headers = bearer(world.client, "op_city")
    results: list[int] = []
    bodies: list[str] = []
    lock = threading.Lock()
    with serve(create_app(settings)) as base:
        start = threading.Barrier(50)

        def send() -> None:
            with httpx.Client(base_url=base, timeout=60) as http:
                start.wait()
                r = http.post(f"/api/v1/incidents/{incident}/dispatches",
                              json={"team_ids": [world.teams["far_inside"]]}, headers=headers)
            with lock:
                results.append(r.status_code)
                bodies.append(r.text)

        threads = [threading.Thread(target=send) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == [201] + [409] * 49, bodies
    assert all(f"incident {incident}" in b for b, code in zip(bodies, results, strict=True)
               if code == 409)


def test_a_joint_whistle_must_summon_both_sides(world: Dispatch, engine: Engine) -> None:
    incident = world.world.incidents["joint"]
    url = f"/api/v1/incidents/{incident}/whistles"
    headers = bearer(world.client, "op_city")
    one_side = world.client.post(url, json={"kind": "联合哨",
                                            "department_ids": [world.world.department_id]},
                                 headers=headers)
    assert one_side.status_code == 422 and "丰台区" in _msg(one_side)
    both = world.client.post(url, json={
        "kind": "联合哨", "department_ids": [world.world.department_id],
        "team_ids": [world.teams["near_across"]], "note": "跨界垃圾"}, headers=headers)
    assert both.status_code == 201, both.text
    blown = both.json()
    assert blown["kind"] == "joint" and blown["required_arrival_s"] == 1800
    assert {s["jurisdiction_code"] for s in blown["summoned"]} == {"110102", "110106"}
    assert len(blown["dispatches"]) == 1
    listed = world.client.get(url, headers=headers).json()
    assert listed[0]["kind"] == "joint" and len(listed[0]["summoned"]) == 2
    with engine.connect() as conn:
        assert conn.scalar(text("SELECT whistle_id FROM dispatches WHERE team_id = :t"),
                           {"t": world.teams["near_across"]}) == blown["whistle_id"]
    lone = world.client.post(
        f"/api/v1/incidents/{world.world.incidents['xicheng_street']}/whistles",
        json={"kind": "joint", "department_ids": [world.world.department_id]}, headers=headers)
    assert lone.status_code == 422 and _field(lone) == "kind"
    bad_kind = world.client.post(url, json={"kind": "口哨", "department_ids": [1]},
                                 headers=headers)
    assert bad_kind.status_code == 422 and _field(bad_kind) == "kind"


def test_the_route_of_a_recommended_team_follows_the_road(world: Dispatch) -> None:
    incident = world.world.incidents["xicheng_street"]
    headers = bearer(world.client, "op_city")
    response = world.client.get(f"/api/v1/incidents/{incident}/route",
                                params={"team_id": world.teams["north"]}, headers=headers)
    assert response.status_code == 200, response.text
    feature = response.json()
    coords = feature["geometry"]["coordinates"]
    # round by the west end: the path passes both western nodes before coming back east
    assert [116.30, NORTH] in coords and [116.30, LAT] in coords
    assert coords[0] == pytest.approx([116.35, NORTH - 0.0005])
    assert coords[-1] == pytest.approx([116.35, LAT + 0.0001])
    assert feature["properties"]["eta_s"] > 900
    missing = world.client.get(f"/api/v1/incidents/{incident}/route",
                               params={"team_id": 999999}, headers=headers)
    assert missing.status_code == 404
