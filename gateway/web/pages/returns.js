// Return tickets (admin, biller; SPEC §1 "Returns (IPT)"): the list with status and date filters and a
// new-ticket form; a ticket's page is its scan station (each sack scanned comes off the completed
// bill it left on), its returned sacks, and commit / cancel.
import { html, render } from "../html.js";
import { t, num, when } from "../i18n.js";
import { api, uuid, query } from "../api.js";
import { can, meta } from "../store.js";
import { $, main, note, errView, pagedList, options, day } from "../ui.js";
import { tone } from "../tones.js";
import { go } from "../router.js";

const STATUSES = ["open", "committed", "cancelled"];
const kg = (v) => num(Math.round((v || 0) * 100) / 100);

export function returns(arg) {
  if (!can.manage()) return render(main(), html`<h1>${t("forbidden")}</h1>`);
  if (arg) return ticket(arg);
  const areas = (meta.value && meta.value.areas) || [];
  render(main(), html`<h1>${t("rtn_title")}</h1><div id="msg" class="msg" hidden role="status"></div>
    <details class="card" open><summary>${t("rtn_new")}</summary><form id="nt" class="stack">
      <label>${t("rtn_area")}<select name="area" required>${options(areas.map((a) => a.name), "")}</select></label>
      <label>${t("rtn_notes")}<input name="notes" maxlength="500"></label><button>${t("create")}</button></form></details>
    <form id="filters" class="filters card">
      <label>${t("status")}<select name="status"><option value="">${t("all")}</option>${options(STATUSES, "", (s) => t(`rtn_${s}`))}</select></label>
      <label>${t("from")}<input name="from" type="date"></label><label>${t("to")}<input name="to" type="date"></label>
    </form>
    <div id="list" aria-live="polite"></div>`);
  $("#nt").addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const tk = await api("POST", "/returns", Object.fromEntries(new FormData(e.target)), { key: uuid() });
      go(`#/returns/${encodeURIComponent(tk.ticket_id)}`);
    } catch (err) { note(errView(err), "err"); }
  });
  const filters = $("#filters");
  const list = pagedList($("#list"), {
    load: (token) => {
      // Days on the phone's calendar: from the first one's midnight to the end of the last one.
      const f = Object.fromEntries(new FormData(filters));
      return api("GET", `/returns${query({ status: f.status, from: day(f.from, false), to: day(f.to, true), page_size: 50, page_token: token })}`);
    },
    head: html`<tr><th>${t("rtn_ticket")}</th><th>${t("status")}</th><th>${t("rtn_sacks")}</th><th>${t("area")}</th><th>${t("rtn_notes")}</th></tr>`,
    row: (r) => html`<tr><td><a href="#/returns/${encodeURIComponent(r.ticket_id)}">${r.ticket_id}</a></td><td>${t(`rtn_${r.status}`)}</td>
      <td>${num(r.return_count)}</td><td>${r.area}</td><td>${r.notes}</td></tr>`,
    empty: t("rtn_none"),
  });
  filters.addEventListener("change", () => list.reload());
}

/** The ticket's figures and returned sacks (drawn again after each scan). */
function body(d) {
  const tk = d.ticket;
  return html`<div class="card"><p>${t("status")}: <b>${t(`rtn_${tk.status}`)}</b> · ${t("area")}: ${tk.area} · ${tk.created_by}</p>
    ${tk.notes ? html`<p>${tk.notes}</p>` : ""}
    <div class="figures"><div class="figure"><span>${t("rtn_sacks")}</span><b>${num(tk.return_count)}</b></div>
      <div class="figure"><span>${t("count")}</span><b>${num(tk.child_count)}</b></div>
      <div class="figure"><span>${t("weight")}</span><b>${kg(tk.actual_weight_kg)}</b></div></div></div>
    <div class="scroll" tabindex="0" role="region" aria-label="${t("rtn_sacks")}"><table>
      <tr><th>${t("parent")}</th><th>${t("bill")}</th><th>${t("count")}</th><th>${t("weight")}</th><th>${t("rtn_returned_on")}</th></tr>
      ${d.returns.map((r) => html`<tr><td><a href="#/bags/${encodeURIComponent(r.parent_qr)}">${r.parent_qr}</a></td>
        <td><a href="#/bills/${encodeURIComponent(r.bill_id)}">${r.bill_id}</a></td><td>${num(r.child_count)}</td>
        <td>${kg(r.actual_weight_kg)}</td><td>${when(r.returned_at)}</td></tr>`)}</table></div>`;
}

async function ticket(id) {
  const path = `/returns/${encodeURIComponent(id)}`;
  let d;
  try { d = await api("GET", path); } catch (e) { render(main(), html`<h1>${t("rtn_ticket")} ${id}</h1><div class="msg err" role="alert">${errView(e)}</div>`); return; }
  const open = d.ticket.status === "open";
  render(main(), html`<h1>${t("rtn_ticket")} ${d.ticket.ticket_id}</h1><div id="msg" class="msg" hidden role="status" aria-live="assertive"></div>
    ${open ? html`<input id="rscan" class="scan-input" inputmode="none" placeholder="${t("rtn_scan_prompt")}" aria-label="${t("rtn_scan_prompt")}" autocomplete="off" autocapitalize="characters">` : ""}
    <div id="rbody"></div>
    ${open ? html`<div class="row noprint mt"><button id="rcommit" type="button">${t("rtn_commit")}</button>
      <button id="rcancel" type="button" class="secondary danger">${t("rtn_cancel")}</button></div>` : ""}`);
  render($("#rbody"), body(d));
  const redraw = async () => { try { render($("#rbody"), body(await api("GET", path))); } catch { /* the next scan redraws */ } };
  const scan = $("#rscan");
  if (scan) {
    scan.focus();
    scan.addEventListener("keydown", async (e) => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      const qr = e.target.value.trim(); e.target.value = "";
      if (!qr) return;
      try {
        const r = await api("POST", `${path}/parents`, { parent_qr: qr }, { key: uuid() });
        const back = r.returned || {};
        note(r.already_returned ? t("rtn_already", { qr: back.parent_qr || qr }) : t("rtn_taken", { qr: back.parent_qr || qr, bill: back.bill_id || "" }), "ok");
        tone("parent");
        redraw();
      } catch (err) { note(errView(err), "err"); tone("err"); }
    });
  }
  const close = async (what) => {
    try { await api("POST", `${path}/${what}`, undefined, { key: uuid() }); ticket(id); } catch (e) { note(errView(e), "err"); tone("err"); }
  };
  if ($("#rcommit")) $("#rcommit").addEventListener("click", () => close("commit"));
  if ($("#rcancel")) $("#rcancel").addEventListener("click", async () => {
    const now = await api("GET", path).catch(() => d);
    if (confirm(t("rtn_cancel_confirm", { id: d.ticket.ticket_id, n: now.ticket.return_count }))) close("cancel");
  });
}
