// The Reports page (#/reports) as a biller at 360 px, in English and Hindi: the bill summary of
// today with its download links, the end-of-day preview of the day the stack's clock says is due,
// "Send now" (the mail lands at the test's SMTP server; tests/tests/browser_reports.rs checks
// it), and axe-core with no serious or critical violation. Started by browser_reports.rs.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const BASE = process.env.TT_BASE_URL;
const AXE = new URL("./node_modules/axe-core/axe.min.js", import.meta.url).pathname;

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});
after(async () => { await browser?.close(); });

async function axe(page) {
  await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`));
}

test("a biller reads the bill summary and the end-of-day preview, and sends the report now", async () => {
  // bypassCSP only so that the test can inject axe-core.
  // The biller's phone is set to a zone whose date is not the business day's (Asia/Kolkata) at
  // this instant: one of UTC+14 and UTC-12 always is. The page must still open on the business
  // day (its "today" comes from /api/v1/meta's time_zone), or the summary would miss the bills.
  const day = (tz) => new Date().toLocaleDateString("en-CA", { timeZone: tz });
  const business = day("Asia/Kolkata");
  const phoneZone = ["Pacific/Kiritimati", "Etc/GMT+12"].find((z) => day(z) !== business);
  const context = await browser.newContext({ viewport: { width: 360, height: 740 }, baseURL: BASE, bypassCSP: true, timezoneId: phoneZone });
  const page = await context.newPage();
  const errors = [];
  page.on("console", (m) => { if (m.type() === "error") errors.push(m.text()); });
  page.on("dialog", (d) => d.accept());
  await page.goto("/#/login");
  await page.fill("#u", process.env.TT_USER);
  await page.fill("#p", process.env.TT_PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForFunction(() => !location.hash.startsWith("#/login"));

  await page.goto("/#/reports");
  await page.waitForSelector("#summary table");
  assert.equal(await page.inputValue("#sform [name=from]"), business, `phone in ${phoneZone}`);
  const summary = await page.textContent("#summary");
  assert.match(summary, new RegExp(process.env.TT_USER));
  assert.match(summary, /Total/);
  const links = await page.$$eval("#slinks a", (as) => as.map((a) => a.getAttribute("href")));
  assert.equal(links.length, 3);
  assert.ok(links.some((h) => h.startsWith("/api/v1/reports/bill-summary.csv?from=")), links.join());
  // The CSV download answers (the page's session).
  const csv = await page.evaluate(async (h) => (await fetch(h)).text(), links.find((h) => h.includes(".csv")));
  assert.match(csv, /^biller,bills_created/);
  assert.match(csv, /\nTOTAL,2,1,/);

  await page.waitForSelector("#daily .figures");
  assert.equal(await page.textContent("#delivery"), "Not sent yet.");
  assert.deepEqual(await axe(page), []);
  await page.click("#send");
  await page.waitForFunction(() => /^Sent \(/.test(document.querySelector("#msg")?.textContent || ""));

  // Hindi.
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "hi");
  await page.goto("/#/reports");
  await page.waitForSelector("#summary table");
  await page.waitForSelector("#daily .figures");
  assert.equal(await page.textContent("h1"), "रिपोर्ट");
  assert.deepEqual(await axe(page), []);
  // Nothing wider than the phone.
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= 360), "no sideways scroll at 360 px");
  assert.deepEqual(errors, []);
  await context.close();
});
