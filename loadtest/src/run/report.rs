//! The results of a run: the text report, the JSON document, and the warnings that say
//! when the numbers cannot be trusted (the tool itself fell behind). Runs over TLS
//! also report how the server was checked and their handshakes.

use serde_json::{json, Value};

use super::options::{Plan, Protocol};
use super::tally::{ErrorKind, Handshakes, Tally};
use super::tls::{TlsClient, TlsVersion, Verify};

/// Handshake-time percentiles (label, quantile).
const HANDSHAKE_PERCENTILES: [(&str, f64); 2] = [("p50", 0.50), ("p99", 0.99)];

/// Latency percentiles reported everywhere (label, quantile).
pub const PERCENTILES: [(&str, f64); 5] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99.9", 0.999),
    ("p99.99", 0.9999),
];

/// A worker thread busier than this over the window may be the bottleneck.
const BUSY_CPU: f64 = 0.90;
/// Idle connections sending later than this at p99 mean the tool's timers fell behind
/// (the timer resolution alone accounts for up to 1 ms).
const LATE_SEND_P99_US: u64 = 2_000;
/// Achieving less than this share of the target rate is reported.
const RATE_SHORTFALL: f64 = 0.99;

/// A finished run, ready to print.
pub struct Report<'a> {
    plan: &'a Plan,
    tally: &'a Tally,
    /// The tool itself could not keep up (its CPU or its timers).
    pub tool_warnings: Vec<String>,
    /// The offered load was not delivered (server too slow or too few connections).
    pub load_warnings: Vec<String>,
}

impl<'a> Report<'a> {
    pub fn new(plan: &'a Plan, tally: &'a Tally) -> Self {
        let mut report = Report {
            plan,
            tally,
            tool_warnings: Vec::new(),
            load_warnings: Vec::new(),
        };
        report.judge();
        report
    }

    fn seconds(&self) -> f64 {
        self.plan.duration.as_secs_f64()
    }

    pub fn achieved_rate(&self) -> f64 {
        self.tally.responses() as f64 / self.seconds()
    }

    fn judge(&mut self) {
        for (i, cpu) in self.tally.cpu.iter().enumerate() {
            let busy = cpu.as_secs_f64() / self.seconds();
            if busy >= BUSY_CPU {
                self.tool_warnings.push(format!(
                    "load thread {i} was {:.0}% busy on its CPU: the tool may be the bottleneck (add threads and --cpus)",
                    busy * 100.0
                ));
            }
        }
        let Some(target) = self.plan.rate else {
            return;
        };
        let lag = &self.tally.send_lag;
        if !lag.is_empty() && lag.value_at_quantile(0.99) > LATE_SEND_P99_US {
            self.tool_warnings.push(format!(
                "the tool sent late on idle connections (p99 {}, max {}): its own timers or CPU fell behind the schedule",
                ms(lag.value_at_quantile(0.99)),
                ms(lag.max())
            ));
        }
        let achieved = self.achieved_rate();
        if achieved < target * RATE_SHORTFALL {
            let scheduled = self.tally.responses() + self.errors() + self.tally.unsent;
            let busy = self.tally.sent_late_busy as f64 / scheduled.max(1) as f64;
            let why = if self.tally.unsent > 0 && busy > 0.01 {
                "requests waited for busy connections: the server (or too few connections, -c) could not keep up"
            } else if self.errors() > 0 {
                "requests failed"
            } else {
                "responses were missing"
            };
            self.load_warnings.push(format!(
                "achieved {achieved:.1} of the {target} req/s target ({:.1}%): {why}",
                achieved / target * 100.0
            ));
        }
    }

    fn errors(&self) -> u64 {
        self.tally.errors.iter().sum()
    }

    pub fn text(&self) -> String {
        let p = self.plan;
        let t = self.tally;
        let mut lines = Vec::new();
        let mode = match p.rate {
            Some(rate) => format!("open loop at {rate} req/s"),
            None => "closed loop".to_string(),
        };
        let cpus = p
            .cpus
            .as_ref()
            .map(|c| {
                let list: Vec<String> = (0..p.threads as usize)
                    .map(|i| c.for_worker(i).to_string())
                    .collect();
                format!(" on cpu {}", list.join(","))
            })
            .unwrap_or_default();
        let new_connection = if p.new_connection {
            " (a new one per request)"
        } else {
            ""
        };
        let (protocol, streams) = match p.protocol {
            Protocol::Http1(_) => (String::new(), String::new()),
            Protocol::Http2 { streams, .. } => (
                format!("HTTP/2 ({}), ", protocol_name(p)),
                format!(" × {}", plural(streams, "stream")),
            ),
        };
        lines.push(format!(
            "portico-load run: {mode}, {protocol}{}{streams}{new_connection}, {}{cpus}, {:.3} s measured after {:.3} s warm-up",
            plural(p.connections, "connection"),
            plural(p.threads, "thread"),
            self.seconds(),
            p.warmup.as_secs_f64()
        ));
        for target in &p.targets {
            lines.push(format!("  url        {}", target.url));
        }
        lines.push(format!(
            "  requests   {} responses, {} errors",
            t.responses(),
            self.errors()
        ));
        let mut rate = format!("  rate       {:.1} req/s achieved", self.achieved_rate());
        if let Some(target) = p.rate {
            rate += &format!(
                " ({:.2}% of the {target} target)",
                self.achieved_rate() / target * 100.0
            );
        }
        lines.push(rate);
        lines.push(format!("  status     {}", status_summary(t)));
        let errors: Vec<String> = ErrorKind::ALL
            .iter()
            .filter(|&&k| k != ErrorKind::Tls || p.tls.is_some())
            .map(|&k| format!("{} {}", k.name(), t.error_count(k)))
            .collect();
        lines.push(format!("  errors     {}", errors.join(", ")));
        let latency: Vec<String> = PERCENTILES
            .iter()
            .map(|&(name, q)| format!("{name} {}", self.percentile(q)))
            .chain([format!("max {}", self.max())])
            .collect();
        lines.push(format!("  latency    {}", latency.join("  ")));
        if p.rate.is_some() {
            lines.push(
                "             (timed from each request's intended send time: coordinated omission corrected)"
                    .to_string(),
            );
            let lag = &t.send_lag;
            let lag = if lag.is_empty() {
                "n/a".to_string()
            } else {
                format!(
                    "p99 {}, max {}",
                    ms(lag.value_at_quantile(0.99)),
                    ms(lag.max())
                )
            };
            lines.push(format!(
                "  schedule   {} sent late behind a busy connection, {} never sent; idle-connection send lag {lag}",
                t.sent_late_busy, t.unsent
            ));
        }
        if let Some(tls) = &p.tls {
            lines.extend(tls_lines(tls, &t.handshakes));
        }
        let busy: Vec<String> = t
            .cpu
            .iter()
            .map(|c| format!("{:.0}%", c.as_secs_f64() / self.seconds() * 100.0))
            .collect();
        lines.push(format!("  load cpu   {} busy per thread", busy.join(", ")));
        for w in &self.load_warnings {
            lines.push(format!("WARNING: {w}"));
        }
        for w in &self.tool_warnings {
            lines.push(format!("WARNING: {w}"));
        }
        lines.join("\n") + "\n"
    }

    fn percentile(&self, q: f64) -> String {
        quantile(&self.tally.latency, q)
    }

    fn max(&self) -> String {
        maximum(&self.tally.latency)
    }

    pub fn json(&self) -> Value {
        let p = self.plan;
        let t = self.tally;
        let h = &t.latency;
        let mut latency = serde_json::Map::new();
        if !h.is_empty() {
            for (name, q) in PERCENTILES {
                latency.insert(name.replace('.', "_"), json!(h.value_at_quantile(q)));
            }
            latency.insert("max".into(), json!(h.max()));
            latency.insert("min".into(), json!(h.min()));
            latency.insert("mean".into(), json!(h.mean()));
            latency.insert("stdev".into(), json!(h.stdev()));
        }
        let statuses: serde_json::Map<String, Value> = t
            .statuses
            .iter()
            .map(|(code, n)| (code.to_string(), json!(n)))
            .collect();
        let errors: serde_json::Map<String, Value> = ErrorKind::ALL
            .iter()
            .map(|&k| (k.name().to_string(), json!(t.error_count(k))))
            .collect();
        let busy: Vec<f64> = t
            .cpu
            .iter()
            .map(|c| c.as_secs_f64() / self.seconds())
            .collect();
        let mut doc = json!({
            "mode": if p.rate.is_some() { "open" } else { "closed" },
            "urls": p.targets.iter().map(|t| t.url.clone()).collect::<Vec<_>>(),
            "protocol": protocol_name(p),
            "connections": p.connections,
            "streams": p.streams(),
            "threads": p.threads,
            "duration_s": self.seconds(),
            "warmup_s": p.warmup.as_secs_f64(),
            "target_rate": p.rate,
            "requests": t.responses(),
            "achieved_rate": self.achieved_rate(),
            "statuses": statuses,
            "errors": errors,
            "latency_us": latency,
            "load_tool": {
                "cpu_busy": busy,
                "kept_up": self.tool_warnings.is_empty(),
                "warnings": self.tool_warnings,
            },
            "load_warnings": self.load_warnings,
        });
        doc["new_connection"] = json!(p.new_connection);
        if let Some(tls) = &p.tls {
            doc["tls"] = tls_json(tls, &t.handshakes);
        }
        if p.rate.is_some() {
            let lag = &t.send_lag;
            doc["schedule"] = json!({
                "sent_late_busy": t.sent_late_busy,
                "unsent": t.unsent,
                "send_lag_p99_us": (!lag.is_empty()).then(|| lag.value_at_quantile(0.99)),
                "send_lag_max_us": (!lag.is_empty()).then(|| lag.max()),
            });
        }
        doc
    }
}

/// The report's TLS lines:
///
/// ```text
///   tls        TLS 1.3, SNI api.test, certificate verified against --cacert ca.pem
///   handshakes 2000: 8 full, 1992 resumed | p50 0.412 ms  p99 1.032 ms  max 3.100 ms
/// ```
fn tls_lines(tls: &TlsClient, h: &Handshakes) -> Vec<String> {
    let verify = match &tls.verify {
        Verify::CaFile(path) => {
            format!("certificate verified against --cacert {}", path.display())
        }
        Verify::System => "certificate verified against the system roots".into(),
        Verify::Insecure => "certificate not verified (--insecure)".into(),
    };
    let resumption = if tls.resume { "" } else { " (resumption off)" };
    let times: Vec<String> = HANDSHAKE_PERCENTILES
        .iter()
        .map(|&(name, q)| format!("{name} {}", quantile(&h.latency, q)))
        .chain([format!("max {}", maximum(&h.latency))])
        .collect();
    vec![
        format!(
            "  tls        {}, {}, {verify}",
            versions(tls, h),
            tls.describe_name()
        ),
        format!(
            "  handshakes {}: {} full, {} resumed{resumption} | {}",
            h.count(),
            h.count() - h.resumed,
            h.resumed,
            times.join("  ")
        ),
    ]
}

/// The protocol versions the handshakes used (or the pinned one, before any).
fn versions(tls: &TlsClient, h: &Handshakes) -> String {
    let (count, tls13) = (h.count(), h.tls13);
    match (count, tls.version) {
        (0, Some(TlsVersion::V1_2)) => "TLS 1.2 only".into(),
        (0, Some(TlsVersion::V1_3)) => "TLS 1.3 only".into(),
        (0, None) => "TLS 1.2 or 1.3".into(),
        _ if tls13 == count => "TLS 1.3".into(),
        _ if tls13 == 0 => "TLS 1.2".into(),
        _ => format!("TLS 1.3 ×{tls13}, TLS 1.2 ×{}", count - tls13),
    }
}

fn tls_json(tls: &TlsClient, h: &Handshakes) -> Value {
    let (verify, cacert) = match &tls.verify {
        Verify::CaFile(path) => ("cacert", Some(path.display().to_string())),
        Verify::System => ("system", None),
        Verify::Insecure => ("insecure", None),
    };
    let mut times = serde_json::Map::new();
    if !h.latency.is_empty() {
        for (name, q) in HANDSHAKE_PERCENTILES {
            times.insert(name.into(), json!(h.latency.value_at_quantile(q)));
        }
        times.insert("max".into(), json!(h.latency.max()));
        times.insert("mean".into(), json!(h.latency.mean()));
    }
    json!({
        "server_name": tls.name.to_str(),
        "sni": tls.sni(),
        "verify": verify,
        "cacert": cacert,
        "version_pinned": tls.version.map(|v| match v {
            TlsVersion::V1_2 => "1.2",
            TlsVersion::V1_3 => "1.3",
        }),
        "resumption": tls.resume,
        "handshakes": h.count(),
        "full": h.count() - h.resumed,
        "resumed": h.resumed,
        "versions": { "1.2": h.count() - h.tls13, "1.3": h.tls13 },
        "handshake_us": times,
    })
}

fn quantile(h: &hdrhistogram::Histogram<u64>, q: f64) -> String {
    if h.is_empty() {
        "n/a".into()
    } else {
        ms(h.value_at_quantile(q))
    }
}

fn maximum(h: &hdrhistogram::Histogram<u64>) -> String {
    if h.is_empty() {
        "n/a".into()
    } else {
        ms(h.max())
    }
}

/// What the run spoke: `http/1.1`, `h2` (over TLS) or `h2c` (prior knowledge).
fn protocol_name(p: &Plan) -> &'static str {
    match (&p.protocol, p.tls.is_some()) {
        (Protocol::Http1(_), _) => "http/1.1",
        (Protocol::Http2 { .. }, true) => "h2",
        (Protocol::Http2 { .. }, false) => "h2c",
    }
}

/// `2xx 5990, 4xx 10, 5xx 0 | 200: 5990, 429: 10`
fn status_summary(t: &Tally) -> String {
    if t.statuses.is_empty() {
        return "none".into();
    }
    let class = |c: u16| -> u64 {
        t.statuses
            .iter()
            .filter(|(code, _)| **code / 100 == c)
            .map(|(_, n)| n)
            .sum()
    };
    let classes: Vec<String> = [2, 3, 4, 5]
        .iter()
        .map(|&c| format!("{c}xx {}", class(c)))
        .collect();
    let codes: Vec<String> = t
        .statuses
        .iter()
        .map(|(code, n)| format!("{code}: {n}"))
        .collect();
    format!("{} | {}", classes.join(", "), codes.join(", "))
}

fn plural(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Microseconds as milliseconds with three decimals.
pub fn ms(us: u64) -> String {
    format!("{:.3} ms", us as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn statuses_at_a_glance() {
        let mut t = Tally::default();
        for (status, n) in [(200, 3), (429, 2), (503, 1)] {
            for _ in 0..n {
                t.record_response(status, Duration::from_micros(10));
            }
        }
        assert_eq!(
            status_summary(&t),
            "2xx 3, 3xx 0, 4xx 2, 5xx 1 | 200: 3, 429: 2, 503: 1"
        );
        assert_eq!(ms(1234), "1.234 ms");
    }
}
