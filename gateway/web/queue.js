// The offline queue (per user, in localStorage). Every parent scan, child scan and undo is first
// written to the queue with the idempotency key made when it was made, and only then sent, strictly
// in order: item n+1 is sent once item n is settled. An item leaves the queue only when the server
// answers success or a definitive refusal (a problem document with retryable=false); a refusal of
// a scan the page had already called saved goes to a list the dispatcher sees and clears. Anything
// else — no network, a time-out, 5xx, 429 (not before its Retry-After), 401 (once the user has
// logged in again) — keeps the item at the head, retried with backoff under the same key (SPEC §4).
import { api, retryable, uuid, NetworkError, ApiError } from "./api.js";
import { local, session, emit } from "./store.js";
import { t } from "./i18n.js";
import { note, problemView } from "./ui.js";
import { tone } from "./tones.js";

export const SEND_TIMEOUT_MS = 15000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
const qkey = (uid) => `tt.queue.${uid}`;
const rkey = (uid) => `tt.refused.${uid}`;
const lkey = (uid) => `tt.linked.${uid}`;
const pkey = (uid) => `tt.parent.${uid}`;
export const queueOf = (uid) => (uid ? local.get(qkey(uid), []) : []);
export const refusedOf = (uid) => (uid ? local.get(rkey(uid), []) : []);
export const clearRefused = (uid) => { local.set(rkey(uid), []); emit("queue"); };
/** Takes one refusal off the list (seen, nothing to send again). */
export const forget = (uid, refusedKey) => { local.set(rkey(uid), refusedOf(uid).filter((x) => x.key !== refusedKey)); emit("queue"); };
/**
 * Sends a refused scan again (the dispatcher fixed what was wrong): a new queue item with the same
 * request under a new idempotency key, at the end of the queue; it leaves the refusals list.
 */
export function resend(uid, refusedKey) {
  const r = refusedOf(uid).find((x) => x.key === refusedKey);
  if (!r) return;
  local.set(rkey(uid), refusedOf(uid).filter((x) => x.key !== refusedKey));
  const path = r.kind === "attach" ? `/bills/${encodeURIComponent(r.bill_id)}/parents` : `/scans/${r.kind}`;
  submitItem({ kind: r.kind, path, body: r.body, bill_id: r.bill_id, key: key(), at: Date.now() });
}
function enqueue(uid, item) { local.set(qkey(uid), [...queueOf(uid), item]); }
function dequeue(uid, key) { local.set(qkey(uid), queueOf(uid).filter((x) => x.key !== key)); }
function patchItem(uid, key, patch) { local.set(qkey(uid), queueOf(uid).map((x) => (x.key === key ? { ...x, ...patch } : x))); }
function refuse(uid, item, problem) {
  // Kept until the dispatcher clears the list (bounded, so a broken day cannot fill the storage).
  local.set(rkey(uid), [...refusedOf(uid), { key: item.key, kind: item.kind, body: item.body, bill_id: item.bill_id, problem, at: Date.now() }].slice(-300));
}
export const sameQr = (a, b) => String(a ?? "").trim().toUpperCase() === String(b ?? "").trim().toUpperCase();

// ------------------------------------------------------------------ the current parent
/**
 * The parent the scan station scans into: the server's answer, or, while its parent scan is
 * waiting, `{qr, pending: true, prev}` (children scanned meanwhile queue behind it, in order).
 */
export const parentOf = (uid) => (uid ? local.get(pkey(uid), null) : null);
export const setParent = (uid, p) => { if (p) local.set(pkey(uid), p); else local.del(pkey(uid)); };

// The children this phone linked into the current parent, newest last: what an undo names, so a
// queued undo replayed later can only ever remove that one link (SPEC §3, `child_qr`).
function linkedOf(uid, parentQr) { const l = local.get(lkey(uid), null); return l && sameQr(l.parent, parentQr) ? l.children : []; }
function remember(uid, parentQr, childQr, add) {
  const cur = parentOf(uid);
  if (!cur || !sameQr(cur.qr, parentQr)) return;
  const kids = linkedOf(uid, parentQr).filter((q) => !sameQr(q, childQr));
  local.set(lkey(uid), { parent: parentQr, children: (add ? [...kids, childQr] : kids).slice(-200) });
}
export function undoTarget(uid, parentQr) {
  let kids = linkedOf(uid, parentQr);
  for (const it of queueOf(uid)) {
    if ((it.kind !== "child" && it.kind !== "undo") || !sameQr(it.body.parent_qr, parentQr)) continue;
    kids = kids.filter((q) => !sameQr(q, it.body.child_qr));
    if (it.kind === "child") kids.push(it.body.child_qr);
  }
  return kids.length ? kids[kids.length - 1] : null;
}
/**
 * Children waiting in the queue for this parent (undos count down), shown in the progress figure.
 * Scans whose answer is on its way (live) are left out: their figure comes with the answer.
 */
export function pendingFor(uid, parentQr) {
  const known = linkedOf(uid, parentQr), seen = [];
  let n = 0;
  for (const it of queueOf(uid)) {
    if ((it.kind !== "child" && it.kind !== "undo") || !sameQr(it.body.parent_qr, parentQr) || liveKeys.has(it.key)) continue;
    if (it.kind === "undo") n--;
    else if (!known.some((q) => sameQr(q, it.body.child_qr)) && !seen.some((q) => sameQr(q, it.body.child_qr))) { seen.push(it.body.child_qr); n++; }
  }
  return n;
}
/** Scans not yet sent (those whose answer is on its way are not waiting, yet). */
export const waitingCount = (uid) => queueOf(uid).filter((x) => !liveKeys.has(x.key)).length;

// ------------------------------------------------------------------ sending
let flushing = false, timer = null;
let reason = ""; // why the head of the queue waits: "offline", "retry" or "login"
export const waitReason = () => (navigator.onLine ? reason : "offline");
const liveKeys = new Set(); // scans made while the queue was moving: their answer is shown as it comes
function kick(delayMs) { clearTimeout(timer); timer = setTimeout(() => { timer = null; flush(); }, Math.max(0, delayMs || 0)); }
const backoff = (tries) => Math.round(BACKOFF_MS[Math.min(tries, BACKOFF_MS.length) - 1] * (0.8 + Math.random() * 0.4));

/** Puts a scan in the queue and starts sending. Answers at once with the queued tone when it has to wait. */
function submitItem(item) {
  const uid = session.uid();
  const ahead = queueOf(uid);
  // Nothing ahead is failing: its answer is near, so the page waits for it and shows it.
  const moving = navigator.onLine && ahead.every((x) => !x.tries);
  try { enqueue(uid, item); } catch {
    // The phone's storage is full: nothing was saved, and the dispatcher must know it.
    note(t("err_storage"), "err"); tone("err");
    return false;
  }
  if (moving) liveKeys.add(item.key);
  emit("queue");
  if (!moving) { note(t("queued", { n: ahead.length + 1 }), "info"); tone("queued"); }
  flush();
  return true;
}
const key = uuid; // a v4 UUID even where crypto.randomUUID is missing (plain http on a LAN)
/** A parent scan: from now on children go into it (queued behind it when it has to wait). */
export function scanParent(qr, area) {
  const uid = session.uid();
  const prev = parentOf(uid);
  if (area === undefined) area = session.role() !== "dispatcher" ? local.get("tt.area", "") : "";
  const item = { kind: "parent", path: "/scans/parent", body: { qr, ...(area ? { area } : {}) }, key: key(), at: Date.now() };
  try { setParent(uid, { qr, pending: true, child_count: 0, capacity: null, status: "open", prev: prev && !prev.pending ? prev : prev?.prev || null }); } catch { /* storage full: said below */ }
  if (!submitItem(item)) setParent(uid, prev);
}
export function scanChild(parentQr, childQr) {
  submitItem({ kind: "child", path: "/scans/child", body: { parent_qr: parentQr, child_qr: childQr }, key: key(), at: Date.now() });
}
/** An undo that may wait names its child, so a replay can only remove that link. */
export function queueUndo(parentQr, childQr) {
  submitItem({ kind: "undo", path: "/scans/undo", body: { parent_qr: parentQr, child_qr: childQr }, key: key(), at: Date.now() });
}

/** A parent loaded on a bill by scanning it on the bill's page: queued like any scan. */
export function queueAttach(billId, parentQr) {
  submitItem({ kind: "attach", path: `/bills/${encodeURIComponent(billId)}/parents`, bill_id: billId, body: { parent_qr: parentQr }, key: key(), at: Date.now() });
}
/** Attaches of `billId` still waiting (their answer is not on its way). */
export const attachesWaiting = (uid, billId) => queueOf(uid).filter((x) => x.kind === "attach" && x.bill_id === billId && !liveKeys.has(x.key));

/** What the server answered for a scan or undo that left the queue with success. */
function settled(uid, item, r, live) {
  const current = parentOf(uid);
  if (item.kind === "attach") {
    emit("attached", { bill_id: item.bill_id, bill: r });
    if (live) { note(t("attached", { qr: item.body.parent_qr, bill: item.bill_id }), "ok"); tone("parent"); }
    return;
  }
  if (item.kind === "parent") {
    if (current && current.pending && sameQr(current.qr, item.body.qr)) setParent(uid, r.parent);
    if (live) { note(r.created ? t("parent_new", { qr: r.parent.qr }) : t("parent_ready", { qr: r.parent.qr }), "ok"); tone("parent"); }
    return;
  }
  if (item.kind === "child") remember(uid, r.parent.qr, r.child.qr, true);
  else remember(uid, r.parent.qr, r.unlinked_child_qr, false);
  if (current && !current.pending && sameQr(current.qr, r.parent.qr)) setParent(uid, r.parent);
  if (!live) return;
  if (item.kind === "child") {
    if (r.parent.status === "full" && !r.already_linked) { note(t("parent_now_full", { qr: r.parent.qr }), "full"); tone("full"); return; }
    note(r.already_linked ? t("child_again", { qr: r.child.qr }) : t("child_ok", { qr: r.child.qr }), "ok");
  } else note(t("undone", { qr: r.unlinked_child_qr }), "ok");
  tone("child");
}
/** A parent scan refused for good: the station goes back to the parent it had, if any. */
function parentRefused(uid, item, problem, live) {
  const current = parentOf(uid);
  const mine = current && current.pending && sameQr(current.qr, item.body.qr);
  if (mine) setParent(uid, current.prev || null);
  if (!live) return false;
  // The hand-off: the sack is full and the next code was a packet, not the next sack.
  if (mine && current.prev && current.prev.status === "full" && problem.code === "qr_is_child") note(t("handoff_child", { qr: current.prev.qr }), "err");
  else note(problemView(problem), "err");
  tone("err");
  return true;
}

export async function flush(opts = {}) {
  const me = session.me;
  if (flushing || !me || me.user.must_change_password) return;
  flushing = true;
  const uid = me.user.id;
  let sent = 0, refused = 0, force = !!opts.force;
  const batchNote = () => {
    if (refused) note(t("refused_now", { n: refused }), "err");
    else if (sent) note(t("sent_later", { n: sent }), "ok");
  };
  try {
    for (;;) {
      if (!session.me || session.uid() !== uid) break; // logged out meanwhile: the rest waits for this user
      const item = queueOf(uid)[0];
      if (!item) { reason = ""; break; }
      const wait = (item.next_at || 0) - Date.now();
      // Backoff, unless the network just came back or the user just logged in; never before Retry-After.
      if (wait > 0 && !(force && !item.hard)) { kick(wait); break; }
      force = false;
      let r, err = null;
      try { r = await api("POST", item.path, item.body, { key: item.key, timeout: SEND_TIMEOUT_MS }); } catch (e) { err = e; }
      const live = liveKeys.delete(item.key);
      if (!err) {
        dequeue(uid, item.key);
        reason = "";
        settled(uid, item, r, live);
        emit("queue");
        if (!live) { sent++; batchNote(); }
        continue;
      }
      if (!retryable(err)) {
        dequeue(uid, item.key);
        if (item.kind === "parent" && parentRefused(uid, item, err.problem, live)) { emit("queue"); continue; }
        if (live && item.kind === "child" && err.problem.code === "qr_is_parent") { emit("queue"); scanParent(item.body.child_qr); continue; }
        if (live) { emit("queue"); note(problemView(err.problem), "err"); tone("err"); continue; }
        // A scan the page had called saved: the dispatcher must see it (and never the success tone).
        refuse(uid, item, err.problem);
        if (!refused++) tone("err");
        batchNote();
        emit("queue");
        continue;
      }
      // Kept at the head, sent again later with the same key; whatever waited for its answer now waits too.
      const wasLive = live || [...liveKeys].some((k) => queueOf(uid).some((x) => x.key === k));
      liveKeys.clear();
      const tries = (item.tries || 0) + 1;
      const after = err.retryAfterMs;
      const login = err instanceof ApiError && err.status === 401;
      const delay = login ? 0 : after != null ? Math.min(after, 300000) : backoff(tries);
      patchItem(uid, item.key, { tries, next_at: Date.now() + delay, hard: after != null && !login });
      reason = login ? "login" : err instanceof NetworkError && !navigator.onLine ? "offline" : "retry";
      if (wasLive) { note(t("queued", { n: queueOf(uid).length }), "info"); tone("queued"); }
      if (!login) kick(delay); // after a 401, the next login sends the queue
      break;
    }
  } finally {
    flushing = false;
    emit("queue");
  }
}
window.addEventListener("online", () => flush({ force: true }));
window.addEventListener("offline", () => emit("queue"));
setInterval(() => flush(), 5000);
