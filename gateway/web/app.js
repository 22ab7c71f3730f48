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
  class NetworkError extends Error {}
  class ApiError extends Error { constructor(p) { super(p.detail || p.code); this.problem = p; } }
  async function api(method, path, body, opts = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf_token;
    if (opts.key) headers["Idempotency-Key"] = opts.key;
    let res;
    try {
      res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
    } catch (e) {
      throw new NetworkError(String(e));
    }
    if (res.status === 204) return null;
    const data = await res.json().catch(() => null);
    if (!res.ok) {
      if (res.status === 401 && path !== "/auth/login") { me = null; go("#/login"); }
      throw new ApiError(data || { code: "internal", status: res.status });
    }
    return data;
  }

  // ---------------------------------------------------------------- sound and touch
  let audio;
  function tone(ok) {
    try {
      audio = audio || new (window.AudioContext || window.webkitAudioContext)();
      const o = audio.createOscillator(), g = audio.createGain();
      o.frequency.value = ok ? 880 : 220; o.type = ok ? "sine" : "square";
      g.gain.value = 0.15; o.connect(g); g.connect(audio.destination);
      o.start(); o.stop(audio.currentTime + (ok ? 0.12 : 0.45));
    } catch { /* no audio */ }
    if (navigator.vibrate) navigator.vibrate(ok ? 60 : [200, 80, 200]);
  }

  // ---------------------------------------------------------------- offline queue (per user)
  const qkey = () => `tt.queue.${me ? me.user.id : "anon"}`;
  const queue = () => store.get(qkey(), []);
  function setQueue(items) { store.set(qkey(), items); showQueue(); }
  function showQueue() {
    const n = me ? queue().length : 0;
    const el = $("#queue");
    if (el) el.textContent = n ? t("waiting", { n }) : "";
    const net = $("#net");
    net.hidden = navigator.onLine && n === 0;
    net.textContent = navigator.onLine ? t("waiting", { n }) : t("offline");
  }
  let flushing = false;
  async function flush() {
    if (flushing || !me) return;
    flushing = true;
    let sent = 0;
    try {
      for (;;) {
        const items = queue();
        if (!items.length) break;
        const item = items[0];
        try {
          await api("POST", item.path, item.body, { key: item.key });
          sent++;
        } catch (e) {
          if (e instanceof NetworkError) break;
          // The server refused it for good (e.g. the sack filled up meanwhile): drop it, say so.
          note(`${item.body.child_qr || item.body.qr}: ${errText(e.problem)}`, "err");
        }
        setQueue(queue().filter((x) => x.key !== item.key));
      }
    } finally {
      flushing = false;
      showQueue();
      if (sent) note(t("sent_later", { n: sent }), "ok");
    }
  }
  window.addEventListener("online", flush);
  window.addEventListener("offline", showQueue);
  setInterval(() => { if (navigator.onLine) flush(); }, 5000);

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
  function forbidden() { main.innerHTML = html`<h1>${t("forbidden")}</h1>`; }

  // ---------------------------------------------------------------- login, logout, password
  function login() {
    main.innerHTML = html`<h1>${t("login_title")}</h1><div id="msg" class="msg" hidden></div>
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
        flush();
        go(r.must_change_password ? "#/password" : "#/scan");
      } catch (e) { note(errText(e.problem), "err"); tone(false); }
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
      <p id="queue" class="queue"></p>`;
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
    paint();
    input.focus();
  }
  function paint(parent) {
    const p = parent || store.get(pkey(), null);
    if (parent) store.set(pkey(), parent);
    $("#prompt").textContent = p ? `${t("scan_child_prompt")} ${p.qr}` : t("scan_parent_prompt");
    const prog = $("#progress");
    prog.textContent = p ? `${p.child_count}/${p.capacity}` : "";
    prog.className = `progress ${p && p.status === "full" ? "full" : ""}`;
    $("#pstatus").textContent = p ? t(`status_${p.status}`) : "";
  }
  async function submit(value) {
    const parent = store.get(pkey(), null);
    if (!parent) return scanParent(value);
    const body = { parent_qr: parent.qr, child_qr: value };
    const key = uuid();
    try {
      const r = await api("POST", "/scans/child", body, { key });
      paint(r.parent);
      note(r.already_linked ? t("child_again", { qr: r.child.qr }) : t("child_ok", { qr: r.child.qr }), "ok");
      tone(true);
      if (r.parent.status === "full") note(t("parent_now_full"), "ok");
    } catch (e) {
      if (e instanceof NetworkError) {
        setQueue([...queue(), { path: "/scans/child", body, key, at: Date.now() }]);
        const p = store.get(pkey(), null);
        if (p) paint({ ...p, child_count: Math.min(p.capacity, p.child_count + 1) });
        note(t("queued"), "info"); tone(true);
      } else if (e.problem && e.problem.code === "qr_is_parent") {
        return scanParent(value);
      } else { note(errText(e.problem), "err"); tone(false); }
    }
  }
  async function scanParent(value) {
    const area = $("#area") ? $("#area").value : "";
    try {
      const r = await api("POST", "/scans/parent", { qr: value, area: area || undefined }, { key: uuid() });
      paint(r.parent);
      note(r.created ? t("parent_new", { qr: r.parent.qr }) : t("parent_ready", { qr: r.parent.qr }), "ok");
      tone(true);
    } catch (e) {
      note(e instanceof NetworkError ? t("err_network") : errText(e.problem), "err"); tone(false);
    }
  }
  async function undo() {
    const parent = store.get(pkey(), null);
    if (!parent) return;
    try {
      const r = await api("POST", "/scans/undo", { parent_qr: parent.qr }, { key: uuid() });
      paint(r.parent); note(t("undone", { qr: r.unlinked_child_qr }), "ok"); tone(true);
    } catch (e) { note(e instanceof NetworkError ? t("err_network") : errText(e.problem), "err"); tone(false); }
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
