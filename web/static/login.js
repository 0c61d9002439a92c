// GridOps login: posts the credentials as JSON to /api/v1/auth/login (which sets the session
// cookie), shows the server's reason for a refusal in an aria-live region, and on success
// goes to `next` — a same-site path, already checked by the server and checked again here.

const config = JSON.parse(document.getElementById("gridops-config").textContent);

const wait = (seconds, units) =>
  seconds >= 60 ? `${Math.ceil(seconds / 60)} ${units[0]}` : `${seconds} ${units[1]}`;

const I18N = {
  zh: {
    title: "GridOps 登录",
    intro: "网格化管理 · 地图调度",
    toggle: "EN",
    toggleLabel: "English",
    username: "用户名",
    password: "密码",
    submit: "登录",
    submitting: "正在登录…",
    wrong: "用户名或密码错误。",
    throttled: (s) => `尝试次数过多，请在 ${wait(s, ["分钟", "秒"])}后重试。`,
    invalid: "请检查输入。",
    unavailable: "服务暂时不可用，请稍后重试。",
    network: "无法连接服务器，请检查网络后重试。",
    failed: (code) => `登录失败（HTTP ${code}）。`,
    cookieRefused: "浏览器没有保存登录 Cookie（Secure）：请通过 HTTPS 或 http://127.0.0.1、"
      + "http://localhost 访问。",
  },
  en: {
    title: "GridOps sign in",
    intro: "Grid management · map dispatch",
    toggle: "中文",
    toggleLabel: "中文",
    username: "Username",
    password: "Password",
    submit: "Sign in",
    submitting: "Signing in…",
    wrong: "Wrong username or password.",
    throttled: (s) => `Too many attempts; try again in ${wait(s, ["min", "s"])}.`,
    invalid: "Please check your input.",
    unavailable: "The service is unavailable; try again later.",
    network: "Cannot reach the server; check the network and try again.",
    failed: (code) => `Sign-in failed (HTTP ${code}).`,
    cookieRefused: "The browser did not keep the sign-in cookie (Secure): open GridOps over "
      + "HTTPS, or at http://127.0.0.1 or http://localhost.",
  },
};

let lang = localStorage.getItem("gridops.lang") === "en" ? "en" : "zh";
let message = null; // { key, args, detail }: re-rendered when the language changes
let busy = false;
const t = (key, ...args) => {
  const value = I18N[lang][key];
  return typeof value === "function" ? value(...args) : value;
};

const form = document.getElementById("login-form");
const submit = document.getElementById("submit");

/** The message: in Chinese a summary over the server's (English) words; in English, the
 * server's words alone when it gave any. */
function renderMessage() {
  const lines = !message ? []
    : lang === "en" && message.detail ? [message.detail]
      : [t(message.key, ...message.args), message.detail];
  document.getElementById("message").textContent = lines.filter(Boolean).join("\n");
}

/** Show message `key` (null clears it), marking and focusing the input `field` if any. */
function showMessage(key, { args = [], detail = "", field = null } = {}) {
  message = key ? { key, args, detail } : null;
  renderMessage();
  for (const input of form.querySelectorAll("input")) {
    if (input.name === field) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  const input = field && form.elements.namedItem(field);
  if (input) {
    input.focus();
    input.select();
  }
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  if (busy) submit.textContent = t("submitting");
  const button = document.getElementById("lang-toggle");
  button.textContent = t("toggle");
  button.setAttribute("aria-label", t("toggleLabel"));
  renderMessage();
}

function setBusy(value) {
  busy = value;
  submit.disabled = value;
  submit.textContent = t(value ? "submitting" : "submit");
}

/** Where to go after login: `next` (plus the map view in the URL hash), if same-site. */
function destination() {
  let next = config.next || "/";
  if (!next.includes("#") && window.location.hash) next += window.location.hash;
  const url = new URL(next, window.location.origin);
  return url.origin === window.location.origin && next.startsWith("/") && !next.startsWith("//")
    ? url.pathname + url.search + url.hash
    : "/";
}

/** Whether the browser kept the session: the readable CSRF cookie is set alongside the
 * HttpOnly one, both Secure — dropped on plain HTTP from any host but 127.0.0.1/localhost. */
function cookieKept() {
  return document.cookie.split("; ").some((part) => part.startsWith(`${config.csrfCookie}=`));
}

/** The server's words: `detail` is a string, or a list of `{field, msg}`. */
function serverDetail(body) {
  if (typeof body?.detail === "string") return { text: body.detail, field: null };
  if (Array.isArray(body?.detail)) {
    return { text: body.detail.map((d) => d.msg).join("; "), field: body.detail[0]?.field };
  }
  return { text: "", field: null };
}

async function signIn(event) {
  event.preventDefault();
  if (busy) return;
  setBusy(true);
  showMessage(null);
  let response;
  let body = null;
  try {
    response = await fetch(`${config.apiBase}/auth/login`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify({ username: form.username.value.trim(), password: form.password.value }),
    });
    body = await response.json().catch(() => null);
  } catch {
    setBusy(false);
    showMessage("network");
    return;
  }
  if (response.ok && !cookieKept()) {
    setBusy(false);
    showMessage("cookieRefused");
    return;
  }
  if (response.ok) {
    window.location.replace(destination()); // stays busy: no second submit while leaving
    return;
  }
  setBusy(false);
  const { text, field } = serverDetail(body);
  const known = ["username", "password"].includes(field) ? field : null;
  if (response.status === 401) {
    showMessage("wrong", { detail: text, field: known ?? "password" });
  } else if (response.status === 429) {
    const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10) || 60;
    showMessage("throttled", { args: [seconds], detail: text, field: known });
  } else if (response.status === 422) {
    showMessage("invalid", { detail: text, field: known });
  } else if (response.status === 503) {
    showMessage("unavailable", { detail: text });
  } else {
    showMessage("failed", { args: [response.status], detail: text });
  }
}

document.getElementById("lang-toggle").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("gridops.lang", lang);
  applyLanguage();
});
form.addEventListener("submit", signIn);
applyLanguage();
