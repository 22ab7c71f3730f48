// Two-factor sign-in in Chromium at 360 px (issue 17 §1), in English and in Hindi: a user enrols on
// the Two-factor page (the server's QR code shown, the key read off the page, a code computed
// from it as an authenticator app would), sees the 10 recovery codes once, logs out, logs in with
// the password then a wrong code (refused in words) and the right one; axe-core finds no serious
// or critical violation on the enrolment and the code step. Started by browser_two_factor.rs.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { device, PASSWORD, axe } from "./kit.mjs";

function base32(s) {
  const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of s.replace(/[\s=]/g, "").toUpperCase()) bits += abc.indexOf(c).toString(2).padStart(5, "0");
  const out = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) out.push(parseInt(bits.slice(i, i + 8), 2));
  return Buffer.from(out);
}
/** RFC 6238 (HMAC-SHA-1, 6 digits, 30 s) at `offset` steps from now. */
function totp(key, offset = 0) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(Date.now() / 30000) + offset));
  const h = createHmac("sha1", key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  return String((h.readUInt32BE(o) & 0x7fffffff) % 1000000).padStart(6, "0");
}

async function logIn(page, user) {
  await page.goto("/#/login");
  await page.waitForSelector("#u");
  await page.fill("#u", user);
  await page.fill("#p", PASSWORD);
  await page.click("button[type=submit]");
}

for (const [lang, user, words] of [
  ["en", process.env.TT_USER_EN, { on: "Two-factor sign-in is on.", wrong: "Wrong or already used code" }],
  ["hi", process.env.TT_USER_HI, { on: "दो-चरण साइन-इन चालू है।", wrong: "कोड ग़लत है" }],
]) {
  test(`enrol, then log in with the code (${lang})`, async () => {
    // bypassCSP only so that the test can inject axe-core.
    const { page, errors } = await device(360, 740, { bypassCSP: true });
    await logIn(page, user);
    await page.waitForFunction(() => !location.hash.startsWith("#/login"));
    if (lang === "hi") {
      await page.click("#lang");
      await page.waitForFunction(() => document.documentElement.lang === "hi");
    }
    await page.goto("/#/two-factor");
    await page.click("#tf-start");
    await page.waitForSelector("#tf-secret");
    // The QR code is the server's SVG, and it loads under the page's CSP.
    await page.waitForFunction(() => document.querySelector("#tf-qr").naturalWidth > 0);
    assert.match(await page.getAttribute("#tf-qr", "src"), /^data:image\/svg\+xml;base64,/);
    assert.deepEqual(await axe(page), []);
    const key = base32(await page.textContent("#tf-secret"));
    assert.equal(key.length, 20);
    await page.fill("#code", totp(key));
    await page.click("#tf-confirm button[type=submit]");
    await page.waitForSelector("#tf-codes");
    assert.equal(await page.locator("#tf-codes li").count(), 10);
    assert.match(await page.textContent("main"), new RegExp(words.on));
    await page.click("#tf-saved");
    await page.waitForFunction(() => location.hash === "#/scan");

    await page.goto("/#/logout");
    await page.waitForFunction(() => location.hash === "#/login");
    await logIn(page, user);
    await page.waitForSelector("#code");
    assert.deepEqual(await axe(page), []);
    await page.fill("#code", "000000");
    await page.click("#f2 button[type=submit]");
    await page.waitForFunction((w) => (document.querySelector("#msg")?.textContent || "").includes(w), words.wrong);
    // The next step's code (±1 step of skew): the one used to confirm is spent.
    await page.fill("#code", totp(key, 1));
    await page.click("#f2 button[type=submit]");
    await page.waitForFunction(() => location.hash === "#/scan");
    const me = await page.evaluate(async () => (await fetch("/api/v1/auth/me")).json());
    assert.equal(me.user.username, user);
    assert.equal(me.user.two_factor_enabled, true);
    // The wrong code's failed request is the only console error.
    assert.deepEqual(errors.filter((e) => !/401/.test(e)), []);
  });
}
