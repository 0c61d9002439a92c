"""Boundary dispute report outputs: a printable HTML page with a folium (Leaflet) map that
works offline, a GeoJSON FeatureCollection and CSV tables (UTF-8 with BOM, for Excel), from
the report of gis/boundary_report.py.

The saved HTML needs no network: folium's CDN links (Leaflet, jQuery, Bootstrap, awesome
markers …) are dropped and Leaflet's JS and CSS are inlined from the npm package under
web/node_modules/leaflet (its images as data: URIs). No tile layer unless a basemap URL is
configured."""

from __future__ import annotations

import base64
import csv
import functools
import html
import io
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import folium
import jinja2
from branca.element import Figure

from gis.errors import GridOpsError
from gis.features import CHINA_TZ

PROJECT_ROOT = Path(__file__).resolve().parents[1]
LEAFLET_DIR = PROJECT_ROOT / "web" / "node_modules" / "leaflet" / "dist"
TEMPLATES_DIR = PROJECT_ROOT / "web" / "templates"
TEMPLATE = "boundary_report.html"
MAX_HTML_INCIDENTS = 500  # rows listed in the page (all of them are in incidents.csv)
FILES = ("report.html", "report.geojson", "buildings.csv", "incidents.csv", "report.json")

COLORS = {"a": "#2563eb", "b": "#ea580c", "both": "#7c3aed", "none": "#475569",
          "line": "#dc2626", "overlap": "#7c3aed", "gap": "#111827", "building": "#0f766e"}

BUILDING_COLUMNS: tuple[str, ...] = (
    "id", "code", "name", "address", "households", "area_m2", "a_code", "b_code",
    "area_a_m2", "area_b_m2", "share_a", "share_b", "households_a", "households_b", "rule",
    "assigned_side", "assigned_code", "grid_code", "stored_side", "matches_grid_code",
    "stored_share_a", "stored_share_b", "matches_stored_shares")
INCIDENT_COLUMNS: tuple[str, ...] = (
    "id", "reported_at", "month", "status", "closed_at", "kind", "major_code", "major_name",
    "class_code", "class_name", "side", "side_code", "distance_m", "district_code",
    "street_code", "grid_code", "address", "lon", "lat", "is_joint", "first_on_scene_at",
    "response_s", "close_s")
_DECIMALS = {"lon": 7, "lat": 7}


class MissingAssets(GridOpsError):
    """Front-end files the HTML report inlines are not installed."""


# -- GeoJSON and CSV -------------------------------------------------------------------------


def _feature(geometry: Any, properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": properties}


def _without(row: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in keys}


def report_geojson(report: dict[str, Any]) -> dict[str, Any]:
    """The report's geometries as one FeatureCollection (EPSG:4326), each feature with a
    `layer`: area (A and B), shared_boundary, overlap, gap, building (straddling, with its
    shares), incident (near the line); the report's header in `properties`."""
    a, b = report["a"], report["b"]
    features = [_feature(side["geometry"], {"layer": "area", **_without(side, "geometry")})
                for side in (a, b)]
    line = report["shared_boundary"]
    features.append(_feature(line["geometry"], {
        "layer": "shared_boundary", "a_code": a["code"], "b_code": b["code"],
        "length_m": line["length_m"], "parts": line["parts"]}))
    features += [_feature(p["geometry"], {"layer": p["kind"], **_without(p, "geometry")})
                 for p in report["overlaps"] + report["gaps"]]
    features += [_feature(r["geometry"], {"layer": "building", "a_code": a["code"],
                                          "b_code": b["code"], **_without(r, "geometry")})
                 for r in report["buildings"]]
    features += [_feature(r["geometry"], {"layer": "incident", **_without(r, "geometry")})
                 for r in report["incidents"]["items"]]
    return {"type": "FeatureCollection", "features": features,
            "properties": _header(report)}


def _header(report: dict[str, Any]) -> dict[str, Any]:
    """What a reader of an export needs to know: sides, data date, CRS, tolerances."""
    return json.loads(json.dumps({
        "report": report["report"], "title": report["title"], "a": report["a"]["code"],
        "b": report["b"]["code"], "at": report["at"], "generated_at": report["generated_at"],
        "crs": report["crs"], "tolerances": report["tolerances"],
        "assignment_rule": report["assignment_rule"]["name"], "subject": {
            k: v for k, v in report["subject"].items() if k in ("kind", "id", "level")},
        "summary": report["summary"]}, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def report_json(report: dict[str, Any]) -> str:
    """The whole report as JSON text."""
    return json.dumps(report, default=_json_default, ensure_ascii=False)


def _cell(name: str, value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return round(value, _DECIMALS.get(name, 4))
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def csv_bytes(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> bytes:
    """CSV with a header row, UTF-8 with a byte order mark (Excel reads the Chinese); empty
    cells for nulls, true/false for booleans."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(name, row.get(name)) for name in columns])
    return out.getvalue().encode("utf-8-sig")


def buildings_csv(report: dict[str, Any]) -> bytes:
    """The straddling buildings (BUILDING_COLUMNS)."""
    codes = {"a_code": report["a"]["code"], "b_code": report["b"]["code"]}
    return csv_bytes(BUILDING_COLUMNS, [{**row, **codes} for row in report["buildings"]])


def incidents_csv(report: dict[str, Any]) -> bytes:
    """The incidents near the line (INCIDENT_COLUMNS); side_code = the code of their side."""
    codes = {"a": report["a"]["code"], "b": report["b"]["code"]}
    return csv_bytes(INCIDENT_COLUMNS, [{**row, "side_code": codes.get(row["side"])}
                                        for row in report["incidents"]["items"]])


# -- Leaflet, inlined --------------------------------------------------------------------------

_CSS_URL = re.compile(r"url\((['\"]?)(images/[A-Za-z0-9_.-]+\.(png|svg))\1\)")


def leaflet_installed(folder: Path = LEAFLET_DIR) -> bool:
    """Whether Leaflet is installed under web/node_modules (npm ci --prefix web)."""
    return (folder / "leaflet.js").is_file() and (folder / "leaflet.css").is_file()


@functools.cache
def leaflet_assets(folder: Path = LEAFLET_DIR) -> tuple[str, str]:
    """Leaflet's JS and CSS, the CSS's images turned into data: URIs (so a saved page asks
    for nothing)."""
    if not leaflet_installed(folder):
        raise MissingAssets(f"Leaflet is not installed in {folder}; run `npm ci --prefix web` "
                            "(or `make demo`)")
    js = (folder / "leaflet.js").read_text(encoding="utf-8")
    css = (folder / "leaflet.css").read_text(encoding="utf-8")

    def inline(match: re.Match[str]) -> str:
        path = folder / match.group(2)
        if not path.is_file():
            return "url(data:,)"
        mime = "image/svg+xml" if match.group(3) == "svg" else "image/png"
        return f"url(data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()})"

    # the file ends with a source-map comment naming leaflet.js.map: drop it
    js = re.sub(r"//# sourceMappingURL=\S+\s*$", "", js)
    return js, _CSS_URL.sub(inline, css)


# -- the map -----------------------------------------------------------------------------------


def _tip(*lines: str) -> str:
    """Tooltip HTML: escaped lines (Leaflet tooltips take HTML)."""
    return "<br>".join(html.escape(line) for line in lines if line)


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{float(value):,.{digits}f}"


def _pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def _label(side: dict[str, Any]) -> str:
    return f"{side['name'] or ''} {side['code']}".strip()


def _style(color: str, **extra: Any) -> Callable[[Any], dict[str, Any]]:
    base = {"color": color, "weight": 2, "fillColor": color, "fillOpacity": 0.12, **extra}
    return lambda _feature: base


def _geojson_layer(features: list[dict[str, Any]], name: str,
                   style: Callable[[Any], dict[str, Any]], **kwargs: Any) -> folium.GeoJson:
    return folium.GeoJson({"type": "FeatureCollection", "features": features}, name=name,
                          style_function=style,
                          tooltip=folium.GeoJsonTooltip(fields=["tip"], labels=False),
                          **kwargs)


def report_map(report: dict[str, Any], basemap_url: str | None = None) -> folium.Map:
    """The folium map: A and B, the shared line, overlaps and gaps, straddling buildings
    (shares in the tooltip) and incidents as circle markers (coloured by side). No tiles,
    no CDN links (the page inlines Leaflet)."""
    a, b = report["a"], report["b"]
    west, south, east, north = report["shared_boundary"]["bbox"]
    fmap = folium.Map(location=[(south + north) / 2, (west + east) / 2], zoom_start=14,
                      tiles=None, control_scale=True, width="100%", height="100%")
    fmap.default_js = []
    fmap.default_css = []
    if basemap_url:
        folium.TileLayer(tiles=basemap_url, attr="basemap", name="底图 Basemap",
                         overlay=False).add_to(fmap)
    for side in (a, b):
        color = COLORS[side["side"]]
        _geojson_layer([_feature(side["geometry"], {"tip": _tip(
            f"{side['side'].upper()} · {_label(side)}",
            f"{side['level_zh']} {side['level']} · {_num(side['area_m2'] / 1e6, 3)} km²")})],
            f"{side['side'].upper()} {_label(side)}", _style(color, fillOpacity=0.10)
        ).add_to(fmap)
    parts = report["overlaps"] + report["gaps"]
    if parts:
        _geojson_layer([_feature(p["geometry"], {"tip": _tip(
            "重叠 overlap" if p["kind"] == "overlap" else "缝隙 gap",
            f"{_num(p['area_m2'], 1)} m² · ≤ {_num(p['max_width_m'], 1)} m")}) for p in parts],
            "重叠与缝隙 Overlaps and gaps",
            lambda f: {"color": COLORS["overlap"], "weight": 1, "fillOpacity": 0.6,
                       "fillColor": COLORS["overlap"]}).add_to(fmap)
    line = report["shared_boundary"]
    _geojson_layer([_feature(line["geometry"], {"tip": _tip(
        "共享边界 shared boundary", f"{_num(line['length_m'], 1)} m")})],
        "共享边界 Shared boundary", _style(COLORS["line"], weight=4, fillOpacity=0)
    ).add_to(fmap)
    if report["buildings"]:
        _geojson_layer([_feature(r["geometry"], {"tip": _tip(
            f"楼栋 building {r['id']} {r['name'] or ''}",
            f"A {_pct(r['share_a'])} · {_num(r['households_a'], 1)} 户",
            f"B {_pct(r['share_b'])} · {_num(r['households_b'], 1)} 户",
            f"归属 assigned: {r['assigned_side'].upper()} {r['assigned_code']}")})
            for r in report["buildings"]],
            "跨界楼栋 Straddling buildings",
            _style(COLORS["building"], weight=2, fillOpacity=0.55)).add_to(fmap)
    items = report["incidents"]["items"]
    if items:
        _geojson_layer([_feature(r["geometry"], {"side": r["side"], "tip": _tip(
            f"事件 incident {r['id']} · {r['class_name']}",
            f"{beijing_time(r['reported_at'])} · {r['status']}",
            f"{_side_name(report, r['side'])} · {_num(r['distance_m'], 1)} m")})
            for r in items],
            "周边事件 Incidents",
            lambda f: {"color": COLORS.get(f["properties"]["side"], "#475569"),
                       "fillColor": COLORS.get(f["properties"]["side"], "#475569"),
                       "fill": True, "fillOpacity": 0.8, "weight": 1},
            marker=folium.CircleMarker(radius=5)).add_to(fmap)
    subject = report["subject"]
    if subject.get("building"):
        row = subject["building"]
        _geojson_layer([_feature(row["geometry"], {"tip": _tip(
            f"争议楼栋 building in dispute {row['id']} {row['name'] or ''}",
            f"A {_pct(row['share_a'])} / B {_pct(row['share_b'])}")})],
            "争议楼栋 Building in dispute",
            _style(COLORS["line"], weight=4, fillOpacity=0.25)).add_to(fmap)
    elif subject.get("incident"):
        row = subject["incident"]
        _geojson_layer([_feature(row["geometry"], {"tip": _tip(
            f"争议事件 incident in dispute {row['id']} · {row['class_name']}")})],
            "争议事件 Incident in dispute",
            _style(COLORS["line"], weight=3, fillOpacity=0.9, fill=True),
            marker=folium.CircleMarker(radius=9)).add_to(fmap)
    folium.LayerControl(collapsed=False).add_to(fmap)
    focus = _focus(report)
    fmap.fit_bounds([[focus[1], focus[0]], [focus[3], focus[2]]])
    return fmap


def _focus(report: dict[str, Any]) -> list[float]:
    """The bbox the map opens on: the subject (building or incident) with ~150 m around,
    else the disputed stretch."""
    subject = report["subject"]
    pad = 0.0015
    if subject.get("building"):
        x0, y0, x1, y1 = subject["building"]["bbox"]
        return [x0 - pad, y0 - pad, x1 + pad, y1 + pad]
    if subject.get("incident"):
        lon, lat = subject["incident"]["lon"], subject["incident"]["lat"]
        return [lon - pad, lat - pad, lon + pad, lat + pad]
    return list(report["shared_boundary"]["bbox"])


def _map_parts(fmap: folium.Map) -> tuple[str, str, str]:
    """The map's header (styles), body (its div) and script, rendered by folium."""
    figure = fmap.get_root()
    assert isinstance(figure, Figure)
    figure.render()
    return (figure.header.render(), figure.html.render(), figure.script.render())


# -- the page ----------------------------------------------------------------------------------


def beijing_time(value: Any) -> str:
    """A datetime (or ISO string) in Beijing time, to the minute."""
    if value is None:
        return "—"
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA_TZ)
    return moment.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M")


def _duration(seconds: Any) -> str:
    """Seconds as minutes, hours or days (zh + en units)."""
    if seconds is None:
        return "—"
    s = float(seconds)
    if s < 3600:
        return f"{s / 60:.0f} 分钟 min"
    if s < 86400:
        return f"{s / 3600:.1f} 小时 h"
    return f"{s / 86400:.1f} 天 d"


def _side_name(report: dict[str, Any], side: str | None) -> str:
    if side in ("a", "b"):
        return f"{side.upper()} {_label(report[side])}"
    return {"both": "两侧重叠 both (overlap)", "none": "两侧之外 neither"}.get(side or "", "—")


def _yes(value: Any) -> str:
    return "—" if value is None else ("是 yes" if value else "否 no")


@functools.cache
def _environment(folder: Path = TEMPLATES_DIR) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(folder),
                             autoescape=jinja2.select_autoescape(["html"]),
                             undefined=jinja2.StrictUndefined)
    env.filters.update(num=_num, pct=_pct, when=beijing_time, duration=_duration, yes=_yes)
    return env


def report_html(report: dict[str, Any], basemap_url: str | None = None,
                leaflet_dir: Path = LEAFLET_DIR) -> str:
    """The printable, self-contained HTML report (Chinese first, with English)."""
    js, css = leaflet_assets(leaflet_dir)
    header, body, script = _map_parts(report_map(report, basemap_url))
    page = _environment().get_template(TEMPLATE).render(
        r=report, leaflet_js=js, leaflet_css=css, map_header=header, map_html=body,
        map_script=script, side_name=lambda side: _side_name(report, side),
        label=_label, colors=COLORS, max_incidents=MAX_HTML_INCIDENTS,
        incidents=report["incidents"]["items"][:MAX_HTML_INCIDENTS])
    return page


def write_report(report: dict[str, Any], out_dir: Path,
                 basemap_url: str | None = None) -> dict[str, Path]:
    """Write report.html, report.geojson, buildings.csv, incidents.csv and report.json
    into `out_dir` (created if needed); returns the paths by file name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / name for name in FILES}
    paths["report.html"].write_text(report_html(report, basemap_url), encoding="utf-8")
    paths["report.geojson"].write_text(
        json.dumps(report_geojson(report), default=_json_default, ensure_ascii=False),
        encoding="utf-8")
    paths["buildings.csv"].write_bytes(buildings_csv(report))
    paths["incidents.csv"].write_bytes(incidents_csv(report))
    paths["report.json"].write_text(report_json(report), encoding="utf-8")
    return paths
