//! HdrHistogram's percentile-distribution text format (`.hgrm`): what Java's
//! `outputPercentileDistribution` and wrk2 print, and what HdrHistogram's plotter and
//! `portico-load plot` read.
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.044 0.000000000000          1           1.00
//!        …
//!       12.345 1.000000000000      10000
//! #[Mean    =        1.234, StdDeviation   =        0.567]
//! #[Max     =       12.345, Total count    =        10000]
//! #[Buckets =           20, SubBuckets     =         2048]
//! ```

use std::fmt::Write;

use hdrhistogram::Histogram;

/// Five quantile ticks per half distance to 100%, as Java's default.
const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// One row of the distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub value: f64,
    /// 0.0 ..= 1.0
    pub quantile: f64,
    pub total_count: u64,
}

/// The distribution of `histogram` with every value divided by `scale` (1000 turns
/// recorded microseconds into milliseconds).
pub fn write(histogram: &Histogram<u64>, scale: f64) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let mut total = 0u64;
    for step in histogram.iter_quantiles(TICKS_PER_HALF_DISTANCE) {
        total += step.count_since_last_iteration();
        let value = step.value_iterated_to() as f64 / scale;
        let q = step.quantile_iterated_to();
        if q < 1.0 {
            let _ = writeln!(
                out,
                "{value:12.3} {q:2.12} {total:10} {:14.2}",
                1.0 / (1.0 - q)
            );
        } else {
            let _ = writeln!(out, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let (mean, stdev, max) = if histogram.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (
            histogram.mean() / scale,
            histogram.stdev() / scale,
            histogram.max() as f64 / scale,
        )
    };
    let _ = writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    );
    let _ = writeln!(
        out,
        "#[Max     = {max:12.3}, Total count    = {:12}]",
        histogram.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        histogram.buckets(),
        sub_buckets(histogram.sigfig())
    );
    out
}

/// HdrHistogram's sub-bucket count for `sigfig` significant digits: the power of two
/// at or above 2·10^sigfig.
fn sub_buckets(sigfig: u8) -> u64 {
    (2 * 10u64.pow(u32::from(sigfig))).next_power_of_two()
}

/// Reads the rows of a `.hgrm` text; comment (`#`) and header lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("Value") {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let bad = || format!("line {}: not a percentile row: {line:?}", i + 1);
        if !(3..=4).contains(&fields.len()) {
            return Err(bad());
        }
        let value: f64 = fields[0].parse().map_err(|_| bad())?;
        let quantile: f64 = fields[1].parse().map_err(|_| bad())?;
        let total_count: u64 = fields[2].parse().map_err(|_| bad())?;
        if !value.is_finite() || !(0.0..=1.0).contains(&quantile) {
            return Err(bad());
        }
        rows.push(Row {
            value,
            quantile,
            total_count,
        });
    }
    if rows.is_empty() {
        return Err("no percentile rows (is it an .hgrm file?)".into());
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let mut h = Histogram::<u64>::new(3).unwrap();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = write(&h, 1000.0);
        assert!(text.starts_with("       Value     Percentile TotalCount 1/(1-Percentile)\n\n"));
        // Max is the highest value equivalent to 10 ms at three significant digits.
        assert!(text.contains("#[Max     =       10.00"), "{text}");
        assert!(text.contains(", Total count    =         1000]\n"));
        assert!(text.contains("#[Buckets =           "), "{text}");
        assert!(text.contains("SubBuckets     =         2048]"));
        let rows = parse(&text).unwrap();
        let first = rows[0];
        assert_eq!(
            (first.value, first.quantile, first.total_count),
            (0.01, 0.0, 1)
        );
        let last = rows[rows.len() - 1];
        assert_eq!((last.quantile, last.total_count), (1.0, 1000));
        assert!((last.value - 10.0).abs() < 0.01, "{last:?}");
        let median = rows.iter().find(|r| r.quantile >= 0.5).unwrap();
        assert!((median.value - 5.0).abs() < 0.01, "{median:?}");
        // Every row but the last carries the 1/(1-p) column.
        let data: Vec<&str> = text.lines().filter(|l| l.starts_with(' ')).collect();
        assert!(data[..data.len() - 1]
            .iter()
            .all(|l| l.split_whitespace().count() == 4));
    }

    #[test]
    fn reads_wrk2_output_rows_and_rejects_junk() {
        let wrk2 = "       Value   Percentile   TotalCount 1/(1-Percentile)\n\n\
                    \x20      0.921     0.000000            1         1.00\n\
                    \x20     15.551     1.000000         6000          inf\n\
                    #[Mean    =        1.858, StdDeviation   =        1.101]\n";
        let rows = parse(wrk2).unwrap();
        assert_eq!(rows.len(), 2);
        assert!(parse("hello world").is_err());
        assert!(parse("").is_err());
    }
}
