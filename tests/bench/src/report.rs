//! Number formatting, latency tables, and the results of a `run` (JSON and markdown).

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latencies are recorded in microseconds, from 1 µs to 10 minutes, at 3 significant digits.
pub fn latency_histogram() -> anyhow::Result<Histogram<u64>> {
    Ok(Histogram::new_with_bounds(1, 600_000_000, 3)?)
}

/// `1234567` → `1,234,567`.
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Events per second, rounded, with thousands separators.
pub fn rate(n: u64, secs: f64) -> String {
    if secs <= 0.0 {
        return "-".to_owned();
    }
    count((n as f64 / secs).round() as u64)
}

fn ms(micros: u64) -> String {
    format!("{:.2}", micros as f64 / 1000.0)
}

/// A one-row table of a latency distribution in milliseconds, with its header.
pub fn latency_table(label: &str, h: &Histogram<u64>) -> String {
    let header = format!(
        "  {label:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "count", "mean", "p50", "p90", "p99", "p99.9", "max"
    );
    if h.is_empty() {
        return format!("{header}\n  {:<12} {:>9}", "(ms)", 0);
    }
    let q = |p: f64| ms(h.value_at_quantile(p));
    format!(
        "{header}\n  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "(ms)",
        h.len(),
        format!("{:.2}", h.mean() / 1000.0),
        q(0.50),
        q(0.90),
        q(0.99),
        q(0.999),
        ms(h.max()),
    )
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One operation's tally during a run.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Every measured request's latency (successes and errors alike).
    pub hist: Histogram<u64>,
    /// The answered (successful) requests' latencies alone.
    pub ok_hist: Histogram<u64>,
    pub ok: u64,
    /// Failed requests by their problem document's `code` (or `http_<status>`, `timeout`,
    /// `transport`).
    pub errors: BTreeMap<String, u64>,
    pub status_5xx: u64,
}

impl OpStats {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            hist: latency_histogram()?,
            ok_hist: latency_histogram()?,
            ok: 0,
            errors: BTreeMap::new(),
            status_5xx: 0,
        })
    }

    pub fn merge(&mut self, other: &OpStats) -> anyhow::Result<()> {
        self.hist.add(&other.hist)?;
        self.ok_hist.add(&other.ok_hist)?;
        self.ok += other.ok;
        for (code, n) in &other.errors {
            *self.errors.entry(code.clone()).or_default() += n;
        }
        self.status_5xx += other.status_5xx;
        Ok(())
    }

    pub fn report(&self, op: &str, window_secs: f64) -> OpReport {
        let count = self.hist.len();
        let per_s = |n: u64| {
            if window_secs > 0.0 {
                round2(n as f64 / window_secs)
            } else {
                0.0
            }
        };
        OpReport {
            op: op.to_owned(),
            count,
            ok: self.ok,
            throughput_per_s: per_s(count),
            ok_per_s: per_s(self.ok),
            latency_ms: Latency::of(&self.hist),
            ok_latency_ms: Latency::of(&self.ok_hist),
            percentiles_ms: percentile_curve(&self.hist),
            errors: self.errors.clone(),
            status_5xx: self.status_5xx,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// A latency distribution's summary, in milliseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Latency {
    /// From a histogram of microseconds.
    pub fn of(h: &Histogram<u64>) -> Option<Self> {
        if h.is_empty() {
            return None;
        }
        let q = |p: f64| round3(h.value_at_quantile(p) as f64 / 1000.0);
        Some(Self {
            mean: round3(h.mean() / 1000.0),
            p50: q(0.50),
            p90: q(0.90),
            p99: q(0.99),
            p99_9: q(0.999),
            max: round3(h.max() as f64 / 1000.0),
        })
    }
}

/// The percentiles a latency curve is drawn through: the minimum (0), the median and on up the
/// nines to the maximum (100), as in HdrHistogram's percentile plots.
pub const CURVE_PERCENTILES: [f64; 9] = [0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0];

/// One point of a latency percentile curve.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct PercentilePoint {
    pub percentile: f64,
    pub ms: f64,
}

/// A histogram of microseconds as its latency curve in milliseconds, at [`CURVE_PERCENTILES`]
/// (empty for an empty histogram).
pub fn percentile_curve(h: &Histogram<u64>) -> Vec<PercentilePoint> {
    if h.is_empty() {
        return Vec::new();
    }
    CURVE_PERCENTILES
        .iter()
        .map(|&percentile| {
            let micros = if percentile <= 0.0 {
                h.min()
            } else if percentile >= 100.0 {
                h.max()
            } else {
                h.value_at_quantile(percentile / 100.0)
            };
            PercentilePoint {
                percentile,
                ms: round3(micros as f64 / 1000.0),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpReport {
    pub op: String,
    /// Requests started in the measured window and answered (or failed).
    pub count: u64,
    pub ok: u64,
    pub throughput_per_s: f64,
    pub ok_per_s: f64,
    pub latency_ms: Option<Latency>,
    /// The successful requests' latencies alone (under overload the refusals are fast and
    /// would flatter `latency_ms`).
    #[serde(default)]
    pub ok_latency_ms: Option<Latency>,
    /// The latency curve of every measured request (as `latency_ms`), for the plots; empty in
    /// runs from before it was kept.
    #[serde(default)]
    pub percentiles_ms: Vec<PercentilePoint>,
    pub errors: BTreeMap<String, u64>,
    pub status_5xx: u64,
}

impl OpReport {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One `run`'s results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    /// A name for this run in a profile (e.g. `scan-storm@1000/s`).
    pub label: String,
    pub base_url: String,
    pub started_at: String,
    /// `closed-loop` (each virtual user waits for its answer, then thinks) or `fixed-rate`.
    pub mode: String,
    /// Requests per second scheduled, for `fixed-rate`; latencies then count from each request's
    /// scheduled start, so queueing behind a slow answer is not hidden.
    pub rate_per_s: Option<f64>,
    pub vus: u32,
    /// Virtual users per role and the distinct user accounts behind them.
    pub vus_by_role: BTreeMap<String, u32>,
    pub users_by_role: BTreeMap<String, u32>,
    pub warmup_seconds: u64,
    pub window_seconds: f64,
    pub think_scale: f64,
    pub operations: Vec<OpReport>,
    pub total: OpReport,
    /// The dashboard's `freshness_seconds` as the admins saw it (stats consumer lag), in ms.
    pub dashboard_freshness_ms: Option<Latency>,
    /// CPU the load generator itself used, in cores (CPU seconds over wall seconds of the run).
    #[serde(default)]
    pub generator_cpu_cores: Option<f64>,
    /// Rows Postgres wrote and CPU each process used inside the measured window (with
    /// `--database-url`; the processes must run on this machine).
    #[serde(default)]
    pub cost: Option<crate::probe::Cost>,
    pub notes: Vec<String>,
}

fn cell(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}"))
        .unwrap_or_else(|| "-".to_owned())
}

pub fn errors_cell(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "0".to_owned();
    }
    errors
        .iter()
        .map(|(c, n)| format!("{c} {}", count(*n)))
        .collect::<Vec<_>>()
        .join(", ")
}

impl RunReport {
    pub fn op(&self, name: &str) -> Option<&OpReport> {
        self.operations.iter().find(|o| o.op == name)
    }

    /// What a run's cost is divided by: scans answered ok in a scan-storm, else requests.
    pub fn cost_unit(&self) -> (u64, &'static str) {
        if self.scenario == "scan-storm" {
            let scans = ["scan_parent", "scan_child"]
                .iter()
                .filter_map(|op| self.op(op))
                .map(|o| o.ok)
                .sum();
            (scans, "scan")
        } else {
            (self.total.ok, "request")
        }
    }

    /// One line saying what ran.
    pub fn headline(&self) -> String {
        let roles = self
            .vus_by_role
            .iter()
            .map(|(r, v)| {
                format!(
                    "{v} {r}{} ({} accounts)",
                    if *v == 1 { "" } else { "s" },
                    self.users_by_role.get(r).copied().unwrap_or(0)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let mode = match self.rate_per_s {
            Some(r) => format!("fixed rate {r:.0} req/s"),
            None => "closed loop".to_owned(),
        };
        format!(
            "`{}`: {} VUs ({roles}), {mode}, {:.0} s measured after {} s warm-up{}",
            self.label,
            self.vus,
            self.window_seconds,
            self.warmup_seconds,
            if self.think_scale != 1.0 {
                format!(", think times × {}", self.think_scale)
            } else {
                String::new()
            }
        )
    }

    /// The per-operation markdown table.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| operation | requests | ok | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors (by code) |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
        );
        for o in self.operations.iter().chain(std::iter::once(&self.total)) {
            let l = o.latency_ms.as_ref();
            let name = if std::ptr::eq(o, &self.total) {
                "**all**".to_owned()
            } else {
                o.op.clone()
            };
            out.push_str(&format!(
                "| {name} | {} | {} | {:.1} | {} | {} | {} | {} | {} | {} |\n",
                count(o.count),
                count(o.ok),
                o.throughput_per_s,
                cell(l.map(|l| l.p50)),
                cell(l.map(|l| l.p90)),
                cell(l.map(|l| l.p99)),
                cell(l.map(|l| l.p99_9)),
                cell(l.map(|l| l.max)),
                errors_cell(&o.errors),
            ));
        }
        out
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("{}\n\n{}", self.headline(), self.markdown_table());
        if let Some(f) = &self.dashboard_freshness_ms {
            out.push_str(&format!(
                "\nDashboard freshness (stats consumer lag) seen by the admins: p50 {:.0} ms, \
                 p99 {:.0} ms, max {:.0} ms.\n",
                f.p50, f.p99, f.max
            ));
        }
        if let Some(c) = self.generator_cpu_cores {
            out.push_str(&format!("\nThe load generator used {c:.2} cores.\n"));
        }
        if let Some(cost) = &self.cost {
            let (per, what) = self.cost_unit();
            out.push_str(&cost.markdown(per, what));
        }
        for n in &self.notes {
            out.push_str(&format!("\n- {n}"));
        }
        if !self.notes.is_empty() {
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(1_234_567), "1,234,567");
    }

    #[test]
    fn table_reads_in_milliseconds() {
        let mut h = latency_histogram().unwrap();
        for us in [1_000u64, 2_000, 3_000, 4_000] {
            h.record(us).unwrap();
        }
        let t = latency_table("ScanChild", &h);
        assert!(t.contains("p99.9"), "{t}");
        assert!(t.contains("4.00"), "{t}");
        assert!(t.contains("2.00"), "{t}");
    }

    #[test]
    fn op_reports_and_markdown() {
        let mut s = OpStats::new().unwrap();
        for us in [1_000u64, 2_000, 3_000, 4_000] {
            s.hist.record(us).unwrap();
        }
        s.ok = 3;
        s.errors.insert("parent_full".into(), 1);
        let r = s.report("scan_child", 2.0);
        assert_eq!(r.count, 4);
        assert_eq!(r.throughput_per_s, 2.0);
        assert!((r.latency_ms.as_ref().unwrap().max - 4.0).abs() < 0.01);
        let run = RunReport {
            scenario: "scan-storm".into(),
            label: "scan-storm".into(),
            base_url: "http://x".into(),
            started_at: "now".into(),
            mode: "closed-loop".into(),
            rate_per_s: None,
            vus: 1,
            vus_by_role: BTreeMap::from([("dispatcher".into(), 1)]),
            users_by_role: BTreeMap::from([("dispatcher".into(), 1)]),
            warmup_seconds: 0,
            window_seconds: 2.0,
            think_scale: 1.0,
            operations: vec![r.clone()],
            total: r,
            dashboard_freshness_ms: None,
            generator_cpu_cores: None,
            cost: None,
            notes: vec![],
        };
        let md = run.markdown();
        assert!(md.contains("| scan_child | 4 | 3 | 2.0 |"), "{md}");
        assert!(md.contains("parent_full 1"), "{md}");
        let back: RunReport = serde_json::from_str(&serde_json::to_string(&run).unwrap()).unwrap();
        assert_eq!(back.operations[0].count, 4);
        assert_eq!(
            back.operations[0].percentiles_ms,
            run.operations[0].percentiles_ms
        );
    }

    #[test]
    fn the_curve_runs_from_the_minimum_through_the_nines_to_the_maximum() {
        let mut h = latency_histogram().unwrap();
        // 1 ms … 1,000 ms, one request each: the p-th percentile is about p × 10 ms.
        for ms in 1..=1000u64 {
            h.record(ms * 1000).unwrap();
        }
        let curve = percentile_curve(&h);
        let at = |p: f64| curve.iter().find(|c| c.percentile == p).unwrap().ms;
        assert_eq!(
            curve.iter().map(|c| c.percentile).collect::<Vec<_>>(),
            CURVE_PERCENTILES.to_vec()
        );
        assert!((at(0.0) - 1.0).abs() < 0.01, "{curve:?}");
        assert!((at(50.0) - 500.0).abs() < 1.0, "{curve:?}");
        assert!((at(90.0) - 900.0).abs() < 1.0, "{curve:?}");
        assert!((at(99.0) - 990.0).abs() < 1.0, "{curve:?}");
        assert!((at(100.0) - 1000.0).abs() < 1.0, "{curve:?}");
        assert!(
            curve.windows(2).all(|w| w[0].ms <= w[1].ms),
            "a percentile curve never falls: {curve:?}"
        );
        assert!(percentile_curve(&latency_histogram().unwrap()).is_empty());
    }

    #[test]
    fn runs_from_before_the_curve_still_parse() {
        let old = r#"{"op":"lookup","count":1,"ok":1,"throughput_per_s":1.0,"ok_per_s":1.0,
            "latency_ms":null,"errors":{},"status_5xx":0}"#;
        let o: OpReport = serde_json::from_str(old).unwrap();
        assert!(o.percentiles_ms.is_empty());
    }
}
