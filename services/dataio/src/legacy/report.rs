//! The migration report: what the old database holds, what would be (or was) imported, and
//! every row repaired, rejected, skipped or merely reported, with the reason.

use std::collections::BTreeMap;

use serde::Serialize;

use super::apply::Results;
use super::SourceCounts;

/// What happens to a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Imported after a change (the finding says which).
    Repaired,
    /// Not imported.
    Rejected,
    /// Left out on purpose (e.g. a dispatcher with no area).
    Skipped,
    /// Imported as it is; worth knowing (e.g. drifting bill counters).
    Reported,
    /// Writing it failed (real runs only).
    Failed,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Repaired => "repaired",
            Action::Rejected => "rejected",
            Action::Skipped => "skipped",
            Action::Reported => "reported",
            Action::Failed => "failed",
        }
    }
}

/// One row of the old database that is not imported exactly as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The old table: `user`, `bag`, `link`, `bill` or `bill_bag`.
    pub table: &'static str,
    /// The row's id in that table.
    pub legacy_id: i64,
    /// What the row is about: a QR id as stored, a username, a bill id.
    pub subject: String,
    /// A stable snake_case kind (`qr_repaired`, `dup_id`, `case_duplicate`, `over_capacity`, …).
    pub kind: &'static str,
    pub action: Action,
    /// The TraceTrack error code the services would answer, where one applies.
    pub code: Option<&'static str>,
    pub detail: String,
}

/// What the plan imports.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct WouldImport {
    pub users: usize,
    pub parents: usize,
    pub children: usize,
    pub links: usize,
    pub bills: usize,
    pub bill_parents: usize,
    pub bills_to_complete: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct MigrationReport {
    pub dry_run: bool,
    pub source: SourceCounts,
    pub would_import: WouldImport,
    /// `table.kind.action` → how many findings.
    pub summary: BTreeMap<String, usize>,
    pub findings: Vec<Finding>,
    /// What the writes did (absent in a dry run).
    pub results: Option<Results>,
    pub notes: Vec<String>,
}

impl MigrationReport {
    pub fn summarize(&mut self) {
        self.summary.clear();
        for f in &self.findings {
            *self
                .summary
                .entry(format!("{}.{}.{}", f.table, f.kind, f.action.as_str()))
                .or_default() += 1;
        }
    }

    /// Findings of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings.iter().filter(move |f| f.kind == kind)
    }

    /// Plain text: counts, then up to `examples` findings of each kind.
    pub fn render(&self, examples: usize) -> String {
        let s = &self.source;
        let w = &self.would_import;
        let mut out = String::new();
        out.push_str(if self.dry_run {
            "legacy migration - DRY RUN: nothing was written\n"
        } else {
            "legacy migration\n"
        });
        out.push_str(&format!(
            "old database: {} users, {} bags, {} links, {} bills, {} bill_bag rows",
            s.users, s.bags, s.links, s.bills, s.bill_bags
        ));
        if let Some(n) = s.scans {
            out.push_str(&format!(", {n} scans"));
        }
        if let Some(n) = s.audit_log {
            out.push_str(&format!(", {n} audit rows"));
        }
        out.push('\n');
        out.push_str(&format!(
            "{}: {} users, {} parent bags, {} child bags, {} links, {} bills holding {} parents ({} to complete)\n",
            if self.dry_run { "would import" } else { "to import" },
            w.users, w.parents, w.children, w.links, w.bills, w.bill_parents, w.bills_to_complete
        ));
        out.push_str(&format!(
            "rows repaired, rejected, skipped or reported: {}\n",
            self.findings.len()
        ));
        let mut by_kind: BTreeMap<(&str, &str, Action), Vec<&Finding>> = BTreeMap::new();
        for f in &self.findings {
            by_kind
                .entry((f.table, f.kind, f.action))
                .or_default()
                .push(f);
        }
        for ((table, kind, action), list) in &by_kind {
            out.push_str(&format!(
                "  {table} {kind} ({}): {}\n",
                action.as_str(),
                list.len()
            ));
            for f in list.iter().take(examples) {
                out.push_str(&format!(
                    "    {table} {} {:?}{}: {}\n",
                    f.legacy_id,
                    f.subject,
                    f.code.map(|c| format!(" [{c}]")).unwrap_or_default(),
                    f.detail
                ));
            }
            if list.len() > examples {
                out.push_str(&format!(
                    "    ... and {} more (all are in --report FILE.json)\n",
                    list.len() - examples
                ));
            }
        }
        if let Some(r) = &self.results {
            out.push_str(&r.render());
        }
        for n in &self.notes {
            out.push_str(&format!("note: {n}\n"));
        }
        out
    }
}
