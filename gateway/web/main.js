// TraceTrack web client: native ES modules, no build step, nothing from the internet.
import { define, render, go } from "./router.js";
import { events, session, prefs } from "./store.js";
import { t } from "./i18n.js";
import { waitingCount, refusedOf } from "./queue.js";
import { login, logout, password, twoFactor, forgot, reset } from "./pages/account.js";
import { dashboard } from "./pages/dashboard.js";
import { scan, showQueue } from "./pages/scan.js";
import { bags } from "./pages/bags.js";
import { bills, billQueue } from "./pages/bills.js";
import { users } from "./pages/users.js";
import { apiKeys } from "./pages/api_keys.js";
import { data } from "./pages/data.js";
import { audit } from "./pages/audit.js";
import { more, forbidden } from "./pages/more.js";
import { reports } from "./pages/reports.js";
import { returns } from "./pages/returns.js";

define({ "": dashboard, dashboard, login, logout, password, "two-factor": twoFactor, forgot, reset, scan, bags, bills, users, data, audit, more, forbidden });
define({ reports });
define({ returns });
define({ "api-keys": apiKeys });

/** The header's badge: offline, scans waiting, scans refused. */
function badge() {
  const uid = session.uid();
  const n = waitingCount(uid), refused = refusedOf(uid).length;
  const parts = [];
  if (!navigator.onLine) parts.push(t("offline"));
  if (n) parts.push(t("waiting_short", { n }));
  if (refused) parts.push(t("refused_short", { n: refused }));
  const net = document.getElementById("net");
  net.hidden = !parts.length;
  net.textContent = parts.join(" · ");
}
events.addEventListener("queue", () => { badge(); showQueue(); billQueue(); });
events.addEventListener("unauthenticated", () => { session.set(null); go("#/login"); });
document.getElementById("lang").addEventListener("click", () => { prefs.setLang(prefs.lang === "en" ? "hi" : "en"); render(); });
window.addEventListener("hashchange", render);


if ("serviceWorker" in navigator) navigator.serviceWorker.register("/sw.js").catch(() => { /* not installable here */ });
render();
