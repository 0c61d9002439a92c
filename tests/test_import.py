"""Importing GeoJSON / GeoPackage / Shapefile into PostGIS: good files load (whole), bad
files are rejected with a report naming feature, code, field and reason, and leave the
database untouched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from shapely.geometry import LineString, Point, Polygon, box
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from api.cli import app
from gis.crs import wgs84_to_bd09, wgs84_to_gcj02
from gis.errors import ImportRejected, InvalidInput
from gis.import_read import CHINA_TZ
from gis.importers import ImportOptions, ImportReport, Issue, Kind, import_file

DATA = Path(__file__).parent / "data"
JURISDICTIONS = DATA / "xicheng_jurisdictions.geojson"
PROJECT = Path(__file__).resolve().parents[1]
TABLES = ("jurisdictions", "grids", "buildings", "streets", "audit_log")

DISTRICT = box(116.30, 39.86, 116.40, 39.94)
STREET = box(116.30, 39.86, 116.35, 39.90)
COMMUNITY = box(116.30, 39.86, 116.325, 39.88)
FENGTAI = box(116.30, 39.80, 116.40, 39.86)  # south of 西城, sharing the line y = 39.86


def write(path: Path, records: list[dict[str, Any]], crs: str | None = "EPSG:4326",
          layer: str | None = None) -> Path:
    """Write features ({"geometry": …, **properties}) with pyogrio; format from the suffix."""
    frame = gpd.GeoDataFrame(records, geometry="geometry", crs=crs)
    frame.to_file(path, layer=layer, engine="pyogrio")
    return path


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0 for t in TABLES}  # noqa: S608


def load_base(engine: Engine) -> None:
    """西城 (110102) with two streets and a community, from the GeoJSON fixture."""
    import_file(engine, "jurisdictions", JURISDICTIONS, ImportOptions())


def rejected(engine: Engine, kind: Kind, path: Path, options: ImportOptions | None = None
             ) -> ImportReport:
    """Import expecting rejection; check nothing new is in the database; the report."""
    before = counts(engine)
    with pytest.raises(ImportRejected) as caught:
        import_file(engine, kind, path, options or ImportOptions())
    assert counts(engine) == before, "a rejected file must leave the database untouched"
    report = caught.value.detail
    assert isinstance(report, ImportReport)
    assert report.loaded == 0 and report.rejected
    assert path.name in caught.value.message
    return report


def only(report: ImportReport) -> Issue:
    assert len(report.rejected) == 1, report.issues
    return report.rejected[0]


# -- good files -------------------------------------------------------------------------


def test_geojson_jurisdictions_load_whole(engine: Engine) -> None:
    report = import_file(engine, "jurisdictions", JURISDICTIONS, ImportOptions(actor="tester"))
    assert (report.features, report.loaded, report.issues) == (4, 4, [])
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT code, level, name, parent_code, GeometryType(geom) AS type, source, "
            "ST_Equals(geom, ST_GeomFromText(:street, 4326)) AS same "
            "FROM jurisdictions ORDER BY code"), {"street": STREET.wkt}).all()
        audit = conn.execute(text(
            "SELECT actor, action, object_type, after FROM audit_log")).one()
    assert [(r.code, r.level) for r in rows] == [
        ("110102", "district"), ("110102020", "street"), ("110102020001", "community"),
        ("110102021", "street")]
    street = rows[1]
    assert street.name == "广安门外街道" and street.parent_code == "110102"
    assert street.same and street.type == "MULTIPOLYGON"
    assert street.source == JURISDICTIONS.name
    assert (audit.actor, audit.action, audit.object_type) == ("tester", "import", "jurisdictions")
    assert audit.after["features"] == 4 and audit.after["repaired"] == 0
    assert audit.after["file"].endswith(JURISDICTIONS.name)


def test_geopackage_grids_load_with_layer_and_field_mapping(engine: Engine,
                                                            tmp_path: Path) -> None:
    load_base(engine)
    path = tmp_path / "grids.gpkg"
    grids = [
        {"GRID_NO": "110102020001001", "HH": 320, "名称": "一网格",
         "geometry": box(116.30, 39.86, 116.3125, 39.88)},
        {"GRID_NO": "110102020001002", "HH": 410, "名称": "二网格",
         "geometry": box(116.3125, 39.86, 116.325, 39.88)},
    ]
    write(path, grids, layer="grids")
    write(path, [{"x": 1, "geometry": Point(116.31, 39.87)}], layer="notes")
    report = rejected(engine, "grids", path)
    assert "2 layers (grids, notes); choose one with --layer" in only(report).reason

    options = ImportOptions(layer="grids", fields={"code": "GRID_NO", "households": "HH",
                                                   "name": "名称"}, synthetic=True)
    report = import_file(engine, "grids", path, options)
    assert report.loaded == 2
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT code, name, households, community_code, is_synthetic, "
            "round(ST_XMax(geom)::numeric, 6) AS xmax FROM grids ORDER BY code")).all()
    assert [(r.code, r.name, r.households, r.community_code) for r in rows] == [
        ("110102020001001", "一网格", 320, "110102020001"),
        ("110102020001002", "二网格", 410, "110102020001")]
    assert rows[0].is_synthetic and float(rows[0].xmax) == 116.3125


def test_shapefile_in_projected_crs_loads_and_district_comes_from_largest_share(
        engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    write(tmp_path / "fengtai.geojson", [
        {"code": "110106", "name": "丰台区", "level": "district", "geometry": FENGTAI}])
    import_file(engine, "jurisdictions", tmp_path / "fengtai.geojson", ImportOptions())
    to_metres = pyproj.Transformer.from_crs(4326, 4548, always_xy=True)
    # One building wholly in 西城, one straddling the district line: 1/3 north, 2/3 south.
    inside = box(116.36, 39.90, 116.3605, 39.9004)
    straddling = box(116.3700, 39.8596, 116.3705, 39.8602)
    projected = [shapely.transform(g, lambda c: np.column_stack(to_metres.transform(
        c[:, 0], c[:, 1]))) for g in (inside, straddling)]
    path = write(tmp_path / "buildings.shp", [
        {"code": "B1", "floors": 6, "households": 48, "geometry": projected[0]},
        {"code": "B2", "floors": 18, "households": 200, "geometry": projected[1]},
    ], crs="EPSG:4548")
    assert (tmp_path / "buildings.prj").exists()
    report = import_file(engine, "buildings", path, ImportOptions())
    assert report.loaded == 2 and not report.issues
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT code, district_code, floors, households, "
            "ST_HausdorffDistance(ST_Transform(geom, 4548), "
            "  ST_Transform(ST_GeomFromText(:w, 4326), 4548)) AS error_m "
            "FROM buildings WHERE code = 'B1' UNION ALL "
            "SELECT code, district_code, floors, households, 0 FROM buildings WHERE code = 'B2' "
            "ORDER BY code"), {"w": inside.wkt}).all()
    assert [(r.code, r.district_code, r.floors, r.households) for r in rows] == [
        ("B1", "110102", 6, 48), ("B2", "110106", 18, 200)]
    assert rows[0].error_m < 0.01


def test_streets_accept_chinese_classes_and_become_multilines(engine: Engine,
                                                              tmp_path: Path) -> None:
    load_base(engine)
    path = write(tmp_path / "streets.geojson", [
        {"code": "S1", "name": "广安门外大街", "road_class": "主干道",
         "geometry": LineString([(116.31, 39.89), (116.39, 39.89)])},
        {"code": "S2", "name": "校场胡同", "road_class": "胡同",
         "geometry": LineString([(116.32, 39.87), (116.32, 39.88)])},
        {"code": "S3", "name": "南线阁小巷", "road_class": "小巷", "district_code": "110102",
         "geometry": LineString([(116.33, 39.87), (116.33, 39.88)])},
    ])
    report = import_file(engine, "streets", path, ImportOptions())
    assert report.loaded == 3
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT code, road_class, district_code, GeometryType(geom) FROM streets "
            "ORDER BY code")).all()
    assert [tuple(r) for r in rows] == [
        ("S1", "arterial", "110102", "MULTILINESTRING"),
        ("S2", "alley", "110102", "MULTILINESTRING"),
        ("S3", "alley", "110102", "MULTILINESTRING")]


def test_dry_run_reports_and_loads_nothing(engine: Engine) -> None:
    report = import_file(engine, "jurisdictions", JURISDICTIONS, ImportOptions(dry_run=True))
    assert (report.features, report.loaded, report.rejected) == (4, 0, [])
    assert "dry run: 4 features would load" in report.summary()
    assert set(counts(engine).values()) == {0}


# -- CRS handling -----------------------------------------------------------------------


@pytest.mark.parametrize(("crs", "forward"), [("gcj02", wgs84_to_gcj02),
                                              ("BD-09", wgs84_to_bd09)])
def test_offset_coordinates_land_where_they_belong(engine: Engine, tmp_path: Path, crs: str,
                                                   forward: Any) -> None:
    load_base(engine)
    footprint = box(116.3601, 39.9001, 116.3606, 39.9005)
    shifted = shapely.transform(footprint, lambda c: np.column_stack(forward(c[:, 0], c[:, 1])))
    geod = pyproj.Geod(ellps="WGS84")
    x0, y0 = footprint.exterior.coords[0]
    x1, y1 = shifted.exterior.coords[0]
    assert geod.inv(x0, y0, x1, y1)[2] > 100, "the raw offset must be large for this test"
    path = write(tmp_path / "amap.geojson", [{"code": "B-GCJ", "geometry": shifted}])
    import_file(engine, "buildings", path, ImportOptions(crs=crs))
    with engine.connect() as conn:
        error_m = conn.scalar(text(
            "SELECT ST_HausdorffDistance(ST_Transform(geom, 4548), "
            "ST_Transform(ST_GeomFromText(:w, 4326), 4548)) FROM buildings"),
            {"w": footprint.wkt})
    assert error_m is not None and error_m < 0.5


def test_projected_metres_without_crs_are_rejected_with_a_hint(engine: Engine,
                                                               tmp_path: Path) -> None:
    metres = box(500000, 4420000, 500100, 4420100)
    # GeoJSON without a crs member is read as lon/lat: the coordinates give it away.
    report = rejected(engine, "buildings",
                      write(tmp_path / "metres.geojson", [{"code": "M1", "geometry": metres}]))
    issue = only(report)
    assert (issue.feature, issue.code, issue.field) == (1, "M1", "geometry")
    assert "coordinates look projected (x=500000" in issue.reason and "--crs" in issue.reason
    # A Shapefile without .prj has no CRS at all.
    with pytest.warns(UserWarning, match="'crs' was not provided"):
        shp = write(tmp_path / "noprj.shp", [{"code": "M1", "geometry": metres}], crs=None)
    issue = only(rejected(engine, "buildings", shp))
    assert issue.feature is None and issue.field == "crs"
    assert "declares no coordinate reference system" in issue.reason and "--crs" in issue.reason
    # Lon/lat with a projected --crs is caught too.
    lonlat = write(tmp_path / "lonlat.geojson", [{"code": "L1", "geometry": STREET}])
    issue = only(rejected(engine, "buildings", lonlat, ImportOptions(crs="EPSG:4548")))
    assert "look like longitude/latitude" in issue.reason and issue.feature == 1


def test_unknown_crs_option_is_an_input_error(engine: Engine) -> None:
    with pytest.raises(InvalidInput, match="unknown coordinate reference system"):
        import_file(engine, "jurisdictions", JURISDICTIONS, ImportOptions(crs="moon"))


# -- invalid geometries -----------------------------------------------------------------


def test_bow_tie_is_rejected_with_the_self_intersection(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    bow_tie = Polygon([(116.36, 39.90), (116.361, 39.901), (116.361, 39.90),
                       (116.36, 39.901), (116.36, 39.90)])
    path = write(tmp_path / "bowtie.geojson", [
        {"code": "OK1", "geometry": box(116.37, 39.90, 116.3705, 39.9005)},
        {"code": "BAD", "geometry": bow_tie},
    ])
    issue = only(rejected(engine, "buildings", path))
    assert (issue.feature, issue.code, issue.field) == (2, "BAD", "geometry")
    assert issue.reason.startswith("self-intersection at (116.3605 39.9005)")
    assert "cannot be repaired" in issue.reason


def test_small_self_intersection_is_repaired_with_a_note(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    # A square whose last corner has a tiny twisted loop: area changes by far less than 1%.
    twisted = Polygon([(116.36, 39.90), (116.37, 39.90), (116.37, 39.91), (116.36, 39.91),
                       (116.36, 39.9002), (116.3602, 39.8998), (116.36, 39.90)])
    assert not twisted.is_valid
    path = write(tmp_path / "twisted.geojson", [{"code": "T1", "geometry": twisted}])
    report = import_file(engine, "buildings", path, ImportOptions())
    assert report.loaded == 1 and report.repaired == 1 and not report.rejected
    note = report.issues[0]
    assert (note.feature, note.code, note.action) == (1, "T1", "repaired")
    assert note.reason.startswith("self-intersection at (116.3601 39.9)")
    assert "repaired with make_valid (area changed by 0.02%)" in note.reason
    with engine.connect() as conn:
        valid, after = conn.execute(text(
            "SELECT ST_IsValid(geom), "
            "(SELECT after FROM audit_log WHERE object_type = 'buildings') FROM buildings")).one()
    assert valid and after["repaired"] == 1


def test_wrong_and_mixed_geometry_types_are_reported_per_feature(engine: Engine,
                                                                 tmp_path: Path) -> None:
    load_base(engine)
    collection = shapely.GeometryCollection([box(116.36, 39.90, 116.361, 39.901),
                                             LineString([(116.36, 39.90), (116.37, 39.91)])])
    path = tmp_path / "mixed.geojson"
    features = [
        {"type": "Feature", "properties": {"code": "P1"},
         "geometry": shapely.geometry.mapping(box(116.37, 39.90, 116.371, 39.901))},
        {"type": "Feature", "properties": {"code": "X2"},
         "geometry": shapely.geometry.mapping(Point(116.36, 39.90))},
        {"type": "Feature", "properties": {"code": "X3"},
         "geometry": shapely.geometry.mapping(collection)},
        {"type": "Feature", "properties": {"code": "X4"}, "geometry": None},
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    report = rejected(engine, "buildings", path)
    by_feature = {i.feature: i for i in report.rejected}
    assert [i.feature for i in report.rejected] == [2, 3, 4]
    assert by_feature[2].code == "X2" and by_feature[2].field == "geometry"
    assert "wrong geometry type Point; buildings need Polygon or MultiPolygon" in \
        by_feature[2].reason
    assert "mixes" in by_feature[2].reason
    assert "mixed geometry types in one feature (GeometryCollection of LineString, Polygon)" \
        in by_feature[3].reason
    assert "empty geometry" in by_feature[4].reason


# -- codes, parents, duplicates ---------------------------------------------------------


def test_orphan_code_is_rejected(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    path = write(tmp_path / "orphan.geojson", [
        {"code": "110102099001", "name": "孤儿社区", "geometry": box(116.36, 39.91, 116.37, 39.92)},
    ])
    issue = only(rejected(engine, "jurisdictions", path))
    assert (issue.feature, issue.code, issue.field) == (1, "110102099001", "code")
    assert issue.reason == "parent street 110102099 exists neither in the file nor in the database"


def test_grid_of_a_missing_community_is_rejected(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "grids.geojson", [
        {"code": "110102020001001", "geometry": box(116.30, 39.86, 116.31, 39.87)}])
    issue = only(rejected(engine, "grids", path))
    assert "parent community 110102020001 exists neither" in issue.reason


def test_code_that_does_not_extend_its_parent_is_rejected(engine: Engine,
                                                          tmp_path: Path) -> None:
    load_base(engine)
    path = write(tmp_path / "parent.geojson", [
        {"code": "110102030", "名称": "错街道", "上级": "110105",
         "geometry": box(116.35, 39.90, 116.40, 39.94)},
    ])
    options = ImportOptions(fields={"name": "名称", "parent_code": "上级"}, level="street")
    issue = only(rejected(engine, "jurisdictions", path, options))
    assert (issue.feature, issue.code, issue.field) == (1, "110102030", "上级")
    assert issue.reason == "code 110102030 does not extend its parent code 110105"


def test_bad_code_format_and_missing_name(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "codes.geojson", [
        {"code": "11010", "name": "x", "geometry": DISTRICT},
        {"code": "110105", "name": None, "geometry": box(116.5, 39.9, 116.6, 40.0)},
    ])
    report = rejected(engine, "jurisdictions", path, ImportOptions(level="district"))
    reasons = {(i.feature, i.field): i.reason for i in report.rejected}
    assert reasons == {(1, "code"): "code 11010 is not a 6-digit district code",
                       (2, "name"): "name is missing"}


def test_attribute_values_are_checked(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    footprint = box(116.36, 39.90, 116.3605, 39.9004)
    path = write(tmp_path / "attrs.geojson", [
        {"code": "A1", "households": "many", "floors": 3, "geometry": footprint},
        {"code": "A2", "households": 10, "floors": 0, "geometry": footprint},
        {"code": "A3", "households": 10, "floors": 2, "district_code": "110102",
         "grid_code": "110105001001001", "geometry": footprint},
    ])
    report = rejected(engine, "buildings", path)
    reasons = {(i.feature, i.field): i.reason for i in report.rejected}
    assert reasons == {
        (1, "households"): "'many' is not a whole number of at least 0",
        (2, "floors"): "0 is not a whole number between 1 and 200",
        (3, "grid_code"): "grid 110105001001001 is not in district 110102",
    }
    streets = write(tmp_path / "roads.geojson", [
        {"name": "京港澳高速", "road_class": "高速公路",
         "geometry": LineString([(116.31, 39.87), (116.32, 39.87)])}])
    issue = only(rejected(engine, "streets", streets))
    assert issue.field == "road_class" and "unknown road class '高速公路'" in issue.reason
    # Missing optional values load as NULL (floors) or the default (households 0).
    fine = write(tmp_path / "fine.geojson", [
        {"code": "F1", "households": None, "floors": None, "geometry": footprint},
        {"code": "F2", "households": 12.0, "floors": 4, "geometry": footprint}])
    assert import_file(engine, "buildings", fine, ImportOptions()).loaded == 2
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT code, households, floors, properties FROM buildings ORDER BY code")).all()
    assert [(r.code, r.households, r.floors) for r in rows] == [("F1", 0, None), ("F2", 12, 4)]


def test_duplicate_codes_in_the_file_and_in_the_database(engine: Engine,
                                                         tmp_path: Path) -> None:
    load_base(engine)
    twice = write(tmp_path / "twice.geojson", [
        {"code": "110102021001", "name": "甲", "geometry": box(116.35, 39.86, 116.36, 39.87)},
        {"code": "110102021001", "name": "乙", "geometry": box(116.36, 39.86, 116.37, 39.87)},
    ])
    issue = only(rejected(engine, "jurisdictions", twice))
    assert (issue.feature, issue.code, issue.field) == (2, "110102021001", "code")
    assert "duplicate code 110102021001: feature 1 has the same code" in issue.reason
    # The fixture again: every code already has a version in force.
    report = rejected(engine, "jurisdictions", JURISDICTIONS)
    assert [i.feature for i in report.rejected] == [1, 2, 3, 4]
    assert all(i.field == "code" for i in report.rejected)
    assert "already has a version in force since 2000-01-01 00:00+0800" in \
        report.rejected[0].reason
    assert "--valid-from later than that" in report.rejected[0].reason


def test_feature_outside_its_parent_is_rejected(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    path = write(tmp_path / "outside.geojson", [
        # Fits inside street 110102020 but for a 1 m sliver (~50 m²): rejected (> 10 m²).
        {"code": "110102020002", "name": "越界社区",
         "geometry": box(116.325, 39.88, 116.35001, 39.90)},
        # Exactly on the street's boundary: fine.
        {"code": "110102020003", "name": "正常社区",
         "geometry": box(116.325, 39.86, 116.35, 39.88)},
    ])
    issue = only(rejected(engine, "jurisdictions", path))
    assert (issue.feature, issue.code, issue.field) == (1, "110102020002", "geometry")
    assert "lies partly outside its parent street 110102020" in issue.reason
    assert "m²" in issue.reason


def test_parent_in_the_same_file_counts_and_contains(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "tree.geojson", [
        {"code": "110102020", "name": "街道", "geometry": box(116.30, 39.86, 116.35, 39.90)},
        {"code": "110102", "name": "区", "geometry": box(116.20, 39.86, 116.35, 39.94)},
        {"code": "110102020001", "name": "社区", "geometry": box(116.30, 39.86, 116.40, 39.88)},
    ])
    issue = only(rejected(engine, "jurisdictions", path))
    assert issue.feature == 3 and "outside its parent street 110102020" in issue.reason


# -- whole-file problems ----------------------------------------------------------------


def test_empty_files_are_rejected(engine: Engine, tmp_path: Path) -> None:
    blank = tmp_path / "blank.geojson"
    blank.write_bytes(b"")
    issue = only(rejected(engine, "grids", blank))
    assert issue.feature is None and issue.field == "file" and "empty" in issue.reason
    no_features = tmp_path / "none.geojson"
    no_features.write_text('{"type": "FeatureCollection", "features": []}')
    issue = only(rejected(engine, "grids", no_features))
    assert issue.reason == "the file has no features"


@pytest.mark.parametrize("content", [
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02",
    "网格清单: 110102020001001, 110102020001002\n".encode(),
])
def test_not_a_geo_file_is_rejected_naming_the_file(engine: Engine, tmp_path: Path,
                                                    content: bytes) -> None:
    path = tmp_path / "grids.geojson"
    path.write_bytes(content)
    with pytest.raises(ImportRejected, match=r"grids\.geojson: not a readable geo file"):
        import_file(engine, "grids", path, ImportOptions())
    assert set(counts(engine).values()) == {0}


def test_missing_required_field_names_the_option(engine: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "nocode.geojson", [{"ID": "1", "geometry": DISTRICT}])
    report = rejected(engine, "jurisdictions", path)
    fields = {i.field: i.reason for i in report.rejected}
    assert "map one with --code-field" in fields["code"]
    assert "fields: ID" in fields["code"]


# -- versions ---------------------------------------------------------------------------


def test_boundary_revision_closes_the_old_version(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    bigger = box(116.30, 39.86, 116.41, 39.95)
    path = write(tmp_path / "xicheng_2024.geojson", [
        {"code": "110102", "name": "西城区", "geometry": bigger}])
    revision = datetime(2024, 1, 1, tzinfo=CHINA_TZ)
    report = import_file(engine, "jurisdictions", path, ImportOptions(valid_from=revision))
    assert (report.loaded, report.revised) == (1, 1)
    query = text(
        "SELECT ST_AsText(geom) FROM jurisdictions WHERE code = '110102' "
        "AND tstzrange(valid_from, valid_to) @> CAST(:at AS timestamptz)")
    with engine.connect() as conn:
        versions = conn.execute(text(
            "SELECT valid_from, valid_to FROM jurisdictions WHERE code = '110102' "
            "ORDER BY valid_from")).all()
        in_2023 = shapely.from_wkt(conn.scalar(query, {"at": "2023-06-01T00:00:00+08:00"}))
        in_2025 = shapely.from_wkt(conn.scalar(query, {"at": "2025-06-01T00:00:00+08:00"}))
    assert versions[0].valid_to == revision and versions[1].valid_to is None
    assert in_2023.equals(DISTRICT) and in_2025.equals(bigger)
    # Re-importing with an earlier --valid-from is a duplicate, not a silent overwrite.
    issue = only(rejected(engine, "jurisdictions", path,
                          ImportOptions(valid_from=datetime(2023, 1, 1, tzinfo=CHINA_TZ))))
    assert "duplicate code 110102" in issue.reason


# -- database constraints the checks do not foresee -------------------------------------


def test_database_refusal_becomes_a_readable_rejection(engine: Engine, tmp_path: Path) -> None:
    load_base(engine)
    path = write(tmp_path / "big.geojson", [
        {"code": "B1", "households": 10, "geometry": box(116.36, 39.90, 116.361, 39.901)}])
    with engine.begin() as conn:  # a constraint added by a later migration, say
        conn.execute(text("ALTER TABLE buildings ADD CONSTRAINT small_households "
                          "CHECK (households < 5)"))
    report = rejected(engine, "buildings", path)
    issue = only(report)
    assert issue.field == "database"
    assert "the database refused the data" in issue.reason and "small_households" in issue.reason


# -- the command line -------------------------------------------------------------------


def test_cli_import_reports_and_exits_non_zero_on_rejection(db_url: str, engine: Engine,
                                                           tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"DATABASE_URL": db_url, "COLUMNS": "200"}
    good = runner.invoke(app, ["import", "jurisdictions", str(JURISDICTIONS)], env=env)
    assert good.exit_code == 0, good.output
    assert "loaded 4 features into jurisdictions" in good.output
    bad = write(tmp_path / "orphan.geojson", [
        {"code": "110102099001", "name": "孤儿", "geometry": box(116.36, 39.91, 116.37, 39.92)}])
    result = runner.invoke(app, ["import", "jurisdictions", str(bad), "--dry-run"], env=env)
    assert result.exit_code == 1
    assert "rejected: 1 problem; nothing was loaded" in result.output
    assert "parent street 110102099 exists neither" in result.output
    assert counts(engine)["jurisdictions"] == 4


def test_cli_as_a_process_with_database_url(db_url: str, tmp_path: Path) -> None:
    text_file = tmp_path / "readme.geojson"
    text_file.write_text("not geojson at all")
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "import", "grids", str(text_file), "--crs", "4548"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 1
    assert "readme.geojson: rejected: 1 problem; nothing was loaded" in result.stdout
    assert "not a readable geo file" in result.stdout
    bad_crs = subprocess.run(
        [sys.executable, "-m", "api.cli", "import", "grids", str(text_file), "--crs", "moon"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad_crs.returncode == 1
    assert "unknown coordinate reference system 'moon'" in bad_crs.stderr
