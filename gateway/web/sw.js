// The service worker: keeps the app shell, so a page reloaded without a network still opens (and
// its offline queue, kept in localStorage, still sends once the network is back). Network first
// (a new gateway's files are picked up at once), the kept copy when the network fails or is slow.
// The API is never touched: it goes to the network as if there were no service worker.
const CACHE = "tt-shell-v5";
const SHELL = [
  "/", "/manifest.webmanifest", "/assets/app.css", "/assets/icon.svg",
  "/assets/main.js", "/assets/router.js", "/assets/store.js", "/assets/api.js", "/assets/queue.js", "/assets/html.js",
  "/assets/i18n.js", "/assets/i18n/en.json", "/assets/i18n/hi.json", "/assets/ui.js", "/assets/tones.js",
  "/assets/pages/account.js", "/assets/pages/audit.js", "/assets/pages/bags.js", "/assets/pages/bills.js",
  "/assets/pages/dashboard.js", "/assets/pages/data.js", "/assets/pages/more.js", "/assets/pages/scan.js", "/assets/pages/users.js",
  "/assets/pages/reports.js", "/assets/pages/returns.js", "/assets/pages/returns_bill.js",
  "/assets/pages/api_keys.js",
];
const SLOW_MS = 4000;

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(CACHE).then((c) => c.addAll(SHELL)).then(() => self.skipWaiting()));
});
self.addEventListener("activate", (e) => {
  e.waitUntil(caches.keys().then((keys) => Promise.all(keys.filter((k) => k !== CACHE).map((k) => caches.delete(k))))
    .then(() => self.clients.claim()));
});
self.addEventListener("fetch", (e) => {
  const req = e.request;
  if (req.method !== "GET") return;
  const url = new URL(req.url);
  if (url.origin !== self.location.origin) return;
  const path = url.pathname;
  // The API (documents opened in a tab included) and anything else: straight to the network.
  if (!SHELL.includes(path)) return;
  e.respondWith((async () => {
    const cache = await caches.open(CACHE);
    const network = fetch(path, { cache: "no-cache", credentials: "same-origin" }).then((res) => {
      if (res.ok) cache.put(path, res.clone());
      return res;
    });
    const slow = new Promise((resolve) => setTimeout(resolve, SLOW_MS, null));
    try {
      const res = await Promise.race([network, slow]);
      if (res) return res;
    } catch { /* no network */ }
    const kept = await cache.match(path);
    return kept || network;
  })());
});
