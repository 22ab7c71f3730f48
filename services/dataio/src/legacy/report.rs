//! The migration report: what the old database holds, what would be (or was) imported, and
//! every row repaired, rejected, skipped or merely reported, with the reason.

use std::collections::BTreeMap;

use serde::Serialize;
use tracetrack_domain::ErrorCode;

use super::SourceCounts;
use crate::import::Counts;

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

impl Finding {
    /// Starts a finding about row `legacy_id` of `table` (`subject` as the report shows it):
    /// `Finding::on("bag", 12, raw).code(ErrorCode::InvalidQr).rejected("dup_id", detail)`.
    pub fn on(table: &'static str, legacy_id: i64, subject: impl Into<String>) -> About {
        About {
            table,
            legacy_id,
            subject: subject.into(),
            code: None,
        }
    }
}

/// A finding being written: the row it is about and, where one applies, the error code; an
/// action ([`About::rejected`], [`About::repaired`], …) with the kind and detail completes it.
#[must_use]
#[derive(Debug, Clone)]
pub struct About {
    table: &'static str,
    legacy_id: i64,
    subject: String,
    code: Option<ErrorCode>,
}

impl About {
    /// The TraceTrack error code the services would answer (None: none applies).
    pub fn code(mut self, code: impl Into<Option<ErrorCode>>) -> Self {
        self.code = code.into();
        self
    }

    pub fn repaired(self, kind: &'static str, detail: impl Into<String>) -> Finding {
        self.action(Action::Repaired, kind, detail.into())
    }

    pub fn rejected(self, kind: &'static str, detail: impl Into<String>) -> Finding {
        self.action(Action::Rejected, kind, detail.into())
    }

    pub fn skipped(self, kind: &'static str, detail: impl Into<String>) -> Finding {
        self.action(Action::Skipped, kind, detail.into())
    }

    pub fn reported(self, kind: &'static str, detail: impl Into<String>) -> Finding {
        self.action(Action::Reported, kind, detail.into())
    }

    pub fn failed(self, kind: &'static str, detail: impl Into<String>) -> Finding {
        self.action(Action::Failed, kind, detail.into())
    }

    fn action(self, action: Action, kind: &'static str, detail: String) -> Finding {
        Finding {
            table: self.table,
            legacy_id: self.legacy_id,
            subject: self.subject,
            kind,
            action,
            code: self.code.map(ErrorCode::as_str),
            detail,
        }
    }
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

/// What a real run wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UserResults {
    pub created: usize,
    pub already_present: usize,
    pub failed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BagResults {
    #[serde(flatten)]
    pub counts: Counts,
    pub rejected: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BillResults {
    /// False when billing could not be reached (or no URL was given).
    pub migrated: bool,
    pub created: usize,
    pub already_present: usize,
    pub not_migrated: usize,
    pub failed: usize,
    pub parents_attached: usize,
    pub parents_already_attached: usize,
    pub attach_failed: usize,
    pub completed: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    pub users: UserResults,
    pub bags: BagResults,
    pub bills: BillResults,
}

impl Results {
    /// True when the run created or attached nothing.
    pub fn nothing_new(&self) -> bool {
        self.users.created == 0
            && self.bags.counts.parents_created == 0
            && self.bags.counts.children_created == 0
            && self.bags.counts.links_created == 0
            && self.bills.created == 0
            && self.bills.parents_attached == 0
            && self.bills.completed == 0
    }

    pub fn render(&self) -> String {
        let (u, b, c) = (&self.users, &self.bags, &self.bills);
        let mut out = format!(
            "written:\n  users: {} created, {} already present, {} failed\n  bags: {} parents and {} children created, {} links created, {} already present, {} refused by bag-registry\n",
            u.created, u.already_present, u.failed,
            b.counts.parents_created, b.counts.children_created, b.counts.links_created, b.counts.unchanged, b.rejected
        );
        if c.migrated {
            out.push_str(&format!(
                "  bills: {} created, {} already present, {} failed; parents: {} attached, {} already attached, {} failed; {} completed\n",
                c.created, c.already_present, c.failed, c.parents_attached, c.parents_already_attached, c.attach_failed, c.completed
            ));
        } else {
            out.push_str(&format!(
                "  bills: NOT MIGRATED ({} bills): billing could not be reached; run again when it can\n",
                c.not_migrated
            ));
        }
        if self.nothing_new() {
            out.push_str("  nothing new: everything was already present\n");
        }
        out
    }
}
