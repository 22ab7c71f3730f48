// API keys for integrations (admin; issue 17 §2): the list (revoked ones too), a form that makes
// a key and shows its token this once with a copy button, revoke with a confirmation.
import { html, render } from "../html.js";
import { t, errText, when } from "../i18n.js";
import { api, uuid } from "../api.js";
import { areaNames } from "../store.js";
import { $, main, note, options, day } from "../ui.js";

const ROLES = ["biller", "dispatcher", "admin"];
/** A refusal in words, with its stable code (what an integrator looks up in the API's table). */
const refusal = (e) => (e && e.problem ? html`${errText(e.problem)} <code>${e.problem.code}</code>` : errText(null));

function keyCard(k) {
  const row = (label, value) => html`<dt>${label}</dt><dd>${value || "—"}</dd>`;
  const revoked = Boolean(k.revoked_at);
  return html`<li class="card" data-id="${k.id}" data-name="${k.name}" data-state="${revoked ? "revoked" : "live"}">
    <h2>${k.name} ${revoked ? html`<span class="state-revoked">(${t("ak_revoked")})</span>` : ""}</h2>
    <dl class="kv">${row(t("ak_prefix"), html`<code>tt_key_${k.prefix}_…</code>`)}${row(t("role"), t(`role_${k.role}`))}
      ${row(t("area"), k.dispatch_area)}${row(t("ak_created_by"), k.created_by_username)}${row(t("ak_created"), when(k.created_at))}
      ${row(t("ak_last_used"), when(k.last_used_at))}${row(t("ak_expires"), k.expires_at ? when(k.expires_at) : t("ak_never"))}
      ${revoked ? row(t("ak_revoked"), when(k.revoked_at)) : ""}</dl>
    <p class="row"><a class="button secondary" href="#/audit?user_id=${encodeURIComponent(k.id)}">${t("nav_audit")}</a>
      ${revoked ? "" : html`<button type="button" class="secondary revoke">${t("ak_revoke")}</button>`}</p></li>`;
}

async function loadList() {
  const box = $("#ak-list");
  if (!box) return;
  let r;
  try { r = await api("GET", "/api-keys?include_revoked=true"); } catch (e) { render(box, html`<p class="msg err" role="alert">${refusal(e)}</p>`); return; }
  if (!$("#ak-list")) return;
  render(box, r.items.length ? html`<ul class="keys">${r.items.map(keyCard)}</ul>` : html`<p class="empty">${t("ak_none")}</p>`);
  box.querySelectorAll("li[data-id]").forEach((li) => {
    const btn = $(".revoke", li);
    if (!btn) return;
    btn.addEventListener("click", async () => {
      if (!confirm(t("ak_revoke_confirm", { name: li.dataset.name }))) return;
      try {
        await api("DELETE", `/api-keys/${encodeURIComponent(li.dataset.id)}`, undefined, { key: uuid() });
        note(t("ak_revoked_note", { name: li.dataset.name }), "ok");
        await loadList();
      } catch (e) { note(refusal(e), "err"); }
    });
  });
}

/** The token, this once: nothing keeps it (leave the page and it is gone). */
function showToken(name, token) {
  render($("#ak-made"), html`<div class="card" id="ak-token" role="status">
    <p class="msg info">${t("ak_once", { name })}</p>
    <p><code id="ak-token-value" class="token">${token}</code></p>
    <p class="row"><button type="button" id="ak-copy">${t("ak_copy")}</button><button type="button" id="ak-done" class="secondary">${t("ak_done")}</button></p></div>`);
  $("#ak-copy").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(token);
      note(t("ak_copied"), "ok");
    } catch {
      // No clipboard here (an insecure origin): select the text for the user to copy.
      const range = document.createRange();
      range.selectNodeContents($("#ak-token-value"));
      getSelection().removeAllRanges();
      getSelection().addRange(range);
      note(t("ak_copy_by_hand"), "info");
    }
  });
  $("#ak-done").addEventListener("click", () => { render($("#ak-made"), ""); $("#msg").hidden = true; });
}

export function apiKeys() {
  render(main(), html`<h1>${t("ak_title")}</h1><div id="msg" class="msg" hidden></div>
    <p class="muted">${t("ak_intro")}</p>
    <div id="ak-made"></div>
    <details class="card" id="ak-new"><summary>${t("ak_new")}</summary><form id="ak-form" class="stack">
      <label for="ak-name">${t("ak_name")}</label><input id="ak-name" name="name" required maxlength="100" autocomplete="off" autocapitalize="none">
      <label for="ak-role">${t("role")}</label><select id="ak-role" name="role">${options(ROLES, "biller", (r) => t(`role_${r}`))}</select>
      <div id="ak-area-row" hidden><label for="ak-area">${t("area")}</label><select id="ak-area" name="dispatch_area"><option value="">—</option>${options(areaNames(), "")}</select></div>
      <label for="ak-expires">${t("ak_expires_opt")}</label><input id="ak-expires" name="expires" type="date">
      <button type="submit">${t("ak_create")}</button></form></details>
    <div id="ak-list" aria-live="polite"><p class="loading" role="status">${t("loading")}</p></div>`);
  const role = $("#ak-role"), areaRow = $("#ak-area-row");
  const follow = () => { areaRow.hidden = role.value !== "dispatcher"; $("#ak-area").required = role.value === "dispatcher"; };
  role.addEventListener("change", follow);
  follow();
  // One idempotency key per form filled in: a retried click makes one key, never two.
  let key = uuid();
  $("#ak-form").addEventListener("input", () => { key = uuid(); });
  $("#ak-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ev.target));
    const body = { name: f.name.trim(), role: f.role };
    if (f.role === "dispatcher") body.dispatch_area = f.dispatch_area;
    // The chosen day is the last one the key works: it expires at the next midnight.
    if (f.expires) body.expires_at = day(f.expires, true);
    try {
      const r = await api("POST", "/api-keys", body, { key });
      ev.target.reset(); follow(); key = uuid();
      $("#ak-new").open = false;
      // A retried request answers the key without its token (it is never stored): revoke it.
      if (!r.token) note(t("ak_token_lost", { name: r.key.name }), "err");
      else { note(t("ak_made", { name: r.key.name }), "ok"); showToken(r.key.name, r.token); }
      await loadList();
    } catch (e) { note(refusal(e), "err"); }
  });
  loadList();
}
