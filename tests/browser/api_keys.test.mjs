// API keys in Chromium at 360 px, in Hindi (issue 17 §2): the admin opens API keys from the More
// menu, makes an admin key for an ERP, sees its token once (with the warning and a copy button
// that copies exactly it), a script reads the scans export with it as a bearer token; making a
// second key of the same name is refused in words with its stable code; the token is not shown
// again; the admin revokes the key (confirmed), the list shows it revoked and the script is
// refused (the gateway's cache is 1 s in this test: polled). axe-core finds no serious or critical
// violation on the page. Started by browser_api_keys.rs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { device, login, settled, until, shot, BASE } from "./kit.mjs";

const AXE = new URL("./node_modules/axe-core/axe.min.js", import.meta.url).pathname;

async function axe(page) {
  await page.addScriptTag({ path: AXE });
  return page.evaluate(async () => (await window.axe.run(document, { resultTypes: ["violations"] })).violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`));
}
/** The script's side: the scans export with the key, as curl would. */
const exportWith = (token) => fetch(`${BASE}/api/v1/exports/scans.csv`, { headers: { Authorization: `Bearer ${token}` } });

test("an admin makes a key, sees it once, a script uses it, the admin revokes it (hi, 360 px)", async () => {
  // bypassCSP only so that the test can inject axe-core.
  const { context, page, errors } = await device(360, 740, { bypassCSP: true });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: BASE });
  await login(page, "admin");
  await page.click("#lang");
  await page.waitForFunction(() => document.documentElement.lang === "hi");
  await page.goto("/#/more");
  await settled(page);
  await page.click('a[href="#/api-keys"]');
  await page.waitForSelector("#ak-list .empty");
  assert.equal(await page.textContent("main h1"), "API कुंजियाँ");

  // The form: an area only for a dispatcher key.
  await page.click("#ak-new summary");
  assert.equal(await page.isVisible("#ak-area"), false);
  await page.selectOption("#ak-role", "dispatcher");
  assert.equal(await page.isVisible("#ak-area"), true);
  await page.selectOption("#ak-role", "admin");
  await page.fill("#ak-name", "erp-hindi");
  await page.click("#ak-form button[type=submit]");
  await page.waitForSelector("#ak-token-value");
  const token = (await page.textContent("#ak-token-value")).trim();
  assert.match(token, /^tt_key_[0-9a-f]{12}_/);
  assert.match(await page.textContent("#ak-token"), /दोबारा नहीं दिखेगी/);
  // The copy button copies exactly the token.
  await page.click("#ak-copy");
  await page.waitForFunction(() => (document.querySelector("#msg")?.textContent || "").includes("कॉपी हो गई"));
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), token);
  // The list shows the new key by its prefix (never the token), no overflow at 360 px.
  await page.waitForSelector('li[data-name="erp-hindi"][data-state="live"]');
  const card = await page.textContent('li[data-name="erp-hindi"]');
  assert.ok(card.includes(token.split("_")[2]) && !card.includes(token), card);
  assert.match(card, /admin/);
  assert.ok(await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), "no sideways scroll at 360 px");
  await shot(page, "api-keys-token-hindi-360");
  assert.deepEqual(await axe(page), []);

  // A script reads an export with the key as a bearer token.
  const r = await exportWith(token);
  assert.equal(r.status, 200);
  assert.match(r.headers.get("content-type"), /^text\/csv/);
  assert.match((await r.text()).split("\r\n")[0], /username/);

  // The same name again is refused: the words and the stable code.
  await page.click("#ak-new summary");
  await page.fill("#ak-name", "erp-hindi");
  await page.click("#ak-form button[type=submit]");
  await page.waitForSelector("#msg.err code");
  assert.equal(await page.textContent("#msg.err code"), "invalid_argument");

  // Leave and come back: the token is gone for good.
  await page.goto("/#/more");
  await settled(page);
  await page.goto("/#/api-keys");
  await page.waitForSelector('li[data-name="erp-hindi"]');
  assert.equal(await page.$("#ak-token-value"), null);
  assert.ok(!(await page.textContent("main")).includes(token));

  // Revoke, confirmed in a dialog that names the key.
  let asked = "";
  page.once("dialog", (d) => { asked = d.message(); d.accept(); });
  await page.click('li[data-name="erp-hindi"] .revoke');
  await page.waitForSelector('li[data-name="erp-hindi"][data-state="revoked"]');
  assert.match(asked, /erp-hindi/);
  assert.match(await page.textContent('li[data-name="erp-hindi"] h2'), /रद्द/);
  assert.equal(await page.$('li[data-name="erp-hindi"] .revoke'), null);
  // The script is refused once the gateway's cache (1 s here) forgets the key.
  await until(async () => (await exportWith(token)).status === 401, "the revoked key refused");
  await shot(page, "api-keys-revoked-hindi-360");
  assert.deepEqual(await axe(page), []);
  // The refused duplicate's request is the only console error.
  assert.deepEqual(errors.filter((e) => !/400/.test(e)), []);
  await context.close();
});
