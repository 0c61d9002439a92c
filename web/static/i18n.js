// Chinese first, English on request, shared by every page: the choice is kept in
// localStorage ("gridops.lang"), so it follows the user from page to page.

const STORE_KEY = "gridops.lang";

function lookup(dict, key) {
  let value = dict;
  for (const part of key.split(".")) value = value?.[part];
  return value;
}

/**
 * The language state of one page over its dictionaries `{zh, en}`. `title(t)` gives the
 * document title (none: leave it). Returns:
 * - t(key, ...args): the text of a dotted key ("card.due") in the current language, else in
 *   Chinese, else the key's last part; functions are called with `args`;
 * - label(group, value): a value's label in a group, falling back to the raw value;
 * - applyStatic(): texts of [data-i18n] elements, aria-labels of [data-i18n-label], the
 *   title and the #lang-toggle button;
 * - currentLang(), setLang(lang), toggleLang(), onLanguage(fn).
 */
export function createI18n(dicts, { title } = {}) {
  const listeners = [];
  let lang = localStorage.getItem(STORE_KEY) === "en" ? "en" : "zh";

  const t = (key, ...args) => {
    const value = lookup(dicts[lang], key) ?? lookup(dicts.zh, key) ?? key.split(".").pop();
    return typeof value === "function" ? value(...args) : value;
  };

  const applyStatic = () => {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    if (title) document.title = title(t);
    for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
    for (const el of document.querySelectorAll("[data-i18n-label]")) {
      el.setAttribute("aria-label", t(el.dataset.i18nLabel));
    }
    const button = document.getElementById("lang-toggle");
    if (button) {
      button.textContent = t("toggle");
      button.setAttribute("aria-label", t("toggleLabel"));
    }
  };

  const setLang = (next) => {
    lang = next;
    localStorage.setItem(STORE_KEY, lang);
    applyStatic();
    for (const fn of listeners) fn(lang);
  };

  return {
    t,
    applyStatic,
    setLang,
    currentLang: () => lang,
    label: (group, value) => dicts[lang][group]?.[value] ?? value ?? "—",
    onLanguage: (fn) => listeners.push(fn),
    toggleLang: () => setLang(lang === "zh" ? "en" : "zh"),
  };
}
