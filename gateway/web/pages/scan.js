// The scan station: the whole screen on a phone. The scan input always has the focus (a wedge
// scanner types into whatever has it); a parent scan starts a sack, then each scan is a child of
// it; when the sack is full the next scan is taken as the next parent (no tap needed).
import { html, render } from "../html.js";
import { t, errText, num, when } from "../i18n.js";
import { api, uuid, NetworkError } from "../api.js";
import { session, local, prefs, areaNames } from "../store.js";
import { $, main, note, options, problemView } from "../ui.js";
import { tone } from "../tones.js";
import * as q from "../queue.js";

let idleTimer = null;
function armIdle() {
  clearTimeout(idleTimer);
  const secs = prefs.idleSecs;
  if (!secs) return;
  idleTimer = setTimeout(() => {
    const uid = session.uid();
    if (!uid || !$("#scan") || !q.parentOf(uid)) return;
    q.setParent(uid, null);
    paint();
    note(t("idle_reset", { min: Math.round(secs / 60) || 1 }), "info");
  }, secs * 1000);
}
const IDLE_CHOICES = [0, 120, 300, 600, 1800];

export function scan() {
  const needsArea = session.role() !== "dispatcher";
  const area = local.get("tt.area", "");
  const areas = areaNames();
  render(main(), html`<section class="station">
    <h1 class="station-title">${t("scan_title")}</h1>
    ${needsArea ? html`<div class="row area-row"><label for="area">${t("area")}</label><select id="area"><option value="">—</option>${options(areas, area)}</select></div>` : ""}
    <div class="parent-line" id="prompt"></div>
    <div class="progress" id="progress" aria-live="polite"></div>
    <div class="parent-line" id="pstatus"></div>
    <input id="scan" class="scan-input" inputmode="none" autocomplete="off" autocapitalize="characters" spellcheck="false" enterkeyhint="go" aria-label="${t("scan_title")}">
    <div id="msg" class="msg" hidden role="status" aria-live="assertive"></div>
    <div class="row actions noprint"><button id="newparent" class="secondary" type="button">${t("change_parent")}</button>
      <button id="undo" class="secondary" type="button">${t("undo")}</button></div>
    <p id="queue" class="queue" role="status"></p>
    <section id="refused" class="card refused" hidden aria-live="polite"></section>
    <details class="settings noprint"><summary>${t("settings")}</summary>
      <label for="idle">${t("idle_label")}</label>
      <select id="idle">${options(IDLE_CHOICES, prefs.idleSecs, (s) => (s ? t("minutes", { n: s / 60 }) : t("never")))}</select>
    </details></section>`);
  const input = $("#scan");
  const keepFocus = () => setTimeout(() => { if (document.activeElement !== input && !$("#area:focus") && !$("#idle:focus") && !$(".settings summary:focus")) input.focus(); }, 0);
  input.addEventListener("blur", keepFocus);
  main().addEventListener("click", keepFocus);
  if ($("#area")) $("#area").addEventListener("change", (e) => { local.set("tt.area", e.target.value); keepFocus(); });
  $("#idle").addEventListener("change", (e) => { prefs.setIdleSecs(e.target.value); armIdle(); keepFocus(); });
  // The buttons never take the focus from the scan input (a scanner types into whatever has it).
  main().querySelectorAll("button").forEach((b) => b.addEventListener("mousedown", (e) => e.preventDefault()));
  $("#newparent").addEventListener("click", () => { q.setParent(session.uid(), null); paint(); input.focus(); });
  $("#undo").addEventListener("click", () => { input.focus(); undo(); });
  input.addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault();
    const value = input.value.trim();
    input.value = "";
    if (value) submit(value);
  });
  showQueue();
  armIdle();
  input.focus();
}

function submit(value) {
  armIdle();
  const uid = session.uid();
  const p = q.parentOf(uid);
  // No parent yet, or the parent is full (as the server said): this scan is the next parent.
  if (!p || (!p.pending && p.status === "full" && q.pendingFor(uid, p.qr) === 0)) {
    const area = $("#area") ? $("#area").value : "";
    q.scanParent(value, area);
    return;
  }
  q.scanChild(p.qr, value);
}

async function undo() {
  armIdle();
  const parent = q.parentOf(session.uid());
  if (!parent) return;
  const child = q.undoTarget(session.uid(), parent.qr);
  if (child) { q.queueUndo(parent.qr, child); return; }
  if (parent.pending) return;
  // This phone linked nothing here: the server picks the caller's newest link, now or never.
  try {
    const r = await api("POST", "/scans/undo", { parent_qr: parent.qr }, { key: uuid(), timeout: q.SEND_TIMEOUT_MS });
    q.setParent(session.uid(), r.parent);
    paint();
    note(t("undone", { qr: r.unlinked_child_qr }), "ok"); tone("child");
  } catch (e) { note(e instanceof NetworkError ? t("err_network") : errText(e.problem), "err"); tone("err"); }
}

/** The parent and its figure: the server's count plus the scans still waiting in the queue. */
export function paint() {
  const uid = session.uid();
  if (!uid || !$("#prompt")) return;
  const p = q.parentOf(uid);
  const pending = p ? q.pendingFor(uid, p.qr) : 0;
  const cap = p && p.capacity;
  const shown = p ? Math.max(0, cap ? Math.min(cap, p.child_count + pending) : p.child_count + pending) : 0;
  const full = !!p && !p.pending && (p.status === "full" || shown >= cap);
  $("#prompt").textContent = !p ? t("scan_parent_prompt") : full && !pending ? t("handoff_prompt", { qr: p.qr }) : `${t("scan_child_prompt")} ${p.qr}`;
  const prog = $("#progress");
  prog.textContent = p ? `${num(shown)}/${cap ? num(cap) : "—"}` : "";
  prog.className = `progress${full ? " full" : ""}${pending || (p && p.pending) ? " pending" : ""}`;
  $("#pstatus").textContent = !p ? "" : p.pending ? t("parent_waiting") : t(`status_${p.status}`) + (pending ? ` · ${t("pending_line", { n: pending })}` : "");
  document.querySelector(".station")?.classList.toggle("is-full", full && !pending);
}

/** The queue line, the refusals list and the figure (called whenever the queue changes). */
export function showQueue() {
  const uid = session.uid();
  const el = $("#queue");
  if (!el || !uid) return;
  const n = q.waitingCount(uid);
  const reason = q.waitReason();
  el.textContent = n ? t("waiting", { n }) + (reason ? ` · ${t(`wait_${reason}`)}` : "") : "";
  showRefused(uid, q.refusedOf(uid));
  paint();
}
function showRefused(uid, list) {
  const box = $("#refused");
  if (!box) return;
  box.hidden = !list.length;
  if (!list.length) { render(box, ""); return; }
  const at = (ms) => when(new Date(ms).toISOString(), { hour: "2-digit", minute: "2-digit" });
  render(box, html`<h2>${t("refused_title", { n: list.length })}</h2><p class="muted">${t("refused_hint")}</p>
    <ul>${list.slice().reverse().map((r) => html`<li>${r.kind === "attach" ? html`<b>${r.body.parent_qr}</b> → ${t("bill")} ${r.bill_id}`
      : html`<b>${r.body.child_qr || r.body.qr || ""}</b>${r.body.parent_qr ? html` → ${r.body.parent_qr}` : html` (${t("parent")})`}`}${r.kind === "undo" ? html` (${t("undo")})` : ""}
      <span class="muted">${at(r.at)}</span><br>${problemView(r.problem)}
      <br><button type="button" class="secondary resend" data-key="${r.key}">${t("resend")}</button></li>`)}</ul>
    <button id="clear-refused" class="secondary" type="button">${t("refused_clear")}</button>`);
  box.querySelectorAll(".resend").forEach((b) => {
    b.addEventListener("mousedown", (e) => e.preventDefault());
    b.addEventListener("click", () => { q.resend(uid, b.dataset.key); const input = $("#scan"); if (input) input.focus(); });
  });
  const btn = $("#clear-refused");
  btn.addEventListener("mousedown", (e) => e.preventDefault());
  btn.addEventListener("click", () => { q.clearRefused(uid); const input = $("#scan"); if (input) input.focus(); });
}
