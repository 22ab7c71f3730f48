// Users (admin): create, change role/area/active, unlock, reset a password; per-user activity.
import { html, render } from "../html.js";
import { t, num, when } from "../i18n.js";
import { api, uuid } from "../api.js";
import { areaNames } from "../store.js";
import { $, main, note, errWords, options } from "../ui.js";
import { onLeave } from "../router.js";

const ROLES = ["dispatcher", "biller", "admin"];
const withReason = (e) => `${errWords(e)}${e.problem && e.problem.reason ? ` (${e.problem.reason})` : ""}`;

export async function users(arg) {
  if (arg) return activity(arg);
  render(main(), html`<h1>${t("users_title")}</h1><div id="msg" class="msg" hidden></div>
    <details class="card"><summary>${t("new_user")}</summary><form id="nu" class="stack">
      <label>${t("username")}<input name="username" required autocapitalize="none"></label><label>${t("email")}<input name="email" type="email"></label>
      <label>${t("password")}<input name="password" type="password" required></label>
      <label>${t("role")}<select name="role">${options(ROLES, "dispatcher", (r) => t(`role_${r}`))}</select></label>
      <label>${t("area")}<select name="dispatch_area"><option value="">—</option>${options(areaNames(), "")}</select></label>
      <button>${t("create")}</button></form></details>
    <p><button id="unlockall" class="secondary">${t("unlock_all")}</button></p><div id="list"><p class="loading" role="status">${t("loading")}</p></div>`);
  $("#nu").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    if (!f.dispatch_area) delete f.dispatch_area;
    try { await api("POST", "/users", f, { key: uuid() }); users(); } catch (err) { note(withReason(err), "err"); }
  });
  $("#unlockall").addEventListener("click", async () => { try { const r = await api("POST", "/users/unlock-all"); note(`${t("unlock_all")}: ${num(r.unlocked)}`, "ok"); } catch (e) { note(errWords(e), "err"); } });
  let r;
  try { r = await api("GET", "/users?page_size=200&include_inactive=true"); } catch (e) { render($("#list"), html`<p class="msg err" role="alert">${errWords(e)}</p>`); return; }
  if (!r.items.length) { render($("#list"), html`<p class="empty">${t("none")}</p>`); return; }
  render($("#list"), html`<div class="scroll"><table><tr><th>${t("username")}</th><th>${t("role")}</th><th>${t("area")}</th><th>${t("active")}</th><th></th></tr>${r.items.map((u) =>
    html`<tr data-id="${u.id}"><td><a href="#/users/${encodeURIComponent(u.id)}">${u.username}</a>${u.locked_until ? html` <b>(${t("locked")})</b>` : ""}</td>
     <td><select class="role" aria-label="${t("role")}">${options(ROLES, u.role, (x) => t(`role_${x}`))}</select></td>
     <td><select class="area" aria-label="${t("area")}"><option value="">—</option>${options(areaNames(), u.dispatch_area)}</select></td>
     <td><input type="checkbox" class="active check" aria-label="${t("active")}" ${u.active ? "checked" : ""}></td>
     <td class="row"><button class="secondary save">${t("edit")}</button><button class="secondary unlock">${t("unlock")}</button><button class="secondary reset">${t("reset")}</button></td></tr>`)}</table></div>`);
  main().querySelectorAll("tr[data-id]").forEach((row) => {
    const id = row.dataset.id;
    const act = async (fn, ok) => { try { await fn(); note(ok, "ok"); } catch (e) { note(withReason(e), "err"); } };
    $(".save", row).addEventListener("click", () => act(() => api("PATCH", `/users/${id}`, { role: $(".role", row).value, dispatch_area: $(".area", row).value || undefined, active: $(".active", row).checked }, { key: uuid() }), t("edit")));
    $(".unlock", row).addEventListener("click", () => act(() => api("POST", `/users/${id}/unlock`), t("unlock")));
    $(".reset", row).addEventListener("click", () => {
      const pw = prompt(t("temp_password"));
      if (pw) act(() => api("POST", `/users/${id}/reset-password`, { password: pw }, { key: uuid() }), t("reset"));
    });
  });
}

/**
 * A user's scans per day as an SVG column chart (built with the html template, every number
 * escaped like any value), the busiest day's figure on top; each column's title is its day.
 */
function daysChart(days) {
  const max = Math.max(1, ...days.map((d) => d.scans));
  const H = 120, step = 22, W = Math.max(1, days.length) * step;
  return html`<figure class="chart"><svg id="activity-chart" viewBox="0 0 ${W} ${H + 16}" role="img" aria-label="${t("scans_per_day")}: ${days.map((d) => `${d.day} ${num(d.scans)}`).join(", ")}">
      ${days.map((d, i) => {
        const h = Math.round((d.scans / max) * H);
        return html`<rect class="today" data-day="${d.day}" data-scans="${d.scans}" x="${i * step + 4}" y="${H - h}" width="14" height="${h}"><title>${d.day}: ${num(d.scans)}</title></rect>
          ${i % Math.ceil(days.length / 7 || 1) === 0 ? html`<text x="${i * step}" y="${H + 14}">${String(d.day).slice(5)}</text>` : ""}`;
      })}
    </svg><figcaption>${t("scans_per_day")}: ${num(days.reduce((a, d) => a + d.scans, 0))}</figcaption></figure>`;
}
function activityView(a) {
  return html`<h2>${a.username}</h2>
    <div class="figures"><div class="figure"><span>${t("total_scans")}</span><b id="total-scans">${num(a.total_scans)}</b></div></div>
    <p>${t("last_scan")}: ${when(a.last_scan_at) || "—"} · ${t("last_login")}: ${when(a.last_login_at) || "—"}</p>
    <h2>${t("scans_per_day")}</h2>${a.scans_per_day.length ? daysChart(a.scans_per_day) : html`<p class="empty">${t("none")}</p>`}`;
}

/**
 * One user's activity: totals, last scan and login, scans per day as a chart that follows the
 * live figures (the dashboard's stream says when they change; the activity is read again then,
 * at most every 2 s).
 */
async function activity(id) {
  render(main(), html`<h1>${t("activity_title")}</h1><div id="out" aria-live="polite"><p class="loading" role="status">${t("loading")}</p></div>
    <p><a class="button secondary" href="#/users">${t("nav_users")}</a> <a class="button secondary" href="#/audit?user_id=${encodeURIComponent(id)}">${t("nav_audit")}</a></p>`);
  const load = async () => { const a = await api("GET", `/stats/users/${encodeURIComponent(id)}/activity`); if ($("#out")) render($("#out"), activityView(a)); };
  try { await load(); } catch (e) { render($("#out"), html`<p class="msg err" role="alert">${errWords(e)}</p>`); return; }
  let last = 0, timer = null;
  const refresh = () => {
    if (timer) return;
    timer = setTimeout(() => { timer = null; last = Date.now(); load().catch(() => { /* the next change tries again */ }); }, Math.max(0, 2000 - (Date.now() - last)));
  };
  const src = new EventSource("/api/v1/stats/live");
  src.addEventListener("dashboard", refresh);
  onLeave(() => { src.close(); clearTimeout(timer); });
}
