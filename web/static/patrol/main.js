// The patrol page (日巡) of a 街巷长 / 小巷管家: my streets on a map with today's status,
// start a patrol, the GPS track recorded and uploaded in batches, the checklist, problem
// reports with a photo, end and summary. Offline-first: every write goes into the IndexedDB
// queue (queue.js) first and the sync loop (sync.js) sends it when the phone is online.

import { ApiError, call, config, describeError, getJSON, NetworkError } from "./api.js";
import { $, h, toast } from "./dom.js";
import { applyStatic, currentLang, fmtLength, fmtPercent, onLanguage, t, toggleLang }
  from "./i18n.js";
import { due, fixTime, lineLength, Watch } from "./geo.js";
import { PatrolMap } from "./map.js";
import { Checklist } from "./checklist.js";
import { ReportForm } from "./report.js";
import { newKey, Queue } from "./queue.js";
import { Sync } from "./sync.js";

const SHELL_CACHE = "gridops-patrol-shell";

const state = {
  me: null, // GET /patrol/me
  meFresh: false, // from the server now (not the offline copy)
  checklist: [],
  classes: [],
  selected: null, // street_id chosen in the list or on the map
  patrol: null, // the local record of the patrol on screen (active, or ended: summary)
  view: "streets",
  tab: "checklist",
  geo: "waiting",
  geoMessage: "",
  accuracy: null,
  notice: null, // {key, args}
};

let queue = null;
let sync = null;
let map = null;
let checklist = null;
let report = null;
let watch = null;
let timer = null;

const streetFeature = (id) => state.me?.streets?.features?.find(
  (f) => f.properties.street_id === id) ?? null;

// -- chrome: language, sign-out, sync indicator ---------------------------------------

function setNotice(key, ...args) {
  state.notice = key ? { key, args } : null;
  const element = $("#notice");
  if (element) element.textContent = key ? t(key, ...args) : "";
}

async function signOut() {
  const pending = queue ? await queue.count() : 0;
  if (pending && !window.confirm(t("signOutPending", pending))) return;
  try {
    const answer = await call("POST", "/auth/logout");
    if (!answer.ok) throw new ApiError(describeError(answer.body, answer.status), answer.status);
  } catch (error) {
    if (error.status !== 401) {
      toast(t("signOutFailed", error.message), "error");
      return;
    }
  }
  if (window.caches) await caches.delete(SHELL_CACHE).catch(() => null);
  window.location.assign(config.loginPath);
}

async function renderSync() {
  if (!queue) return;
  const [count, failures] = await Promise.all([queue.count(), queue.failures()]);
  const online = navigator.onLine;
  const button = $("#sync");
  button.dataset.count = String(count);
  button.dataset.online = String(online);
  button.dataset.failed = String(failures.length);
  button.dataset.sending = String(Boolean(sync?.sending));
  const parts = [];
  if (count) parts.push(t("sync.queued", count));
  if (failures.length) parts.push(t("sync.failed", failures.length));
  if (!parts.length) parts.push(t("sync.synced"));
  $("#sync-text").textContent = parts.join(" · ");
  $("#sync-state").textContent = online ? t("sync.online") : t("sync.offline");
  button.setAttribute("aria-label", t("sync.label", count, online));
  renderFailures(failures);
}

/** What a queued item is, in words: its kind and, for a tick or a report, which. */
function describeItem(item) {
  const kind = t(`kinds.${item.kind}`);
  if (item.kind === "check") {
    const entry = state.checklist.find((i) => i.code === item.code);
    return `${kind} ${entry ? (currentLang() === "zh" ? entry.zh : entry.en) : item.code}`;
  }
  if (item.kind === "report") return `${kind} ${item.body?.event_code ?? ""}`;
  return kind;
}

function renderFailures(failures) {
  const box = $("#failures");
  if (!failures.length) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const groups = new Map();
  for (const item of failures) {
    const id = `${item.kind}|${item.message}`;
    if (!groups.has(id)) groups.set(id, []);
    groups.get(id).push(item);
  }
  box.hidden = false;
  box.replaceChildren(
    h("p", { class: "failures-title" }, t("failures.title", failures.length)),
    h("ul", {}, [...groups.values()].map((items) => h("li", { class: "failure",
      dataset: { kind: items[0].kind, status: String(items[0].status) } },
    h("span", {}, `${describeItem(items[0])}${items.length > 1 ? ` ×${items.length}` : ""}`
      + (items[0].status ? ` (HTTP ${items[0].status})` : ""), ": ", items[0].message),
    h("span", { class: "failure-actions" },
      h("button", { type: "button", class: "small", onclick: async () => {
        for (const item of items.sort((a, b) => a.seq - b.seq)) await queue.retry(item.seq);
        sync.kick();
      } }, t("failures.retry")),
      h("button", { type: "button", class: "small", onclick: async () => {
        if (!window.confirm(t("failures.dropConfirm"))) return;
        for (const item of items) await queue.drop(item.seq);
      } }, t("failures.drop")))))));
}

// -- my streets -------------------------------------------------------------------------

function streetStatus(props) {
  const today = props.today ?? {};
  const threshold = state.me?.coverage_threshold ?? 0.8;
  if ((today.coverage ?? 0) >= threshold) return "done"; // 日巡 done: coverage ≥ threshold
  return today.patrolled || (today.coverage ?? 0) > 0 ? "partly" : "none";
}

function roleLabel(role) {
  const label = t(`roles.${role}`);
  return label === `roles.${role}` ? role : label;
}

function streetCollection() {
  const features = (state.me?.streets?.features ?? []).map((f) => ({ ...f,
    properties: { ...f.properties, status: streetStatus(f.properties) } }));
  return { type: "FeatureCollection", features };
}

function renderStreets() {
  const { features } = streetCollection();
  map.setStreets({ type: "FeatureCollection", features });
  $("#streets-date").textContent = state.me?.date ?? "";
  const list = $("#street-list");
  if (!state.me) {
    list.replaceChildren();
    return;
  }
  if (!features.length) {
    list.replaceChildren(h("li", { class: "muted" }, t("streets.none")));
  } else {
    list.replaceChildren(...features.map((f) => {
      const p = f.properties;
      const status = p.status;
      const label = { done: "streets.done", partly: "streets.partly", none: "streets.notYet" }[status];
      return h("li", {}, h("button", { type: "button", class: "street",
        "aria-pressed": String(state.selected === p.street_id),
        dataset: { streetId: String(p.street_id), status }, onclick: () => selectStreet(p.street_id) },
      h("span", { class: "street-name" }, p.name),
      h("span", { class: "street-meta" }, [roleLabel(p.role),
        fmtLength(p.length_m), t("streets.todayCoverage", fmtPercent(p.today?.coverage ?? null)),
      ].join(" · ")),
      h("span", { class: `chip chip-${status}` }, t(label))));
    }));
  }
  const chosen = streetFeature(state.selected);
  $("#street-start").hidden = !chosen;
  if (chosen) $("#street-chosen").textContent = t("streets.chosen", chosen.properties.name);
}

function selectStreet(id) {
  state.selected = id;
  const feature = streetFeature(id);
  map.setSelected(feature);
  if (feature) map.fit(feature);
  renderStreets();
  $("#street-start").scrollIntoView({ block: "nearest" });
}

// -- the patrol ---------------------------------------------------------------------------

async function startPatrol() {
  const feature = streetFeature(state.selected);
  if (!feature || state.patrol?.status === "active") return;
  const key = newKey();
  const started = new Date();
  const p = feature.properties;
  const record = { key, userId: config.userId, streetId: p.street_id, streetName: p.name,
    streetLengthM: p.length_m, startedAt: started.toISOString(), startedMs: started.getTime(),
    status: "active", endedAt: null, recorded: 0, lastFixAt: null, track: [], checks: {},
    reports: [], coverage: null, serverId: null, serverSummary: null };
  await queue.add([{ kind: "start", key, patrolKey: key,
    body: { street_id: p.street_id, started_at: record.startedAt } }], record);
  state.patrol = record;
  showPatrol();
  toast(t("patrol.started"), "ok");
  sync.kick();
}

function showPatrol() {
  const patrol = state.patrol;
  state.view = "patrol";
  const feature = streetFeature(patrol.streetId);
  map.setSelected(feature ?? null);
  if (feature) map.fit(feature);
  map.setTrack(patrol.track);
  renderView();
  startWatching();
  clearInterval(timer);
  timer = setInterval(renderTimer, 1000);
}

function startWatching() {
  if (!watch.supported) {
    state.geo = "unsupported";
    renderGeo();
    return;
  }
  watch.start();
}

function onPosition(position) {
  const lonLat = [position.coords.longitude, position.coords.latitude];
  state.geo = "ok";
  state.accuracy = position.coords.accuracy;
  map.setPosition(lonLat);
  const patrol = state.patrol;
  if (patrol?.status === "active") {
    map.follow(lonLat);
    const at = fixTime(position);
    if (due(at, patrol.lastFixAt, state.me?.fix_interval_s ?? 5)) recordFix(patrol, at, lonLat,
      position.coords.accuracy);
  }
  report?.latest(lonLat);
  renderGeo();
}

function onGeoError(error) {
  state.geo = error.code === 1 ? "denied" : "error";
  state.geoMessage = error.message;
  renderGeo();
}

function recordFix(patrol, at, lonLat, accuracy) {
  // the in-memory record changes at once (positions may arrive before IndexedDB answers);
  // the queue item and the record are stored together in one transaction
  patrol.lastFixAt = at;
  patrol.recorded += 1;
  patrol.track.push(lonLat);
  const fix = { at: new Date(at).toISOString(), lon: lonLat[0], lat: lonLat[1] };
  if (Number.isFinite(accuracy)) fix.accuracy_m = Math.round(accuracy * 10) / 10;
  queue.add([{ kind: "fix", key: newKey(), patrolKey: patrol.key, fix, queuedAt: Date.now() }],
    structuredClone(patrol)).then(() => sync.kick()).catch((e) => toast(e.message, "error"));
  map.setTrack(patrol.track);
  renderStats();
}

async function tick(code, ok, note) {
  const patrol = state.patrol;
  if (!patrol) return;
  const checkedAt = new Date().toISOString();
  const body = { ok, checked_at: checkedAt };
  if (note) body.note = note;
  patrol.checks[code] = { ok, note: note || null, checked_at: checkedAt };
  checklist.render(state.checklist, patrol.checks);
  await queue.addCheck({ kind: "check", key: newKey(), patrolKey: patrol.key, code, body },
    structuredClone(patrol));
  sync.kick();
}

async function submitReport(r) {
  const patrol = state.patrol;
  if (!patrol) throw new Error("no patrol");
  const key = newKey();
  const body = { event_code: r.event_code, event_kind: r.event_kind, lon: r.lon, lat: r.lat,
    description: r.description, reported_at: new Date().toISOString() };
  const items = [{ kind: "report", key, patrolKey: patrol.key, body }];
  if (r.photo) {
    // a copy of the bytes (not a handle on the camera's file) kept as a Blob in IndexedDB
    const blob = new Blob([await r.photo.arrayBuffer()], { type: r.photo.type || "image/jpeg" });
    items.push({ kind: "photo", key: newKey(), patrolKey: patrol.key, reportKey: key, blob,
      filename: r.photo.name || "photo.jpg" });
  }
  patrol.reports.push({ key, event_code: r.event_code, event_name: r.event_name,
    description: r.description, lon: r.lon, lat: r.lat, photo: Boolean(r.photo),
    incidentId: null });
  await queue.add(items, structuredClone(patrol));
  report.renderList(patrol.reports);
  toast(t("report.queued"), "ok");
  sync.kick();
}

async function endPatrol() {
  const patrol = state.patrol;
  if (!patrol || patrol.status !== "active") return;
  const open = state.checklist.filter((i) => !patrol.checks[i.code]).length;
  if (!window.confirm(t("patrol.endConfirm", open))) return;
  watch.stop();
  clearInterval(timer);
  const ended = new Date();
  patrol.status = "ended";
  patrol.endedAt = ended.toISOString();
  await queue.add([{ kind: "end", key: newKey(), patrolKey: patrol.key,
    body: { ended_at: patrol.endedAt } }], structuredClone(patrol));
  report.close();
  state.view = "summary";
  renderView();
  sync.flush();
}

/** Change a patrol's local record (the one on screen, or one stored) after a sync. */
async function updatePatrol(key, change) {
  const patrol = state.patrol?.key === key ? state.patrol : await queue.patrol(key);
  if (!patrol) return;
  change(patrol);
  await queue.putPatrol(structuredClone(patrol));
  if (state.patrol?.key === key) renderView();
}

function onSent(kind, items, body) {
  const key = items[0].patrolKey;
  if (kind === "start") {
    updatePatrol(key, (p) => { p.serverId = body?.properties?.id ?? body?.id; });
  } else if (kind === "fix") {
    updatePatrol(key, (p) => { p.coverage = body?.coverage ?? p.coverage; });
  } else if (kind === "report") {
    const id = body?.incident?.properties?.id ?? body?.incident?.id;
    updatePatrol(key, (p) => {
      const r = p.reports.find((x) => x.key === items[0].key);
      if (r) r.incidentId = id;
    });
    toast(t("report.sent", id), "ok");
  } else if (kind === "end") {
    updatePatrol(key, (p) => {
      p.serverSummary = body;
      p.coverage = body?.properties?.coverage ?? p.coverage;
    });
    refreshMe();
  }
}

// -- rendering --------------------------------------------------------------------------

function renderTimer() {
  const patrol = state.patrol;
  if (!patrol) return;
  const end = patrol.endedAt ? Date.parse(patrol.endedAt) : Date.now();
  const s = Math.max(0, Math.floor((end - patrol.startedMs) / 1000));
  const hh = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(hh ? 2 : 1, "0");
  const ss = String(s % 60).padStart(2, "0");
  $("#timer").textContent = hh ? `${hh}:${mm}:${ss}` : `${mm}:${ss}`;
}

function renderStats() {
  const patrol = state.patrol;
  if (!patrol) return;
  $("#stat-fixes").textContent = String(patrol.recorded);
  $("#stat-distance").textContent = fmtLength(lineLength(patrol.track));
  $("#stat-coverage").textContent = fmtPercent(patrol.coverage);
  $("#stat-accuracy").textContent = state.accuracy === null ? "—"
    : `±${Math.round(state.accuracy)} m`;
}

/** The GPS state: the accuracy cell while it works, a red line when it does not. */
function renderGeo() {
  const element = $("#geo-state");
  element.dataset.state = state.geo;
  element.textContent = {
    waiting: "", ok: "", denied: t("patrol.geoDenied"),
    unsupported: t("patrol.geoUnsupported"), error: t("patrol.geoError", state.geoMessage),
  }[state.geo];
  renderStats();
  if (state.geo === "waiting") $("#stat-accuracy").textContent = t("patrol.geoWaiting");
}

function renderTabs() {
  for (const name of ["checklist", "report"]) {
    $(`#tab-${name}`).setAttribute("aria-selected", String(state.tab === name));
    $(`#${name}`).hidden = state.tab !== name;
  }
  if (state.view === "patrol" && state.tab === "report") {
    report.open(state.patrol?.track.at(-1) ?? null);
  } else {
    report?.close();
  }
}

function renderSummary() {
  const patrol = state.patrol;
  if (!patrol) return;
  const server = patrol.serverSummary?.properties;
  const total = state.checklist.length;
  let rows;
  if (server) {
    const checks = server.checks ?? [];
    rows = [
      ["duration", t("duration", server.duration_s ?? 0)],
      ["distance", fmtLength(server.distance_m)],
      ["coverage", fmtPercent(server.coverage)
        + t("summary.threshold", fmtPercent(state.me?.coverage_threshold ?? 0.8))],
      ["checks", t("summary.checksValue", checks.length, checks.filter((c) => !c.ok).length,
        Math.max(total, checks.length))],
      ["reports", String((server.reports ?? []).length)],
      ["fixes", t("summary.fixesValue", server.fixes?.total ?? 0, server.fixes?.kept ?? 0)],
    ];
  } else {
    const checks = Object.values(patrol.checks);
    const end = patrol.endedAt ? Date.parse(patrol.endedAt) : Date.now();
    rows = [
      ["duration", t("duration", (end - patrol.startedMs) / 1000)],
      ["distance", fmtLength(lineLength(patrol.track))],
      ["coverage", fmtPercent(patrol.coverage)
        + t("summary.threshold", fmtPercent(state.me?.coverage_threshold ?? 0.8))],
      ["checks", t("summary.checksValue", checks.length, checks.filter((c) => !c.ok).length,
        total)],
      ["reports", String(patrol.reports.length)],
      ["fixes", String(patrol.recorded)],
    ];
  }
  $("#summary-street").textContent = patrol.streetName;
  const summary = $("#view-summary");
  summary.dataset.final = String(Boolean(server));
  $("#summary-state").textContent = server ? t("summary.final") : t("summary.pending");
  $("#summary").replaceChildren(...rows.map(([key, value]) => h("div",
    { class: "summary-row", dataset: { key } }, h("dt", {}, t(`summary.${key}`)),
    h("dd", {}, value))));
}

function renderView() {
  const panel = $("#panel");
  if (panel.dataset.view !== state.view) panel.scrollTop = 0; // a new screen starts at its top
  panel.dataset.view = state.view;
  map.setStreets(streetCollection());
  $("#view-streets").hidden = state.view !== "streets";
  $("#view-patrol").hidden = state.view !== "patrol";
  $("#view-summary").hidden = state.view !== "summary";
  document.body.dataset.view = state.view;
  if (state.view === "streets") renderStreets();
  if (state.view === "patrol" && state.patrol) {
    $("#patrol-street").textContent = state.patrol.streetName
      + (state.patrol.serverId ? "" : t("patrol.notSynced"));
    checklist.render(state.checklist, state.patrol.checks);
    report.renderList(state.patrol.reports);
    renderTimer();
    renderGeo();
  }
  if (state.view === "summary") renderSummary();
  renderTabs();
}

function renderAll() {
  applyStatic();
  if (state.notice) setNotice(state.notice.key, ...state.notice.args);
  report.setClasses(state.classes);
  report.renderPosition();
  renderView();
  renderSync();
}

// -- loading ----------------------------------------------------------------------------

/** A fresh copy of `path` (kept for offline use), or the kept copy when offline. */
async function cached(name, path) {
  try {
    const value = await getJSON(path);
    await queue.setMeta(name, value);
    return { value, fresh: true };
  } catch (error) {
    if (error instanceof NetworkError || error.status >= 500) {
      return { value: await queue.meta(name), fresh: false, error };
    }
    throw error;
  }
}

async function refreshMe() {
  try {
    const me = await cached("me", "/patrol/me");
    if (me.value) state.me = me.value;
    state.meFresh = me.fresh;
    setNotice(me.fresh ? null : "streets.offlineCache");
    if (state.view === "streets") renderStreets();
    else map.setStreets(streetCollection());
  } catch (error) {
    if (error.status !== 401) setNotice("errors.loadFailed", error.message);
  }
}

/** The patrol from the server (`GET /patrols/{id}`) as a local record. */
async function adopt(active) {
  const feature = await getJSON(`/patrols/${active.id}`);
  const p = feature.properties;
  const coords = feature.geometry?.coordinates ?? [];
  const checks = {};
  for (const c of p.checks ?? []) checks[c.code] = { ok: c.ok, note: c.note, checked_at: c.checked_at };
  const record = { key: active.idempotency_key, userId: config.userId, streetId: p.street.id,
    streetName: p.street.name, streetLengthM: p.street.length_m, startedAt: p.started_at,
    startedMs: Date.parse(p.started_at), status: "active", endedAt: null,
    recorded: p.fixes?.total ?? 0, lastFixAt: null, track: coords, checks,
    reports: (p.reports ?? []).map((r) => ({ key: `server-${r.incident_id}`,
      event_code: r.event_code, event_name: "", description: r.description,
      incidentId: r.incident_id, photo: false })),
    coverage: p.coverage, serverId: p.id, serverSummary: null };
  await queue.setId(record.key, p.id, "start");
  await queue.putPatrol(record);
  return record;
}

/** After a reload: the local active patrol, or the server's (started on another device). */
async function resume() {
  const locals = (await queue.patrols()).filter((p) => p.status === "active")
    .sort((a, b) => b.startedMs - a.startedMs);
  let patrol = locals[0] ?? null;
  const active = state.meFresh ? state.me?.active_patrol : undefined;
  if (patrol && active === null) {
    // the server knows no active patrol: if ours did start there and no end is queued,
    // it was ended elsewhere
    const id = await queue.id(patrol.key);
    const queued = (await queue.all()).some((i) => i.patrolKey === patrol.key);
    if (id?.id && !queued) {
      patrol.status = "ended";
      patrol.endedAt = patrol.endedAt ?? new Date().toISOString();
      patrol.serverSummary = await getJSON(`/patrols/${id.id}`).catch(() => null);
      await queue.putPatrol(patrol);
      patrol = null;
    }
  } else if (!patrol && active) {
    patrol = await adopt(active);
  }
  if (!patrol) return false;
  state.patrol = patrol;
  state.selected = patrol.streetId;
  showPatrol();
  toast(t("patrol.resumed"), "info");
  return true;
}

function registerServiceWorker() {
  if (!("serviceWorker" in navigator) || !config.serviceWorker) return;
  navigator.serviceWorker.register(config.serviceWorker, { scope: "/patrol" })
    .catch((error) => console.warn("service worker", error.message));
}

function wireChrome() {
  applyStatic();
  $("#lang-toggle").addEventListener("click", toggleLang);
  $("#logout").addEventListener("click", signOut);
}

function wire() {
  $("#start").addEventListener("click", startPatrol);
  $("#end").addEventListener("click", endPatrol);
  $("#summary-back").addEventListener("click", () => {
    state.view = "streets";
    state.patrol = null;
    map.setTrack([]);
    map.setPosition(null);
    renderView();
    map.fit(state.me?.streets);
    refreshMe();
  });
  for (const name of ["checklist", "report"]) {
    $(`#tab-${name}`).addEventListener("click", () => {
      state.tab = name;
      renderTabs();
    });
  }
  $("#sync").addEventListener("click", () => sync.flush());
  map.onStreetTap((id) => {
    if (state.view === "streets") selectStreet(id);
  });
  onLanguage(() => renderAll());
}

class NoMap { // MapLibre missing: the lists still work
  setStreets() {} setSelected() {} setTrack() {} setPosition() {} follow() {} fit() {}
  showMarker() {} moveMarker() {} hideMarker() {} onStreetTap() {} onMapTap() {} resize() {}
}

async function main() {
  wireChrome();
  if (!config.allowed) return;
  queue = await Queue.open(config.userId);
  sync = new Sync(queue, { onSent, onState: renderSync, lockName: `gridops-patrol-sync-u${config.userId}`,
    dependencyMessage: (m) => t("errors.dependsOn", m) });
  queue.onChange(renderSync);
  window.addEventListener("online", renderSync);
  window.addEventListener("offline", renderSync);
  map = window.maplibregl ? await PatrolMap.create("map") : new NoMap();
  checklist = new Checklist($("#checklist"), tick);
  report = new ReportForm({ map, onSubmit: submitReport, maxBytes: config.photoMaxBytes });
  watch = new Watch(onPosition, onGeoError);
  wire();
  window.gridopsPatrol = { state, queue, sync, // for tests and the console
    recorded: () => state.patrol?.recorded ?? 0,
    lastFix: () => state.patrol?.track.at(-1) ?? null,
    queueCount: () => queue.count() };
  renderSync();
  registerServiceWorker();

  try {
    const [me, items, classes] = await Promise.all([cached("me", "/patrol/me"),
      cached("checklist", "/patrol/checklist"), cached("classes", "/event-classes")]);
    state.me = me.value ?? null;
    state.meFresh = me.fresh;
    state.checklist = items.value ?? [];
    state.classes = classes.value ?? [];
    if (!state.me) setNotice("errors.noData");
    else if (!me.fresh) setNotice("streets.offlineCache");
  } catch (error) {
    if (error.status !== 401) setNotice("errors.loadFailed", error.message);
  }
  if (state.me) {
    sync.uploadBatch = state.me.upload_batch ?? sync.uploadBatch;
    if (state.me.person?.name) $(".bar .who").textContent = state.me.person.name;
  }
  report.setClasses(state.classes);
  const resumed = await resume().catch((error) => {
    console.error("resume", error);
    return false;
  });
  if (!resumed) {
    renderView();
    map.fit(state.me?.streets);
  }
  await queue.prune();
  sync.kick();
  document.body.dataset.ready = "true";
}

main().catch((error) => {
  console.error(error);
  setNotice("errors.loadFailed", error.message ?? String(error));
});

