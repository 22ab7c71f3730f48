// The dashboard: figures in Indian grouping, per area, bills by status; live over SSE.
import { html, render } from "../html.js";
import { t, num } from "../i18n.js";
import { api } from "../api.js";
import { $, main, errWords } from "../ui.js";
import { can } from "../store.js";
import { onLeave } from "../router.js";

/** Horizontal bars (native <progress>, so no inline style under the CSP), biggest first. */
function bars(rows, label) {
  const max = Math.max(1, ...rows.map(([, v]) => v));
  return html`<ul class="bars" aria-label="${label}">${rows.map(([name, v]) => html`<li><span class="day">${name}</span><progress max="${max}" value="${v}" aria-label="${name}"></progress><b>${num(v)}</b></li>`)}</ul>`;
}
function figures(d) {
  const f = (label, v) => html`<div class="figure"><span>${label}</span><b>${num(v)}</b></div>`;
  const bills = Object.entries(d.bills_by_status || {});
  const areas = (d.areas || []).filter((a) => a.parents || a.children || a.scans_today);
  return html`<div class="figures">${f(t("parents"), d.parents)}${f(t("children"), d.children)}${f(t("unlinked"), d.unlinked_children)}
    ${f(t("scans_today"), d.scans_today)}${f(t("scans_hour"), d.scans_last_hour)}
    ${/* sacks taken back on return tickets today: billing's work (a dispatcher's view has none) */ can.manage() ? html`<div class="figure" id="returns-today"><span>${t("returns_today")}</span><b>${num(d.returns_today || 0)}</b></div>` : ""}</div>
    <h2>${t("bills")}</h2>${bills.length ? bars(bills.map(([k, v]) => [t(`bill_${k}`), v]), t("bills")) : html`<p class="empty">${t("none")}</p>`}
    <h2>${t("per_area_title")}</h2>${areas.length ? bars(areas.map((a) => [a.area, a.scans_today]).sort((x, y) => y[1] - x[1]), t("per_area_title")) : html`<p class="empty">${t("none")}</p>`}
    <div class="scroll" tabindex="0" role="region" aria-label="${t("area")}"><table><tr><th>${t("area")}</th><th>${t("parents")}</th><th>${t("children")}</th><th>${t("unlinked")}</th><th>${t("scans_today")}</th></tr>
    ${(d.areas || []).map((a) => html`<tr><td>${a.area}</td><td>${num(a.parents)}</td><td>${num(a.children)}</td><td>${num(a.unlinked_children)}</td><td>${num(a.scans_today)}</td></tr>`)}</table></div>`;
}
/**
 * Scans per hour, today against yesterday (the business time zone's days), as an SVG bar chart
 * built with the html template (every number escaped like any value).
 */
function hoursChart(r) {
  const byDay = new Map();
  for (const b of r.buckets) {
    const [dayPart, time] = String(b.hour).split("T");
    const h = Number((time || "0").slice(0, 2));
    if (!byDay.has(dayPart)) byDay.set(dayPart, new Array(24).fill(0));
    byDay.get(dayPart)[h] += b.scans;
  }
  const days = [...byDay.keys()].sort();
  const today = byDay.get(days.at(-1)) || new Array(24).fill(0);
  const yesterday = byDay.get(days.at(-2)) || new Array(24).fill(0);
  const max = Math.max(1, ...today, ...yesterday);
  const H = 120, W = 24 * 14;
  const bar = (v, x, cls) => { const h = Math.round((v / max) * H); return html`<rect class="${cls}" x="${x}" y="${H - h}" width="6" height="${h}"><title>${num(v)}</title></rect>`; };
  return html`<figure class="chart"><svg viewBox="0 0 ${W} ${H + 16}" role="img" aria-label="${t("per_hour_title")}">
      ${today.map((v, i) => html`${bar(yesterday[i], i * 14, "yesterday")}${bar(v, i * 14 + 6, "today")}${i % 6 === 0 ? html`<text x="${i * 14}" y="${H + 14}">${String(i).padStart(2, "0")}</text>` : ""}`)}
    </svg><figcaption><span class="key today"></span> ${t("today")}: ${num(today.reduce((a, b) => a + b, 0))}
      <span class="key yesterday"></span> ${t("yesterday")}: ${num(yesterday.reduce((a, b) => a + b, 0))}</figcaption></figure>`;
}
export async function dashboard() {
  render(main(), html`<h1>${t("dash_title")}</h1><div id="figs"><p class="loading" role="status">${t("loading")}</p></div>
    <h2>${t("per_hour_title")}</h2><div id="hours"><p class="loading" role="status">${t("loading")}</p></div>`);
  const hours = () => api("GET", "/stats/scans-per-hour?days=2").then((r) => render($("#hours"), hoursChart(r)))
    .catch((e) => render($("#hours"), html`<p class="msg err" role="alert">${errWords(e)}</p>`));
  hours();
  let lastHours = Date.now();
  try { render($("#figs"), figures(await api("GET", "/stats/dashboard"))); } catch (e) { render($("#figs"), html`<p class="msg err" role="alert">${errWords(e)}</p>`); }
  const src = new EventSource("/api/v1/stats/live");
  src.addEventListener("dashboard", (ev) => {
    const el = $("#figs");
    if (el) render(el, figures(JSON.parse(ev.data)));
    // The hourly chart follows the live figures, at most every 30 s.
    if ($("#hours") && Date.now() - lastHours > 30000) { lastHours = Date.now(); hours(); }
  });
  onLeave(() => src.close());
}
