// English and Hindi strings: one translation catalogue, i18n/en.json and i18n/hi.json, which the
// server's printed documents read too (gateway/src/i18n.rs). Keys are English-ish ids; plain words
// for the floor; `{name}` is filled in from the caller's values. Every key is in both files (a
// unit test in i18n.rs checks it).
import { prefs } from "./store.js";

const load = (lang) => fetch(new URL(`./i18n/${lang}.json`, import.meta.url), { credentials: "same-origin" })
  .then((r) => { if (!r.ok) throw new Error(`i18n/${lang}.json: ${r.status}`); return r.json(); });
/** Both languages, loaded once when the app starts (the service worker keeps them for offline). */
export const CATALOGUE = Object.fromEntries(await Promise.all(["en", "hi"].map(async (l) => [l, await load(l)])));

/** The string `key` in the user's language (English when missing), with `{name}` filled in. */
export function t(key, vars) {
  const dict = CATALOGUE[prefs.lang] || CATALOGUE.en;
  let s = dict[key] ?? CATALOGUE.en[key] ?? key;
  for (const [k, v] of Object.entries(vars || {})) s = s.replaceAll(`{${k}}`, typeof v === "number" ? num(v) : v);
  return s;
}
/** A problem document (or a network failure: null) in plain words, from its stable code. */
export function errText(problem) {
  if (!problem) return t("err_network");
  const key = `err.${problem.code}`;
  const dict = CATALOGUE[prefs.lang] || CATALOGUE.en;
  return (dict[key] || CATALOGUE.en[key]) ? t(key, problem) : (problem.detail || problem.code);
}
const NUM = new Intl.NumberFormat("en-IN");
/** A figure in Indian grouping: 1,00,000. */
export const num = (n) => (typeof n === "number" && Number.isFinite(n) ? NUM.format(n) : n ?? "");
/** A time in the user's language, in India's way of writing dates. */
export function when(iso, opts = { dateStyle: "medium", timeStyle: "short" }) {
  if (!iso) return "";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString(prefs.lang === "hi" ? "hi-IN" : "en-IN", opts);
}
