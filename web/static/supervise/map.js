// The street coverage map: MapLibre (from /vendor/maplibre-gl) on a plain background, the
// evaluated streets from /patrol-evaluation/streets as a GeoJSON source, coloured by state.

import { h, fill } from "../command/dom.js";
import { pct, t } from "./i18n.js";

const BEIJING = [116.36, 39.87];
export const STATES = ["uncovered", "partial", "covered", "none"];
export const COLOURS = { covered: "#2e7d32", partial: "#f59e0b", uncovered: "#d32f2f",
  none: "#9aa0a6" };
const EMPTY = { type: "FeatureCollection", features: [] };
export const STREET_LAYER = "streets-line";

/** A map in #map with the (empty) streets source and its layers, once the style loaded. */
export async function createMap() {
  const map = new maplibregl.Map({
    container: "map", center: BEIJING, zoom: 12, attributionControl: false,
    style: { version: 8, sources: {},
      layers: [{ id: "background", type: "background", paint: { "background-color": "#f4f2ee" } }] },
  });
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  await new Promise((resolve) => map.on("load", resolve));
  map.addSource("streets", { type: "geojson", data: EMPTY });
  map.addLayer({ id: "streets-casing", type: "line", source: "streets",
    layout: { "line-cap": "round", "line-join": "round" },
    paint: { "line-color": "#ffffff", "line-width": ["interpolate", ["linear"], ["zoom"], 11, 3, 16, 9] } });
  map.addLayer({ id: STREET_LAYER, type: "line", source: "streets",
    layout: { "line-cap": "round", "line-join": "round" },
    paint: {
      "line-color": ["match", ["get", "state"], "covered", COLOURS.covered, "partial",
        COLOURS.partial, "uncovered", COLOURS.uncovered, COLOURS.none],
      "line-width": ["interpolate", ["linear"], ["zoom"], 11, 1.6, 16, 6],
    } });
  const popup = new maplibregl.Popup({ closeButton: true, maxWidth: "260px" });
  map.on("click", STREET_LAYER, (event) => {
    const p = event.features[0].properties;
    popup.setLngLat(event.lngLat).setDOMContent(describe(p)).addTo(map);
  });
  map.on("mouseenter", STREET_LAYER, () => { map.getCanvas().style.cursor = "pointer"; });
  map.on("mouseleave", STREET_LAYER, () => { map.getCanvas().style.cursor = ""; });
  window.gridopsSuperviseMap = map; // for tests and the console
  return map;
}

function describe(p) {
  const row = (label, value) => h("div", {}, h("span", { class: "muted" }, `${label}：`), value ?? t("none"));
  return h("div", { class: "popup" },
    h("strong", {}, p.name),
    row(t("map.chief"), p.chief),
    p.stewards ? row(t("map.stewards"), p.stewards) : null,
    row(t("map.compliance"), `${pct(p.compliance)} (${t("days", p.compliant_days, p.required_days)})`),
    row(t("map.coverage"), pct(p.coverage)),
    row(t("map.difficulty"), Number(p.difficulty).toFixed(2)));
}

/** Show `collection` and fit the view to it (once per new filter). */
export function showStreets(map, collection, fit) {
  map.getSource("streets").setData(collection);
  if (fit && collection.features.length) {
    const bounds = new maplibregl.LngLatBounds();
    for (const feature of collection.features) extend(bounds, feature.geometry?.coordinates);
    if (!bounds.isEmpty()) map.fitBounds(bounds, { padding: 30, duration: 0, maxZoom: 16 });
  }
}

function extend(bounds, coords) {
  if (!Array.isArray(coords)) return;
  if (typeof coords[0] === "number") bounds.extend(coords);
  else for (const c of coords) extend(bounds, c);
}

/** The legend: a swatch, a label and the number of streets per state. */
export function renderLegend(element, collection) {
  const counts = Object.fromEntries(STATES.map((s) => [s, 0]));
  for (const f of collection?.features ?? []) counts[f.properties.state] += 1;
  fill(element, h("strong", {}, t("map.legend")),
    ...STATES.filter((s) => s !== "none" || counts.none).map((s) => h("div", { class: "legend-row",
      dataset: { state: s } },
    h("span", { class: "swatch", style: `background:${COLOURS[s]}` }),
    h("span", {}, t(`map.${s}`)), h("span", { class: "muted" }, t("map.count", counts[s])))));
}
