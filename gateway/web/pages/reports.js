// Reports (admin, biller): the bill summary over business days with its downloads, and the
// end-of-day report's preview, delivery record and "send now".
import { html, render } from "../html.js";
import { t, num, when } from "../i18n.js";
import { api, query } from "../api.js";
import { can, prefs, meta } from "../store.js";
import { $, main, note, errWords } from "../ui.js";
import { metaLoaded } from "../router.js";

/** Today (YYYY-MM-DD) in the business time zone the reports count in (from /api/v1/meta), so a
 * phone set to another zone still opens on the business day; the device's day without it. */
const today = () => {
  const tz = meta.value && meta.value.time_zone;
  try { if (tz) return new Date().toLocaleDateString("en-CA", { timeZone: tz }); } catch { /* unknown zone */ }
  return new Date().toLocaleDateString("en-CA");
};
const kg = (v) => num(Math.round(v * 100) / 100);

function summaryTable(s) {
  const row = (name, f) => html`<tr><td>${name}</td><td>${num(f.bills_created)}</td><td>${num(f.bills_completed)}</td><td>${num(f.parents)}</td>
    <td>${num(f.children)}</td><td>${kg(f.actual_weight_kg)}</td><td>${kg(f.expected_weight_kg)}</td><td>${f.completion_percent.toFixed(1)}</td></tr>`;
  return html`<div class="scroll" tabindex="0" role="region" aria-label="${t("rep_summary")}"><table>
    <tr><th>${t("rep_biller")}</th><th>${t("rep_created")}</th><th>${t("rep_completed")}</th><th>${t("rep_parents")}</th><th>${t("rep_children")}</th>
    <th>${t("rep_actual")}</th><th>${t("rep_expected")}</th><th>${t("rep_completion")}</th></tr>
    ${s.billers.map((b) => row(b.biller, b))}${row(t("rep_total"), s.totals)}</table></div>`;
}

function dailyView(r) {
  const d = r.delivery;
  const tt = r.totals;
  const figure = (label, v) => html`<div class="figure"><span>${label}</span><b>${v}</b></div>`;
  return html`<p class="muted">${when(r.window_from)} – ${when(r.window_to)} (${r.time_zone})</p>
    ${r.has_activity ? "" : html`<p class="empty">${t("rep_no_activity")}</p>`}
    <div class="figures">${figure(t("rep_bills"), num(tt.bills))}${figure(t("rep_parents"), num(tt.parents))}${figure(t("rep_children"), num(tt.children))}
      ${figure(t("rep_actual"), kg(tt.actual_weight_kg))}${figure(t("rep_scans"), num(tt.scans))}${figure(t("rep_returns"), num(tt.returns))}</div>
    <p id="delivery">${d ? t("rep_delivery", { status: d.status, attempts: d.attempts }) : t("rep_not_due")}${d && d.sent_at ? html` · ${when(d.sent_at)}` : ""}</p>
    ${r.mail_enabled ? "" : html`<p class="muted">${t("rep_no_mail")}</p>`}
    <p class="row"><a class="button secondary" target="_blank" rel="noopener" href="/api/v1/reports/daily.html${query({ day: r.day, lang: prefs.lang })}">${t("rep_open_mail")}</a>
      <a class="button secondary" download href="/api/v1/reports/daily.xlsx${query({ day: r.day })}">.xlsx</a>
      ${r.mail_enabled ? html`<button id="send" type="button">${t("rep_send_now")}</button>` : ""}</p>`;
}

export async function reports(_arg, params) {
  if (!can.manage()) return render(main(), html`<h1>${t("forbidden")}</h1>`);
  await metaLoaded();
  const day0 = params.get("day") || "";
  render(main(), html`<h1>${t("rep_title")}</h1><div id="msg" class="msg" hidden></div>
    <section class="card"><h2>${t("rep_summary")}</h2>
      <form id="sform" class="row"><label>${t("from")}<input name="from" type="date" required value="${today()}"></label>
        <label>${t("to")}<input name="to" type="date" required value="${today()}"></label><button>${t("rep_show")}</button></form>
      <div id="summary" aria-live="polite"></div><p id="slinks" class="row"></p></section>
    <section class="card"><h2>${t("rep_daily")}</h2><p class="muted">${t("rep_daily_hint")}</p>
      <form id="dform" class="row"><label>${t("rep_day")}<input name="day" type="date" value="${day0}"></label><button>${t("rep_preview")}</button></form>
      <div id="daily" aria-live="polite"></div></section>`);
  const showSummary = async () => {
    const f = Object.fromEntries(new FormData($("#sform")));
    const q = query({ from: f.from, to: f.to });
    render($("#summary"), html`<p class="loading" role="status">${t("loading")}</p>`);
    try {
      const s = await api("GET", `/reports/bill-summary${q}`);
      render($("#summary"), summaryTable(s));
      render($("#slinks"), html`<a class="button secondary" download href="/api/v1/reports/bill-summary.csv${q}">.csv</a>
        <a class="button secondary" download href="/api/v1/reports/bill-summary.xlsx${q}">.xlsx</a>
        <a class="button secondary" target="_blank" rel="noopener" href="/api/v1/reports/bill-summary.html${query({ from: f.from, to: f.to, lang: prefs.lang })}">${t("rep_print")}</a>`);
    } catch (e) { render($("#summary"), ""); render($("#slinks"), ""); note(errWords(e), "err"); }
  };
  const showDaily = async () => {
    const day = new FormData($("#dform")).get("day");
    render($("#daily"), html`<p class="loading" role="status">${t("loading")}</p>`);
    try {
      const r = await api("GET", `/reports/daily${query({ day })}`);
      render($("#daily"), dailyView(r));
      const send = $("#send");
      if (send) send.addEventListener("click", async () => {
        if (!confirm(t("rep_send_confirm", { day: r.day }))) return;
        send.disabled = true;
        try {
          const s = await api("POST", "/reports/daily/send", { day: r.day });
          note(t("rep_sent", { id: s.message_id }), "ok");
        } catch (e) { note(errWords(e), "err"); } finally { send.disabled = false; }
      });
    } catch (e) { render($("#daily"), ""); note(errWords(e), "err"); }
  };
  $("#sform").addEventListener("submit", (e) => { e.preventDefault(); showSummary(); });
  $("#dform").addEventListener("submit", (e) => { e.preventDefault(); showDaily(); });
  showSummary();
  showDaily();
}
