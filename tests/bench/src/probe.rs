//! What a run cost, measured around its window: the rows Postgres wrote per table
//! (`pg_stat_user_tables`) and the CPU time each process group used (`/proc/<pid>/stat`), so a
//! report can say "rows written per scan" and "CPU per scan per process" (issue 18: the next
//! change starts from numbers).
//!
//! Postgres publishes a backend's table counters when its transaction ends (at most once a
//! second while it is busy), so both snapshots lag the truth by about the same second: in a
//! steady run that cancels out; the figures are per scan answered inside the window.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Rows written to one table during the window.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TableWrites {
    pub table: String,
    pub inserted: i64,
    pub updated: i64,
    /// Of `updated`, heap-only tuple updates (no index maintenance).
    pub hot_updated: i64,
    pub deleted: i64,
}

impl TableWrites {
    pub fn rows(&self) -> i64 {
        self.inserted + self.updated + self.deleted
    }
}

/// The cumulative write counters of every user table of the database `pool` is on.
pub async fn table_writes(pool: &sqlx::PgPool) -> anyhow::Result<BTreeMap<String, TableWrites>> {
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
         FROM pg_stat_user_tables",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(table, inserted, updated, hot_updated, deleted)| {
            let w = TableWrites {
                table: table.clone(),
                inserted,
                updated,
                hot_updated,
                deleted,
            };
            (table, w)
        })
        .collect())
}

/// What changed between two snapshots: the tables that were written, most rows first. Monthly
/// partitions count under their own names (each is a table to Postgres).
pub fn writes_between(
    before: &BTreeMap<String, TableWrites>,
    after: &BTreeMap<String, TableWrites>,
) -> Vec<TableWrites> {
    let mut out: Vec<TableWrites> = after
        .iter()
        .map(|(t, a)| {
            let b = before.get(t).cloned().unwrap_or_default();
            TableWrites {
                table: t.clone(),
                inserted: a.inserted - b.inserted,
                updated: a.updated - b.updated,
                hot_updated: a.hot_updated - b.hot_updated,
                deleted: a.deleted - b.deleted,
            }
        })
        .filter(|w| w.rows() > 0)
        .collect();
    out.sort_by(|a, b| b.rows().cmp(&a.rows()).then(a.table.cmp(&b.table)));
    out
}

/// The process group a command name belongs to (`/proc/<pid>/comm` is cut at 15 bytes), or
/// `None` for processes that are not part of the system under test.
pub fn group_of(comm: &str) -> Option<&'static str> {
    const GROUPS: [(&str, &str); 9] = [
        ("tracetrack-gat", "gateway"),
        ("tracetrack-aut", "auth"),
        ("tracetrack-bag", "bag-registry"),
        ("tracetrack-sca", "scan"),
        ("tracetrack-bil", "billing"),
        ("tracetrack-sta", "stats"),
        ("tracetrack-ben", "load generator"),
        ("postgres", "postgres"),
        ("redis", "redis"),
    ];
    GROUPS
        .iter()
        .find(|(prefix, _)| comm.starts_with(prefix))
        .map(|(_, g)| *g)
}

/// CPU seconds (user + system) used so far by each process group, summed over its live
/// processes (Linux; 100 clock ticks a second). Empty where /proc cannot be read.
pub fn cpu_seconds() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, secs)) = parse_stat(&stat) {
            if let Some(g) = group_of(comm) {
                *out.entry(g.to_owned()).or_insert(0.0) += secs;
            }
        }
    }
    out
}

/// `(comm, utime + stime in seconds)` from one `/proc/<pid>/stat` line.
fn parse_stat(stat: &str) -> Option<(&str, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After the command: state is field 3; utime and stime are fields 14 and 15.
    let f: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((comm, ticks / 100.0))
}

/// CPU seconds each group used between two snapshots (a group that appeared counts from zero).
pub fn cpu_between(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(g, a)| {
            (
                g.clone(),
                (a - before.get(g).copied().unwrap_or(0.0)).max(0.0),
            )
        })
        .collect()
}

/// What the window cost: rows written per table and CPU seconds per process group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cost {
    pub rows_written: Vec<TableWrites>,
    pub cpu_seconds: BTreeMap<String, f64>,
}

impl Cost {
    /// What rows are divided by: for scans, the scan events Postgres itself recorded in the
    /// window (its counters lag by the same second as the other tables', so the ratio is exact
    /// even where the window's edges are not); else the `per` answers the load generator counted.
    pub fn rows_basis(&self, per: u64, what: &str) -> (u64, String) {
        let recorded: i64 = self
            .rows_written
            .iter()
            .filter(|w| w.table.starts_with("scan.scan_events"))
            .map(|w| w.inserted)
            .sum();
        if what == "scan" && recorded > 0 {
            (
                recorded as u64,
                format!("scan recorded: {recorded} rows of scan.scan_events"),
            )
        } else {
            (per, format!("{what} answered: {per} in the window"))
        }
    }

    /// Rows written per scan (or request), all tables.
    pub fn rows_per(&self, per: u64, what: &str) -> f64 {
        let (n, _) = self.rows_basis(per, what);
        let rows: i64 = self.rows_written.iter().map(TableWrites::rows).sum();
        rows as f64 / n.max(1) as f64
    }

    /// Markdown: rows written per table and CPU milliseconds per process, each per `per` (the
    /// scans answered in the window), or an empty string when nothing was answered.
    pub fn markdown(&self, per: u64, what: &str) -> String {
        if per == 0 {
            return String::new();
        }
        let (rows_per, basis) = self.rows_basis(per, what);
        let n = rows_per as f64;
        let mut out = format!("\nRows written per {what} (`pg_stat_user_tables`, per {basis}):\n\n| table | inserted | updated (HOT) | deleted | rows |\n|---|---:|---:|---:|---:|\n");
        let mut total = 0i64;
        for w in &self.rows_written {
            total += w.rows();
            out.push_str(&format!(
                "| {} | {:.2} | {:.2} ({:.2}) | {:.2} | {:.2} |\n",
                w.table,
                w.inserted as f64 / n,
                w.updated as f64 / n,
                w.hot_updated as f64 / n,
                w.deleted as f64 / n,
                w.rows() as f64 / n
            ));
        }
        out.push_str(&format!(
            "| **all** | | | | **{:.2}** |\n",
            total as f64 / n
        ));
        let n = per as f64;
        if !self.cpu_seconds.is_empty() {
            out.push_str(&format!(
                "\nCPU per {what}, by process (ms):\n\n| {} | **all** |\n|{}---:|\n",
                self.cpu_seconds
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(" | "),
                "---:|".repeat(self.cpu_seconds.len())
            ));
            let cells: Vec<String> = self
                .cpu_seconds
                .values()
                .map(|s| format!("{:.3}", s * 1000.0 / n))
                .collect();
            let all: f64 = self
                .cpu_seconds
                .iter()
                .filter(|(g, _)| g.as_str() != "load generator")
                .map(|(_, s)| s)
                .sum();
            out.push_str(&format!(
                "| {} | **{:.3}** (without the load generator) |\n",
                cells.join(" | "),
                all * 1000.0 / n
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_with_spaces_and_parentheses_in_the_name() {
        let line = "4242 (tracetrack-bag-) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 9 0 100";
        assert_eq!(parse_stat(line), Some(("tracetrack-bag-", 3.0)));
        let odd = "7 (a (b) c) R 1 2 3 4 5 6 7 8 9 10 100 100 0 0";
        assert_eq!(parse_stat(odd), Some(("a (b) c", 2.0)));
        assert_eq!(group_of("tracetrack-bag-"), Some("bag-registry"));
        assert_eq!(group_of("postgres"), Some("postgres"));
        assert_eq!(group_of("bash"), None);
    }

    #[test]
    fn writes_between_keeps_what_changed_most_first() {
        let w = |t: &str, i, u| TableWrites {
            table: t.into(),
            inserted: i,
            updated: u,
            hot_updated: 0,
            deleted: 0,
        };
        let before = BTreeMap::from([
            ("a.x".into(), w("a.x", 10, 0)),
            ("a.y".into(), w("a.y", 5, 5)),
        ]);
        let after = BTreeMap::from([
            ("a.x".into(), w("a.x", 12, 0)),
            ("a.y".into(), w("a.y", 5, 5)),
            ("a.z".into(), w("a.z", 3, 4)),
        ]);
        let d = writes_between(&before, &after);
        assert_eq!(d, vec![w("a.z", 3, 4), w("a.x", 2, 0)]);
        let cost = Cost {
            rows_written: d,
            cpu_seconds: BTreeMap::from([("postgres".into(), 1.0), ("load generator".into(), 1.0)]),
        };
        let md = cost.markdown(100, "scan");
        assert!(
            md.contains("| a.z | 0.03 | 0.04 (0.00) | 0.00 | 0.07 |"),
            "{md}"
        );
        assert!(md.contains("**0.09**"), "{md}");
        assert!(
            md.contains("**10.000** (without the load generator)"),
            "{md}"
        );
    }
}
