// Chinese first, English on request; the choice is kept in localStorage "gridops.lang"
// (shared with the login and command pages).

import { createI18n } from "../i18n.js";

const duration = (s, [h, m, sec]) => {
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (hours) return `${hours} ${h} ${minutes} ${m}`;
  return minutes ? `${minutes} ${m}` : `${Math.round(s)} ${sec}`;
};

const ZH = {
  toggle: "EN", toggleLabel: "English", signOut: "退出",
  signOutPending: (n) => `还有 ${n} 项未同步，它们会留在本机，下次登录后继续同步。仍要退出吗？`,
  signOutFailed: (m) => `退出失败：${m}`,
  notForYou: { title: "巡查页面仅供街巷长和小巷管家使用",
    body: "您的账号没有街巷长（street_chief）角色。", command: "前往指挥中心" },
  sync: { synced: "已同步", queued: (n) => `待同步 ${n}`, offline: "离线", online: "在线", failed: (n) => `失败 ${n}`,
    sending: "同步中", label: (n, online) => `${online ? "在线" : "离线"}，待同步 ${n} 项` },
  failures: { title: (n) => `${n} 项同步失败（不会自动重试）`, retry: "重试", drop: "丢弃",
    dropConfirm: "丢弃后这项记录将不会上传。确定吗？" },
  kinds: { start: "开始巡查", fix: "定位点", check: "清单项", report: "问题上报",
    photo: "照片", end: "结束巡查" },
  streets: { title: "我的街巷", start: "开始巡查", none: "目前没有分配给您的街巷。",
    done: "已巡查", partly: "部分巡查", notYet: "未巡查",
    chosen: (name) => `已选择：${name}`,
    todayCoverage: (p) => `今日覆盖 ${p}`, offlineCache: "离线：显示的是上次同步的数据" },
  roles: { street_chief: "街长", alley_chief: "巷长", steward: "小巷管家" },
  patrol: { fixes: "定位点", distance: "距离", coverage: "覆盖", accuracy: "精度",
    checklist: "巡查清单", report: "上报问题", end: "结束巡查",
    endConfirm: (n) => (n ? `还有 ${n} 项清单未勾选。确定结束巡查吗？` : "确定结束巡查吗？"),
    geoWaiting: "定位中…", geoOk: "定位正常", geoDenied: "无法定位：请允许本页面使用位置信息",
    geoError: (m) => `定位出错：${m}`, geoUnsupported: "此浏览器不支持定位",
    resumed: "已恢复进行中的巡查", started: "巡查已开始", notSynced: "（待同步）" },
  check: { ok: "正常", problem: "有问题", note: "备注（可选）", saved: "已记录",
    groupNone: "十无", groupHave: "十有", done: (a, b) => `已检查 ${a}/${b}` },
  report: { class: "问题类别", pick: "请选择类别", description: "问题描述", photo: "现场照片",
    takePhoto: "拍照 / 选择照片", noPhoto: "未选择照片",
    submit: "提交上报", position: (lon, lat, moved) => `位置：${lon}, ${lat}（${moved
      ? "已手动调整" : "最新定位"}）· 拖动红色标记或点地图可调整`,
    noPosition: "还没有定位：点地图选择问题位置", needClass: "请选择问题类别",
    needDescription: "请填写问题描述", needPosition: "请在地图上选择问题位置",
    photoTooBig: (mb) => `照片太大（上限 ${mb} MB）`,
    queued: "已加入上报队列", sent: (id) => `已上报，事件 #${id}`, waiting: "待同步",
    event: "事件", component: "部件", withPhoto: "含照片" },
  summary: { title: "巡查小结", back: "返回我的街巷", duration: "时长", distance: "距离",
    coverage: "街巷覆盖率", threshold: (p) => `（达标线 ${p}）`, checks: "巡查清单",
    checksValue: (done, problems, total) => `已检查 ${done}/${total}，问题 ${problems} 项`,
    reports: "上报问题", fixes: "定位点", fixesValue: (t, k) => `${t} 个（有效 ${k}）`,
    pending: "部分记录还在等待同步，小结为本机估算，同步后自动更新。",
    final: "已同步，小结来自服务器。" },
  errors: { network: "网络不可用，稍后自动重试", http: (s) => `HTTP ${s}`,
    loadFailed: (m) => `加载失败：${m}`, noData: "离线且本机没有缓存的数据，请联网后刷新。",
    startFailed: (m) => `巡查未能开始：${m}`, dependsOn: (m) => `依赖的记录失败：${m}`,
    signedOut: "登录已失效，正在转到登录页…（未同步的记录保留在本机）" },
  duration: (s) => duration(s, ["小时", "分", "秒"]),
};

const EN = {
  toggle: "中文", toggleLabel: "中文", signOut: "Sign out",
  signOutPending: (n) => `${n} items are not synced yet; they stay on this phone and sync `
    + "after you sign in again. Sign out anyway?",
  signOutFailed: (m) => `Sign-out failed: ${m}`,
  notForYou: { title: "The patrol page is for street chiefs and stewards",
    body: "Your account does not have the street_chief role.", command: "Go to the command center" },
  sync: { synced: "Synced", queued: (n) => `${n} queued`, offline: "offline", online: "online",
    failed: (n) => `${n} failed`,
    sending: "syncing", label: (n, online) => `${online ? "online" : "offline"}, ${n} queued` },
  failures: { title: (n) => `${n} item${n === 1 ? "" : "s"} failed to sync (not retried)`,
    retry: "Retry", drop: "Discard", dropConfirm: "The record will never be uploaded. Discard it?" },
  kinds: { start: "Start", fix: "GPS fix", check: "Checklist item", report: "Report",
    photo: "Photo", end: "End" },
  streets: { title: "My streets", start: "Start patrol", none: "No street is assigned to you.",
    done: "patrolled", partly: "partly", notYet: "not yet",
    chosen: (name) => `Selected: ${name}`,
    todayCoverage: (p) => `today ${p} covered`, offlineCache: "Offline: showing the last synced data" },
  roles: { street_chief: "street chief", alley_chief: "alley chief", steward: "steward" },
  patrol: { fixes: "Fixes", distance: "Distance", coverage: "Coverage", accuracy: "Accuracy",
    checklist: "Checklist", report: "Report", end: "End patrol",
    endConfirm: (n) => (n ? `${n} checklist items are not ticked. End the patrol?`
      : "End the patrol?"),
    geoWaiting: "locating…", geoOk: "GPS OK", geoDenied: "No location: allow this page to use it",
    geoError: (m) => `GPS error: ${m}`, geoUnsupported: "This browser has no geolocation",
    resumed: "Patrol resumed", started: "Patrol started", notSynced: " (not synced)" },
  check: { ok: "OK", problem: "Problem", note: "Note (optional)", saved: "recorded",
    groupNone: "十无 (ten nos)", groupHave: "十有 (ten haves)",
    done: (a, b) => `${a}/${b} checked` },
  report: { class: "Class", pick: "Choose a class", description: "Description",
    photo: "Photo", takePhoto: "Take / choose a photo", noPhoto: "no photo", submit: "Submit report",
    position: (lon, lat, moved) => `Position: ${lon}, ${lat} (${moved ? "moved by hand"
      : "latest fix"}) · drag the red marker or tap the map to move it`,
    noPosition: "No fix yet: tap the map where the problem is",
    needClass: "Choose a class", needDescription: "Describe the problem",
    needPosition: "Tap the map where the problem is",
    photoTooBig: (mb) => `The photo is too big (limit ${mb} MB)`,
    queued: "Report queued", sent: (id) => `Reported: incident #${id}`, waiting: "queued",
    event: "Event", component: "Component", withPhoto: "with photo" },
  summary: { title: "Patrol summary", back: "Back to my streets", duration: "Duration",
    distance: "Distance", coverage: "Street coverage", threshold: (p) => ` (target ${p})`,
    checks: "Checklist",
    checksValue: (done, problems, total) => `${done}/${total} checked, ${problems} problems`,
    reports: "Reports", fixes: "Fixes", fixesValue: (t, k) => `${t} (${k} kept)`,
    pending: "Some records are still waiting to sync: this is the phone's estimate, updated "
      + "once synced.",
    final: "Synced: the summary comes from the server." },
  errors: { network: "No network; retrying automatically", http: (s) => `HTTP ${s}`,
    loadFailed: (m) => `Loading failed: ${m}`,
    noData: "Offline and nothing cached on this phone: go online and reload.",
    startFailed: (m) => `The patrol could not start: ${m}`,
    dependsOn: (m) => `An earlier record failed: ${m}`,
    signedOut: "Signed out; going to the sign-in page… (unsynced records stay on this phone)" },
  duration: (s) => duration(s, ["h", "min", "s"]),
};

const i18n = createI18n({ zh: ZH, en: EN });
export const { applyStatic, currentLang, label, onLanguage, setLang, t, toggleLang } = i18n;

export function fmtLength(m) {
  if (m === null || m === undefined || Number.isNaN(m)) return "—";
  return m >= 1000 ? `${(m / 1000).toFixed(2)} km` : `${Math.round(m)} m`;
}

export const fmtPercent = (share) => (share === null || share === undefined ? "—"
  : `${Math.round(share * 100)}%`);
