// The HTTP API: fetch with the session's CSRF token, problem documents, retryability.
import { session, emit, meta } from "./store.js";

export function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}
/** No answer at all: no network, the connection dropped, or no answer within the time-out. */
export class NetworkError extends Error {
  constructor(m) { super(m); this.problem = null; }
}
/** An HTTP answer that is not a success; `problem` is the problem document (or a stand-in). */
export class ApiError extends Error {
  constructor(p, status, retryAfterMs) { super(p.detail || p.code); this.problem = p; this.status = status; this.retryAfterMs = retryAfterMs; }
}
/** `Retry-After` (delay-seconds or an HTTP date) in milliseconds, or null. */
function retryAfterMs(res, problem) {
  const h = (res.headers.get("Retry-After") || "").trim();
  if (/^\d+$/.test(h)) return Number(h) * 1000;
  if (h && !Number.isNaN(Date.parse(h))) return Math.max(0, Date.parse(h) - Date.now());
  if (problem && Number.isFinite(problem.retry_after_seconds)) return problem.retry_after_seconds * 1000;
  return null;
}
/** Calls `/api/v1{path}`; resolves to the JSON answer (a Blob with `opts.blob`), rejects with NetworkError or ApiError. */
export async function api(method, path, body, opts = {}) {
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  const raw = opts.raw !== undefined;
  if (body !== undefined && !raw) headers["Content-Type"] = "application/json";
  const me = session.me;
  if (method !== "GET" && me) headers["X-CSRF-Token"] = me.csrf_token;
  if (opts.key) headers["Idempotency-Key"] = opts.key;
  const ctl = opts.timeout ? new AbortController() : null;
  const timer = ctl ? setTimeout(() => ctl.abort(), opts.timeout) : null;
  let res, data;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, body: raw ? opts.raw : body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin", signal: ctl ? ctl.signal : undefined });
    // `opts.blob`: a file answer (a result workbook) as a Blob; problems are JSON all the same.
    data = res.status === 204 ? null : opts.blob && res.ok ? await res.blob() : await res.json().catch(() => null);
  } catch (e) {
    throw new NetworkError(String(e));
  } finally { clearTimeout(timer); }
  if (!res.ok) {
    if (res.status === 401 && !path.startsWith("/auth/login")) emit("unauthenticated");
    const problem = data && typeof data.code === "string" ? data : { code: res.status >= 500 ? "unavailable" : "internal", status: res.status };
    throw new ApiError(problem, res.status, retryAfterMs(res, data));
  }
  return data;
}
/**
 * Whether the same request may succeed later (SPEC §2: the error table's `retryable`, served in
 * every problem document and in /api/v1/meta). Without either (say, a proxy's error page), by
 * status: 401, 408, 429 and 5xx are retried, any other 4xx is definitive. No answer is retried.
 */
export function retryable(e) {
  if (e instanceof NetworkError) return true;
  if (!(e instanceof ApiError)) return false;
  if (typeof e.problem.retryable === "boolean") return e.problem.retryable;
  const known = meta.value && meta.value.error_codes && meta.value.error_codes.find((c) => c.code === e.problem.code);
  if (known) return known.retryable;
  return e.status === 401 || e.status === 408 || e.status === 429 || e.status >= 500;
}
/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const s = q.toString();
  return s ? `?${s}` : "";
}
