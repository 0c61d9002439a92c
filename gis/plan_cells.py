"""Plan cells: the atomic pieces a planner paints between the grids of a plan.

Each community is cut by its streets and by the plan's grids (zones) into pieces, and each
piece by the Voronoi diagram of the representative points of the buildings inside it. The
cutting is a planar arrangement: the lines (community and zone boundaries, streets, then
the Voronoi edges clipped to their piece) are noded with snap-rounding on a 1 mm grid in the
metric CRS and polygonized, so the faces tile the communities and neighbouring cells share
their vertices exactly. A grid derived from its cells (`rederive_grids`) therefore has no
slivers, and the grids of a community derived from cells tile it by construction.

The grid is 1 mm rather than 1 cm because snapping moves every boundary vertex: a grid
derived from its cells differs from the drawn one by about perimeter x grid / 4 (a demo
grid: 0.2 m² at 1 mm, 2 m² at 1 cm), and plan tolerances are 1 m².
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from pyproj import CRS
from pyproj.exceptions import CRSError
from sqlalchemy import Connection, text

from gis.copy import copy_rows, ewkb
from gis.errors import InvalidInput, NotFound

GRID_M = 0.001  # snap-rounding grid (metres): cells share vertices exactly on it
STREET_REACH_M = 1.0  # streets are clipped to the communities grown by this much
CELL_COLUMNS = ["community_code", "zone_key", "building_id", "households", "geometry"]

IntArray = npt.NDArray[np.int64]
GeomArray = npt.NDArray[Any]


def build_cells(communities: gpd.GeoDataFrame, zones: gpd.GeoDataFrame,
                buildings: gpd.GeoDataFrame, streets: gpd.GeoSeries,
                metric_crs: int) -> gpd.GeoDataFrame:
    """The cells of `communities` (frames in EPSG:4326; columns code / key / building_id,
    households): community ∩ street blocks ∩ zones ∩ the Voronoi cell of each building of
    the piece, one Polygon each, in EPSG:4326 with columns community_code, zone_key,
    building_id (NULL for a cell without a building) and households.

    Computed in `metric_crs` and snap-rounded to a 1 mm grid (GRID_M): the cells of a
    community tile it (up to that grid) without overlaps and neighbours share vertices. A
    building belongs to the cell holding its representative point (PointOnSurface, taken
    on the EPSG:4326 footprint as PostGIS does); buildings whose points coincide share one
    cell (the lowest id is named, households add up); buildings outside every community
    are dropped. zone_key is the key of the zone holding the cell (the first
    one in frame order where zones overlap), None in a gap between zones. A piece without
    buildings is one cell; a Voronoi cell cut in several parts by a concave piece gives one
    cell per part (the parts without the building hold no building).
    """
    cells = cells_metric(communities, zones, buildings, streets, metric_crs)
    return cells[CELL_COLUMNS].to_crs(4326)


def cells_metric(communities: gpd.GeoDataFrame, zones: gpd.GeoDataFrame,
                 buildings: gpd.GeoDataFrame, streets: gpd.GeoSeries,
                 metric_crs: int) -> gpd.GeoDataFrame:
    """`build_cells` in `metric_crs`, with the internal column `piece` (the street block x
    zone piece each cell was cut from, numbered from 0)."""
    crs = projected_crs(metric_crs)
    if len(communities) == 0:
        return gpd.GeoDataFrame({c: [] for c in [*CELL_COLUMNS[:-1], "piece"]},
                                geometry=[], crs=crs)
    comm = metric_polygons(communities, crs)
    zone = metric_polygons(zones, crs)
    comm_codes = communities["code"].astype(str).to_numpy()
    zone_keys = zones["key"].to_numpy(dtype=object) if len(zones) else np.array([], object)
    lines = _node(_base_lines(comm, zone, _to(streets, crs)))
    pieces = _faces(lines)
    piece_comm = first_holder(shapely.point_on_surface(pieces), comm)
    keep = piece_comm >= 0
    pieces, piece_comm = pieces[keep], piece_comm[keep]
    piece_zone = first_holder(shapely.point_on_surface(pieces), zone)

    b_ids, b_hh, b_pts = _building_points(buildings, crs)
    b_piece = first_holder(b_pts, pieces)
    inside = b_piece >= 0
    b_ids, b_hh, b_pts, b_piece = b_ids[inside], b_hh[inside], b_pts[inside], b_piece[inside]

    vor_lines, vor_polys, vor_piece = _voronoi(pieces, b_pts, b_piece)
    faces = _faces(_node(np.concatenate([lines, vor_lines]))) if len(vor_lines) else pieces
    face_pts = shapely.point_on_surface(faces)
    face_piece = first_holder(face_pts, pieces)
    faces, face_pts, face_piece = (faces[face_piece >= 0], face_pts[face_piece >= 0],
                                   face_piece[face_piece >= 0])
    face_vor = _voronoi_holder(face_pts, face_piece, vor_polys, vor_piece)

    groups = pd.DataFrame({"piece": face_piece, "vor": face_vor})
    merged = gpd.GeoDataFrame(groups, geometry=faces, crs=crs).dissolve(
        by=["piece", "vor"], method="coverage", as_index=False, sort=True)
    parts, part_of = shapely.get_parts(merged.geometry.to_numpy(), return_index=True)
    cell_piece = merged["piece"].to_numpy()[part_of]
    order = np.lexsort((part_of, piece_zone[cell_piece], piece_comm[cell_piece]))
    parts, cell_piece = parts[order], cell_piece[order]

    building, households = _buildings_in_cells(parts, b_ids, b_hh, b_pts)
    zone_of = piece_zone[cell_piece]
    frame = pd.DataFrame({
        "community_code": comm_codes[piece_comm[cell_piece]],
        "zone_key": pd.Series([zone_keys[z] if z >= 0 else None for z in zone_of],
                              dtype=object),
        "building_id": pd.array(building, dtype="Int64"),
        "households": households,
        "piece": cell_piece,
    })
    frame.loc[building < 0, "building_id"] = pd.NA
    return gpd.GeoDataFrame(frame, geometry=parts, crs=crs)


def create_plan_cells(conn: Connection, plan_id: int, metric_srid: int) -> int:
    """Build the cells of the plan's communities (in force now) with the plan's current
    non-empty grids as zones, replace the plan's cells with them (plan_grid_id = the grid
    holding each cell, NULL in a gap) and return how many were written.

    Raises NotFound when the plan or one of its communities does not exist.
    """
    plan = plan_row(conn, plan_id)
    communities = load_communities(conn, plan["community_codes"])
    zones = gpd.read_postgis(
        text("SELECT id AS key, geom FROM grid_plan_grids "
             "WHERE plan_id = :plan AND geom IS NOT NULL ORDER BY id"),
        conn, geom_col="geom", params={"plan": plan_id})
    buildings = load_buildings(conn, plan["community_codes"])
    streets = load_streets(conn, plan["community_codes"])
    cells = build_cells(communities, zones.rename_geometry("geometry"), buildings, streets,
                        metric_srid)
    return write_cells(conn, plan_id, cells, cells["zone_key"])


def write_cells(conn: Connection, plan_id: int, cells: gpd.GeoDataFrame,
                plan_grid_ids: pd.Series) -> int:
    """Replace the plan's cells with `cells` (EPSG:4326, columns of `build_cells`), each
    in the plan grid `plan_grid_ids` names (None: unassigned); return the count."""
    conn.execute(text("DELETE FROM grid_plan_cells WHERE plan_id = :plan"), {"plan": plan_id})
    grid_ids = pd.array([None if pd.isna(g) else int(g) for g in plan_grid_ids], dtype="Int64")
    frame = pd.DataFrame({
        "plan_id": plan_id,
        "plan_grid_id": grid_ids,
        "community_code": cells["community_code"].to_numpy(),
        "building_id": cells["building_id"].astype("Int64").array,
        "households": cells["households"].astype("int64").to_numpy(),
        "geom": ewkb(cells.geometry, multi="polygon"),
    })
    return copy_rows(conn, "grid_plan_cells", frame)


def rederive_grids(conn: Connection, plan_id: int, grid_ids: Iterable[int]) -> None:
    """Set each listed grid of the plan to the union of its cells: geom (MultiPolygon, NULL
    when it has no cell), households (sum over its cells) and buildings (cells holding a
    building). Ids of other plans are ignored."""
    ids = sorted({int(g) for g in grid_ids})
    if not ids:
        return
    conn.execute(text("""
        UPDATE grid_plan_grids g
        SET geom = d.geom, households = d.households, buildings = d.buildings
        FROM (SELECT g2.id,
                     ST_Multi(ST_UnaryUnion(ST_Collect(c.geom))) AS geom,
                     coalesce(sum(c.households), 0) AS households,
                     count(c.building_id) AS buildings
              FROM grid_plan_grids g2
              LEFT JOIN grid_plan_cells c ON c.plan_grid_id = g2.id
              WHERE g2.plan_id = :plan AND g2.id = ANY(:ids)
              GROUP BY g2.id) d
        WHERE g.id = d.id
    """), {"plan": plan_id, "ids": ids})


# -- loading a plan's world ---------------------------------------------------------------


def plan_row(conn: Connection, plan_id: int) -> dict[str, Any]:
    """The plan's id, status and community_codes; NotFound when there is no such plan."""
    row = conn.execute(text("SELECT id, status, community_codes FROM grid_plans "
                            "WHERE id = :id"), {"id": plan_id}).mappings().one_or_none()
    if row is None:
        raise NotFound(f"no plan {plan_id}", field="plan_id")
    return dict(row)


def load_communities(conn: Connection, codes: list[str]) -> gpd.GeoDataFrame:
    """The communities `codes` in force now (code, name, geometry in EPSG:4326)."""
    frame = gpd.read_postgis(text("""
        SELECT code, name, geom FROM jurisdictions
        WHERE level = 'community' AND code = ANY(:codes)
          AND tstzrange(valid_from, valid_to) @> now()
        ORDER BY code
    """), conn, geom_col="geom", params={"codes": list(codes)})
    missing = sorted(set(codes) - set(frame["code"]))
    if missing:
        raise NotFound(f"no community {', '.join(missing)} is in force", field="community_codes")
    return frame.rename_geometry("geometry")


def load_buildings(conn: Connection, codes: list[str]) -> gpd.GeoDataFrame:
    """Buildings whose representative point lies in one of the communities `codes` in force
    now (building_id, households, geometry in EPSG:4326)."""
    frame = gpd.read_postgis(text("""
        SELECT b.id AS building_id, b.households, b.geom
        FROM buildings b
        JOIN jurisdictions j ON j.level = 'community' AND j.code = ANY(:codes)
          AND tstzrange(j.valid_from, j.valid_to) @> now()
          AND b.geom && j.geom AND ST_Intersects(j.geom, ST_PointOnSurface(b.geom))
        ORDER BY b.id
    """), conn, geom_col="geom", params={"codes": list(codes)})
    frame = frame.drop_duplicates("building_id")
    return frame.rename_geometry("geometry")


def load_streets(conn: Connection, codes: list[str]) -> gpd.GeoSeries:
    """Streets crossing the communities `codes` in force now (EPSG:4326)."""
    frame = gpd.read_postgis(text("""
        WITH j AS MATERIALIZED (
          SELECT geom FROM jurisdictions
          WHERE level = 'community' AND code = ANY(:codes)
            AND tstzrange(valid_from, valid_to) @> now())
        SELECT s.id, s.geom FROM streets s
        WHERE s.id IN (SELECT s2.id FROM j JOIN streets s2
                       ON s2.geom && j.geom AND ST_Intersects(s2.geom, j.geom))
        ORDER BY s.id
    """), conn, geom_col="geom", params={"codes": list(codes)})
    return frame.geometry


# -- geometry helpers ----------------------------------------------------------------------


def projected_crs(srid: int) -> CRS:
    """EPSG:`srid` when it is a projected CRS in metres; InvalidInput (metric_srid) if not."""
    try:
        crs = CRS.from_epsg(srid)
    except CRSError as exc:
        raise InvalidInput(f"EPSG:{srid} is not a known CRS", field="metric_srid") from exc
    if not crs.is_projected or crs.axis_info[0].unit_name not in ("metre", "meter"):
        raise InvalidInput(f"EPSG:{srid} is not a projected CRS in metres", field="metric_srid")
    return crs


def _to(frame: gpd.GeoDataFrame | gpd.GeoSeries, crs: CRS) -> GeomArray:
    """Geometries of `frame` (EPSG:4326 when it names no CRS) in `crs`."""
    series = frame.geometry if isinstance(frame, gpd.GeoDataFrame) else frame
    if series.crs is None:
        series = series.set_crs(4326)
    return np.asarray(series.to_crs(crs).to_numpy(), dtype=object)


def metric_polygons(frame: gpd.GeoDataFrame, crs: CRS) -> GeomArray:
    """The frame's geometries in `crs`, snapped to the grid (missing ones stay empty)."""
    if len(frame) == 0:
        return np.array([], dtype=object)
    geoms = _to(frame, crs)
    geoms = np.where(shapely.is_missing(geoms), shapely.Polygon(), geoms)
    return np.asarray(shapely.set_precision(shapely.make_valid(geoms), GRID_M), dtype=object)


def _base_lines(comm: GeomArray, zone: GeomArray, streets: GeomArray) -> GeomArray:
    """Community and zone boundaries and the streets over the communities, as lines."""
    area = shapely.buffer(shapely.union_all(comm, grid_size=GRID_M), STREET_REACH_M)
    streets = streets[~shapely.is_missing(streets)]
    if len(streets):
        streets = streets[shapely.intersects(streets, area)]
        streets = shapely.intersection(streets, area)
    lines = np.concatenate([shapely.boundary(comm), shapely.boundary(zone), streets])
    return np.asarray(lines[~shapely.is_empty(lines)], dtype=object)


def _node(lines: GeomArray) -> GeomArray:
    """`lines` noded with snap-rounding on the 1 cm grid: segments meeting only at ends."""
    noded = shapely.unary_union(lines, grid_size=GRID_M)
    return np.asarray(shapely.get_parts(noded), dtype=object)


def _faces(noded: GeomArray) -> GeomArray:
    """The faces of the arrangement of `noded` lines (dangles and cut edges left out)."""
    return np.asarray(shapely.get_parts(shapely.polygonize(noded)), dtype=object)


def first_holder(points: GeomArray, polygons: GeomArray) -> IntArray:
    """Per point, the lowest index of a polygon holding it (boundary included), or -1."""
    result = np.full(len(points), -1, dtype=np.int64)
    if len(points) == 0 or len(polygons) == 0:
        return result
    pt, poly = shapely.STRtree(polygons).query(points, predicate="intersects")
    order = np.lexsort((poly, pt))
    pt, poly = pt[order], poly[order]
    first = np.r_[True, pt[1:] != pt[:-1]]
    result[pt[first]] = poly[first]
    return result


def _building_points(buildings: gpd.GeoDataFrame,
                     crs: CRS) -> tuple[IntArray, IntArray, GeomArray]:
    """Ids, households and representative points (computed in EPSG:4326, as PostGIS
    ST_PointOnSurface does on the stored geometry; then in `crs`, on the grid)."""
    if len(buildings) == 0:
        return np.array([], np.int64), np.array([], np.int64), np.array([], object)
    geoms = buildings.geometry if buildings.crs is not None else buildings.geometry.set_crs(4326)
    points = gpd.GeoSeries(shapely.point_on_surface(geoms.to_crs(4326).to_numpy()), crs=4326)
    pts = shapely.set_precision(np.asarray(points.to_crs(crs).to_numpy(), dtype=object), GRID_M)
    ids = buildings["building_id"].to_numpy(dtype=np.int64)
    households = buildings["households"].fillna(0).to_numpy(dtype=np.int64)
    return ids, households, np.asarray(pts, dtype=object)


def _voronoi(pieces: GeomArray, pts: GeomArray,
             piece_of: IntArray) -> tuple[GeomArray, GeomArray, IntArray]:
    """Voronoi diagrams of the distinct building points of each piece holding two or more:
    the edges clipped to their piece, the Voronoi polygons and each polygon's piece."""
    xy = shapely.get_coordinates(pts)
    seeds = pd.DataFrame({"piece": piece_of, "x": xy[:, 0], "y": xy[:, 1]}).drop_duplicates()
    seeds = seeds[seeds.groupby("piece")["piece"].transform("size") >= 2]
    empty = np.array([], dtype=object)
    if seeds.empty:
        return empty, empty, np.array([], np.int64)
    seeds = seeds.sort_values(["piece", "x", "y"])
    which, index = np.unique(seeds["piece"].to_numpy(), return_inverse=True)
    multi = shapely.multipoints(shapely.points(seeds[["x", "y"]].to_numpy()), indices=index)
    edges = shapely.voronoi_polygons(multi, extend_to=pieces[which], only_edges=True)
    edges = shapely.intersection(edges, pieces[which])
    polys = shapely.voronoi_polygons(multi, extend_to=pieces[which])
    parts, part_of = shapely.get_parts(polys, return_index=True)
    return (np.asarray(edges[~shapely.is_empty(edges)], dtype=object),
            np.asarray(parts, dtype=object), which[part_of].astype(np.int64))


def _voronoi_holder(points: GeomArray, piece_of: IntArray, polys: GeomArray,
                    poly_piece: IntArray) -> IntArray:
    """Per face point, the Voronoi polygon of its own piece holding it (-1 where the piece
    has no Voronoi diagram); a point on the line between two takes the lower index."""
    result = np.full(len(points), -1, dtype=np.int64)
    if len(polys) == 0:
        return result
    pt, poly = shapely.STRtree(polys).query(points, predicate="intersects")
    same = poly_piece[poly] == piece_of[pt]
    pt, poly = pt[same], poly[same]
    order = np.lexsort((poly, pt))
    pt, poly = pt[order], poly[order]
    first = np.r_[True, pt[1:] != pt[:-1]] if len(pt) else np.array([], bool)
    result[pt[first]] = poly[first]
    missing = np.flatnonzero((result < 0) & np.isin(piece_of, poly_piece))
    if len(missing):  # a point a hair outside the unsnapped diagram: the nearest polygon
        near_pt, near_poly = shapely.STRtree(polys).query_nearest(points[missing],
                                                                  all_matches=False)
        result[missing[near_pt]] = near_poly
    return result


def _buildings_in_cells(cells: GeomArray, ids: IntArray, households: IntArray,
                        pts: GeomArray) -> tuple[IntArray, IntArray]:
    """Per cell, the lowest id of the buildings whose points it holds (-1: none) and the sum
    of their households. A point on a shared edge goes to the lower cell; a point that a
    snapped boundary left a hair outside goes to the nearest cell within 5 cm."""
    building = np.full(len(cells), -1, dtype=np.int64)
    total = np.zeros(len(cells), dtype=np.int64)
    holder = first_holder(pts, cells)
    lost = np.flatnonzero(holder < 0)
    if len(lost):
        near_pt, near_cell = shapely.STRtree(cells).query_nearest(
            pts[lost], max_distance=5 * GRID_M, all_matches=False)
        holder[lost[near_pt]] = near_cell
    held = holder >= 0
    frame = pd.DataFrame({"cell": holder[held], "id": ids[held], "hh": households[held]})
    agg = frame.groupby("cell").agg(id=("id", "min"), hh=("hh", "sum"))
    building[agg.index.to_numpy()] = agg["id"].to_numpy()
    total[agg.index.to_numpy()] = agg["hh"].to_numpy()
    return building, total
