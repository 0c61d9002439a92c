// The planner page (网格规划): the plan list and the forms that make plans (new from the
// live grids, import, 多网合一) on the left; the plan on the map with the edit tools (select,
// paint, split, merge, undo/redo) and the workflow (validate, approve/reject, apply, diff) in
// the middle; the live metrics, issues and comments on the right. Every edit answers with
// the moves it made (kept for undo/redo), the grids it changed and the metrics recomputed.

import { ApiError, plans, settings } from "./api.js";
import { $, $$, h } from "../command/dom.js";
import { applyStatic, onLanguage, t, toggleLang } from "./i18n.js";
import { signOut } from "../command/api.js";
import { assignColours, createMap, fitTo, showDiff, showIssue, showLabels, showPlan, showSelection,
  showSnapped } from "./map.js";
import { NEW_GRID, band, gridLabel, inBand, renderComments, renderDiff, renderGridTable,
  renderHeader, renderImpact, renderIssues, renderLegend, renderPlanList, renderSummary,
  renderTarget } from "./panels.js";
import { Tools } from "./tools.js";

const roles = ($("#user")?.dataset.roles ?? "").split(" ").filter(Boolean);
const FIT = { padding: { top: 30, right: 60, bottom: 50, left: 30 } }; // clear of controls and legend
const EDITABLE = ["draft", "validated", "approved"]; // an edit sends the plan back to draft

const state = {
  config: settings, roles, writer: roles.some((r) => ["planner", "admin"].includes(r)),
  admin: roles.includes("admin"), plans: [], plan: null, grids: null, cells: null,
  buildings: null, metrics: null, selected: new Set(), tool: "select", target: null,
  undo: [], redo: [], diff: null, diffShown: false, issue: null, colours: {},
  cellIndex: new Map(), pending: 0, seq: 0,
};
let map = null;
let tools = null;
let queue = Promise.resolve();
let status = { key: "", args: [], kind: "" };

// -- messages -----------------------------------------------------------------------------------

function setStatus(key, args = [], kind = "") {
  status = { key, args, kind };
  const el = $("#status");
  el.textContent = key ? t(key, ...args) : "";
  el.dataset.kind = kind;
}

function toast(text, kind = "info") {
  const element = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : null }, text);
  $("#toasts").append(element);
  setTimeout(() => element.remove(), kind === "ok" ? 3000 : 8000);
}

let hintState = null;

function hint(key, ...args) {
  hintState = key ? { key, args } : null;
  const el = $("#tool-hint");
  el.textContent = key ? t(key, ...args) : "";
  el.title = el.textContent;
}

/** An API failure, readable (the server's message names the field and the reason). */
function showError(error, key = "failed") {
  if (error?.status === 401) return;
  if (error instanceof Error && !(error instanceof ApiError)) console.warn(error); // a bug, not a refusal
  setStatus(key, [error.message], "error");
  toast(t(key, error.message), "error");
}

// -- state helpers ---------------------------------------------------------------------------------

const editable = () => state.writer && !!state.plan && EDITABLE.includes(state.plan.status);
const gridById = (id) => state.grids?.features.find((f) => f.properties.id === id) ?? null;

function authorIsMe() {
  const author = state.plan?.author;
  const name = typeof author === "object" && author ? (author.username ?? author.name) : author;
  return !!name && [settings.username, settings.displayName].includes(name);
}

function indexCells() {
  state.cellIndex = new Map((state.cells?.features ?? []).map((f) => [f.properties.id,
    { grid_id: f.properties.grid_id ?? null, community_code: f.properties.community_code }]));
}

function summaryOf(plan) {
  const keys = ["id", "name", "status", "community_codes", "district_code", "source", "author",
    "reviewer", "revision", "effective_from", "created_at", "updated_at", "applied_at", "grids",
    "households"];
  return Object.fromEntries(keys.filter((k) => k in plan).map((k) => [k, plan[k]]));
}

/** Take a PlanSummary or PlanDetail from the server into the open plan and the list. */
function takePlan(plan) {
  if (!plan) return;
  if (state.plan && state.plan.id === plan.id) state.plan = { ...state.plan, ...plan };
  const index = state.plans.findIndex((p) => p.id === plan.id);
  if (index >= 0) state.plans[index] = { ...state.plans[index], ...summaryOf(plan) };
  else state.plans.unshift(summaryOf(plan));
}

// -- drawing -----------------------------------------------------------------------------------------

/** Draw the panels and, when `data` (the plan's geometries or numbers changed), the map's
 * sources and labels; selection-only changes pass false. */
function redraw(data = true) {
  renderHeader(state);
  renderPlanList(state, (id) => openPlan(id));
  renderSummary(state);
  renderGridTable(state, { colours: state.colours, select: (id) => pickGrid(id,
    state.tool === "merge" ? { toggle: true } : { zoom: true }) });
  renderIssues(state, showIssueAt);
  renderComments(state);
  renderTarget(state);
  renderDiff(state);
  renderLegend();
  if (map && state.plan) {
    if (data) {
      showPlan(map, state);
      showLabels(map, state.grids, { inBand: (p) => inBand(state, p), label: gridLabel,
        householdsText: (n) => t("households", n ?? 0), onClick: (id) => pickGrid(id) });
    }
    showSelection(map, state.selected);
  }
  renderButtons();
  if (status.key) setStatus(status.key, status.args, status.kind);
  if (hintState) hint(hintState.key, ...hintState.args);
}

function renderButtons() {
  const plan = state.plan;
  const can = editable();
  document.body.classList.toggle("readonly", !state.writer);
  $("#user-mode").textContent = t(state.writer ? "mode.write" : "mode.read");
  for (const el of $$(".edit")) el.disabled = !can;
  $("#undo").disabled = !can || !state.undo.length;
  $("#redo").disabled = !can || !state.redo.length;
  for (const button of $$(".tool")) button.setAttribute("aria-pressed", String(button.dataset.tool === state.tool));
  $("#target-box").hidden = state.tool !== "paint";
  const merge = $("#merge-go");
  merge.hidden = state.tool !== "merge";
  merge.textContent = t("tools.mergeCount", state.selected.size);
  merge.disabled = !can || state.selected.size < 2;
  const status = plan?.status;
  $("#validate").disabled = !state.writer || !EDITABLE.includes(status);
  const approve = $("#approve");
  approve.disabled = !state.writer || status !== "validated" || (authorIsMe() && !state.admin);
  approve.title = authorIsMe() && !state.admin ? t("flow.authorCannotApprove") : "";
  $("#reject").disabled = !state.writer || !["draft", "validated", "approved"].includes(status);
  $("#apply").disabled = !state.writer || status !== "approved";
  $("#diff").disabled = !plan;
  $("#diff").setAttribute("aria-pressed", String(state.diffShown));
  const link = $("#comparison");
  link.href = plan ? plans.comparisonUrl(plan.id) : "#";
  link.setAttribute("aria-disabled", String(!plan));
  for (const el of $$("#comment-form textarea, #comment-form button")) el.disabled = !state.writer || !plan;
  for (const el of $$(".writer-only input, .writer-only button")) el.disabled = !state.writer;
}

// -- loading --------------------------------------------------------------------------------------------

async function loadPlans() {
  try {
    const body = await plans.list($("#plan-filter").value || undefined);
    state.plans = body.plans ?? [];
    renderPlanList(state, (id) => openPlan(id));
  } catch (error) {
    showError(error, "loadFailed");
  }
}

function remember(id) {
  const url = new URL(window.location.href);
  if (id) url.searchParams.set("plan", id); else url.searchParams.delete("plan");
  window.history.replaceState(null, "", url);
}

/** Open plan `id`: its detail, grids, cells, buildings and metrics; fit the map to it. */
async function openPlan(id, { fit = true } = {}) {
  const seq = ++state.seq;
  document.body.dataset.state = "loading";
  setStatus("loading");
  try {
    const [plan, grids, cells, buildings] = await Promise.all([plans.get(id), plans.grids(id),
      plans.cells(id), plans.buildings(id)]);
    if (seq !== state.seq) return;
    const samePlan = state.plan?.id === plan.id;
    Object.assign(state, { plan, grids, cells, buildings, metrics: plan.validation ?? null,
      issue: null, diff: null });
    if (!samePlan) {
      Object.assign(state, { selected: new Set(), target: null, undo: [], redo: [], colours: {},
        diffShown: false });
    }
    indexCells();
    assignColours(state.colours, grids.features);
    takePlan(plan);
    remember(plan.id);
    if (map) {
      showIssue(map, null);
      showDiff(map, null);
      showSnapped(map, null);
      tools?.cancel();
    }
    hint(`hint.${state.tool}`);
    redraw();
    if (map && fit) fitTo(map, plan.bbox ?? grids.features.map((f) => f.geometry), FIT);
    setStatus("");
    document.body.dataset.state = "ready";
    refreshMetrics(seq);
    if (state.diffShown) loadDiff();
  } catch (error) {
    if (seq !== state.seq) return;
    showError(error, "loadFailed");
    document.body.dataset.state = "error";
  }
}

/** The metrics computed now (the stored report may be stale or absent). */
async function refreshMetrics(seq = state.seq) {
  const id = state.plan?.id;
  if (!id) return;
  try {
    const metrics = await plans.metrics(id);
    if (seq !== state.seq || state.plan?.id !== id) return;
    state.metrics = metrics;
    redraw();
  } catch (error) {
    showError(error, "loadFailed");
  }
}

// -- edits ------------------------------------------------------------------------------------------------

/** Run `work` after the edits before it (one at a time, in order). */
function enqueue(work) {
  state.pending += 1;
  document.body.dataset.state = "busy";
  const run = queue.then(work).finally(() => {
    state.pending -= 1;
    if (!state.pending) document.body.dataset.state = "ready";
  });
  queue = run.catch(() => {});
  return run;
}

/** Apply an EditResult: move cells and buildings, replace changed grids, take the metrics
 * and the plan summary; remember the moves for undo (`record`: "edit", "undo", "redo"). */
function applyEdit(result) {
  const moved = new Map((result.moves ?? []).map((m) => [m.cell_id, m.to]));
  for (const [cellId, to] of moved) {
    const cell = state.cellIndex.get(cellId);
    if (cell) cell.grid_id = to;
  }
  for (const f of state.cells?.features ?? []) {
    if (moved.has(f.properties.id)) f.properties.grid_id = moved.get(f.properties.id);
  }
  for (const f of state.buildings?.features ?? []) {
    if (moved.has(f.properties.cell_id)) f.properties.grid_id = moved.get(f.properties.cell_id);
  }
  for (const feature of result.grids?.features ?? []) {
    const id = feature.properties.id;
    const index = state.grids.features.findIndex((f) => f.properties.id === id);
    if (index >= 0) state.grids.features[index] = feature;
    else state.grids.features.push(feature);
  }
  if (result.metrics) state.metrics = result.metrics;
  takePlan(result.plan);
  state.issue = null;
  assignColours(state.colours, state.grids.features);
  if (map) showIssue(map, null);
  redraw();
  if (state.diffShown) loadDiff();
}

function edit(call, { record = "edit", entry = null, done = null } = {}) {
  if (!editable()) {
    hint("hint.readOnly");
    return Promise.resolve(null);
  }
  const planId = state.plan.id;
  hint("hint.saving");
  return enqueue(async () => {
    try {
      const result = await call(planId);
      if (state.plan?.id !== planId) return null;
      const moves = result.moves ?? [];
      if (record === "edit" && moves.length) {
        state.undo.push({ moves });
        state.redo = [];
      } else if (record === "undo") {
        state.redo.push(entry);
      } else if (record === "redo") {
        state.undo.push(moves.length ? { moves } : entry);
      }
      applyEdit(result);
      hint(`hint.${state.tool}`);
      if (done) toast(typeof done === "function" ? done(result) : t(done), "ok");
      return result;
    } catch (error) {
      if (record === "undo") state.undo.push(entry); // not undone: keep it
      if (record === "redo") state.redo.push(entry);
      hint(`hint.${state.tool}`);
      showError(error);
      renderButtons();
      return null;
    }
  });
}

function paint(cellIds, target) {
  return edit((id) => plans.assign(id, cellIds.map((cellId) => ({ cell_id: cellId, grid_id: target }))),
    { done: (r) => t("edit.saved", (r.moves ?? []).length) });
}

function undo() {
  const entry = state.undo.pop();
  if (!entry) {
    hint("hint.nothingToUndo");
    return null;
  }
  renderButtons();
  return edit((id) => plans.assign(id, entry.moves.map((m) => ({ cell_id: m.cell_id, grid_id: m.from }))),
    { record: "undo", entry, done: "edit.undone" });
}

function redo() {
  const entry = state.redo.pop();
  if (!entry) {
    hint("hint.nothingToRedo");
    return null;
  }
  renderButtons();
  return edit((id) => plans.assign(id, entry.moves.map((m) => ({ cell_id: m.cell_id, grid_id: m.to }))),
    { record: "redo", entry, done: "edit.redone" });
}

function split(gridId, coordinates) {
  return edit((id) => plans.split(id, gridId, { type: "LineString", coordinates }), {
    done: (result) => {
      if (map) showSnapped(map, result.snapped_line ?? null);
      return t("edit.split");
    },
  });
}

function mergeSelected() {
  const ids = [...state.selected];
  if (ids.length < 2) {
    hint("hint.mergeTwo");
    return null;
  }
  return edit((id) => plans.merge(id, ids), { done: () => {
    state.selected = new Set([ids[0]]);
    return t("edit.merged");
  } });
}

async function newGrid() {
  if (!editable()) return;
  const selected = gridById([...state.selected][0]);
  const community = selected?.properties.community_code ?? state.plan.community_codes?.[0];
  try {
    const body = await plans.newGrid(state.plan.id, community);
    const grid = body.grid ?? body;
    state.grids.features.push({ type: "Feature", id: grid.id, properties: grid, geometry: null });
    assignColours(state.colours, state.grids.features);
    state.target = grid.id;
    redraw();
    toast(t("grid.created", gridLabel(grid)), "ok");
  } catch (error) {
    showError(error);
    renderTarget(state);
  }
}

// -- selection, issues -------------------------------------------------------------------------------------

function pickGrid(id, { toggle = false, zoom = false } = {}) {
  if (id === null || id === undefined) {
    if (!toggle) state.selected = new Set();
  } else if (toggle) {
    if (state.selected.has(id)) state.selected.delete(id); else state.selected.add(id);
  } else {
    state.selected = new Set([id]);
    if (state.tool === "select" || state.tool === "paint") state.target = id;
  }
  const grid = gridById(id);
  if (zoom && map && grid?.geometry) fitTo(map, grid.geometry, { padding: 80 });
  redraw(false);
}

function showIssueAt(index) {
  const issue = state.metrics?.issues?.[index];
  if (!issue || !map) return;
  state.issue = index;
  const geometries = issue.geometry ? [issue.geometry]
    : (issue.grid_ids ?? []).map((id) => gridById(id)?.geometry).filter(Boolean);
  showIssue(map, geometries);
  state.selected = new Set(issue.grid_ids ?? []);
  if (geometries.length) fitTo(map, geometries, { padding: 80, maxZoom: 18 });
  redraw(false);
}

// -- the workflow -------------------------------------------------------------------------------------------

async function workflow(call, message) {
  const id = state.plan?.id;
  if (!id) return null;
  document.body.dataset.state = "busy";
  try {
    await queue; // edits first
    const result = await call(id);
    if (message) toast(typeof message === "function" ? message(result) : t(message), "ok");
    return result;
  } catch (error) {
    showError(error);
    return null;
  } finally {
    document.body.dataset.state = state.pending ? "busy" : "ready";
  }
}

async function validate() {
  const result = await workflow((id) => plans.validate(id), (r) => (r.validation?.ok
    ? t("flow.validated") : t("flow.invalid", r.validation?.errors ?? 0, r.validation?.warnings ?? 0)));
  if (!result) return;
  state.plan = { ...state.plan, ...result.plan };
  state.metrics = result.validation ?? state.metrics;
  takePlan(result.plan);
  redraw();
}

function askComment(kind) {
  const dialog = $("#reason-dialog");
  const form = dialog.querySelector("form");
  form.reset();
  $("#reason-title").textContent = t(`reasonDialog.${kind}`);
  form.elements.comment.required = kind === "reject";
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => dialog.addEventListener("close", () => resolve(
    dialog.returnValue === "confirm" ? form.elements.comment.value.trim() : null), { once: true }));
}

async function review(kind) {
  const comment = await askComment(kind);
  if (comment === null) return;
  const detail = await workflow((id) => (kind === "approve" ? plans.approve(id, comment)
    : plans.reject(id, comment)), kind === "approve" ? "flow.approved" : "flow.rejected");
  if (!detail) return;
  state.plan = { ...state.plan, ...detail };
  takePlan(detail);
  redraw();
}

async function apply() {
  const dialog = $("#apply-dialog");
  const form = dialog.querySelector("form");
  form.reset();
  renderImpact($("#apply-impact"), null);
  dialog.returnValue = "";
  dialog.showModal();
  plans.diff(state.plan.id).then((d) => {
    state.diff = d;
    renderImpact($("#apply-impact"), d);
  }).catch((error) => showError(error, "loadFailed"));
  const answer = await new Promise((resolve) => dialog.addEventListener("close",
    () => resolve(dialog.returnValue), { once: true }));
  if (answer !== "confirm") return;
  const day = form.elements.effective_from.value;
  const result = await workflow((id) => plans.apply(id, day ? `${day}T00:00:00+08:00` : null),
    "flow.applied");
  if (!result) return;
  takePlan(result.plan);
  await openPlan(state.plan.id, { fit: false }); // codes of the new grids, the stored state
}

async function loadDiff() {
  const id = state.plan?.id;
  if (!id) return;
  try {
    const diff = await plans.diff(id);
    if (state.plan?.id !== id || !state.diffShown) return;
    state.diff = diff;
    if (map) showDiff(map, diff.difference ?? null);
    if (!(diff.difference?.features ?? []).length) hint("diff.empty");
    renderDiff(state);
  } catch (error) {
    showError(error, "loadFailed");
  }
}

function toggleDiff() {
  state.diffShown = !state.diffShown;
  if (!state.diffShown && map) showDiff(map, null);
  renderButtons();
  renderDiff(state);
  if (state.diffShown) loadDiff();
}

async function addComment(event) {
  event.preventDefault();
  const form = event.target;
  const text = form.elements.text.value.trim();
  if (!text) return;
  const detail = await workflow((id) => plans.comment(id, text), "comments.added");
  if (!detail) return;
  form.reset();
  state.plan = { ...state.plan, ...detail };
  redraw();
}

// -- making plans ----------------------------------------------------------------------------------------------

function planBody(name, code) {
  const value = code.trim();
  if (/^[0-9]{9}$/.test(value)) return { name, street_code: value };
  const codes = value.split(/[\s,，;；]+/).filter(Boolean);
  if (codes.length && codes.every((c) => /^[0-9]{12}$/.test(c))) return { name, community_codes: codes };
  return null;
}

async function made(call, message, form) {
  const submit = form.querySelector("button[type=submit]");
  submit.disabled = true;
  try {
    const detail = await call();
    toast(t(message, detail.name), "ok");
    form.reset();
    takePlan(detail);
    await openPlan(detail.id);
  } catch (error) {
    showError(error);
  } finally {
    submit.disabled = !state.writer;
  }
}

function wireForms() {
  $("#new-plan").addEventListener("submit", (event) => {
    event.preventDefault();
    const form = event.target;
    const body = planBody(form.elements.name.value.trim(), form.elements.code.value);
    if (!body) {
      showError({ message: t("create.badCode") });
      return;
    }
    made(() => plans.create(body), "create.created", form);
  });
  $("#import-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    for (const key of ["community_codes", "layer"]) if (!String(data.get(key) ?? "").trim()) data.delete(key);
    made(() => plans.importLayer(data), "import.done", event.target);
  });
  $("#merge-layers-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(event.target);
    if (data.getAll("files").filter((f) => f.size || f.name).length < 2) {
      showError({ message: t("mergeLayers.needTwo") });
      return;
    }
    made(() => plans.mergeLayers(data), "mergeLayers.done", event.target);
  });
  $("#plan-filter").addEventListener("change", loadPlans);
  $("#comment-form").addEventListener("submit", addComment);
}

// -- tools and keys ----------------------------------------------------------------------------------------------

function setTool(name) {
  if (name !== "select" && !editable()) {
    hint("hint.readOnly");
    return;
  }
  state.tool = tools ? tools.set(name) : name;
  if (state.tool === "merge") state.selected = new Set();
  if (map) map.doubleClickZoom[state.tool === "split" ? "disable" : "enable"]();
  hint(`hint.${state.tool}`);
  redraw(false);
}

function wireTools() {
  for (const button of $$(".tool")) button.addEventListener("click", () => setTool(button.dataset.tool));
  $("#target-grid").addEventListener("change", (event) => {
    const value = event.target.value;
    if (value === NEW_GRID) newGrid();
    else state.target = value ? Number(value) : null;
  });
  $("#merge-go").addEventListener("click", mergeSelected);
  $("#undo").addEventListener("click", undo);
  $("#redo").addEventListener("click", redo);
  $("#validate").addEventListener("click", validate);
  $("#approve").addEventListener("click", () => review("approve"));
  $("#reject").addEventListener("click", () => review("reject"));
  $("#apply").addEventListener("click", apply);
  $("#diff").addEventListener("click", toggleDiff);
  document.addEventListener("keydown", (event) => {
    if (event.target.closest?.("input, textarea, select, dialog")) return;
    const key = event.key.toLowerCase();
    if ((event.ctrlKey || event.metaKey) && key === "z") {
      event.preventDefault();
      if (event.shiftKey) redo(); else undo();
    } else if ((event.ctrlKey || event.metaKey) && key === "y") {
      event.preventDefault();
      redo();
    } else if (key === "escape") {
      tools?.cancel();
    } else if (key === "enter" && state.tool === "split") {
      tools?.finishSplit();
    }
  });
}

// -- start ---------------------------------------------------------------------------------------------------------

async function start() {
  applyStatic();
  $("#lang-toggle").addEventListener("click", toggleLang);
  $("#logout").addEventListener("click", () => signOut().catch((e) => showError(e)));
  onLanguage(() => redraw());
  wireForms();
  wireTools();
  redraw();
  hint("plan.pick");
  if (window.maplibregl) {
    try {
      map = await createMap(settings.basemapUrl);
      tools = new Tools(map, {
        editable,
        paintTarget: () => {
          const grid = gridById(state.target);
          return grid ? { id: grid.properties.id, community_code: grid.properties.community_code,
            colour: state.colours[grid.properties.id] } : null;
        },
        cellGrid: (id) => state.cellIndex.get(id)?.grid_id ?? null,
        cellCommunity: (id) => state.cellIndex.get(id)?.community_code ?? null,
        paint, split,
        splitGrid: () => (state.selected.size === 1 ? [...state.selected][0] : null),
        pickGrid,
        hint,
      });
    } catch (error) {
      showError(error, "loadFailed");
    }
  } else {
    $("#maplibre-missing").hidden = false;
  }
  window.gridopsPlanner = { state, map, openPlan, undo, redo, setTool, band: () => band(state),
    idle: () => queue, project: (lngLat) => { const p = map.project(lngLat); return [p.x, p.y]; } };
  await loadPlans();
  const asked = Number(settings.plan ?? new URLSearchParams(window.location.search).get("plan"));
  if (asked) await openPlan(asked);
  else document.body.dataset.state = "ready";
}

start();
