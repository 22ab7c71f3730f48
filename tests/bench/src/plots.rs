//! SVG plots of a summary's runs (`summary --plots-dir`): each run's latency percentile curves
//! per operation, throughput against virtual users, and this run against the previous one.
//!
//! plotters' SVG backend writes text as `<text>` elements and lays it out with its built-in
//! estimate, so no font is read from the system (the `ttf` feature stays off).

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::{count, RunReport};
use crate::summary::{compared, figures};

const FONT: &str = "sans-serif";

/// The right edge of a latency plot's x axis, where the maximum is drawn.
const X_MAX: f64 = 1e5;

/// One SVG written: what it shows and its file name in the plots directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub title: String,
    pub file: String,
}

/// Where a percentile sits on a latency plot's x axis: 1 / (1 − p), so that every nine gets the
/// same width on a log scale (0 % at 1, 90 % at 10, 99 % at 100, …), as in HdrHistogram's plots;
/// the maximum at the right edge.
pub fn percentile_x(percentile: f64) -> f64 {
    if percentile >= 100.0 {
        X_MAX
    } else {
        (1.0 / (1.0 - percentile / 100.0)).min(X_MAX)
    }
}

/// The tick label of an x position on a latency plot (the inverse of [`percentile_x`]).
fn percentile_label(x: f64) -> String {
    if x >= X_MAX * 0.999 {
        return "max".to_owned();
    }
    let p = format!("{:.4}", 100.0 * (1.0 - 1.0 / x));
    let p = p.trim_end_matches('0').trim_end_matches('.');
    format!("{p}%")
}

/// A run's label as a file name: `scan-storm@1000` → `scan-storm-1000`.
fn slug(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A figure as the comparison table writes it.
fn num(x: f64) -> String {
    if x.abs() < 10.0 {
        format!("{x:.3}")
    } else {
        format!("{x:.1}")
    }
}

/// Writes the plots into `dir` (created when missing) and says which: a latency plot per run
/// that kept its percentile curves, throughput against virtual users when there are runs, and the
/// comparison with `previous` (its runs and its commit) when a run's figures can be matched.
pub fn write_all(
    dir: &Path,
    runs: &[RunReport],
    previous: Option<(&[RunReport], &str)>,
) -> anyhow::Result<Vec<Plot>> {
    std::fs::create_dir_all(dir)?;
    let mut plots = Vec::new();
    let mut used = Vec::new();
    for r in runs {
        if r.operations.iter().all(|o| o.percentiles_ms.is_empty()) {
            continue;
        }
        let mut name = slug(&r.label);
        if used.contains(&name) {
            name = format!("{name}-{}", used.len());
        }
        used.push(name.clone());
        let file = format!("latency-{name}.svg");
        latency_curves(&dir.join(&file), r)?;
        plots.push(Plot {
            title: format!("latency by percentile, `{}`", r.label),
            file,
        });
    }
    if !runs.is_empty() {
        let file = "throughput.svg".to_owned();
        throughput(&dir.join(&file), runs)?;
        plots.push(Plot {
            title: "throughput against virtual users".to_owned(),
            file,
        });
    }
    if let Some((before, commit)) = previous {
        let rows: Vec<(String, f64, f64)> = compared(before, runs)
            .into_iter()
            .filter(|(_, _, a, _)| a.abs() > f64::EPSILON)
            .map(|(run, figure, a, b)| (format!("{run} · {figure}"), a, b))
            .collect();
        if !rows.is_empty() {
            let file = "against-previous.svg".to_owned();
            against_previous(&dir.join(&file), &rows, commit)?;
            plots.push(Plot {
                title: format!("this run against the previous one ({commit})"),
                file,
            });
        }
    }
    Ok(plots)
}

/// (a) One line per operation through its latency percentiles, percentiles on a log scale.
fn latency_curves(path: &Path, run: &RunReport) -> anyhow::Result<()> {
    let ops: Vec<_> = run
        .operations
        .iter()
        .filter(|o| !o.percentiles_ms.is_empty())
        .collect();
    let y_max = ops
        .iter()
        .flat_map(|o| o.percentiles_ms.iter().map(|p| p.ms))
        .fold(0.001, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: latency by percentile", run.label), (FONT, 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d((1f64..X_MAX).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("percentile (every request measured, successes and errors)")
        .y_desc("latency (ms)")
        .x_label_formatter(&|x| percentile_label(*x))
        .draw()?;
    for (i, o) in ops.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = o
            .percentiles_ms
            .iter()
            .map(|p| (percentile_x(p.percentile), p.ms))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(format!("{} ({} requests)", o.op, count(o.count)))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(
            points
                .into_iter()
                .map(|p| Circle::new(p, 3, color.filled())),
        )?;
    }
    legend_and_present(&mut chart, &root)
}

/// (b) Each run's answered-ok rate (scans in a scan-storm, requests otherwise) against its
/// virtual users, one line per scenario and mode.
fn throughput(path: &Path, runs: &[RunReport]) -> anyhow::Result<()> {
    let mut groups: BTreeMap<String, Vec<(f64, f64, String)>> = BTreeMap::new();
    for r in runs {
        let rate = figures(r).first().map(|(_, v)| *v).unwrap_or(0.0);
        let mode = match r.rate_per_s {
            Some(s) => format!("fixed rate {s:.0}/s"),
            None => "closed loop".to_owned(),
        };
        groups
            .entry(format!("{}, {mode}", r.scenario))
            .or_default()
            .push((f64::from(r.vus), rate, r.label.clone()));
    }
    let x_max = groups.values().flatten().map(|p| p.0).fold(1.0, f64::max) * 1.2;
    let y_max = groups.values().flatten().map(|p| p.1).fold(1.0, f64::max) * 1.2;
    let root = SVGBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Throughput against virtual users", (FONT, 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("virtual users")
        .y_desc("answered ok per second (scans in scan-storm, else requests)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (i, (name, mut points)) in groups.into_iter().enumerate() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let color = Palette99::pick(i).to_rgba();
        let xy: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(xy.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(points.iter().map(|(x, y, label)| {
            Text::new(
                format!("{label}: {y:.0}/s"),
                (*x, *y),
                TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Left, VPos::Bottom)),
            )
        }))?;
    }
    legend_and_present(&mut chart, &root)
}

/// (c) The key figures side by side, each as a share of the previous run's (the previous run's
/// grey bar is 100 %, this run's blue bar below it), with both values written out on the right.
fn against_previous(path: &Path, rows: &[(String, f64, f64)], commit: &str) -> anyhow::Result<()> {
    let n = rows.len();
    let x_max = rows
        .iter()
        .map(|(_, a, b)| b / a * 100.0)
        .fold(110.0, f64::max)
        * 1.1;
    let height = (110 + 30 * n) as u32;
    let root = SVGBackend::new(path, (1100, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("This run (blue) against the previous one ({commit}, grey = 100 %)"),
            (FONT, 20),
        )
        .margin(14)
        .x_label_area_size(44)
        .set_label_area_size(LabelAreaPosition::Left, 330)
        .set_label_area_size(LabelAreaPosition::Right, 230)
        .build_cartesian_2d(0f64..x_max, 0f64..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("% of the previous run's figure")
        .draw()?;
    let previous = RGBColor(170, 170, 170);
    let this = RGBColor(31, 119, 180);
    // The first row at the top.
    let row_y = |i: usize| (n - 1 - i) as f64;
    chart.draw_series(rows.iter().enumerate().map(|(i, _)| {
        let y = row_y(i);
        Rectangle::new([(0.0, y + 0.5), (100.0, y + 0.85)], previous.filled())
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, a, b))| {
        let y = row_y(i);
        Rectangle::new([(0.0, y + 0.15), (b / a * 100.0, y + 0.5)], this.filled())
    }))?;
    chart.draw_series(LineSeries::new(
        [(100.0, 0.0), (100.0, n as f64)],
        BLACK.stroke_width(1),
    ))?;
    let left = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    let right = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for (i, (name, a, b)) in rows.iter().enumerate() {
        let (x0, y) = chart.backend_coord(&(0.0, row_y(i) + 0.5));
        let (x1, _) = chart.backend_coord(&(x_max, row_y(i) + 0.5));
        root.draw(&Text::new(name.clone(), (x0 - 8, y), left.clone()))?;
        root.draw(&Text::new(
            format!("{} → {} ({:+.0} %)", num(*a), num(*b), (b - a) / a * 100.0),
            (x1 + 8, y),
            right.clone(),
        ))?;
    }
    root.present()?;
    Ok(())
}

/// The series' legend (upper left, on a light box), then the file written.
fn legend_and_present<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::report::{OpStats, RunReport};

    fn run(label: &str, scenario: &str, vus: u32, ms: &[u64]) -> RunReport {
        let mut s = OpStats::new().unwrap();
        for m in ms {
            s.hist.record(m * 1000).unwrap();
        }
        s.ok = ms.len() as u64;
        let op = s.report("lookup", 1.0);
        RunReport {
            scenario: scenario.into(),
            label: label.into(),
            base_url: "http://x".into(),
            started_at: "now".into(),
            mode: "closed-loop".into(),
            rate_per_s: None,
            vus,
            vus_by_role: BTreeMap::new(),
            users_by_role: BTreeMap::new(),
            warmup_seconds: 0,
            window_seconds: 1.0,
            think_scale: 1.0,
            operations: vec![op.clone()],
            total: op,
            dashboard_freshness_ms: None,
            generator_cpu_cores: None,
            cost: None,
            notes: vec![],
        }
    }

    #[test]
    fn percentiles_sit_one_decade_per_nine() {
        assert_eq!(percentile_x(0.0), 1.0);
        assert!((percentile_x(90.0) - 10.0).abs() < 1e-9);
        assert!((percentile_x(99.9) - 1000.0).abs() < 1e-6);
        assert_eq!(percentile_x(100.0), X_MAX);
        assert_eq!(percentile_label(1.0), "0%");
        assert_eq!(percentile_label(2.0), "50%");
        assert_eq!(percentile_label(percentile_x(99.9)), "99.9%");
        assert_eq!(percentile_label(X_MAX), "max");
        assert_eq!(slug("scan-storm@1000"), "scan-storm-1000");
    }

    #[test]
    fn a_small_report_gives_svg_plots() {
        let dir = std::env::temp_dir().join(format!("tt-bench-plots-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = [
            run("lookup", "lookup", 8, &[1, 2, 3, 50]),
            run("lookup@1000", "lookup", 4, &[1, 1, 2]),
        ];
        let before = [run("lookup", "lookup", 8, &[1, 2, 2, 2, 9])];
        let plots = write_all(&dir, &now, Some((&before, "abc1234"))).unwrap();
        let files: Vec<&str> = plots.iter().map(|p| p.file.as_str()).collect();
        assert_eq!(
            files,
            [
                "latency-lookup.svg",
                "latency-lookup-1000.svg",
                "throughput.svg",
                "against-previous.svg"
            ]
        );
        for p in &plots {
            let svg = std::fs::read_to_string(dir.join(&p.file)).unwrap();
            assert!(
                svg.trim_start().starts_with("<svg"),
                "{}: {svg:.200}",
                p.file
            );
            assert!(svg.trim_end().ends_with("</svg>"), "{}", p.file);
        }
        let latency = std::fs::read_to_string(dir.join("latency-lookup.svg")).unwrap();
        assert!(
            latency.contains("lookup (4 requests)"),
            "the legend names the operation"
        );
        assert!(
            ["0%", "90%", "99.9%", "max"]
                .iter()
                .all(|t| latency.lines().any(|l| l.trim() == *t)),
            "the x axis reads in percentiles up to the maximum: {latency:.3000}"
        );
        let against = std::fs::read_to_string(dir.join("against-previous.svg")).unwrap();
        assert!(
            against.contains("lookup · lookup p99 ms"),
            "{against:.2000}"
        );
        // Without a previous summary, or with nothing to match, no comparison is drawn.
        let alone = write_all(&dir, &now[1..], Some((&before, "abc1234"))).unwrap();
        assert!(alone.iter().all(|p| p.file != "against-previous.svg"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
