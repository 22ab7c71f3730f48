// Whole workflows without leaving the web client, on a 360 px phone, in Hindi (issue 15's "done
// when"): a biller's truck and an admin's day. Started by tests/tests/browser_pages.rs after
// pages.test.mjs, against the same stack; the bags, bills and users here are their own (SB72…, TRK72…, B-…-71, ravi71).
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  USERS, PASSWORD, device, login, shot, settled, apiGet, apiSend, tokenOf, until, ok, scanInto, hindi,
} from "./kit.mjs";

const figure = (page) => page.textContent("#bill-figs .progress");
/** Requests that failed on purpose (refusals, a lookup's 404, the network taken away). */
const expected = (e) => /status of (404|409)|ERR_INTERNET_DISCONNECTED/.test(e);

let area;
before(async () => {
  // Three sacks of two packets each; SB72003 is loaded on another bill.
  const meta = await apiGet("/meta");
  area = (meta.areas.find((a) => a.name === "lucknow") || meta.areas[0]).name;
  for (const [parent, kids] of [["SB72001", ["TRK7211", "TRK7212"]], ["SB72002", ["TRK7221", "TRK7222"]], ["SB72003", ["TRK7231", "TRK7232"]]]) {
    ok(await apiSend("POST", "/scans/parent", { qr: parent, area }));
    for (const k of kids) ok(await apiSend("POST", "/scans/child", { parent_qr: parent, child_qr: k }));
  }
  ok(await apiSend("POST", "/bills", { bill_id: "B-OTHER-71", capacity: 1 }));
  ok(await apiSend("POST", "/bills/B-OTHER-71/parents", { parent_qr: "SB72003" }));
});

test("a biller's truck in Hindi at 360 px: create a bill, load it by scanning (refusals in plain words, offline too), fix a sack, complete, print", async () => {
  const { context, page, errors } = await device();
  page.on("dialog", (d) => d.accept());
  await login(page, "biller");
  await hindi(page);
  // A new bill for two sacks.
  await page.goto("/#/bills");
  await settled(page);
  await page.click("details summary");
  await page.fill("#nb input[name=bill_id]", "B-HI-71");
  await page.fill("#nb input[name=capacity]", "2");
  await page.fill("#nb input[name=destination]", "जयपुर मंडी");
  await page.click("#nb button");
  await page.waitForSelector("#attach");
  // A sack on another bill: refused at once, in Hindi, with a link to that bill.
  await scanInto(page, "attach", "SB72003");
  await page.waitForSelector('#msg.err a[href="#/bills/B-OTHER-71"]');
  assert.match(await page.textContent("#msg"), /यह बोरी बिल B-OTHER-71 पर है/);
  // A code that is no bag at all, and a packet: refused in plain words too (never a bare code).
  for (const code of ["SB71999", "TRK7211"]) {
    await scanInto(page, "attach", code);
    await page.waitForFunction((c) => document.querySelector("#msg.err") && !document.querySelector("#msg a") && !/_/.test(document.querySelector("#msg").textContent), code);
  }
  await shot(page, "truck-refused-hi-360");
  // Two sacks by scanning.
  await scanInto(page, "attach", "SB72001");
  await page.waitForFunction(() => document.querySelector("#bill-figs .progress")?.textContent === "1/2");
  await scanInto(page, "attach", "SB72002");
  await page.waitForFunction(() => document.querySelector("#bill-figs .progress")?.textContent === "2/2");
  // Fix a sack: SB72002 off the bill; in SB72001 one packet taken out and one moved to SB72002.
  await page.click('.detach[data-qr="SB72002"]');
  await page.waitForFunction(() => document.querySelector("#bill-figs .progress")?.textContent === "1/2");
  await page.goto("/#/bags/SB72001");
  await settled(page);
  await page.click('.take-out[data-qr="TRK7211"]');
  await page.waitForFunction(() => document.querySelector("#msg.ok") && !document.querySelector('.take-out[data-qr="TRK7211"]'));
  assert.equal((await apiGet("/bags/TRK7211")).parent_qr ?? null, null);
  await page.check('input[name=kid][value="TRK7212"]');
  await page.fill("#kids input[name=to]", "SB72003");
  await page.click("#move-kids");
  await page.waitForFunction(() => document.querySelector("#msg.err") || /बदले गए/.test(document.querySelector("#msg")?.textContent));
  assert.match(await page.textContent("#msg"), /1 में से 1 पैकेट बदले गए/);
  assert.equal((await apiGet("/bags/TRK7212")).parent_qr, "SB72003");
  // Moving to a packet instead of a sack: refused in plain words, nothing moved.
  await page.goto("/#/bags/SB72002");
  await settled(page);
  await page.check('input[name=kid][value="TRK7221"]');
  await page.fill("#kids input[name=to]", "TRK7222");
  await page.click("#move-kids");
  await page.waitForSelector("#msg.err");
  assert.equal((await apiGet("/bags/TRK7221")).parent_qr, "SB72002");
  await shot(page, "truck-fix-sack-hi-360");
  // Back on the bill: offline, SB72003 (on the other bill) and then SB72002 wait on the phone.
  await page.goto("/#/bills/B-HI-71");
  await page.waitForSelector("#attach");
  await context.setOffline(true);
  await scanInto(page, "attach", "SB72003");
  await scanInto(page, "attach", "SB72002");
  await page.waitForFunction(() => /2/.test(document.querySelector("#bill-queue").textContent));
  await context.setOffline(false);
  // Once sent: SB72002 is on, SB72003 is refused for good and listed, in Hindi, with its link.
  await page.waitForSelector('#bill-refused:not([hidden]) a[href="#/bills/B-OTHER-71"]', { timeout: 30000 });
  await page.waitForFunction(() => document.querySelector("#bill-figs .progress")?.textContent === "2/2", null, { timeout: 30000 });
  assert.match(await page.textContent("#bill-refused"), /SB72003: यह बोरी बिल B-OTHER-71 पर है/);
  assert.ok(await page.$("#bill-refused .resend"), "a refusal can be sent again");
  await shot(page, "truck-refused-queued-hi-360");
  await page.click("#bill-refused .forget");
  await page.waitForSelector("#bill-refused", { state: "hidden" });
  // Complete, then open the printable document (in Hindi, like the page).
  await page.click("#complete");
  await until(async () => (await apiGet("/bills/B-HI-71")).status === "completed", "B-HI-71 completed");
  await page.waitForSelector("#reopen");
  await shot(page, "truck-completed-hi-360");
  const [doc] = await Promise.all([context.waitForEvent("page"), page.click("#doc")]);
  await doc.waitForLoadState();
  assert.equal(await doc.evaluate(() => document.documentElement.lang), "hi");
  assert.match(await doc.textContent("body"), /B-HI-71/);
  assert.match(await doc.textContent("body"), /SB72001/);
  await shot(doc, "truck-document-hi-360");
  await doc.close();
  const bill = await apiGet("/bills/B-HI-71");
  assert.deepEqual(bill.parents.map((p) => p.qr).sort(), ["SB72001", "SB72002"]);
  assert.equal(bill.destination, "जयपुर मंडी");
  assert.deepEqual(errors.filter((e) => !expected(e)), []);
  await context.close();
});

test("an admin's day in Hindi at 360 px: a new user, an unlock, live activity, dashboard, audit with filters, exports with EPCIS, a labels import", async () => {
  const { context, page, errors } = await device();
  page.on("dialog", (d) => d.accept());
  await login(page, "admin");
  await hindi(page);
  // Users: create one.
  await page.goto("/#/users");
  await settled(page);
  await page.click("details summary");
  await page.fill("#nu input[name=username]", "ravi71");
  await page.fill("#nu input[name=password]", PASSWORD);
  await page.selectOption("#nu select[name=role]", "dispatcher");
  await page.selectOption("#nu select[name=dispatch_area]", area);
  await page.click("#nu button");
  await page.waitForSelector('main tr[data-id] a:text-is("ravi71")');
  const ravi = (await apiGet("/users?page_size=200")).items.find((u) => u.username === "ravi71");
  assert.equal(ravi.role, "dispatcher");
  // Ravi mistypes his password until he is locked out; the admin unlocks him from his row.
  for (let i = 0; i < 8 && !(await apiGet(`/users/${ravi.id}`)).locked_until; i++) {
    await fetch(`${new URL(page.url()).origin}/api/v1/auth/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ username: "ravi71", password: "wrong-Password-1" }) });
  }
  assert.ok((await apiGet(`/users/${ravi.id}`)).locked_until, "ravi71 locked");
  await page.goto("/#/dashboard");
  await page.goto("/#/users");
  await settled(page);
  const row = `main tr[data-id="${ravi.id}"]`;
  assert.match(await page.textContent(row), /लॉक/);
  await shot(page, "admin-users-locked-hi-360");
  await page.click(`${row} .unlock`);
  await page.waitForSelector("#msg.ok");
  await until(async () => !(await apiGet(`/users/${ravi.id}`)).locked_until, "ravi71 unlocked");
  await tokenOf("ravi71", PASSWORD); // he can log in again
  // A user's activity follows the scans as they happen (no reload).
  const dora = (await apiGet("/users?page_size=200")).items.find((u) => u.username === USERS.dispatcher.name);
  await page.click(`main tr[data-id="${dora.id}"] a`);
  await page.waitForSelector("#total-scans");
  const before = Number((await page.textContent("#total-scans")).replace(/\D/g, ""));
  const doraToken = await tokenOf(USERS.dispatcher.name, USERS.dispatcher.password);
  ok(await apiSend("POST", "/scans/parent", { qr: "SB72005" }, doraToken));
  for (const k of ["TRK7251", "TRK7252"]) ok(await apiSend("POST", "/scans/child", { parent_qr: "SB72005", child_qr: k }, doraToken));
  // Once the stats have them (read through the API), the open page shows them by itself.
  const after = await until(async () => {
    const n = (await apiGet(`/stats/users/${dora.id}/activity`)).total_scans;
    return n >= before + 2 ? n : 0;
  }, "dora's new scans in her activity");
  await page.waitForFunction((n) => Number(document.querySelector("#total-scans").textContent.replace(/\D/g, "")) === n, after, { timeout: 30000 });
  assert.ok(await page.$("#activity-chart rect[data-scans]"), "scans per day as a chart");
  await shot(page, "admin-activity-live-hi-360");
  await page.setViewportSize({ width: 1280, height: 800 });
  await shot(page, "admin-activity-live-hi-1280");
  await page.setViewportSize({ width: 360, height: 740 });
  // The dashboard.
  await page.goto("/#/dashboard");
  await settled(page);
  await page.waitForSelector("#hours svg rect.today", { state: "attached" });
  await shot(page, "admin-dashboard-hi-360");
  // The audit trail, filtered by action and by user: the user made this morning is there.
  await until(async () => (await apiGet("/audit?action=auth.user_created&page_size=50")).items.some((e) => e.aggregate_id === ravi.id), "ravi71's creation in the audit trail");
  await page.goto("/#/audit");
  await settled(page);
  await page.fill("#filters input[name=action]", "auth.user_created");
  await page.press("#filters input[name=action]", "Enter");
  await page.waitForFunction((id) => !document.querySelector("#list .loading") && document.querySelector("#list").textContent.includes(id), ravi.id);
  const actions = await page.$$eval("#list tr td:nth-child(2)", (tds) => tds.map((td) => td.textContent));
  assert.ok(actions.length && actions.every((a) => a === "auth.user_created"), actions.join());
  await page.fill("#filters input[name=user_id]", dora.id);
  await page.fill("#filters input[name=action]", "scan.");
  await page.press("#filters input[name=action]", "Enter");
  await page.waitForFunction(() => !document.querySelector("#list .loading") && document.querySelector("#list td"));
  const who = await page.$$eval("#list tr td:nth-child(4)", (tds) => [...new Set(tds.map((td) => td.textContent.trim()))]);
  assert.deepEqual(who, [USERS.dispatcher.name]);
  await shot(page, "admin-audit-filtered-hi-360");
  // Exports: EPCIS and a CSV, downloaded as the browser does.
  await page.goto("/#/data");
  await settled(page);
  const [epcis] = await Promise.all([page.waitForEvent("download"), page.click("#epcis")]);
  const doc = JSON.parse(readFileSync(await epcis.path(), "utf8"));
  assert.equal(doc.type, "EPCISDocument");
  assert.ok(JSON.stringify(doc).includes("SB72001"), "the morning's sacks are in the EPCIS document");
  const [csv] = await Promise.all([page.waitForEvent("download"), page.click('#xlinks a[href^="/api/v1/exports/bags.csv"]')]);
  assert.match(readFileSync(await csv.path(), "utf8"), /SB72002/);
  // A labels workbook: 4 labels into SB72090; the torn row and the short sack reported.
  await page.setInputFiles("#imp input[name=file]", process.env.TT_LABELS_XLSX);
  await page.selectOption("#imp select[name=area]", area);
  await page.click("#imp button");
  await page.waitForSelector("#report table");
  assert.match(await page.textContent("#msg"), /बने/);
  const problems = await page.$$eval("#report tr td:nth-child(3)", (tds) => tds.map((td) => td.textContent));
  // The torn label, and the sack that holds fewer labels than its line's capacity (a warning: imported).
  assert.equal(problems.length, 2, problems.join());
  assert.match(problems.join(), /invalid_qr.*invalid_argument SB72090/);
  const sack = await apiGet("/bags/SB72090");
  assert.equal(sack.child_count, 4);
  await shot(page, "admin-import-hi-360");
  // The same workbook again, its report as the server's result workbook: downloaded, and it says
  // that nothing changed.
  await page.setInputFiles("#imp input[name=file]", process.env.TT_LABELS_XLSX);
  await page.check("#imp input[name=as_xlsx]");
  const [book] = await Promise.all([page.waitForEvent("download"), page.click("#imp button")]);
  const bytes = readFileSync(await book.path());
  assert.equal(bytes.subarray(0, 2).toString(), "PK", "an .xlsx (zip) file");
  assert.equal(book.suggestedFilename(), "labels-import-report.xlsx");
  await page.waitForSelector("#msg.ok");
  assert.deepEqual(errors.filter((e) => !expected(e)), []);
  await context.close();
});
