// What the page suites share (pages.test.mjs, workflows.test.mjs): Debian's Chromium through
// playwright-core (launched once per file, closed after it), a phone or desktop with its console
// errors collected, logging in, waiting for a page, a wedge scanner, Hindi, axe-core, and an API session for checks.
// The Rust test (tests/tests/browser_pages.rs) runs the real stack and passes its address.
import { before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

export const BASE = process.env.TT_BASE_URL;
export const SHOTS = process.env.TT_SCREENSHOTS;
export const PASSWORD = process.env.TT_PASSWORD;
export const USERS = {
  admin: { name: "admin", password: process.env.TT_ADMIN_PASSWORD },
  biller: { name: process.env.TT_BILLER, password: PASSWORD },
  dispatcher: { name: process.env.TT_DISPATCHER, password: PASSWORD },
};
mkdirSync(SHOTS, { recursive: true });
// The tones, as vibration patterns.
export const CHILD = "60", PARENT = "[120,60,120]", FULL = "[100,50,100,50,400]", REFUSED = "[200,80,200]", QUEUED = "[40,60,40]";

let browser;
/** The Chromium of this file. */
export const chromiumOf = () => browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  });
});
after(async () => { await browser?.close(); });

/**
 * A phone (360 × 740) or a desktop (1280 × 800) with its own storage, console errors collected;
 * `options` go to the browser context (e.g. `{ bypassCSP: true }` for a test that injects axe-core).
 */
export async function device(width = 360, height = 740, options = {}) {
  const context = await browser.newContext({ viewport: { width, height }, baseURL: BASE, ...options });
  await context.addInitScript(() => {
    window.__vib = [];
    Object.defineProperty(navigator, "vibrate", { configurable: true, value: (p) => { window.__vib.push(JSON.stringify(p)); return true; } });
  });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`${page.url()}: ${e.message}`));
  return { context, page, errors };
}
export async function login(page, who) {
  await page.goto("/#/login");
  await page.waitForSelector("#u");
  await page.fill("#u", USERS[who].name);
  await page.fill("#p", USERS[who].password);
  await page.click("button[type=submit]");
  await page.waitForSelector("#scan");
}
export const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
/** Waits until the page has rendered: its h1, and nothing still loading. */
export async function settled(page) {
  // The page of the hash now (not the one before it): its route is the bar's active link.
  await page.waitForFunction(() => {
    const route = location.hash.replace(/^#\/?/, "").split(/[/?]/)[0] || "dashboard";
    const active = document.querySelector("#nav a.active");
    return !active || active.getAttribute("href") === `#/${route}` || !["scan", "bags", "bills", "dashboard", "users", "audit", "data", "more"].includes(route);
  });
  await page.waitForSelector("main h1");
  await page.waitForFunction(() => !document.querySelector("main .loading"), null, { timeout: 15000 });
}
/** Types a code into the focused input `id` as a wedge scanner does (keys, then Enter). */
export async function scanInto(page, id, text) {
  await page.waitForFunction((i) => document.activeElement?.id === i, id);
  await page.keyboard.type(text, { delay: 1 });
  await page.keyboard.press("Enter");
}
/** A wedge scan on the scan page. */
export const wedge = (page, text) => scanInto(page, "scan", text);
/** Switches the page to Hindi (the language button) and waits until it is. */
export async function hindi(page) {
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "hi");
}
const AXE = new URL("./node_modules/axe-core/axe.min.js", import.meta.url).pathname;
/**
 * Serious or critical axe-core violations on the page as it is, each with the page's hash (its
 * context must bypass the CSP: `device(w, h, { bypassCSP: true })`, for this only).
 */
export async function axe(page) {
  await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${location.hash} ${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`));
}
export async function progress(page, text) {
  try {
    await page.waitForFunction((t) => document.querySelector("#progress").textContent === t, text, { timeout: 15000 });
  } catch (e) {
    const state = await page.evaluate(() => ({ progress: document.querySelector("#progress")?.textContent, msg: document.querySelector("#msg")?.textContent, prompt: document.querySelector("#prompt")?.textContent, queue: document.querySelector("#queue")?.textContent }));
    throw new Error(`progress never showed ${text}: ${JSON.stringify(state)}`);
  }
}
export const vibrations = (page) => page.evaluate(() => window.__vib.splice(0));
// One API session for the checks (logins are rate limited per account).
let token = null;
export async function adminToken() {
  if (token) return token;
  token = await newAdminToken();
  return token;
}
export async function newAdminToken() {
  const r = await fetch(`${BASE}/api/v1/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username: "admin", password: USERS.admin.password }) });
  return (await r.json()).token;
}
export async function apiGet(path) {
  let r;
  // The API session's rate limit (per user and second) may answer 429: wait as told.
  while ((r = await fetch(`${BASE}/api/v1${path}`, { headers: { Authorization: `Bearer ${await adminToken()}` } })).status === 429) {
    await new Promise((ok) => setTimeout(ok, 1000));
  }
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}

/** A session token of any user (logins are rate limited per account: keep it). */
export async function tokenOf(username, password) {
  const r = await fetch(`${BASE}/api/v1/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username, password }) });
  assert.equal(r.status, 200, `login of ${username}: ${r.status}`);
  return (await r.json()).token;
}
/**
 * A mutation through the API (the admin's session unless `token` is given), under one idempotency
 * key however often a 429 makes it wait; answers { status, body }.
 */
export async function apiSend(method, path, body, token) {
  const key = crypto.randomUUID();
  for (;;) {
    const r = await fetch(`${BASE}/api/v1${path}`, {
      method,
      headers: { Authorization: `Bearer ${token || await adminToken()}`, "Content-Type": "application/json", "Idempotency-Key": key },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (r.status === 429) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : null };
  }
}
/** Asserts an `apiSend` answer is a success. */
export const ok = (r) => assert.ok(r.status >= 200 && r.status < 300, JSON.stringify(r));
/** Polls `check` (an async function) until it answers something truthy; answers that. */
export async function until(check, what, timeoutMs = 30000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`never: ${what}`);
    await new Promise((ok) => setTimeout(ok, 200));
  }
}
