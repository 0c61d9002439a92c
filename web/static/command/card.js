// The incident card: loads everything about one case and lays out its sections
// (summary, placement, deadlines, actions, recommended teams, whistle, teams sent, timeline).

import { getJSON } from "./api.js";
import { $, fill, h } from "./dom.js";
import { label, shortTime, t } from "./i18n.js";
import { deadlineSection } from "./countdown.js";
import { actionsSection, dispatchesSection } from "./actions.js";
import { recommendSection, whistleSection } from "./recommend.js";

const quiet = (promise) => promise.catch((error) => (error.status === 401 ? Promise.reject(error) : null));

/** Everything the card shows about incident `id` (sections the reader may not see: null). */
async function loadCase(id) {
  const feature = await getJSON(`/incidents/${id}`);
  const [lon, lat] = feature.geometry.coordinates;
  const [placement, transitions, timeline, recs, dispatches, extensions, whistles] = await Promise.all([
    quiet(getJSON("/locate", { lon, lat, at: feature.properties.reported_at })),
    quiet(getJSON(`/incidents/${id}/transitions`)),
    quiet(getJSON(`/incidents/${id}/events`)),
    quiet(getJSON(`/incidents/${id}/recommendations`, { limit: 5 })),
    quiet(getJSON(`/incidents/${id}/dispatches`)),
    quiet(getJSON(`/incidents/${id}/extensions`)),
    quiet(getJSON(`/incidents/${id}/whistles`)),
  ]);
  return { id, feature, placement, transitions, timeline: timeline?.events ?? [], recs,
    dispatches: dispatches ?? [], extensions: extensions ?? [], whistles: whistles ?? [] };
}

const section = (key, ...children) => h("section", { class: `card-section section-${key}` },
  h("h3", {}, t(`card.${key}`)), ...children);

const rows = (pairs) => h("table", { class: "kv" }, pairs.filter(([, v]) => v != null && v !== "")
  .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v))));

const pct = (share) => (share == null ? "" : ` ${Math.round(share * 100)}%`);
const named = (x) => (x ? `${x.name ?? ""} ${x.code ?? ""}`.trim() : null);

function summarySection(c) {
  const p = c.feature.properties;
  return h("section", { class: "card-section section-summary" }, rows([
    [t("card.description"), p.description], [t("card.address"), p.address],
    [t("filters.source"), label("source", p.source)], [t("card.reported"), shortTime(p.reported_at)],
    [t("card.reporter"), p.reporter_name && `${p.reporter_name} ${p.reporter_phone ?? ""}`],
  ]));
}

function buildingText(building, names) {
  if (!building) return null;
  const shares = (building.shares || []).filter((s) => s.level === "district" || s.level === "street")
    .map((s) => `${names[s.code] ?? s.code}${pct(s.share)}`).join(" · ");
  return `${building.name ?? building.address ?? `#${building.id}`}${shares ? ` (${shares})` : ""}`;
}

function chiefNode(segment) {
  const chief = segment?.chief;
  if (!chief) return null;
  return h("span", {}, `${chief.name} `, chief.phone && h("a", { href: `tel:${chief.phone}`,
    class: "phone" }, chief.phone));
}

function jointNode(c, names) {
  const p = c.feature.properties;
  const sides = p.joint?.jurisdictions ?? c.placement?.joint?.jurisdictions ?? [];
  if (!p.is_joint || !sides.length) return t("card.notJoint");
  return h("ul", { class: "joint-sides" }, sides.map((j) =>
    h("li", {}, `${j.name ?? names[j.code] ?? j.code}${pct(j.share)}`)));
}

function placementSection(c, names) {
  const pl = c.placement ?? {};
  const p = c.feature.properties;
  return section("placement", rows([
    [t("card.district"), named(pl.district) ?? p.district_code],
    [t("card.street"), named(pl.street) ?? p.street_code],
    [t("card.community"), named(pl.community) ?? p.community_code],
    [t("card.grid"), named(pl.grid) ?? p.grid_code],
    [t("card.building"), buildingText(pl.building, names)],
    [t("card.segment"), pl.street_segment?.name],
    [t("card.chief"), chiefNode(pl.street_segment)],
    [t("card.joint"), jointNode(c, names)],
  ]));
}

function timelineSection(c) {
  const items = c.timeline.map((e) => h("li", {},
    h("time", {}, shortTime(e.at)), " ",
    h("b", {}, e.kind === "dispatch" ? `${e.team_name} ${label("dispatchStatus", e.to_status)}`
      : (e.to_status && e.from_status !== e.to_status ? label("status", e.to_status) : e.action)),
    e.actor ? ` · ${e.actor}` : "", e.reason ? ` · ${e.reason}` : ""));
  return section("timeline", h("ol", { class: "timeline", reversed: true }, items.reverse()));
}

export class Card {
  constructor({ map, names, user, onClose, onChanged }) {
    Object.assign(this, { map, names, user, onClose, onChanged, current: null });
    this.root = $("#card");
    this.body = $("#card-body");
    $("#card-close").addEventListener("click", () => this.close());
  }

  async open(id) {
    this.current = await loadCase(id);
    this.render();
    this.root.hidden = false;
    document.body.classList.add("card-open");
    return this.current.feature;
  }

  async refresh() {
    if (!this.current) return;
    const scroll = this.body.scrollTop;
    this.current = await loadCase(this.current.id);
    this.render();
    this.body.scrollTop = scroll;
  }

  close() {
    this.current = null;
    this.root.hidden = true;
    document.body.classList.remove("card-open");
    this.onClose();
  }

  render() {
    const c = this.current;
    const p = c.feature.properties;
    fill($("#card-title"), h("b", {}, `#${p.id} `), p.event_name ?? p.event_code,
      h("span", { class: `badge status-${p.status}`, id: "card-status" }, label("status", p.status)),
      p.overdue && h("span", { class: "flag flag-overdue" }, t("filters.overdue")));
    const ctx = { card: this, map: this.map, user: this.user, names: this.names };
    fill(this.body, summarySection(c), placementSection(c, this.names), deadlineSection(c),
      actionsSection(c, ctx), recommendSection(c, ctx), whistleSection(c, ctx),
      dispatchesSection(c, ctx), timelineSection(c));
  }
}
