// The dashboard: figures in Indian grouping, per area, bills by status; live over SSE.
import { html, render } from "../html.js";
import { t, num } from "../i18n.js";
import { api } from "../api.js";
import { $, main, errWords } from "../ui.js";
import { onLeave } from "../router.js";

function figures(d) {
  const f = (label, v) => html`<div class="figure"><span>${label}</span><b>${num(v)}</b></div>`;
  const bills = Object.entries(d.bills_by_status || {});
  return html`<div class="figures">${f(t("parents"), d.parents)}${f(t("children"), d.children)}${f(t("unlinked"), d.unlinked_children)}
    ${f(t("scans_today"), d.scans_today)}${f(t("scans_hour"), d.scans_last_hour)}</div>
    <p><b>${t("bills")}:</b> ${bills.length ? bills.map(([k, v], i) => html`${i ? " · " : ""}${t(`bill_${k}`)}: ${num(v)}`) : "—"}</p>
    <div class="scroll"><table><tr><th>${t("area")}</th><th>${t("parents")}</th><th>${t("children")}</th><th>${t("unlinked")}</th><th>${t("scans_today")}</th></tr>
    ${(d.areas || []).map((a) => html`<tr><td>${a.area}</td><td>${num(a.parents)}</td><td>${num(a.children)}</td><td>${num(a.unlinked_children)}</td><td>${num(a.scans_today)}</td></tr>`)}</table></div>`;
}
export async function dashboard() {
  render(main(), html`<h1>${t("dash_title")}</h1><div id="figs"><p class="loading" role="status">${t("loading")}</p></div>`);
  try { render($("#figs"), figures(await api("GET", "/stats/dashboard"))); } catch (e) { render($("#figs"), html`<p class="msg err" role="alert">${errWords(e)}</p>`); }
  const src = new EventSource("/api/v1/stats/live");
  src.addEventListener("dashboard", (ev) => { const el = $("#figs"); if (el) render(el, figures(JSON.parse(ev.data))); });
  onLeave(() => src.close());
}
