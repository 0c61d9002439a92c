"""`gridops report ...`: spatial reports (boundary disputes)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from api.settings import Settings
from gis import boundary_report as br
from gis import boundary_report_html as brh
from gis.database import engine_for
from gis.features import parse_at

report_app = typer.Typer(help="Spatial reports (boundary disputes).", no_args_is_help=True)
out = Console(highlight=False)


@report_app.command()
def boundary(
    a: Annotated[str | None, typer.Argument(
        help="first area: district (6 digits), street office (9), community (12) or grid "
             "(15) code", show_default=False)] = None,
    b: Annotated[str | None, typer.Argument(help="second area code", show_default=False)] = None,
    out_dir: Annotated[Path, typer.Option(
        "--out", help="folder for report.html, report.geojson, buildings.csv, incidents.csv "
                      "and report.json (created if needed)")] = Path("boundary-report"),
    at: Annotated[str | None, typer.Option(
        help="versions in force at this instant, ISO 8601 (no offset = Beijing time); "
             "default now")] = None,
    buffer_m: Annotated[float | None, typer.Option(
        "--buffer-m", help="incidents within this many metres of the line (default: "
                           "GRIDOPS_BOUNDARY_REPORT_BUFFER_M or 100)")] = None,
    building: Annotated[int | None, typer.Option(
        help="instead of A B: the two areas this building straddles")] = None,
    incident: Annotated[int | None, typer.Option(
        help="instead of A B: the two areas nearest this incident's point")] = None,
    level: Annotated[str | None, typer.Option(
        help="with --building/--incident: district, street, community or grid (default: "
             "street offices)")] = None,
) -> None:
    """Write the boundary dispute report between areas A and B (or across a building or
    incident) into --out and print its summary."""
    settings = Settings()
    rules = br.ReportRules.from_settings(settings, buffer_m)
    with engine_for(settings.live_db_url()) as engine, engine.connect() as conn:
        report = br.boundary_report(conn, a=a, b=b, building=building, incident=incident,
                                    level=level, at=parse_at(at) if at else None, rules=rules)
    paths = brh.write_report(report, out_dir, settings.basemap_url)
    _print_summary(report)
    for name, path in paths.items():
        out.print(f"  {name:<15} {path}")


def _print_summary(report: dict[str, Any]) -> None:
    a, b, s, tol = report["a"], report["b"], report["summary"], report["tolerances"]
    out.print(f"[bold]边界争议报告 boundary report[/] A {a['name']} {a['code']} / "
              f"B {b['name']} {b['code']} · at {brh.beijing_time(report['at'])} · "
              f"EPSG:{tol['metric_srid']}")
    table = Table("item", "value")
    by_side = s["incidents_by_side"]
    rows = [
        ("shared boundary", f"{s['shared_length_m']:,.1f} m"),
        ("overlaps", f"{s['overlaps']} ({s['overlap_area_m2']:,.1f} m²)"),
        ("gaps", f"{s['gaps']} ({s['gap_area_m2']:,.1f} m²)"),
        ("straddling buildings", f"{s['straddling_buildings']} (assigned A "
                                 f"{s['buildings_assigned_a']} / B {s['buildings_assigned_b']}; "
                                 f"{s['buildings_disagreeing']} disagree with the stored grid)"),
        ("households by share", f"A {s['households_a']:,.1f} / B {s['households_b']:,.1f}"),
        (f"incidents within {tol['buffer_m']:g} m",
         f"{s['incidents']} (" + ", ".join(f"{k} {v}" for k, v in by_side.items()) + ")"),
        ("whistles (joint)", f"{s['whistles']} ({s['joint_whistles']}); summons met "
                             f"{s['summons_met']}/{s['summons']}"),
    ]
    for item, value in rows:
        table.add_row(item, value)
    out.print(table)
