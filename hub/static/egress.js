const TEXT = {
  zh: { title: "出境记录", back: "返回工作台", other: "English", seq: "序号", sent: "发送时间", to: "发往",
        summaries: "汇总数", bytes: "字节", sha: "内容哈希", acked: "城市确认", pending: "等待确认",
        intro: "本社区向城市平台发送的每一批数据：何时、发往何处、内容摘要（哈希）与所含汇总。每条记录链接前一条并以社区密钥签名，任何改动或删除都会被发现。发出的只有聚合数据，从不含居民信息。",
        ok: (n) => `签名链完整：${n} 条记录全部核验通过`, bad: (v) => `核验失败：第 ${v.first_bad_seq} 条（${v.problem}）`,
        down: "暂时无法读取出境记录：" },
  en: { title: "What left the community", back: "Back to the console", other: "中文", seq: "No.", sent: "Sent",
        to: "To", summaries: "Summaries", bytes: "Bytes", sha: "Body hash", acked: "City acknowledged", pending: "waiting",
        intro: "Every batch this community sent to the city platform: when, where to, a hash of its content, and the summaries in it. Each entry links to the one before and is signed with the community key, so any change or deletion shows. Only aggregates leave, never a resident's data.",
        ok: (n) => `Chain intact: all ${n} entries verified`, bad: (v) => `Verification failed at entry ${v.first_bad_seq} (${v.problem})`,
        down: "The egress log cannot be read now: " },
};
let lang = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh";
let data = null;
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const when = (t) => t ? new Date(t * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB") : "";
function render() {
  const t = TEXT[lang];
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t[el.dataset.i18n]; });
  document.title = t.title;
  $("lang").textContent = t.other;
  if (!data) return;
  if (data.error) { $("status").className = "bad"; $("status").textContent = t.down + data.error; return; }
  const v = data.verified;
  $("status").className = v.ok ? "ok" : "bad";
  $("status").textContent = v.ok ? t.ok(v.entries) : t.bad(v);
  document.querySelector("#log tbody").innerHTML = data.entries.map((e) => `
    <tr data-seq="${e.seq}"><td>${e.seq}</td><td>${esc(when(e.sent_at))}</td><td>${esc(e.destination)}</td>
    <td title="${esc(e.summaries.join(" "))}">${e.summaries.length}</td><td>${e.bytes}</td>
    <td class="hash">${esc(e.body_sha256.slice(0, 16))}…</td>
    <td>${e.acknowledged_at ? esc(when(e.acknowledged_at)) : `<span class="muted">${t.pending}</span>`}</td></tr>`).join("");
}
async function load() {
  const r = await fetch("/api/egress-log?limit=200");
  data = r.ok ? await r.json() : { error: (await r.json()).detail };
  render();
}
$("lang").addEventListener("click", () => { lang = lang === "zh" ? "en" : "zh"; render(); });
render();
load();
setInterval(load, 15000);
