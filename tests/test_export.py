"""Exporting layers to GeoPackage / GeoJSON: round trip of codes and areas, versions at a
date, level filter, and the command line."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest
from shapely.geometry import box
from sqlalchemy import Engine, text

from gis.errors import InvalidInput
from gis.import_read import CHINA_TZ
from gis.importers import ImportOptions, export_layer, import_file

DATA = Path(__file__).parent / "data"
JURISDICTIONS = DATA / "xicheng_jurisdictions.geojson"
PROJECT = Path(__file__).resolve().parents[1]


def stored_areas(engine: Engine, table: str) -> dict[str, float]:
    """Current versions' areas in m² (EPSG:4548), by code."""
    sql = {
        "jurisdictions": "SELECT code, ST_Area(ST_Transform(geom, 4548)) FROM jurisdictions "
                         "WHERE valid_to IS NULL",
        "grids": "SELECT code, ST_Area(ST_Transform(geom, 4548)) FROM grids WHERE valid_to IS NULL",
    }[table]
    with engine.connect() as conn:
        return {code: area for code, area in conn.execute(text(sql))}


def file_areas(path: Path, layer: str) -> dict[str, float]:
    frame = pyogrio.read_dataframe(path, layer=layer)
    assert frame.crs.to_epsg() == 4326
    areas = frame.to_crs(4548).area
    return dict(zip(frame["code"], areas, strict=True))


@pytest.fixture
def loaded(engine: Engine, tmp_path: Path) -> Engine:
    import_file(engine, "jurisdictions", JURISDICTIONS, ImportOptions())
    grids = gpd.GeoDataFrame(
        {"code": ["110102020001001", "110102020001002"], "households": [320, 410]},
        geometry=[box(116.30, 39.86, 116.3125, 39.88), box(116.3125, 39.86, 116.325, 39.88)],
        crs="EPSG:4326")
    grids.to_file(tmp_path / "grids.geojson", engine="pyogrio")
    import_file(engine, "grids", tmp_path / "grids.geojson", ImportOptions())
    return engine


@pytest.mark.parametrize("suffix", [".gpkg", ".geojson"])
def test_round_trip_keeps_codes_and_areas(loaded: Engine, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"export{suffix}"
    assert export_layer(loaded, "jurisdictions", out) == 4
    if suffix == ".gpkg":
        assert export_layer(loaded, "grids", out) == 2  # a second layer in the same file
        assert sorted(pyogrio.list_layers(out)[:, 0]) == ["grids", "jurisdictions"]
        grids = file_areas(out, "grids")
        assert grids.keys() == stored_areas(loaded, "grids").keys()
        for code, area in stored_areas(loaded, "grids").items():
            assert grids[code] == pytest.approx(area, rel=1e-9)
    layer = "jurisdictions"
    exported = file_areas(out, layer)
    stored = stored_areas(loaded, "jurisdictions")
    assert exported.keys() == stored.keys()
    for code, area in stored.items():
        assert exported[code] == pytest.approx(area, rel=1e-9)
    frame = pyogrio.read_dataframe(out, layer=layer)
    row = frame.set_index("code").loc["110102020"]
    assert row["name"] == "广安门外街道" and row["level"] == "street"
    assert row["parent_code"] == "110102"
    assert set(frame.geometry.geom_type) == {"MultiPolygon"}


def test_exported_file_imports_again_as_a_revision(loaded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "grids.gpkg"
    export_layer(loaded, "grids", out)
    report = import_file(loaded, "grids", out, ImportOptions(
        valid_from=datetime(2025, 1, 1, tzinfo=CHINA_TZ), dry_run=True))
    assert report.rejected == [] and report.revised == 2 and report.loaded == 0


def test_level_filter_and_versions_at_a_date(loaded: Engine, tmp_path: Path) -> None:
    out = tmp_path / "streets.geojson"
    assert export_layer(loaded, "jurisdictions", out, level="street") == 2
    assert sorted(pyogrio.read_dataframe(out)["code"]) == ["110102020", "110102021"]

    bigger = gpd.GeoDataFrame({"code": ["110102"], "name": ["西城区"]},
                              geometry=[box(116.30, 39.86, 116.41, 39.95)], crs="EPSG:4326")
    bigger.to_file(tmp_path / "district_2024.geojson", engine="pyogrio")
    import_file(loaded, "jurisdictions", tmp_path / "district_2024.geojson",
                ImportOptions(valid_from=datetime(2024, 1, 1, tzinfo=CHINA_TZ)))
    old, new = tmp_path / "old.geojson", tmp_path / "new.geojson"
    assert export_layer(loaded, "jurisdictions", old, level="district",
                        at=datetime(2023, 6, 1)) == 1
    assert export_layer(loaded, "jurisdictions", new, level="district") == 1
    old_frame, new_frame = pyogrio.read_dataframe(old), pyogrio.read_dataframe(new)
    assert old_frame.geometry.iloc[0].equals(box(116.30, 39.86, 116.40, 39.94))
    assert new_frame.geometry.iloc[0].equals(box(116.30, 39.86, 116.41, 39.95))
    assert str(old_frame["valid_to"].iloc[0]).startswith("2024-01-01")
    assert export_layer(loaded, "jurisdictions", old, at=datetime(1999, 1, 1)) == 0


def test_bad_export_requests_name_the_problem(loaded: Engine, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"unsupported output format; use \.geojson or \.gpkg"):
        export_layer(loaded, "grids", tmp_path / "grids.csv")
    with pytest.raises(InvalidInput, match="--level applies to jurisdictions only"):
        export_layer(loaded, "grids", tmp_path / "grids.gpkg", level="street")
    with pytest.raises(InvalidInput, match="unknown level"):
        export_layer(loaded, "jurisdictions", tmp_path / "j.gpkg", level="province")
    with pytest.raises(InvalidInput, match="no such folder"):
        export_layer(loaded, "grids", tmp_path / "missing" / "grids.gpkg")


def test_export_command(loaded: Engine, db_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": db_url, "COLUMNS": "200"}
    out = tmp_path / "communities.gpkg"
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "export", "jurisdictions", str(out), "--level",
         "community", "--at", "2024-06-01"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert f"exported 1 jurisdictions to {out}" in result.stdout
    assert list(pyogrio.read_dataframe(out)["code"]) == ["110102020001"]
    bad = subprocess.run(
        [sys.executable, "-m", "api.cli", "export", "grids", str(tmp_path / "grids.shp")],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert bad.returncode == 1
    assert "grids.shp: unsupported output format" in bad.stderr
