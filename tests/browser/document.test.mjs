// The dispatch document and label printed by Chromium (print-to-PDF, as a user's "Save as PDF"),
// in English and Hindi. Started by tests/tests/browser_document.rs, which runs the real stack,
// seeds a completed 3-parent bill (TT_BILL_SMALL) and a 500-parent bill (TT_BILL_BIG), and
// passes their ids. Each PDF and its pages as PNG images (poppler's pdftoppm) land in
// TT_ARTIFACTS; the page text comes from pdftotext; QR codes are decoded with jsQR (npm) in
// Chromium from those page images.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const BASE = process.env.TT_BASE_URL;
const OUT = process.env.TT_ARTIFACTS;
const SMALL = process.env.TT_BILL_SMALL;
const BIG = process.env.TT_BILL_BIG;
const ORG = process.env.TT_ORG_NAME;
const DEPOT = process.env.TT_DEPOT;
const JSQR = fileURLToPath(new URL("./node_modules/jsqr/dist/jsQR.js", import.meta.url));
mkdirSync(OUT, { recursive: true });

let browser, context;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  context = await browser.newContext({ baseURL: BASE, viewport: { width: 1280, height: 800 } });
  // The admin logs in through the page (the session cookie serves the document's URL too).
  const page = await context.newPage();
  await page.goto("/#/login");
  await page.fill("#u", "admin");
  await page.fill("#p", process.env.TT_ADMIN_PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("#scan");
  await page.close();
});
after(async () => { await browser?.close(); });

const run = (cmd, args) => execFileSync(cmd, args, { encoding: "utf8" });

/** Prints `url` to PDF as Chromium does (the page's own @page size) and takes it apart. */
async function print(url, name, dpi = 110) {
  const page = await context.newPage();
  const r = await page.goto(url);
  assert.equal(r.status(), 200, `${url}: ${r.status()}`);
  const pdf = `${OUT}/${name}.pdf`;
  writeFileSync(pdf, await page.pdf({ preferCSSPageSize: true, printBackground: true }));
  await page.close();
  const info = run("pdfinfo", [pdf]);
  const pages = Number(/^Pages:\s+(\d+)/m.exec(info)[1]);
  const [w, h] = /^Page size:\s+([\d.]+) x ([\d.]+)/m.exec(info).slice(1).map(Number);
  const texts = run("pdftotext", ["-layout", pdf, "-"]).split("\f").slice(0, pages);
  run("pdftoppm", ["-png", "-r", String(dpi), pdf, `${OUT}/${name}`]);
  const pngs = readdirSync(OUT).filter((f) => new RegExp(`^${name}-\\d+\\.png$`).test(f)).sort().map((f) => `${OUT}/${f}`);
  assert.equal(pngs.length, pages);
  return { pages, w, h, texts, pngs };
}

/** The text of the QR code in a PNG, decoded by jsQR in Chromium (null if none is found). */
async function decodeQr(png) {
  const page = await context.newPage();
  await page.setContent("<!doctype html><canvas id=c></canvas>");
  await page.addScriptTag({ path: JSQR });
  const data = `data:image/png;base64,${readFileSync(png).toString("base64")}`;
  const text = await page.evaluate(async (src) => {
    const img = new Image();
    img.src = src;
    await img.decode();
    const c = document.getElementById("c");
    c.width = img.naturalWidth; c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height);
    return window.jsQR(d.data, d.width, d.height)?.data ?? null;
  }, data);
  await page.close();
  return text;
}

const doc = (id, q) => `/api/v1/bills/${encodeURIComponent(id)}/document?${q}`;
const near = (a, b) => Math.abs(a - b) < 2;
// A4 and A6 in PDF points.
const A4 = [595.3, 841.9], A6 = [297.6, 419.5];
const flat = (s) => s.replace(/\s+/g, " ");

test("transport details are entered on the completed bill's page and printed", async () => {
  const page = await context.newPage();
  await page.goto(`/#/bills/${encodeURIComponent(SMALL)}`);
  await page.waitForSelector("#tb", { state: "attached" });
  await page.click("details:has(#tb) > summary");
  await page.fill("#tb input[name=vehicle_number]", "RJ14 GA 1234");
  await page.fill("#tb input[name=driver_name]", "Ramesh Kumar");
  await page.fill("#tb input[name=driver_phone]", "+91 98290 12345");
  await page.fill("#tb input[name=seal_number]", "SEAL-77812");
  await page.click("#tb button");
  await page.waitForFunction(() => document.querySelector("#bill-figs")?.textContent.includes("SEAL-77812"));
  // The document link follows the page's language.
  assert.match(await page.getAttribute("#doc", "href"), /lang=en$/);
  assert.match(await page.getAttribute("#label", "href"), /lang=en&format=a6$/);
  await page.close();
  const b = await (await context.request.get(`/api/v1/bills/${encodeURIComponent(SMALL)}`)).json();
  assert.equal(b.status, "completed");
  assert.deepEqual([b.vehicle_number, b.driver_name, b.driver_phone, b.seal_number], ["RJ14 GA 1234", "Ramesh Kumar", "+91 98290 12345", "SEAL-77812"]);
});

test("A4 in English: one page with organisation, transport, figures, signatures and a QR code of the bill id", async () => {
  const p = await print(doc(SMALL, "lang=en"), "small-a4-en");
  assert.equal(p.pages, 1);
  assert.ok(near(p.w, A4[0]) && near(p.h, A4[1]), `${p.w} x ${p.h}`);
  const text = flat(p.texts[0]);
  for (const s of [ORG, `Depot: ${DEPOT}`, "Dispatch note", `Bill ${SMALL}`, "Ramesh Kumar", "+91 98290 12345", "SEAL-77812",
    "RJ14 GA 1234", "Jaipur mandi", "IST", "Expected kg", "Actual kg", "Difference kg", "Dispatcher", "Driver", "Receiver", "Page 1 of 1",
    // The sack that came back: its ticket and the dispatched / returned / net figures.
    "Returns", process.env.TT_TICKET, "SB40004", "Sacks 4 1 3", "Packets 10 4 6"]) {
    assert.ok(text.includes(s), `missing ${JSON.stringify(s)} in:\n${text}`);
  }
  assert.ok(!text.includes("DRAFT"), "a completed bill is no draft");
  assert.equal(await decodeQr(p.pngs[0]), SMALL);
});

test("A4 in Hindi: the same document in Devanagari", async () => {
  const p = await print(doc(SMALL, "lang=hi"), "small-a4-hi");
  assert.equal(p.pages, 1);
  const text = flat(p.texts[0]);
  for (const s of [SMALL, "Ramesh Kumar", "SEAL-77812", "1 / 1"]) assert.ok(text.includes(s), `missing ${s} in:\n${text}`);
  assert.ok(/[\u0900-\u097F]/.test(text), `no Devanagari in:\n${text}`);
  assert.ok(!text.includes("Dispatch note") && !text.includes("Receiver"), text);
  assert.equal(await decodeQr(p.pngs[0]), SMALL);
});

test("A6 label: one page whose QR code scans even from a coarse (phone-like) image", async () => {
  for (const lang of ["en", "hi"]) {
    const p = await print(doc(SMALL, `lang=${lang}&format=a6`), `small-a6-${lang}`);
    assert.equal(p.pages, 1, lang);
    assert.ok(near(p.w, A6[0]) && near(p.h, A6[1]), `${p.w} x ${p.h}`);
    assert.ok(flat(p.texts[0]).includes(SMALL));
    assert.equal(await decodeQr(p.pngs[0]), SMALL);
  }
  // The label at 50 dpi: the code is about 130 px wide, as in a phone's photo from arm's length.
  const coarse = await print(doc(SMALL, "lang=en&format=a6"), "small-a6-en-50dpi", 50);
  assert.equal(await decodeQr(coarse.pngs[0]), SMALL);
});

test("with public_base_url the label's QR code is the bill's page, which opens the bill", async () => {
  // Another gateway of the same stack, configured with the first one's address; the session
  // cookie serves both (cookies ignore the port).
  const p = await print(`${process.env.TT_URL_GATEWAY}${doc(SMALL, "lang=en&format=a6")}`, "small-a6-url");
  const url = await decodeQr(p.pngs[0]);
  assert.equal(url, `${BASE}/#/bills/${encodeURIComponent(SMALL)}`);
  const page = await context.newPage();
  await page.goto(url);
  await page.waitForFunction((id) => document.querySelector("main h1")?.textContent.includes(id), SMALL);
  await page.close();
});

test("a 500-parent bill prints on many A4 pages, each with the table's header and its page number", async () => {
  for (const lang of ["en", "hi"]) {
    const p = await print(doc(BIG, `lang=${lang}`), `big-a4-${lang}`);
    assert.ok(p.pages >= 5, `${lang}: ${p.pages} pages`);
    p.texts.forEach((raw, i) => {
      const text = flat(raw);
      const number = lang === "en" ? `Page ${i + 1} of ${p.pages}` : `${i + 1} / ${p.pages}`;
      assert.ok(text.includes(number), `${lang} page ${i + 1}: no "${number}" in:\n${text}`);
      // The repeated header: the bill's id row over the column titles.
      assert.ok(text.includes(BIG), `${lang} page ${i + 1}: no header in:\n${text}`);
      if (lang === "en") assert.ok(text.includes("Expected kg") && text.includes("Sack"), `page ${i + 1}:\n${text}`);
    });
    const all = flat(p.texts.join(" "));
    // Every line is printed once, numbered 1 to 500.
    for (const n of [1, 250, 500]) assert.ok(new RegExp(`(^| )${n} SB5${String(n).padStart(4, "0")} `).test(all), `${lang}: line ${n}`);
    // The driver's name is text, never markup.
    assert.ok(all.includes("Suresh <b>Yadav</b>"), `${lang}: driver`);
    if (lang === "en") assert.ok(flat(p.texts[p.pages - 1]).includes("Receiver"), "signatures close the document");
    assert.equal(await decodeQr(p.pngs[0]), BIG);
  }
});

test("bad parameters are refused with a problem, not a page", async () => {
  for (const q of ["format=a5", "lang=fr"]) {
    const r = await context.request.get(doc(SMALL, q));
    assert.equal(r.status(), 400, q);
    assert.equal((await r.json()).code, "invalid_argument");
  }
  const r = await context.request.get(doc("NO-SUCH-BILL", "lang=en"));
  assert.equal(r.status(), 404);
});

test("the data page's label import gives its result as a workbook", async () => {
  const page = await context.newPage();
  await page.goto("/#/data");
  await page.waitForSelector("#imp");
  await page.setInputFiles("#imp input[name=file]", process.env.TT_LABEL_WORKBOOK);
  await page.selectOption("#imp select[name=area]", "lucknow");
  await page.check("#imp input[name=as_xlsx]");
  // The page downloads the workbook by itself once the server has answered (and keeps a link).
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#imp button")]);
  await page.waitForSelector("#report-xlsx");
  const file = `${OUT}/label-import-result.xlsx`;
  await download.saveAs(file);
  // An .xlsx is a zip archive (its sheets are read back by browser_document.rs).
  assert.equal(readFileSync(file).subarray(0, 2).toString(), "PK");
  await page.close();
});
