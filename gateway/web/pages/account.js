// Log in, log out, change the password.
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
      <button type="submit">${t("login")}</button></form>`);
  $("#u").focus();
  $("#f").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await api("POST", "/auth/login", { username: $("#u").value.trim(), password: $("#p").value });
      session.set({ user: r.user, csrf_token: r.csrf_token });
      signedIn();
      go(r.must_change_password ? "#/password" : "#/scan");
    } catch (e) { note(errText(e.problem), "err"); tone("err"); }
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
