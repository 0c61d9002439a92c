// The card's actions: workflow transitions (立案, 退回, 核查, 结案 … as the server allows
// them now), extensions (延期: ask, and approve or reject a pending one), and the steps of
// the teams sent (报到 …).

import { postJSON } from "./api.js";
import { h } from "./dom.js";
import { label, shortTime, t } from "./i18n.js";
import { run, toast } from "./feedback.js";

const UNITS = ["work_hours", "work_days", "hours"];

function transition(ctx, c, action, form) {
  const reason = form.elements.reason.value.trim();
  if (action.reason_required && !reason) {
    toast(t("card.needReason"), { kind: "error" });
    form.elements.reason.focus();
    return;
  }
  const body = { action: action.action, reason: reason || undefined };
  if (action.action === "return") body.out_of_remit = form.elements.out_of_remit.checked;
  run(() => postJSON(`/incidents/${c.id}/transitions`, body), ctx);
}

function transitionForm(c, ctx) {
  const actions = c.transitions?.actions ?? [];
  const form = h("form", { class: "transitions", onsubmit: (e) => e.preventDefault() });
  const buttons = actions.map((a) => h("button", { type: "button", class: `action action-${a.action}`,
    dataset: { action: a.action }, onclick: () => transition(ctx, c, a, form) }, label("actions", a.action)));
  const hasReturn = actions.some((a) => a.action === "return");
  form.append(h("div", { class: "buttons" }, buttons),
    h("input", { name: "reason", type: "text", maxlength: 500, placeholder: t("card.reason"),
      "aria-label": t("card.reason") }),
    hasReturn ? h("label", { class: "check" }, h("input", { type: "checkbox", name: "out_of_remit" }),
      ` ${t("card.outOfRemit")}`) : h("input", { type: "hidden", name: "out_of_remit" }));
  return actions.length ? form : null;
}

function askExtension(ctx, c, form) {
  const el = form.elements;
  if (!el.reason.value.trim()) {
    toast(t("card.needReason"), { kind: "error" });
    return;
  }
  run(() => postJSON(`/incidents/${c.id}/extensions`, { value: Number(el.value.value),
    unit: el.unit.value, reason: el.reason.value.trim() }), ctx);
}

function extensionForm(c, ctx) {
  if (!c.transitions?.deadline?.due_at || !ctx.user.mayWork) return null;
  const form = h("form", { class: "extension", onsubmit: (e) => { e.preventDefault(); askExtension(ctx, c, form); } },
    h("b", {}, t("card.extension")),
    h("input", { name: "value", type: "number", min: 0.5, step: 0.5, value: 1, "aria-label": t("card.value") }),
    h("select", { name: "unit", "aria-label": t("card.unit") },
      UNITS.map((u) => h("option", { value: u }, t(`card.units.${u}`)))),
    h("input", { name: "reason", type: "text", maxlength: 500, placeholder: t("card.reason"),
      "aria-label": t("card.reason") }),
    h("button", { type: "submit" }, t("card.ask")));
  return form;
}

function decide(ctx, c, request, approve) {
  run(() => postJSON(`/extensions/${request.id}/decision`, { approve }), ctx);
}

function pendingExtensions(c, ctx) {
  const pending = c.extensions.filter((e) => e.status === "pending");
  return pending.map((e) => h("div", { class: "pending-extension" },
    `${t("card.pendingExt")}: ${label("stage", e.stage)} +${e.value} ${t(`card.units.${e.unit}`)} · ${e.reason}`,
    ctx.user.mayCommand && h("button", { type: "button", onclick: () => decide(ctx, c, e, true) }, t("card.approve")),
    ctx.user.mayCommand && h("button", { type: "button", onclick: () => decide(ctx, c, e, false) }, t("card.reject"))));
}

/** Transitions, extension request and pending extensions (for those who may act). */
export function actionsSection(c, ctx) {
  const parts = [transitionForm(c, ctx), ...pendingExtensions(c, ctx), extensionForm(c, ctx)].filter(Boolean);
  if (!parts.length) return null;
  return h("section", { class: "card-section section-actions" }, h("h3", {}, t("card.actions")), parts);
}

// -- teams sent -----------------------------------------------------------------------

function step(ctx, c, dispatch, status) {
  let reason;
  if (status === "declined" || status === "cancelled") {
    reason = window.prompt(t("card.reason"));
    if (!reason) return;
  }
  run(() => postJSON(`/dispatches/${dispatch.id}/status`, { status, reason }), ctx);
}

function dispatchRow(c, ctx, d) {
  const arrival = d.arrival_s != null ? ` · ${Math.round(d.arrival_s / 60)}′` : "";
  return h("li", { class: `dispatch dispatch-${d.status}`, dataset: { dispatchId: d.id, teamId: d.team_id } },
    h("b", {}, d.team_name), ` ${d.department_name} `,
    h("span", { class: `badge dstatus-${d.status}` }, label("dispatchStatus", d.status)),
    d.whistle_kind && h("span", { class: "flag flag-joint" }, t(`card.kinds.${d.whistle_kind}`)),
    h("span", { class: "muted" }, ` ${shortTime(d.dispatched_at)}${arrival}`),
    ctx.user.mayWork && h("span", { class: "steps" }, (d.next ?? []).map((s) =>
      h("button", { type: "button", class: "small", onclick: () => step(ctx, c, d, s) },
        label("dispatchStatus", s)))));
}

/** The teams sent with their step and the next steps. */
export function dispatchesSection(c, ctx) {
  if (!c.dispatches.length) return null;
  return h("section", { class: "card-section section-dispatches" }, h("h3", {}, t("card.dispatches")),
    h("ul", { class: "dispatches" }, c.dispatches.map((d) => dispatchRow(c, ctx, d))));
}
