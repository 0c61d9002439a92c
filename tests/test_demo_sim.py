"""The demo simulator drives teams along the roads: a dispatched team closes in on its
incident tick by tick, a roaming one stays on the road network, and every move is a stored,
fresh position."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from gis.demo_sim import SPEED_MPS, Simulator
from tests.auth_world import build_world
from tests.test_dispatch import LAT, _road, _teams


def _distance_to_incident(engine: Engine, team_id: int, incident_id: int) -> float:
    with engine.connect() as conn:
        return float(conn.scalar(text(
            "SELECT ST_Distance(t.position::geography, i.geom::geography) "
            "FROM teams t, incidents i WHERE t.id = :t AND i.id = :i"),
            {"t": team_id, "i": incident_id}))


def test_a_dispatched_team_drives_to_its_incident(engine: Engine) -> None:
    world = build_world(engine)
    _road(engine)
    teams = _teams(engine, world)
    incident = world.incidents["xicheng_street"]
    team = teams["far_inside"]  # 3.4 km west of the incident by road
    with engine.begin() as conn:
        conn.execute(text("UPDATE teams SET status = 'busy' WHERE id = :t"), {"t": team})
        conn.execute(text("INSERT INTO dispatches (incident_id, team_id, district_code) "
                          "VALUES (:i, :t, '110102')"), {"i": incident, "t": team})
    simulator = Simulator(seed=1)
    start = datetime.now(UTC) - timedelta(seconds=60)  # the team last reported a minute ago
    before = _distance_to_incident(engine, team, incident)
    for k in range(1, 6):  # five reports 10 s apart
        with engine.begin() as conn:
            simulator.tick(conn, 10, start + timedelta(seconds=10 * k))
    after = _distance_to_incident(engine, team, incident)
    assert before - after > 5 * 10 * SPEED_MPS * 0.8  # 400 m along the road, minus the snap
    with engine.connect() as conn:
        lat, fixes, stale = conn.execute(text(
            "SELECT ST_Y(position), (SELECT count(*) FROM team_positions WHERE team_id = :t), "
            "position_at < now() - interval '30 minutes' FROM teams WHERE id = :t"),
            {"t": team}).one()
    assert abs(lat - LAT) < 1e-6  # on the main road, heading east
    assert fixes == 5 and not stale


def test_off_duty_teams_stay_put(engine: Engine) -> None:
    world = build_world(engine)
    _road(engine)
    teams = _teams(engine, world)
    with engine.begin() as conn:
        conn.execute(text("UPDATE teams SET status = 'off_duty' WHERE id = :t"),
                     {"t": teams["north"]})
        moved = Simulator(seed=2).tick(conn, 30)
    with engine.connect() as conn:
        kept = conn.scalar(text("SELECT count(*) FROM team_positions WHERE team_id = :t"),
                           {"t": teams["north"]})
    assert kept == 0
    assert moved >= 4  # the available and busy teams with a position reported
