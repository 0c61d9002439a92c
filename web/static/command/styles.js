// MapLibre layer specs per tile layer (source and source-layer are named like the layer).
// No glyph server is needed: the map draws no text; labels and cluster counts are HTML.

export const STATUS_COLORS = {
  pending: "#8e24aa", registered: "#1565c0", dispatched: "#ef6c00", handling: "#f9a825",
  feedback: "#00897b", verifying: "#5e35b1", ledger: "#6d4c41", closed: "#9e9e9e",
  void: "#bdbdbd",
};
export const TEAM_COLORS = {
  available: "#2e7d32", busy: "#d84315", off_duty: "#9e9e9e", out_of_service: "#424242",
};
export const OVERDUE_COLOR = "#d50000";

const match = (field, colors, fallback) => [
  "match", ["get", field], ...Object.entries(colors).flat(), fallback];

const outline = (name, color, width, extra = {}) => ({
  id: `${name}-line`, type: "line", source: name, "source-layer": name,
  layout: { "line-join": "round" }, paint: { "line-color": color, "line-width": width, ...extra },
});
const area = (name, color, opacity) => ({
  id: `${name}-fill`, type: "fill", source: name, "source-layer": name,
  paint: { "fill-color": color, "fill-opacity": opacity },
});

const isCluster = ["all", ["has", "point_count"], [">", ["get", "point_count"], 1]];

const SPECS = {
  districts: () => [area("districts", "#b03a2e", 0.04), outline("districts", "#8e2c22", 2.5)],
  streets: () => [outline("streets", "#1f6f8b", 1.5, { "line-dasharray": [3, 2] })],
  communities: () => [outline("communities", "#4f7d2f", 1)],
  grids: () => [outline("grids", "#6b6b6b", 0.6)],
  buildings: () => [area("buildings", "#c8b79e", 0.55), outline("buildings", "#9c8b72", 0.5)],
  lanes: () => [outline("lanes", "#b08aa6", ["match", ["get", "road_class"],
    "arterial", 3, "secondary", 2, "branch", 1.5, 1])],
  joint_zones: () => [area("joint_zones", "#ff8f00", 0.22),
    outline("joint_zones", "#ff6f00", 1, { "line-dasharray": [2, 2] })],
  incidents: () => [
    { id: "incidents-cluster", type: "circle", source: "incidents", "source-layer": "incidents",
      filter: isCluster,
      paint: {
        "circle-color": ["case", [">", ["get", "overdue_count"], 0], "#e53935", "#1e88e5"],
        "circle-opacity": 0.8, "circle-stroke-color": "#fff", "circle-stroke-width": 2,
        "circle-radius": ["interpolate", ["linear"], ["get", "point_count"], 2, 11, 50, 18,
          500, 26],
      } },
    { id: "incidents-circle", type: "circle", source: "incidents", "source-layer": "incidents",
      filter: ["!", isCluster],
      paint: {
        "circle-color": match("status", STATUS_COLORS, "#1565c0"),
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 5, 16, 9],
        "circle-stroke-color": ["case", ["==", ["get", "overdue"], true], OVERDUE_COLOR, "#fff"],
        "circle-stroke-width": ["case", ["==", ["get", "overdue"], true], 3, 1.5],
      } },
    { id: "incidents-selected", type: "circle", source: "incidents", "source-layer": "incidents",
      filter: ["==", ["get", "id"], -1],
      paint: { "circle-radius": 14, "circle-color": "rgba(0,0,0,0)",
        "circle-stroke-color": "#111", "circle-stroke-width": 2.5 } },
  ],
  teams: () => [
    { id: "teams-circle", type: "circle", source: "teams", "source-layer": "teams",
      paint: {
        "circle-color": match("status", TEAM_COLORS, "#607d8b"),
        "circle-radius": ["interpolate", ["linear"], ["zoom"], 10, 4, 16, 8],
        "circle-opacity": ["case", ["==", ["get", "stale"], true], 0.45, 1],
        "circle-stroke-color": "#102027", "circle-stroke-width": 2,
      } },
  ],
};

/** The MapLibre layers drawing tile layer `name` (none for a layer we do not know). */
export const layersFor = (name) => (SPECS[name] ? SPECS[name]() : []);

/** The clickable (map) layer ids of incidents and teams. */
export const INCIDENT_LAYERS = ["incidents-circle", "incidents-cluster"];
export const TEAM_LAYERS = ["teams-circle"];

export const ROUTE_LAYER = {
  id: "route-line", type: "line", source: "route",
  layout: { "line-join": "round", "line-cap": "round" },
  paint: { "line-color": "#0d47a1", "line-width": 5, "line-opacity": 0.75 },
};
