// The checklist (巡查清单) of GET /api/v1/patrol/checklist, grouped by 十无 / 十有: each item
// is ticked 正常 (ok) or 有问题 (problem), with an optional note; a note changed after the
// tick is sent again (the later tick wins on the server).

import { h } from "./dom.js";
import { currentLang, t } from "./i18n.js";

const GROUPS = [["十无", "check.groupNone"], ["十有", "check.groupHave"]];

export class Checklist {
  /** `root`: the element; `onTick(code, ok, note)` records a tick. */
  constructor(root, onTick) {
    this.root = root;
    this.onTick = onTick;
    this.items = [];
    this.checks = {};
    this.drafts = {}; // notes typed before the item was ticked
  }

  /** Items ([{code, group, zh, en}]) and the ticks so far ({code: {ok, note}}). */
  render(items, checks) {
    this.items = items ?? [];
    this.checks = checks ?? {};
    const groups = [...GROUPS.map(([g]) => g),
      ...new Set(this.items.map((i) => i.group).filter((g) => !GROUPS.some(([k]) => k === g)))];
    const sections = groups.map((group) => {
      const items = this.items.filter((i) => i.group === group);
      if (!items.length) return null;
      const title = GROUPS.find(([g]) => g === group)?.[1];
      return h("section", { class: "check-group" },
        h("h2", {}, title ? t(title) : group),
        h("ul", { class: "check-list" }, items.map((item) => this.row(item))));
    });
    const done = this.items.filter((i) => this.checks[i.code]).length;
    this.root.replaceChildren(
      h("p", { class: "check-count muted", id: "check-count" },
        t("check.done", done, this.items.length)),
      ...sections.filter(Boolean));
  }

  row(item) {
    const check = this.checks[item.code];
    const name = currentLang() === "zh" ? item.zh : (item.en || item.zh);
    const note = h("input", { type: "text", class: "check-note", maxlength: 500,
      placeholder: t("check.note"), "aria-label": `${name} ${t("check.note")}`,
      value: check?.note ?? this.drafts[item.code] ?? "" });
    note.addEventListener("input", () => { this.drafts[item.code] = note.value; });
    note.addEventListener("change", () => {
      const current = this.checks[item.code];
      if (current && (current.note ?? "") !== note.value.trim()) {
        this.onTick(item.code, current.ok, note.value.trim());
      }
    });
    const tick = (ok) => () => {
      this.onTick(item.code, ok, note.value.trim());
    };
    const state = check ? (check.ok ? "ok" : "problem") : "none";
    return h("li", { class: "check-item", dataset: { code: item.code, state } },
      h("span", { class: "check-name" }, name),
      h("div", { class: "check-buttons" },
        h("button", { type: "button", class: "tick tick-ok", "aria-pressed": String(state === "ok"),
          "aria-label": `${name}：${t("check.ok")}`, onclick: tick(true) }, `✓ ${t("check.ok")}`),
        h("button", { type: "button", class: "tick tick-problem",
          "aria-pressed": String(state === "problem"),
          "aria-label": `${name}：${t("check.problem")}`, onclick: tick(false) },
        `✗ ${t("check.problem")}`)),
      note);
  }
}
