// Texts of the supervisor page: Chinese first, English on request. The choice is shared
// with the command page (localStorage "gridops.lang").

import { createI18n } from "../i18n.js";

const ZH = {
  title: "街巷长考核", toggle: "EN", toggleLabel: "English", signOut: "退出",
  nav: { command: "指挥中心" },
  controls: { period: "周期", date: "日期", streetOffice: "街道", csv: "下载 CSV",
    allOffices: "全部（我的范围）" },
  period: { day: "日巡", week: "周查", month: "月评" },
  periodText: (p) => `${p.from} 至 ${p.to}，计入 ${p.working_days} 个工作日（截至 ${p.through}）`,
  ranking: { chiefs: "街巷长排名", stewards: "小巷管家排名" },
  col: { rank: "排名", name: "姓名", role: "角色", streets: "街巷", compliance: "日巡达标率",
    coverage: "平均覆盖率", found: "发现 / 他人上报", score: "得分", badge: "" },
  role: { street_chief: "街长", alley_chief: "巷长", steward: "小巷管家" },
  excellent: "月度优秀", excellentSteward: "优秀管家", excellentPeriod: "本期优秀",
  worklog: (name) => `${name} 的工作日志`,
  none: "—", empty: "该范围内没有街巷长", loading: "加载中…", failed: (m) => `加载失败：${m}`,
  loaded: (n, m) => `${n} 名街巷长，${m} 名小巷管家`,
  days: (c, r) => `${c}/${r} 天`,
  settings: { title: "考核参数", radius: "覆盖半径", threshold: "日巡达标线",
    weights: "权重（达标/覆盖/发现）", difficulty: "难度系数权重（长度/密度/结构）",
    window: "难度统计窗口", range: "难度系数范围", excellent: "优秀：前比例 / 最低分" },
  map: { title: "街巷覆盖地图", legend: "图例", covered: "全部达标", partial: "部分达标",
    uncovered: "未巡查达标", none: "无工作日", chief: "街巷长", stewards: "小巷管家",
    compliance: "达标率", coverage: "覆盖率", difficulty: "难度系数", count: (n) => `${n} 条` },
};

const EN = {
  title: "Street-chief evaluation", toggle: "中文", toggleLabel: "中文", signOut: "Sign out",
  nav: { command: "Command center" },
  controls: { period: "Period", date: "Date", streetOffice: "Street office", csv: "Download CSV",
    allOffices: "All (my scope)" },
  period: { day: "Day (日巡)", week: "Week (周查)", month: "Month (月评)" },
  periodText: (p) => `${p.from} to ${p.to}: ${p.working_days} working days counted (through ${p.through})`,
  ranking: { chiefs: "Street chiefs", stewards: "Stewards (小巷管家)" },
  col: { rank: "Rank", name: "Name", role: "Role", streets: "Streets",
    compliance: "Daily compliance", coverage: "Mean coverage", found: "Found / by others",
    score: "Score", badge: "" },
  role: { street_chief: "street chief", alley_chief: "alley chief", steward: "steward" },
  excellent: "Chief of the month", excellentSteward: "Top steward", excellentPeriod: "Top",
  worklog: (name) => `Work log of ${name}`,
  none: "—", empty: "No street chiefs in this scope", loading: "Loading…",
  failed: (m) => `Loading failed: ${m}`,
  loaded: (n, m) => `${n} street chiefs, ${m} stewards`,
  days: (c, r) => `${c}/${r} days`,
  settings: { title: "Evaluation settings", radius: "Coverage radius",
    threshold: "Daily threshold", weights: "Weights (compliance/coverage/discovery)",
    difficulty: "Difficulty weights (length/density/mix)", window: "Difficulty window",
    range: "Difficulty range", excellent: "Excellent: top share / min score" },
  map: { title: "Street coverage map", legend: "Legend", covered: "Covered every day",
    partial: "Partly covered", uncovered: "Not covered", none: "No working day",
    chief: "Chief", stewards: "Stewards", compliance: "Compliance", coverage: "Coverage",
    difficulty: "Difficulty", count: (n) => `${n}` },
};

const i18n = createI18n({ zh: ZH, en: EN }, { title: (t) => `${t("title")} · GridOps` });
export const { applyStatic, currentLang, label, onLanguage, setLang, t, toggleLang } = i18n;

/** 0.8734 → "87%" (or "—"). */
export const pct = (value) => (value === null || value === undefined ? "—" : `${Math.round(value * 100)}%`);
