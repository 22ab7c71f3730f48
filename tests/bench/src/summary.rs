//! `summary`: the JSON of several `run`s plus pgbench's TPS → one JSON document (kept in
//! `benchmarks/`) and a markdown section (appended to `BENCHMARKS.md`), with the SPEC §6 targets
//! checked against what was measured.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use crate::report::{count, RunReport};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// JSON files written by `run --json`.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// pgbench's TPS on the same machine and Postgres (TPC-B).
    #[arg(long)]
    pgbench_tps: Option<f64>,
    /// How pgbench ran (for the report).
    #[arg(long, default_value = "")]
    pgbench: String,
    /// `key=value` lines for the report's head (date, commit, nproc, command, …), in order.
    #[arg(long = "meta")]
    meta: Vec<String>,
    /// Title of the markdown section.
    #[arg(long, default_value = "Benchmark run")]
    title: String,
    /// The previous run's summary JSON (in `benchmarks/`): the report shows what changed.
    #[arg(long)]
    previous: Option<PathBuf>,
    /// Writes SVG plots here (created when missing): each run's latency percentile curves, the
    /// throughput against virtual users and, with `--previous`, this run against that one. The
    /// markdown shows them by this path as given, so give it relative to where the markdown goes.
    #[arg(long)]
    plots_dir: Option<PathBuf>,
    #[arg(long)]
    json_out: Option<PathBuf>,
    #[arg(long)]
    markdown_out: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Target {
    target: String,
    measured: String,
    met: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Summary {
    meta: serde_json::Map<String, Value>,
    pgbench_tps: Option<f64>,
    pgbench: String,
    /// Closed-loop scan-storm scans per second (parents and children) / pgbench TPS.
    scan_to_pgbench_ratio: Option<f64>,
    targets: Vec<Target>,
    runs: Vec<RunReport>,
}

/// Successful scans (parents and children) per second.
pub(crate) fn scans_per_s(r: &RunReport) -> f64 {
    ["scan_parent", "scan_child"]
        .iter()
        .filter_map(|op| r.op(op))
        .map(|o| o.ok_per_s)
        .sum()
}

fn p99(r: &RunReport, op: &str) -> Option<f64> {
    r.op(op).and_then(|o| o.latency_ms.as_ref()).map(|l| l.p99)
}

fn targets(runs: &[RunReport]) -> Vec<Target> {
    let mut out = Vec::new();
    let storm_closed = runs
        .iter()
        .filter(|r| r.scenario == "scan-storm" && r.rate_per_s.is_none())
        .max_by(|a, b| scans_per_s(a).total_cmp(&scans_per_s(b)));
    let storm_rate = runs
        .iter()
        .filter(|r| r.scenario == "scan-storm" && r.rate_per_s.is_some())
        .min_by(|a, b| {
            let d = |r: &RunReport| (r.rate_per_s.unwrap_or(0.0) - 1000.0).abs();
            d(a).total_cmp(&d(b))
        });
    match storm_rate {
        Some(r) => {
            let rate = r.rate_per_s.unwrap_or(0.0);
            let p = p99(r, "scan_child");
            let achieved = scans_per_s(r);
            out.push(Target {
                target: "child scan p99 ≤ 25 ms while sustaining 1,000 scans/s".into(),
                measured: format!(
                    "p99 {} ms at {rate:.0} scans/s scheduled, {achieved:.0}/s answered ok (`{}`)",
                    p.map(|p| format!("{p:.1}")).unwrap_or_else(|| "-".into()),
                    r.label
                ),
                met: p.map(|p| p <= 25.0 && rate >= 1000.0 && achieved >= 0.95 * rate),
            });
        }
        None => out.push(Target {
            target: "child scan p99 ≤ 25 ms while sustaining 1,000 scans/s".into(),
            measured: "not run (no fixed-rate scan-storm)".into(),
            met: None,
        }),
    }
    if let Some(r) = storm_closed {
        let s = scans_per_s(r);
        out.push(Target {
            target: "scan-storm knee ≥ 2,000 scans/s".into(),
            measured: format!(
                "{s:.0} scans/s at saturation (closed loop, {} VUs, child p99 {} ms; `{}`)",
                r.vus,
                p99(r, "scan_child")
                    .map(|p| format!("{p:.1}"))
                    .unwrap_or_else(|| "-".into()),
                r.label
            ),
            met: Some(s >= 2000.0),
        });
    }
    if let Some(r) = runs.iter().find(|r| r.scenario == "lookup") {
        let p = p99(r, "lookup");
        out.push(Target {
            target: "bag lookup p99 ≤ 10 ms".into(),
            measured: format!(
                "p99 {} ms at {:.0} lookups/s ({} VUs)",
                p.map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into()),
                r.op("lookup").map(|o| o.ok_per_s).unwrap_or(0.0),
                r.vus
            ),
            met: p.map(|p| p <= 10.0),
        });
    }
    // The mixed run with the most users carries the 1,000-user targets; one with at most 50
    // (the old system's own scale) the every-operation target.
    let mixed_big = runs
        .iter()
        .filter(|r| r.scenario == "mixed" && r.vus > 50)
        .max_by_key(|r| r.vus);
    if let Some(r) = runs
        .iter()
        .filter(|r| r.scenario == "mixed" && r.vus <= 50)
        .max_by_key(|r| r.vus)
    {
        let worst = r
            .operations
            .iter()
            .filter_map(|o| o.latency_ms.as_ref().map(|l| (o.op.as_str(), l.p99)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        out.push(Target {
            target: "every operation's p99 ≤ 50 ms at the old system's scale (50 users, mixed)"
                .into(),
            measured: match worst {
                Some((op, p)) => format!(
                    "highest p99 {p:.1} ms ({op}), {} errors, {} VUs (`{}`)",
                    count(r.total.error_count()),
                    r.vus,
                    r.label
                ),
                None => "no operation answered".into(),
            },
            met: worst.map(|(_, p)| p <= 50.0 && r.total.error_count() == 0),
        });
    }
    if let Some(r) = mixed_big {
        let p = p99(r, "bill_attach");
        out.push(Target {
            target: "bill attach p99 ≤ 100 ms".into(),
            measured: format!(
                "p99 {} ms under the mixed load ({} VUs)",
                p.map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into()),
                r.vus
            ),
            met: p.map(|p| p <= 100.0),
        });
        let p = p99(r, "dashboard");
        out.push(Target {
            target: "dashboard p99 ≤ 10 ms".into(),
            measured: format!(
                "p99 {} ms under the mixed load ({} VUs)",
                p.map(|p| format!("{p:.2}")).unwrap_or_else(|| "-".into()),
                r.vus
            ),
            met: p.map(|p| p <= 10.0),
        });
        let errors = r.total.error_count();
        out.push(Target {
            target: "zero errors at 1,000 concurrent users".into(),
            measured: format!(
                "{} errors in {} requests, {} VUs over {} accounts (mixed)",
                count(errors),
                count(r.total.count),
                r.vus,
                r.users_by_role.values().sum::<u32>()
            ),
            met: Some(errors == 0 && r.vus >= 1000),
        });
        if let Some(f) = &r.dashboard_freshness_ms {
            out.push(Target {
                target: "the dashboard shows a scan within 1 s (consumer lag)".into(),
                measured: format!(
                    "freshness p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms under the mixed load",
                    f.p50, f.p99, f.max
                ),
                met: Some(f.p99 <= 1000.0),
            });
        }
    }
    out
}

/// The figures a run is compared by: ok requests (or scans) per second, each operation's p99,
/// rows written and CPU (ms, the services and Postgres) per scan or request.
pub(crate) fn figures(r: &RunReport) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    let (per, what) = r.cost_unit();
    if r.scenario == "scan-storm" {
        out.push(("scans/s ok".to_owned(), scans_per_s(r)));
    } else {
        out.push(("requests/s ok".to_owned(), r.total.ok_per_s));
    }
    for o in &r.operations {
        if let Some(l) = &o.latency_ms {
            out.push((format!("{} p99 ms", o.op), l.p99));
        }
    }
    if let Some(c) = r.cost.as_ref().filter(|_| per > 0) {
        out.push((format!("rows written per {what}"), c.rows_per(per, what)));
        let cpu: f64 = c
            .cpu_seconds
            .iter()
            .filter(|(g, _)| g.as_str() != "load generator")
            .map(|(_, s)| s)
            .sum();
        out.push((format!("CPU ms per {what}"), cpu * 1000.0 / per as f64));
    }
    out
}

/// The runs of a summary's JSON (those that parse).
fn summary_runs(summary: &Value) -> Vec<RunReport> {
    summary["runs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The figures of `runs` that the previous summary's runs also have (by run label and figure):
/// (run, figure, previous, this run).
pub(crate) fn compared(
    before: &[RunReport],
    runs: &[RunReport],
) -> Vec<(String, String, f64, f64)> {
    let mut rows = Vec::new();
    for r in runs {
        let Some(old) = before.iter().find(|o| o.label == r.label) else {
            continue;
        };
        let old_figures = figures(old);
        for (name, b) in figures(r) {
            if let Some((_, a)) = old_figures.iter().find(|(n, _)| *n == name) {
                rows.push((r.label.clone(), name, *a, b));
            }
        }
    }
    rows
}

/// Markdown: this run's figures against the previous summary's, run by run (by label).
fn against_previous(previous: &Value, runs: &[RunReport], ratio: Option<f64>) -> String {
    let before = summary_runs(previous);
    let title = previous["meta"]["commit"].as_str().unwrap_or("?");
    let mut md = format!(
        "\n### Against the previous run ({title})\n\n| run | figure | previous | this run | change |\n|---|---|---:|---:|---:|\n"
    );
    let row = |run: &str, figure: &str, a: f64, b: f64| {
        let change = if a.abs() > f64::EPSILON {
            format!("{:+.0} %", (b - a) / a * 100.0)
        } else {
            "-".to_owned()
        };
        let f = |x: f64| {
            if x.abs() < 10.0 {
                format!("{x:.3}")
            } else {
                format!("{x:.1}")
            }
        };
        format!("| {run} | {figure} | {} | {} | {change} |\n", f(a), f(b))
    };
    if let (Some(a), Some(b)) = (previous["scan_to_pgbench_ratio"].as_f64(), ratio) {
        md.push_str(&row("-", "scans/s ÷ pgbench TPS", a, b));
    }
    for (run, figure, a, b) in compared(&before, runs) {
        md.push_str(&row(&run, &figure, a, b));
    }
    md
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for p in &args.runs {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        runs.push(
            serde_json::from_slice::<RunReport>(&bytes)
                .with_context(|| format!("{} is not a run's JSON", p.display()))?,
        );
    }
    let mut meta = serde_json::Map::new();
    for kv in &args.meta {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--meta {kv:?} is not key=value"))?;
        meta.insert(k.to_owned(), Value::String(v.to_owned()));
    }
    let ratio = match (
        args.pgbench_tps,
        runs.iter()
            .filter(|r| r.scenario == "scan-storm" && r.rate_per_s.is_none())
            .map(scans_per_s)
            .max_by(f64::total_cmp),
    ) {
        (Some(tps), Some(s)) if tps > 0.0 => Some((s / tps * 1000.0).round() / 1000.0),
        _ => None,
    };
    let summary = Summary {
        meta,
        pgbench_tps: args.pgbench_tps,
        pgbench: args.pgbench.clone(),
        scan_to_pgbench_ratio: ratio,
        targets: targets(&runs),
        runs,
    };

    let mut md = format!("## {}\n\n", args.title);
    for (k, v) in &summary.meta {
        let v = v.as_str().unwrap_or("");
        if k == "command" {
            md.push_str(&format!("- {k}: `{v}`\n"));
        } else {
            md.push_str(&format!("- {k}: {v}\n"));
        }
    }
    if let Some(tps) = summary.pgbench_tps {
        md.push_str(&format!("- pgbench: {tps:.0} TPS ({})\n", summary.pgbench));
    }
    if let Some(r) = ratio {
        md.push_str(&format!(
            "- **scan throughput / pgbench TPS = {r:.3}** (closed-loop scan-storm scans per second \
             over pgbench TPC-B transactions per second on the same machine)\n"
        ));
    }
    md.push_str("\n### Targets (SPEC §6)\n\n| target | measured | met |\n|---|---|---|\n");
    for t in &summary.targets {
        md.push_str(&format!(
            "| {} | {} | {} |\n",
            t.target,
            t.measured,
            match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "-",
            }
        ));
    }
    let previous = match &args.previous {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            let previous: Value = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not a summary's JSON", p.display()))?;
            md.push_str(&against_previous(&previous, &summary.runs, ratio));
            Some(previous)
        }
        None => None,
    };
    if let Some(dir) = &args.plots_dir {
        let before = previous.as_ref().map(summary_runs);
        let commit = previous
            .as_ref()
            .and_then(|p| p["meta"]["commit"].as_str())
            .unwrap_or("?");
        let plots =
            crate::plots::write_all(dir, &summary.runs, before.as_deref().map(|b| (b, commit)))
                .with_context(|| format!("writing the plots into {}", dir.display()))?;
        if !plots.is_empty() {
            md.push_str("\n### Plots\n\n");
            let base = dir.display().to_string();
            let base = base.trim_end_matches('/');
            for p in plots {
                md.push_str(&format!("![{}]({base}/{})\n\n", p.title, p.file));
            }
        }
    }
    for r in &summary.runs {
        md.push_str(&format!("\n### {}\n\n{}", r.label, r.markdown()));
    }
    print!("{md}");
    if let Some(p) = &args.json_out {
        std::fs::write(p, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    if let Some(p) = &args.markdown_out {
        std::fs::write(p, md.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}
