"""The in-memory road graph on a hand-checkable network: ETAs equal hand-computed values and
pgRouting's exact answer, one-way streets are respected, origin and target on one edge, the
budget cut-off, unreachable and bad origins, reloading on a version bump, and route().

The network (costs in seconds; lon/lat offsets from 116.40, 39.90 in 0.01°):

      4 --e3 one-way 60 s--> 5 --e4 60 s-- 6
      |                      |             |
    e5 120 s               e6 120 s      e7 120 s
      |                      |             |
      1 -----e1 100 s------- 2 --e2 100 s-- 3          7 --e8-- 8   (an island, far east)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sqlalchemy import Connection, Engine, text

from gis.errors import InvalidInput
from gis.roadgraph import WALK_MPS, RoadGraph, exact_etas_pgrouting, graph_for

LON0, LAT0, STEP = 116.40, 39.90, 0.01
NODES = {1: (0, 0), 2: (1, 0), 3: (2, 0), 4: (0, 1), 5: (1, 1), 6: (2, 1), 7: (10, 0),
         8: (11, 0)}
# id: source, target, cost, reverse_cost, length_m
EDGES = {1: (1, 2, 100.0, 100.0, 850.0), 2: (2, 3, 100.0, 100.0, 850.0),
         3: (4, 5, 60.0, -1.0, 850.0), 4: (5, 6, 60.0, 60.0, 850.0),
         5: (1, 4, 120.0, 120.0, 1110.0), 6: (2, 5, 120.0, 120.0, 1110.0),
         7: (3, 6, 120.0, 120.0, 1110.0), 8: (7, 8, 100.0, 100.0, 850.0)}
OFF = 0.0001  # points sit this many degrees of latitude off their edge (~11.12 m)
OFF_M = OFF * math.pi / 180 * 6_371_008.8

TARGET = (116.405, 39.91 + OFF)  # middle of the one-way e3 (4 → 5)
A = (116.405, 39.90 - OFF)       # middle of e1
B = (116.415, 39.91 + OFF)       # middle of e4
C = (116.402, 39.91 + OFF)       # on e3 behind the target (fraction 0.2)
D = (116.408, 39.91 + OFF)       # on e3 ahead of the target (fraction 0.8)
E = (116.505, 39.90 + OFF)       # on the island
# driving seconds, by hand
DRIVE = {
    "A": 50 + 120 + 30,               # A → 1 → 4 → along e3 to the target
    "B": 30 + 120 + 100 + 120 + 30,   # B → 5 → 2 → 1 → 4 → target (e3 is one-way 4 → 5)
    "C": 0.3 * 60,                    # straight along e3
    "D": 0.2 * 60 + 120 + 100 + 120 + 30,  # forward to 5, round the block back to 4
}
ROAD = {
    "A": 425 + 1110 + 425,
    "B": 425 + 1110 + 850 + 1110 + 425,
    "C": 0.3 * 850,
    "D": 0.2 * 850 + 1110 + 850 + 1110 + 425,
}


def _lonlat(node: int) -> tuple[float, float]:
    x, y = NODES[node]
    return LON0 + x * STEP, LAT0 + y * STEP


def build_network(conn: Connection) -> None:
    for node in NODES:
        lon, lat = _lonlat(node)
        conn.execute(text("""
            INSERT INTO road_nodes (id, geom, district_code)
            VALUES (:id, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326), '110101')
        """), {"id": node, "lon": lon, "lat": lat})
    for edge, (s, t, cost, rcost, length) in EDGES.items():
        conn.execute(text("""
            INSERT INTO road_edges (id, source, target, name, road_class, length_m, speed_kmh,
                                    cost, reverse_cost, geom, district_code)
            SELECT :id, :s, :t, :name, 'branch', :len, 30, :cost, :rcost,
                   ST_MakeLine(a.geom, b.geom), '110101'
            FROM road_nodes a, road_nodes b WHERE a.id = :s AND b.id = :t
        """), {"id": edge, "s": s, "t": t, "name": f"e{edge}", "len": length, "cost": cost,
               "rcost": rcost})


@pytest.fixture
def net(engine: Engine) -> Engine:
    with engine.begin() as conn:
        build_network(conn)
    return engine


@pytest.fixture
def graph(net: Engine) -> RoadGraph:
    with net.connect() as conn:
        return RoadGraph.load(conn)


def _origins(*names: str) -> tuple[list[float], list[float]]:
    points = [globals()[n] for n in names]
    return [p[0] for p in points], [p[1] for p in points]


def test_etas_equal_hand_computed_values(graph: RoadGraph) -> None:
    names = ("A", "B", "C", "D")
    lon, lat = _origins(*names)
    etas = graph.etas_to(*TARGET, lon, lat, budget_s=10_000)
    assert etas.target_snap_m == pytest.approx(OFF_M, rel=1e-6)
    assert etas.snap_m == pytest.approx([OFF_M] * 4, rel=1e-6)
    walk = (etas.snap_m + etas.target_snap_m) / WALK_MPS
    assert etas.eta_s - walk == pytest.approx([DRIVE[n] for n in names], rel=1e-9)
    assert etas.road_m == pytest.approx([ROAD[n] for n in names], rel=1e-9)


def test_one_way_makes_times_asymmetric(graph: RoadGraph) -> None:
    """B → target must go round (e3 is closed 5 → 4); target → B drives e3 forward."""
    there = graph.etas_to(*TARGET, [B[0]], [B[1]], budget_s=10_000)
    back = graph.etas_to(*B, [TARGET[0]], [TARGET[1]], budget_s=10_000)
    walk = 2 * OFF_M / WALK_MPS
    assert there.eta_s[0] - walk == pytest.approx(DRIVE["B"])
    assert back.eta_s[0] - walk == pytest.approx(30 + 30)
    assert back.road_m[0] == pytest.approx(425 + 425)


def test_same_edge_both_directions(graph: RoadGraph) -> None:
    """C is behind the target on the one-way e3: straight there; from the target to C (against
    the one-way) means going round the block."""
    walk = 2 * OFF_M / WALK_MPS
    to_target = graph.etas_to(*TARGET, [C[0]], [C[1]], budget_s=10_000)
    to_c = graph.etas_to(*C, [TARGET[0]], [TARGET[1]], budget_s=10_000)
    assert to_target.eta_s[0] - walk == pytest.approx(18.0)
    assert to_c.eta_s[0] - walk == pytest.approx(0.5 * 60 + 120 + 100 + 120 + 0.2 * 60)
    # a point on the target's spot costs only the walk
    spot = graph.etas_to(*TARGET, [TARGET[0]], [TARGET[1]], budget_s=20)
    assert spot.eta_s[0] == pytest.approx(walk)
    assert spot.road_m[0] == pytest.approx(0.0, abs=1e-9)


def test_budget_unreachable_and_bad_origins(graph: RoadGraph) -> None:
    lon, lat = _origins("A", "B", "E")
    walk = 2 * OFF_M / WALK_MPS
    etas = graph.etas_to(*TARGET, [*lon, float("nan")], [*lat, 39.9], budget_s=300)
    assert etas.eta_s[0] == pytest.approx(DRIVE["A"] + walk)
    assert etas.eta_s[1] == np.inf        # 400 s of driving is beyond 300 s
    assert etas.eta_s[2] == np.inf        # the island is unreachable
    assert etas.eta_s[3] == np.inf        # no coordinates
    assert np.isnan(etas.road_m[1:]).all()
    assert np.isnan(etas.snap_m[3])
    # the budget counts the walk too: exactly enough, then a little short
    exact = DRIVE["A"] + walk
    assert graph.etas_to(*TARGET, [A[0]], [A[1]], budget_s=exact + 1e-6).eta_s[0] < np.inf
    assert graph.etas_to(*TARGET, [A[0]], [A[1]], budget_s=exact - 1e-3).eta_s[0] == np.inf
    with pytest.raises(InvalidInput):
        graph.etas_to(*TARGET, [A[0], B[0]], [A[1]], budget_s=300)
    assert graph.etas_to(*TARGET, [], [], budget_s=300).eta_s.shape == (0,)


def test_agrees_with_pgrouting(net: Engine, graph: RoadGraph) -> None:
    rng = np.random.default_rng(3)
    lon = np.concatenate([rng.uniform(116.398, 116.422, 40), [A[0], B[0], C[0], D[0], E[0],
                                                               _lonlat(5)[0]]])
    lat = np.concatenate([rng.uniform(39.898, 39.912, 40), [A[1], B[1], C[1], D[1], E[1],
                                                             _lonlat(5)[1]]])
    for target in (TARGET, B, _lonlat(4), (116.41, 39.905)):
        mine = graph.etas_to(*target, lon, lat, budget_s=1e9).eta_s
        with net.connect() as conn:
            exact = exact_etas_pgrouting(conn, *target, lon, lat)
        assert np.array_equal(np.isinf(mine), np.isinf(exact))
        finite = np.isfinite(exact)
        assert finite.sum() >= 45
        np.testing.assert_allclose(mine[finite], exact[finite], rtol=1e-9)


def test_route_follows_the_edges(graph: RoadGraph) -> None:
    path = graph.route(*A, *TARGET, budget_s=10_000)
    assert path is not None
    expected = [A, (116.405, 39.90), _lonlat(1), _lonlat(4), (116.405, 39.91), TARGET]
    assert np.allclose(path, expected, rtol=0, atol=1e-9)
    same = graph.route(*C, *TARGET, budget_s=10_000)
    assert same is not None
    assert np.allclose(same, [C, (116.402, 39.91), (116.405, 39.91), TARGET], rtol=0, atol=1e-9)
    assert graph.route(*B, *TARGET, budget_s=300) is None
    assert graph.route(*E, *TARGET, budget_s=10_000) is None


def test_graph_for_reloads_only_after_an_edge_change(net: Engine) -> None:
    with net.connect() as conn:
        first = graph_for(conn)
        assert graph_for(conn) is first
    with net.begin() as conn:  # other tables do not touch the graph
        conn.execute(text("UPDATE road_nodes SET district_code = '110102' WHERE id = 8"))
    with net.connect() as conn:
        assert graph_for(conn) is first
        before = first.etas_to(*TARGET, [A[0]], [A[1]], budget_s=10_000).eta_s[0]
    with net.connect() as conn:  # a change not committed: seen by its own transaction only
        with conn.begin() as tx:
            conn.execute(text("UPDATE road_edges SET cost = 1000, reverse_cost = 1000 "
                              "WHERE id = 5"))
            mine = graph_for(conn)
            assert mine is not first
            assert mine.etas_to(*TARGET, [A[0]], [A[1]], budget_s=10_000).eta_s[0] > before
            tx.rollback()
        assert graph_for(conn) is first
    with net.begin() as conn:  # e5 (1 – 4) gets slower: A's path now costs 60 s more
        conn.execute(text("UPDATE road_edges SET cost = 180, reverse_cost = 180 WHERE id = 5"))
    with net.connect() as conn:
        second = graph_for(conn)
        assert second is not first
        assert second.version > first.version
        after = second.etas_to(*TARGET, [A[0]], [A[1]], budget_s=10_000).eta_s[0]
        assert graph_for(conn) is second
    assert after - before == pytest.approx(60.0)


def test_empty_network(engine: Engine) -> None:
    with engine.connect() as conn:
        graph = graph_for(conn)
    etas = graph.etas_to(*TARGET, [A[0]], [A[1]], budget_s=1000)
    assert etas.eta_s.tolist() == [np.inf] and np.isnan(etas.target_snap_m)
    assert graph.route(*A, *TARGET, budget_s=1000) is None
