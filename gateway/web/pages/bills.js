// Bills: the list with a status filter, search and keyset paging; a bill's detail with
// attach-by-scan, detach, complete/reopen and its documents.
import { html, render } from "../html.js";
import { t, num } from "../i18n.js";
import { api, uuid, query } from "../api.js";
import { can, session, events, prefs } from "../store.js";
import { queueAttach, attachesWaiting, refusedOf, resend, forget } from "../queue.js";
import { $, main, note, errWords, errView, problemView, pagedList, options } from "../ui.js";
import { tone } from "../tones.js";
import { go } from "../router.js";
import { billReturns } from "./returns_bill.js";

const STATUSES = ["new", "processing", "completing", "completed", "reopening"];

export function bills(arg) {
  if (arg) return detail(arg);
  render(main(), html`<h1>${t("bills_title")}</h1><div id="msg" class="msg" hidden></div>
    ${can.manage() ? html`<details class="card"><summary>${t("new_bill")}</summary><form id="nb" class="stack">
      <label>${t("bill_id")}<input name="bill_id" required></label><label>${t("capacity")}<input name="capacity" type="number" min="1" max="500" value="1" required></label>
      <label>${t("destination")}<input name="destination"></label><label>${t("vehicle")}<input name="vehicle_number"></label>
      <label>${t("description")}<input name="description"></label><button>${t("create")}</button></form></details>` : ""}
    <form id="filters" class="filters card">
      <label>${t("status")}<select name="status"><option value="">${t("all")}</option>${options(STATUSES, "", (s) => t(`bill_${s}`))}</select></label>
      <label>${t("search_bill")}<input name="q" autocomplete="off"></label>
    </form>
    <div id="list" aria-live="polite"></div>`);
  if ($("#nb")) $("#nb").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    try {
      const b = await api("POST", "/bills", { ...f, capacity: Number(f.capacity) }, { key: uuid() });
      go(`#/bills/${encodeURIComponent(b.bill_id)}`);
    } catch (err) { note(errWords(err), "err"); }
  });
  const filters = $("#filters");
  const list = pagedList($("#list"), {
    load: (token) => api("GET", `/bills${query({ ...Object.fromEntries(new FormData(filters)), page_size: 50, page_token: token })}`),
    head: html`<tr><th>${t("bill_id")}</th><th>${t("status")}</th><th>${t("parents")}</th><th>${t("destination")}</th></tr>`,
    row: (b) => html`<tr><td><a href="#/bills/${encodeURIComponent(b.bill_id)}">${b.bill_id}</a></td><td>${t(`bill_${b.status}`)}</td><td>${num(b.parent_count)}/${num(b.capacity)}</td><td>${b.destination || ""}</td></tr>`,
    empty: t("no_bills"),
  });
  filters.addEventListener("change", () => list.reload());
  filters.addEventListener("submit", (e) => { e.preventDefault(); list.reload(); });
}

/** The part of a bill's page that changes with its figures: card, parents, actions. */
function figures(b) {
  const manage = can.manage() && b.status !== "completed";
  const doc = `/api/v1/bills/${encodeURIComponent(b.bill_id)}/document?lang=${prefs.lang === "hi" ? "hi" : "en"}`;
  return html`<div class="card"><div class="progress ${b.parent_count === b.capacity ? "full" : ""}">${num(b.parent_count)}/${num(b.capacity)}</div>
    <p>${t("status")}: <b>${t(`bill_${b.status}`)}</b> · ${t("expected")}: ${num(b.expected_weight_kg)} · ${t("actual")}: ${num(b.actual_weight_kg)} · ${t("difference")}: ${(b.actual_weight_kg - b.expected_weight_kg).toFixed(1)}</p>
    <p>${b.destination || ""} ${b.vehicle_number || ""} ${b.description || ""}</p>
    ${b.driver_name || b.driver_phone || b.seal_number ? html`<p>${t("driver_name")}: ${b.driver_name || "—"} · ${t("driver_phone")}: ${b.driver_phone || "—"} · ${t("seal_number")}: ${b.seal_number || "—"}</p>` : ""}</div>
    <div class="scroll"><table><tr><th>${t("parent")}</th><th>${t("count")}</th><th>${t("weight")}</th><th>${t("area")}</th><th></th></tr>
    ${(b.parents || []).map((p) => html`<tr><td><a href="#/bags/${encodeURIComponent(p.qr)}">${p.qr}</a></td><td>${num(p.child_count)}</td><td>${num(p.weight_kg)}</td><td>${p.area}</td>
      <td>${manage ? html`<button class="secondary detach" data-qr="${p.qr}">${t("detach")}</button>` : ""}</td></tr>`)}</table></div>
    <div class="row noprint mt">
      ${can.manage() && b.status === "processing" ? html`<button id="complete">${t("complete")}</button>` : ""}
      ${/* a bill with returns keeps its history: it is never reopened */ can.manage() && b.status === "completed" && !b.returned_count ? html`<button id="reopen" class="secondary">${t("reopen")}</button>` : ""}
      <a class="button secondary" id="doc" href="${doc}" target="_blank">${t("document")}</a>
      <a class="button secondary" id="label" href="${doc}&format=a6" target="_blank">${t("label")}</a></div>`;
}
function fill(id, b) {
  const box = $("#bill-figs");
  if (!box) return;
  render(box, figures(b));
  billReturns(b);
  const act = async (fn) => { try { await fn(); detail(id); } catch (e) { note(errView(e), "err"); tone("err"); } };
  box.querySelectorAll(".detach").forEach((btn) => btn.addEventListener("click", () => act(() => api("DELETE", `/bills/${encodeURIComponent(id)}/parents/${encodeURIComponent(btn.dataset.qr)}`, undefined, { key: uuid() }))));
  if ($("#complete")) $("#complete").addEventListener("click", () => act(() => api("POST", `/bills/${encodeURIComponent(id)}/complete`, undefined, { key: uuid() })));
  if ($("#reopen")) $("#reopen").addEventListener("click", () => act(() => api("POST", `/bills/${encodeURIComponent(id)}/reopen`, undefined, { key: uuid() })));
}

async function detail(id) {
  let b;
  try { b = await api("GET", `/bills/${encodeURIComponent(id)}`); } catch (e) { render(main(), html`<h1>${t("bill")} ${id}</h1><div class="msg err" role="alert">${errWords(e)}</div>`); return; }
  const manage = can.manage() && b.status !== "completed";
  render(main(), html`<h1>${t("bill")} ${b.bill_id}</h1><div id="msg" class="msg" hidden role="status" aria-live="assertive"></div>
    ${manage ? html`<input id="attach" class="scan-input" inputmode="none" placeholder="${t("attach_prompt")}" aria-label="${t("attach_prompt")}" autocomplete="off" autocapitalize="characters">
      <p id="bill-queue" class="queue" role="status"></p>` : ""}
    <div id="bill-figs"></div>
    <section id="bill-refused" class="card refused mt" hidden aria-live="polite"></section>
    ${can.manage() ? /* known only after loading: editable on a completed bill too */ html`<details class="card noprint mt"><summary>${t("transport")}</summary><form id="tb" class="stack">
      <label>${t("vehicle")}<input name="vehicle_number" value="${b.vehicle_number || ""}" maxlength="50"></label>
      <label>${t("driver_name")}<input name="driver_name" value="${b.driver_name || ""}" maxlength="100"></label>
      <label>${t("driver_phone")}<input name="driver_phone" type="tel" value="${b.driver_phone || ""}" maxlength="20"></label>
      <label>${t("seal_number")}<input name="seal_number" value="${b.seal_number || ""}" maxlength="50"></label><button>${t("save")}</button></form></details>` : ""}
    ${manage ? html`<details class="card noprint mt"><summary>${t("edit_bill")}</summary><form id="eb" class="stack">
      <label>${t("capacity")}<input name="capacity" type="number" min="1" max="500" value="${b.capacity}" required></label>
      <label>${t("destination")}<input name="destination" value="${b.destination || ""}"></label>
      <label>${t("description")}<input name="description" value="${b.description || ""}"></label><button>${t("save")}</button></form></details>
      <details class="card danger-zone noprint"><summary>${t("delete_bill")}</summary><p>${t("delete_bill_hint")}</p><button id="delete" type="button" class="danger">${t("delete_bill")}</button></details>` : ""}`);
  fill(id, b);
  billQueue();
  const act = async (fn) => { try { await fn(); detail(id); } catch (e) { note(errView(e), "err"); tone("err"); } };
  if ($("#attach")) {
    $("#attach").focus();
    $("#attach").addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      const qr = e.target.value.trim(); e.target.value = "";
      // Through the offline queue: kept on the phone until the server has answered for good.
      if (qr) queueAttach(b.bill_id, qr);
    });
  }
  if ($("#eb")) $("#eb").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = Object.fromEntries(new FormData(e.target));
    act(() => api("PATCH", `/bills/${encodeURIComponent(id)}`, { ...f, capacity: Number(f.capacity) }, { key: uuid() }));
  });
  if ($("#tb")) $("#tb").addEventListener("submit", (e) => {
    e.preventDefault();
    act(() => api("PATCH", `/bills/${encodeURIComponent(id)}`, Object.fromEntries(new FormData(e.target)), { key: uuid() }));
  });
  if ($("#delete")) $("#delete").addEventListener("click", async () => {
    if (!confirm(t("delete_confirm", { id: b.bill_id }))) return;
    try { await api("DELETE", `/bills/${encodeURIComponent(id)}`, undefined, { key: uuid() }); go("#/bills"); } catch (e) { note(errView(e), "err"); tone("err"); }
  });
}

/** The waiting attaches of the bill on screen, and its refused ones (called whenever the queue changes). */
export function billQueue() {
  const el = document.getElementById("bill-queue");
  const id = decodeURIComponent(location.hash.replace(/^#\/bills\//, "").split("?")[0]);
  const uid = session.uid();
  if (!uid || !location.hash.startsWith("#/bills/")) return;
  if (el) {
    const n = attachesWaiting(uid, id).length;
    el.textContent = n ? t("attach_waiting", { n }) : "";
  }
  // Attaches the server refused for good after the page had said "saved": in plain words, the
  // other bill as a link, each with "Send again" (once the cause is fixed) or "Clear".
  const box = document.getElementById("bill-refused");
  if (!box) return;
  const mine = refusedOf(uid).filter((r) => r.kind === "attach" && String(r.bill_id).toLowerCase() === id.toLowerCase());
  box.hidden = !mine.length;
  render(box, mine.length ? html`<h2>${t("refused_title", { n: mine.length })}</h2>
    <ul>${mine.map((r) => html`<li><b>${r.body.parent_qr}</b>: ${problemView(r.problem)}
      <br><button type="button" class="secondary resend" data-key="${r.key}">${t("resend")}</button>
      <button type="button" class="secondary forget" data-key="${r.key}">${t("refused_clear_one")}</button></li>`)}</ul>` : "");
  const keep = (e) => e.preventDefault(); // the attach input keeps the focus (the scanner types there)
  box.querySelectorAll(".resend").forEach((b) => { b.addEventListener("mousedown", keep); b.addEventListener("click", () => resend(uid, b.dataset.key)); });
  box.querySelectorAll(".forget").forEach((b) => { b.addEventListener("mousedown", keep); b.addEventListener("click", () => forget(uid, b.dataset.key)); });
}
// An attach settled: the bill on screen shows its new figures.
events.addEventListener("attached", (e) => {
  const shown = location.hash.startsWith("#/bills/") && decodeURIComponent(location.hash.slice(8).split("?")[0]);
  // Only the figures are drawn again: the attach input keeps what the scanner is typing.
  if (shown && shown.toLowerCase() === String(e.detail.bill_id).toLowerCase()) {
    api("GET", `/bills/${encodeURIComponent(shown)}`).then((b) => fill(shown, b)).catch(() => { /* the next change redraws */ });
  }
});
