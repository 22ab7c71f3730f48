// The client's state: the only mutable state shared between modules. Durable parts live in
// localStorage (per user where they are a user's: queue, refusals, current parent).
export const local = {
  get: (k, d) => { try { const v = localStorage.getItem(k); return v === null ? d : JSON.parse(v); } catch { return d; } },
  set: (k, v) => localStorage.setItem(k, JSON.stringify(v)),
  del: (k) => localStorage.removeItem(k),
};

const state = {
  me: null, // {user, csrf_token}
  lang: local.get("tt.lang", "en"),
  meta: null, // GET /api/v1/meta: areas, product lines, error codes
};
/** Store events: "unauthenticated" (the server said 401), "queue" (the queue or refusals changed). */
export const events = new EventTarget();
export const emit = (name, detail) => events.dispatchEvent(new CustomEvent(name, { detail }));

export const session = {
  get me() { return state.me; },
  set(me) {
    state.me = me;
    // Kept so that a page opened without a network (service worker) still knows whose queue it is.
    if (me) local.set("tt.me", me); else local.del("tt.me");
    if (me) local.set("tt.last_user", { id: me.user.id, username: me.user.username });
  },
  /** The last session this phone saw, for a page opened offline. */
  remembered: () => local.get("tt.me", null),
  uid: () => (state.me ? state.me.user.id : null),
  role: () => (state.me ? state.me.user.role : null),
};
export const can = {
  manage: () => ["admin", "biller"].includes(session.role()),
  admin: () => session.role() === "admin",
};
/** The language also goes to the server as the `lang` cookie: the documents it renders (a bill's
 *  printable document opened in a tab) are then in the same language as the page. */
const langCookie = (l) => { if (typeof document !== "undefined") document.cookie = `lang=${l}; path=/; max-age=31536000; samesite=lax`; };
langCookie(state.lang);
export const prefs = {
  get lang() { return state.lang; },
  setLang(l) { state.lang = l; local.set("tt.lang", l); langCookie(l); },
  /** Seconds without a scan after which the scan station lets go of its parent (0: never). */
  get idleSecs() { return Number(local.get("tt.idle_secs", 600)) || 0; },
  setIdleSecs(s) { local.set("tt.idle_secs", Number(s) || 0); },
};
export const meta = {
  get value() { return state.meta; },
  set(m) { state.meta = m; local.set("tt.meta", m); },
  cached: () => local.get("tt.meta", null),
};
/** The areas' names, from the server's /api/v1/meta (the cached copy when offline). */
export const areaNames = () => ((state.meta && state.meta.areas) || []).map((a) => a.name);
