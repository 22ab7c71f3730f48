// The audit trail (admin): filters (user, action or action prefix, dates) and keyset paging.
import { html, render } from "../html.js";
import { t, when } from "../i18n.js";
import { api, query } from "../api.js";
import { $, main, pagedList, day } from "../ui.js";

/** Who acted: a person (a link to their activity), an API key (marked, a link to the keys), a service. */
function actor(e) {
  if (e.actor_kind === "api_key") return html`<a href="#/api-keys" class="actor-key">${e.actor_username}</a> <small class="muted">(${t("ak_tag")})</small>`;
  if (e.actor_user_id) return html`<a href="#/users/${encodeURIComponent(e.actor_user_id)}">${e.actor_username}</a>`;
  return e.actor_username || e.actor_service;
}

export function audit(_arg, params) {
  render(main(), html`<h1>${t("audit_title")}</h1>
    <form id="filters" class="filters card">
      <label>${t("action")}<input name="action" list="actions" autocomplete="off" placeholder="scan."></label>
      <datalist id="actions">${["auth.", "scan.", "registry.", "billing.", "users."].map((a) => html`<option value="${a}"></option>`)}</datalist>
      <label>${t("user_id")}<input name="user_id" autocomplete="off" value="${params.get("user_id") || ""}"></label>
      <label>${t("from")}<input name="from" type="date"></label><label>${t("to")}<input name="to" type="date"></label>
    </form>
    <div id="list" aria-live="polite"></div>`);
  const filters = $("#filters");
  const list = pagedList($("#list"), {
    load: (token) => {
      const f = Object.fromEntries(new FormData(filters));
      return api("GET", `/audit${query({ action: f.action.trim(), user_id: f.user_id.trim(), from: day(f.from, false), to: day(f.to, true), page_size: 50, page_token: token })}`);
    },
    head: html`<tr><th>${t("when")}</th><th>${t("action")}</th><th>${t("what")}</th><th>${t("who")}</th></tr>`,
    row: (e) => html`<tr><td>${when(e.occurred_at)}</td><td><b>${e.action}</b></td><td>${e.aggregate_type} ${e.aggregate_id}</td>
      <td>${actor(e)}</td></tr>`,
    empty: t("no_events"),
  });
  filters.addEventListener("change", () => list.reload());
  filters.addEventListener("submit", (e) => { e.preventDefault(); list.reload(); });
}
