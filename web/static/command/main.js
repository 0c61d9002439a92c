// The command page: wires the map, the list, the card, the dashboard and the live feed.

import { settings, signOut } from "./api.js";
import { $, debounce, h } from "./dom.js";
import { applyStatic, currentLang, label, onLanguage, t, toggleLang } from "./i18n.js";
import { addTileLayers, createMap, flyTo, loadLayerList, markSelected, refreshLayers, showRoute }
  from "./map.js";
import { loadBoundaries } from "./labels.js";
import { buildSwitcher } from "./switcher.js";
import { trackClusters } from "./clusters.js";
import { IncidentList } from "./list.js";
import { Card } from "./card.js";
import { Dashboard } from "./dashboard.js";
import { connectLive, renderLiveState } from "./live.js";
import { toast } from "./feedback.js";
import { INCIDENT_LAYERS, TEAM_LAYERS } from "./styles.js";

const userBox = $("#user");
const roles = (userBox?.dataset.roles ?? "").split(" ").filter(Boolean);
const user = { roles, mayCommand: roles.some((r) => ["admin", "operator"].includes(r)),
  mayWork: roles.some((r) => ["admin", "operator", "dispatcher"].includes(r)) };
let status = { key: "loading", args: [] };

function setStatus(key, ...args) {
  status = { key, args };
  $("#status").textContent = t(key, ...args);
}

function renderChrome() {
  $("#user-roles").textContent = roles.map((r) => label("roles", r)).join(currentLang() === "zh" ? "、" : ", ");
  setStatus(status.key, ...status.args);
  renderLiveState();
}

function wireChrome() {
  applyStatic();
  renderChrome();
  $("#lang-toggle").addEventListener("click", toggleLang);
  $("#logout")?.addEventListener("click", () => signOut().catch((e) => setStatus("signOutFailed", e.message)));
}

async function fitToBoundaries(map, bbox) {
  if (bbox && !window.location.hash) {
    map.fitBounds([[bbox[0], bbox[1]], [bbox[2], bbox[3]]], { padding: 40, duration: 0 });
  }
}

async function startMap() {
  const map = await createMap(settings.basemapUrl);
  const layers = await loadLayerList();
  addTileLayers(map, layers);
  buildSwitcher(map, layers.map((l) => l.name).filter((n) => map.getSource(n)));
  trackClusters(map);
  return map;
}

async function loadLabels(map) {
  setStatus("loading");
  try {
    const boundaries = await loadBoundaries(map);
    setStatus(boundaries.count ? "loaded" : "empty", boundaries.count);
    fitToBoundaries(map, boundaries.bbox);
    return boundaries;
  } catch (error) {
    if (error.status !== 401) setStatus("failed", error.message);
    return { names: {}, streets: [] };
  }
}

function teamPopup(map, feature, lngLat) {
  const p = feature.properties;
  const content = h("div", { class: "popup" }, h("b", {}, p.name), h("br"), p.department ?? "",
    h("br"), h("span", { class: `badge tstatus-${p.status}` }, label("teamStatus", p.status)));
  new maplibregl.Popup({ maxWidth: "260px" }).setLngLat(lngLat).setDOMContent(content).addTo(map);
}

function wireMapClicks(map, select) {
  map.on("click", (event) => {
    const layers = [...INCIDENT_LAYERS, ...TEAM_LAYERS].filter((id) => map.getLayer(id));
    const [hit] = map.queryRenderedFeatures(event.point, { layers });
    if (!hit) return;
    if (hit.layer.id === "incidents-cluster") {
      map.easeTo({ center: event.lngLat, zoom: Math.min(map.getZoom() + 2, 13) });
    } else if (hit.layer.id === "incidents-circle") {
      select(hit.properties.id);
    } else {
      teamPopup(map, hit, event.lngLat);
    }
  });
  for (const id of [...INCIDENT_LAYERS, ...TEAM_LAYERS]) {
    map.on("mouseenter", id, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
  }
}

const CASE_EVENT = /^(incident|incidents|dispatch|whistle|poll)\b/;

function liveHandler({ map, list, card, dashboard, select }) {
  const pending = new Set();
  const tiles = debounce(() => { refreshLayers(map, [...pending]); pending.clear(); }, 250);
  const lists = debounce(() => list.refresh(), 250);
  const board = debounce(() => dashboard.refresh(), 1000);
  const cardRefresh = debounce(() => card.refresh().catch(() => null), 250);
  return (event) => {
    for (const name of event.layers ?? []) pending.add(name);
    if (pending.size) tiles();
    const caseEvent = CASE_EVENT.test(event.type);
    if (caseEvent) {
      lists();
      board();
    }
    const open = card.current;
    if (open && ((caseEvent && (event.incident_id === open.id || !event.incident_id))
      || (event.type === "team.status" && open.recs))) cardRefresh();
    if (event.type === "incident.created" && event.incident_id) {
      toast(t("toast.created", event.incident_id, event.event_name ?? ""),
        { onclick: () => select(event.incident_id) });
    }
  };
}

async function start() {
  wireChrome();
  if (typeof window.maplibregl === "undefined") {
    $("#maplibre-missing").hidden = false;
    setStatus("failed", `MapLibre GL JS — ${settings.installHint}`);
    return;
  }
  const map = await startMap();
  const boundaries = await loadLabels(map);
  let list = null;
  const card = new Card({ map, names: boundaries.names, user,
    onClose: () => { markSelected(map, null); showRoute(map, null); list.highlight(null); },
    onChanged: () => list.refresh() });
  const select = async (id) => {
    const feature = await card.open(Number(id));
    markSelected(map, feature.id, feature.geometry.coordinates);
    list.highlight(feature.id);
    flyTo(map, feature.geometry.coordinates);
  };
  list = new IncidentList(map, boundaries.names, (feature) => select(feature.id));
  const dashboard = new Dashboard((street) => {
    list.form.elements.street.value = street;
    list.form.elements.follow.checked = false;
    list.refresh();
  });
  wireMapClicks(map, select);
  await list.loadOptions(boundaries.streets);
  list.refresh();
  dashboard.refresh();
  connectLive(liveHandler({ map, list, card, dashboard, select }));
  onLanguage(() => {
    renderChrome();
    list.renderOptions();
    list.render();
    dashboard.render();
    if (card.current) card.render();
  });
  window.gridopsPage = { map, list, card, dashboard, select }; // for tests and the console
}

start();
