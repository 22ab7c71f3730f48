// The web client's pages, phone first, in Debian's Chromium (playwright-core). Started by the Rust
// test tests/tests/browser_pages.rs, which runs the real stack and passes its address.
import { test } from "node:test";
import { gzipSync } from "node:zlib";
import assert from "node:assert/strict";
import {
  BASE, USERS, CHILD, PARENT, FULL, REFUSED, QUEUED, chromiumOf, device, login, shot, settled, wedge, progress, vibrations,
  adminToken, apiGet,
} from "./kit.mjs";

// The pages each role reaches, and what marks each one as there.
const PAGES = {
  dispatcher: ["scan", "dashboard", "bags", "bags/SB70001", "bills", "more"],
  biller: ["scan", "dashboard", "bags", "bags/SB70001", "bills", "more", "data"],
  admin: ["scan", "dashboard", "bags", "bags/SB70001", "bills", "more", "users", "audit", "data"],
};

test("the scan station at 360 px: a wedge scanner, distinct tones, and the capacity hand-off without a tap", async () => {
  const { context, page, errors } = await device();
  await login(page, "dispatcher");
  // The scanner is the keyboard: no on-screen keyboard for the scan input.
  assert.equal(await page.getAttribute("#scan", "inputmode"), "none");
  // The station fills the screen: input, figure and message above the bottom bar, which holds 4–5 big targets.
  const box = async (sel) => page.$eval(sel, (el) => { const r = el.getBoundingClientRect(); return { top: r.top, bottom: r.bottom, height: r.height, width: r.width }; });
  const nav = await box("#nav");
  assert.ok(nav.bottom <= 740 && nav.bottom >= 738, `bottom bar at ${JSON.stringify(nav)}`);
  const targets = await page.$$eval("#nav a", (as) => as.filter((a) => a.offsetParent).map((a) => a.getBoundingClientRect().height));
  assert.ok(targets.length >= 4 && targets.length <= 5, `${targets.length} targets`);
  assert.ok(targets.every((h) => h >= 48), `targets ${targets}`);
  await wedge(page, "SB70001");
  await progress(page, "0/30");
  for (const sel of ["#scan", "#progress", "#msg"]) {
    const b = await box(sel);
    assert.ok(b.top >= 0 && b.bottom <= nav.top, `${sel} at ${JSON.stringify(b)}, bar at ${nav.top}`);
  }
  assert.ok((await box("#progress")).height >= 60, "a big figure");
  assert.deepEqual(await vibrations(page), [PARENT]);
  await shot(page, "scan-station-360");
  for (let i = 0; i < 30; i++) {
    await wedge(page, `HND${String(i).padStart(4, "0")}`);
    await progress(page, `${i + 1}/30`);
  }
  // Full: said loudly, felt differently, and the next scan is the next parent.
  await page.waitForFunction(() => document.querySelector("#msg").classList.contains("full"));
  assert.match(await page.textContent("#msg"), /SB70001 is FULL/);
  assert.match(await page.textContent("#prompt"), /full/);
  const felt = await vibrations(page);
  assert.deepEqual(felt.slice(0, 2), [CHILD, CHILD]);
  assert.equal(felt.at(-1), FULL);
  assert.equal(felt.filter((v) => v === FULL).length, 1);
  await shot(page, "scan-full-360");
  // A packet scanned at the full sack: refused (never the success tone), still 30/30.
  await wedge(page, "HND0100");
  await page.waitForFunction(() => document.querySelector("#msg").classList.contains("err"));
  assert.match(await page.textContent("#msg"), /full: that was a packet/);
  await progress(page, "30/30");
  assert.deepEqual(await vibrations(page), [REFUSED]);
  // The next parent, no tap.
  await wedge(page, "SB70002");
  await progress(page, "0/30");
  assert.deepEqual(await vibrations(page), [PARENT]);
  await wedge(page, "HND0101");
  await progress(page, "1/30");
  assert.equal((await apiGet("/bags/HND0101")).parent_qr, "SB70002");
  assert.equal((await apiGet("/bags/SB70001")).child_count, 30);
  // The one refusal (409, the packet at the full sack) is the only failed request.
  assert.deepEqual(errors.filter((e) => !/status of 409/.test(e)), []);
  assert.equal(errors.length, 1, errors.join("\n"));
  await context.close();
});

test("a parent scan made offline waits in the queue with its children, in order, and is sent once the network returns", async () => {
  const { context, page, errors } = await device();
  await login(page, "dispatcher");
  const sent = [];
  page.on("request", (req) => {
    if (req.method() === "POST" && /\/api\/v1\/scans\//.test(req.url())) sent.push({ path: new URL(req.url()).pathname, key: req.headers()["idempotency-key"], body: req.postData() });
  });
  await page.click("#newparent");
  await context.setOffline(true);
  await wedge(page, "SB70003");
  await page.waitForFunction(() => /Saved on this phone/.test(document.querySelector("#msg").textContent));
  assert.equal(await page.getAttribute("#msg", "class"), "msg info");
  await progress(page, "0/—");
  await wedge(page, "OFP0001");
  await wedge(page, "OFP0002");
  await page.waitForFunction(() => /^3 scan/.test(document.querySelector("#queue").textContent));
  await progress(page, "2/—");
  assert.deepEqual(await vibrations(page), [QUEUED, QUEUED, QUEUED]);
  await shot(page, "scan-offline-parent-360");
  await context.setOffline(false);
  await page.waitForFunction(() => document.querySelector("#queue").textContent === "", null, { timeout: 30000 });
  await progress(page, "2/30");
  assert.ok(!(await vibrations(page)).includes(CHILD), "no success tone for scans sent later");
  // In order, the parent first, each under one key.
  const order = sent.map((s) => s.path.split("/").pop());
  assert.equal(order[0], "parent", order.join());
  const parent = await apiGet("/bags/SB70003");
  assert.equal(parent.child_count, 2);
  for (const qr of ["OFP0001", "OFP0002"]) assert.equal((await apiGet(`/bags/${qr}`)).parent_qr, "SB70003");
  assert.deepEqual(errors.filter((e) => !/ERR_INTERNET_DISCONNECTED|Failed to load resource/.test(e)), []);
  await context.close();
});

test("a reload without network opens the app from the service worker, and its queue still sends", async () => {
  const { context, page } = await device();
  await login(page, "dispatcher");
  await page.evaluate(() => navigator.serviceWorker.ready);
  await page.reload(); // now under the service worker's control
  await page.waitForSelector("#scan");
  assert.ok(await page.evaluate(() => !!navigator.serviceWorker.controller), "controlled by the service worker");
  await page.click("#newparent");
  await wedge(page, "SB70004");
  await progress(page, "0/30");
  await context.setOffline(true);
  await page.reload();
  await page.waitForSelector("#scan", { timeout: 15000 });
  await progress(page, "0/30");
  await wedge(page, "SWQ0001");
  await page.waitForFunction(() => /^1 scan/.test(document.querySelector("#queue").textContent));
  await shot(page, "scan-offline-reload-360");
  await context.setOffline(false);
  await page.waitForFunction(() => document.querySelector("#queue").textContent === "", null, { timeout: 30000 });
  await progress(page, "1/30");
  assert.equal((await apiGet("/bags/SWQ0001")).parent_qr, "SB70004");
  await context.close();
});

test("the scan station lets go of its sack after the idle time", async () => {
  const { context, page } = await device();
  await login(page, "dispatcher");
  await page.click("#newparent");
  await wedge(page, "SB70005");
  await progress(page, "0/30");
  await page.evaluate(() => localStorage.setItem("tt.idle_secs", "2"));
  await page.reload();
  await page.waitForSelector("#scan");
  await progress(page, "0/30");
  await page.waitForFunction(() => document.querySelector("#progress").textContent === "", null, { timeout: 10000 });
  assert.match(await page.textContent("#prompt"), /Scan a parent/);
  assert.match(await page.textContent("#msg"), /No scan for/);
  await context.close();
});

test("320 px and Hindi: nothing scrolls sideways, the bar stays one row of big targets", async () => {
  const { context, page, errors } = await device(320, 640);
  await login(page, "admin");
  await page.click("#lang");
  await page.waitForFunction(() => document.querySelector("h1").textContent === "स्कैन स्टेशन");
  for (const p of PAGES.admin) {
    await page.goto(`/#/${p}`);
    await settled(page);
    const wide = await page.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(wide <= 320, `#/${p} is ${wide}px wide in Hindi`);
    const bar = await page.$eval("#nav", (n) => n.getBoundingClientRect().height);
    assert.ok(bar <= 72, `#/${p}: the bar is ${bar}px high`);
  }
  await page.goto("/#/scan");
  await settled(page);
  await shot(page, "scan-hindi-320");
  // Figures in Indian grouping.
  assert.equal(await page.evaluate(async () => (await import("/assets/i18n.js")).num(100000)), "1,00,000");
  await page.click("#lang");
  assert.deepEqual(errors, []);
  await context.close();
});

for (const role of ["dispatcher", "biller", "admin"]) {
  test(`every page renders for a ${role}, at 360 px and 1280 px, in both languages, with no console error`, async () => {
    for (const [w, h] of [[360, 740], [1280, 800]]) {
      const { context, page, errors } = await device(w, h);
      await login(page, role);
      for (const lang of ["en", "hi"]) {
        if (lang === "hi") { await page.click("#lang"); await page.waitForFunction(() => document.documentElement.lang === "hi"); }
        for (const p of PAGES[role]) {
          await page.goto(`/#/${p}`);
          await settled(page);
          assert.equal(await page.$(".msg.err"), null, `#/${p}: ${await page.textContent("main")}`);
          await shot(page, `${role}-${p.replace("/", "-")}-${lang}-${w}`);
        }
      }
      // The role matrix: what the API refuses a role, the page does not offer.
      await page.click("#lang");
      await page.goto("/#/more");
      await settled(page);
      const links = await page.$$eval("main a, #nav a", (as) => as.map((a) => a.getAttribute("href")));
      const adminLinks = links.filter((h) => ["#/users", "#/audit"].includes(h));
      if (role === "admin") assert.equal(new Set(adminLinks).size, 2, links.join());
      else assert.deepEqual(adminLinks, [], `${role} sees ${adminLinks}`);
      // The data page: billers get the bill import only (exports and labels are the admin's).
      assert.equal(links.includes("#/data"), role !== "dispatcher", `${role}: #/data ${links.join()}`);
      if (role === "biller" && w === 360) {
        await page.goto("/#/data");
        await settled(page);
        assert.equal(await page.$("#imp"), null, "no label import for a biller");
        assert.equal(await page.$("#xlinks"), null, "no exports for a biller");
        // A bill workbook: SB79001 goes onto the new bill WB-7901, SB79999 is unknown.
        await page.setInputFiles("#bimp input[name=file]", process.env.TT_BILLS_XLSX);
        await page.click("#bimp button");
        await page.waitForSelector("#bill-import-bills");
        assert.match(await page.textContent("#bill-import-bills"), /WB-7901/);
        assert.match(await page.textContent("#bill-import-problems"), /bag_not_found/);
        assert.equal(await page.getAttribute('#bill-import-bills a[href="#/bills/WB-7901"]', "href"), "#/bills/WB-7901");
        await shot(page, "biller-bill-import-360");
      } else if (role === "dispatcher") {
        await page.goto("/#/data");
        await page.waitForFunction(() => /cannot open/.test(document.querySelector("h1").textContent));
      }
      await page.goto("/#/bills");
      await settled(page);
      assert.equal(!!(await page.$("#nb")), role !== "dispatcher", `${role}: new-bill form`);
      if (role !== "admin") {
        await page.goto("/#/users");
        await page.waitForFunction(() => /cannot open/.test(document.querySelector("h1").textContent));
        assert.equal(await page.$("#nu"), null);
      }
      assert.deepEqual(errors, [], `${role} at ${w}px`);
      await context.close();
    }
  });
}

test("lists: filters and paging, an empty state, and errors in plain words in both languages", async () => {
  const { context, page } = await device();
  await login(page, "admin");
  // Bags: 60 more children, so that children fill more than one page of 50.
  const token = await adminToken();
  const post = async (path, body) => {
    const key = crypto.randomUUID();
    for (;;) {
      const r = await fetch(`${BASE}/api/v1${path}`, { method: "POST", headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json", "Idempotency-Key": key }, body: JSON.stringify(body) });
      if (r.status === 429) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
      assert.ok(r.ok, `${path}: ${r.status} ${await r.text()}`);
      return;
    }
  };
  for (const parent of ["SB70008", "SB70009"]) {
    await post("/scans/parent", { qr: parent, area: "lucknow" });
    for (let i = 0; i < 30; i++) await post("/scans/child", { parent_qr: parent, child_qr: `${parent.slice(-2)}PG${String(i).padStart(3, "0")}` });
  }
  await page.goto("/#/bags");
  await settled(page);
  await page.selectOption("#filters select[name=type]", "child");
  await page.waitForFunction(() => document.querySelectorAll("#list tr").length > 1 && !document.querySelector("#list .loading"));
  assert.ok(await page.$("#list button.more"), "a page of 50 children and more");
  const before = await page.$$eval("#list tr", (r) => r.length);
  await page.click("#list button.more");
  await page.waitForFunction((n) => document.querySelectorAll("#list tr").length > n, before);
  await page.fill("#filters input[name=q]", "ZZZ");
  await page.press("#filters input[name=q]", "Enter");
  await page.waitForSelector("#list .empty");
  assert.match(await page.textContent("#list .empty"), /No bags match/);
  // Bills with a status filter: none completed yet.
  await page.goto("/#/bills");
  await settled(page);
  await page.selectOption("#filters select[name=status]", "completed");
  await page.waitForSelector("#list .empty");
  // The server busy: said in plain words, in English and in Hindi.
  await page.route("**/api/v1/bills?*", (route) => route.fulfill({ status: 503, contentType: "application/problem+json",
    body: JSON.stringify({ type: "about:blank", title: "unavailable", status: 503, code: "unavailable", retryable: true, request_id: "t" }) }));
  await page.goto("/#/bills?x=1");
  await page.waitForSelector("#list .msg.err");
  assert.match(await page.textContent("#list .msg.err"), /Server busy/);
  await page.click("#lang");
  await page.waitForSelector("#list .msg.err");
  assert.match(await page.textContent("#list .msg.err"), /सर्वर व्यस्त/);
  await shot(page, "bills-error-hindi-360");
  await page.click("#lang");
  await page.unrouteAll({ behavior: "ignoreErrors" });
  // The audit trail: the scans made above are there, filtered by action prefix.
  await page.goto("/#/audit");
  await settled(page);
  await page.fill("#filters input[name=action]", "scan.");
  await page.press("#filters input[name=action]", "Enter");
  await page.waitForFunction(() => document.querySelectorAll("#list tr").length > 1 && !document.querySelector("#list .loading"));
  assert.match(await page.textContent("#list"), /scan\./);
  // A user's activity.
  const users = await apiGet("/users?page_size=200");
  const dora = users.items.find((u) => u.username === USERS.dispatcher.name);
  await page.goto(`/#/users/${dora.id}`);
  await settled(page);
  // The activity is rendered (its bars may be empty while stats has not yet applied the scans).
  await page.waitForSelector("#out h2");
  await shot(page, "user-activity-360");
  await context.close();
});

test("values are shown, never run: a bill id with markup is text", async () => {
  const { context, page } = await device(1280, 800);
  await login(page, "admin");
  await page.goto("/#/bills");
  await settled(page);
  await page.click("details summary");
  const id = "<img src=x onerror=window.__xss=1>";
  await page.fill("#nb input[name=bill_id]", id);
  await page.click("#nb button");
  await page.waitForSelector("#attach");
  assert.equal(await page.textContent("h1"), `Bill ${id}`);
  await page.goto("/#/bills");
  await page.waitForFunction(() => document.querySelectorAll("#list tr").length > 1);
  assert.equal(await page.evaluate(() => window.__xss), undefined);
  assert.equal(await page.$("main img"), null);
  await context.close();
});

test("an admin moves a packet, takes one out, edits and deletes a bill; one box finds a bill by its number", async () => {
  const { context, page, errors } = await device();
  await login(page, "admin");
  page.on("dialog", (d) => d.accept());
  // Move HND0101 (in SB70002) into SB70003, then take it out.
  await page.goto("/#/bags/HND0101");
  await settled(page);
  await page.fill("#move input[name=parent_qr]", "SB70003");
  await page.click("#move button");
  await page.waitForFunction(() => /SB70003/.test(document.querySelector("#unlink")?.textContent || ""));
  assert.equal((await apiGet("/bags/HND0101")).parent_qr, "SB70003");
  await page.click("#unlink");
  await page.waitForFunction(() => !document.querySelector("#unlink") && document.querySelector("#move"));
  assert.equal((await apiGet("/bags/HND0101")).parent_qr ?? null, null);
  await shot(page, "bag-move-unlink-360");
  // A bill: created, edited, found through the one box, deleted.
  await page.goto("/#/bills");
  await settled(page);
  await page.click("details summary");
  await page.fill("#nb input[name=bill_id]", "B-EDIT-1");
  await page.click("#nb button");
  await page.waitForSelector("#eb", { state: "attached" });
  await page.click("text=Edit bill");
  await page.fill("#eb input[name=capacity]", "3");
  await page.fill("#eb input[name=destination]", "Jaipur mandi");
  await page.click("#eb button");
  await page.waitForFunction(() => document.querySelector(".progress").textContent === "0/3");
  assert.equal((await apiGet("/bills/B-EDIT-1")).destination, "Jaipur mandi");
  await shot(page, "bill-edit-360");
  await page.goto("/#/bags");
  await settled(page);
  await page.fill("#q", "B-EDIT-1");
  await page.press("#q", "Enter");
  await page.waitForFunction(() => location.hash === "#/bills/B-EDIT-1" && document.querySelector("#delete"));
  await page.click("text=Delete bill");
  await page.click("#delete");
  await page.waitForFunction(() => location.hash === "#/bills");
  const gone = await fetch(`${BASE}/api/v1/bills/B-EDIT-1`, { headers: { Authorization: `Bearer ${await adminToken()}` } });
  assert.equal(gone.status, 404);
  // The dashboard's chart of scans per hour.
  await page.goto("/#/dashboard");
  await settled(page);
  await page.waitForSelector("#hours svg rect.today", { state: "attached" });
  assert.equal((await page.$$("#hours svg rect.today")).length, 24, "a bar per hour, today");
  assert.equal((await page.$$("#hours svg rect.yesterday")).length, 24, "and yesterday");
  await shot(page, "dashboard-chart-360");
  // The one-box lookup of B-EDIT-1 asked for a bag first: that 404 is the only failed request.
  assert.deepEqual(errors.filter((e) => !/status of 404/.test(e)), []);
  await context.close();
});

test("time to interactive and page weight of the scan station, on a phone-sized screen and with the CPU slowed 4x", async () => {
  const { context, page } = await device();
  await login(page, "dispatcher");
  // The page weight: every JS and CSS file (and the catalogue's JSON) a reload of the scan station
  // fetches, in bytes, and gzipped (as a compressing proxy would send them).
  const files = new Map();
  const weigh = async (res) => {
    const path = new URL(res.url()).pathname;
    const kind = /\.(m?js)$/.test(path) ? "js" : /\.css$/.test(path) ? "css" : /\.json$/.test(path) ? "json" : null;
    if (!kind || res.request().method() !== "GET" || !res.ok()) return;
    try { const body = await res.body(); files.set(path, { kind, bytes: body.length, gz: gzipSync(body).length }); } catch { /* a redirect or gone */ }
  };
  page.on("response", weigh);
  const measure = async () => {
    await page.goto("/#/scan", { waitUntil: "commit" });
    await page.reload({ waitUntil: "commit" });
    await page.waitForFunction(() => document.activeElement?.id === "scan" && document.querySelector("#prompt").textContent !== "", null, { timeout: 20000 });
    return page.evaluate(() => Math.round(performance.now()));
  };
  const fast = await measure();
  const cdp = await context.newCDPSession(page);
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 4 });
  const slow = await measure();
  await cdp.send("Emulation.setCPUThrottlingRate", { rate: 1 });
  console.log(`@@tti scan station: ${fast} ms; with the CPU slowed 4x: ${slow} ms`);
  page.off("response", weigh);
  const sum = (kinds, f) => [...files.values()].filter((x) => kinds.includes(x.kind)).reduce((a, x) => a + x[f], 0);
  const n = [...files.values()].filter((x) => x.kind !== "json").length;
  console.log(`@@weight scan station: ${sum(["js", "css"], "bytes")} bytes of JS and CSS in ${n} files (${sum(["js", "css"], "gz")} gzipped); `
    + `translation catalogue ${sum(["json"], "bytes")} bytes (${sum(["json"], "gz")} gzipped)`);
  assert.ok(files.has("/assets/main.js") && files.has("/assets/app.css") && files.has("/assets/i18n/hi.json"), [...files.keys()].join());
  await context.close();
});

test("a biller loads sacks on a bill by scanning, offline too: the attaches wait on the phone, in order, and are sent once the network returns", async () => {
  const { context, page, errors } = await device();
  await login(page, "biller");
  await page.goto("/#/bills");
  await settled(page);
  await page.click("details summary");
  await page.fill("#nb input[name=bill_id]", "B-TRUCK-1");
  await page.fill("#nb input[name=capacity]", "2");
  await page.click("#nb button");
  await page.waitForSelector("#attach");
  assert.equal(await page.getAttribute("#attach", "inputmode"), "none");
  const attaches = [];
  page.on("request", (req) => { if (req.method() === "POST" && /\/parents$/.test(req.url())) attaches.push({ body: req.postData(), key: req.headers()["idempotency-key"] }); });
  // A code that is no sack: refused at once, in plain words.
  await page.keyboard.type("SB79999", { delay: 1 });
  await page.keyboard.press("Enter");
  await page.waitForFunction(() => document.querySelector("#msg").classList.contains("err"));
  await context.setOffline(true);
  for (const qr of ["SB70008", "SB70009"]) {
    await page.waitForFunction(() => document.activeElement?.id === "attach");
    await page.keyboard.type(qr, { delay: 1 });
    await page.keyboard.press("Enter");
  }
  await page.waitForFunction(() => /^2 sack/.test(document.querySelector("#bill-queue").textContent));
  assert.match(await page.textContent("#msg"), /Saved on this phone/);
  await shot(page, "bill-attach-offline-360");
  await context.setOffline(false);
  await page.waitForFunction(() => document.querySelector("#bill-queue").textContent === "" && document.querySelector(".progress").textContent === "2/2", null, { timeout: 30000 });
  const bill = await apiGet("/bills/B-TRUCK-1");
  assert.deepEqual(bill.parents.map((p) => p.qr).sort(), ["SB70008", "SB70009"]);
  // In order, each under one key however often it was tried.
  const tried = attaches.map((a) => JSON.parse(a.body).parent_qr).filter((q) => q !== "SB79999");
  assert.equal(tried[0], "SB70008", tried.join());
  for (const qr of ["SB70008", "SB70009"]) assert.equal(new Set(attaches.filter((a) => a.body.includes(qr)).map((a) => a.key)).size, 1, qr);
  await page.click("#complete");
  await page.waitForFunction(() => /completed/.test(document.querySelector("#bill-figs .card").textContent));
  await shot(page, "bill-complete-360");
  assert.deepEqual(errors.filter((e) => !/status of 404|status of 409|ERR_INTERNET_DISCONNECTED/.test(e)), []);
  await context.close();
});

// axe-core (from the npm registry, pinned in package-lock.json) on every page, in both languages,
// at 360 px and 1280 px: no serious or critical violation. The context bypasses the page's CSP only
// so that the test can inject axe itself. The detail pages seen here (a sack with its packets, a
// bill, a user's activity) are also kept as screenshots.
const AXE = new URL("./node_modules/axe-core/axe.min.js", import.meta.url).pathname;
test("axe-core: no serious or critical violation on any page, in English and Hindi, at 360 px and 1280 px", async () => {
  const found = [];
  const users = await apiGet("/users?page_size=200");
  const dora = users.items.find((u) => u.username === USERS.dispatcher.name);
  const details = ["bags/SB70002", "bills/B-TRUCK-1", `users/${dora.id}`];
  const pages = [...PAGES.admin, ...details, "login"];
  for (const [w, h] of [[360, 740], [1280, 800]]) {
    const context = await chromiumOf().newContext({ viewport: { width: w, height: h }, baseURL: BASE, bypassCSP: true });
    const page = await context.newPage();
    await login(page, "admin");
    const anonymous = await context.newPage(); // no session there: the login page
    for (const lang of ["en", "hi"]) {
      if (lang === "hi") { await page.click("#lang"); await page.waitForFunction(() => document.documentElement.lang === "hi"); }
      for (const p of pages) {
        let tab = page;
        if (p === "login") {
          tab = anonymous;
          await tab.goto(`/#/login?${lang}`);
          await tab.evaluate((l) => localStorage.setItem("tt.lang", JSON.stringify(l)), lang);
          await tab.reload();
          await tab.waitForSelector("#u");
        } else { await page.goto(`/#/${p}`); await settled(page); }
        if (details.includes(p) || p === "login") await shot(tab, `admin-${p.split("/")[0]}-detail-${lang}-${w}`.replace("login-detail", "login"));
        await tab.addScriptTag({ path: AXE });
        const r = await tab.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
          .filter((v) => v.impact === "serious" || v.impact === "critical")
          .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`));
        for (const v of r) found.push(`#/${p} [${lang}, ${w} px] ${v}`);
      }
    }
    await context.close();
  }
  assert.deepEqual(found, []);
});

test("a refused scan can be sent again once the dispatcher has fixed the cause", async () => {
  const { context, page } = await device();
  await login(page, "dispatcher");
  await page.click("#newparent");
  await wedge(page, "SB70007");
  await progress(page, "0/30");
  // Offline, a packet that is in SB70001 is scanned into SB70007: refused once sent.
  await context.setOffline(true);
  await wedge(page, "HND0000");
  await page.waitForFunction(() => /^1 scan/.test(document.querySelector("#queue").textContent));
  await context.setOffline(false);
  await page.waitForSelector("#refused li .resend");
  assert.match(await page.textContent("#refused"), /already in sack SB70001/);
  // The admin takes it out of SB70001; the dispatcher sends it again.
  const r = await fetch(`${BASE}/api/v1/bags/SB70001/children/HND0000`, { method: "DELETE", headers: { Authorization: `Bearer ${await adminToken()}`, "Idempotency-Key": crypto.randomUUID() } });
  assert.ok(r.ok, `unlink: ${r.status}`);
  await page.click("#refused li .resend");
  await progress(page, "1/30");
  await page.waitForSelector("#refused", { state: "hidden" });
  assert.equal((await apiGet("/bags/HND0000")).parent_qr, "SB70007");
  assert.equal(await page.evaluate(() => document.activeElement.id), "scan");
  await context.close();
});

test("a dispatcher's shift in Hindi at 360 px: 3 sacks of 30, the network lost for 20 scans, one undo", async () => {
  const { context, page, errors } = await device();
  await login(page, "dispatcher");
  await page.click("#lang");
  await page.waitForFunction(() => document.querySelector("h1").textContent === "स्कैन स्टेशन");
  await page.click("#newparent");
  const kids = { SB71001: [], SB71002: [], SB71003: [] };
  let shown = 0;
  const scanKid = async (parent, offline) => {
    const qr = `SH${parent.slice(-1)}${String(kids[parent].length).padStart(3, "0")}`;
    kids[parent].push(qr);
    await wedge(page, qr);
    if (!offline) await progress(page, `${kids[parent].length}/30`);
  };
  for (const parent of Object.keys(kids)) {
    // The first sack after a tap on "new sack"; the next ones straight after the last was full.
    await wedge(page, parent);
    await progress(page, "0/30");
    if (parent === "SB71002") {
      for (let i = 0; i < 5; i++) await scanKid(parent);
      await context.setOffline(true);
      for (let i = 0; i < 20; i++) await scanKid(parent, true);
      await page.waitForFunction(() => /^20 स्कैन/.test(document.querySelector("#queue").textContent));
      await progress(page, "25/30");
      assert.match(await page.getAttribute("#progress", "class"), /pending/);
      await shot(page, "shift-offline-hindi-360");
      await context.setOffline(false);
      await page.waitForFunction(() => document.querySelector("#queue").textContent === "", null, { timeout: 30000 });
      await progress(page, "25/30");
      for (let i = 0; i < 5; i++) await scanKid(parent);
    } else {
      for (let i = 0; i < 30; i++) await scanKid(parent);
    }
    await page.waitForFunction(() => document.querySelector("#msg").classList.contains("full"));
    assert.match(await page.textContent("#msg"), /भर गई/);
    shown++;
  }
  // The last packet taken back, and scanned again.
  await page.click("#undo");
  await progress(page, "29/30");
  await wedge(page, kids.SB71003.at(-1));
  await progress(page, "30/30");
  await shot(page, "shift-done-hindi-360");
  for (const [parent, list] of Object.entries(kids)) {
    assert.equal((await apiGet(`/bags/${parent}`)).child_count, 30, parent);
    const listed = await apiGet(`/bags/${parent}/children?page_size=100`);
    assert.deepEqual(listed.items.map((b) => b.qr).sort(), [...list].sort(), parent);
  }
  assert.equal(shown, 3);
  assert.deepEqual(errors.filter((e) => !/ERR_INTERNET_DISCONNECTED/.test(e)), []);
  await page.click("#lang");
  await context.close();
});
