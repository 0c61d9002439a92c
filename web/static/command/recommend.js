// Recommended teams (per side of a joint case) with ETA and reasons; hovering or ticking a
// team draws its road route on the map; dispatch the ticked teams; blow a whistle (a 联合哨
// preselects a capable department from every side).

import { getJSON, postJSON } from "./api.js";
import { h } from "./dom.js";
import { currentLang, t } from "./i18n.js";
import { showRoute } from "./map.js";
import { run } from "./feedback.js";

const DISPATCHABLE = ["registered", "dispatched", "handling"];
const PREVIEW = ["pending", ...DISPATCHABLE]; // a pending case shows who could go
const KINDS = ["joint", "enforcement", "priority", "emergency"];
const picked = { incident: null, teams: new Set() };
const routes = new Map();
let departments = null;

function pickedFor(id) {
  if (picked.incident !== id) Object.assign(picked, { incident: id, teams: new Set() });
  routes.clear();
  return picked.teams;
}

async function routeOf(incidentId, teamId) {
  if (!routes.has(teamId)) {
    routes.set(teamId, getJSON(`/incidents/${incidentId}/route`, { team_id: teamId }).catch(() => null));
  }
  return routes.get(teamId);
}

async function drawRoute(map, incidentId, teamId) {
  showRoute(map, teamId ? await routeOf(incidentId, teamId) : null);
}

const restoreRoute = (map, id) => drawRoute(map, id, [...picked.teams].at(-1) ?? null);
const reasonText = (r) => (currentLang() === "zh" ? r.zh : r.en);

function teamRow(c, ctx, team, canDispatch) {
  const id = c.id;
  const box = h("input", { type: "checkbox", checked: picked.teams.has(team.team_id),
    "aria-label": team.name, onchange: (event) => {
      if (event.target.checked) picked.teams.add(team.team_id);
      else picked.teams.delete(team.team_id);
      restoreRoute(ctx.map, id);
    } });
  const send = canDispatch && h("button", { type: "button", class: "small",
    onclick: () => dispatchTeams(ctx, id, [team.team_id]) }, t("card.send"));
  return h("li", { class: "team", dataset: { teamId: team.team_id },
    onmouseenter: () => drawRoute(ctx.map, id, team.team_id),
    onmouseleave: () => restoreRoute(ctx.map, id) },
  h("label", { class: "team-head" }, box, h("b", {}, team.name),
    h("span", { class: "eta" }, `${t("card.eta")} ${t("card.minutes", Math.round(team.eta_s / 60))}`
      + ` · ${t("card.km", (team.road_m / 1000).toFixed(1))}`), send),
  h("div", { class: "muted" }, team.department?.name ?? ""),
  h("ul", { class: "reasons" }, team.reasons.map((r) => h("li", {}, reasonText(r)))));
}

function groupNode(c, ctx, group, canDispatch) {
  const side = group.jurisdiction;
  return h("div", { class: "rec-group" },
    side && h("h4", {}, t("card.side", `${side.name ?? side.code}${side.share != null
      ? ` ${Math.round(side.share * 100)}%` : ""}`)),
    group.teams.length ? h("ol", { class: "teams" }, group.teams.map((tm) => teamRow(c, ctx, tm, canDispatch)))
      : h("p", { class: "muted" }, t("card.noTeams")),
    h("ul", { class: "shortfalls" }, group.shortfalls.map((s) => h("li", {}, reasonText(s)))));
}

async function dispatchTeams(ctx, incidentId, teamIds) {
  if (!teamIds.length) return;
  await run(() => postJSON(`/incidents/${incidentId}/dispatches`, { team_ids: teamIds }), ctx);
  picked.teams.clear();
}

/** The recommendation lists, or nothing for readers who may not dispatch. */
export function recommendSection(c, ctx) {
  pickedFor(c.id);
  if (!c.recs || !PREVIEW.includes(c.feature.properties.status)) {
    showRoute(ctx.map, null);
    return null;
  }
  const canDispatch = DISPATCHABLE.includes(c.feature.properties.status);
  const button = h("button", { type: "button", class: "primary", id: "dispatch-selected",
    disabled: !canDispatch, onclick: () => dispatchTeams(ctx, c.id, [...picked.teams]) },
  t("card.dispatch"));
  return h("section", { class: "card-section section-recommend" }, h("h3", {}, t("card.recommend")),
    c.recs.groups.map((g) => groupNode(c, ctx, g, canDispatch)), button);
}

// -- whistle ------------------------------------------------------------------------------

const covers = (dept, code) => code.startsWith(dept) || dept.startsWith(code);

function sidesOf(c) {
  const p = c.feature.properties;
  if (p.is_joint && p.joint?.jurisdictions?.length > 1) return p.joint.jurisdictions;
  const code = p.street_code ?? p.district_code;
  return [{ code, name: c.placement?.street?.name ?? code }];
}

/** For each side, the department answering for it that best fits the case's needs. */
function preselect(sides, all, needs) {
  const chosen = new Set();
  for (const side of sides) {
    const fits = all.filter((d) => covers(d.jurisdiction_code, side.code))
      .sort((a, b) => Number(needs.includes(b.dept_type)) - Number(needs.includes(a.dept_type))
        || b.jurisdiction_code.length - a.jurisdiction_code.length);
    if (fits[0] && needs.includes(fits[0].dept_type)) chosen.add(fits[0].id);
  }
  return chosen;
}

function departmentBoxes(sides, all, chosen) {
  return sides.map((side) => h("fieldset", { class: "whistle-side" }, h("legend", {}, side.name ?? side.code),
    all.filter((d) => covers(d.jurisdiction_code, side.code)).map((d) => h("label", { class: "dept" },
      h("input", { type: "checkbox", name: "department", value: d.id, checked: chosen.has(d.id) }),
      ` ${d.name}`))));
}

async function blow(ctx, c, form) {
  const ids = [...new Set([...form.querySelectorAll("input[name=department]:checked")]
    .map((i) => Number(i.value)))];
  await run(() => postJSON(`/incidents/${c.id}/whistles`, { kind: form.elements.kind.value,
    department_ids: ids, team_ids: [...picked.teams] }), ctx);
  picked.teams.clear();
}

async function fillWhistle(c, form) {
  departments ??= getJSON("/departments").catch(() => []);
  const all = await departments;
  const sides = sidesOf(c);
  const chosen = preselect(sides, all, c.recs?.capabilities ?? []);
  form.querySelector(".departments").replaceChildren(...departmentBoxes(sides, all, chosen));
}

/** The whistle form (for those who may dispatch, on an open registered case). */
export function whistleSection(c, ctx) {
  if (!c.recs || !DISPATCHABLE.includes(c.feature.properties.status)) return null;
  const joint = sidesOf(c).length > 1;
  const kind = h("select", { name: "kind", "aria-label": t("card.whistleKind") },
    KINDS.filter((k) => joint || k !== "joint").map((k) => h("option", { value: k }, t(`card.kinds.${k}`))));
  const form = h("form", { class: "whistle", onsubmit: (event) => { event.preventDefault(); blow(ctx, c, form); } },
    h("label", {}, `${t("card.whistleKind")} `, kind),
    h("div", { class: "departments", "aria-label": t("card.departments") }),
    h("button", { type: "submit", class: "primary", id: "blow-whistle" }, t("card.blow")));
  fillWhistle(c, form);
  return h("section", { class: "card-section section-whistle" }, h("h3", {}, t("card.whistle")), form);
}
