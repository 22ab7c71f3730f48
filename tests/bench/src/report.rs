//! Number formatting and latency tables.

use hdrhistogram::Histogram;

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
}
