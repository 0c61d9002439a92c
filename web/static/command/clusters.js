// Counts on incident clusters (z < 13) as HTML markers: the map draws no text.

import { debounce } from "./dom.js";

const MAX_MARKERS = 300;
let markers = new Map();

function clusterFeatures(map) {
  if (!map.getSource("incidents") || map.getLayoutProperty("incidents-cluster", "visibility") === "none") {
    return [];
  }
  return map.querySourceFeatures("incidents", { sourceLayer: "incidents" })
    .filter((f) => (f.properties.point_count ?? 1) > 1);
}

function update(map) {
  const next = new Map();
  for (const feature of clusterFeatures(map).slice(0, MAX_MARKERS)) {
    const [lon, lat] = feature.geometry.coordinates;
    const key = `${lon.toFixed(5)},${lat.toFixed(5)},${feature.properties.point_count}`;
    if (next.has(key)) continue;
    const marker = markers.get(key) ?? makeMarker(map, [lon, lat], feature.properties.point_count);
    next.set(key, marker);
  }
  for (const [key, marker] of markers) if (!next.has(key)) marker.remove();
  markers = next;
}

function makeMarker(map, lngLat, count) {
  const element = document.createElement("div");
  element.className = "cluster-count";
  element.textContent = String(count);
  return new maplibregl.Marker({ element }).setLngLat(lngLat).addTo(map);
}

export function trackClusters(map) {
  const later = debounce(() => update(map), 150);
  map.on("idle", later);
  map.on("zoomstart", () => {
    for (const marker of markers.values()) marker.remove();
    markers = new Map();
  });
}
