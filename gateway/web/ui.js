// Shared bits of the pages: the message line, lists with loading/empty/error states and keyset
// paging, and small formatting helpers.
import { html, render } from "./html.js";
import { t, errText } from "./i18n.js";
import { NetworkError } from "./api.js";

export const $ = (sel, root = document) => root.querySelector(sel);
export const main = () => document.getElementById("main");

/** The page's message line (#msg): ok, err or info; text, or an `html` fragment (a link in it). */
export function note(text, kind) {
  const el = $("#msg");
  if (el) { el.className = `msg ${kind}`; render(el, text); el.hidden = false; }
}
/** An error in plain words (network or problem document), as text. */
export const errWords = (e) => (e instanceof NetworkError || !e || !e.problem ? t("err_network") : errText(e.problem));
// A refusal that names another bill or sack links to it (the words stay those of the catalogue).
const LINKS = { other_bill_id: (v) => `#/bills/${encodeURIComponent(v)}`, other_parent_qr: (v) => `#/bags/${encodeURIComponent(v)}` };
/** A problem document in plain words as an `html` fragment: the bill or sack it names is a link. */
export function problemView(problem) {
  if (!problem) return t("err_network");
  const words = errText(problem);
  const field = Object.keys(LINKS).find((f) => typeof problem[f] === "string" && problem[f]);
  if (!field) return words;
  const v = problem[field], at = words.indexOf(v), a = html`<a href="${LINKS[field](v)}">${v}</a>`;
  return at < 0 ? html`${words} ${a}` : html`${words.slice(0, at)}${a}${words.slice(at + v.length)}`;
}
/** `errWords` with links: for the message line and lists. */
export const errView = (e) => (e instanceof NetworkError || !e || !e.problem ? t("err_network") : problemView(e.problem));

/**
 * A list with its states: loading, empty, error (plain words), and "More" for keyset paging.
 * `load(token)` resolves to a Page {items, next_page_token}; `row(item)` and `head` are html.
 */
export function pagedList(box, { load, head, row, empty }) {
  let items = [], next = null, gen = 0;
  const draw = (state) => {
    render(box, html`${items.length ? html`<div class="scroll" tabindex="0"><table>${head}${items.map(row)}</table></div>`
        : state === null ? html`<p class="empty">${empty || t("none")}</p>` : ""}
      ${state === "loading" ? html`<p class="loading" role="status">${t("loading")}</p>` : ""}
      ${state && state.error ? html`<p class="msg err" role="alert">${errWords(state.error)}</p>` : ""}
      ${next && state === null ? html`<button type="button" class="secondary more">${t("next")}</button>` : ""}`);
    const more = box.querySelector(".more");
    if (more) more.addEventListener("click", () => fetchPage(next));
  };
  // A newer request (a filter changed) wins over one still on its way.
  async function fetchPage(token) {
    const mine = ++gen;
    draw("loading");
    try {
      const page = await load(token);
      if (mine !== gen) return;
      items = token ? items.concat(page.items) : page.items;
      next = page.next_page_token || null;
      draw(null);
    } catch (e) { if (mine === gen) draw({ error: e }); }
  }
  fetchPage(null);
  return { reload: () => { items = []; next = null; fetchPage(null); } };
}
/** `<option>`s, the current one selected. */
export const options = (values, current, label = (v) => v) =>
  values.map((v) => html`<option value="${v}" ${v === current ? "selected" : ""}>${label(v)}</option>`);
/** Local day (yyyy-mm-dd) to an RFC 3339 instant: its midnight, or the next day's. */
export function day(v, next) {
  if (!v) return "";
  const d = new Date(`${v}T00:00:00`);
  if (next) d.setDate(d.getDate() + 1);
  return d.toISOString();
}
