// The supervisor page (街巷长考核): period and street-office filters, the ranking tables of
// 街巷长 and 小巷管家 with links to each person's work log, the CSV download and the map of
// covered / uncovered streets. Filters live in the query string (shareable links).

import { apiUrl, getJSON, settings, signOut } from "../command/api.js";
import { $, fill, h } from "../command/dom.js";
import { applyStatic, currentLang, onLanguage, pct, t, toggleLang } from "./i18n.js";
import { createMap, renderLegend, showStreets } from "./map.js";

const form = $("#controls");
const state = { evaluation: null, streets: null, offices: [], map: null, seq: 0 };

function beijingToday() {
  return new Intl.DateTimeFormat("en-CA", { timeZone: "Asia/Shanghai" }).format(new Date());
}

function filters() {
  const data = new FormData(form);
  return { period: data.get("period") || "month", date: data.get("date") || beijingToday(),
    street_office: data.get("street_office") || "" };
}

function setStatus(text, kind = "") {
  const el = $("#status");
  el.textContent = text;
  el.dataset.kind = kind;
}

function remember(f) {
  const url = new URL(window.location.href);
  for (const [key, value] of Object.entries(f)) {
    if (value) url.searchParams.set(key, value); else url.searchParams.delete(key);
  }
  window.history.replaceState(null, "", url);
}

// -- the street-office list ---------------------------------------------------------------

async function loadOffices(f) {
  state.offices = await getJSON("/patrol-evaluation/street-offices", { period: f.period, date: f.date });
  renderOffices(f.street_office);
}

function renderOffices(selected) {
  const select = form.elements.street_office;
  const options = [h("option", { value: "" }, t("controls.allOffices"))];
  for (const o of state.offices) {
    options.push(h("option", { value: o.code }, `${o.name ?? o.code} (${o.code})`));
  }
  fill(select, ...options);
  select.value = state.offices.some((o) => o.code === selected) ? selected : "";
}

/** No filter asked for: the first street office with patrols in the period (else the
 * first one), so the page opens on data rather than on the whole city. */
function defaultOffice() {
  const busy = state.offices.find((o) => o.patrols > 0) ?? state.offices[0];
  return busy ? busy.code : "";
}

// -- the ranking ----------------------------------------------------------------------------

function worklogHref(row) {
  const p = state.evaluation.period;
  const f = filters();
  const day = f.date > p.through ? p.through : (f.date < p.from ? p.from : f.date);
  return apiUrl(`/people/${row.person_id}/worklog`, { date: day, format: "html" });
}

function badge(row) {
  if (!row.excellent) return "";
  const period = state.evaluation.period.period;
  const key = row.role === "steward" ? "excellentSteward" : (period === "month" ? "excellent" : "excellentPeriod");
  return h("span", { class: "badge", title: t(key) }, "★ ", h("span", { class: "badge-text" }, t(key)));
}

function renderTable(table, rows) {
  const head = h("thead", {}, h("tr", {}, ...["rank", "name", "role", "streets", "compliance",
    "coverage", "found", "score", "badge"].map((c) => h("th", { class: `col-${c}` }, t(`col.${c}`)))));
  const body = h("tbody", {});
  if (!rows.length) body.append(h("tr", {}, h("td", { colspan: 9, class: "muted" }, t("empty"))));
  for (const row of rows) {
    const names = row.streets.map((s) => s.name).join(currentLang() === "zh" ? "、" : ", ");
    body.append(h("tr", { dataset: { personId: row.person_id }, class: row.excellent ? "excellent" : "" },
      h("td", { class: "n col-rank" }, row.rank ?? t("none")),
      h("td", { class: "col-name" }, h("a", { href: worklogHref(row), target: "_blank",
        rel: "noopener", title: t("worklog", row.name) }, row.name)),
      h("td", { class: "col-role" }, t(`role.${row.role}`)),
      h("td", { class: "col-streets", title: names }, `${row.streets.length} · ${names}`),
      h("td", { class: "n col-compliance" }, pct(row.compliance),
        h("small", { class: "muted" }, ` ${t("days", row.compliant_days, row.required_days)}`)),
      h("td", { class: "n col-coverage" }, pct(row.coverage)),
      h("td", { class: "n col-found" }, `${row.found} / ${row.by_others}`),
      h("td", { class: "n col-score" }, h("strong", {}, row.score === null ? t("none") : row.score.toFixed(1))),
      h("td", { class: "col-badge" }, badge(row))));
  }
  fill(table, head, body);
}

function renderSettings(config) {
  const c = config;
  const item = (label, value) => [h("dt", {}, label), h("dd", {}, value)];
  fill($("#settings"),
    ...item(t("settings.radius"), `${c.coverage.radius_m} m`),
    ...item(t("settings.threshold"), pct(c.coverage.daily_threshold)),
    ...item(t("settings.weights"), `${c.score.compliance_weight} / ${c.score.coverage_weight} / ${c.score.discovery_weight}`),
    ...item(t("settings.difficulty"), `${c.difficulty.length_weight} / ${c.difficulty.density_weight} / ${c.difficulty.mix_weight}`),
    ...item(t("settings.window"), `${c.difficulty.window_days} d`),
    ...item(t("settings.range"), `${c.difficulty.min} – ${c.difficulty.max}`),
    ...item(t("settings.excellent"), `${pct(c.excellent.top_share)} / ${c.excellent.min_score}`));
}

function renderEvaluation() {
  const e = state.evaluation;
  if (!e) return;
  const chiefs = e.rows.filter((r) => r.role !== "steward");
  const stewards = e.rows.filter((r) => r.role === "steward");
  renderTable($("#chiefs"), chiefs);
  renderTable($("#stewards"), stewards);
  renderSettings(e.settings);
  $("#period-text").textContent = t("periodText", e.period);
  setStatus(t("loaded", chiefs.length, stewards.length));
}

function renderAll() {
  renderOffices(filters().street_office);
  renderEvaluation();
  if (state.streets) renderLegend($("#legend"), state.streets);
}

// -- loading ---------------------------------------------------------------------------------

async function load({ fit = true } = {}) {
  const seq = ++state.seq;
  const f = filters();
  remember(f);
  const params = { period: f.period, date: f.date, street_office: f.street_office };
  $("#csv-link").href = apiUrl("/patrol-evaluation", { ...params, format: "csv" });
  document.body.dataset.state = "loading";
  setStatus(t("loading"));
  try {
    const [evaluation, streets] = await Promise.all([
      getJSON("/patrol-evaluation", params),
      getJSON("/patrol-evaluation/streets", params),
    ]);
    if (seq !== state.seq) return; // a newer request won
    state.evaluation = evaluation;
    state.streets = streets;
    renderEvaluation();
    renderLegend($("#legend"), streets);
    if (state.map) {
      showStreets(state.map, streets, fit);
      await new Promise((resolve) => (state.map.loaded() ? resolve() : state.map.once("idle", resolve)));
    }
    document.body.dataset.state = "ready";
  } catch (error) {
    if (seq !== state.seq) return;
    setStatus(t("failed", error.message), "error");
    document.body.dataset.state = "error";
  }
}

async function start() {
  applyStatic();
  $("#lang-toggle").addEventListener("click", toggleLang);
  $("#logout").addEventListener("click", () => signOut().catch((e) => setStatus(e.message, "error")));
  onLanguage(renderAll);
  const query = new URLSearchParams(window.location.search);
  form.elements.period.value = settings.period ?? query.get("period") ?? "month";
  form.elements.date.value = settings.date ?? beijingToday();
  const asked = settings.streetOffice ?? query.get("street_office");
  try {
    await loadOffices({ ...filters(), street_office: asked ?? "" });
    form.elements.street_office.value = asked ?? defaultOffice();
  } catch (error) {
    setStatus(t("failed", error.message), "error");
  }
  if (window.maplibregl) {
    try {
      state.map = await createMap();
    } catch (error) {
      setStatus(t("failed", error.message), "error");
    }
  }
  form.addEventListener("change", (event) => {
    if (event.target.name !== "street_office") {
      loadOffices(filters()).catch(() => {});
    }
    load();
  });
  form.addEventListener("submit", (event) => event.preventDefault());
  window.gridopsSupervise = { state, load };
  await load();
}

start();
