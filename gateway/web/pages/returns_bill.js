// A bill's returns (SPEC §1 "Returns (IPT)") on its page: dispatched, returned (each sack with its
// ticket) and net. Drawn by bills.js through one hook, into its own section after the figures.
import { html, render } from "../html.js";
import { t, num, when } from "../i18n.js";
import { api } from "../api.js";

const kg = (v) => num(Math.round((v || 0) * 100) / 100);

/** Adds (or redraws) the returns section of bill `b` below `#bill-figs`; nothing when it has none. */
export async function billReturns(b) {
  const figs = document.getElementById("bill-figs");
  if (!figs || b.status !== "completed") return;
  let r;
  try { r = await api("GET", `/bills/${encodeURIComponent(b.bill_id)}/returns`); } catch { return; }
  if (!r.returned_parents) return;
  let box = document.getElementById("bill-returns");
  if (!box) {
    box = document.createElement("section");
    box.id = "bill-returns";
    box.className = "card mt";
    figs.after(box);
  }
  const figure = (label, parents, children, weight) => html`<div class="figure"><span>${label}</span><b>${num(parents)}</b>
    <small>${num(children)} · ${kg(weight)}</small></div>`;
  render(box, html`<h2>${t("rtn_on_bill")}</h2>
    <div class="figures">${figure(t("rtn_dispatched"), r.dispatched_parents, r.net_child_count + r.returned_child_count, r.net_actual_weight_kg + r.returned_actual_weight_kg)}
      ${figure(t("rtn_returned"), r.returned_parents, r.returned_child_count, r.returned_actual_weight_kg)}
      ${figure(t("rtn_net"), r.net_parents, r.net_child_count, r.net_actual_weight_kg)}</div>
    <div class="scroll" tabindex="0" role="region" aria-label="${t("rtn_on_bill")}"><table>
      <tr><th>${t("parent")}</th><th>${t("rtn_ticket")}</th><th>${t("count")}</th><th>${t("weight")}</th><th>${t("rtn_returned_on")}</th></tr>
      ${r.returns.map((x) => html`<tr><td><a href="#/bags/${encodeURIComponent(x.parent_qr)}">${x.parent_qr}</a></td>
        <td><a href="#/returns/${encodeURIComponent(x.ticket_id)}">${x.ticket_id}</a></td><td>${num(x.child_count)}</td>
        <td>${kg(x.actual_weight_kg)}</td><td>${when(x.returned_at)}</td></tr>`)}</table></div>`);
}
