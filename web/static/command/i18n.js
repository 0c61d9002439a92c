// Chinese first, English on request; the choice is kept in localStorage.

import { createI18n } from "../i18n.js";

const ZH = {
  title: "GridOps 指挥中心", toggle: "EN", toggleLabel: "English", supervise: "街巷长考核", planner: "网格规划",
  signOut: "退出", signOutFailed: (m) => `退出失败：${m}`,
  signedOut: "登录已失效，正在转到登录页…",
  roles: { admin: "管理员", operator: "受理员", dispatcher: "调度员", street_chief: "街巷长",
    planner: "规划员", viewer: "只读" },
  loading: "正在加载边界…", loaded: (n) => `已加载 ${n} 个边界`,
  empty: "暂无边界数据：运行 `make demo` 生成示范城市", failed: (m) => `加载失败：${m}`,
  live: { connecting: "连接中", open: "实时", closed: "已断开", polling: "轮询" },
  dash: { reported: "今日上报", dispatched: "今日派遣", closed: "今日结案", open: "在办",
    pending: "待受理", overdue: "超期", joint: "联合哨", response_rate: "响应率",
    resolution_rate: "解决率", satisfaction_rate: "满意率", topStreets: "在办最多的街道",
    ratesNote: (d, n) => `近 ${d} 天 ${n} 次回访` },
  layers: { title: "图层", basemap: "底图", districts: "区", streets: "街道",
    communities: "社区", grids: "网格", buildings: "楼栋", lanes: "街巷",
    joint_zones: "联合哨区", incidents: "事件", teams: "队伍" },
  filters: { title: "筛选", status: "状态", eventCode: "类别", source: "来源",
    street: "街道", grid: "网格代码", since: "时间", joint: "联合哨", overdue: "超期",
    followMap: "随地图范围", any: "全部", yes: "是", no: "否", reset: "清除",
    today: "今天", day: "24 小时内", week: "7 天内", month: "30 天内" },
  list: { title: "事件列表", more: "加载更多", none: "没有符合条件的事件",
    count: (n, more) => `${n}${more ? "+" : ""} 件` },
  status: { pending: "待受理", registered: "立案", void: "作废", dispatched: "派遣",
    handling: "处置中", feedback: "处置反馈", verifying: "核查", closed: "结案", ledger: "挂账" },
  source: { "12345": "12345 热线", grid_worker: "网格员", street_chief: "街巷长",
    steward: "小巷管家", citizen: "市民", sensor: "感知设备", other: "其他" },
  teamStatus: { available: "可用", busy: "忙碌", off_duty: "下班", out_of_service: "停用" },
  dispatchStatus: { dispatched: "已派遣", accepted: "已接单", en_route: "在途",
    on_scene: "已报到", done: "完成", declined: "拒绝", cancelled: "取消" },
  stage: { accept: "受理", dispatch: "派遣", handle: "处置", verify: "核查" },
  actions: { accept: "立案", reject: "不立案/作废", start: "处置中", feedback: "处置反馈",
    verify: "核查", close: "结案", rework: "返工", return: "退回", ledger: "挂账",
    reopen: "重新立案", supervise: "督办" },
  card: { close: "关闭", placement: "属地", district: "区", street: "街道",
    community: "社区", grid: "网格", building: "楼栋", share: "占比", chief: "街巷长",
    segment: "街巷", joint: "联合哨", notJoint: "否", deadlines: "时限",
    due: "截止", left: "剩余", overdueBy: "已超期", noDeadline: "无运行中的时限",
    nearOverdue: "即将超期", timeline: "案件经过", recommend: "推荐队伍",
    eta: "预计", minutes: (m) => `${m} 分钟`, send: "派遣", km: (k) => `${k} 公里`,
    dispatch: "派遣所选队伍", dispatches: "已派队伍", whistle: "吹哨",
    whistleKind: "哨种", departments: "召集部门", blow: "吹哨报到", actions: "办理",
    reason: "原因", outOfRemit: "非本部门职责", extension: "申请延期", value: "时长",
    unit: "单位", ask: "申请", approve: "批准", reject: "驳回", pendingExt: "待审批延期",
    supervised: "督办中", reporter: "报告人", description: "描述", reported: "上报",
    address: "地址", none: "—", side: (name) => `辖区：${name}`, noTeams: "暂无推荐",
    done: "已完成", needReason: "请填写原因", missingSide: (s) => `缺少 ${s} 的部门`,
    step: "更新", units: { work_hours: "工作时", work_days: "工作日", hours: "小时" },
    kinds: { joint: "联合哨", enforcement: "综合执法哨", priority: "重点工作哨",
      emergency: "应急处置哨" } },
  toast: { created: (id, name) => `新事件 #${id} ${name ?? ""}`, ok: "已完成",
    failed: (m) => `操作失败：${m}` },
};

const EN = {
  title: "GridOps command center", toggle: "中文", toggleLabel: "中文",
  supervise: "Street chiefs",
  planner: "Grid planning",
  signOut: "Sign out", signOutFailed: (m) => `Sign-out failed: ${m}`,
  signedOut: "Signed out; going to the sign-in page…",
  roles: { admin: "admin", operator: "operator", dispatcher: "dispatcher",
    street_chief: "street chief", planner: "planner", viewer: "viewer" },
  loading: "Loading boundaries…", loaded: (n) => `${n} boundaries loaded`,
  empty: "No boundary data yet: run `make demo` to build the demo city",
  failed: (m) => `Loading failed: ${m}`,
  live: { connecting: "connecting", open: "live", closed: "disconnected", polling: "polling" },
  dash: { reported: "Reported today", dispatched: "Dispatched today", closed: "Closed today",
    open: "Open", pending: "Pending", overdue: "Overdue", joint: "Joint",
    response_rate: "Response", resolution_rate: "Resolution", satisfaction_rate: "Satisfaction",
    topStreets: "Streets with most open cases",
    ratesNote: (d, n) => `${n} follow-ups in ${d} days` },
  layers: { title: "Layers", basemap: "Base map", districts: "Districts", streets: "Streets",
    communities: "Communities", grids: "Grids", buildings: "Buildings", lanes: "Lanes",
    joint_zones: "Joint zones", incidents: "Incidents", teams: "Teams" },
  filters: { title: "Filters", status: "State", eventCode: "Class", source: "Source",
    street: "Street", grid: "Grid code", since: "Time", joint: "Joint", overdue: "Overdue",
    followMap: "Follow the map", any: "Any", yes: "Yes", no: "No", reset: "Clear",
    today: "Today", day: "Last 24 h", week: "Last 7 days", month: "Last 30 days" },
  list: { title: "Incidents", more: "Load more", none: "No incidents match",
    count: (n, more) => `${n}${more ? "+" : ""} cases` },
  status: { pending: "Pending", registered: "Registered", void: "Void",
    dispatched: "Dispatched", handling: "Handling", feedback: "Fed back",
    verifying: "Verifying", closed: "Closed", ledger: "Ledger" },
  source: { "12345": "12345 hotline", grid_worker: "Grid worker", street_chief: "Street chief",
    steward: "Steward", citizen: "Citizen", sensor: "Sensor", other: "Other" },
  teamStatus: { available: "available", busy: "busy", off_duty: "off duty",
    out_of_service: "out of service" },
  dispatchStatus: { dispatched: "dispatched", accepted: "accepted", en_route: "en route",
    on_scene: "on scene", done: "done", declined: "declined", cancelled: "cancelled" },
  stage: { accept: "Accept", dispatch: "Dispatch", handle: "Handle", verify: "Verify" },
  actions: { accept: "Register (立案)", reject: "Reject", start: "Start handling",
    feedback: "Report handled", verify: "Verify", close: "Close (结案)", rework: "Rework",
    return: "Return (退回)", ledger: "Ledger (挂账)", reopen: "Reopen", supervise: "Supervise (督办)" },
  card: { close: "Close", placement: "Placement", district: "District", street: "Street",
    community: "Community", grid: "Grid", building: "Building", share: "share",
    chief: "Street chief", segment: "Lane", joint: "Joint case",
    notJoint: "no", deadlines: "Deadlines", due: "due", left: "left",
    overdueBy: "overdue by", noDeadline: "no running deadline", nearOverdue: "near overdue",
    timeline: "Timeline", recommend: "Recommended teams", eta: "ETA",
    minutes: (m) => `${m} min`, send: "Send", km: (k) => `${k} km`, dispatch: "Dispatch selected",
    dispatches: "Teams sent", whistle: "Whistle", whistleKind: "Kind",
    departments: "Departments summoned", blow: "Blow the whistle", actions: "Actions",
    reason: "Reason", outOfRemit: "not in the department's remit",
    extension: "Ask for more time", value: "Amount", unit: "Unit", ask: "Ask",
    approve: "Approve", reject: "Reject", pendingExt: "Extension waiting",
    supervised: "supervised", reporter: "Reporter", description: "Description",
    reported: "Reported", address: "Address", none: "—", side: (name) => `Side: ${name}`,
    noTeams: "No team to recommend", done: "Done", needReason: "Give a reason",
    missingSide: (s) => `no department from ${s}`, step: "Update",
    units: { work_hours: "working hours", work_days: "working days", hours: "hours" },
    kinds: { joint: "Joint (联合哨)", enforcement: "Enforcement", priority: "Priority",
      emergency: "Emergency" } },
  toast: { created: (id, name) => `New incident #${id} ${name ?? ""}`, ok: "Done",
    failed: (m) => `Failed: ${m}` },
};

const i18n = createI18n({ zh: ZH, en: EN }, { title: (t) => t("title") });
export const { applyStatic, currentLang, label, onLanguage, setLang, t, toggleLang } = i18n;

/** Local time "MM-DD HH:mm" (Beijing time in the demo: the browser's zone). */
export function shortTime(value) {
  if (!value) return "—";
  const d = new Date(value);
  const pad = (n) => String(n).padStart(2, "0");
  return `${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** "2 h 05 min" style duration of `seconds` (absolute value). */
export function duration(seconds) {
  const s = Math.abs(Math.round(seconds));
  const d = Math.floor(s / 86400);
  const hh = Math.floor((s % 86400) / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  const zh = currentLang() === "zh";
  if (d) return zh ? `${d}天${hh}时` : `${d} d ${hh} h`;
  if (hh) return zh ? `${hh}时${String(mm).padStart(2, "0")}分` : `${hh} h ${mm} min`;
  return zh ? `${mm}分${String(ss).padStart(2, "0")}秒` : `${mm} min ${ss} s`;
}
