// Deadlines with live countdowns: every element with data-due (an ISO instant) shows the
// time left (or overdue by) and is re-drawn each second.

import { h } from "./dom.js";
import { duration, label, shortTime, t } from "./i18n.js";

const STAGES = ["accept", "dispatch", "handle", "verify"];

function tick() {
  const now = Date.now();
  for (const el of document.querySelectorAll("[data-due]")) {
    const left = (new Date(el.dataset.due).getTime() - now) / 1000;
    el.textContent = left >= 0 ? `${t("card.left")} ${duration(left)}`
      : `${t("card.overdueBy")} ${duration(left)}`;
    el.classList.toggle("overdue", left < 0);
  }
}

setInterval(tick, 1000);

function currentStage(deadline) {
  if (!deadline?.due_at) return h("p", { class: "muted" }, t("card.noDeadline"));
  const near = deadline.near_overdue && !deadline.overdue;
  return h("p", { class: "countdown-line" },
    h("b", {}, label("stage", deadline.stage)), ` ${t("card.due")} ${shortTime(deadline.due_at)} `,
    h("span", { class: "countdown", "data-due": deadline.due_at }),
    near && h("span", { class: "flag flag-near" }, t("card.nearOverdue")));
}

/** The current stage's deadline with a live countdown, and every stage's due time. */
export function deadlineSection(c) {
  const deadline = c.transitions?.deadline;
  const all = c.feature.properties.deadlines ?? {};
  const list = h("ul", { class: "stages" }, STAGES.filter((s) => all[s]).map((s) =>
    h("li", { class: s === deadline?.stage ? "current" : "" },
      `${label("stage", s)} ${shortTime(all[s])}`)));
  const element = h("section", { class: "card-section section-deadlines" },
    h("h3", {}, t("card.deadlines")), currentStage(deadline), list);
  queueMicrotask(tick);
  return element;
}
