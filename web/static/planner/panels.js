// The page's panels, drawn from the page state: the plan list, the plan header, the live
// metrics (summary, per-grid table, issues), the diff summary, comments and the paint target.

import { $, fill, h } from "../command/dom.js";
import { currentLang, fmt, label, pct, t, when } from "./i18n.js";

export const STATUSES = ["draft", "validated", "approved", "applied", "rejected"];

export const chip = (status) => h("span", { class: `chip chip-${status}`, dataset: { status } },
  label("status", status));

/** The household band of the last report (else the page's settings). */
export function band(state) {
  const r = state.metrics?.rules ?? {};
  const min = r.households_min ?? r.band?.[0] ?? state.config.householdsMin ?? 300;
  const max = r.households_max ?? r.band?.[1] ?? state.config.householdsMax ?? 500;
  return [min, max];
}

/** Whether a grid's households are inside the band (empty grids count as outside). */
export function inBand(state, grid) {
  const row = state.metrics?.grids?.find((g) => g.id === grid.id);
  if (row && typeof row.in_band === "boolean" && row.households === grid.households) return row.in_band;
  const [min, max] = band(state);
  return grid.households >= min && grid.households <= max;
}

/** A grid's code, or "新网格 #id" (in the page's language) for a grid without one yet. */
const gridLabel = (p) => p.code ?? t("grid.newLabel", p.id);

// -- the plan list ------------------------------------------------------------------------------

export function renderPlanList(state, open) {
  const list = $("#plan-list");
  if (!state.plans.length) {
    fill(list, h("li", { class: "muted empty" }, t("plans.empty")));
    return;
  }
  fill(list, ...state.plans.map((p) => h("li", {},
    h("button", { type: "button", class: "plan-item", dataset: { planId: p.id },
      "aria-current": state.plan?.id === p.id ? "true" : null, onclick: () => open(p.id) },
    h("span", { class: "plan-item-head" }, h("strong", { class: "plan-item-name" }, p.name), chip(p.status)),
    h("span", { class: "muted plan-item-meta" },
      t("plans.meta", p.grids ?? 0, fmt(p.households ?? 0), (p.community_codes ?? []).join(", "))),
    h("span", { class: "muted plan-item-meta" }, t("plans.updated", when(p.updated_at), p.author ?? "—"))))));
}

// -- the plan header ------------------------------------------------------------------------------

export function renderHeader(state) {
  const p = state.plan;
  const status = $("#plan-status");
  if (!p) {
    $("#plan-name").textContent = t("plan.none");
    status.hidden = true;
    $("#plan-meta").textContent = "";
    return;
  }
  $("#plan-name").textContent = p.name;
  status.hidden = false;
  status.className = `chip chip-${p.status}`;
  status.dataset.status = p.status;
  status.textContent = label("status", p.status);
  const effective = p.effective_from ? t("plan.effective", when(p.effective_from)) : "";
  $("#plan-meta").textContent = [t("plan.revision", p.revision ?? 0),
    (p.community_codes ?? []).join(", "), t(`source.${p.source ?? "live"}`), effective]
    .filter(Boolean).join(" · ");
}

// -- metrics --------------------------------------------------------------------------------------

function item(key, value, { bad = false, title = null } = {}) {
  return [h("dt", {}, t(key)), h("dd", { class: bad ? "bad" : null, title, dataset: { key } }, value)];
}

export function renderSummary(state) {
  const m = state.metrics;
  const box = $("#summary");
  if (!m) {
    fill(box, ...item("metrics.pending", "—"));
    return;
  }
  const s = m.summary ?? {};
  const [min, max] = band(state);
  fill(box,
    ...item("metrics.result", m.ok ? t("metrics.ok") : t("metrics.notOk"), { bad: !m.ok }),
    ...item("metrics.errors", fmt(m.errors ?? 0), { bad: (m.errors ?? 0) > 0 }),
    ...item("metrics.warnings", fmt(m.warnings ?? 0)),
    ...item("metrics.grids", fmt(s.grids ?? 0)),
    ...item("metrics.households", fmt(s.households ?? 0)),
    ...item("metrics.band", `${fmt(min)}–${fmt(max)}`),
    ...item("metrics.buildings", fmt(s.buildings ?? 0)),
    ...item("metrics.unassigned", fmt(s.buildings_unassigned ?? 0),
      { bad: (s.buildings_unassigned ?? 0) > 0 }),
    ...item("metrics.splitBuildings", fmt(s.split_buildings ?? 0)),
    ...item("metrics.streetShare", pct(s.street_following_share)),
    ...item("metrics.meanPP", s.mean_polsby_popper == null ? "—" : s.mean_polsby_popper.toFixed(2)));
}

export function renderGridTable(state, { select, colours }) {
  const m = state.metrics;
  const rows = new Map((m?.grids ?? []).map((g) => [g.id, g]));
  const grids = (state.grids?.features ?? []).map((f) => ({ ...f.properties, empty: !f.geometry }))
    .sort((a, b) => String(gridLabel(a)).localeCompare(String(gridLabel(b))) || a.id - b.id);
  const head = h("thead", {}, h("tr", {}, ...["grid", "households", "buildings", "pp"].map(
    (c) => h("th", { class: `col-${c}`, title: t(`col.${c}Title`) }, t(`col.${c}`)))));
  const body = h("tbody", {});
  if (!grids.length) body.append(h("tr", {}, h("td", { colspan: 4, class: "muted" }, t("grid.none"))));
  for (const p of grids) {
    const row = rows.get(p.id);
    const households = row?.households ?? p.households ?? 0;
    const ok = inBand(state, { id: p.id, households });
    const pp = row?.polsby_popper;
    const low = pp != null && pp < (m?.rules?.compactness_min ?? 0.2);
    body.append(h("tr", { dataset: { gridId: p.id }, class: state.selected.has(p.id) ? "selected" : null,
      onclick: () => select(p.id) },
    h("td", { class: "col-grid" }, h("span", { class: "swatch", style: `background:${colours[p.id] ?? "#ccc"}` }),
      h("span", { class: "grid-code" }, gridLabel(p)), p.empty ? h("small", { class: "muted" }, ` ${t("grid.empty")}`) : null),
    h("td", { class: `n col-households${ok ? "" : " bad"}`, dataset: { outOfBand: String(!ok) },
      title: ok ? null : t("grid.outOfBand", ...band(state)) }, fmt(households)),
    h("td", { class: "n col-buildings" }, fmt(row?.buildings ?? p.buildings ?? 0)),
    h("td", { class: `n col-pp${low ? " warn" : ""}` }, pp == null ? "—" : pp.toFixed(2))));
  }
  fill($("#grid-table"), head, body);
}

export function renderIssues(state, show) {
  const issues = state.metrics?.issues ?? [];
  $("#issue-count").textContent = state.metrics ? `(${issues.length})` : "";
  const list = $("#issues");
  if (!state.metrics) {
    fill(list);
    return;
  }
  if (!issues.length) {
    fill(list, h("li", { class: "muted ok" }, t("issues.none")));
    return;
  }
  const zh = currentLang() === "zh";
  fill(list, ...issues.map((issue, index) => h("li", {},
    h("button", { type: "button", class: `issue issue-${issue.severity}`,
      "aria-current": state.issue === index ? "true" : null,
      dataset: { rule: issue.rule, index }, onclick: () => show(index) },
    h("span", { class: "issue-kind" }, label("severity", issue.severity), " · ", label("rule", issue.rule)),
    h("span", { class: "issue-text" }, (zh ? issue.message_zh : issue.message) ?? issue.message ?? issue.rule),
    issue.area_m2 != null ? h("small", { class: "muted" }, ` ${fmt(Math.round(issue.area_m2))} m²`) : null))));
}

// -- the diff ---------------------------------------------------------------------------------------

export function renderDiff(state) {
  const box = $("#diff-box");
  const d = state.diff;
  box.hidden = !state.diffShown || !d;
  if (box.hidden) return;
  const count = (status) => (d.grids ?? []).filter((g) => g.status === status).length;
  const retention = (d.grids ?? []).filter((g) => g.core_retention != null);
  const minRetention = retention.length ? Math.min(...retention.map((g) => g.core_retention)) : null;
  fill($("#diff-summary"),
    ...item("diff.changed", fmt(count("changed"))),
    ...item("diff.new", fmt(count("new"))),
    ...item("diff.unchanged", fmt(count("unchanged"))),
    ...item("diff.closed", fmt((d.closed ?? []).length)),
    ...item("diff.households", fmt(d.households_moved ?? 0)),
    ...item("diff.buildings", fmt(d.buildings_moved ?? 0)),
    ...item("diff.retention", pct(minRetention)),
    ...item("diff.incidents", fmt((d.open_incidents ?? []).length)),
    ...item("diff.workers", fmt((d.grid_workers ?? []).length)));
}

/** The impact lines of the apply dialog. */
export function renderImpact(element, d) {
  if (!d) {
    fill(element);
    return;
  }
  const changed = (d.grids ?? []).filter((g) => g.status !== "unchanged").length;
  fill(element,
    ...item("diff.changedOrNew", fmt(changed)),
    ...item("diff.closed", fmt((d.closed ?? []).length)),
    ...item("diff.households", fmt(d.households_moved ?? 0)),
    ...item("diff.incidents", fmt((d.open_incidents ?? []).length)),
    ...item("diff.workers", fmt((d.grid_workers ?? []).length)));
}

// -- comments ---------------------------------------------------------------------------------------

export function renderComments(state) {
  const comments = state.plan?.comments ?? [];
  const list = $("#comments");
  if (!comments.length) {
    fill(list, h("li", { class: "muted" }, t("comments.none")));
    return;
  }
  fill(list, ...[...comments].reverse().map((c) => h("li", { class: `comment comment-${c.kind ?? "comment"}` },
    h("span", { class: "muted comment-head" }, `${when(c.at)} · ${c.user ?? "—"}`),
    c.kind === "transition" ? h("span", { class: "comment-transition" },
      c.from ? `${label("status", c.from)} → ${label("status", c.to)}` : label("status", c.to)) : null,
    c.text ? h("span", { class: "comment-text" }, c.text) : null)));
}

// -- the paint target -----------------------------------------------------------------------------------

export const NEW_GRID = "new";

export function renderTarget(state) {
  const select = $("#target-grid");
  const grids = (state.grids?.features ?? []).map((f) => f.properties)
    .sort((a, b) => String(gridLabel(a)).localeCompare(String(gridLabel(b))) || a.id - b.id);
  fill(select, h("option", { value: "" }, t("tools.pickTarget")),
    ...grids.map((p) => h("option", { value: p.id }, `${gridLabel(p)} · ${t("households", fmt(p.households ?? 0))}`)),
    h("option", { value: NEW_GRID }, t("tools.newGrid")));
  select.value = state.target != null && grids.some((p) => p.id === state.target) ? String(state.target) : "";
}

export { gridLabel };

/** What the map's symbols mean. */
export function renderLegend() {
  const row = (key, swatch) => h("div", { class: "legend-row" }, h("span", { class: `legend-swatch ${swatch}` }),
    h("span", {}, t(`legend.${key}`)));
  fill($("#legend"), row("grid", "lg-grid"), row("building", "lg-building"), row("cell", "lg-cell"),
    row("street", "lg-street"), row("issue", "lg-issue"), row("diff", "lg-diff"));
}
