// The planner map: MapLibre (from /vendor/maplibre-gl) on a plain background (a raster base
// map only when settings.basemap_url is set), roads (lanes) and communities from the vector
// tiles for context, and the open plan as GeoJSON: cells (faint), grids filled by grid colour with
// HTML labels (code and households), building footprints, the selection, the paint stroke,
// the split sketch, the highlighted issue (red) and the hatched difference of the diff view.

import { loadLayerList } from "../command/map.js";
import { h } from "../command/dom.js";
import { labelPoint } from "../command/labels.js";

const BEIJING = [116.36, 39.88];
const EMPTY = { type: "FeatureCollection", features: [] };
const NONE = -1; // a feature id no layer filter ever matches
export const ISSUE_COLOUR = "#d32f2f";
export const GRID_LAYERS = ["grids-fill"];
export const PAINT_LAYERS = ["cells-fill", "buildings-fill"];
// Distinct, not red (red is for errors), readable under labels.
const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
  "#ff9da7", "#86bcb6", "#8cd17d", "#a0cbe8", "#d4a6c8", "#bab0ac", "#f1ce63", "#499894",
  "#d37295"];

function baseStyle(basemapUrl) {
  const style = { version: 8, sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": "#f4f2ee" } }] };
  if (basemapUrl) {
    style.sources.basemap = { type: "raster", tiles: [basemapUrl], tileSize: 256 };
    style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  return style;
}

/** A diagonal hatch (red on transparent) drawn on a canvas, for fill-pattern. */
function hatchImage() {
  const size = 16;
  const ratio = 2;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size * ratio;
  const ctx = canvas.getContext("2d");
  ctx.scale(ratio, ratio);
  ctx.fillStyle = "rgba(211, 47, 47, 0.10)";
  ctx.fillRect(0, 0, size, size);
  ctx.strokeStyle = "rgba(183, 28, 28, 0.85)";
  ctx.lineWidth = 2;
  ctx.beginPath();
  for (const offset of [-size, 0, size]) { // three strokes so the tile repeats seamlessly
    ctx.moveTo(offset, size);
    ctx.lineTo(offset + size, 0);
  }
  ctx.stroke();
  return { image: ctx.getImageData(0, 0, size * ratio, size * ratio), ratio };
}

const colourOf = (colours, field = "grid_id") => {
  const pairs = Object.entries(colours).flatMap(([id, colour]) => [Number(id), colour]);
  return pairs.length ? ["match", ["coalesce", ["get", field], NONE], ...pairs, "#c9c9c9"] : "#c9c9c9";
};

/** The map with every plan layer (empty), once its style has loaded. */
export async function createMap(basemapUrl) {
  const map = new maplibregl.Map({
    container: "map", style: baseStyle(basemapUrl), center: BEIJING, zoom: 12,
    attributionControl: false, doubleClickZoom: true, boxZoom: false,
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  await new Promise((resolve) => map.on("load", resolve));
  const hatch = hatchImage();
  map.addImage("hatch", hatch.image, { pixelRatio: hatch.ratio });
  for (const name of ["cells", "grids", "buildings", "issue", "diff", "sketch", "snapped"]) {
    map.addSource(name, { type: "geojson", data: EMPTY });
  }
  map.addLayer({ id: "cells-fill", type: "fill", source: "cells",
    paint: { "fill-color": colourOf({}), "fill-opacity": 0.06 } });
  map.addLayer({ id: "grids-fill", type: "fill", source: "grids",
    paint: { "fill-color": colourOf({}, "id"), "fill-opacity": 0.32 } });
  await addContext(map);
  map.addLayer({ id: "cells-line", type: "line", source: "cells",
    paint: { "line-color": "#6b6b6b", "line-opacity": 0.35, "line-width": 0.5,
      "line-dasharray": [2, 2] } });
  map.addLayer({ id: "buildings-fill", type: "fill", source: "buildings",
    paint: { "fill-color": colourOf({}), "fill-opacity": 0.85 } });
  map.addLayer({ id: "buildings-line", type: "line", source: "buildings",
    paint: { "line-color": "#3d3d3d", "line-width": 0.6 } });
  map.addLayer({ id: "grids-line", type: "line", source: "grids",
    layout: { "line-join": "round" },
    paint: { "line-color": "#263238", "line-width": 1.6 } });
  map.addLayer({ id: "cells-stroke", type: "fill", source: "cells", filter: ["in", ["get", "id"], ["literal", []]],
    paint: { "fill-color": "#263238", "fill-opacity": 0.45 } });
  map.addLayer({ id: "grids-selected", type: "line", source: "grids", filter: ["in", ["get", "id"], ["literal", []]],
    layout: { "line-join": "round" },
    paint: { "line-color": "#0d47a1", "line-width": 4 } });
  map.addLayer({ id: "diff-fill", type: "fill", source: "diff", paint: { "fill-pattern": "hatch" } });
  map.addLayer({ id: "diff-line", type: "line", source: "diff",
    paint: { "line-color": "#b71c1c", "line-width": 1.5 } });
  map.addLayer({ id: "issue-fill", type: "fill", source: "issue", filter: ["in", ["geometry-type"], ["literal", ["Polygon", "MultiPolygon"]]],
    paint: { "fill-color": ISSUE_COLOUR, "fill-opacity": 0.35 } });
  map.addLayer({ id: "issue-line", type: "line", source: "issue",
    paint: { "line-color": ISSUE_COLOUR, "line-width": 3 } });
  map.addLayer({ id: "issue-point", type: "circle", source: "issue",
    filter: ["in", ["geometry-type"], ["literal", ["Point", "MultiPoint"]]],
    paint: { "circle-color": ISSUE_COLOUR, "circle-radius": 8, "circle-opacity": 0.6,
      "circle-stroke-color": ISSUE_COLOUR, "circle-stroke-width": 2 } });
  map.addLayer({ id: "sketch-line", type: "line", source: "sketch",
    paint: { "line-color": "#e65100", "line-width": 2.5, "line-dasharray": [2, 1.5] } });
  map.addLayer({ id: "sketch-points", type: "circle", source: "sketch", filter: ["==", ["geometry-type"], "Point"],
    paint: { "circle-color": "#fff", "circle-radius": 4, "circle-stroke-color": "#e65100", "circle-stroke-width": 2 } });
  map.addLayer({ id: "snapped-line", type: "line", source: "snapped",
    layout: { "line-cap": "round", "line-join": "round" },
    paint: { "line-color": "#e65100", "line-width": 4 } });
  return map;
}

/** Roads (the lanes layer) and community outlines from the tile server, when offered. */
async function addContext(map) {
  let layers = [];
  try {
    layers = await loadLayerList();
  } catch {
    return;
  }
  const specs = {
    lanes: { type: "line", layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#5f7f8c", "line-opacity": 0.85,
        "line-width": ["match", ["get", "road_class"], "arterial", 5, "secondary", 4, "branch", 3, 2] } },
    communities: { type: "line", paint: { "line-color": "#2e5d1f", "line-width": 1.5,
      "line-dasharray": [4, 2] } },
  };
  for (const layer of layers) {
    const spec = specs[layer.name];
    if (!spec) continue;
    const url = layer.url.startsWith("/") ? window.location.origin + layer.url : layer.url;
    map.addSource(`tile-${layer.name}`, { type: "vector", tiles: [url], minzoom: layer.minzoom,
      maxzoom: layer.maxzoom });
    map.addLayer({ id: `tile-${layer.name}`, source: `tile-${layer.name}`, "source-layer": layer.name,
      minzoom: layer.minzoom, ...spec });
  }
}

/** Geometries (one, a list, or collections of them) as a flat list of simple geometries. */
const flatten = (geometries) => [geometries ?? []].flat().filter(Boolean)
  .flatMap((g) => (g.type === "GeometryCollection" ? flatten(g.geometries) : [g]));

// -- colours ----------------------------------------------------------------------------------

function bboxOf(geometry) {
  const box = [Infinity, Infinity, -Infinity, -Infinity];
  const walk = (c) => {
    if (typeof c[0] === "number") {
      box[0] = Math.min(box[0], c[0]); box[1] = Math.min(box[1], c[1]);
      box[2] = Math.max(box[2], c[0]); box[3] = Math.max(box[3], c[1]);
    } else for (const x of c) walk(x);
  };
  for (const g of flatten(geometry)) walk(g.coordinates);
  return Number.isFinite(box[0]) ? box : null;
}

const touches = (a, b, eps = 1e-5) => a && b && a[0] <= b[2] + eps && b[0] <= a[2] + eps
  && a[1] <= b[3] + eps && b[1] <= a[3] + eps;

/** Give every grid without one a palette colour not used by a grid whose box it touches
 * (kept for the life of the page, so grids do not change colour while being edited). */
export function assignColours(colours, features) {
  const boxes = new Map(features.map((f) => [f.properties.id, bboxOf(f.geometry)]));
  const sorted = [...features].sort((a, b) => a.properties.id - b.properties.id);
  for (const feature of sorted) {
    const id = feature.properties.id;
    if (colours[id]) continue;
    const used = new Set(sorted.filter((o) => o.properties.id !== id && colours[o.properties.id]
      && touches(boxes.get(id), boxes.get(o.properties.id))).map((o) => colours[o.properties.id]));
    const taken = new Set(Object.values(colours));
    colours[id] = PALETTE.find((c) => !used.has(c) && !taken.has(c))
      ?? PALETTE.find((c) => !used.has(c)) ?? PALETTE[id % PALETTE.length];
  }
  return colours;
}

// -- data -------------------------------------------------------------------------------------

const drawable = (fc) => ({ type: "FeatureCollection",
  features: (fc?.features ?? []).filter((f) => f.geometry) });

/** Show the plan's cells, grids and buildings, coloured by grid. */
export function showPlan(map, { grids, cells, buildings, colours }) {
  map.getSource("cells").setData(drawable(cells));
  map.getSource("grids").setData(drawable(grids));
  map.getSource("buildings").setData(drawable(buildings));
  map.setPaintProperty("grids-fill", "fill-color", colourOf(colours, "id"));
  map.setPaintProperty("cells-fill", "fill-color", colourOf(colours));
  map.setPaintProperty("buildings-fill", "fill-color", colourOf(colours));
}

let labels = [];

/** Grid labels (code or "新网格 #id", households) as HTML markers; out-of-band in red. */
export function showLabels(map, grids, { inBand, label, householdsText, onClick }) {
  for (const marker of labels) marker.remove();
  labels = [];
  for (const feature of grids?.features ?? []) {
    const point = labelPoint(feature.geometry);
    if (!point) continue;
    const p = feature.properties;
    const element = h("div", { class: `grid-label${inBand(p) ? "" : " out-of-band"}`,
      dataset: { gridId: p.id } },
    h("span", { class: "grid-label-code" }, label(p)),
    h("span", { class: "grid-label-hh" }, householdsText(p.households)));
    element.addEventListener("click", (event) => { event.stopPropagation(); onClick?.(p.id); });
    labels.push(new maplibregl.Marker({ element }).setLngLat(point).addTo(map));
  }
}

/** Outline the selected grids. */
export function showSelection(map, ids) {
  map.setFilter("grids-selected", ["in", ["get", "id"], ["literal", [...ids]]]);
  for (const marker of labels) {
    const el = marker.getElement();
    el.classList.toggle("selected", ids.has(Number(el.dataset.gridId)));
  }
}

/** Darken the cells of the current paint stroke. */
export function showStroke(map, ids, colour) {
  map.setFilter("cells-stroke", ["in", ["get", "id"], ["literal", [...ids]]]);
  if (colour) map.setPaintProperty("cells-stroke", "fill-color", colour);
}

/** The split sketch: the line drawn so far and its vertices. */
export function showSketch(map, coordinates) {
  const features = coordinates.map((c) => ({ type: "Feature", properties: {},
    geometry: { type: "Point", coordinates: c } }));
  if (coordinates.length > 1) {
    features.push({ type: "Feature", properties: {}, geometry: { type: "LineString", coordinates } });
  }
  map.getSource("sketch").setData({ type: "FeatureCollection", features });
}

/** The split line as the server snapped it (null clears). */
export function showSnapped(map, line) {
  map.getSource("snapped").setData(line ? { type: "Feature", properties: {}, geometry: line.geometry ?? line }
    : EMPTY);
}

/** An issue's geometries in red (none clears). */
export function showIssue(map, geometries) {
  map.getSource("issue").setData({ type: "FeatureCollection",
    features: flatten(geometries).map((geometry) => ({ type: "Feature", properties: {}, geometry })) });
}

/** The diff's difference areas, hatched (null clears). */
export function showDiff(map, collection) {
  map.getSource("diff").setData(collection ?? EMPTY);
}

/** Fit the view to a bbox [minx, miny, maxx, maxy] or to geometries. */
export function fitTo(map, what, { maxZoom = 17, padding = 40 } = {}) {
  let box = Array.isArray(what) && typeof what[0] === "number" ? what : null;
  if (!box) {
    for (const geometry of [what].flat()) {
      const b = bboxOf(geometry);
      if (!b) continue;
      box = box ? [Math.min(box[0], b[0]), Math.min(box[1], b[1]), Math.max(box[2], b[2]),
        Math.max(box[3], b[3])] : b;
    }
  }
  if (!box) return;
  map.fitBounds([[box[0], box[1]], [box[2], box[3]]], { padding, duration: 0, maxZoom });
}
