// Toasts (short messages over the map) and the common way an action runs: do it, say how it
// went, refresh the card and whatever else shows the case.

import { $, h } from "./dom.js";
import { t } from "./i18n.js";

const TOAST_MS = { ok: 2500, info: 8000, error: 8000 };

/** A message in the toast stack; `onclick` makes it a button. */
export function toast(text, { kind = "info", onclick = null } = {}) {
  const element = onclick ? h("button", { type: "button", class: `toast toast-${kind}`, onclick }, text)
    : h("div", { class: `toast toast-${kind}` }, text);
  $("#toasts").append(element);
  setTimeout(() => element.remove(), TOAST_MS[kind] ?? TOAST_MS.info);
  return element;
}

/** Run an API change; on success refresh the card and tell the page; on failure say why. */
export async function run(change, ctx) {
  try {
    await change();
    toast(t("toast.ok"), { kind: "ok" });
  } catch (error) {
    if (error.status !== 401) toast(t("toast.failed", error.message), { kind: "error" });
    return false;
  } finally {
    await ctx.card.refresh().catch(() => null);
    ctx.card.onChanged?.();
  }
  return true;
}
