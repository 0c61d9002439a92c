// District and street names as HTML markers (the browser's fonts draw Chinese; no glyph
// server), from /api/v1/jurisdictions; also the names of codes for the list and filters.

import { getJSON } from "./api.js";

const STREET_LABEL_ZOOM = 12;
const MAX_FEATURES = 5000;

/** Every page of a FeatureCollection, following `next` links, up to `cap` features. */
async function fetchAll(path, params, cap = MAX_FEATURES) {
  const features = [];
  let bbox = null;
  let body = await getJSON(path, params);
  for (;;) {
    features.push(...body.features);
    if (body.bbox) bbox = unionBBox(bbox, body.bbox);
    const next = (body.links || []).find((link) => link.rel === "next")?.href;
    if (!next || features.length >= cap) break;
    body = await getJSON(next);
  }
  return { features, bbox };
}

export function unionBBox(a, b) {
  if (!a) return [...b];
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

function largestRing(geometry) {
  if (!geometry) return null;
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  let best = null;
  let bestArea = -1;
  for (const polygon of polygons) {
    const ring = polygon[0];
    let sum = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      sum += (ring[j][0] + ring[i][0]) * (ring[j][1] - ring[i][1]);
    }
    if (Math.abs(sum) > bestArea) [bestArea, best] = [Math.abs(sum), ring];
  }
  return best;
}

/** Middle of the widest inside span of the horizontal line through the ring's middle. */
export function labelPoint(geometry) {
  const ring = largestRing(geometry);
  if (!ring) return null;
  const ys = ring.map((p) => p[1]);
  const y = (Math.min(...ys) + Math.max(...ys)) / 2;
  const xs = [];
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const [x1, y1] = ring[j];
    const [x2, y2] = ring[i];
    if ((y1 > y) !== (y2 > y)) xs.push(x1 + ((y - y1) * (x2 - x1)) / (y2 - y1));
  }
  xs.sort((a, b) => a - b);
  let best = null;
  for (let i = 0; i + 1 < xs.length; i += 2) {
    if (!best || xs[i + 1] - xs[i] > best[1] - best[0]) best = [xs[i], xs[i + 1]];
  }
  return best ? [(best[0] + best[1]) / 2, y] : ring[0];
}

function addLabels(map, level, features) {
  for (const feature of features) {
    const point = labelPoint(feature.geometry);
    if (!point) continue;
    const element = document.createElement("div");
    element.className = `label label-${level}`;
    element.textContent = feature.properties.name;
    new maplibregl.Marker({ element }).setLngLat(point).addTo(map);
  }
}

/** Labels for districts and streets; {count, bbox, names: code → name, streets: [...]}. */
export async function loadBoundaries(map) {
  const [districts, streets] = await Promise.all([
    fetchAll("/jurisdictions", { level: "district" }),
    fetchAll("/jurisdictions", { level: "street" }),
  ]);
  addLabels(map, "districts", districts.features);
  addLabels(map, "streets", streets.features);
  const zoomClass = () => document.body.classList.toggle("show-street-labels",
    map.getZoom() >= STREET_LABEL_ZOOM);
  map.on("zoomend", zoomClass);
  zoomClass();
  const names = {};
  for (const f of [...districts.features, ...streets.features]) names[f.properties.code] = f.properties.name;
  const bbox = [districts.bbox, streets.bbox].filter(Boolean).reduce((a, b) => unionBBox(a, b), null);
  return { count: districts.features.length + streets.features.length, bbox, names,
    streets: streets.features.map((f) => f.properties) };
}
