"""`gridops import …` and `gridops export …`: GIS files in and out of PostGIS."""

from __future__ import annotations

import getpass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from api.cli_progress import step_bars
from api.settings import Settings
from gis.audit import Actor
from gis.database import engine_for
from gis.errors import GridOpsError, ImportRejected
from gis.import_incidents import ImportResult, import_incidents
from gis.import_read import parse_instant
from gis.importers import ImportOptions, ImportReport, Kind, export_layer, import_file
from gis.osm_import import OsmImportResult, import_osm

import_app = typer.Typer(
    help="Import GeoJSON, GeoPackage or Shapefile layers (validated; all or nothing), and "
         "incident history from CSV (good rows load, bad rows go to a rejects file).",
    no_args_is_help=True,
)
out = Console(highlight=False)

FileArg = Annotated[Path, typer.Argument(help="GeoJSON, GeoPackage (.gpkg) or Shapefile (.shp)",
                                         show_default=False)]
CrsOpt = Annotated[str | None, typer.Option(
    "--crs", help="coordinates of the file: EPSG code (EPSG:4548 or 4548), wgs84, gcj02 or "
                  "bd09; default: the file's own CRS")]
LayerOpt = Annotated[str | None, typer.Option("--layer", help="layer to read (GeoPackage)")]
CodeField = Annotated[str | None, typer.Option("--code-field", help="source field of the code "
                                                                    "(default: code)")]
NameField = Annotated[str | None, typer.Option("--name-field", help="source field of the name "
                                                                    "(default: name)")]
LevelField = Annotated[str | None, typer.Option(
    "--level-field", help="source field of the level (district/street/community or 区/街道/社区) "
                          "(default: level)")]
LevelOpt = Annotated[str | None, typer.Option(
    "--level", help="level of every feature when the file has no level field (default: from "
                    "the code's length)")]
ParentField = Annotated[str | None, typer.Option(
    "--parent-field", help="source field of the parent code, checked against the code "
                           "(default: parent_code)")]
HouseholdsField = Annotated[str | None, typer.Option(
    "--households-field", help="source field of households (default: households)")]
FloorsField = Annotated[str | None, typer.Option(
    "--floors-field", help="source field of floors (default: floors)")]
DistrictField = Annotated[str | None, typer.Option(
    "--district-field", help="source field of the 6-digit district code (default: "
                             "district_code; else derived from the district holding most of "
                             "the feature)")]
GridField = Annotated[str | None, typer.Option(
    "--grid-field", help="source field of the 15-digit grid code (default: grid_code)")]
ClassField = Annotated[str | None, typer.Option(
    "--class-field", help="source field of the road class (arterial/secondary/branch/alley or "
                          "主干道/次干道/支路/胡同/小巷) (default: road_class)")]
ValidFrom = Annotated[str | None, typer.Option(
    "--valid-from", help="start of validity of these versions (ISO date-time; naive = Beijing "
                         "time); a later start than the stored version is a boundary revision "
                         "(default: the valid_from field, else 2000-01-01)")]
SourceOpt = Annotated[str | None, typer.Option("--source", help="provenance label "
                                                                "(default: the file name)")]
Synthetic = Annotated[bool, typer.Option("--synthetic", help="mark the rows as synthetic data")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="validate and report; load nothing")]


def _fields(**mapped: str | None) -> dict[str, str]:
    return {target: source for target, source in mapped.items() if source}


def _run(kind: Kind, file: Path, options: ImportOptions) -> None:
    try:
        with engine_for(Settings().live_db_url()) as engine:
            report = import_file(engine, kind, file, options)
    except ImportRejected as exc:
        if not isinstance(exc.detail, ImportReport):
            raise
        _print(exc.detail)
        raise typer.Exit(1) from exc
    _print(report)


def _print(report: ImportReport) -> None:
    if report.issues:
        table = Table(title=f"{report.path.name}: {len(report.issues)} issue(s)",
                      title_justify="left")
        for column in ("feature", "code", "field", "action", "reason"):
            table.add_column(column, overflow="fold")
        for issue in report.issues:
            colour = "red" if issue.action == "rejected" else "yellow"
            table.add_row("file" if issue.feature is None else str(issue.feature),
                          issue.code or "", issue.field, f"[{colour}]{issue.action}[/]",
                          issue.reason)
        out.print(table)
    colour = "red" if report.rejected else "green"
    out.print(f"[{colour}]{report.path.name}: {report.summary()}[/]")


def _options(crs: str | None, layer: str | None, valid_from: str | None, source: str | None,
             synthetic: bool, dry_run: bool, fields: dict[str, str],
             level: str | None = None) -> ImportOptions:
    return ImportOptions(
        crs=crs, layer=layer, fields=fields, level=level,
        valid_from=parse_instant(valid_from, "--valid-from") if valid_from else None,
        source=source, synthetic=synthetic, dry_run=dry_run,
    )


@import_app.command()
def jurisdictions(
    file: FileArg, crs: CrsOpt = None, layer: LayerOpt = None, code_field: CodeField = None,
    name_field: NameField = None, level_field: LevelField = None, level: LevelOpt = None,
    parent_field: ParentField = None, valid_from: ValidFrom = None, source: SourceOpt = None,
    synthetic: Synthetic = False, dry_run: DryRun = False,
) -> None:
    """Districts (区), street offices (街道/乡镇) and communities (社区/村)."""
    fields = _fields(code=code_field, name=name_field, level=level_field,
                     parent_code=parent_field)
    _run("jurisdictions", file, _options(crs, layer, valid_from, source, synthetic, dry_run,
                                         fields, level))


@import_app.command()
def grids(
    file: FileArg, crs: CrsOpt = None, layer: LayerOpt = None, code_field: CodeField = None,
    name_field: NameField = None, parent_field: ParentField = None,
    households_field: HouseholdsField = None, valid_from: ValidFrom = None,
    source: SourceOpt = None, synthetic: Synthetic = False, dry_run: DryRun = False,
) -> None:
    """全科网格: 15-digit codes extending their community's code."""
    fields = _fields(code=code_field, name=name_field, parent_code=parent_field,
                     households=households_field)
    _run("grids", file, _options(crs, layer, valid_from, source, synthetic, dry_run, fields))


@import_app.command()
def buildings(
    file: FileArg, crs: CrsOpt = None, layer: LayerOpt = None, code_field: CodeField = None,
    name_field: NameField = None, households_field: HouseholdsField = None,
    floors_field: FloorsField = None, district_field: DistrictField = None,
    grid_field: GridField = None, source: SourceOpt = None, synthetic: Synthetic = False,
    dry_run: DryRun = False,
) -> None:
    """楼栋 footprints with households and floors."""
    fields = _fields(code=code_field, name=name_field, households=households_field,
                     floors=floors_field, district_code=district_field, grid_code=grid_field)
    _run("buildings", file, _options(crs, layer, None, source, synthetic, dry_run, fields))


@import_app.command()
def streets(
    file: FileArg, crs: CrsOpt = None, layer: LayerOpt = None, code_field: CodeField = None,
    name_field: NameField = None, class_field: ClassField = None,
    district_field: DistrictField = None, source: SourceOpt = None,
    synthetic: Synthetic = False, dry_run: DryRun = False,
) -> None:
    """街巷: named street and alley lines with their class."""
    fields = _fields(code=code_field, name=name_field, road_class=class_field,
                     district_code=district_field)
    _run("streets", file, _options(crs, layer, None, source, synthetic, dry_run, fields))


class PointCrsChoice(StrEnum):
    wgs84 = "wgs84"
    gcj02 = "gcj02"
    bd09 = "bd09"


@import_app.command()
def incidents(
    file: Annotated[Path, typer.Argument(
        help="CSV like a 12345 export: time, class (code or name), kind, lon, lat, crs, "
             "address, text, source (English or Chinese headers; UTF-8 or GB18030)",
        show_default=False)],
    crs: Annotated[PointCrsChoice, typer.Option(
        "--crs", help="coordinates of rows whose crs column is empty or missing")
    ] = PointCrsChoice.wgs84,
    rejects: Annotated[Path | None, typer.Option(
        "--rejects", metavar="OUT.csv", help="where to list the bad rows (line, field, reason, "
                                             "the row) (default: FILE.rejects.csv, written "
                                             "only when some rows are bad)")] = None,
) -> None:
    """Incident history (事件/部件 reports): vectorised checks and placement, COPY; good rows
    load even when some are bad. Rows loaded before (same content) are skipped."""
    with engine_for(Settings().live_db_url()) as engine, step_bars(out) as step:
        with engine.begin() as conn:
            result = import_incidents(conn, file, crs=crs.value, rejects_path=rejects,
                                      by=Actor(f"cli:{getpass.getuser()}"), progress=step)
    _print_incidents(result)
    if result.rejected and not result.loaded and not result.duplicates:
        raise typer.Exit(1)


def _print_incidents(result: ImportResult) -> None:
    shown = result.rejects.head(10)
    if len(shown):
        table = Table(title=f"{result.path.name}: {result.rejected} bad row(s)"
                            + (" (first 10)" if result.rejected > 10 else ""),
                      title_justify="left")
        for column in ("line", "field", "reason"):
            table.add_column(column, overflow="fold")
        for line, fld, reason in shown[["line", "field", "reason"]].itertuples(index=False):
            table.add_row(str(line), escape(str(fld)), escape(str(reason)))
        out.print(table)
    colour = "green" if not result.rejected else ("yellow" if result.loaded else "red")
    out.print(f"[{colour}]{escape(result.path.name)}: {result.summary()}[/]")
    if result.incident_ids:
        out.print(f"incident ids {result.incident_ids[0]}..{result.incident_ids[1]}")
    if result.rejects_path:
        out.print(f"rejected rows written to {escape(str(result.rejects_path))}")


@import_app.command()
def osm(
    file: Annotated[Path, typer.Argument(
        metavar="FILE.osm.pbf", help="OpenStreetMap extract (.osm.pbf; .osm and .osm.bz2 "
                                     "also read)", show_default=False)],
    replace: Annotated[bool, typer.Option(
        "--replace", help="replace the road graph already loaded (default: refuse)")] = False,
    district_code: Annotated[str | None, typer.Option(
        "--district-code", metavar="CODE", help="6-digit district code for roads outside "
                                                "every loaded district (default: refuse "
                                                "such roads)")] = None,
) -> None:
    """Road graph (road_nodes/road_edges) for dispatch ETAs from OpenStreetMap: drivable
    highways split at junctions, speeds by class or maxspeed, one-way rules; all or nothing.
    Data © OpenStreetMap contributors, ODbL."""
    try:
        with engine_for(Settings().live_db_url()) as engine, step_bars(out) as step:
            with engine.begin() as conn:
                result = import_osm(conn, file, replace=replace, district_code=district_code,
                                    by=Actor(f"cli:{getpass.getuser()}"), progress=step)
    except GridOpsError as exc:
        out.print(f"[red]{escape(exc.message)}[/]")
        raise typer.Exit(1) from exc
    _print_osm(result)


def _print_osm(result: OsmImportResult) -> None:
    table = Table()
    table.add_column("district")
    table.add_column("edges", justify="right")
    for code, count in result.districts.items():
        table.add_row(code, str(count))
    out.print(table)
    out.print(f"[green]{escape(result.path.name)}: {result.summary()}[/]")
    out.print("road data © OpenStreetMap contributors, ODbL")


class ExportKind(StrEnum):
    jurisdictions = "jurisdictions"
    grids = "grids"
    buildings = "buildings"
    streets = "streets"


def export(
    kind: Annotated[ExportKind, typer.Argument(help="layer to export", show_default=False)],
    out_file: Annotated[Path, typer.Argument(
        metavar="OUT", help="OUT.geojson or OUT.gpkg (a GeoPackage keeps its other layers)",
        show_default=False)],
    level: Annotated[str | None, typer.Option(
        "--level", help="jurisdictions only: district, street or community")] = None,
    at: Annotated[str | None, typer.Option(
        "--at", help="versions valid at this ISO date-time (naive = Beijing time) "
                     "(default: now)")] = None,
) -> None:
    """Export a layer to GeoJSON or GeoPackage (format from the extension)."""
    instant: datetime | None = parse_instant(at, "--at") if at else None
    with engine_for(Settings().live_db_url()) as engine:
        count = export_layer(engine, cast(Kind, kind.value), out_file, level=level, at=instant)
    out.print(f"[green]exported {count} {kind.value} to {out_file}[/]")
