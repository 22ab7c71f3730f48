// "More": the pages that do not fit the bottom bar, and the account.
import { html, render } from "../html.js";
import { t } from "../i18n.js";
import { can, session } from "../store.js";
import { main } from "../ui.js";

export function more() {
  const me = session.me;
  const links = [
    ...(can.admin() ? [["#/users", t("nav_users")], ["#/api-keys", t("nav_api_keys")], ["#/audit", t("nav_audit")]] : []),
    ...(can.manage() ? [["#/data", t("nav_data")]] : []),
    ...(can.manage() ? [["#/returns", t("nav_returns")], ["#/reports", t("nav_reports")]] : []),
    ["#/dashboard", t("nav_dashboard")], ["#/password", t("change_title")], ["#/two-factor", t("tf_title")], ["#/logout", t("nav_logout")],
  ];
  render(main(), html`<h1>${t("nav_more")}</h1>
    <p class="muted">${me.user.username} · ${t(`role_${me.user.role}`)}${me.user.dispatch_area ? ` · ${me.user.dispatch_area}` : ""}</p>
    <ul class="menu">${links.map(([href, label]) => html`<li><a class="button secondary" href="${href}">${label}</a></li>`)}</ul>`);
}
export function forbidden() { render(main(), html`<h1>${t("forbidden")}</h1>`); }
