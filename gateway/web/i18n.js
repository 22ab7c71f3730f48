// English and Hindi strings (an ES module). Keys are English-ish ids; plain words for the floor.
export const CATALOGUE = {
  en: {
    lang_switch: "हिन्दी",
    nav_dashboard: "Dashboard", nav_scan: "Scan", nav_bags: "Bags", nav_bills: "Bills", nav_users: "Users", nav_logout: "Log out",
    login_title: "Log in", username: "Username", password: "Password", login: "Log in",
    change_title: "Choose a new password", current_password: "Current password", new_password: "New password", save: "Save",
    password_changed: "Password changed.",
    status_open: "open", status_full: "full", status_linked: "linked", status_unlinked: "loose",
    scan_title: "Scan station", scan_parent_prompt: "Scan a parent bag (sack)", scan_child_prompt: "Scan child bags into", area: "Area",
    pick_area: "Pick the area first", change_parent: "New parent", undo: "Undo last",
    parent_ready: "Parent {qr} ready — now scan children", parent_new: "New parent {qr} registered",
    child_ok: "Added {qr}", child_again: "{qr} was already in this parent", parent_now_full: "Sack full! Scan the next parent.",
    undone: "Removed {qr}", waiting: "{n} scan(s) waiting to be sent", offline: "Offline",
    queued: "Saved on this phone, not yet on the server. Will send it ({n} waiting).",
    sent_later: "Sent {n} waiting scan(s)", waiting_short: "{n} waiting", refused_short: "{n} not accepted",
    wait_offline: "no network", wait_retry: "trying again", wait_login: "log in again to send",
    pending_line: "{n} not sent yet",
    refused_title: "Not accepted ({n})", refused_hint: "The server refused these saved scans. Check each bag and scan it again if needed.",
    refused_clear: "Clear this list", refused_now: "{n} waiting scan(s) not accepted: see the list below.",
    login_to_send: "{n} scan(s) of {user} are waiting on this phone. Log in to send them.",
    dash_title: "Dashboard", parents: "Parents", children: "Children", unlinked: "Loose children", scans_today: "Scans today", scans_hour: "Last hour", bills: "Bills",
    bags_title: "Find a bag", lookup: "Look up", qr: "QR code", type: "Type", status: "Status", count: "Count", weight: "Weight (kg)", parent: "Parent", bill: "Bill", history: "History", children_list: "Children",
    bills_title: "Bills", new_bill: "New bill", bill_id: "Bill number", capacity: "Capacity (sacks)", description: "Description", destination: "Destination", vehicle: "Vehicle number", create: "Create",
    attach_prompt: "Scan a parent to load it on this bill", detach: "Remove", complete: "Complete", reopen: "Reopen", document: "Dispatch document", label: "A6 label", expected: "Expected (kg)", actual: "Actual (kg)", difference: "Difference (kg)",
    users_title: "Users", new_user: "New user", role: "Role", email: "Email", active: "Active", unlock: "Unlock", unlock_all: "Unlock all", reset: "Reset password", temp_password: "Temporary password", edit: "Save changes", locked: "Locked",
    exports: "Exports", imports: "Imports",
    nav_data: "Exports / Import", data_title: "Exports and label import", from: "From", to: "To",
    export_hint: "Every row (no limit), for the dates chosen or all time. CSV starts at once; Excel files are sent when complete.",
    label_file: "Label workbook (.xlsx)", dry_run: "Check only (write nothing)", import: "Import", sheet: "Sheet", row: "Row", problem: "Problem",
    import_done: "Created {created} bags ({linked} links); {unchanged} already there; {rejected} bad rows.",
    nothing_changed: "Nothing new: every bag was already there. {rejected} bad rows.",
    dry_run_done: "Checked: {parents_in_file} sacks and {labels_in_file} labels to import; {rejected} bad rows. Nothing written.",
    "err.invalid_workbook": "That file is not an Excel workbook (.xlsx).", "err.payload_too_large": "That file is too large.",
    forbidden: "You cannot open this page.", loading: "Loading…", none: "Nothing yet.", next: "More",
    err_network: "No network. Try again.", err_storage: "This phone's storage is full: the scan was NOT saved. Scan again later.",
    "err.invalid_qr": "That code is not valid. Scan again.", "err.parent_full": "This sack is full.", "err.child_linked_elsewhere": "This packet is already in sack {other_parent_qr}.",
    "err.qr_is_parent": "That is a sack, not a packet.", "err.qr_is_child": "That is a packet, not a sack.", "err.parent_not_found": "Sack not found. Scan the sack first.",
    "err.parent_frozen": "This sack is on a completed bill.", "err.same_as_parent": "That is the sack itself.", "err.wrong_area": "That belongs to another area.",
    "err.area_required": "Pick the area first.", "err.nothing_to_undo": "Nothing of yours to undo here.", "err.invalid_credentials": "Wrong username or password.",
    "err.account_locked": "Too many tries. Wait {seconds_left} seconds or ask an admin.", "err.rate_limited": "Too fast. Wait a moment.", "err.unauthenticated": "Please log in again.",
    "err.bill_full": "This bill is full.", "err.bill_completed": "This bill is completed.", "err.on_other_bill": "This sack is on bill {other_bill_id}.", "err.bill_incomplete": "Load all sacks before completing.",
    "err.permission_denied": "You are not allowed to do that.", "err.weak_password": "Password too weak.", "err.unavailable": "Server busy. Try again.",
    "err.overloaded": "Server busy. Wait a moment.", "err.deadline_exceeded": "The server took too long. Try again.",
    "err.conflict": "Someone changed this at the same moment. Try again.", "err.internal": "Something went wrong on the server.",
    "err.idempotency_key_reused": "This scan clashed with an earlier one. Scan again.", "err.bag_not_found": "Bag not found.",
    "err.password_change_required": "Change your password first.", "err.invalid_argument": "That input is not valid.",
  },
  hi: {
    lang_switch: "English",
    nav_dashboard: "डैशबोर्ड", nav_scan: "स्कैन", nav_bags: "बोरी खोजें", nav_bills: "बिल", nav_users: "उपयोगकर्ता", nav_logout: "लॉग आउट",
    login_title: "लॉग इन", username: "यूज़रनेम", password: "पासवर्ड", login: "लॉग इन करें",
    change_title: "नया पासवर्ड चुनें", current_password: "अभी का पासवर्ड", new_password: "नया पासवर्ड", save: "सेव करें",
    password_changed: "पासवर्ड बदल गया।",
    status_open: "खुली", status_full: "भरी (full)", status_linked: "बोरी में", status_unlinked: "खुला",
    scan_title: "स्कैन स्टेशन", scan_parent_prompt: "बड़ी बोरी (पैरेंट) स्कैन करें", scan_child_prompt: "पैकेट स्कैन करें, बोरी", area: "क्षेत्र",
    pick_area: "पहले क्षेत्र चुनें", change_parent: "नई बोरी", undo: "आख़िरी हटाएँ",
    parent_ready: "बोरी {qr} तैयार — अब पैकेट स्कैन करें", parent_new: "नई बोरी {qr} दर्ज हुई",
    child_ok: "{qr} जोड़ा गया", child_again: "{qr} पहले से इस बोरी में है", parent_now_full: "बोरी भर गई! अगली बोरी स्कैन करें।",
    undone: "{qr} हटाया गया", waiting: "{n} स्कैन भेजे जाने का इंतज़ार कर रहे हैं", offline: "नेटवर्क नहीं",
    queued: "स्कैन इस फ़ोन में सेव है, सर्वर पर अभी नहीं। बाद में भेजेंगे ({n} बाकी)।",
    sent_later: "{n} रुके हुए स्कैन भेजे गए", waiting_short: "{n} बाकी", refused_short: "{n} नामंज़ूर",
    wait_offline: "नेटवर्क नहीं", wait_retry: "फिर कोशिश हो रही है", wait_login: "भेजने के लिए फिर से लॉग इन करें",
    pending_line: "{n} अभी भेजे नहीं गए",
    refused_title: "नामंज़ूर स्कैन ({n})", refused_hint: "सर्वर ने ये सेव किए हुए स्कैन नहीं लिए। हर बोरी/पैकेट जाँचें, ज़रूरत हो तो फिर स्कैन करें।",
    refused_clear: "सूची साफ़ करें", refused_now: "{n} रुके हुए स्कैन नामंज़ूर: नीचे सूची देखें।",
    login_to_send: "{user} के {n} स्कैन इस फ़ोन में भेजने बाकी हैं। भेजने के लिए लॉग इन करें।",
    dash_title: "डैशबोर्ड", parents: "बोरियाँ", children: "पैकेट", unlinked: "खुले पैकेट", scans_today: "आज के स्कैन", scans_hour: "पिछला घंटा", bills: "बिल",
    bags_title: "बोरी खोजें", lookup: "खोजें", qr: "क्यूआर कोड", type: "प्रकार", status: "स्थिति", count: "गिनती", weight: "वज़न (किलो)", parent: "बोरी", bill: "बिल", history: "इतिहास", children_list: "पैकेट",
    bills_title: "बिल", new_bill: "नया बिल", bill_id: "बिल नंबर", capacity: "क्षमता (बोरियाँ)", description: "विवरण", destination: "गंतव्य", vehicle: "गाड़ी नंबर", create: "बनाएँ",
    attach_prompt: "इस बिल पर चढ़ाने के लिए बोरी स्कैन करें", detach: "हटाएँ", complete: "पूरा करें", reopen: "फिर खोलें", document: "डिस्पैच दस्तावेज़", label: "A6 लेबल", expected: "अपेक्षित (किलो)", actual: "वास्तविक (किलो)", difference: "अंतर (किलो)",
    users_title: "उपयोगकर्ता", new_user: "नया उपयोगकर्ता", role: "भूमिका", email: "ईमेल", active: "सक्रिय", unlock: "अनलॉक", unlock_all: "सभी अनलॉक", reset: "पासवर्ड रीसेट", temp_password: "अस्थायी पासवर्ड", edit: "बदलाव सेव करें", locked: "लॉक",
    exports: "एक्सपोर्ट", imports: "इम्पोर्ट",
    nav_data: "एक्सपोर्ट / इम्पोर्ट", data_title: "एक्सपोर्ट और लेबल इम्पोर्ट", from: "से", to: "तक",
    export_hint: "सारी पंक्तियाँ (कोई सीमा नहीं), चुनी तारीख़ों की या पूरे समय की। CSV तुरंत शुरू होती है; Excel फ़ाइल पूरी होने पर आती है।",
    label_file: "लेबल वर्कबुक (.xlsx)", dry_run: "सिर्फ़ जाँचें (कुछ न लिखें)", import: "इम्पोर्ट करें", sheet: "शीट", row: "पंक्ति", problem: "समस्या",
    import_done: "{created} बोरी/पैकेट बने ({linked} जोड़े गए); {unchanged} पहले से थे; {rejected} ग़लत पंक्तियाँ।",
    nothing_changed: "कुछ नया नहीं: सब पहले से दर्ज है। {rejected} ग़लत पंक्तियाँ।",
    dry_run_done: "जाँच: {parents_in_file} बोरियाँ और {labels_in_file} लेबल इम्पोर्ट होंगे; {rejected} ग़लत पंक्तियाँ। कुछ नहीं लिखा गया।",
    "err.invalid_workbook": "यह Excel वर्कबुक (.xlsx) नहीं है।", "err.payload_too_large": "फ़ाइल बहुत बड़ी है।",
    forbidden: "आप यह पेज नहीं खोल सकते।", loading: "लोड हो रहा है…", none: "अभी कुछ नहीं।", next: "और",
    err_network: "नेटवर्क नहीं। फिर कोशिश करें।", err_storage: "फ़ोन की मेमोरी भरी है: स्कैन सेव नहीं हुआ। बाद में फिर स्कैन करें।",
    "err.invalid_qr": "यह कोड सही नहीं है। फिर स्कैन करें।", "err.parent_full": "यह बोरी भर चुकी है।", "err.child_linked_elsewhere": "यह पैकेट पहले से बोरी {other_parent_qr} में है।",
    "err.qr_is_parent": "यह बोरी है, पैकेट नहीं।", "err.qr_is_child": "यह पैकेट है, बोरी नहीं।", "err.parent_not_found": "बोरी नहीं मिली। पहले बोरी स्कैन करें।",
    "err.parent_frozen": "यह बोरी पूरे हुए बिल पर है।", "err.same_as_parent": "यह वही बोरी है।", "err.wrong_area": "यह दूसरे क्षेत्र का है।",
    "err.area_required": "पहले क्षेत्र चुनें।", "err.nothing_to_undo": "यहाँ हटाने को आपका कुछ नहीं है।", "err.invalid_credentials": "यूज़रनेम या पासवर्ड ग़लत है।",
    "err.account_locked": "बहुत कोशिशें। {seconds_left} सेकंड रुकें या एडमिन से कहें।", "err.rate_limited": "बहुत तेज़। थोड़ा रुकें।", "err.unauthenticated": "फिर से लॉग इन करें।",
    "err.bill_full": "यह बिल भर चुका है।", "err.bill_completed": "यह बिल पूरा हो चुका है।", "err.on_other_bill": "यह बोरी बिल {other_bill_id} पर है।", "err.bill_incomplete": "पूरा करने से पहले सभी बोरियाँ चढ़ाएँ।",
    "err.permission_denied": "आपको इसकी अनुमति नहीं है।", "err.weak_password": "पासवर्ड कमज़ोर है।", "err.unavailable": "सर्वर व्यस्त है। फिर कोशिश करें।",
    "err.overloaded": "सर्वर व्यस्त है। थोड़ा रुकें।", "err.deadline_exceeded": "सर्वर ने बहुत देर लगाई। फिर कोशिश करें।",
    "err.conflict": "उसी समय किसी और ने बदलाव किया। फिर कोशिश करें।", "err.internal": "सर्वर में कुछ गड़बड़ हुई।",
    "err.idempotency_key_reused": "यह स्कैन पिछले स्कैन से टकराया। फिर स्कैन करें।", "err.bag_not_found": "बोरी/पैकेट नहीं मिला।",
    "err.password_change_required": "पहले अपना पासवर्ड बदलें।", "err.invalid_argument": "यह जानकारी सही नहीं है।",
  },
};

import { prefs } from "./store.js";

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

// The second edition's strings (bottom bar, lists, scan station hand-off and idle reset, codes).
Object.assign(CATALOGUE.en, {
  nav_more: "More", nav_stats: "Stats", nav_audit: "Audit", nav_bags: "Bags", next: "Show more",
  parent_now_full: "Sack {qr} is FULL. Scan the next parent.", handoff_prompt: "{qr} is full — scan the next parent",
  handoff_child: "Sack {qr} is full: that was a packet. Scan the next parent.", parent_waiting: "sack not yet confirmed",
  settings: "Settings", idle_label: "Let go of the sack after no scan for", minutes: "{n} min", never: "never",
  idle_reset: "No scan for {min} min: scan a parent to go on.",
  all: "All", yes: "yes", no: "no", linked: "In a sack", billed: "On a bill", prefix: "Code starts with",
  type_parent: "sack", type_child: "packet", bag: "Bag", all_bags: "All bags", no_bags: "No bags match.",
  bill_new: "new", bill_processing: "loading", bill_completing: "completing", bill_completed: "completed", bill_reopening: "reopening",
  search_bill: "Bill number starts with", no_bills: "No bills match.",
  resend: "Send again", attached: "Sack {qr} loaded on bill {bill}.", attach_waiting: "{n} sack(s) waiting to be loaded on this bill",
  per_area_title: "Scans today per area", per_hour_title: "Scans per hour", today: "today", yesterday: "yesterday",
  change_sack: "Change its sack", move_to: "New sack (parent) code", move: "Move", unlink: "Take out of {qr}",
  unlink_confirm: "Take {qr} out of sack {parent}?", edit_bill: "Edit bill", delete_bill: "Delete bill",
  delete_bill_hint: "Its sacks are taken off it first.", delete_confirm: "Delete bill {id}? This cannot be undone.",
  role_dispatcher: "dispatcher", role_biller: "biller", role_admin: "admin",
  audit_title: "Audit trail", action: "Action", user_id: "User id", when: "When", what: "What", who: "Who", no_events: "Nothing happened in this window.",
  activity_title: "User activity", total_scans: "Scans in all", last_scan: "Last scan", last_login: "Last login", scans_per_day: "Scans per day",
  "err.not_found": "Not found.", "err.user_not_found": "User not found.", "err.bill_not_found": "Bill not found.",
  "err.username_taken": "That username is taken.", "err.email_taken": "That email is taken.", "err.bag_exists": "That bag already exists.",
  "err.bill_exists": "That bill number is taken.", "err.last_admin": "The last admin must stay an active admin.",
  "err.self_change_forbidden": "You cannot change your own role or deactivate yourself.", "err.bag_has_children": "This sack still has packets.",
  "err.bag_linked": "This packet is in a sack.", "err.bag_on_bill": "This sack is on a bill.", "err.not_a_parent": "That is not a sack.",
  "err.capacity_below_attached": "More sacks are loaded than that capacity.", "err.caller_not_allowed": "Not allowed.",
});
Object.assign(CATALOGUE.hi, {
  nav_more: "और", nav_stats: "डैशबोर्ड", nav_audit: "ऑडिट", nav_bags: "बोरियाँ", next: "और दिखाएँ",
  parent_now_full: "बोरी {qr} भर गई! अगली बोरी स्कैन करें।", handoff_prompt: "{qr} भर गई — अगली बोरी स्कैन करें",
  handoff_child: "बोरी {qr} भर गई है: यह पैकेट था। अगली बोरी स्कैन करें।", parent_waiting: "बोरी की पुष्टि बाकी",
  settings: "सेटिंग", idle_label: "इतनी देर स्कैन न हो तो बोरी छोड़ दें", minutes: "{n} मिनट", never: "कभी नहीं",
  idle_reset: "{min} मिनट से कोई स्कैन नहीं: आगे बढ़ने के लिए बोरी स्कैन करें।",
  all: "सभी", yes: "हाँ", no: "नहीं", linked: "बोरी में", billed: "बिल पर", prefix: "कोड की शुरुआत",
  type_parent: "बोरी", type_child: "पैकेट", bag: "बोरी", all_bags: "सभी बोरियाँ", no_bags: "कोई बोरी नहीं मिली।",
  bill_new: "नया", bill_processing: "लोड हो रहा", bill_completing: "पूरा हो रहा", bill_completed: "पूरा", bill_reopening: "फिर खुल रहा",
  search_bill: "बिल नंबर की शुरुआत", no_bills: "कोई बिल नहीं मिला।",
  resend: "फिर से भेजें", attached: "बोरी {qr} बिल {bill} पर चढ़ गई।", attach_waiting: "{n} बोरी इस बिल पर चढ़ने का इंतज़ार कर रही हैं",
  per_area_title: "आज क्षेत्र के हिसाब से स्कैन", per_hour_title: "हर घंटे के स्कैन", today: "आज", yesterday: "कल",
  change_sack: "बोरी बदलें", move_to: "नई बोरी (पैरेंट) का कोड", move: "बदलें", unlink: "{qr} से निकालें",
  unlink_confirm: "{qr} को बोरी {parent} से निकालें?", edit_bill: "बिल बदलें", delete_bill: "बिल हटाएँ",
  delete_bill_hint: "पहले इसकी बोरियाँ उतारी जाएँगी।", delete_confirm: "बिल {id} हटाएँ? यह वापस नहीं होगा।",
  role_dispatcher: "डिस्पैचर", role_biller: "बिलर", role_admin: "एडमिन",
  audit_title: "ऑडिट रिकॉर्ड", action: "काम", user_id: "यूज़र आईडी", when: "कब", what: "क्या", who: "किसने", no_events: "इस समय में कुछ नहीं हुआ।",
  activity_title: "यूज़र की गतिविधि", total_scans: "कुल स्कैन", last_scan: "आख़िरी स्कैन", last_login: "आख़िरी लॉग इन", scans_per_day: "रोज़ के स्कैन",
  "err.not_found": "नहीं मिला।", "err.user_not_found": "यूज़र नहीं मिला।", "err.bill_not_found": "बिल नहीं मिला।",
  "err.username_taken": "यह यूज़रनेम पहले से है।", "err.email_taken": "यह ईमेल पहले से है।", "err.bag_exists": "यह बोरी पहले से है।",
  "err.bill_exists": "यह बिल नंबर पहले से है।", "err.last_admin": "आख़िरी एडमिन को एडमिन ही रहना होगा।",
  "err.self_change_forbidden": "आप अपनी भूमिका नहीं बदल सकते।", "err.bag_has_children": "इस बोरी में अभी पैकेट हैं।",
  "err.bag_linked": "यह पैकेट किसी बोरी में है।", "err.bag_on_bill": "यह बोरी बिल पर है।", "err.not_a_parent": "यह बोरी नहीं है।",
  "err.capacity_below_attached": "इस क्षमता से ज़्यादा बोरियाँ लदी हैं।", "err.caller_not_allowed": "अनुमति नहीं।",
});
// A bill's transport details (dispatch document).
Object.assign(CATALOGUE.en, { transport: "Transport", driver_name: "Driver's name", driver_phone: "Driver's phone", seal_number: "Seal number" });
Object.assign(CATALOGUE.hi, { transport: "परिवहन", driver_name: "चालक का नाम", driver_phone: "चालक का फ़ोन", seal_number: "सील नंबर" });
