"""Where a plan's first grids come from: the live grids of its communities, an imported
layer (GeoJSON / GeoPackage / Shapefile, in any CRS the importers know), or 多网合一 — several
specialised grid layers merged into proposed 全科网格 (gis/plan_merge.py).

A layer file loads whole or not at all: a feature that is not a polygon, is empty, or lies
outside China is refused with its feature number, and nothing is stored. Invalid polygons
are kept as drawn: plan validation reports them (rule invalid_geometry).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from sqlalchemy import Connection, text

from gis import plan_cells, plan_merge, plans
from gis.audit import Actor
from gis.auth import Principal
from gis.crs import out_of_china, parse_crs, to_wgs84
from gis.errors import InvalidInput, NotFound
from gis.import_read import read_source, resolve_crs

MAX_FEATURES = 20_000


def communities_of_street(conn: Connection, street_code: str) -> list[str]:
    """The communities in force now in a street office (9-digit code)."""
    if not (len(street_code) == 9 and street_code.isdigit()):
        raise InvalidInput(f"street_code has 9 digits; got {street_code!r}", field="street_code")
    codes = list(conn.scalars(text(
        "SELECT code FROM jurisdictions WHERE level = 'community' AND left(code, 9) = :s "
        "AND valid_from <= now() AND (valid_to IS NULL OR valid_to > now()) ORDER BY code"),
        {"s": street_code}))
    if not codes:
        raise NotFound(f"no communities in force in street office {street_code}",
                       field="street_code")
    return codes


def _count_households(conn: Connection, plan_id: int) -> None:
    """Each plan grid's households and buildings from the cells it holds."""
    conn.execute(text("""
        UPDATE grid_plan_grids g SET households = coalesce(x.h, 0), buildings = coalesce(x.b, 0)
        FROM grid_plan_grids g2
        LEFT JOIN (SELECT plan_grid_id, sum(households) AS h, count(building_id) AS b
                   FROM grid_plan_cells WHERE plan_id = :plan GROUP BY plan_grid_id) x
          ON x.plan_grid_id = g2.id
        WHERE g.id = g2.id AND g2.plan_id = :plan
    """), {"plan": plan_id})


def from_live(conn: Connection, *, name: str, community_codes: Sequence[str],
              author: Principal, actor: Actor, metric_srid: int) -> int:
    """A draft plan holding a copy of the live grids of `community_codes`, with its cells."""
    plan_id = plans.insert_plan(conn, name=name, community_codes=community_codes,
                                source="live", author=author, actor=actor)
    conn.execute(text("""
        INSERT INTO grid_plan_grids (plan_id, code, name, community_code, households,
                                     source_grid_id, geom)
        SELECT :plan, g.code, g.name, g.community_code, g.households, g.id, g.geom
        FROM grids g
        WHERE g.community_code = ANY(:codes)
          AND g.valid_from <= now() AND (g.valid_to IS NULL OR g.valid_to > now())
        ORDER BY g.code
    """), {"plan": plan_id, "codes": sorted(set(community_codes))})
    plan_cells.create_plan_cells(conn, plan_id, metric_srid)
    _count_households(conn, plan_id)
    return plan_id


def read_layer(path: Path, *, layer: str | None = None, crs: str | None = None,
               display_name: str | None = None) -> gpd.GeoDataFrame:
    """A layer of polygons in EPSG:4326 with columns code, name, community_code (None where
    the file has no such field). Raises InvalidInput naming the file and the feature."""
    source = read_source(path, layer)
    name = display_name or path.name
    frame = source.frame
    if len(frame) == 0:
        raise InvalidInput(f"{name}: the layer has no features", field="file")
    if len(frame) > MAX_FEATURES:
        raise InvalidInput(f"{name}: {len(frame):,} features; a plan layer holds at most "
                           f"{MAX_FEATURES:,}", field="file")
    geoms = frame.geometry.to_numpy()
    kinds = shapely.get_type_id(geoms)
    bad = np.flatnonzero(shapely.is_missing(geoms) | shapely.is_empty(geoms)
                         | ~np.isin(kinds, (3, 6)))
    if bad.size:
        i = int(bad[0])
        what = "empty" if geoms[i] is None or shapely.is_empty(geoms[i]) else \
            f"a {geoms[i].geom_type}"
        raise InvalidInput(f"{name}: feature {i + 1} is {what}, not a polygon "
                           f"({bad.size} such feature(s)); a plan layer holds grid polygons",
                           field="file")
    wgs = to_wgs84(frame, resolve_crs(source, parse_crs(crs) if crs else None))
    lon, lat = shapely.get_coordinates(shapely.centroid(wgs.geometry.to_numpy())).T
    outside = np.flatnonzero(out_of_china(lon, lat))
    if outside.size:
        raise InvalidInput(f"{name}: feature {int(outside[0]) + 1} lies outside China after "
                           "conversion to WGS84 (wrong CRS? pass crs, e.g. EPSG:4548 or "
                           "gcj02)", field="crs")
    columns = {c.lower(): c for c in frame.columns if c != frame.geometry.name}
    values = {key: [_text(v) for v in frame[columns[key]]] if key in columns
              else [None] * len(frame) for key in ("code", "name", "community_code")}
    return gpd.GeoDataFrame({key: pd.Series(v, dtype=object) for key, v in values.items()},
                            geometry=shapely.force_2d(wgs.geometry.to_numpy()), crs=4326)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text_ = str(value).strip()
    return text_[:-2] if text_.endswith(".0") and text_[:-2].isdigit() else (text_ or None)


# Each feature's community: its own community_code or code when valid, else the community
# (of `codes`, or any in force when none are given) holding most of its area.
_COMMUNITIES = text("""
    WITH f AS (
      SELECT n, ST_GeomFromWKB(wkb, 4326) AS g, given
      FROM unnest(CAST(:wkbs AS bytea[]), CAST(:given AS text[])) WITH ORDINALITY
           AS f(wkb, given, n)
    )
    SELECT f.n, coalesce(
      (SELECT j.code FROM jurisdictions j
       WHERE j.level = 'community' AND j.code = f.given
         AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
         AND (CAST(:codes AS text[]) IS NULL OR j.code = ANY(CAST(:codes AS text[])))),
      (SELECT j.code FROM jurisdictions j
       WHERE j.level = 'community' AND j.geom && f.g AND ST_Intersects(j.geom, f.g)
         AND j.valid_from <= now() AND (j.valid_to IS NULL OR j.valid_to > now())
         AND (CAST(:codes AS text[]) IS NULL OR j.code = ANY(CAST(:codes AS text[])))
       ORDER BY ST_Area(ST_Intersection(ST_MakeValid(f.g), j.geom)) DESC, j.code LIMIT 1))
    FROM f ORDER BY f.n
""")


def from_layer(conn: Connection, *, name: str, frame: gpd.GeoDataFrame,
               community_codes: Sequence[str] | None, author: Principal, actor: Actor,
               metric_srid: int, source_name: str) -> int:
    """A draft plan whose grids are the features of an imported layer (see read_layer).
    A feature whose 15-digit code is a live grid redraws that grid; other codes are
    dropped (new codes are given when the plan is applied)."""
    own = frame["code"].tolist()
    given = [c or (k[:12] if k and len(k) == 15 else None)
             for c, k in zip(frame["community_code"].tolist(), own, strict=True)]
    wkbs = [bytes(b) for b in shapely.to_wkb(frame.geometry.to_numpy())]
    codes = sorted(set(community_codes)) if community_codes else None
    placed = [c for _, c in conn.execute(_COMMUNITIES, {"wkbs": wkbs, "given": given,
                                                        "codes": codes}).all()]
    lost = [i for i, c in enumerate(placed) if c is None]
    if lost:
        where = f"communities {', '.join(codes)}" if codes else "any community in force"
        raise InvalidInput(f"{source_name}: feature {lost[0] + 1} does not lie in {where} "
                           f"({len(lost)} such feature(s))", field="file")
    plan_id = plans.insert_plan(conn, name=name, community_codes=codes or sorted(set(placed)),
                                source="import", author=author, actor=actor,
                                properties={"file": source_name, "features": len(frame)})
    names = frame["name"].tolist()
    conn.execute(text("""
        INSERT INTO grid_plan_grids (plan_id, code, name, community_code, source_grid_id, geom)
        SELECT :plan, lg.code, f.name, f.community, lg.id,
               ST_Multi(ST_CollectionExtract(ST_GeomFromWKB(f.wkb, 4326), 3))
        FROM unnest(CAST(:wkbs AS bytea[]), CAST(:names AS text[]), CAST(:codes AS text[]),
                    CAST(:communities AS text[])) WITH ORDINALITY
             AS f(wkb, name, code, community, n)
        LEFT JOIN grids lg ON lg.code = f.code AND lg.community_code = f.community
             AND lg.valid_from <= now() AND (lg.valid_to IS NULL OR lg.valid_to > now())
        ORDER BY f.n
    """), {"plan": plan_id, "wkbs": wkbs, "names": names, "codes": own,
           "communities": placed})
    plan_cells.create_plan_cells(conn, plan_id, metric_srid)
    _count_households(conn, plan_id)
    return plan_id


def from_layers(conn: Connection, *, name: str, layers: Sequence[gpd.GeoDataFrame],
                layer_names: Sequence[str], community_codes: Sequence[str],
                band: tuple[int, int], author: Principal, actor: Actor,
                metric_srid: int) -> tuple[int, dict[str, Any]]:
    """多网合一: a draft plan proposing merged 全科网格 for `community_codes` from two or
    more specialised layers; returns the plan id and the merge summary."""
    if len(layers) < 2:
        raise InvalidInput("多网合一 needs at least two layers", field="files")
    plan_id = plans.insert_plan(conn, name=name, community_codes=community_codes,
                                source="merge", author=author, actor=actor,
                                properties={"layers": list(layer_names)})
    for layer, layer_name in zip(layers, layer_names, strict=True):
        layer.attrs["name"] = layer_name
    summary = plan_merge.merge_into_plan(conn, plan_id, layers, band, metric_srid)
    conn.execute(text("UPDATE grid_plans SET properties = properties || "
                      "jsonb_build_object('merge', CAST(:s AS jsonb)) WHERE id = :id"),
                 {"id": plan_id, "s": json.dumps(summary, ensure_ascii=False, default=str)})
    return plan_id, summary
