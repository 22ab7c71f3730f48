// The web client in Debian's Chromium, driven by playwright-core. Started by the Rust test
// tests/tests/browser.rs, which runs the real stack and passes its address in the environment.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.TT_BASE_URL;
const SHOTS = process.env.TT_SCREENSHOTS;
const DISPATCHER = process.env.TT_DISPATCHER;
const PASSWORD = process.env.TT_PASSWORD;
const ADMIN_PASSWORD = process.env.TT_ADMIN_PASSWORD;
mkdirSync(SHOTS, { recursive: true });

let browser, context, page;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  });
  context = await browser.newContext({ viewport: { width: 360, height: 740 }, baseURL: BASE });
  page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
});
after(async () => { await browser?.close(); });

const shot = (name) => page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
/** Types like a keyboard-wedge scanner: characters, then Enter, into whatever has focus. */
async function wedge(text) {
  // A scanner types into whatever has the focus: the page must have given it to the scan input.
  await page.waitForFunction(() => document.activeElement && document.activeElement.id === "scan");
  await page.keyboard.type(text, { delay: 2 });
  await page.keyboard.press("Enter");
}
/** Waits for the progress figure, saying what the page showed if it never comes. */
async function progress(text) {
  try {
    await page.waitForFunction((t) => document.querySelector("#progress").textContent === t, text, { timeout: 15000 });
  } catch (e) {
    const state = await page.evaluate(() => ({ progress: document.querySelector("#progress")?.textContent, msg: document.querySelector("#msg")?.textContent, prompt: document.querySelector("#prompt")?.textContent, focus: document.activeElement?.id, queue: document.querySelector("#queue")?.textContent }));
    await shot(`failed-${text.replace("/", "-")}`);
    throw new Error(`progress never showed ${text}: ${JSON.stringify(state)}`);
  }
}
async function api(path, token) {
  const r = await fetch(`${BASE}/api/v1${path}`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(r.status, 200, `${path}: ${r.status}`);
  return r.json();
}
async function adminToken() {
  const r = await fetch(`${BASE}/api/v1/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username: "admin", password: ADMIN_PASSWORD }) });
  return (await r.json()).token;
}

test("log in and scan a parent and 30 children like a wedge scanner", async () => {
  await page.goto("/");
  await page.waitForSelector("#u");
  await shot("login");
  await page.fill("#u", DISPATCHER);
  await page.fill("#p", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("#scan");
  assert.equal(await page.evaluate(() => document.activeElement.id), "scan", "the scan input has focus");
  await wedge("SB90001");
  await progress("0/30");
  for (let i = 0; i < 30; i++) {
    await wedge(`LABEL NO.:${String(9000100 + i)} LOT NO.:STAR44GG24611, D.O.T.:30/09/2025`);
    await page.waitForFunction((n) => document.querySelector("#progress").textContent === `${n}/30`, i + 1);
  }
  assert.equal(await page.textContent("#progress"), "30/30");
  assert.equal(await page.textContent("#pstatus"), "full");
  await shot("scan-full");

  // The 31st is refused with a visible message; the count stays.
  await wedge("9000999");
  await page.waitForFunction(() => document.querySelector("#msg").classList.contains("err"));
  assert.match(await page.textContent("#msg"), /full/i);
  assert.equal(await page.textContent("#progress"), "30/30");
});

test("a double-fired scan is harmless", async () => {
  await page.click("#newparent");
  await wedge("SB90003");
  await progress("0/30");
  await wedge("DBL0001");
  await wedge("DBL0001");
  await page.waitForFunction(() => /already/.test(document.querySelector("#msg").textContent));
  assert.equal(await page.textContent("#progress"), "1/30");
});

test("offline scans wait in a queue and are sent once each when the network returns", async () => {
  await page.click("#newparent");
  await wedge("SB90002");
  await progress("0/30");
  // One scan whose answer is lost on the way back after the server processed it.
  let aborted = 0;
  await page.route("**/api/v1/scans/child", async (route) => {
    if (aborted === 0 && route.request().postData().includes("LOST0001")) {
      aborted++;
      await route.fetch(); // the server processes it...
      return route.abort("connectionreset"); // ...and the answer never arrives
    }
    return route.continue();
  });
  await wedge("LOST0001");
  await page.waitForFunction(() => /waiting|इंतज़ार/.test(document.querySelector("#queue").textContent));
  await page.unroute("**/api/v1/scans/child");
  await context.setOffline(true);
  for (let i = 1; i <= 5; i++) await wedge(`OFF000${i}`);
  await page.waitForFunction(() => /6 scan/.test(document.querySelector("#queue").textContent));
  await shot("scan-offline-queue");
  await context.setOffline(false);
  await page.waitForFunction(() => document.querySelector("#queue").textContent === "", null, { timeout: 30000 });

  // On the server: each one linked, and recorded exactly once.
  const token = await adminToken();
  for (const qr of ["LOST0001", "OFF0001", "OFF0002", "OFF0003", "OFF0004", "OFF0005"]) {
    const bag = await api(`/bags/${qr}`, token);
    assert.equal(bag.parent_qr, "SB90002", qr);
    const scans = await api(`/scans?qr=${qr}`, token);
    const ok = scans.items.filter((e) => e.kind === "child" && e.outcome === "ok");
    assert.equal(ok.length, 1, `${qr} recorded ${ok.length} times`);
  }
  const parent = await api("/bags/SB90002", token);
  assert.equal(parent.child_count, 6);
});

test("the current parent survives a reload", async () => {
  await page.reload();
  await page.waitForSelector("#scan");
  await progress("6/30");
});

test("Hindi", async () => {
  await page.click("#lang");
  await page.waitForFunction(() => document.querySelector("h1").textContent === "स्कैन स्टेशन");
  assert.equal(await page.getAttribute("html", "lang"), "hi");
  await shot("scan-hindi");
  await page.click("#lang");
  await page.waitForFunction(() => document.querySelector("h1").textContent === "Scan station");
});

test("pages at 360 px; a dispatcher cannot reach admin pages", async () => {
  await page.goto("/#/dashboard");
  await page.waitForSelector(".figures");
  await shot("dashboard");
  await page.goto("/#/bags/SB90001");
  await page.waitForSelector(".timeline");
  await shot("bag-lookup");
  await page.goto("/#/bills");
  await page.waitForSelector("h1");
  await shot("bills");
  assert.equal(await page.$('nav a[href="#/users"]'), null, "no users link for a dispatcher");
  await page.goto("/#/users");
  await page.waitForFunction(() => /cannot open/.test(document.querySelector("h1").textContent));
  await shot("users-forbidden");
  // The page never scrolls sideways at 360 px.
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 360, `page is ${wide}px wide`);
});

test("an admin creates a bill, loads the full parent, completes it and opens its document", async () => {
  await page.goto("/#/logout");
  await page.waitForSelector("#u");
  await page.fill("#u", "admin");
  await page.fill("#p", ADMIN_PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("#scan");
  await page.goto("/#/bills");
  await page.waitForSelector("#nb", { state: "attached" });
  await page.click("details summary");
  await page.fill("#nb input[name=bill_id]", "B-WEB-1");
  await page.fill("#nb input[name=capacity]", "1");
  await page.fill("#nb input[name=destination]", "Indore mandi");
  await page.click("#nb button");
  await page.waitForSelector("#attach");
  await page.focus("#attach");
  await page.keyboard.type("SB90001", { delay: 2 });
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector(".progress").textContent === "1/1");
  await page.click("#complete");
  await page.waitForFunction(() => /completed/.test(document.querySelector(".card").textContent));
  await shot("bill-completed");
  const [doc] = await Promise.all([context.waitForEvent("page"), page.click("#doc")]);
  await doc.waitForLoadState();
  const text = await doc.textContent("body");
  assert.match(text, /dispatch B-WEB-1/);
  assert.match(text, /1\/1 sacks · 30 packets/);
  await doc.screenshot({ path: `${SHOTS}/bill-document.png`, fullPage: true });
  await doc.close();
  await page.goto("/#/users");
  await page.waitForSelector("#list table");
  await shot("users-admin");

  // Exports and the label import: download links that work with the cookie session, and an
  // upload that is not a workbook refused in plain words.
  await page.goto("/#/data");
  await page.waitForSelector("#xlinks a");
  assert.equal((await page.$$("#xlinks a")).length, 6);
  const csv = await page.evaluate(async () => {
    const r = await fetch(document.querySelector('#xlinks a[href*="bags.csv"]').getAttribute("href"));
    return `${r.status} ${r.headers.get("content-type")} ${(await r.text()).split("\r\n")[0]}`;
  });
  assert.match(csv, /^200 text\/csv; charset=utf-8 qr,type,product_line,/);
  await page.setInputFiles('#imp input[name="file"]', { name: "labels.xlsx", mimeType: "text/plain", buffer: Buffer.from("not a workbook") });
  await page.selectOption('#imp select[name="area"]', "lucknow");
  await page.click("#imp button");
  await page.waitForFunction(() => /Excel/.test(document.querySelector("#msg").textContent));
  await shot("exports-import");
});
