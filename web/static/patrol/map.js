// The patrol map: MapLibre GL JS from /vendor/maplibre-gl on a plain background (no base-map
// tiles, no glyphs: nothing here needs a server but ours). GeoJSON sources only: my streets
// coloured by today's status, the chosen street, the live track, the current position, and
// a draggable marker for the position of a problem report.

const EMPTY = { type: "FeatureCollection", features: [] };
export const STATUS_COLORS = { done: "#2e7d32", partly: "#f9a825", none: "#c62828" };

const STYLE = {
  version: 8,
  sources: {
    streets: { type: "geojson", data: EMPTY },
    selected: { type: "geojson", data: EMPTY },
    track: { type: "geojson", data: EMPTY },
    position: { type: "geojson", data: EMPTY },
  },
  layers: [
    { id: "background", type: "background", paint: { "background-color": "#eef0ea" } },
    { id: "selected-casing", type: "line", source: "selected",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#14323f", "line-width": 14, "line-opacity": 0.35 } },
    { id: "streets-line", type: "line", source: "streets",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": ["match", ["get", "status"], "done", STATUS_COLORS.done,
        "partly", STATUS_COLORS.partly, STATUS_COLORS.none], "line-width": 6 } },
    // a wide invisible line: streets are easy to tap with a finger
    { id: "streets-hit", type: "line", source: "streets",
      paint: { "line-color": "#000", "line-width": 28, "line-opacity": 0 } },
    { id: "track-line", type: "line", source: "track",
      layout: { "line-cap": "round", "line-join": "round" },
      paint: { "line-color": "#1565c0", "line-width": 4 } },
    { id: "position-accuracy", type: "circle", source: "position",
      paint: { "circle-radius": 16, "circle-color": "#1e88e5", "circle-opacity": 0.18 } },
    { id: "position-dot", type: "circle", source: "position",
      paint: { "circle-radius": 7, "circle-color": "#1e88e5", "circle-stroke-color": "#fff",
        "circle-stroke-width": 2 } },
  ],
};

export class PatrolMap {
  /** A map in `container`, resolved once its style has loaded. */
  static async create(container) {
    const map = new maplibregl.Map({ container, style: STYLE, center: [116.397, 39.908],
      zoom: 12, attributionControl: false, dragRotate: false, pitchWithRotate: false,
      touchPitch: false });
    map.touchZoomRotate.disableRotation();
    map.addControl(new maplibregl.NavigationControl({ showCompass: false }), "top-right");
    map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-left");
    await new Promise((resolve) => map.on("load", resolve));
    window.gridopsMap = map; // for tests and the console
    return new PatrolMap(map);
  }

  constructor(map) {
    this.map = map;
    this.marker = null;
    this.streetTap = () => {};
    this.mapTap = null;
    map.on("click", (event) => {
      if (this.mapTap) {
        this.mapTap(event.lngLat);
        return;
      }
      const [hit] = map.queryRenderedFeatures(event.point, { layers: ["streets-hit"] });
      if (hit) this.streetTap(hit.properties.street_id);
    });
    map.on("mouseenter", "streets-hit", () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", "streets-hit", () => { map.getCanvas().style.cursor = ""; });
  }

  onStreetTap(listener) {
    this.streetTap = listener;
  }

  /** While set, a tap on the map calls `listener(lngLat)` instead of choosing a street. */
  onMapTap(listener) {
    this.mapTap = listener;
  }

  /** My streets: a FeatureCollection whose features carry `status` (done|partly|none). */
  setStreets(collection) {
    this.map.getSource("streets").setData(collection);
  }

  setSelected(feature) {
    this.map.getSource("selected").setData(feature ?? EMPTY);
  }

  setTrack(coordinates) {
    this.map.getSource("track").setData(coordinates.length >= 2
      ? { type: "Feature", properties: {}, geometry: { type: "LineString", coordinates } }
      : EMPTY);
  }

  setPosition(lonLat) {
    this.map.getSource("position").setData(lonLat
      ? { type: "Feature", properties: {}, geometry: { type: "Point", coordinates: lonLat } }
      : EMPTY);
  }

  /** Keep `lonLat` in view (pan only when it gets near the edge). */
  follow(lonLat) {
    const point = this.map.project(lonLat);
    const { clientWidth: w, clientHeight: h } = this.map.getContainer();
    const margin = Math.min(w, h) * 0.15;
    if (point.x < margin || point.y < margin || point.x > w - margin || point.y > h - margin) {
      this.map.easeTo({ center: lonLat, duration: 300 });
    }
  }

  /** Fit the view to a Feature or FeatureCollection of lines. */
  fit(geojson) {
    const coords = [];
    const walk = (c) => (typeof c[0] === "number" ? coords.push(c) : c.forEach(walk));
    for (const feature of geojson?.features ?? (geojson ? [geojson] : [])) {
      if (feature?.geometry) walk(feature.geometry.coordinates);
    }
    if (!coords.length) return;
    const lons = coords.map((c) => c[0]);
    const lats = coords.map((c) => c[1]);
    this.map.fitBounds([[Math.min(...lons), Math.min(...lats)],
      [Math.max(...lons), Math.max(...lats)]], { padding: 36, maxZoom: 17, duration: 0 });
  }

  /** The draggable marker of a problem's position; `onMove(lngLat)` after a drag. */
  showMarker(lonLat, onMove) {
    if (!this.marker) {
      this.marker = new maplibregl.Marker({ color: "#d32f2f", draggable: true });
      this.marker.getElement().classList.add("report-marker");
      this.marker.on("dragend", () => this.markerMoved?.(this.marker.getLngLat()));
    }
    this.markerMoved = onMove;
    this.marker.setLngLat(lonLat).addTo(this.map);
  }

  moveMarker(lonLat) {
    this.marker?.setLngLat(lonLat);
  }

  hideMarker() {
    this.marker?.remove();
  }

  resize() {
    this.map.resize();
  }
}
