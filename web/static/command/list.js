// The incident list: filters (state, class, source, street, grid, time, joint, overdue),
// following the map's view when asked, newest first, paged by the API's `next` links.

import { getJSON } from "./api.js";
import { $, fill, h } from "./dom.js";
import { label, shortTime, t } from "./i18n.js";
import { viewBBox } from "./map.js";

const PAGE = 50;
const STATUSES = ["pending", "registered", "dispatched", "handling", "feedback", "verifying",
  "closed", "ledger", "void"];
const SOURCES = ["12345", "grid_worker", "street_chief", "steward", "citizen", "sensor", "other"];
const SINCE = { today: () => startOfToday(), day: () => hoursAgo(24), week: () => hoursAgo(24 * 7),
  month: () => hoursAgo(24 * 30) };

const hoursAgo = (hours) => new Date(Date.now() - hours * 3600e3).toISOString();
function startOfToday() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

const option = (value, text) => h("option", { value }, text);

function fillSelect(select, entries) {
  const keep = select.value;
  fill(select, option("", t("filters.any")), entries.map(([v, text]) => option(v, text)));
  select.value = keep;
}

function fillYesNo(select) {
  fillSelect(select, [["true", t("filters.yes")], ["false", t("filters.no")]]);
}

export class IncidentList {
  constructor(map, names, onSelect) {
    Object.assign(this, { map, names, onSelect, classes: [], streets: [], items: [], next: null });
    this.form = $("#filters");
    this.body = $("#incident-list");
    this.selectedId = null;
    this.form.addEventListener("change", () => this.refresh());
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.refresh(); });
    $("#filters-reset").addEventListener("click", () => { this.form.reset(); this.refresh(); });
    $("#list-more").addEventListener("click", () => this.more());
    map.on("moveend", () => { if (this.form.elements.follow.checked) this.refresh(); });
  }

  async loadOptions(streets) {
    this.streets = streets;
    this.classes = await getJSON("/event-classes").catch(() => []);
    this.renderOptions();
  }

  renderOptions() {
    const el = this.form.elements;
    fillSelect(el.status, STATUSES.map((s) => [s, label("status", s)]));
    fillSelect(el.source, SOURCES.map((s) => [s, label("source", s)]));
    fillSelect(el.event_code, this.classes.filter((c) => c.kind === "event")
      .map((c) => [c.code, `${c.code} ${c.name}`]));
    fillSelect(el.street, this.streets.map((s) => [s.code, s.name]));
    fillSelect(el.since, Object.keys(SINCE).map((k) => [k, t(`filters.${k}`)]));
    fillYesNo(el.joint);
    fillYesNo(el.overdue);
  }

  params() {
    const el = this.form.elements;
    const params = { limit: PAGE, status: el.status.value, event_code: el.event_code.value,
      source: el.source.value, street: el.street.value, grid: el.grid.value.trim(),
      joint: el.joint.value, overdue: el.overdue.value };
    if (el.since.value) params.since = SINCE[el.since.value]();
    if (el.follow.checked) params.bbox = viewBBox(this.map);
    return params;
  }

  async refresh() {
    this.controller?.abort();
    this.controller = new AbortController();
    try {
      const body = await getJSON("/incidents", this.params(), this.controller.signal);
      this.items = body.features;
      this.next = (body.links || []).find((l) => l.rel === "next")?.href ?? null;
      this.render();
    } catch (error) {
      if (error.name !== "AbortError" && error.status !== 401) this.showError(error.message);
    }
  }

  async more() {
    if (!this.next) return;
    const body = await getJSON(this.next);
    this.items.push(...body.features);
    this.next = (body.links || []).find((l) => l.rel === "next")?.href ?? null;
    this.render();
  }

  showError(message) {
    fill(this.body, h("li", { class: "list-error" }, message));
  }

  render() {
    fill(this.body, this.items.length ? this.items.map((f) => this.row(f))
      : h("li", { class: "list-empty" }, t("list.none")));
    $("#list-count").textContent = t("list.count", this.items.length, Boolean(this.next));
    $("#list-more").hidden = !this.next;
  }

  row(feature) {
    const p = feature.properties;
    const flags = [p.overdue && h("span", { class: "flag flag-overdue" }, t("filters.overdue")),
      p.is_joint && h("span", { class: "flag flag-joint" }, t("filters.joint")),
      p.supervised && h("span", { class: "flag flag-supervised" }, t("card.supervised"))];
    const place = this.names[p.street_code] ?? this.names[p.district_code] ?? p.district_code;
    return h("li", { class: `row${p.id === this.selectedId ? " selected" : ""}`,
      dataset: { incidentId: p.id } },
    h("button", { type: "button", onclick: () => this.onSelect(feature) },
      h("span", { class: "row-head" }, h("b", {}, `#${p.id}`), ` ${p.event_name ?? p.event_code}`),
      h("span", { class: `badge status-${p.status}` }, label("status", p.status)), flags,
      h("span", { class: "row-meta" }, `${place ?? ""} · ${label("source", p.source)} · `
        + shortTime(p.reported_at))));
  }

  highlight(id) {
    this.selectedId = id;
    for (const li of this.body.querySelectorAll("li.row")) {
      li.classList.toggle("selected", Number(li.dataset.incidentId) === id);
    }
  }
}
