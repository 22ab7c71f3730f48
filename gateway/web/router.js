// Hash routing, the navigation (a bottom bar on phones), the session check.
import { html, render as put } from "./html.js";
import { t } from "./i18n.js";
import { api, NetworkError } from "./api.js";
import { session, can, prefs, events, meta } from "./store.js";
import { flush } from "./queue.js";

const routes = {};
let leaving = [];
/** Registers the pages: name -> function(arg, params). */
export function define(table) { Object.assign(routes, table); }
/** Runs `fn` when the user leaves the current page (close live streams, timers). */
export function onLeave(fn) { leaving.push(fn); }
export function go(hash) { if (location.hash !== hash) location.hash = hash; else render(); }

/** A session (new or found): send its queue; learn areas, product lines and error codes. */
export function signedIn() { flush({ force: true }); loadMeta(); }
/** GET /api/v1/meta, kept for pages opened offline (then the kept copy is used). */
let metaLoading = null;
function loadMeta() {
  metaLoading = api("GET", "/meta").then((m) => meta.set(m)).catch(() => { if (!meta.value) meta.set(meta.cached()); });
  return metaLoading;
}
/** Resolves once the sign-in's /meta has answered (or failed): for pages that need it first. */
export const metaLoaded = () => metaLoading || Promise.resolve();

const NAV = [
  ["scan", "nav_scan", "S"], ["bags", "nav_bags", "B"], ["bills", "nav_bills", "₹"], ["dashboard", "nav_stats", "D"],
];
function nav(route) {
  const me = session.me;
  const item = (name, label, wide) => html`<a href="#/${name}" class="${wide ? "wide-only " : ""}${route === name ? "active" : ""}" ${route === name ? html`aria-current="page"` : ""}>${t(label)}</a>`;
  put(document.getElementById("nav"), me ? html`${NAV.map(([n, l]) => item(n, l, false))}
    ${can.admin() ? html`${item("users", "nav_users", true)}${item("audit", "nav_audit", true)}` : ""}
    ${can.manage() ? item("data", "nav_data", true) : ""}
    ${can.manage() ? html`${item("returns", "nav_returns", true)}${item("reports", "nav_reports", true)}` : ""}
    ${item("more", "nav_more", false)}` : "");
  document.getElementById("nav").hidden = !me;
  document.getElementById("lang").textContent = t("lang_switch");
}

export async function render() {
  leaving.forEach((fn) => { try { fn(); } catch { /* already gone */ } });
  leaving = [];
  document.documentElement.lang = prefs.lang;
  const [path, qs] = location.hash.replace(/^#\/?/, "").split("?");
  const [route, ...rest] = path.split("/");
  // The login and the password-reset pages work without a session.
  if (!session.me && !["login", "forgot", "reset"].includes(route)) {
    try { session.set(await api("GET", "/auth/me")); } catch (e) {
      // No network (a page opened offline from the service worker's copy): carry on as the user
      // this phone last saw, so the scan station opens and its queue sends once the network is back.
      session.set(e instanceof NetworkError ? session.remembered() : null);
    }
    if (!session.me) return go("#/login");
    signedIn();
  }
  if (session.me && session.me.user.must_change_password && route !== "password" && route !== "logout") return go("#/password");
  // An admin who must have two-factor sign-in enrols before anything else (after the password).
  if (session.me && (session.me.user.restrictions || []).includes("enrol_2fa") && route !== "two-factor" && route !== "logout") return go("#/two-factor");
  if (session.me && !meta.value && !["login", "forgot", "reset"].includes(route)) await loadMeta();
  nav(route || "dashboard");
  const page = routes[route] || routes[""];
  const admin = ["users", "audit", "api-keys"].includes(route);
  // The data page: exports and the label import for admins, the bill import for billers too.
  const refused = (admin && !can.admin()) || (route === "data" && !can.manage());
  await (refused ? routes.forbidden : page)(decodeURIComponent(rest.join("/")), new URLSearchParams(qs || ""));
  events.dispatchEvent(new CustomEvent("queue"));
}
