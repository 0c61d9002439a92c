// The map: MapLibre GL JS (served from /vendor/maplibre-gl), the vector-tile layers of
// /tiles, the optional raster base map, the selected incident and a team's route.

import { layersFor, ROUTE_LAYER } from "./styles.js";

const BEIJING = [116.397, 39.908];
// Drawing order, bottom first; layers.json may add others (drawn last, unstyled).
export const LAYER_ORDER = ["districts", "joint_zones", "streets", "communities", "grids",
  "buildings", "lanes", "incidents", "teams"];
const FALLBACK_MINZOOM = { streets: 8, communities: 12, grids: 12, buildings: 14, lanes: 13,
  joint_zones: 11, incidents: 8, teams: 10 };
const EMPTY = { type: "FeatureCollection", features: [] };

const tileUrls = {};
const versions = {};

/** The tile layers the server offers (/tiles/layers.json), or the documented defaults. */
export async function loadLayerList() {
  try {
    const response = await fetch("/tiles/layers.json", { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const body = await response.json();
    const layers = Array.isArray(body) ? body : body.layers;
    return layers.map((l) => ({ name: l.name ?? l.id, minzoom: l.minzoom ?? 0,
      maxzoom: l.maxzoom ?? 16, url: l.url_template ?? l.tiles?.[0] ?? defaultUrl(l.name ?? l.id) }));
  } catch {
    return LAYER_ORDER.map((name) => ({ name, minzoom: FALLBACK_MINZOOM[name] ?? 0, maxzoom: 16,
      url: defaultUrl(name) }));
  }
}

const defaultUrl = (name) => `/tiles/${name}/{z}/{x}/{y}.mvt`;
const absolute = (url) => (url.startsWith("/") ? window.location.origin + url : url);

function baseStyle(basemapUrl) {
  const style = { version: 8, sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": "#f3f1ec" } }] };
  if (basemapUrl) {
    style.sources.basemap = { type: "raster", tiles: [basemapUrl], tileSize: 256 };
    style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  return style;
}

/** A map in #map, resolved once its style has loaded. */
export async function createMap(basemapUrl) {
  const map = new maplibregl.Map({
    container: "map", style: baseStyle(basemapUrl), center: BEIJING, zoom: 10,
    hash: true, // the view lives in the URL (#zoom/lat/lon): shareable, survives reloads
    attributionControl: { compact: true },
  });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  await new Promise((resolve) => map.on("load", resolve));
  window.gridopsMap = map; // for tests and the console
  return map;
}

function sortByOrder(layers) {
  const rank = (name) => (LAYER_ORDER.includes(name) ? LAYER_ORDER.indexOf(name) : 99);
  return [...layers].sort((a, b) => rank(a.name) - rank(b.name));
}

/** Sources and styled layers for every tile layer, and the route line under the points. */
export function addTileLayers(map, layers) {
  for (const layer of sortByOrder(layers)) {
    if (layer.name === "incidents") addRouteLayer(map);
    const specs = layersFor(layer.name);
    if (!specs.length) continue;
    tileUrls[layer.name] = absolute(layer.url);
    versions[layer.name] = 0;
    map.addSource(layer.name, { type: "vector", tiles: [tileUrls[layer.name]],
      minzoom: layer.minzoom, maxzoom: layer.maxzoom });
    for (const spec of specs) map.addLayer({ ...spec, minzoom: layer.minzoom });
  }
  if (!map.getSource("route")) addRouteLayer(map);
}

function addRouteLayer(map) {
  if (map.getSource("route")) return;
  map.addSource("route", { type: "geojson", data: EMPTY });
  map.addLayer(ROUTE_LAYER);
}

/** Fetch the tiles of `names` again (the server cache was invalidated by the change). */
export function refreshLayers(map, names) {
  for (const name of names) {
    const source = map.getSource(name);
    if (!source || !tileUrls[name]) continue;
    versions[name] += 1;
    const url = tileUrls[name];
    source.setTiles([`${url}${url.includes("?") ? "&" : "?"}v=${versions[name]}`]);
  }
}

export function setLayerVisible(map, name, visible) {
  const value = visible ? "visible" : "none";
  for (const layer of map.getStyle().layers) {
    if (layer.source === name) map.setLayoutProperty(layer.id, "visibility", value);
  }
  document.body.classList.toggle(`hide-${name}`, !visible);
}

/** Draw a route (a GeoJSON Feature) or clear it (null). */
export function showRoute(map, feature) {
  map.getSource("route")?.setData(feature ?? EMPTY);
}

let selectedMarker = null;

/** Ring the selected incident (tile layer filter and an HTML marker seen at any zoom). */
export function markSelected(map, id, lngLat) {
  if (map.getLayer("incidents-selected")) {
    map.setFilter("incidents-selected", ["==", ["get", "id"], id ?? -1]);
  }
  selectedMarker?.remove();
  selectedMarker = null;
  if (id == null || !lngLat) return;
  const element = document.createElement("div");
  element.className = "selected-marker";
  element.dataset.incidentId = String(id);
  element.append(document.createElement("span")); // the ring (animated; the marker is placed by transform)
  selectedMarker = new maplibregl.Marker({ element }).setLngLat(lngLat).addTo(map);
}

export function flyTo(map, lngLat, minZoom = 15) {
  map.flyTo({ center: lngLat, zoom: Math.max(map.getZoom(), minZoom), speed: 1.6 });
}

/** The visible area as an API bbox parameter ("minx,miny,maxx,maxy"). */
export function viewBBox(map) {
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  return [clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
    clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90)]
    .map((v) => v.toFixed(6)).join(",");
}
