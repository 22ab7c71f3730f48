// The web client in Debian's Chromium, driven by playwright-core. Started by the Rust test
// tests/tests/browser.rs, which runs the real stack and passes its address in the environment.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { chromium } from "playwright-core";

const BASE = process.env.TT_BASE_URL;
const SHOTS = process.env.TT_SCREENSHOTS;
const DISPATCHER = process.env.TT_DISPATCHER;
const PASSWORD = process.env.TT_PASSWORD;
const ADMIN_PASSWORD = process.env.TT_ADMIN_PASSWORD;
const CONTROL = process.env.TT_CONTROL_URL;
mkdirSync(SHOTS, { recursive: true });

let browser, context, page;
const sent = [];
// The tones, as vibration patterns: saved, refused, kept on the phone to send later.
const SUCCESS = "60", REFUSED = "[200,80,200]", QUEUED = "[40,60,40]";
/** The vibrations since the last call. */
const vibrations = () => page.evaluate(() => window.__vib.splice(0));
/** Waits until the queue line matches `re` (a RegExp source), saying what it showed if it never does. */
async function queueShows(re, timeout = 15000) {
  try {
    await page.waitForFunction((r) => new RegExp(r).test(document.querySelector("#queue").textContent), re, { timeout });
  } catch (e) {
    throw new Error(`queue never showed /${re}/: ${JSON.stringify(await page.textContent("#queue"))} (${e.message})`);
  }
}
const queueEmpty = (timeout = 30000) => page.waitForFunction(() => document.querySelector("#queue")?.textContent === "", null, { timeout });
/** A problem document as the gateway serves it. */
function problem(status, code, retryable, extra = {}) {
  return {
    status,
    contentType: "application/problem+json",
    body: JSON.stringify({ type: `https://tracetrack.dev/problems/${code}`, title: "test", status, detail: code, code, request_id: "browser-test", retryable, ...extra }),
  };
}
/** The attempts the page made for one child QR (into one parent, when given). */
const attempts = (child, parent) => sent.filter((s) => s.child === child && (!parent || s.parent === parent));
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.TT_CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--autoplay-policy=no-user-gesture-required"],
  });
  context = await browser.newContext({ viewport: { width: 360, height: 740 }, baseURL: BASE });
  // What the dispatcher feels: every vibration the page asks for (one per tone), oldest first.
  await context.addInitScript(() => {
    window.__vib = [];
    Object.defineProperty(navigator, "vibrate", { configurable: true, value: (p) => { window.__vib.push(JSON.stringify(p)); return true; } });
  });
  page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e));
  // Every scan and undo the page sends, in order, with its idempotency key.
  page.on("request", (req) => {
    if (req.method() !== "POST" || !/\/api\/v1\/scans\/(child|undo)$/.test(req.url())) return;
    const b = JSON.parse(req.postData() || "{}");
    sent.push({ path: new URL(req.url()).pathname, parent: b.parent_qr, child: b.child_qr, key: req.headers()["idempotency-key"] });
  });
});
after(async () => { await browser?.close(); });
// A failed test must not leave the next one offline or behind a fake answer.
afterEach(async () => {
  await context?.setOffline(false);
  await page?.unrouteAll({ behavior: "ignoreErrors" });
});

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
/**
 * Asks the Rust side, which owns the service processes, to act on the real stack ("kill/scan",
 * "start/scan", "expire-sessions/<user>"); resolves once it is done (scan killed and gone, or
 * started and serving).
 */
async function control(action) {
  console.log(`@@control ${action}`);
  const r = await fetch(`${CONTROL}/${action}`, { method: "POST" });
  const text = await r.text();
  assert.equal(r.status, 200, `control ${action}: ${text}`);
  console.log(`@@done ${action}: ${text}`);
  return text;
}
/** Polls `check` (in node) every 50 ms until it holds, for at most `timeout` ms. */
async function until(what, check, timeout = 30000) {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > timeout) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
/** The HTTP statuses the gateway answered for each child scanned into `parent`, in order. */
function answersInto(parent) {
  const answers = {};
  const onResponse = (res) => {
    if (!res.url().endsWith("/api/v1/scans/child")) return;
    const b = JSON.parse(res.request().postData() || "{}");
    if (b.parent_qr === parent) (answers[b.child_qr] ||= []).push(res.status());
  };
  page.on("response", onResponse);
  return { answers, stop: () => page.off("response", onResponse) };
}
/** On the server (as admin): `parent` holds exactly `children`, each recorded as scanned in once. */
async function linkedOnce(parent, children) {
  const token = await adminToken();
  assert.equal((await api(`/bags/${parent}`, token)).child_count, children.length, parent);
  const listed = await api(`/bags/${parent}/children?limit=100`, token);
  assert.deepEqual(listed.items.map((b) => b.qr).sort(), [...children].sort());
  for (const qr of children) {
    assert.equal((await api(`/bags/${qr}`, token)).parent_qr, parent, qr);
    const scans = await api(`/scans?qr=${qr}`, token);
    const ok = scans.items.filter((e) => e.kind === "child" && e.outcome === "ok");
    assert.equal(ok.length, 1, `${qr} recorded ${ok.length} times`);
  }
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
  // The scan whose answer was lost was sent again with the key it was made with.
  const lost = attempts("LOST0001");
  assert.ok(lost.length >= 2, `LOST0001 sent ${lost.length} times`);
  assert.equal(new Set(lost.map((a) => a.key)).size, 1, "one idempotency key for every attempt");
});

test("the current parent survives a reload", async () => {
  await page.reload();
  await page.waitForSelector("#scan");
  await progress("6/30");
});

test("scans answered 503 wait in the queue, in order, through a reload, and arrive once each with the key they were made with", async () => {
  await page.click("#newparent");
  await wedge("SB90004");
  await progress("0/30");
  await vibrations();
  // Scan restarting: the gateway answers 503 unavailable (retryable) on the scan route for a while.
  // The first answer is the rate limit's 429 with Retry-After: 2; the next try must not come sooner.
  let answered = 0;
  const answeredAt = [];
  const waiters = [];
  const reached = (n) => (answered >= n ? Promise.resolve() : new Promise((resolve) => waiters.push([n, resolve])));
  await page.route("**/api/v1/scans/child", (route) => {
    answered++;
    answeredAt.push(Date.now());
    for (const [n, resolve] of waiters) if (answered >= n) resolve();
    if (answered === 1) {
      const r = problem(429, "rate_limited", true, { retry_after_seconds: 2 });
      return route.fulfill({ ...r, headers: { "Retry-After": "2" } });
    }
    return route.fulfill(problem(503, "unavailable", true));
  });
  await wedge("BUSY0001");
  await page.waitForFunction(() => /Saved on this phone/.test(document.querySelector("#msg").textContent));
  await queueShows("^1 scan");
  // Said and felt as kept on the phone, never as saved.
  assert.equal(await page.getAttribute("#msg", "class"), "msg info");
  assert.match(await page.textContent("#msg"), /Saved on this phone/);
  let felt = await vibrations();
  assert.ok(felt.includes(QUEUED), `tones: ${felt}`);
  assert.ok(!felt.includes(SUCCESS), `success tone for a queued scan: ${felt}`);
  await wedge("BUSY0002");
  await wedge("BUSY0003");
  await queueShows("^3 scan");
  // The figure counts what waits, marked as not yet sent.
  await progress("3/30");
  assert.match(await page.getAttribute("#progress", "class"), /pending/);
  assert.match(await page.textContent("#pstatus"), /3 not sent yet/);
  await reached(2); // the head was tried again, not before Retry-After ...
  assert.ok(answeredAt[1] - answeredAt[0] >= 1990, // timers are rounded to the millisecond
    `tried again ${answeredAt[1] - answeredAt[0]} ms after a Retry-After of 2 s`);
  await reached(3); // ... and again after a 503 (backoff)
  assert.deepEqual([...new Set(sent.filter((s) => s.parent === "SB90004").map((s) => s.child))], ["BUSY0001"], "nothing sent before the head is settled");
  // ... and the queue survives a reload, which keeps trying.
  await page.reload();
  await page.waitForSelector("#scan");
  await queueShows("^3 scan");
  await progress("3/30");
  await reached(answered + 1);
  await shot("scan-503-queue");
  await page.unroute("**/api/v1/scans/child");
  await queueEmpty();
  await progress("3/30");
  assert.doesNotMatch(await page.getAttribute("#progress", "class"), /pending/);
  felt = await vibrations();
  assert.ok(!felt.includes(SUCCESS), `no success tone for scans sent later: ${felt}`);

  // In order: once BUSY000n+1 was sent, BUSY000n never again. One key per scan, reused on every try.
  const order = sent.filter((s) => s.parent === "SB90004").map((s) => Number(s.child.slice(-1)));
  assert.deepEqual(order, [...order].sort(), `sent out of order: ${order}`);
  const keys = ["BUSY0001", "BUSY0002", "BUSY0003"].map((qr) => {
    const tries = attempts(qr, "SB90004");
    assert.ok(tries.length >= 1 && tries.every((a) => a.key), qr);
    assert.equal(new Set(tries.map((a) => a.key)).size, 1, `${qr} sent under more than one key`);
    return tries[0].key;
  });
  assert.equal(new Set(keys).size, 3, "each scan has its own key");
  assert.ok(attempts("BUSY0001").length >= 4, `BUSY0001 tried ${attempts("BUSY0001").length} times`);

  // On the server: each linked exactly once.
  const token = await adminToken();
  assert.equal((await api("/bags/SB90004", token)).child_count, 3);
  const children = await api("/bags/SB90004/children", token);
  assert.deepEqual(children.items.map((b) => b.qr).sort(), ["BUSY0001", "BUSY0002", "BUSY0003"]);
  for (const qr of ["BUSY0001", "BUSY0002", "BUSY0003"]) {
    const scans = await api(`/scans?qr=${qr}`, token);
    assert.equal(scans.items.filter((e) => e.kind === "child" && e.outcome === "ok").length, 1, qr);
  }
});

test("a definitive refusal of a queued scan lands in the refusals list and is never sent again", async () => {
  await page.click("#newparent");
  await wedge("SB90005");
  await progress("0/30");
  await wedge("ELSE0001");
  await progress("1/30");
  await page.click("#newparent");
  await wedge("SB90006");
  await progress("0/30");
  const answers = [];
  const onResponse = (res) => {
    if (!res.url().endsWith("/api/v1/scans/child")) return;
    const b = JSON.parse(res.request().postData() || "{}");
    answers.push({ child: b.child_qr, parent: b.parent_qr, status: res.status() });
  };
  page.on("response", onResponse);
  await vibrations();
  // Offline, the packet already in SB90005 is scanned into SB90006: saved on the phone for now.
  await context.setOffline(true);
  await wedge("ELSE0001");
  await wedge("ELSE0002");
  await queueShows("^2 scan");
  await progress("2/30");
  await context.setOffline(false);
  await queueEmpty();
  await page.waitForSelector("#refused li");
  const list = await page.textContent("#refused");
  assert.match(list, /ELSE0001/);
  assert.match(list, /already in sack SB90005/);
  assert.match(await page.textContent("#msg"), /not accepted/);
  assert.equal(await page.getAttribute("#msg", "class"), "msg err");
  const felt = await vibrations();
  assert.ok(felt.includes(REFUSED), `refusal tone: ${felt}`);
  assert.ok(!felt.includes(SUCCESS), `success tone around a refusal: ${felt}`);
  await progress("1/30");
  assert.equal(answers.filter((a) => a.child === "ELSE0001" && a.parent === "SB90006").map((a) => a.status).join(), "409");

  // A dispatcher's view with both: two more scans waiting, and the refusal.
  await context.setOffline(true);
  await wedge("ELSE0003");
  await wedge("ELSE0004");
  await queueShows("^2 scan");
  await shot("scan-queue-and-refusals");
  await page.click("#lang");
  await page.waitForFunction(() => document.querySelector("h1").textContent === "स्कैन स्टेशन");
  await page.waitForSelector("#refused li");
  await shot("scan-queue-and-refusals-hindi");
  await page.click("#lang");
  await page.waitForFunction(() => document.querySelector("h1").textContent === "Scan station");
  await context.setOffline(false);
  await queueEmpty();
  await progress("3/30");
  // The queue moved past the refused scan: it was answered once and never sent again.
  assert.equal(answers.filter((a) => a.child === "ELSE0001" && a.parent === "SB90006").length, 1);
  page.off("response", onResponse);

  // The dispatcher has dealt with it and clears the list.
  await page.click("#clear-refused");
  await page.waitForSelector("#refused", { state: "hidden" });
  assert.equal(await page.evaluate(() => document.activeElement.id), "scan");

  const token = await adminToken();
  assert.equal((await api("/bags/SB90006", token)).child_count, 3);
  assert.equal((await api("/bags/SB90005", token)).child_count, 1);
  assert.equal((await api("/bags/ELSE0001", token)).parent_qr, "SB90005");
});

test("a queued undo names its child, so it removes that link and no other", async () => {
  await page.click("#newparent");
  await wedge("SB90008");
  await progress("0/30");
  await wedge("UNDO0001");
  await progress("1/30");
  await context.setOffline(true);
  await wedge("UNDO0002");
  await queueShows("^1 scan");
  await page.click("#undo"); // takes back UNDO0002, which is still waiting
  await queueShows("^2 scan");
  await progress("1/30");
  await context.setOffline(false);
  await queueEmpty();
  await progress("1/30");
  const undos = sent.filter((s) => s.path.endsWith("/undo") && s.parent === "SB90008");
  assert.ok(undos.length >= 1 && undos.every((u) => u.child === "UNDO0002"), JSON.stringify(undos));
  const token = await adminToken();
  const children = await api("/bags/SB90008/children", token);
  assert.deepEqual(children.items.map((b) => b.qr), ["UNDO0001"]);
});

test("a scan made after the session ended waits for the dispatcher to log in again, then is sent once", async () => {
  await page.click("#newparent");
  await wedge("SB90007");
  await progress("0/30");
  await wedge("EXP0001");
  await progress("1/30");
  // The session ends on the server (as when it expires); the page does not know yet.
  await page.evaluate(async () => {
    const me = await (await fetch("/api/v1/auth/me")).json();
    await fetch("/api/v1/auth/logout", { method: "POST", headers: { "X-CSRF-Token": me.csrf_token } });
  });
  await vibrations();
  await wedge("EXP0002");
  await page.waitForSelector("#login-queue");
  assert.match(await page.textContent("#login-queue"), new RegExp(`1 scan\\(s\\) of ${DISPATCHER} are waiting`));
  assert.ok(!(await vibrations()).includes(SUCCESS));
  await shot("login-with-queue");
  await page.fill("#u", DISPATCHER);
  await page.fill("#p", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("#scan");
  await queueEmpty();
  await progress("2/30");
  const tries = attempts("EXP0002", "SB90007");
  assert.ok(tries.length >= 2, `EXP0002 sent ${tries.length} times`);
  assert.equal(new Set(tries.map((a) => a.key)).size, 1, "the same key after the new login");
  const token = await adminToken();
  assert.equal((await api("/bags/EXP0002", token)).parent_qr, "SB90007");
  const scans = await api("/scans?qr=EXP0002", token);
  assert.equal(scans.items.filter((e) => e.kind === "child" && e.outcome === "ok").length, 1);
});

test("scan is killed (SIGKILL) while the dispatcher scans: scans wait on the phone, and once scan is started again they arrive by themselves, once each", async () => {
  await page.click("#newparent");
  await wedge("SB90010");
  await progress("0/30");
  const { answers, stop } = answersInto("SB90010");
  const kids = [];
  const scanNext = async () => { const qr = `KIL${String(kids.length + 1).padStart(4, "0")}`; kids.push(qr); await wedge(qr); };
  await scanNext();
  await scanNext();
  await progress("2/30");
  // The dispatcher keeps scanning while the process dies: the kill waits until a scan is inside
  // scan, so its answer never comes (saved or not, the page cannot know).
  let killedAs = null;
  const killed = control("kill/scan?during=ScanChild").then((t) => (killedAs = t));
  while (killedAs === null && kids.length < 20) await scanNext();
  await killed;
  // Scanned after scan died: it cannot be saved on the server, so the page keeps it.
  await scanNext();
  await queueShows("scan\\(s\\) waiting to be sent · trying again");
  await vibrations();
  for (let i = 0; i < 3; i++) await scanNext();
  // Said and felt as kept on the phone, each one, never as saved.
  assert.match(await page.textContent("#msg"), /Saved on this phone/);
  assert.equal(await page.getAttribute("#msg", "class"), "msg info");
  const felt = await vibrations();
  assert.deepEqual(felt, [QUEUED, QUEUED, QUEUED], `tones while scan is down: ${felt}`);
  // Every one of them is counted, marked as not sent yet; at least the 4 made after the kill wait.
  await progress(`${kids.length}/30`);
  assert.match(await page.getAttribute("#progress", "class"), /pending/);
  const waiting = Number((await page.textContent("#queue")).match(/^(\d+) scan/)[1]);
  assert.ok(waiting >= 4 && waiting <= kids.length - 2, `${waiting} of ${kids.length} waiting`);
  // The page keeps trying while scan is down (and the gateway answers that it is unavailable).
  const head = kids[kids.length - waiting];
  const tried = attempts(head, "SB90010").length;
  await until(`${head} tried again`, () => attempts(head, "SB90010").length > tried);
  assert.ok(answers[head].some((s) => s === 503), `${head} answered ${answers[head]}`);
  await shot("scan-killed-queue");

  await control("start/scan");
  // No one touches the page: the queue drains by itself.
  await queueEmpty(60000);
  await progress(`${kids.length}/30`);
  assert.doesNotMatch(await page.getAttribute("#progress", "class"), /pending/);
  assert.ok(!(await vibrations()).includes(SUCCESS), "no success tone for scans sent later");
  assert.equal(await page.$("#refused li"), null, "nothing refused");
  stop();
  console.log(`@@answers ${JSON.stringify(answers)}`);

  // In order, one key per scan on every try, each finally answered with success.
  const order = sent.filter((s) => s.parent === "SB90010").map((s) => kids.indexOf(s.child));
  assert.deepEqual(order, [...order].sort((a, b) => a - b), `sent out of order: ${order}`);
  for (const qr of kids) {
    const tries = attempts(qr, "SB90010");
    assert.equal(new Set(tries.map((a) => a.key)).size, 1, `${qr} sent under more than one key`);
    const last = answers[qr]?.at(-1);
    assert.ok(last >= 200 && last < 300, `${qr} answered ${answers[qr]}`);
  }
  await linkedOnce("SB90010", kids);
});

test("the session expires on the server while scans wait for a killed scan: the page asks for a login, then sends each once", async () => {
  await page.click("#newparent");
  await wedge("SB90011");
  await progress("0/30");
  const { answers, stop } = answersInto("SB90011");
  const kids = ["EXQ0001", "EXQ0002", "EXQ0003", "EXQ0004"];
  await wedge(kids[0]);
  await progress("1/30");
  await control("kill/scan");
  for (const qr of kids.slice(1)) await wedge(qr);
  await queueShows("^3 scan");
  await progress("4/30");
  await vibrations();
  // The dispatcher's session passes its expiry on the server while the scans wait.
  await control(`expire-sessions/${DISPATCHER}`);
  // The next try is answered 401: the page asks for a login and keeps the scans.
  await page.waitForSelector("#login-queue", { timeout: 30000 });
  assert.match(await page.textContent("#login-queue"), new RegExp(`3 scan\\(s\\) of ${DISPATCHER} are waiting`));
  assert.ok(answers.EXQ0002.includes(401), `EXQ0002 answered ${answers.EXQ0002}`);
  assert.ok(!(await vibrations()).includes(SUCCESS));
  await shot("login-with-queue-scan-down");
  await page.fill("#u", DISPATCHER);
  await page.fill("#p", PASSWORD);
  await page.click("button[type=submit]");
  await page.waitForSelector("#scan");
  // Logged in again, but scan is still down: the scans keep waiting, tried again.
  const tried = attempts("EXQ0002", "SB90011").length;
  await until("EXQ0002 tried after the login", () => attempts("EXQ0002", "SB90011").length > tried);
  await queueShows("^3 scan");
  await progress("4/30");
  await control("start/scan");
  await queueEmpty(60000);
  await progress("4/30");
  assert.equal(await page.$("#refused li"), null, "nothing refused");
  stop();
  console.log(`@@answers ${JSON.stringify(answers)}`);
  for (const qr of kids.slice(1)) {
    const tries = attempts(qr, "SB90011");
    assert.equal(new Set(tries.map((a) => a.key)).size, 1, `${qr}: the same key before and after the new login`);
    const last = answers[qr]?.at(-1);
    assert.ok(last >= 200 && last < 300, `${qr} answered ${answers[qr]}`);
  }
  // Before the login: 503 (scan down) then 401 (session over); after it, success.
  assert.ok(answers.EXQ0002.indexOf(503) < answers.EXQ0002.indexOf(401), `EXQ0002 answered ${answers.EXQ0002}`);
  await linkedOnce("SB90011", kids);
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
  // The dispatch document (issue 16's layout): the bill, its one sack with its 30 packets.
  assert.match(text, /Bill B-WEB-1/);
  assert.match(text, /SB90001mustardlucknow30\/30/);
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
