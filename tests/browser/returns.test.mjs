// Returns in a real browser (issue 16's "done when"), on a 360 px phone in Hindi: a biller takes 3
// sacks back from a completed bill on a return ticket, commits it and bills one of them again; the
// first bill's page and printed document show the return; the dashboard, the sack's history and (as
// the admin) the audit trail show it; the admin downloads the EPCIS export, which the Rust side
// (tests/tests/browser_returns.rs) validates against GS1's schema. axe-core finds no serious or
// critical violation on the pages seen. The sacks and bills here are SB76…, TRK76…, B-RTN-76/77.
import { test, before } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, copyFileSync } from "node:fs";
import { device, login, shot, settled, apiGet, apiSend, until, ok, scanInto, hindi, axe } from "./kit.mjs";

const BILL = "B-RTN-76", AGAIN = "B-RTN-77";
const SACKS = ["SB76001", "SB76002", "SB76003", "SB76004"];
const BACK = SACKS.slice(0, 3);

const narrow = (page) => page.evaluate(() => document.documentElement.scrollWidth <= 360);
/** Requests that failed on purpose (a refusal). */
const expected = (e) => /status of 409/.test(e);

before(async () => {
  // Four sacks of two packets each at lucknow, all on BILL, completed.
  for (const [i, qr] of SACKS.entries()) {
    ok(await apiSend("POST", "/scans/parent", { qr, area: "lucknow" }));
    for (const k of [1, 2]) ok(await apiSend("POST", "/scans/child", { parent_qr: qr, child_qr: `TRK76${i}${k}` }));
  }
  ok(await apiSend("POST", "/bills", { bill_id: BILL, capacity: 4, destination: "Jaipur" }));
  for (const qr of SACKS) ok(await apiSend("POST", `/bills/${BILL}/parents`, { parent_qr: qr }));
  ok(await apiSend("POST", `/bills/${BILL}/complete`));
  ok(await apiSend("POST", "/scans/parent", { qr: "SB76005", area: "lucknow" })); // on no bill
  await until(async () => (await apiGet(`/bills/${BILL}`)).status === "completed", `${BILL} completed`);
});

let ticketId;
test("a biller in Hindi at 360 px takes 3 sacks back on a ticket, commits it, bills one again, and sees the return on the bill, its document, the dashboard and the sack's history", async () => {
  const { context, page, errors } = await device(360, 740, { bypassCSP: true });
  page.on("dialog", (d) => d.accept());
  await login(page, "biller");
  await hindi(page);
  // Returns are under "More" on a phone.
  await page.goto("/#/more");
  await settled(page);
  await page.click('main a[href="#/returns"]');
  await settled(page);
  // The new-ticket form is open on the page (nothing to unfold on a phone).
  assert.ok(await page.isVisible("#nt select[name=area]"), "the new-ticket form is in view");
  await page.selectOption("#nt select[name=area]", "indore");
  await page.fill("#nt input[name=notes]", "शर्मा ट्रेडर्स, 3 बोरी");
  await page.click("#nt button");
  await page.waitForSelector("#rscan");
  ticketId = decodeURIComponent(page.url().split("#/returns/")[1]);
  assert.match(ticketId, /^RTN-/);
  // Three sacks scanned back, each taken off BILL (said in Hindi); the count follows.
  const sacks = () => page.textContent("#rbody .figure b");
  for (const [i, qr] of BACK.entries()) {
    await scanInto(page, "rscan", qr);
    await page.waitForFunction((n) => document.querySelector("#rbody .figure b")?.textContent === n, String(i + 1));
    assert.match(await page.textContent("#msg"), new RegExp(`${qr} बिल ${BILL} से वापस ली गई`));
  }
  // A double-fired scan changes nothing and says so.
  await scanInto(page, "rscan", BACK[0]);
  await page.waitForFunction(() => /पहले से इस टिकट पर है/.test(document.querySelector("#msg")?.textContent));
  assert.equal(await sacks(), "3");
  // A sack on no bill is refused in plain words (never a bare code), and the count stays.
  await scanInto(page, "rscan", "SB76005");
  await page.waitForFunction(() => document.querySelector("#msg.err") && !/_/.test(document.querySelector("#msg").textContent));
  assert.equal(await sacks(), "3");
  await page.goto("/#/returns");
  await settled(page);
  assert.match(await page.textContent("#list"), new RegExp(ticketId));
  assert.deepEqual(await axe(page), []);
  await page.click(`#list a[href="#/returns/${ticketId}"]`);
  await page.waitForSelector("#rscan");
  assert.deepEqual(await axe(page), []);
  assert.ok(await narrow(page), "no sideways scroll on the ticket at 360 px");
  await shot(page, "returns-ticket-hi-360");
  // Commit.
  await page.click("#rcommit");
  await page.waitForSelector("#rscan", { state: "detached" });
  assert.match(await page.textContent("#rbody"), /पक्का/);
  assert.equal((await apiGet(`/returns/${ticketId}`)).ticket.status, "committed");
  for (const qr of BACK) {
    const bag = await apiGet(`/bags/${qr}`);
    assert.ok(!bag.bill_id && !bag.frozen && bag.area === "indore", JSON.stringify(bag));
  }

  // One of them goes out again on a new bill, loaded by scanning.
  await page.goto("/#/bills");
  await settled(page);
  await page.click("details summary");
  await page.fill("#nb input[name=bill_id]", AGAIN);
  await page.fill("#nb input[name=capacity]", "1");
  await page.click("#nb button");
  await page.waitForSelector("#attach");
  await scanInto(page, "attach", BACK[1]);
  await page.waitForFunction(() => document.querySelector("#bill-figs .progress")?.textContent === "1/1", null, { timeout: 30000 });
  assert.equal((await apiGet(`/bags/${BACK[1]}`)).bill_id, AGAIN);

  // The first bill keeps its history: 4 dispatched = 1 on it + 3 returned, each with its ticket.
  await page.goto(`/#/bills/${BILL}`);
  await page.waitForSelector("#bill-returns table");
  assert.equal(await page.textContent("#bill-figs .progress"), "1/4");
  const figs = await page.$$eval("#bill-returns .figure b", (bs) => bs.map((b) => b.textContent));
  assert.deepEqual(figs, ["4", "3", "1"]);
  const rows = await page.$$eval("#bill-returns tr", (trs) => trs.slice(1).map((tr) => [...tr.querySelectorAll("td")].slice(0, 2).map((td) => td.textContent)));
  assert.deepEqual(rows.map(([qr]) => qr).sort(), BACK);
  assert.ok(rows.every(([, t]) => t === ticketId), JSON.stringify(rows));
  assert.ok(await page.$(`#bill-returns a[href="#/returns/${ticketId}"]`), "a link to the ticket");
  // Completed with returns: it can be neither reopened nor deleted from here.
  assert.equal(await page.$("#reopen"), null);
  assert.equal(await page.$("#delete"), null);
  assert.deepEqual(await axe(page), []);
  assert.ok(await narrow(page), "no sideways scroll on the bill at 360 px");
  await shot(page, "returns-bill-hi-360");
  // Its printed document (in Hindi) has the returns section and the figures.
  const [doc] = await Promise.all([context.waitForEvent("page"), page.click("#doc")]);
  await doc.waitForLoadState();
  assert.equal(await doc.evaluate(() => document.documentElement.lang), "hi");
  const returns = await doc.textContent("section.returns");
  assert.match(returns, /वापसी/);
  for (const qr of BACK) assert.match(returns, new RegExp(`${ticketId}\\s*${qr}`));
  const totals = await doc.$$eval("section.returns table.totals tr:nth-child(2) td", (tds) => tds.map((td) => td.textContent));
  assert.deepEqual(totals, ["4", "3", "1"]);
  await shot(doc, "returns-document-hi-360");
  await doc.close();

  // The dashboard counts today's returns.
  await page.goto("/#/dashboard");
  await settled(page);
  await page.waitForFunction(() => document.querySelector("#returns-today b")?.textContent === "3", null, { timeout: 30000 });
  assert.match(await page.textContent("#returns-today"), /आज लौटीं/);
  assert.deepEqual(await axe(page), []);
  await shot(page, "returns-dashboard-hi-360");
  // The sack's history has the return, and it now lies at the ticket's area.
  await page.goto(`/#/bags/${BACK[0]}`);
  await settled(page);
  await page.waitForFunction(() => /billing\.parent_returned/.test(document.querySelector(".timeline")?.textContent), null, { timeout: 30000 });
  assert.match(await page.textContent(".timeline"), /registry\.parent_returned/);
  assert.match(await page.textContent("#out"), /indore/);
  await shot(page, "returns-sack-history-hi-360");
  assert.deepEqual(errors.filter((e) => !expected(e)), []);
  await context.close();
});

test("the admin in Hindi at 360 px finds the return in the audit trail and downloads an EPCIS export that carries it", async () => {
  assert.ok(ticketId, "the biller's ticket");
  const { context, page, errors } = await device();
  await login(page, "admin");
  await hindi(page);
  await until(async () => (await apiGet("/audit?action=billing.parent_returned&page_size=50")).items.length >= 3, "the returns in the audit trail");
  await page.goto("/#/audit");
  await settled(page);
  await page.fill("#filters input[name=action]", "billing.parent_returned");
  await page.press("#filters input[name=action]", "Enter");
  // Each return is an event of the bill it came off (the ticket and the sack are in its payload).
  await page.waitForFunction((id) => !document.querySelector("#list .loading") && document.querySelector("#list").textContent.includes(id), BILL);
  const actions = await page.$$eval("#list tr td:nth-child(2)", (tds) => tds.map((td) => td.textContent));
  assert.equal(actions.length, 3, actions.join());
  assert.ok(actions.every((a) => a === "billing.parent_returned"), actions.join());
  await shot(page, "returns-audit-hi-360");
  // EPCIS, downloaded as the browser does: each returned sack is a TransactionEvent DELETE,
  // receiving, returned, with the bill and the ticket. The file goes to the Rust side for GS1's schema.
  await page.goto("/#/data");
  await settled(page);
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#epcis")]);
  const file = await dl.path();
  const doc = JSON.parse(readFileSync(file, "utf8"));
  const back = doc.epcisBody.eventList.filter((e) => e.bizStep === "receiving" && e.disposition === "returned");
  assert.deepEqual(back.map((e) => e.epcList[0]).sort(), BACK.map((qr) => `urn:tracetrack:bag:${qr}`));
  for (const e of back) {
    assert.equal(e.type, "TransactionEvent");
    assert.equal(e.action, "DELETE");
    assert.equal(e.bizLocation.id, "urn:tracetrack:area:indore");
    const tx = e.bizTransactionList.map((x) => `${x.type} ${x.bizTransaction}`);
    assert.ok(tx.includes(`bol urn:tracetrack:bill:${BILL}`) && tx.includes(`rma urn:tracetrack:ticket:${ticketId}`), tx.join());
  }
  copyFileSync(file, process.env.TT_EPCIS_OUT);
  assert.deepEqual(errors, []);
  await context.close();
});
