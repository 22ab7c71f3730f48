// TraceTrack web client: plain JavaScript, no build step, nothing from the internet.
"use strict";
(() => {
  const $ = (sel, root = document) => root.querySelector(sel);
  const main = $("#main");
  const store = {
    get: (k, d) => { try { const v = localStorage.getItem(k); return v === null ? d : JSON.parse(v); } catch { return d; } },
    set: (k, v) => localStorage.setItem(k, JSON.stringify(v)),
    del: (k) => localStorage.removeItem(k),
  };
  let lang = store.get("tt.lang", "en");
  let me = null;          // {user, csrf_token}
  let liveSources = [];   // EventSources to close on navigation

  // ---------------------------------------------------------------- i18n
  function t(key, vars) {
    const dict = window.TT_I18N[lang] || window.TT_I18N.en;
    let s = dict[key] ?? window.TT_I18N.en[key] ?? key;
    for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, v);
    return s;
  }
  function errText(problem) {
    if (!problem) return t("err_network");
    const key = `err.${problem.code}`;
    const dict = window.TT_I18N[lang] || window.TT_I18N.en;
    return (dict[key] || window.TT_I18N.en[key]) ? t(key, problem) : (problem.detail || problem.code);
  }
  function esc(s) {
    return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  }
  function html(strings, ...vals) {
    const part = (v) => (v !== null && typeof v === "object" && "__html" in v ? v.__html : esc(v));
    return strings.reduce((out, s, i) => out + s + (i < vals.length ? part(vals[i]) : ""), "");
  }
  const raw = (s) => ({ __html: s });

  // ---------------------------------------------------------------- API
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
    const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
  }
  /** No answer at all: no network, the connection dropped, or no answer within the time-out. */
  class NetworkError extends Error {}
  /** An HTTP answer that is not a success; `problem` is the problem document (or a stand-in). */
  class ApiError extends Error {
    constructor(p, status, retryAfterMs) { super(p.detail || p.code); this.problem = p; this.status = status; this.retryAfterMs = retryAfterMs; }
  }
  /** `Retry-After` (delay-seconds or an HTTP date) in milliseconds, or null. */
  function retryAfterMs(res, problem) {
    const h = (res.headers.get("Retry-After") || "").trim();
    if (/^\d+$/.test(h)) return Number(h) * 1000;
    if (h && !Number.isNaN(Date.parse(h))) return Math.max(0, Date.parse(h) - Date.now());
    if (problem && Number.isFinite(problem.retry_after_seconds)) return problem.retry_after_seconds * 1000;
    return null;
  }
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf_token;
    if (opts.key) headers["Idempotency-Key"] = opts.key;
    const ctl = opts.timeout ? new AbortController() : null;
    const timer = ctl ? setTimeout(() => ctl.abort(), opts.timeout) : null;
    let res, data;
    try {
      res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", signal: ctl ? ctl.signal : undefined });
      data = res.status === 204 ? null : await res.json().catch(() => null);
    } catch (e) {
      throw new NetworkError(String(e));
    } finally { clearTimeout(timer); }
    if (!res.ok) {
      if (res.status === 401 && path !== "/auth/login") { me = null; go("#/login"); }
      const problem = data && typeof data.code === "string" ? data : { code: res.status >= 500 ? "unavailable" : "internal", status: res.status };
      throw new ApiError(problem, res.status, retryAfterMs(res, data));
    }
    return data;
  }
  /**
   * Whether the same request may succeed later (SPEC §2: the error table's `retryable`, served in
   * every problem document). Without a problem document (say, a proxy's error page), by status:
   * 401, 408, 429 and 5xx are retried, any other 4xx is definitive. No answer at all is retried.
   */
  function retryable(e) {
    if (e instanceof NetworkError) return true;
    if (!(e instanceof ApiError)) return false;
    if (typeof e.problem.retryable === "boolean") return e.problem.retryable;
    return e.status === 401 || e.status === 408 || e.status === 429 || e.status >= 500;
  }

  // ---------------------------------------------------------------- sound and touch
  // Three distinct answers: saved on the server (one high beep), refused (a low buzz), and kept on
  // this phone to send later (two soft mid beeps): never the success tone for the last two.
  const TONES = {
    ok: { beeps: [[0, 0.12]], hz: 880, wave: "sine", vibrate: 60 },
    err: { beeps: [[0, 0.45]], hz: 220, wave: "square", vibrate: [200, 80, 200] },
    queued: { beeps: [[0, 0.08], [0.16, 0.08]], hz: 520, wave: "triangle", vibrate: [40, 60, 40] },
  };
  let audio;
  function tone(kind) {
    const k = TONES[kind === true ? "ok" : kind === false ? "err" : kind] || TONES.err;
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      for (const [at, len] of k.beeps) {
        const o = audio.createOscillator(), g = audio.createGain();
        o.frequency.value = k.hz; o.type = k.wave;
        g.gain.value = 0.15; o.connect(g); g.connect(audio.destination);
        o.start(audio.currentTime + at); o.stop(audio.currentTime + at + len);
      }
    } catch { /* no audio */ }
    if (navigator.vibrate) navigator.vibrate(k.vibrate);
  }

  // ---------------------------------------------------------------- offline queue (per user)
  // Every child scan and undo is first written to a queue kept per user in localStorage, with the
  // idempotency key made when the scan was made, and only then sent, strictly in order: item n+1 is
  // sent once item n is settled. An item leaves the queue only when the server answers success or
  // a definitive refusal (a problem document with retryable=false); a refusal of a scan the page had
  // already called saved goes to a list the dispatcher sees and clears. Anything else — no network,
  // a time-out, 5xx, 429 (not before its Retry-After), 401 (once the user has logged in again) —
  // keeps the item at the head of the queue, retried with backoff under the same key (SPEC §4).
  const SEND_TIMEOUT_MS = 15000;
  const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000, 30000];
  const qkey = (uid) => `tt.queue.${uid}`;
  const rkey = (uid) => `tt.refused.${uid}`;
  const lkey = (uid) => `tt.linked.${uid}`;
  const pkeyOf = (uid) => `tt.parent.${uid}`;
  const uidNow = () => (me ? me.user.id : null);
  const queueOf = (uid) => (uid ? store.get(qkey(uid), []) : []);
  const refusedOf = (uid) => (uid ? store.get(rkey(uid), []) : []);
  function enqueue(uid, item) { store.set(qkey(uid), [...queueOf(uid), item]); }
  function dequeue(uid, key) { store.set(qkey(uid), queueOf(uid).filter((x) => x.key !== key)); }
  function patchItem(uid, key, patch) { store.set(qkey(uid), queueOf(uid).map((x) => (x.key === key ? { ...x, ...patch } : x))); }
  function refuse(uid, item, problem) {
    // Kept until the dispatcher clears the list (bounded, so a broken day cannot fill the storage).
    store.set(rkey(uid), [...refusedOf(uid), { key: item.key, kind: item.kind, body: item.body, problem, at: Date.now() }].slice(-300));
  }
  const sameQr = (a, b) => String(a).trim().toUpperCase() === String(b).trim().toUpperCase();

  // The children this phone linked into the current parent, newest last: what an undo names, so a
  // queued undo replayed later can only ever remove that one link (SPEC §3, `child_qr`).
  function linkedOf(uid, parentQr) { const l = store.get(lkey(uid), null); return l && l.parent === parentQr ? l.children : []; }
  function remember(uid, parentQr, childQr, add) {
    const cur = store.get(pkeyOf(uid), null);
    if (!cur || cur.qr !== parentQr) return;
    const kids = linkedOf(uid, parentQr).filter((q) => !sameQr(q, childQr));
    store.set(lkey(uid), { parent: parentQr, children: (add ? [...kids, childQr] : kids).slice(-200) });
  }
  function undoTarget(uid, parentQr) {
    let kids = linkedOf(uid, parentQr);
    for (const it of queueOf(uid)) {
      if (it.body.parent_qr !== parentQr) continue;
      kids = kids.filter((q) => !sameQr(q, it.body.child_qr));
      if (it.kind === "child") kids.push(it.body.child_qr);
    }
    return kids.length ? kids[kids.length - 1] : null;
  }
  // Children waiting in the queue for this parent (undos count down), shown in the progress figure.
  // Scans whose answer is on its way (live) are left out: their figure comes with the answer.
  function pendingFor(uid, parentQr) {
    const known = linkedOf(uid, parentQr), seen = [];
    let n = 0;
    for (const it of queueOf(uid)) {
      if (it.body.parent_qr !== parentQr || liveKeys.has(it.key)) continue;
      if (it.kind === "undo") n--;
      else if (!known.some((q) => sameQr(q, it.body.child_qr)) && !seen.some((q) => sameQr(q, it.body.child_qr))) { seen.push(it.body.child_qr); n++; }
    }
    return n;
  }

  let queueReason = ""; // why the head of the queue waits: "offline", "retry" or "login"
  function showQueue() {
    const uid = uidNow();
    // A scan whose answer is on its way is not waiting (yet); it is counted once it has to.
    const n = queueOf(uid).filter((x) => !liveKeys.has(x.key)).length, refused = refusedOf(uid);
    const el = $("#queue");
    const reason = navigator.onLine ? queueReason : "offline";
    if (el) el.textContent = n ? t("waiting", { n }) + (reason ? ` · ${t(`wait_${reason}`)}` : "") : "";
    const parts = [];
    if (!navigator.onLine) parts.push(t("offline"));
    if (n) parts.push(t("waiting_short", { n }));
    if (refused.length) parts.push(t("refused_short", { n: refused.length }));
    const net = $("#net");
    net.hidden = !parts.length;
    net.textContent = parts.join(" · ");
    showRefused(uid, refused);
    if (me && $("#progress")) paint();
  }
  function showRefused(uid, list) {
    const box = $("#refused");
    if (!box) return;
    box.hidden = !list.length;
    if (!list.length) { box.innerHTML = ""; return; }
    const when = (at) => new Date(at).toLocaleTimeString(lang === "hi" ? "hi-IN" : "en-IN", { hour: "2-digit", minute: "2-digit" });
    box.innerHTML = html`<h2>${t("refused_title", { n: list.length })}</h2><p class="muted">${t("refused_hint")}</p>
      <ul>${raw(list.slice().reverse().map((r) => `<li><b>${esc(r.body.child_qr || "")}</b> → ${esc(r.body.parent_qr)}${r.kind === "undo" ? ` (${esc(t("undo"))})` : ""}
        <span class="muted">${esc(when(r.at))}</span><br>${esc(errText(r.problem))}</li>`).join(""))}</ul>
      <button id="clear-refused" class="secondary" type="button">${t("refused_clear")}</button>`;
    const btn = $("#clear-refused");
    btn.addEventListener("mousedown", (e) => e.preventDefault());
    btn.addEventListener("click", () => { store.set(rkey(uid), []); showQueue(); const input = $("#scan"); if (input) input.focus(); });
  }

  let flushing = false, timer = null;
  const liveKeys = new Set(); // scans made while the queue was moving: their answer is shown as it comes
  function kick(delayMs) { clearTimeout(timer); timer = setTimeout(() => { timer = null; flush(); }, Math.max(0, delayMs || 0)); }
  const backoff = (tries) => Math.round(BACKOFF_MS[Math.min(tries, BACKOFF_MS.length) - 1] * (0.8 + Math.random() * 0.4));
  /** Puts a scan in the queue and starts sending. Answers at once with the queued tone when it has to wait. */
  function submitItem(item) {
    const uid = me.user.id;
    const ahead = queueOf(uid);
    // Nothing ahead is failing: its answer is near, so the page waits for it and shows it.
    const moving = navigator.onLine && ahead.every((x) => !x.tries);
    try { enqueue(uid, item); } catch {
      // The phone's storage is full: nothing was saved, and the dispatcher must know it.
      note(t("err_storage"), "err"); tone("err");
      return;
    }
    if (moving) liveKeys.add(item.key);
    showQueue();
    if (!moving) { note(t("queued", { n: ahead.length + 1 }), "info"); tone("queued"); }
    flush();
  }
  async function flush(opts = {}) {
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
        if (!me || me.user.id !== uid) break; // logged out meanwhile: the rest waits for this user
        const item = queueOf(uid)[0];
        if (!item) { queueReason = ""; break; }
        const wait = (item.next_at || 0) - Date.now();
        // Backoff, unless the network just came back or the user just logged in; never before Retry-After.
        if (wait > 0 && !(force && !item.hard)) { kick(wait); break; }
        force = false;
        let r, err = null;
        try { r = await api("POST", item.path, item.body, { key: item.key, timeout: SEND_TIMEOUT_MS }); } catch (e) { err = e; }
        const live = liveKeys.delete(item.key);
        if (!err) {
          dequeue(uid, item.key);
          queueReason = "";
          settled(uid, item, r, live);
          if (!live) { sent++; batchNote(); }
          continue;
        }
        if (!retryable(err)) {
          dequeue(uid, item.key);
          if (live && item.kind === "child" && err.problem.code === "qr_is_parent") { showQueue(); scanParent(item.body.child_qr); continue; }
          if (live) { showQueue(); note(errText(err.problem), "err"); tone("err"); continue; }
          // A scan the page had called saved: the dispatcher must see it (and never the success tone).
          refuse(uid, item, err.problem);
          if (!refused++) tone("err");
          batchNote();
          showQueue();
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
        queueReason = login ? "login" : err instanceof NetworkError && !navigator.onLine ? "offline" : "retry";
        if (wasLive) { note(t("queued", { n: queueOf(uid).length }), "info"); tone("queued"); }
        if (!login) kick(delay); // after a 401, login() sends the queue
        break;
      }
    } finally {
      flushing = false;
      showQueue();
    }
  }
  window.addEventListener("online", () => flush({ force: true }));
  window.addEventListener("offline", showQueue);
  setInterval(() => flush(), 5000);

  function note(text, kind) {
    const el = $("#msg");
    if (el) { el.className = `msg ${kind}`; el.textContent = text; el.hidden = false; }
  }

  // ---------------------------------------------------------------- routing
  const can = {
    manage: () => me && ["admin", "biller"].includes(me.user.role),
    admin: () => me && me.user.role === "admin",
  };
  function go(hash) { if (location.hash !== hash) location.hash = hash; else render(); }
  function nav() {
    const links = me ? [
      ["#/dashboard", t("nav_dashboard")], ["#/scan", t("nav_scan")], ["#/bags", t("nav_bags")], ["#/bills", t("nav_bills")],
      ...(can.admin() ? [["#/users", t("nav_users")], ["#/data", t("nav_data")]] : []),
    ] : [];
    $("#nav").innerHTML = links.map(([h, l]) => `<a href="${h}" class="${location.hash.startsWith(h) ? "active" : ""}">${esc(l)}</a>`).join("")
      + (me ? `<a href="#/logout">${esc(t("nav_logout"))}</a>` : "");
    $("#lang").textContent = t("lang_switch");
  }
  $("#lang").addEventListener("click", () => { lang = lang === "en" ? "hi" : "en"; store.set("tt.lang", lang); document.documentElement.lang = lang; render(); });

  async function render() {
    liveSources.forEach((s) => s.close()); liveSources = [];
    document.documentElement.lang = lang;
    const [route, ...rest] = location.hash.replace(/^#\/?/, "").split("/");
    if (!me && route !== "login") {
      try { me = await api("GET", "/auth/me"); } catch { me = null; }
      if (!me) return go("#/login");
      signedIn();
    }
    if (me && me.user.must_change_password && route !== "password" && route !== "logout") return go("#/password");
    nav();
    const page = {
      "": dashboard, dashboard, login, logout, password, scan,
      bags: () => bags(decodeURIComponent(rest.join("/"))),
      bills: () => (rest[0] ? billDetail(decodeURIComponent(rest.join("/"))) : bills()),
      users: () => (can.admin() ? users() : forbidden()),
      data: () => (can.admin() ? data() : forbidden()),
    }[route] || dashboard;
    await page();
    showQueue();
  }
  window.addEventListener("hashchange", render);
  /** A session (new or found): remember whose queue the login page talks about, and send it. */
  function signedIn() {
    store.set("tt.last_user", { id: me.user.id, username: me.user.username });
    flush({ force: true });
  }
  function forbidden() { main.innerHTML = html`<h1>${t("forbidden")}</h1>`; }

  // ---------------------------------------------------------------- login, logout, password
  function login() {
    const last = store.get("tt.last_user", null);
    const waiting = last ? queueOf(last.id).length : 0;
    main.innerHTML = html`<h1>${t("login_title")}</h1><div id="msg" class="msg" hidden></div>
      ${raw(waiting ? `<p id="login-queue" class="msg info">${esc(t("login_to_send", { n: waiting, user: last.username }))}</p>` : "")}
      <form id="f" class="stack card">
        <label for="u">${t("username")}</label><input id="u" name="username" autocomplete="username" autocapitalize="none" required>
        <label for="p">${t("password")}</label><input id="p" name="password" type="password" autocomplete="current-password" required>
        <button type="submit">${t("login")}</button></form>`;
    $("#u").focus();
    $("#f").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        const r = await api("POST", "/auth/login", { username: $("#u").value.trim(), password: $("#p").value });
        me = { user: r.user, csrf_token: r.csrf_token };
        signedIn();
        go(r.must_change_password ? "#/password" : "#/scan");
      } catch (e) { note(errText(e.problem), "err"); tone("err"); }
    });
  }
  async function logout() {
    try { await api("POST", "/auth/logout"); } catch { /* already gone */ }
    me = null; go("#/login");
  }
  function password() {
    main.innerHTML = html`<h1>${t("change_title")}</h1><div id="msg" class="msg" hidden></div>
      <form id="f" class="stack card">
        <label for="c">${t("current_password")}</label><input id="c" type="password" autocomplete="current-password" required>
        <label for="n">${t("new_password")}</label><input id="n" type="password" autocomplete="new-password" required>
        <button type="submit">${t("save")}</button></form>`;
    $("#f").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api("POST", "/auth/password", { current_password: $("#c").value, new_password: $("#n").value });
        me = await api("GET", "/auth/me");
        signedIn();
        note(t("password_changed"), "ok"); setTimeout(() => go("#/scan"), 600);
      } catch (e) { note(`${errText(e.problem)} ${e.problem && e.problem.reason ? "(" + e.problem.reason + ")" : ""}`, "err"); }
    });
  }

  // ---------------------------------------------------------------- dashboard (live)
  function figuresHtml(d) {
    const f = (label, v) => `<div class="figure"><span>${esc(label)}</span><b>${esc(v)}</b></div>`;
    const bills = Object.entries(d.bills_by_status || {}).map(([k, v]) => `${esc(k)}: ${esc(v)}`).join(" · ") || "—";
    return `<div class="figures">${f(t("parents"), d.parents)}${f(t("children"), d.children)}${f(t("unlinked"), d.unlinked_children)}
      ${f(t("scans_today"), d.scans_today)}${f(t("scans_hour"), d.scans_last_hour)}</div>
      <p><b>${esc(t("bills"))}:</b> ${bills}</p>
      <table><tr><th>${esc(t("area"))}</th><th>${esc(t("parents"))}</th><th>${esc(t("children"))}</th><th>${esc(t("unlinked"))}</th><th>${esc(t("scans_today"))}</th></tr>
      ${(d.areas || []).map((a) => `<tr><td>${esc(a.area)}</td><td>${a.parents}</td><td>${a.children}</td><td>${a.unlinked_children}</td><td>${a.scans_today}</td></tr>`).join("")}</table>`;
  }
  async function dashboard() {
    main.innerHTML = html`<h1>${t("dash_title")}</h1><div id="figs">${t("loading")}</div>
`;
    try { $("#figs").innerHTML = figuresHtml(await api("GET", "/stats/dashboard")); } catch (e) { $("#figs").textContent = errText(e.problem); }
    const src = new EventSource("/api/v1/stats/live");
    src.addEventListener("dashboard", (ev) => { const el = $("#figs"); if (el) el.innerHTML = figuresHtml(JSON.parse(ev.data)); });
    liveSources.push(src);
  }

  // ---------------------------------------------------------------- scan station
  const AREAS = ["lucknow", "indore", "jaipur", "hisar", "sri_ganganagar", "sangaria", "bathinda", "raipur", "ranchi", "akola"];
  const pkey = () => `tt.parent.${me.user.id}`;
  function scan() {
    const needsArea = me.user.role !== "dispatcher";
    const area = store.get("tt.area", "");
    main.innerHTML = html`<h1>${t("scan_title")}</h1>
      ${raw(needsArea ? `<label for="area">${esc(t("area"))}</label><select id="area"><option value="">—</option>${AREAS.map((a) => `<option ${a === area ? "selected" : ""}>${a}</option>`).join("")}</select>` : "")}
      <div class="parent-line" id="prompt"></div>
      <div class="progress" id="progress"></div>
      <div class="parent-line" id="pstatus"></div>
      <input id="scan" class="scan-input" autocomplete="off" autocapitalize="characters" spellcheck="false" enterkeyhint="go" aria-label="scan">
      <div id="msg" class="msg" hidden role="status" aria-live="assertive"></div>
      <div class="row noprint"><button id="newparent" class="secondary" type="button">${t("change_parent")}</button>
        <button id="undo" class="secondary" type="button">${t("undo")}</button></div>
      <p id="queue" class="queue" role="status"></p>
      <section id="refused" class="card refused" hidden aria-live="polite"></section>`;
    const input = $("#scan");
    const keepFocus = () => setTimeout(() => { if (document.activeElement !== input && !$("#area:focus")) input.focus(); }, 0);
    input.addEventListener("blur", keepFocus);
    main.addEventListener("click", keepFocus);
    if ($("#area")) $("#area").addEventListener("change", (e) => { store.set("tt.area", e.target.value); keepFocus(); });
    // The buttons never take the focus from the scan input (a scanner types into whatever has it).
    main.querySelectorAll("button").forEach((b) => b.addEventListener("mousedown", (e) => e.preventDefault()));
    $("#newparent").addEventListener("click", () => { store.del(pkey()); paint(); input.focus(); });
    $("#undo").addEventListener("click", () => { input.focus(); undo(); });
    input.addEventListener("keydown", (e) => {
      if (e.key !== "Enter") return;
      e.preventDefault();
      const value = input.value.trim();
      input.value = "";
      if (value) submit(value);
    });
    showQueue();
    input.focus();
  }
  /** The parent and its figure: the server's count plus the scans still waiting in the queue. */
  function paint(parent) {
    if (!me || !$("#prompt")) return;
    if (parent) store.set(pkey(), parent);
    const p = store.get(pkey(), null);
    const pending = p ? pendingFor(me.user.id, p.qr) : 0;
    const shown = p ? Math.max(0, Math.min(p.capacity, p.child_count + pending)) : 0;
    $("#prompt").textContent = p ? `${t("scan_child_prompt")} ${p.qr}` : t("scan_parent_prompt");
    const prog = $("#progress");
    prog.textContent = p ? `${shown}/${p.capacity}` : "";
    prog.className = `progress${p && (p.status === "full" || shown >= p.capacity) ? " full" : ""}${pending ? " pending" : ""}`;
    $("#pstatus").textContent = p ? t(`status_${p.status}`) + (pending ? ` · ${t("pending_line", { n: pending })}` : "") : "";
  }
  /** What the server answered for a scan or undo that left the queue with success. */
  function settled(uid, item, r, live) {
    const mine = me && me.user.id === uid;
    const current = mine ? store.get(pkeyOf(uid), null) : null;
    if (item.kind === "child") remember(uid, r.parent.qr, r.child.qr, true);
    else remember(uid, r.parent.qr, r.unlinked_child_qr, false);
    if (current && current.qr === r.parent.qr) store.set(pkeyOf(uid), r.parent);
    if (mine) showQueue();
    if (!live) return;
    if (item.kind === "child") {
      note(r.already_linked ? t("child_again", { qr: r.child.qr }) : t("child_ok", { qr: r.child.qr }), "ok");
      if (r.parent.status === "full") note(t("parent_now_full"), "ok");
    } else note(t("undone", { qr: r.unlinked_child_qr }), "ok");
    tone("ok");
  }
  function submit(value) {
    const parent = store.get(pkey(), null);
    if (!parent) return scanParent(value);
    submitItem({ kind: "child", path: "/scans/child", body: { parent_qr: parent.qr, child_qr: value }, key: uuid(), at: Date.now() });
  }
  async function scanParent(value) {
    const area = $("#area") ? $("#area").value : "";
    try {
      const r = await api("POST", "/scans/parent", { qr: value, area: area || undefined }, { key: uuid() });
      paint(r.parent);
      note(r.created ? t("parent_new", { qr: r.parent.qr }) : t("parent_ready", { qr: r.parent.qr }), "ok");
      tone("ok");
    } catch (e) {
      note(e instanceof NetworkError ? t("err_network") : errText(e.problem), "err"); tone("err");
    }
  }
  async function undo() {
    const parent = store.get(pkey(), null);
    if (!parent) return;
    // An undo that may wait in the queue names its child, so a replay can only remove that link.
    const child = undoTarget(me.user.id, parent.qr);
    if (child) {
      submitItem({ kind: "undo", path: "/scans/undo", body: { parent_qr: parent.qr, child_qr: child }, key: uuid(), at: Date.now() });
      return;
    }
    // This phone linked nothing here: the server picks the caller's newest link, now or never.
    try {
      const r = await api("POST", "/scans/undo", { parent_qr: parent.qr }, { key: uuid(), timeout: SEND_TIMEOUT_MS });
      paint(r.parent); note(t("undone", { qr: r.unlinked_child_qr }), "ok"); tone("ok");
    } catch (e) { note(e instanceof NetworkError ? t("err_network") : errText(e.problem), "err"); tone("err"); }
  }

  // ---------------------------------------------------------------- bag lookup
  async function bags(qr) {
    main.innerHTML = html`<h1>${t("bags_title")}</h1>
      <form id="f" class="row"><input id="q" value="${qr || ""}" placeholder="${t("qr")}" autocapitalize="characters"><button>${t("lookup")}</button></form>
      <div id="msg" class="msg" hidden></div><div id="out"></div>`;
    $("#f").addEventListener("submit", (e) => { e.preventDefault(); go(`#/bags/${encodeURIComponent($("#q").value.trim())}`); });
    if (!qr) { $("#q").focus(); return; }
    try {
      const b = await api("GET", `/bags/${encodeURIComponent(qr)}`);
      const kids = b.type === "parent" ? await api("GET", `/bags/${encodeURIComponent(b.qr)}/children?page_size=200`).catch(() => ({ items: [] })) : { items: [] };
      const hist = await api("GET", `/bags/${encodeURIComponent(b.qr)}/history`).catch(() => []);
      $("#out").innerHTML = html`<div class="card"><table>
        <tr><th>${t("qr")}</th><td>${b.qr}</td></tr><tr><th>${t("type")}</th><td>${b.type} ${b.product_line || ""}</td></tr>
        <tr><th>${t("status")}</th><td>${b.status}${b.frozen ? " 🔒" : ""}</td></tr><tr><th>${t("area")}</th><td>${b.area}</td></tr>
        ${raw(b.type === "parent" ? `<tr><th>${esc(t("count"))}</th><td>${b.child_count}/${b.capacity}</td></tr><tr><th>${esc(t("weight"))}</th><td>${b.weight_kg}</td></tr>` : "")}
        ${raw(b.parent_qr ? `<tr><th>${esc(t("parent"))}</th><td><a href="#/bags/${encodeURIComponent(b.parent_qr)}">${esc(b.parent_qr)}</a></td></tr>` : "")}
        ${raw(b.bill_id ? `<tr><th>${esc(t("bill"))}</th><td><a href="#/bills/${encodeURIComponent(b.bill_id)}">${esc(b.bill_id)}</a></td></tr>` : "")}
        </table></div>
        ${raw(kids.items.length ? `<h2>${esc(t("children_list"))}</h2><p>${kids.items.map((k) => `<a href="#/bags/${encodeURIComponent(k.qr)}">${esc(k.qr)}</a>`).join(" · ")}</p>` : "")}
        <h2>${t("history")}</h2><ul class="timeline">${raw(hist.map((h) => `<li><b>${esc(h.action)}</b> <span class="muted">${esc(h.occurred_at)} ${esc(h.actor_username)}</span></li>`).join("") || `<li>${esc(t("none"))}</li>`)}</ul>`;
    } catch (e) { note(errText(e.problem), "err"); }
  }

  // ---------------------------------------------------------------- bills
  async function bills() {
    main.innerHTML = html`<h1>${t("bills_title")}</h1><div id="msg" class="msg" hidden></div>
      ${raw(can.manage() ? `<details class="card"><summary>${esc(t("new_bill"))}</summary><form id="nb" class="stack">
        <label>${esc(t("bill_id"))}<input name="bill_id" required></label><label>${esc(t("capacity"))}<input name="capacity" type="number" min="1" max="500" value="1" required></label>
        <label>${esc(t("destination"))}<input name="destination"></label><label>${esc(t("vehicle"))}<input name="vehicle_number"></label>
        <label>${esc(t("description"))}<input name="description"></label><button>${esc(t("create"))}</button></form></details>` : "")}
      <div id="list">${t("loading")}</div>`;
    if ($("#nb")) $("#nb").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      try {
        const b = await api("POST", "/bills", { ...f, capacity: Number(f.capacity) }, { key: uuid() });
        go(`#/bills/${encodeURIComponent(b.bill_id)}`);
      } catch (err) { note(errText(err.problem), "err"); }
    });
    try {
      const r = await api("GET", "/bills?page_size=100");
      $("#list").innerHTML = r.items.length ? `<table><tr><th>${esc(t("bill_id"))}</th><th>${esc(t("status"))}</th><th>${esc(t("parents"))}</th><th>${esc(t("destination"))}</th></tr>${r.items.map((b) =>
        `<tr><td><a href="#/bills/${encodeURIComponent(b.bill_id)}">${esc(b.bill_id)}</a></td><td>${esc(b.status)}</td><td>${b.parent_count}/${b.capacity}</td><td>${esc(b.destination || "")}</td></tr>`).join("")}</table>` : esc(t("none"));
    } catch (e) { $("#list").textContent = errText(e.problem); }
  }
  async function billDetail(id) {
    let b;
    try { b = await api("GET", `/bills/${encodeURIComponent(id)}`); } catch (e) { main.innerHTML = html`<div class="msg err">${errText(e.problem)}</div>`; return; }
    const manage = can.manage() && b.status !== "completed";
    main.innerHTML = html`<h1>${t("bill")} ${b.bill_id}</h1><div id="msg" class="msg" hidden></div>
      <div class="card"><div class="progress ${b.parent_count === b.capacity ? "full" : ""}">${b.parent_count}/${b.capacity}</div>
      <p>${t("status")}: <b>${b.status}</b> · ${t("expected")}: ${b.expected_weight_kg} · ${t("actual")}: ${b.actual_weight_kg} · ${t("difference")}: ${(b.actual_weight_kg - b.expected_weight_kg).toFixed(1)}</p>
      <p>${b.destination || ""} ${b.vehicle_number || ""} ${b.description || ""}</p></div>
      ${raw(manage ? `<input id="attach" class="scan-input" placeholder="${esc(t("attach_prompt"))}" autocomplete="off" autocapitalize="characters">` : "")}
      <table><tr><th>${t("parent")}</th><th>${t("count")}</th><th>${t("weight")}</th><th>${t("area")}</th><th></th></tr>
      ${raw((b.parents || []).map((p) => `<tr><td><a href="#/bags/${encodeURIComponent(p.qr)}">${esc(p.qr)}</a></td><td>${p.child_count}</td><td>${p.weight_kg}</td><td>${esc(p.area)}</td>
        <td>${manage ? `<button class="secondary detach" data-qr="${esc(p.qr)}">${esc(t("detach"))}</button>` : ""}</td></tr>`).join(""))}</table>
      <div class="row noprint mt">
        ${raw(can.manage() && b.status === "processing" ? `<button id="complete">${esc(t("complete"))}</button>` : "")}
        ${raw(can.manage() && b.status === "completed" ? `<button id="reopen" class="secondary">${esc(t("reopen"))}</button>` : "")}
        <a class="button secondary" id="doc" href="/api/v1/bills/${encodeURIComponent(b.bill_id)}/document" target="_blank">${t("document")}</a>
        <a class="button secondary" href="/api/v1/bills/${encodeURIComponent(b.bill_id)}/document?format=a6" target="_blank">${t("label")}</a></div>`;
    const act = async (fn) => { try { await fn(); billDetail(id); } catch (e) { note(errText(e.problem), "err"); tone(false); } };
    if ($("#attach")) {
      $("#attach").focus();
      $("#attach").addEventListener("keydown", (e) => {
        if (e.key !== "Enter") return;
        e.preventDefault();
        const qr = e.target.value.trim(); e.target.value = "";
        if (qr) act(async () => { await api("POST", `/bills/${encodeURIComponent(id)}/parents`, { parent_qr: qr }, { key: uuid() }); tone(true); });
      });
    }
    main.querySelectorAll(".detach").forEach((btn) => btn.addEventListener("click", () => act(() => api("DELETE", `/bills/${encodeURIComponent(id)}/parents/${encodeURIComponent(btn.dataset.qr)}`, undefined, { key: uuid() }))));
    if ($("#complete")) $("#complete").addEventListener("click", () => act(() => api("POST", `/bills/${encodeURIComponent(id)}/complete`, undefined, { key: uuid() })));
    if ($("#reopen")) $("#reopen").addEventListener("click", () => act(() => api("POST", `/bills/${encodeURIComponent(id)}/reopen`, undefined, { key: uuid() })));
  }

  // ---------------------------------------------------------------- users admin
  async function users() {
    main.innerHTML = html`<h1>${t("users_title")}</h1><div id="msg" class="msg" hidden></div>
      <details class="card"><summary>${t("new_user")}</summary><form id="nu" class="stack">
        <label>${t("username")}<input name="username" required autocapitalize="none"></label><label>${t("email")}<input name="email" type="email"></label>
        <label>${t("password")}<input name="password" type="password" required></label>
        <label>${t("role")}<select name="role"><option>dispatcher</option><option>biller</option><option>admin</option></select></label>
        <label>${t("area")}<select name="dispatch_area"><option value="">—</option>${raw(AREAS.map((a) => `<option>${a}</option>`).join(""))}</select></label>
        <button>${t("create")}</button></form></details>
      <p><button id="unlockall" class="secondary">${t("unlock_all")}</button></p><div id="list">${t("loading")}</div>`;
    $("#nu").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = Object.fromEntries(new FormData(e.target));
      if (!f.dispatch_area) delete f.dispatch_area;
      try { await api("POST", "/users", f, { key: uuid() }); users(); } catch (err) { note(`${errText(err.problem)} ${err.problem && err.problem.reason ? "(" + err.problem.reason + ")" : ""}`, "err"); }
    });
    $("#unlockall").addEventListener("click", async () => { try { const r = await api("POST", "/users/unlock-all"); note(`${t("unlock_all")}: ${r.unlocked}`, "ok"); } catch (e) { note(errText(e.problem), "err"); } });
    try {
      const r = await api("GET", "/users?page_size=200&include_inactive=true");
      $("#list").innerHTML = `<table><tr><th>${esc(t("username"))}</th><th>${esc(t("role"))}</th><th>${esc(t("area"))}</th><th>${esc(t("active"))}</th><th></th></tr>${r.items.map((u) =>
        `<tr data-id="${esc(u.id)}"><td>${esc(u.username)}${u.locked_until ? ` <b>(${esc(t("locked"))})</b>` : ""}</td>
         <td><select class="role">${["dispatcher", "biller", "admin"].map((x) => `<option ${x === u.role ? "selected" : ""}>${x}</option>`).join("")}</select></td>
         <td><select class="area"><option value="">—</option>${AREAS.map((a) => `<option ${a === u.dispatch_area ? "selected" : ""}>${a}</option>`).join("")}</select></td>
         <td><input type="checkbox" class="active check" ${u.active ? "checked" : ""}></td>
         <td class="row"><button class="secondary save">${esc(t("edit"))}</button><button class="secondary unlock">${esc(t("unlock"))}</button><button class="secondary reset">${esc(t("reset"))}</button></td></tr>`).join("")}</table>`;
      main.querySelectorAll("tr[data-id]").forEach((row) => {
        const id = row.dataset.id;
        const act = async (fn, ok) => { try { await fn(); note(ok, "ok"); } catch (e) { note(errText(e.problem), "err"); } };
        $(".save", row).addEventListener("click", () => act(() => api("PATCH", `/users/${id}`, { role: $(".role", row).value, dispatch_area: $(".area", row).value || undefined, active: $(".active", row).checked }, { key: uuid() }), t("edit")));
        $(".unlock", row).addEventListener("click", () => act(() => api("POST", `/users/${id}/unlock`), t("unlock")));
        $(".reset", row).addEventListener("click", () => {
          const pw = prompt(t("temp_password"));
          if (pw) act(() => api("POST", `/users/${id}/reset-password`, { password: pw }, { key: uuid() }), t("reset"));
        });
      });
    } catch (e) { $("#list").textContent = errText(e.problem); }
  }

  // ---------------------------------------------------------------- exports and label import (admin)
  const XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
  function data() {
    const areas = AREAS.map((a) => `<option>${a}</option>`).join("");
    main.innerHTML = html`<h1>${t("data_title")}</h1><div id="msg" class="msg" hidden></div>
      <section class="card"><h2>${t("exports")}</h2>
        <div class="row"><label>${t("from")}<input id="xfrom" type="date"></label><label>${t("to")}<input id="xto" type="date"></label></div>
        <p class="muted">${t("export_hint")}</p><div id="xlinks" class="row"></div></section>
      <section class="card"><h2>${t("imports")}</h2><form id="imp" class="stack">
        <label>${t("label_file")}<input name="file" type="file" accept=".xlsx,${XLSX_TYPE}" required></label>
        <label>${t("area")}<select name="area" required><option value="">—</option>${raw(areas)}</select></label>
        <label class="row"><input type="checkbox" name="dry_run" class="check"> ${t("dry_run")}</label>
        <button>${t("import")}</button></form><div id="report"></div></section>`;
    // Dates are the browser's local days: from midnight of "from" to midnight after "to".
    const day = (v, next) => { if (!v) return null; const d = new Date(`${v}T00:00:00`); if (next) d.setDate(d.getDate() + 1); return d.toISOString(); };
    const links = () => {
      const q = new URLSearchParams();
      const from = day($("#xfrom").value, false), to = day($("#xto").value, true);
      if (from) q.set("from", from);
      if (to) q.set("to", to);
      const query = q.toString() ? `?${q}` : "";
      $("#xlinks").innerHTML = [["bags", t("nav_bags")], ["bills", t("nav_bills")], ["scans", t("nav_scan")]]
        .flatMap(([kind, name]) => ["csv", "xlsx"].map((ext) => `<a class="button secondary" download href="/api/v1/exports/${kind}.${ext}${esc(query)}">${esc(name)} .${ext}</a>`)).join("");
    };
    $("#xfrom").addEventListener("change", links);
    $("#xto").addEventListener("change", links);
    links();
    $("#imp").addEventListener("submit", async (e) => {
      e.preventDefault();
      const f = e.target, file = f.file.files[0];
      if (!file || !f.area.value) return;
      const q = new URLSearchParams({ area: f.area.value });
      if (f.dry_run.checked) q.set("dry_run", "true");
      $("#report").textContent = t("loading");
      try {
        let res;
        try {
          res = await fetch(`/api/v1/imports/labels?${q}`, { method: "POST", body: file, credentials: "same-origin",
            headers: { Accept: "application/json", "Content-Type": XLSX_TYPE, "X-CSRF-Token": me.csrf_token } });
        } catch (err) { throw new NetworkError(String(err)); }
        const r = await res.json().catch(() => null);
        if (!res.ok) throw new ApiError(r || { code: "internal", status: res.status });
        note(r.dry_run ? t("dry_run_done", r) : r.nothing_changed ? t("nothing_changed", r) : t("import_done", r), r.rejected ? "info" : "ok");
        $("#report").innerHTML = r.problems.length ? `<table><tr><th>${esc(t("sheet"))}</th><th>${esc(t("row"))}</th><th>${esc(t("problem"))}</th><th>${esc(t("qr"))}</th></tr>${r.problems.map((p) =>
          `<tr><td>${esc(p.sheet)}</td><td>${esc(p.row)}</td><td><b>${esc(p.code)}</b> ${esc(p.message)}</td><td>${esc(p.value)}</td></tr>`).join("")}</table>` : "";
      } catch (err) { $("#report").textContent = ""; note(errText(err.problem), "err"); }
    });
  }

  render();
})();
