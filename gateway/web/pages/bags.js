// Bags: a one-box lookup, the list with the API's filters and keyset paging, and a bag's detail.
import { html, render } from "../html.js";
import { t, num, when } from "../i18n.js";
import { api, query, uuid, ApiError } from "../api.js";
import { areaNames, session, can } from "../store.js";
import { $, main, note, errWords, errView, pagedList, options } from "../ui.js";
import { go } from "../router.js";

const link = (qr) => html`<a href="#/bags/${encodeURIComponent(qr)}">${qr}</a>`;

export function bags(arg) {
  if (arg) return detail(arg);
  const areas = areaNames();
  const dispatcher = session.role() === "dispatcher";
  render(main(), html`<h1>${t("bags_title")}</h1>
    <form id="f" class="row lookup"><input id="q" placeholder="${t("qr")}" autocapitalize="characters" autocomplete="off" aria-label="${t("qr")}"><button>${t("lookup")}</button></form>
    <div id="msg" class="msg" hidden></div>
    <form id="filters" class="filters card">
      <label>${t("type")}<select name="type"><option value="">${t("all")}</option>${options(["parent", "child"], "", (v) => t(`type_${v}`))}</select></label>
      ${dispatcher ? "" : html`<label>${t("area")}<select name="area"><option value="">${t("all")}</option>${options(areas, "")}</select></label>`}
      <label>${t("linked")}<select name="linked"><option value="">${t("all")}</option><option value="true">${t("yes")}</option><option value="false">${t("no")}</option></select></label>
      <label>${t("billed")}<select name="billed"><option value="">${t("all")}</option><option value="true">${t("yes")}</option><option value="false">${t("no")}</option></select></label>
      <label>${t("prefix")}<input name="q" autocapitalize="characters" autocomplete="off"></label>
    </form>
    <div id="list" aria-live="polite"></div>`);
  $("#f").addEventListener("submit", (e) => { e.preventDefault(); const v = $("#q").value.trim(); if (v) go(`#/bags/${encodeURIComponent(v)}`); });
  const filters = $("#filters");
  const list = pagedList($("#list"), {
    load: (token) => {
      const f = Object.fromEntries(new FormData(filters));
      return api("GET", `/bags${query({ ...f, page_size: 50, page_token: token })}`);
    },
    head: html`<tr><th>${t("qr")}</th><th>${t("type")}</th><th>${t("area")}</th><th>${t("status")}</th><th>${t("count")}</th><th>${t("parent")}</th></tr>`,
    row: (b) => html`<tr><td>${link(b.qr)}</td><td>${t(`type_${b.type}`)}</td><td>${b.area}</td><td>${t(`status_${b.status}`)}${b.frozen ? " 🔒" : ""}</td>
      <td>${b.type === "parent" ? `${num(b.child_count)}/${num(b.capacity)}` : ""}</td><td>${b.parent_qr ? link(b.parent_qr) : b.bill_id || ""}</td></tr>`,
    empty: t("no_bags"),
  });
  filters.addEventListener("change", () => list.reload());
  filters.addEventListener("submit", (e) => { e.preventDefault(); list.reload(); });
}

async function detail(qr) {
  render(main(), html`<h1>${t("bag")} ${qr}</h1><div id="msg" class="msg" hidden></div><div id="out"><p class="loading" role="status">${t("loading")}</p></div>
    <p><a class="button secondary" href="#/bags">${t("all_bags")}</a></p>`);
  try {
    let b;
    try { b = await api("GET", `/bags/${encodeURIComponent(qr)}`); } catch (e) {
      // One box for any scanned code: not a bag, perhaps a bill.
      if (!(e instanceof ApiError && e.status === 404)) throw e;
      const bill = await api("GET", `/bills/${encodeURIComponent(qr)}`).catch(() => null);
      if (!bill) throw e;
      go(`#/bills/${encodeURIComponent(bill.bill_id)}`);
      return;
    }
    const kids = b.type === "parent" ? await api("GET", `/bags/${encodeURIComponent(b.qr)}/children?page_size=200`).catch(() => ({ items: [] })) : { items: [] };
    const hist = await api("GET", `/bags/${encodeURIComponent(b.qr)}/history`).catch(() => []);
    // Admins and billers change a sack's packets (not while it is on a completed bill: frozen).
    const editKids = can.manage() && b.type === "parent" && !b.frozen;
    render($("#out"), html`<div class="card"><table>
      <tr><th>${t("qr")}</th><td>${b.qr}</td></tr><tr><th>${t("type")}</th><td>${t(`type_${b.type}`)} ${b.product_line || ""}</td></tr>
      <tr><th>${t("status")}</th><td>${t(`status_${b.status}`)}${b.frozen ? " 🔒" : ""}</td></tr><tr><th>${t("area")}</th><td>${b.area}</td></tr>
      ${b.type === "parent" ? html`<tr><th>${t("count")}</th><td>${num(b.child_count)}/${num(b.capacity)}</td></tr><tr><th>${t("weight")}</th><td>${num(b.weight_kg)}</td></tr>` : ""}
      ${b.parent_qr ? html`<tr><th>${t("parent")}</th><td>${link(b.parent_qr)}</td></tr>` : ""}
      ${b.bill_id ? html`<tr><th>${t("bill")}</th><td><a href="#/bills/${encodeURIComponent(b.bill_id)}">${b.bill_id}</a></td></tr>` : ""}
      </table></div>
      ${kids.items.length ? (editKids ? html`<h2>${t("children_list")} (${num(kids.items.length)})</h2>
        <form id="kids" class="card noprint"><div class="scroll"><table>
          <tr><th><input type="checkbox" id="kids-all" aria-label="${t("choose_all")}"></th><th>${t("qr")}</th><th></th></tr>
          ${kids.items.map((k) => html`<tr><td><input type="checkbox" name="kid" value="${k.qr}" aria-label="${t("choose_qr", { qr: k.qr })}"></td><td>${link(k.qr)}</td>
            <td><button type="button" class="secondary take-out" data-qr="${k.qr}">${t("take_out")}</button></td></tr>`)}</table></div>
          <div class="row lookup mt"><input name="to" placeholder="${t("move_to")}" aria-label="${t("move_to")}" autocapitalize="characters" autocomplete="off">
          <button id="move-kids">${t("move_chosen")}</button></div></form>`
        : html`<h2>${t("children_list")} (${num(kids.items.length)})</h2><p class="chips">${kids.items.map((k, i) => html`${i ? " · " : ""}${link(k.qr)}`)}</p>`) : ""}
      ${can.manage() && b.type === "child" ? html`<section class="card noprint"><h2>${t("change_sack")}</h2>
        <form id="move" class="row lookup"><input name="parent_qr" placeholder="${t("move_to")}" aria-label="${t("move_to")}" autocapitalize="characters" autocomplete="off" required><button>${t("move")}</button></form>
        ${b.parent_qr ? html`<p><button id="unlink" type="button" class="danger">${t("unlink", { qr: b.parent_qr })}</button></p>` : ""}</section>` : ""}
      <h2>${t("history")}</h2><ul class="timeline">${hist.length ? hist.map((h) => html`<li><b>${h.action}</b> <span class="muted">${when(h.occurred_at)} ${h.actor_username}</span></li>`) : html`<li>${t("none")}</li>`}</ul>`);
    const act = async (fn) => { try { await fn(); detail(b.qr); } catch (e) { note(errView(e), "err"); } };
    if ($("#move")) $("#move").addEventListener("submit", (e) => {
      e.preventDefault();
      const to = e.target.parent_qr.value.trim();
      if (to && confirm(t("move_confirm", { qr: b.qr, to }))) act(() => api("POST", `/bags/${encodeURIComponent(b.qr)}/move`, { parent_qr: to }, { key: uuid() }));
    });
    if ($("#kids")) kidsForm(b);
    if ($("#unlink")) $("#unlink").addEventListener("click", () => {
      if (confirm(t("unlink_confirm", { qr: b.qr, parent: b.parent_qr }))) act(() => api("DELETE", `/bags/${encodeURIComponent(b.parent_qr)}/children/${encodeURIComponent(b.qr)}`, undefined, { key: uuid() }));
    });
  } catch (e) { render($("#out"), ""); note(errWords(e), "err"); }
}

/** A sack's packets: take one out, or move the chosen ones to another sack (each confirmed). */
function kidsForm(b) {
  const form = $("#kids");
  const all = $("#kids-all");
  all.addEventListener("change", () => form.querySelectorAll("input[name=kid]").forEach((c) => { c.checked = all.checked; }));
  form.querySelectorAll(".take-out").forEach((btn) => btn.addEventListener("click", async () => {
    const qr = btn.dataset.qr;
    if (!confirm(t("unlink_confirm", { qr, parent: b.qr }))) return;
    try {
      await api("DELETE", `/bags/${encodeURIComponent(b.qr)}/children/${encodeURIComponent(qr)}`, undefined, { key: uuid() });
      await detail(b.qr);
      note(t("taken_out", { qr, parent: b.qr }), "ok");
    } catch (e) { note(errView(e), "err"); }
  }));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const chosen = [...form.querySelectorAll("input[name=kid]:checked")].map((c) => c.value);
    const to = form.to.value.trim();
    if (!chosen.length) { note(t("choose_first"), "err"); return; }
    if (!to) { note(t("move_to_first"), "err"); form.to.focus(); return; }
    if (!confirm(t("move_children_confirm", { n: chosen.length, from: b.qr, to }))) return;
    // One request per packet, in order; the first refusal stops the rest and says how far it got.
    let done = 0;
    for (const qr of chosen) {
      try { await api("POST", `/bags/${encodeURIComponent(qr)}/move`, { parent_qr: to }, { key: uuid() }); done++; } catch (err) {
        await detail(b.qr);
        note(html`${t("moved_n", { n: done, m: chosen.length })} ${qr}: ${errView(err)}`, "err");
        return;
      }
    }
    await detail(b.qr);
    note(t("moved_n", { n: done, m: chosen.length }), "ok");
  });
}
