// The dashboard strip (GET /api/v1/dashboard): today's counts, the open backlog, 三率 and
// the streets with the most open cases (a click filters the list by that street).

import { getJSON } from "./api.js";
import { $, fill, h } from "./dom.js";
import { t } from "./i18n.js";

const COUNTS = [["today", "reported"], ["today", "dispatched"], ["today", "closed"],
  ["open", "open"], ["open", "pending"], ["open", "overdue"], ["open", "joint"]];
const RATES = ["response_rate", "resolution_rate", "satisfaction_rate"];

const percent = (rate) => (rate == null ? "—" : `${Math.round(rate * 100)}%`);

function stat(key, value, extra = {}) {
  return h("div", { class: `stat stat-${key}`, dataset: { key }, ...extra },
    h("span", { class: "stat-value" }, value), h("span", { class: "stat-label" }, t(`dash.${key}`)));
}

export class Dashboard {
  constructor(onStreet) {
    this.onStreet = onStreet;
    this.data = null;
  }

  async refresh() {
    try {
      this.data = await getJSON("/dashboard");
      this.render();
    } catch (error) {
      if (error.status === 403) $("#dashboard").hidden = true;
    }
  }

  render() {
    const d = this.data;
    if (!d) return;
    const note = t("dash.ratesNote", d.rates.days, d.rates.followups);
    fill($("#dashboard"), COUNTS.map(([group, key]) => stat(key, d[group][key])),
      RATES.map((key) => stat(key, percent(d.rates[key]), { title: note })));
    fill($("#top-streets"), h("span", { class: "muted" }, `${t("dash.topStreets")}: `),
      d.top_streets.map((s) => h("button", { type: "button", class: "chip",
        onclick: () => this.onStreet(s.code) }, `${s.name ?? s.code} ${s.open}`,
      s.overdue ? h("span", { class: "chip-overdue" }, ` (${s.overdue})`) : "")));
  }
}
