// Exports (CSV, Excel, EPCIS) and the label import (admin); the bill workbook import (admin,
// biller: the only part a biller sees).
import { html, render } from "../html.js";
import { t, num } from "../i18n.js";
import { api, query } from "../api.js";
import { areaNames, can } from "../store.js";
import { $, main, note, errWords, options, day, problemView } from "../ui.js";

const XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
export function data() {
  if (!can.admin()) {
    render(main(), html`<h1>${t("imports")}</h1><div id="msg" class="msg" hidden></div><section id="bill-import" class="card"></section>`);
    return billImport($("#bill-import"));
  }
  const areas = areaNames();
  render(main(), html`<h1>${t("data_title")}</h1><div id="msg" class="msg" hidden></div>
    <section class="card"><h2>${t("exports")}</h2>
      <div class="row"><label>${t("from")}<input id="xfrom" type="date"></label><label>${t("to")}<input id="xto" type="date"></label></div>
      <p class="muted">${t("export_hint")}</p><div id="xlinks" class="row"></div>
      <p class="row mt"><a id="epcis" class="button secondary" download href="/api/v1/exports/epcis">EPCIS 2.0 (JSON-LD)</a></p></section>
    <section class="card"><h2>${t("imports")}</h2><form id="imp" class="stack">
      <label>${t("label_file")}<input name="file" type="file" accept=".xlsx,${XLSX_TYPE}" required></label>
      <label>${t("area")}<select name="area" required><option value="">—</option>${options(areas, "")}</select></label>
      <label class="row"><input type="checkbox" name="dry_run" class="check"> ${t("dry_run")}</label>
      <label class="row"><input type="checkbox" name="as_xlsx" class="check"> ${t("report_as_xlsx")}</label>
      <button>${t("import")}</button></form><div id="report"></div></section>
    <section id="bill-import" class="card"></section>`);
  billImport($("#bill-import"));
  const links = () => {
    const q = query({ from: day($("#xfrom").value, false), to: day($("#xto").value, true) });
    render($("#xlinks"), [["bags", t("nav_bags")], ["bills", t("nav_bills")], ["scans", t("nav_scan")]]
      .map(([kind, name]) => ["csv", "xlsx"].map((ext) => html`<a class="button secondary" download href="/api/v1/exports/${kind}.${ext}${q}">${name} .${ext}</a>`))
      .reduce((all, two) => html`${all}${two}`, html``));
    $("#epcis").setAttribute("href", `/api/v1/exports/epcis${q}`);
  };
  $("#xfrom").addEventListener("change", links);
  $("#xto").addEventListener("change", links);
  links();
  $("#imp").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target, file = f.file.files[0];
    if (!file || !f.area.value) return;
    render($("#report"), html`<p class="loading" role="status">${t("loading")}</p>`);
    if (f.as_xlsx.checked) {
      // The per-row report as the server's result workbook (Summary, Done, Problems): downloaded.
      try {
        const book = await api("POST", `/imports/labels${query({ area: f.area.value, dry_run: f.dry_run.checked ? "true" : "", result: "xlsx" })}`, undefined, { raw: file, blob: true, headers: { "Content-Type": XLSX_TYPE } });
        const href = URL.createObjectURL(book);
        render($("#report"), html`<p><a id="report-xlsx" class="button" download="labels-import-report.xlsx" href="${href}">${t("report_download")}</a></p>`);
        note(t("report_ready"), "ok");
        $("#report-xlsx").click();
      } catch (err) { render($("#report"), ""); note(errWords(err), "err"); }
      return;
    }
    try {
      const r = await api("POST", `/imports/labels${query({ area: f.area.value, dry_run: f.dry_run.checked ? "true" : "" })}`, undefined, { raw: file, headers: { "Content-Type": XLSX_TYPE } });
      const figures = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "number" ? num(v) : v]));
      note(r.dry_run ? t("dry_run_done", figures) : r.nothing_changed ? t("nothing_changed", figures) : t("import_done", figures), r.rejected ? "info" : "ok");
      render($("#report"), r.problems.length ? html`<div class="scroll"><table><tr><th>${t("sheet")}</th><th>${t("row")}</th><th>${t("problem")}</th><th>${t("qr")}</th></tr>${r.problems.map((p) =>
        html`<tr><td>${p.sheet}</td><td>${p.row}</td><td><b>${p.code}</b> ${p.message}</td><td>${p.value}</td></tr>`)}</table></div>` : "");
    } catch (err) { render($("#report"), ""); note(errWords(err), "err"); }
  });
}

/** The bill workbook import (issue 16 §3): bills created, sacks loaded, every bad row with its
 *  code; or the server's result workbook as a download. */
function billImport(card) {
  render(card, html`<h2>${t("bimp_import_title")}</h2><p class="muted">${t("bimp_import_hint")}</p>
    <form id="bimp" class="stack">
      <label>${t("bimp_file")}<input name="file" type="file" accept=".xlsx,${XLSX_TYPE}" required></label>
      <label class="row"><input type="checkbox" name="dry_run" class="check"> ${t("dry_run")}</label>
      <label class="row"><input type="checkbox" name="as_xlsx" class="check"> ${t("report_as_xlsx")}</label>
      <button>${t("import")}</button></form><div id="breport"></div>`);
  const out = $("#breport");
  const billLink = (id) => html`<a href="#/bills/${encodeURIComponent(id)}">${id}</a>`;
  $("#bimp").addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = e.target, file = f.file.files[0];
    if (!file) return;
    const dry = f.dry_run.checked ? "true" : "";
    render(out, html`<p class="loading" role="status">${t("loading")}</p>`);
    try {
      if (f.as_xlsx.checked) {
        const book = await api("POST", `/imports/bills${query({ dry_run: dry, result: "xlsx" })}`, undefined, { raw: file, blob: true, headers: { "Content-Type": XLSX_TYPE } });
        render(out, html`<p><a id="bill-report-xlsx" class="button" download="bill-import-result.xlsx" href="${URL.createObjectURL(book)}">${t("report_download")}</a></p>`);
        note(t("report_ready"), "ok");
        $("#bill-report-xlsx").click();
        return;
      }
      const r = await api("POST", `/imports/bills${query({ dry_run: dry })}`, undefined, { raw: file, headers: { "Content-Type": XLSX_TYPE } });
      const figures = Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === "number" ? num(v) : v]));
      note(r.dry_run ? t("bimp_dry_run_done", figures) : r.nothing_changed ? t("bimp_nothing_changed", figures) : t("bimp_import_done", figures), r.rejected ? "info" : "ok");
      render(out, html`${r.bills.length ? html`<div class="scroll"><table id="bill-import-bills"><tr><th>${t("bill_id")}</th><th>${t("status")}</th><th>${t("parents")}</th><th>${t("bimp_loaded")}</th><th>${t("bimp_already")}</th><th>${t("bimp_refused")}</th></tr>${r.bills.map((b) =>
        html`<tr><td>${billLink(b.bill_id)} <span class="muted">${b.created ? t("bimp_new") : t("bimp_existing")}</span></td><td>${b.status}</td><td>${num(b.parent_count)}/${num(b.capacity)}</td><td>${num(b.attached)}</td><td>${num(b.already_attached)}</td><td>${num(b.refused)}</td></tr>`)}</table></div>` : ""}
        ${r.problems.length ? html`<div class="scroll"><table id="bill-import-problems"><tr><th>${t("sheet")}</th><th>${t("row")}</th><th>${t("problem")}</th><th>${t("qr")}</th></tr>${r.problems.map((p) =>
          html`<tr><td>${p.sheet}</td><td>${p.row}</td><td><b>${p.code}</b> ${problemView(p)}</td><td>${p.value}</td></tr>`)}</table></div>` : ""}`);
    } catch (err) { render(out, ""); note(errWords(err), "err"); }
  });
}
