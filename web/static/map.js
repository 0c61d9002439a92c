// GridOps boundary map: districts, streets, communities and grids from /api/v1 (GeoJSON).
// MapLibre GL JS is served locally from /vendor/maplibre-gl (no CDN). No glyph server is
// needed: labels are HTML markers, so Chinese names render with the browser's fonts.

const config = JSON.parse(document.getElementById("gridops-config").textContent);
const BEIJING = [116.397, 39.908];
const GRID_MIN_ZOOM = 13; // grids are loaded for the visible area from this zoom
const STREET_LABEL_ZOOM = 12;
const MAX_FEATURES = 5000; // per layer, to keep the browser responsive

const I18N = {
  zh: {
    title: "GridOps 网格地图",
    toggle: "EN",
    toggleLabel: "English",
    district: "区",
    street: "街道",
    community: "社区",
    grid: "网格",
    code: "代码",
    name: "名称",
    level: "层级",
    parent: "上级",
    households: "户数",
    validFrom: "生效",
    synthetic: "示范数据（合成）",
    loading: "正在加载边界…",
    loaded: (n) => `已加载 ${n} 个边界`,
    truncated: "（数量过多，仅显示部分）",
    zoomForGrids: `放大到 ${GRID_MIN_ZOOM} 级以上查看网格`,
    empty: "暂无边界数据：运行 `make demo` 生成示范城市",
    failed: (m) => `加载失败：${m}`,
    signOut: "退出",
    signOutFailed: (m) => `退出失败：${m}`,
    signedOut: "登录已失效，正在转到登录页…",
    roles: {
      admin: "管理员", operator: "受理员", dispatcher: "调度员",
      street_chief: "街巷长", planner: "规划员", viewer: "只读",
    },
  },
  en: {
    title: "GridOps grid map",
    toggle: "中文",
    toggleLabel: "中文",
    district: "Districts",
    street: "Streets",
    community: "Communities",
    grid: "Grids",
    code: "Code",
    name: "Name",
    level: "Level",
    parent: "Parent",
    households: "Households",
    validFrom: "Valid from",
    synthetic: "demo data (synthetic)",
    loading: "Loading boundaries…",
    loaded: (n) => `${n} boundaries loaded`,
    truncated: " (too many, showing a part)",
    zoomForGrids: `zoom in past level ${GRID_MIN_ZOOM} to see grids`,
    empty: "No boundary data yet: run `make demo` to build the demo city",
    failed: (m) => `Loading failed: ${m}`,
    signOut: "Sign out",
    signOutFailed: (m) => `Sign-out failed: ${m}`,
    signedOut: "Signed out; going to the sign-in page…",
    roles: {
      admin: "admin", operator: "operator", dispatcher: "dispatcher",
      street_chief: "street chief", planner: "planner", viewer: "viewer",
    },
  },
};
const LEVEL_KEYS = { district: "district", street: "street", community: "community", grid: "grid" };
const userBox = document.getElementById("user"); // absent only when rendered without a user
const LOGIN_PATH = userBox?.dataset.loginPath ?? "/login";

let lang = localStorage.getItem("gridops.lang") === "en" ? "en" : "zh";
let status = { key: "loading", args: [] };
const t = (key, ...args) => {
  const value = I18N[lang][key];
  return typeof value === "function" ? value(...args) : value;
};

// -- page chrome -------------------------------------------------------------------------

function setStatus(key, ...args) {
  status = { key, args };
  renderStatus();
}

function renderStatus() {
  const parts = [t(status.key, ...status.args)];
  if (status.truncated) parts.push(t("truncated"));
  document.getElementById("status").textContent = parts.join("");
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  const button = document.getElementById("lang-toggle");
  button.textContent = t("toggle");
  button.setAttribute("aria-label", t("toggleLabel"));
  if (userBox) {
    const roles = userBox.dataset.roles.split(" ").filter(Boolean);
    document.getElementById("user-roles").textContent =
      roles.map((role) => t("roles")[role] ?? role).join(lang === "zh" ? "、" : ", ");
  }
  renderStatus();
}

document.getElementById("lang-toggle").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("gridops.lang", lang);
  applyLanguage();
});
applyLanguage();

// -- session -----------------------------------------------------------------------------

function readCookie(name) {
  for (const part of document.cookie.split("; ")) {
    const [key, ...value] = part.split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

let signingOut = false; // a fetch answered 401 by our own sign-out must not add `next`

/** The session is gone (expired, revoked): sign in again, then come back to this view. */
function goToLogin() {
  if (signingOut) return;
  const here = window.location.pathname + window.location.search + window.location.hash;
  window.location.assign(`${LOGIN_PATH}?next=${encodeURIComponent(here)}`);
}

/** End the session on the server (cookie + CSRF header), then show the login page. */
async function signOut() {
  const token = readCookie(userBox.dataset.csrfCookie) ?? "";
  signingOut = true;
  try {
    const response = await fetch(`${config.apiBase}/auth/logout`, {
      method: "POST",
      headers: { "X-CSRF-Token": token, Accept: "application/json" },
    });
    if (response.ok || response.status === 401) { // 401: already signed out
      window.location.assign(LOGIN_PATH);
      return;
    }
    signingOut = false;
    const body = await response.json().catch(() => null);
    setStatus("signOutFailed", describeError(body, response.status));
  } catch (error) {
    signingOut = false;
    setStatus("signOutFailed", error.message);
  }
}

document.getElementById("logout")?.addEventListener("click", signOut);

// -- data --------------------------------------------------------------------------------

/** Fetch a FeatureCollection and follow its `next` links, up to `cap` features. */
async function fetchAll(url, { cap = MAX_FEATURES, signal } = {}) {
  const features = [];
  let bbox = null;
  let next = url;
  while (next && features.length < cap) {
    const response = await fetch(next, { signal, headers: { Accept: "application/geo+json" } });
    if (response.status === 401) {
      goToLogin();
      throw new Error(t("signedOut"));
    }
    const body = await response.json();
    if (!response.ok) throw new Error(describeError(body, response.status));
    features.push(...body.features);
    if (body.bbox) bbox = unionBBox(bbox, body.bbox);
    next = (body.links || []).find((link) => link.rel === "next")?.href ?? null;
  }
  return { type: "FeatureCollection", features, bbox, truncated: Boolean(next) };
}

function describeError(body, code) {
  if (typeof body?.detail === "string") return body.detail;
  if (Array.isArray(body?.detail)) return body.detail.map((d) => d.msg).join("; ");
  return `HTTP ${code}`;
}

function unionBBox(a, b) {
  if (!a) return [...b];
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[2], b[2]), Math.max(a[3], b[3])];
}

function api(path, params) {
  const query = new URLSearchParams({ limit: String(config.pageMax), ...params });
  return `${config.apiBase}${path}?${query}`;
}

// -- label points (inside the polygon, for HTML labels) ------------------------------------

function largestRing(geometry) {
  const polygons = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
  let best = null;
  let bestArea = -1;
  for (const polygon of polygons) {
    const ring = polygon[0];
    let area = 0;
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      area += (ring[j][0] + ring[i][0]) * (ring[j][1] - ring[i][1]);
    }
    if (Math.abs(area) > bestArea) {
      bestArea = Math.abs(area);
      best = ring;
    }
  }
  return best;
}

/** Middle of the widest inside span of the horizontal line through the ring's bbox centre. */
function labelPoint(geometry) {
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

// -- map ---------------------------------------------------------------------------------

function baseStyle() {
  const style = {
    version: 8,
    sources: {},
    layers: [{ id: "background", type: "background", paint: { "background-color": "#f3f1ec" } }],
  };
  if (config.basemapUrl) {
    style.sources.basemap = { type: "raster", tiles: [config.basemapUrl], tileSize: 256 };
    style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  return style;
}

const LAYERS = {
  district: { fill: "#b03a2e", fillOpacity: 0.05, line: "#8e2c22", width: 2.5 },
  street: { fill: "#1f6f8b", fillOpacity: 0.0, line: "#1f6f8b", width: 1.5, dash: [3, 2] },
  community: { fill: "#4f7d2f", fillOpacity: 0.0, line: "#4f7d2f", width: 1, minzoom: 11 },
  grid: { fill: "#555555", fillOpacity: 0.0, line: "#6b6b6b", width: 0.5, minzoom: GRID_MIN_ZOOM },
};
const CLICK_ORDER = ["grid", "community", "street", "district"]; // smallest first
const markers = { district: [], street: [] };

function addLayers(map) {
  for (const name of ["district", "street", "community", "grid"]) {
    const spec = LAYERS[name];
    const empty = { type: "FeatureCollection", features: [] };
    map.addSource(name, { type: "geojson", data: empty, promoteId: "code" });
    const zoom = spec.minzoom ? { minzoom: spec.minzoom } : {};
    map.addLayer({
      id: `${name}-fill`, type: "fill", source: name, ...zoom,
      paint: { "fill-color": spec.fill, "fill-opacity": spec.fillOpacity },
    });
    map.addLayer({
      id: `${name}-line`, type: "line", source: name, ...zoom,
      layout: { "line-join": "round" },
      paint: {
        "line-color": spec.line,
        "line-width": spec.width,
        ...(spec.dash ? { "line-dasharray": spec.dash } : {}),
      },
    });
  }
}

function addLabels(map, name, collection) {
  for (const feature of collection.features) {
    const point = labelPoint(feature.geometry);
    if (!point) continue;
    const element = document.createElement("div");
    element.className = `label label-${name}`;
    element.textContent = feature.properties.name;
    markers[name].push(new maplibregl.Marker({ element }).setLngLat(point).addTo(map));
  }
}

function popupHtml(name, properties) {
  const rows = [
    [t("level"), t(LEVEL_KEYS[name])],
    [t("name"), properties.name ?? "—"],
    [t("code"), properties.code],
  ];
  if (properties.parent_code) rows.push([t("parent"), properties.parent_code]);
  if (name === "grid") rows.push([t("households"), properties.households]);
  if (properties.valid_from) rows.push([t("validFrom"), String(properties.valid_from).slice(0, 10)]);
  const cells = rows
    .map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(String(v))}</td></tr>`)
    .join("");
  const note = properties.is_synthetic ? `<p class="synthetic">${escapeHtml(t("synthetic"))}</p>` : "";
  return `<table class="popup">${cells}</table>${note}`;
}

function escapeHtml(value) {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function setVisible(map, name, visible) {
  for (const suffix of ["fill", "line"]) {
    map.setLayoutProperty(`${name}-${suffix}`, "visibility", visible ? "visible" : "none");
  }
  document.body.classList.toggle(`hide-${name}`, !visible);
}

async function loadGrids(map, state) {
  if (map.getZoom() < GRID_MIN_ZOOM) return;
  state.controller?.abort();
  state.controller = new AbortController();
  const b = map.getBounds();
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const bbox = [
    clamp(b.getWest(), -180, 180), clamp(b.getSouth(), -90, 90),
    clamp(b.getEast(), -180, 180), clamp(b.getNorth(), -90, 90),
  ].map((v) => v.toFixed(6)).join(",");
  try {
    const grids = await fetchAll(api("/grids", { bbox }), { signal: state.controller.signal });
    map.getSource("grid").setData(grids);
    status.truncated = grids.truncated;
    renderStatus();
  } catch (error) {
    if (error.name !== "AbortError") setStatus("failed", error.message);
  }
}

async function start() {
  const map = new maplibregl.Map({
    container: "map",
    style: baseStyle(),
    center: BEIJING,
    zoom: 10,
    hash: true, // the view lives in the URL (#zoom/lat/lon): shareable, survives reloads
    attributionControl: { compact: true },
  });
  map.addControl(new maplibregl.NavigationControl(), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  await new Promise((resolve) => map.on("load", resolve));
  addLayers(map);

  const updateZoomClasses = () => {
    document.body.classList.toggle("show-street-labels", map.getZoom() >= STREET_LABEL_ZOOM);
    document.body.classList.toggle("show-grids", map.getZoom() >= GRID_MIN_ZOOM);
  };
  map.on("zoomend", updateZoomClasses);
  updateZoomClasses();

  for (const input of document.querySelectorAll("input[data-layer]")) {
    input.addEventListener("change", () => setVisible(map, input.dataset.layer, input.checked));
  }

  map.on("click", (event) => {
    const layers = CLICK_ORDER.map((name) => `${name}-fill`)
      .filter((id) => map.getLayoutProperty(id, "visibility") !== "none");
    const hits = map.queryRenderedFeatures(event.point, { layers });
    for (const name of CLICK_ORDER) {
      const hit = hits.find((feature) => feature.layer.id === `${name}-fill`);
      if (hit) {
        new maplibregl.Popup({ maxWidth: "320px" })
          .setLngLat(event.lngLat).setHTML(popupHtml(name, hit.properties)).addTo(map);
        return;
      }
    }
  });
  for (const name of CLICK_ORDER) {
    map.on("mouseenter", `${name}-fill`, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", `${name}-fill`, () => { map.getCanvas().style.cursor = ""; });
  }

  setStatus("loading");
  try {
    const [districts, streets, communities] = await Promise.all([
      fetchAll(api("/jurisdictions", { level: "district" })),
      fetchAll(api("/jurisdictions", { level: "street" })),
      fetchAll(api("/jurisdictions", { level: "community" })),
    ]);
    map.getSource("district").setData(districts);
    map.getSource("street").setData(streets);
    map.getSource("community").setData(communities);
    addLabels(map, "district", districts);
    addLabels(map, "street", streets);
    const total = districts.features.length + streets.features.length + communities.features.length;
    const extent = [districts, streets, communities]
      .map((c) => c.bbox).filter(Boolean).reduce((a, b) => unionBBox(a, b), null);
    if (total === 0) {
      setStatus("empty");
    } else {
      setStatus("loaded", total);
      status.truncated = districts.truncated || streets.truncated || communities.truncated;
      renderStatus();
    }
    if (extent && !window.location.hash) { // a view in the URL wins over "fit all"
      map.fitBounds([[extent[0], extent[1]], [extent[2], extent[3]]], { padding: 40, duration: 0 });
    }
  } catch (error) {
    setStatus("failed", error.message);
  }

  const gridState = {};
  map.on("moveend", () => loadGrids(map, gridState));
  loadGrids(map, gridState);
}

if (typeof window.maplibregl === "undefined") {
  document.getElementById("maplibre-missing").hidden = false;
  document.getElementById("map").classList.add("map-missing");
  setStatus("failed", `MapLibre GL JS — ${config.installHint}`);
} else {
  start();
}
