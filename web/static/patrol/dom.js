// DOM helpers (shared with the command page: elements are built with text nodes, never
// innerHTML with data) and the toast stack.

import { $, h } from "../command/dom.js";

export { $, $$, fill, h } from "../command/dom.js";

const TOAST_MS = { ok: 2500, info: 5000, error: 8000 };

/** A short message at the bottom of the screen. */
export function toast(text, kind = "info") {
  const element = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status" },
    text);
  $("#toasts").append(element);
  setTimeout(() => element.remove(), TOAST_MS[kind] ?? TOAST_MS.info);
  return element;
}
