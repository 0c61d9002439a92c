"""多网合一: merge several specialised grid layers (综治, 城管, 应急 …) into proposed 全科网格.

The plan's communities are cut into cells (gis/plan_cells.py) by their streets, by every
boundary of every layer and by the buildings' Voronoi cells, so any union of cells tiles
without gaps. Per community, the cells are grouped into the number of grids whose mean
household count is nearest the middle of the band, by recursive bisection of the cell
adjacency graph: each cut grows one side from an extreme cell along the community's long
axis (shortest paths that find crossing a street or a layer boundary longer, so blocks and
layer features fill first) and stops at the prefix, among those whose households leave
both sides able to reach the band, with the cheapest cut (shared edge length, cheaper on
streets and cheaper still on layer boundaries) that leaves the other side connected. A
repair pass then moves boundary cells between neighbouring grids while a grid is outside
the band, keeping every grid connected. Everything is deterministic.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import pandas as pd
import shapely
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sqlalchemy import Connection, text

from gis.errors import Conflict, InvalidInput
from gis.plan_cells import (
    cells_metric,
    first_holder,
    load_buildings,
    load_communities,
    load_streets,
    metric_polygons,
    plan_row,
    projected_crs,
    rederive_grids,
    write_cells,
)

NAME = "合并网格 {n}"
# Cut cost per metre of shared edge: inside a street block, along a street, along a layer
# boundary (divided by the number of layers whose features differ across it).
CUT_INSIDE, CUT_STREET, CUT_LAYER = 1.0, 0.3, 0.3
# Growth distance factor for crossing a street / a layer boundary (blocks fill first).
GROW_STREET, GROW_LAYER = 2.0, 3.0
LABEL_COLUMNS = ("name", "code", "id", "label")
SLIVER_SHARE = 0.005  # sources leave out features covering less of a grid, without households

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass
class _Graph:
    """Adjacency of one community's cells: neighbours, cut cost and growth length per edge."""

    n: int
    nbrs: list[list[int]]
    cut: list[dict[int, float]]
    grow: list[dict[int, float]]

    def components(self, nodes: Sequence[int]) -> IntArray:
        """Component label per node of `nodes` in the subgraph they induce."""
        index = {v: i for i, v in enumerate(nodes)}
        rows, cols = [], []
        for v in nodes:
            for u in self.nbrs[v]:
                if u in index:
                    rows.append(index[v])
                    cols.append(index[u])
        m = len(nodes)
        matrix = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(m, m))
        return np.asarray(connected_components(matrix, directed=False)[1], dtype=np.int64)

    def connected(self, nodes: Sequence[int]) -> bool:
        return len(nodes) <= 1 or int(self.components(nodes).max()) == 0


def propose_merged_grids(layers: Sequence[gpd.GeoDataFrame], communities: gpd.GeoDataFrame,
                         buildings: gpd.GeoDataFrame, streets: gpd.GeoSeries,
                         band: tuple[int, int], metric_crs: int) -> gpd.GeoDataFrame:
    """Proposed 全科网格 per community from specialised `layers` (polygon features, EPSG:4326
    unless the frame says otherwise; a feature is named by its name/id/code column, a layer
    by `frame.attrs["name"]`): columns community_code, name ('合并网格 n', numbered per
    community from the north-west), households, buildings, geometry (EPSG:4326, one Polygon
    per grid where the community is one) and sources (per layer, the features the grid draws
    from: [{layer, feature, households, share, area_m2}], share = part of the grid's
    households, or of its area when it holds none).

    The grids of a community tile it (they are unions of cells) and each is connected. The
    number of grids is the one whose mean households is nearest the middle of `band` among
    those inside it; a community whose total allows no such number (fewer households than
    the band's bottom, or 550 for 300-500) gets the count nearest the band.
    """
    proposal, _ = _propose(layers, communities, buildings, streets, band, metric_crs)
    return proposal


def merge_into_plan(conn: Connection, plan_id: int, layers: Sequence[gpd.GeoDataFrame],
                    band: tuple[int, int], metric_srid: int) -> dict[str, Any]:
    """Replace the grids and cells of draft plan `plan_id` with the 多网合一 proposal for
    its communities (grids: code and source_grid_id NULL, name '合并网格 n', properties
    {"sources": [...], "merge": {...}}; cells: the proposal's cells, each in its grid), then
    rederive the grids from their cells. Returns a summary: grids, cells, households
    min/max, grids_out_of_band, band, per community its grids and households, per layer its
    features. The caller holds the transaction.

    Raises NotFound (no such plan), Conflict (the plan is not a draft), InvalidInput naming
    the field (layers, band, metric_srid).
    """
    plan_row(conn, plan_id)  # NotFound
    status, codes = conn.execute(text("SELECT status, community_codes FROM grid_plans "
                                      "WHERE id = :id FOR UPDATE"), {"id": plan_id}).one()
    if status != "draft":
        raise Conflict(f"plan {plan_id} is {status}; only a draft takes a merge",
                       field="plan_id")
    codes = list(codes)
    proposal, cells = _propose(layers, load_communities(conn, codes),
                               load_buildings(conn, codes), load_streets(conn, codes), band,
                               metric_srid)
    conn.execute(text("DELETE FROM grid_plan_cells WHERE plan_id = :plan"), {"plan": plan_id})
    conn.execute(text("DELETE FROM grid_plan_grids WHERE plan_id = :plan"), {"plan": plan_id})
    lo, hi = _check_band(band)
    names = [layer_name(layer, i) for i, layer in enumerate(layers)]
    props = [json.dumps({"sources": s, "merge": {"band": [lo, hi], "layers": names}},
                        ensure_ascii=False) for s in proposal["sources"]]
    rows = conn.execute(text("""
        INSERT INTO grid_plan_grids (plan_id, code, name, community_code, households,
                                     buildings, source_grid_id, geom, properties)
        SELECT :plan, NULL, t.name, t.community_code, t.households, t.buildings, NULL,
               ST_Multi(ST_GeomFromWKB(decode(t.wkb, 'hex'), 4326)), CAST(t.props AS jsonb)
        FROM unnest(CAST(:names AS text[]), CAST(:communities AS text[]),
                    CAST(:households AS integer[]), CAST(:buildings AS integer[]),
                    CAST(:wkb AS text[]), CAST(:props AS text[]))
             WITH ORDINALITY AS t(name, community_code, households, buildings, wkb, props, ord)
        ORDER BY t.ord
        RETURNING id, community_code, name
    """), {"plan": plan_id, "names": proposal["name"].tolist(),
           "communities": proposal["community_code"].tolist(),
           "households": [int(h) for h in proposal["households"]],
           "buildings": [int(b) for b in proposal["buildings"]],
           "wkb": [str(w) for w in shapely.to_wkb(proposal.geometry.to_numpy(), hex=True)],
           "props": props}).all()
    grid_id = {(r.community_code, r.name): int(r.id) for r in rows}
    ids = [grid_id[(c, n)] for c, n in zip(proposal["community_code"], proposal["name"],
                                           strict=True)]
    plan_grid = pd.Series([ids[r] for r in cells["region"]], dtype="Int64")
    written = write_cells(conn, plan_id, cells, plan_grid)
    rederive_grids(conn, plan_id, ids)
    return _summary(conn, plan_id, (lo, hi), written, names, layers)


# -- the proposal --------------------------------------------------------------------------


def _propose(layers: Sequence[gpd.GeoDataFrame], communities: gpd.GeoDataFrame,
             buildings: gpd.GeoDataFrame, streets: gpd.GeoSeries, band: tuple[int, int],
             metric_crs: int) -> tuple[gpd.GeoDataFrame, gpd.GeoDataFrame]:
    """The proposal and its cells (EPSG:4326; cells carry `region`, the proposal row)."""
    lo, hi = _check_band(band)
    crs = projected_crs(metric_crs)
    checked = [_check_layer(layer, i) for i, layer in enumerate(layers)]
    if not checked:
        raise InvalidInput("give at least one layer to merge", field="layers")
    zones = gpd.GeoDataFrame(
        {"key": [(i, j) for i, layer in enumerate(checked) for j in range(len(layer))]},
        geometry=pd.concat([layer.geometry.to_crs(4326) for layer in checked],
                           ignore_index=True), crs=4326)
    cells = cells_metric(communities, zones, buildings, streets, metric_crs)
    points = shapely.point_on_surface(cells.geometry.to_numpy())
    combo = np.stack([first_holder(points, metric_polygons(layer, crs)) for layer in checked],
                     axis=1) if len(cells) else np.zeros((0, len(checked)), np.int64)
    region = np.full(len(cells), -1, dtype=np.int64)
    community = cells["community_code"].to_numpy()
    next_region = 0
    for code in sorted(set(community)):
        nodes = np.flatnonzero(community == code)
        labels = _partition(cells.iloc[nodes], combo[nodes], lo, hi)
        region[nodes] = labels + next_region
        next_region += int(labels.max()) + 1
    cells = cells.assign(region=region)
    proposal = _grids(cells, combo, checked, crs)
    # renumber regions in the order of the proposal rows
    cells["region"] = proposal.attrs.pop("order")[cells["region"].to_numpy()]
    return proposal, cells.drop(columns="piece").to_crs(4326)


def _check_band(band: tuple[int, int]) -> tuple[int, int]:
    try:
        lo, hi = (int(band[0]), int(band[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise InvalidInput("band must be two whole numbers of households (min, max)",
                           field="band") from exc
    if lo < 0 or hi <= lo:
        raise InvalidInput(f"band must satisfy 0 <= min < max; got {lo}-{hi}", field="band")
    return lo, hi


def _check_layer(layer: Any, i: int) -> gpd.GeoDataFrame:
    """The layer in EPSG:4326 (assumed when it names no CRS) with a `label` per feature (its
    name, code or id, else '#n'), or InvalidInput naming the layer and its features."""
    if not isinstance(layer, gpd.GeoDataFrame):
        raise InvalidInput(f"layer {i + 1} is not a table of features", field="layers")
    name = layer_name(layer, i)
    if len(layer) == 0:
        raise InvalidInput(f"{name}: the layer has no features", field="layers")
    geoms = layer.geometry.to_numpy()
    polygonal = np.isin(shapely.get_type_id(geoms), (3, 6)) & ~shapely.is_empty(geoms)
    bad = np.flatnonzero(~polygonal)
    if len(bad):
        raise InvalidInput(f"{name}: feature(s) {_few(bad)} are not polygons",
                           field="layers", detail={"layer": name, "features": _one(bad)})
    invalid = np.flatnonzero(~shapely.is_valid(geoms))
    if len(invalid):
        raise InvalidInput(f"{name}: feature(s) {_few(invalid)} have invalid geometry "
                           f"({shapely.is_valid_reason(geoms[invalid[0]])})",
                           field="layers", detail={"layer": name, "features": _one(invalid)})
    frame = (layer if layer.crs is not None else layer.set_crs(4326)).to_crs(4326)
    columns = [c for c in LABEL_COLUMNS if c in frame.columns]
    labels = [next((str(row[c]) for c in columns if _present(row[c])), f"#{j + 1}")
              for j, row in enumerate(frame[columns].to_dict("records"))]
    out = gpd.GeoDataFrame({"label": labels}, geometry=frame.geometry.to_numpy(), crs=4326)
    out.attrs["name"] = name
    return out


def _present(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) \
        and str(value).strip() != ""


def _one(index: IntArray) -> list[int]:
    """Feature numbers counted from 1."""
    return [int(j) + 1 for j in index]


def layer_name(layer: gpd.GeoDataFrame, i: int) -> str:
    """A layer's name: frame.attrs["name"] (the caller sets it, e.g. to the file name), or
    'layer i' (from 1)."""
    return str(layer.attrs.get("name") or f"layer {i + 1}")


def _few(index: IntArray) -> str:
    shown = ", ".join(str(j) for j in _one(index[:5]))
    return shown + (" …" if len(index) > 5 else "")


def grid_count(total: int, lo: int, hi: int) -> int:
    """How many grids a community of `total` households gets: one when it fits one grid;
    else, among the counts whose mean lies in [lo, hi], the one whose mean is nearest
    (lo + hi) / 2 (fewer on a tie); when none does, the count whose mean is nearest the
    band."""
    if total <= hi:
        return 1
    mid = (lo + hi) / 2
    fewest = math.ceil(total / hi)
    most = total // lo if lo > 0 else math.ceil(total / mid) + 1
    inside = [k for k in range(fewest, most + 1) if lo <= total / k <= hi]
    if inside:
        return min(inside, key=lambda k: (abs(total / k - mid), k))
    return min({max(most, 1), fewest},
               key=lambda k: (max(lo - total / k, total / k - hi, 0.0), k))


def _partition(cells: gpd.GeoDataFrame, combo: IntArray, lo: int, hi: int) -> IntArray:
    """Region label (0..k-1) per cell of one community."""
    n = len(cells)
    households = cells["households"].to_numpy(dtype=np.int64)
    k = grid_count(int(households.sum()), lo, hi)
    if k <= 1 or n <= 1:
        return np.zeros(n, dtype=np.int64)
    geoms = cells.geometry.to_numpy()
    graph = _adjacency(geoms, cells["piece"].to_numpy(), combo)
    area = shapely.area(geoms)
    xy = shapely.get_coordinates(shapely.centroid(geoms))
    parts = _split(list(range(n)), k, graph, households, xy, area, lo, hi)
    labels = np.zeros(n, dtype=np.int64)
    for r, part in enumerate(parts):
        labels[part] = r
    return _repair(labels, graph, households, lo, hi)


def _adjacency(geoms: npt.NDArray[Any], piece: IntArray, combo: IntArray) -> _Graph:
    """Cells sharing an edge of positive length; components the community's cells leave
    apart (exclaves) are joined to their nearest cell by an edge of no length."""
    n = len(geoms)
    tree = shapely.STRtree(geoms)
    a, b = tree.query(geoms, predicate="intersects")
    keep = a < b
    a, b = a[keep], b[keep]
    length = shapely.length(shapely.intersection(shapely.boundary(geoms[a]),
                                                 shapely.boundary(geoms[b])))
    shared = length > 0
    a, b, length = a[shared], b[shared], length[shared]
    nbrs: list[list[int]] = [[] for _ in range(n)]
    cut: list[dict[int, float]] = [{} for _ in range(n)]
    grow: list[dict[int, float]] = [{} for _ in range(n)]
    centre = shapely.centroid(geoms)
    step = shapely.distance(centre[a], centre[b])
    differ = (combo[a] != combo[b]).sum(axis=1)
    street = piece[a] != piece[b]
    cost = np.where(differ > 0, CUT_LAYER / np.maximum(differ, 1),
                    np.where(street, CUT_STREET, CUT_INSIDE)) * length
    factor = np.where(differ > 0, GROW_LAYER, np.where(street, GROW_STREET, 1.0))
    for i, j, c, g in zip(a.tolist(), b.tolist(), cost.tolist(), (step * factor).tolist(),
                          strict=True):
        nbrs[i].append(j)
        nbrs[j].append(i)
        cut[i][j] = cut[j][i] = c
        grow[i][j] = grow[j][i] = g
    graph = _Graph(n, nbrs, cut, grow)
    comp = graph.components(list(range(n)))
    for c in range(1, int(comp.max()) + 1):
        joined = np.flatnonzero(comp < c)
        apart = np.flatnonzero(comp == c)
        d = shapely.distance(geoms[apart][:, None], geoms[joined][None, :])
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        u, v = int(apart[i]), int(joined[j])
        nbrs[u].append(v)
        nbrs[v].append(u)
        cut[u][v] = cut[v][u] = 0.0
        grow[u][v] = grow[v][u] = float(d[i, j]) * GROW_LAYER
    return graph


def _split(nodes: list[int], k: int, graph: _Graph, households: IntArray, xy: FloatArray,
           area: FloatArray, lo: int, hi: int) -> list[list[int]]:
    """`nodes` (connected) cut into k connected parts by recursive bisection."""
    if k <= 1 or len(nodes) <= 1:
        return [nodes]
    k1 = k // 2
    k2 = k - k1
    total = int(households[nodes].sum())
    target = total * k1 / k
    low: float = max(k1 * lo, total - k2 * hi)
    high: float = min(k1 * hi, total - k2 * lo)
    if low > high:
        low = high = target
    orders = _grow_orders(nodes, graph, xy, area)
    first = _best_prefix(orders, nodes, graph, households, target, low, high)
    chosen = set(first)
    rest = [v for v in nodes if v not in chosen]
    return (_split(first, k1, graph, households, xy, area, lo, hi)
            + _split(rest, k2, graph, households, xy, area, lo, hi))


def _grow_orders(nodes: list[int], graph: _Graph, xy: FloatArray,
                 area: FloatArray) -> list[list[int]]:
    """The orders in which a region grows from the cells at both ends of the nodes' long
    and short axes: shortest-path (Dijkstra) order with the growth lengths."""
    pts = xy[nodes]
    weights = np.maximum(area[nodes], 1e-9)
    mean = np.average(pts, axis=0, weights=weights)
    cov = np.cov((pts - mean).T, aweights=weights) if len(nodes) > 2 else np.eye(2)
    axes = np.linalg.eigh(np.atleast_2d(cov))[1][:, ::-1].T  # long axis first
    seeds: list[int] = []
    for axis in axes:
        if axis[0] < 0 or (axis[0] == 0 and axis[1] < 0):
            axis = -axis  # the eigen solver's sign does not matter
        projection = (pts - mean) @ axis
        for end in (int(np.argmin(projection)), int(np.argmax(projection))):
            if nodes[end] not in seeds:
                seeds.append(nodes[end])
    return [_dijkstra_order(seed, nodes, graph) for seed in seeds]


def _dijkstra_order(seed: int, nodes: list[int], graph: _Graph) -> list[int]:
    """`nodes` in order of growth distance from `seed` (ties by node index); every prefix
    is connected."""
    inside = set(nodes)
    dist = {seed: 0.0}
    heap = [(0.0, seed)]
    order: list[int] = []
    done: set[int] = set()
    while heap:
        d, v = heapq.heappop(heap)
        if v in done:
            continue
        done.add(v)
        order.append(v)
        for u in graph.nbrs[v]:
            if u in inside and u not in done:
                nd = d + graph.grow[v][u]
                if nd < dist.get(u, math.inf):
                    dist[u] = nd
                    heapq.heappush(heap, (nd, u))
    order.extend(v for v in nodes if v not in done)  # unreachable once exclaves are joined
    return order


def _best_prefix(orders: list[list[int]], nodes: list[int], graph: _Graph,
                 households: IntArray, target: float, low: float, high: float) -> list[int]:
    """Of the prefixes of `orders` with households in [low, high], the one of least cut
    cost (preferring those within a quarter of the window of `target`) whose complement in
    `nodes` stays connected; failing that the nearest `target`, with the complement's
    parts other than its largest added to it."""
    inside = set(nodes)
    candidates: list[tuple[bool, float, float, int, int]] = []
    slack = (high - low) / 4  # cuts near the target leave both halves slack for their own
    nearest: tuple[float, int, int] = (math.inf, 0, 1)
    for o, order in enumerate(orders):
        in_prefix: set[int] = set()
        cut = 0.0
        total = 0
        for size, v in enumerate(order[:-1], start=1):
            for u in graph.nbrs[v]:
                if u in inside:
                    cut += -graph.cut[v][u] if u in in_prefix else graph.cut[v][u]
            in_prefix.add(v)
            total += int(households[v])
            off = abs(total - target)
            if low <= total <= high:
                candidates.append((off > slack, round(cut, 6), off, o, size))
            nearest = min(nearest, (off, o, size))
    candidates.sort()
    for *_, o, size in candidates:
        if graph.connected(orders[o][size:]):
            return orders[o][:size]
    _, o, size = (candidates[0][2:] if candidates else nearest)
    first, rest = orders[o][:size], orders[o][size:]
    comp = graph.components(rest)
    if comp.max() > 0:  # keep the complement's largest part (by households) apart
        weight = np.bincount(comp, weights=households[rest].astype(float))
        keep = int(np.argmax(weight))
        first = first + [v for v, c in zip(rest, comp, strict=True) if c != keep]
    return first


def _violation(h: int, lo: int, hi: int) -> int:
    return max(lo - h, h - hi, 0)


def _repair(labels: IntArray, graph: _Graph, households: IntArray, lo: int,
            hi: int) -> IntArray:
    """While a region is outside the band, move one boundary cell at a time to a
    neighbouring region, keeping every region connected: the move that most reduces the
    total distance to the band or, failing that, evens the regions' households out (sum of
    squared deviations from the mean), so that a region can take from a neighbour that
    takes in turn from its own. Ties: the cheapest cut, then the lowest cell."""
    labels = labels.copy()
    k = int(labels.max()) + 1
    sums = np.bincount(labels, weights=households, minlength=k).astype(np.int64)
    mean = float(sums.sum()) / k
    for _ in range(10 * graph.n):
        if all(_violation(int(h), lo, hi) == 0 for h in sums):
            break
        best: tuple[int, float, float, int, int] | None = None
        for v in range(graph.n):
            h = int(households[v])
            a = int(labels[v])
            if h == 0:
                continue
            for b in sorted({int(labels[u]) for u in graph.nbrs[v]} - {a}):
                sa, sb = int(sums[a]), int(sums[b])
                dv = (_violation(sa - h, lo, hi) + _violation(sb + h, lo, hi)
                      - _violation(sa, lo, hi) - _violation(sb, lo, hi))
                ds = ((sa - h - mean) ** 2 + (sb + h - mean) ** 2
                      - (sa - mean) ** 2 - (sb - mean) ** 2)
                if dv > 0 or (dv == 0 and ds >= 0):
                    continue
                gain = sum(graph.cut[v][u] for u in graph.nbrs[v] if labels[u] == a) - sum(
                    graph.cut[v][u] for u in graph.nbrs[v] if labels[u] == b)
                key = (dv, round(ds, 6), round(gain, 6), v, b)
                if best is not None and key >= best:
                    continue
                rest = [u for u in np.flatnonzero(labels == a).tolist() if u != v]
                if rest and graph.connected(rest):
                    best = key
        if best is None:
            break
        *_, v, b = best
        a = int(labels[v])
        labels[v] = b
        sums[a] -= households[v]
        sums[b] += households[v]
    return labels


def _grids(cells: gpd.GeoDataFrame, combo: IntArray, layers: list[gpd.GeoDataFrame],
           crs: Any) -> gpd.GeoDataFrame:
    """One row per region: union of its cells, households, buildings, sources; rows in
    community order, then north-west first. attrs["order"] maps region → row."""
    regions = cells["region"].to_numpy()
    k = int(regions.max()) + 1 if len(regions) else 0
    merged = gpd.GeoDataFrame({"region": regions}, geometry=cells.geometry.to_numpy(),
                              crs=crs).dissolve(by="region", method="coverage", sort=True)
    geoms = merged.geometry.reindex(range(k)).to_numpy()
    community = cells.groupby("region")["community_code"].first().reindex(range(k)).to_numpy()
    households = np.bincount(regions, weights=cells["households"], minlength=k).astype(int)
    has_building = cells["building_id"].notna().to_numpy()
    buildings = np.bincount(regions[has_building], minlength=k).astype(int)
    centre = shapely.get_coordinates(shapely.point_on_surface(geoms))
    rows = np.lexsort((np.round(centre[:, 0], 1), -np.round(centre[:, 1], 1), community))
    order = np.empty(k, dtype=np.int64)
    order[rows] = np.arange(k)
    number = pd.Series(community[rows]).groupby(community[rows]).cumcount().to_numpy() + 1
    sources = _sources(cells, combo, layers, k)
    frame = gpd.GeoDataFrame({
        "community_code": community[rows],
        "name": [NAME.format(n=int(n)) for n in number],
        "households": households[rows],
        "buildings": buildings[rows],
        "sources": [sources[r] for r in rows],
    }, geometry=list(geoms[rows]), crs=crs).to_crs(4326)
    frame.attrs["order"] = order
    return frame


def _sources(cells: gpd.GeoDataFrame, combo: IntArray, layers: list[gpd.GeoDataFrame],
             k: int) -> list[list[dict[str, Any]]]:
    """Per region and layer, the features its cells lie in, with households and area
    (most households first; slivers without households left out)."""
    area = shapely.area(cells.geometry.to_numpy())
    regions = cells["region"].to_numpy()
    out: list[list[dict[str, Any]]] = [[] for _ in range(k)]
    region_hh = np.bincount(regions, weights=cells["households"], minlength=k)
    region_area = np.bincount(regions, weights=area, minlength=k)
    for i, layer in enumerate(layers):
        name = str(layer.attrs["name"])
        table = pd.DataFrame({"region": regions, "feature": combo[:, i],
                              "hh": cells["households"].to_numpy(), "area": area})
        agg = table.groupby(["region", "feature"], sort=True).sum().reset_index()
        agg = agg.sort_values(["region", "hh", "area", "feature"],
                              ascending=[True, False, False, True])
        labels = layer["label"].tolist()
        for r, f, hh, a in agg[["region", "feature", "hh", "area"]].itertuples(index=False):
            total_hh, total_area = region_hh[int(r)], region_area[int(r)]
            if hh == 0 and a < SLIVER_SHARE * total_area:
                continue  # a sliver where the layer's boundary misses the grid's
            share = hh / total_hh if total_hh > 0 else a / total_area if total_area else 0.0
            out[int(r)].append({"layer": name,
                                "feature": labels[int(f)] if f >= 0 else None,
                                "households": int(hh), "share": round(float(share), 4),
                                "area_m2": round(float(a), 1)})
    return out


def _summary(conn: Connection, plan_id: int, band: tuple[int, int], cells: int,
             names: list[str], layers: Sequence[gpd.GeoDataFrame]) -> dict[str, Any]:
    """The written plan's grids per community, household range and grids outside band."""
    lo, hi = band
    rows = conn.execute(text("""
        SELECT community_code, count(*) AS grids, sum(households) AS households,
               min(households) AS households_min, max(households) AS households_max,
               count(*) FILTER (WHERE households NOT BETWEEN :lo AND :hi) AS out_of_band
        FROM grid_plan_grids WHERE plan_id = :plan
        GROUP BY community_code ORDER BY community_code
    """), {"plan": plan_id, "lo": lo, "hi": hi}).mappings().all()
    communities = [{k: (int(v) if k != "community_code" else v) for k, v in r.items()}
                   for r in rows]
    return {
        "plan_id": plan_id,
        "band": [lo, hi],
        "grids": sum(c["grids"] for c in communities),
        "cells": cells,
        "households": sum(c["households"] for c in communities),
        "households_min": min((c["households_min"] for c in communities), default=None),
        "households_max": max((c["households_max"] for c in communities), default=None),
        "grids_out_of_band": sum(c["out_of_band"] for c in communities),
        "communities": communities,
        "layers": [{"name": n, "features": len(layer)} for n, layer in
                   zip(names, layers, strict=True)],
    }
