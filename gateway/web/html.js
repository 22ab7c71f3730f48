// Safe-by-construction HTML: `html` is a tagged template whose every interpolated value is escaped,
// unless it is itself an `html` result (or an array of them). Nothing else can make a trusted
// fragment: the class is private to this module, so there is no `raw`.
const MINT = Symbol("html");
class Html {
  constructor(mint, s) {
    if (mint !== MINT) throw new TypeError("Html fragments come from the html tag only");
    this.s = s;
  }
  toString() { return this.s; }
}
const ESC = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };
export const esc = (s) => String(s).replace(/[&<>"'`]/g, (c) => ESC[c]);
// A value that ends up in a URL attribute may not carry a script: only fragment, path and http(s).
const URL_ATTR = /\b(href|src|action|formaction)\s*=\s*["']?$/i;
const SAFE_URL = /^(#|\/(?!\/)|\?|https?:|blob:)/i;
function part(v, before) {
  if (v instanceof Html) return v.s;
  if (Array.isArray(v)) return v.map((x) => part(x, "")).join("");
  if (v === null || v === undefined || v === false) return "";
  const s = String(v);
  if (URL_ATTR.test(before) && !SAFE_URL.test(s.trim())) return "#";
  return esc(s);
}
export function html(strings, ...vals) {
  let out = strings[0];
  for (let i = 0; i < vals.length; i++) out += part(vals[i], strings[i]) + strings[i + 1];
  return new Html(MINT, out);
}
/** Replaces `el`'s content with a fragment (plain values are shown as text). */
export function render(el, fragment) {
  if (!el) return;
  if (fragment instanceof Html) el.innerHTML = fragment.s;
  else el.textContent = fragment === null || fragment === undefined ? "" : String(fragment);
}
