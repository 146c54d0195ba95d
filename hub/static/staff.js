const TEXT = {
  zh: { title: "社区中脑 · 物业工作台", devices: "设备", building: "楼栋", class: "类别", all: "全部",
        device: "设备", name: "名称", status: "状态", values: "最新读数", alerts: "告警", time: "时间",
        metric: "指标", kind: "类型", severity: "级别", score: "评分", online: "在线", offline: "离线",
        total: "设备总数", nowOnline: "在线", alertCount: "告警数", other: "English",
        user: "用户名", password: "密码", login: "登录", logout: "退出", orders: "工单",
        loginForOrders: "登录后查看设备、告警与工单。", chart: "读数曲线", note: "处理说明", overdue: "超时",
        due: "时限", assignee: "处理人", none: "无", notices: "城市通知", expired: "已过期", egress: "出境记录",
        normal: "常态模型", learning: "学习中", budget: "误报预算", perWeek: "次/周", spent: "已用",
        levels: { info: "通知", warning: "提醒", emergency: "紧急" },
        columns: { open: "待接单", claimed: "已接单", in_progress: "处理中", resolved: "待验收", verified: "已完成" },
        actions: { claim: "抢单", start: "开始处理", resolve: "办结", verify: "验收", reopen: "退回" },
        roles: { volunteer: "志愿者", staff: "物业人员", supervisor: "主管", admin: "管理员" },
        kinds: { fire: "火情式升温", spike: "突变", stuck: "数值卡滞", drift: "漂移", threshold: "超出阈值", rate_of_change: "变化过快", offline: "设备离线", water_leak: "疑似漏水", car_stuck: "电梯困停", door_fault: "电梯门故障", combined: "组合规则", unusual: "偏离常态", resident_emergency: "居民紧急求助" },
        sev: { critical: "紧急", warning: "警告", info: "提示" },
        quality: { bad: "数据异常", uncertain: "数据存疑", comm_error: "通信失败", out_of_range: "超出量程",
                   sensor_fault: "传感器故障", stale: "未刷新", substituted: "替代值" } },
  en: { title: "Community mid-brain · Staff console", devices: "Devices", building: "Building", class: "Class",
        all: "All", device: "Device", name: "Name", status: "Status", values: "Latest values", alerts: "Alerts",
        time: "Time", metric: "Metric", kind: "Kind", severity: "Severity", score: "Score", online: "online",
        offline: "offline", total: "Devices", nowOnline: "Online", alertCount: "Alerts", other: "中文",
        user: "User", password: "Password", login: "Log in", logout: "Log out", orders: "Work orders",
        loginForOrders: "Log in to see devices, alerts and work orders.", chart: "Readings", note: "What was done",
        overdue: "overdue", due: "due", assignee: "assignee", none: "none", notices: "City notices", expired: "expired", egress: "What left the community",
        normal: "Learned normal", learning: "learning", budget: "False-alarm budget", perWeek: "/week", spent: "spent",
        levels: { info: "notice", warning: "warning", emergency: "emergency" },
        columns: { open: "Open", claimed: "Claimed", in_progress: "In progress", resolved: "To verify", verified: "Done" },
        actions: { claim: "Claim", start: "Start", resolve: "Resolve", verify: "Verify", reopen: "Reopen" },
        roles: { volunteer: "volunteer", staff: "staff", supervisor: "supervisor", admin: "admin" },
        kinds: { fire: "fire-like rise", spike: "spike", stuck: "stuck sensor", drift: "drift", threshold: "threshold", rate_of_change: "rate of change", offline: "device offline", water_leak: "suspected leak", car_stuck: "car stuck", door_fault: "door fault", combined: "combined rule", unusual: "unusual", resident_emergency: "resident emergency" },
        sev: { critical: "critical", warning: "warning", info: "info" },
        quality: { bad: "bad", uncertain: "uncertain", comm_error: "not read", out_of_range: "out of range",
                   sensor_fault: "sensor fault", stale: "not refreshed", substituted: "substituted" } },
};
const RANK = { volunteer: 0, staff: 1, supervisor: 2, admin: 3 };
let lang = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh";
let me = null;          // { name, role } once logged in
let allDevices = [];
let chartDevice = null;
let boardKey = "";       // what the board shows now, to redraw only on a change
const t = (k) => TEXT[lang][k];
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const $ = (id) => document.getElementById(id);

function applyLang() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((el) => { el.placeholder = t(el.dataset.i18nPlaceholder); });
  document.title = t("title");
  $("lang").textContent = t("other");
  showWho();
}

function showWho() {
  $("login-form").hidden = !!me;
  $("who").hidden = !me;
  $("console").hidden = !me;
  $("board").hidden = !me;
  $("orders-hint").hidden = !!me;
  if (me) $("who-name").textContent = `${me.name} (${TEXT[lang].roles[me.role] || me.role})`;
}

// Every read needs a login: a 401 means the session ended (logged out elsewhere, expired).
async function getJson(url, fallback) {
  const r = await fetch(url);
  if (r.status === 401) { me = null; showWho(); stopStream(); }
  return r.ok ? r.json() : fallback;
}

async function refresh() {
  if (!me) return;
  const q = new URLSearchParams();
  if ($("f-building").value) q.set("building", $("f-building").value);
  if ($("f-class").value) q.set("class", $("f-class").value);
  const filtered = q.toString() !== "";  // unfiltered, the list is the whole set: fetch it once
  const [all, alerts, devices, notices, normals] = await Promise.all([
    getJson("/api/devices", []),
    getJson("/api/alerts?limit=50", []),
    filtered ? getJson("/api/devices?" + q, []) : null,
    getJson("/api/notices?limit=20", []),
    getJson("/api/normals", []),
  ]).then(([a, b, c, d, e]) => [a, b, c || a, d, e]);
  const normalOf = Object.fromEntries(normals.map((n) => [n.device, n]));
  $("notices-panel").hidden = notices.length === 0;
  $("notices").innerHTML = notices.map((n) => `
    <li class="${esc(n.level)}${n.expired ? " expired" : ""}" data-seq="${n.seq}"><b>[${esc(TEXT[lang].levels[n.level] || n.level)}]</b>
    ${esc(n.title)}<div>${esc(n.body)}</div><div class="meta">${new Date(n.issued_at * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")}${n.expired ? " · " + t("expired") : ""}</div></li>`).join("");
  allDevices = all;
  fillFilters(all);
  document.querySelector("#devices tbody").innerHTML = devices.map((d) => `
    <tr data-device="${esc(d.id)}"><td>${esc(d.id)}</td><td>${esc(d.name)}</td><td>${esc(d.building)}</td>
    <td>${esc(lang === "zh" ? d.class_zh : d.class_en)}</td>
    <td class="${d.online ? "online" : "offline"}">${t(d.online ? "online" : "offline")}</td>
    <td>${Object.entries(d.last_values).map(([k, v]) => {
      const m = d.metrics[k] || { zh: k, en: k, unit: "" };
      const q = (d.last_quality || {})[k];
      const text = esc(`${m[lang]} ${+Number(v).toFixed(2)}${m.unit ? " " + m.unit : ""}`);
      // A value that is not good is shown, and says why (it is left out of windows and alerts).
      return q ? `<span class="q-${esc(q.level)}" data-quality="${esc(q.reason)}">${text}` +
        ` (${esc(TEXT[lang].quality[q.level])}: ${esc(TEXT[lang].quality[q.reason] || q.reason)})</span>` : text;
    }).join(" · ")}</td><td class="normal">${normalText(normalOf[d.id])}</td></tr>`).join("");
  document.querySelector("#alerts tbody").innerHTML = alerts.map((a) => `
    <tr><td>${new Date(a.raised_at * 1000).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB")}</td><td>${esc(a.device)}</td><td>${esc(metricLabel(a.device, a.metric))}</td>
    <td>${esc(TEXT[lang].kinds[a.kind] || a.kind)}</td><td class="${esc(a.severity)}">${esc(TEXT[lang].sev[a.severity] || a.severity)}</td>
    <td>${a.score.toFixed(2)}</td></tr>`).join("");
  const online = all.filter((d) => d.online).length;
  $("summary").innerHTML =
    `<span>${t("total")}: <b id="n-devices">${all.length}</b></span><span>${t("nowOnline")}: <b id="n-online">${online}</b></span>` +
    `<span>${t("alertCount")}: <b id="n-alerts">${alerts.length}</b></span>`;
  if (me) await refreshBoard();
  if (chartDevice) await drawChart();
}

// A device's learned normal: its warm-up, or its false-alarm budget and what it has spent.
function normalText(n) {
  if (!n) return "—";
  const budget = `${t("budget")} ${+n.budget.alerts_per_week.toFixed(2)}${lang === "zh" ? " " : ""}${t("perWeek")} · ${t("spent")} ${n.spent}`;
  return esc(n.state === "active" ? budget : `${t("learning")} ${n.warmup.readings}/${n.warmup.of} · ${budget}`);
}

function metricLabel(deviceId, metric) {
  const d = allDevices.find((x) => x.id === deviceId);
  // Several metrics together (a pattern detector's, a learned normal's): "running+floor".
  return metric.split("+").map((m) => (d && d.metrics[m] && d.metrics[m][lang]) || m).join(" + ");
}

function fillFilters(all) {
  for (const [id, key] of [["f-building", "building"], ["f-class", "class"]]) {
    const sel = $(id);
    const have = new Set([...sel.options].map((o) => o.value));
    for (const v of [...new Set(all.map((d) => d[key]))].sort()) {
      if (!have.has(v)) sel.add(new Option(v, v));
    }
  }
}

// -- work-order board ---------------------------------------------------------------

function actionsFor(o) {
  const mine = me && o.assignee === me.name;
  const sup = me && RANK[me.role] >= RANK.supervisor;
  const out = [];
  if (o.status === "open" || o.status === "reopened") out.push("claim");
  if (o.status === "claimed" && (mine || sup)) out.push("start");
  if ((o.status === "claimed" || o.status === "in_progress") && (mine || sup)) out.push("resolve");
  if (o.status === "resolved" && sup) out.push("verify", "reopen");
  return out;
}

async function refreshBoard() {
  const r = await fetch("/api/work-orders?limit=200");
  if (r.status === 401) { me = null; showWho(); return; }
  const orders = await r.json();
  const key = lang + JSON.stringify(orders);
  if (key === boardKey) return;  // unchanged: leave what someone is typing alone
  boardKey = key;
  // A change elsewhere must not wipe a note being typed: keep notes and focus across the redraw.
  const notes = {};
  document.querySelectorAll("#board [data-order] .note").forEach((el) => { notes[el.closest("[data-order]").dataset.order] = el.value; });
  const focused = document.activeElement && document.activeElement.classList.contains("note")
    ? document.activeElement.closest("[data-order]").dataset.order : null;
  const column = (s) => (s === "reopened" ? "open" : s);
  $("board").innerHTML = Object.entries(TEXT[lang].columns).map(([status, title]) => `
    <div class="column" data-status="${status}"><h3>${esc(title)}</h3>
    ${orders.filter((o) => column(o.status) === status).map((o) => `
      <div class="card${o.overdue ? " overdue" : ""}" data-order="${o.id}" data-state="${esc(o.status)}">
        <div><b>#${o.id}</b> ${esc(o.title)} ${o.overdue ? `<span class="badge">${t("overdue")}</span>` : ""}</div>
        <div class="meta">${esc(lang === "zh" ? o.category_zh : o.category_en)} · ${esc(o.building || "")} ${esc(o.device || "")}</div>
        <div class="meta">${t("assignee")}: <span class="assignee">${esc(o.assignee || t("none"))}</span> · ${t("due")} ${new Date(o.due_at * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB")}</div>
        ${actionsFor(o).some((a) => a === "resolve" || a === "reopen") ? `<input class="note" placeholder="${esc(t("note"))}">` : ""}
        ${actionsFor(o).map((a) => `<button type="button" data-action="${a}">${esc(TEXT[lang].actions[a])}</button>`).join("")}
      </div>`).join("")}
    </div>`).join("");
  for (const [id, value] of Object.entries(notes)) {
    const el = document.querySelector(`#board [data-order="${id}"] .note`);
    if (el) { el.value = value; if (id === focused) el.focus(); }
  }
}

$("board").addEventListener("click", async (ev) => {
  const button = ev.target.closest("button[data-action]");
  if (!button) return;
  const card = button.closest("[data-order]");
  const note = card.querySelector(".note");
  const r = await fetch(`/api/work-orders/${card.dataset.order}/${button.dataset.action}`, {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ note: note ? note.value : "" }),
  });
  if (!r.ok) alert((await r.json()).detail);
  boardKey = "";
  await refreshBoard();
});

// -- telemetry chart ------------------------------------------------------------------

document.querySelector("#devices tbody").addEventListener("click", async (ev) => {
  const row = ev.target.closest("tr[data-device]");
  if (!row) return;
  chartDevice = row.dataset.device;
  const d = allDevices.find((x) => x.id === chartDevice);
  $("chart-metric").innerHTML = Object.entries(d.metrics).map(([k, m]) => `<option value="${esc(k)}">${esc(m[lang])}</option>`).join("");
  $("chart-device").textContent = `${d.name || d.id} (${d.id})`;
  $("chart-panel").classList.add("shown");
  await drawChart();
});
$("chart-metric").addEventListener("change", drawChart);

async function drawChart() {
  const metric = $("chart-metric").value;
  const q = new URLSearchParams({ device: chartDevice, metric, limit: "300" });
  const rows = (await getJson("/api/telemetry?" + q, [])).filter((r) => r.metric === metric);
  const svg = $("chart");
  if (!rows.length) { svg.innerHTML = ""; $("chart-range").textContent = ""; return; }
  rows.sort((a, b) => a.ts - b.ts);
  const xs = rows.map((r) => r.ts), ys = rows.map((r) => r.value);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const sx = (x) => (x1 > x0 ? ((x - x0) / (x1 - x0)) * 590 + 5 : 300);
  const sy = (y) => (y1 > y0 ? 175 - ((y - y0) / (y1 - y0)) * 170 : 90);
  const points = rows.map((r) => `${sx(r.ts).toFixed(1)},${sy(r.value).toFixed(1)}`).join(" ");
  svg.innerHTML = `<polyline id="chart-line" fill="none" stroke="#2563eb" stroke-width="2" vector-effect="non-scaling-stroke" points="${points}"/>`;
  const unit = (allDevices.find((x) => x.id === chartDevice).metrics[metric] || {}).unit || "";
  $("chart-range").textContent = `${rows.length} · ${+y0.toFixed(2)} – ${+y1.toFixed(2)} ${unit}`;
}

// -- login and live updates -------------------------------------------------------------

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const r = await fetch("/api/login", { method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: $("login-name").value, password: $("login-password").value }) });
  const body = await r.json();
  $("login-error").textContent = r.ok ? "" : body.detail;
  if (r.ok) { me = body; $("login-password").value = ""; showWho(); startStream(); await refresh(); }
});
$("logout").addEventListener("click", async () => {
  await fetch("/api/logout", { method: "POST" });
  me = null; boardKey = ""; stopStream(); showWho();
});

$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; applyLang(); refresh(); });
$("f-building").addEventListener("change", refresh);
$("f-class").addEventListener("change", refresh);

let pending = null;  // coalesce bursts of change events into one refresh
let stream = null;    // the live event stream, open while logged in
function startStream() {
  if (stream) return;
  stream = new EventSource("/api/stream");
  stream.addEventListener("change", () => {
    if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 200);
  });
}
function stopStream() { if (stream) { stream.close(); stream = null; } }
setInterval(refresh, 15000);  // a safety net if the event stream is cut by a proxy

(async () => {
  const r = await fetch("/api/me");
  if (r.ok) me = await r.json();
  applyLang();
  if (me) { startStream(); await refresh(); }
})();
