// The public report form behind the QR code of a street's sign (公示牌): no sign-in.
// Loads the street, its chief and the classes from /api/v1/public/streets/{id}; takes the
// phone's position when the citizen allows it (else the street's own middle); posts a
// multipart form with an Idempotency-Key kept until the report is acknowledged, so a double
// tap or a retry after a dropped connection gives one report; shows the receipt.

const config = JSON.parse(document.getElementById("gridops-config").textContent);
const STORE_KEY = "gridops.lang";
const MAX_ACCURACY_M = 300; // a fix vaguer than this says nothing about the street
const ALLOWED_TYPES = ["image/jpeg", "image/png", "image/webp"];
const MAX_EDGE_PX = 2048; // a photo re-encoded for size is scaled to this longest edge

const I18N = {
  zh: {
    title: (s) => `${s} · 街巷问题反映`, toggle: "EN", toggleLabel: "English",
    kicker: "街巷长公示牌 · 问题反映",
    chiefLine: (title, name) => `由${title} ${name} 负责跟进`,
    noChief: "本街巷暂无街巷长，由街道办事处跟进",
    phone: "手机号", callLine: (p) => `电话 ${p}`,
    notFoundTitle: "找不到这条街巷", notFound: "二维码可能已失效，请拨打公示牌上的电话反映。",
    category: "问题类别", choose: "请选择问题类别", loadingClasses: "正在加载…",
    description: "问题描述", descriptionHint: "请描述看到的问题，例如位置、门牌号、持续多久",
    photo: "现场照片（可选）", takePhoto: "拍照 / 选择照片", removePhoto: "移除",
    position: "位置", locateAgain: "重新定位",
    locating: "正在获取您的位置…",
    gps: (m) => `将使用您当前的位置（精度约 ${m} 米）`,
    street: (s) => `将使用街巷位置：${s}`,
    denied: (s) => `未获得定位授权，将使用街巷位置：${s}`,
    vague: (s, m) => `定位精度太低（约 ${m} 米），将使用街巷位置：${s}`,
    noGeo: (s) => `无法定位，将使用街巷位置：${s}`,
    contact: "联系方式（可选，便于回访）", name: "称呼",
    privacy: "联系方式只提供给处理本案的工作人员，不会公开。",
    submit: "提交", submitting: "正在提交…",
    needClass: "请选择问题类别。", needDescription: "请填写问题描述。",
    badPhone: "手机号应为 7–20 位数字。",
    photoTooBig: (mb) => `照片太大（上限 ${mb} MB），请换一张或降低分辨率。`,
    photoType: "只能上传 JPEG、PNG 或 WebP 图片。",
    invalid: "请检查填写的内容。",
    fields: { photo: "照片有问题。", event_code: "问题类别无效，请重新选择。",
      description: "问题描述有问题。", reporter_phone: "手机号应为 7–20 位数字。",
      reporter_name: "称呼太长。", lon: "位置不在这条街巷附近。", lat: "位置有问题。",
      street_id: "找不到这条街巷。" },
    tooMany: (m) => `提交太频繁，请 ${m} 分钟后再试。`,
    unavailable: "服务暂时不可用，请稍后重试（不会重复提交）。",
    network: "网络连接失败，请稍后再点提交（不会重复提交）。",
    failed: (code) => `提交失败（HTTP ${code}），请稍后重试。`,
    thanks: "已收到，谢谢！", reportNumber: "受理编号",
    receiptStreet: (s, title, name) => name ? `${s} · 已转${title} ${name}` : s,
    movedToStreet: "您的位置离这条街巷较远，已按街巷位置登记。",
    nextTitle: "接下来",
    next: ["指挥中心受理员审核您的反映（待受理），一般在一个工作日内。",
      "立案后派给责任部门处置，街巷长跟进督办。",
      "处置完成后核查结案；如留下电话，可能会回访您的满意度。"],
    again: "再反映一个问题",
  },
  en: {
    title: (s) => `${s} · Report a problem`, toggle: "中文", toggleLabel: "中文",
    kicker: "Street chief notice board · Report a problem",
    chiefLine: (title, name) => `Followed up by the ${title === "巷长" ? "alley" : "street"} `
      + `chief ${name}`,
    noChief: "This street has no chief yet; the street office follows up",
    phone: "Mobile phone", callLine: (p) => `Phone ${p}`,
    notFoundTitle: "Street not found",
    notFound: "The QR code may be out of date; please call the number on the sign.",
    category: "What kind of problem", choose: "Choose a category", loadingClasses: "Loading…",
    description: "Description",
    descriptionHint: "What did you see? Where exactly (house number), since when?",
    photo: "Photo (optional)", takePhoto: "Take / choose a photo", removePhoto: "Remove",
    position: "Position", locateAgain: "Locate again",
    locating: "Finding your position…",
    gps: (m) => `Your current position will be used (about ${m} m accurate)`,
    street: (s) => `The street's position will be used: ${s}`,
    denied: (s) => `No permission to locate you; the street's position will be used: ${s}`,
    vague: (s, m) => `Your position is too vague (about ${m} m); the street's will be used: ${s}`,
    noGeo: (s) => `Cannot locate you; the street's position will be used: ${s}`,
    contact: "Contact (optional, for a follow-up call)", name: "Name",
    privacy: "Only the staff handling this case see your contact details; they are never "
      + "published.",
    submit: "Submit", submitting: "Submitting…",
    needClass: "Please choose a category.", needDescription: "Please describe the problem.",
    badPhone: "The phone number should have 7–20 digits.",
    photoTooBig: (mb) => `The photo is too large (limit ${mb} MB); choose a smaller one.`,
    photoType: "Only JPEG, PNG or WebP images can be uploaded.",
    invalid: "Please check your input.",
    fields: { photo: "The photo was refused.", event_code: "Unknown category; choose again.",
      description: "The description was refused.",
      reporter_phone: "The phone number should have 7–20 digits.",
      reporter_name: "The name is too long.", lon: "The position is not near this street.",
      lat: "The position was refused.", street_id: "This street does not exist." },
    tooMany: (m) => `Too many reports; try again in ${m} min.`,
    unavailable: "The service is unavailable; try again later (it will not be sent twice).",
    network: "No connection; tap Submit again later (it will not be sent twice).",
    failed: (code) => `Sending failed (HTTP ${code}); try again later.`,
    thanks: "Received — thank you!", reportNumber: "Report number",
    receiptStreet: (s, title, name) => name ? `${s} · passed to the chief ${name}` : s,
    movedToStreet: "You were far from this street, so the report uses the street's position.",
    nextTitle: "What happens next",
    next: ["An operator of the command center reviews it (pending), usually within a "
      + "working day.",
      "Once registered it is sent to the responsible department; the street chief follows up.",
      "When it is fixed, it is checked and closed; if you left a phone number you may be "
      + "asked how satisfied you are."],
    again: "Report another problem",
  },
};

let lang = localStorage.getItem(STORE_KEY) === "en" ? "en" : "zh";
const t = (key, ...args) => {
  const value = I18N[lang][key];
  return typeof value === "function" ? value(...args) : value;
};
const $ = (id) => document.getElementById(id);

const form = $("report-form");
let view = null; // GET /public/streets/{id}
let fix = null; // { lon, lat, accuracy } from the phone, or null
let positionNote = { key: "locating", args: [] };
let photoBlob = null; // the photo to send (the file, or a re-encoded copy)
let message = null; // { key, args, detail, field }
let receipt = null; // the last receipt, re-rendered on a language change
let busy = false;
let key = newKey();

/** A fresh idempotency key (crypto.randomUUID needs a secure context; this does not). */
function newKey() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function streetName() {
  return view?.street?.name ?? $("street-name").textContent;
}

function render() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.title = t("title", streetName());
  for (const element of document.querySelectorAll("[data-i18n]")) {
    element.textContent = t(element.dataset.i18n);
  }
  for (const element of document.querySelectorAll("[data-i18n-placeholder]")) {
    element.placeholder = t(element.dataset.i18nPlaceholder);
  }
  const toggle = $("lang-toggle");
  toggle.textContent = t("toggle");
  toggle.setAttribute("aria-label", t("toggleLabel"));
  if (!form) return;
  renderChief();
  const first = $("event-code").options[0];
  if (first && first.value === "") first.textContent = view ? t("choose") : t("loadingClasses");
  $("position-status").textContent = t(positionNote.key, ...positionNote.args);
  $("submit").textContent = t(busy ? "submitting" : "submit");
  renderMessage();
  if (receipt) renderReceipt();
}

function renderChief() {
  if (!view) return;
  const chief = view.chief;
  const parts = [chief ? t("chiefLine", chief.title, chief.name) : t("noChief")];
  if (view.phone) parts.push(t("callLine", view.phone));
  $("chief-line").textContent = parts.join(" · ");
}

function renderMessage() {
  const box = $("message");
  if (!message) {
    box.textContent = "";
    return;
  }
  const main = message.field && I18N[lang].fields[message.field] && message.key === "invalid"
    ? I18N[lang].fields[message.field] : t(message.key, ...(message.args ?? []));
  box.textContent = [main, message.detail].filter(Boolean).join("\n");
}

function showMessage(key, { args = [], detail = "", field = null } = {}) {
  message = key ? { key, args, detail, field } : null;
  renderMessage();
  for (const input of form.querySelectorAll("input, select, textarea")) {
    if (field && input.name === field) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  const input = field && form.elements.namedItem(field);
  if (input && typeof input.focus === "function") input.focus();
}

function setPosition(noteKey, ...args) {
  positionNote = { key: noteKey, args };
  $("position-status").textContent = t(noteKey, ...args);
}

/** The phone's position, if the citizen allows it and it is precise enough. */
function locate() {
  fix = null;
  if (!navigator.geolocation) {
    setPosition("noGeo", streetName());
    return;
  }
  setPosition("locating");
  navigator.geolocation.getCurrentPosition((pos) => {
    const accuracy = Math.round(pos.coords.accuracy);
    if (accuracy > MAX_ACCURACY_M) {
      setPosition("vague", streetName(), accuracy);
      return;
    }
    fix = { lon: pos.coords.longitude, lat: pos.coords.latitude, accuracy };
    setPosition("gps", accuracy);
  }, (error) => {
    setPosition(error.code === error.PERMISSION_DENIED ? "denied" : "noGeo", streetName());
  }, { enableHighAccuracy: true, timeout: 15000, maximumAge: 60000 });
}

async function loadStreet() {
  let response;
  try {
    response = await fetch(`${config.apiBase}/public/streets/${config.streetId}`,
      { headers: { Accept: "application/json" } });
  } catch {
    showMessage("network");
    return;
  }
  if (!response.ok) {
    showMessage(response.status === 429 ? "tooMany" : "failed",
      { args: [response.status === 429 ? 1 : response.status] });
    return;
  }
  view = await response.json();
  $("street-name").textContent = view.street.name;
  const select = $("event-code");
  const groups = new Map();
  for (const c of view.classes) {
    if (!groups.has(c.major_name)) {
      const group = document.createElement("optgroup");
      group.label = c.major_name;
      groups.set(c.major_name, group);
      select.append(group);
    }
    const option = document.createElement("option");
    option.value = `${c.kind}:${c.code}`;
    option.textContent = c.name;
    groups.get(c.major_name).append(option);
  }
  render();
}

/** The photo to send: as chosen when it is a JPEG/PNG/WebP within the limit, else
 * re-encoded as a JPEG of at most MAX_EDGE_PX (which also drops its EXIF data). */
async function preparePhoto(file) {
  if (ALLOWED_TYPES.includes(file.type) && file.size <= config.photoMaxBytes) return file;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    throw new Error(ALLOWED_TYPES.includes(file.type) ? "photoTooBig" : "photoType");
  }
  const scale = Math.min(1, MAX_EDGE_PX / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement("canvas");
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext("2d").drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
  if (!blob || blob.size > config.photoMaxBytes) throw new Error("photoTooBig");
  return blob;
}

async function choosePhoto() {
  const file = $("photo").files[0];
  photoBlob = null;
  $("photo-preview").hidden = true;
  $("photo-clear").hidden = true;
  if (!file) return;
  try {
    photoBlob = await preparePhoto(file);
  } catch (error) {
    $("photo").value = "";
    showMessage(error.message, { args: [Math.floor(config.photoMaxBytes / 1048576)],
      field: "photo" });
    return;
  }
  showMessage(null);
  const preview = $("photo-preview");
  preview.src = URL.createObjectURL(photoBlob);
  preview.hidden = false;
  $("photo-clear").hidden = false;
}

function clearPhoto() {
  $("photo").value = "";
  photoBlob = null;
  $("photo-preview").hidden = true;
  $("photo-clear").hidden = true;
}

function setBusy(value) {
  busy = value;
  $("submit").disabled = value;
  $("submit").textContent = t(value ? "submitting" : "submit");
}

function check() {
  if (!$("event-code").value) return { key: "needClass", field: "event_code" };
  if (!$("description").value.trim()) return { key: "needDescription", field: "description" };
  const phone = $("reporter-phone").value.replace(/[\s\-()]/g, "");
  if (phone && !/^\+?[0-9]{7,20}$/.test(phone)) return { key: "badPhone", field: "reporter_phone" };
  return null;
}

function formData(withFix) {
  const [kind, code] = $("event-code").value.split(":");
  const data = new FormData();
  data.append("street_id", String(config.streetId));
  data.append("event_kind", kind);
  data.append("event_code", code);
  data.append("description", $("description").value.trim());
  if (withFix && fix) {
    data.append("lon", fix.lon.toFixed(7));
    data.append("lat", fix.lat.toFixed(7));
  }
  const name = $("reporter-name").value.trim();
  const phone = $("reporter-phone").value.trim();
  if (name) data.append("reporter_name", name);
  if (phone) data.append("reporter_phone", phone);
  if (photoBlob) {
    const ext = { "image/png": "png", "image/webp": "webp" }[photoBlob.type] ?? "jpg";
    data.append("photo", photoBlob, photoBlob.name || `photo.${ext}`);
  }
  return data;
}

async function post(withFix) {
  const response = await fetch(`${config.apiBase}/public/street-reports`, {
    method: "POST", body: formData(withFix),
    headers: { "Idempotency-Key": key, Accept: "application/json" },
  });
  const body = await response.json().catch(() => null);
  return { response, body };
}

function detailOf(body) {
  if (typeof body?.detail === "string") return { text: body.detail, field: null };
  if (Array.isArray(body?.detail)) {
    return { text: body.detail.map((d) => d.msg).join("; "), field: body.detail[0]?.field };
  }
  return { text: "", field: null };
}

async function submit(event) {
  event.preventDefault();
  if (busy) return;
  const problem = check();
  if (problem) {
    showMessage(problem.key, { field: problem.field });
    return;
  }
  setBusy(true);
  showMessage(null);
  let sent;
  let moved = false;
  try {
    sent = await post(true);
    // A fix more than 300 m from the street: the report is about this street, so it goes
    // in at the street's own position (nothing was stored: the same key is still free).
    if (sent.response.status === 422 && fix && detailOf(sent.body).field === "lon") {
      moved = true;
      sent = await post(false);
    }
  } catch {
    setBusy(false);
    showMessage("network");
    return;
  }
  setBusy(false);
  const { response, body } = sent;
  if (response.ok) {
    receipt = { ...body, moved };
    key = newKey(); // the next report is a new one
    renderReceipt();
    form.hidden = true;
    $("receipt").hidden = false;
    $("receipt").focus();
    return;
  }
  const { text, field } = detailOf(body);
  if (response.status === 429) {
    const seconds = Number.parseInt(response.headers.get("Retry-After") ?? "", 10) || 60;
    showMessage("tooMany", { args: [Math.ceil(seconds / 60)], detail: text });
  } else if (response.status === 422 || response.status === 404 || response.status === 409) {
    if (response.status === 409) key = newKey(); // the key went with an earlier report
    showMessage("invalid", { detail: text, field });
  } else if (response.status === 503) {
    showMessage("unavailable", { detail: text });
  } else {
    showMessage("failed", { args: [response.status], detail: text });
  }
}

function renderReceipt() {
  $("receipt-id").textContent = `#${receipt.report_id}`;
  const chief = receipt.chief;
  $("receipt-street").textContent = t("receiptStreet", receipt.street?.name ?? streetName(),
    chief?.title ?? "", chief?.name ?? "");
  $("receipt-note").textContent = receipt.moved ? t("movedToStreet") : "";
  const list = $("receipt-next");
  list.replaceChildren(...I18N[lang].next.map((line) => {
    const item = document.createElement("li");
    item.textContent = line;
    return item;
  }));
}

function again() {
  receipt = null;
  form.reset();
  clearPhoto();
  showMessage(null);
  $("receipt").hidden = true;
  form.hidden = false;
  locate();
  $("event-code").focus();
}

$("lang-toggle").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem(STORE_KEY, lang);
  render();
});

render();
if (form) {
  form.addEventListener("submit", submit);
  $("photo").addEventListener("change", choosePhoto);
  $("photo-clear").addEventListener("click", clearPhoto);
  $("locate").addEventListener("click", locate);
  $("again").addEventListener("click", again);
  loadStreet().then(locate);
}
