// Log in (with the code step of two-factor sign-in), log out, change the password, two-factor
// sign-in (enrol with the QR code, recovery codes shown once, turn off).
import { html, render } from "../html.js";
import { t, errText } from "../i18n.js";
import { api } from "../api.js";
import { session, local } from "../store.js";
import { $, main, note } from "../ui.js";
import { tone } from "../tones.js";
import { queueOf } from "../queue.js";
import { go, signedIn } from "../router.js";

export function login() {
  const last = local.get("tt.last_user", null);
  const waiting = last ? queueOf(last.id).length : 0;
  render(main(), html`<h1>${t("login_title")}</h1><div id="msg" class="msg" hidden></div>
    ${waiting ? html`<p id="login-queue" class="msg info">${t("login_to_send", { n: waiting, user: last.username })}</p>` : ""}
    <form id="f" class="stack card narrow">
      <label for="u">${t("username")}</label><input id="u" name="username" autocomplete="username" autocapitalize="none" required>
      <label for="p">${t("password")}</label><input id="p" name="password" type="password" autocomplete="current-password" required>
      <button type="submit">${t("login")}</button></form>
    <p id="forgot-link" hidden><a href="#/forgot">${t("pr_forgot")}</a></p>`);
  $("#u").focus();
  // "Forgot password" only where auth can send mail.
  api("GET", "/config").then((c) => { if (c.password_reset && $("#forgot-link")) $("#forgot-link").hidden = false; }).catch(() => {});
  $("#f").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/auth/login", { username: $("#u").value.trim(), password: $("#p").value });
      if (r.challenge) return codeStep(r.challenge);
      loggedIn(r);
    } catch (e) { note(errText(e.problem), "err"); tone("err"); }
  });
}
/** A session from the login: on to what its restrictions ask first (in order), else the scan. */
function loggedIn(r) {
  session.set({ user: r.user, csrf_token: r.csrf_token });
  signedIn();
  const first = (r.user && r.user.restrictions || [])[0];
  go(first === "change_password" || r.must_change_password ? "#/password" : first === "enrol_2fa" ? "#/two-factor" : "#/scan");
}
/** The login's second step: a code from the authenticator app, or a recovery code. */
function codeStep(challenge) {
  let recovery = false;
  const draw = () => {
    render(main(), html`<h1>${t("tf_login_title")}</h1><div id="msg" class="msg" hidden></div>
      <form id="f2" class="stack card narrow">
        ${recovery
          ? html`<label for="rc">${t("tf_recovery_code")}</label><input id="rc" autocomplete="off" autocapitalize="none" required>`
          : html`<label for="code">${t("tf_code")}</label><input id="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required>`}
        <button type="submit">${t("tf_verify")}</button>
        <button type="button" id="tf-other" class="secondary">${recovery ? t("tf_use_code") : t("tf_use_recovery")}</button></form>`);
    $(recovery ? "#rc" : "#code").focus();
    $("#tf-other").addEventListener("click", () => { recovery = !recovery; draw(); });
    $("#f2").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const body = recovery ? { challenge, recovery_code: $("#rc").value.trim() } : { challenge, code: $("#code").value.replace(/\s/g, "") };
      try {
        loggedIn(await api("POST", "/auth/login/complete", body));
      } catch (e) {
        const wrong = e.problem && e.problem.code === "invalid_credentials";
        note(wrong ? t("tf_wrong_code") : errText(e.problem), "err"); tone("err");
        // A spent or expired challenge, or a lock: back to the password.
        if (e.problem && ["login_challenge_expired", "account_locked"].includes(e.problem.code)) setTimeout(() => go("#/login"), 1500);
      }
    });
  };
  draw();
}
/** Two-factor sign-in: its state, enrolment (QR code and key, confirmed with a code; the recovery
 * codes shown once) or turning it off (password and a code). */
export function twoFactor() {
  const me = session.me.user;
  const required = (me.restrictions || []).includes("enrol_2fa");
  if (me.two_factor_enabled) {
    render(main(), html`<h1>${t("tf_title")}</h1><div id="msg" class="msg" hidden></div>
      <p id="tf-state" class="msg ok">${t("tf_is_on")}</p>
      <form id="tf-off" class="stack card narrow"><h2>${t("tf_disable")}</h2><p class="muted">${t("tf_disable_note")}</p>
        <label for="pw">${t("password")}</label><input id="pw" type="password" autocomplete="current-password" required>
        <label for="code">${t("tf_code_or_recovery")}</label><input id="code" autocomplete="one-time-code" autocapitalize="none" required>
        <button type="submit" class="danger">${t("tf_disable")}</button></form>`);
    $("#tf-off").addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const v = $("#code").value.trim();
      const body = /^[0-9 ]{6,7}$/.test(v) ? { password: $("#pw").value, code: v.replace(/\s/g, "") } : { password: $("#pw").value, recovery_code: v };
      try {
        await api("POST", "/auth/two-factor/disable", body);
        session.set(await api("GET", "/auth/me"));
        twoFactor();
        note(t("tf_turned_off"), "ok");
      } catch (e) { note(errText(e.problem), "err"); tone("err"); }
    });
    return;
  }
  render(main(), html`<h1>${t("tf_title")}</h1><div id="msg" class="msg" hidden></div>
    ${required ? html`<p id="tf-required" class="msg info">${t("tf_required")}</p>` : ""}
    <p class="muted">${t("tf_intro")}</p>
    <button id="tf-start" type="button">${t("tf_start")}</button><div id="tf-enrol"></div>`);
  $("#tf-start").addEventListener("click", async () => {
    try {
      const r = await api("POST", "/auth/two-factor/enrolment", {});
      $("#tf-start").hidden = true;
      render($("#tf-enrol"), html`<div class="stack card narrow">
        <p>${t("tf_scan")}</p><img id="tf-qr" alt="${t("tf_qr_alt")}" width="220" height="220">
        <p>${t("tf_key")}: <code id="tf-secret">${r.secret.replace(/(.{4})/g, "$1 ").trim()}</code></p>
        <form id="tf-confirm" class="stack"><label for="code">${t("tf_code")}</label>
          <input id="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,7}" maxlength="7" required>
          <button type="submit">${t("tf_turn_on")}</button></form></div>`);
      // The server's own SVG (no script in an <img>); a data: URL is what the page's CSP allows.
      $("#tf-qr").src = `data:image/svg+xml;base64,${btoa(r.qr_svg)}`;
      $("#code").focus();
      $("#tf-confirm").addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const done = await api("POST", "/auth/two-factor/confirm", { code: $("#code").value.replace(/\s/g, "") });
          showRecoveryCodes(done.recovery_codes);
        } catch (e) { note(errText(e.problem), "err"); tone("err"); }
      });
    } catch (e) { note(errText(e.problem), "err"); tone("err"); }
  });
}
/** The recovery codes, this once; then on with a refreshed session. */
function showRecoveryCodes(codes) {
  render(main(), html`<h1>${t("tf_codes_title")}</h1>
    <p class="msg ok">${t("tf_is_on")}</p><p>${t("tf_codes_note")}</p>
    <ol id="tf-codes" class="card narrow">${codes.map((c) => html`<li><code>${c}</code></li>`)}</ol>
    <button id="tf-saved" type="button">${t("tf_codes_saved")}</button>`);
  $("#tf-saved").addEventListener("click", async () => {
    session.set(await api("GET", "/auth/me"));
    signedIn();
    go("#/scan");
  });
}
export async function logout() {
  try { await api("POST", "/auth/logout"); } catch { /* already gone */ }
  session.set(null);
  go("#/login");
}
export function password() {
  render(main(), html`<h1>${t("change_title")}</h1><div id="msg" class="msg" hidden></div>
    <form id="f" class="stack card narrow">
      <label for="c">${t("current_password")}</label><input id="c" type="password" autocomplete="current-password" required>
      <label for="n">${t("new_password")}</label><input id="n" type="password" autocomplete="new-password" required>
      <button type="submit">${t("save")}</button></form>`);
  $("#f").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/auth/password", { current_password: $("#c").value, new_password: $("#n").value });
      session.set(await api("GET", "/auth/me"));
      signedIn();
      note(t("password_changed"), "ok"); setTimeout(() => go("#/scan"), 600);
    } catch (e) { note(`${errText(e.problem)} ${e.problem && e.problem.reason ? `(${e.problem.reason})` : ""}`, "err"); }
  });
}
/** Forgot password: a username or e-mail; the same answer whether or not the account exists. */
export function forgot() {
  render(main(), html`<h1>${t("pr_forgot_title")}</h1><div id="msg" class="msg" hidden></div>
    <form id="fp" class="stack card narrow"><p class="muted">${t("pr_forgot_intro")}</p>
      <label for="login">${t("pr_login")}</label><input id="login" autocomplete="username" autocapitalize="none" required>
      <button type="submit">${t("pr_send")}</button></form>
    <p><a href="#/login">${t("pr_back")}</a></p>`);
  $("#login").focus();
  $("#fp").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/auth/password-reset", { login: $("#login").value.trim() });
      $("#fp").hidden = true;
      note(t("pr_sent"), "ok");
    } catch (e) { note(errText(e.problem), "err"); tone("err"); }
  });
}
/** The mailed link's page: a new password under the policy; then log in with it. */
export function reset(_arg, params) {
  const token = params.get("token") || "";
  render(main(), html`<h1>${t("pr_reset_title")}</h1><div id="msg" class="msg" hidden></div>
    <form id="rp" class="stack card narrow">
      <label for="n">${t("new_password")}</label><input id="n" type="password" autocomplete="new-password" required>
      <button type="submit">${t("save")}</button></form>
    <p><a href="#/login">${t("pr_back")}</a></p>`);
  $("#rp").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      await api("POST", "/auth/password-reset/complete", { token, new_password: $("#n").value });
      $("#rp").hidden = true;
      note(t("pr_done"), "ok");
    } catch (e) { note(`${errText(e.problem)} ${e.problem && e.problem.reason ? `(${e.problem.reason})` : ""}`, "err"); tone("err"); }
  });
}
