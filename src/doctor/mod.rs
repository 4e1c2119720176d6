//! `portico doctor`: reads the host it runs on together with a configuration and
//! says what will limit the gateway before its CPU does, and what to change. It
//! changes nothing. Each check is a [`Finding`]: `ok`, a `note` (worth knowing, does
//! not cap the gateway), or a `LIMIT` (the host caps what the configuration asks for;
//! the exit status is 1). docs/tuning.md explains each check and the setting behind it.

mod checks;
mod host;

use crate::config::Snapshot;

pub use host::Host;

/// How much a finding matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Nothing to change.
    Ok,
    /// Worth knowing; the gateway is not capped by it.
    Note,
    /// The host will cap the gateway below what the configuration asks for.
    Limit,
}

/// One check's outcome: what it looked at, what it saw, and what to change.
#[derive(Clone, Debug)]
pub struct Finding {
    pub severity: Severity,
    /// Short name of the check (`descriptors`, `listen backlog`, …).
    pub check: &'static str,
    /// What was seen, with the numbers.
    pub detail: String,
    /// What to change; empty when nothing.
    pub advice: String,
}

/// Runs every check of `snapshot` against `host`, in a fixed order.
pub fn examine(snapshot: &Snapshot, host: &Host) -> Vec<Finding> {
    checks::all(snapshot, host)
}

/// The report as printed: one line per finding (advice indented below), then a
/// summary line. Returns the text and whether any finding is a [`Severity::Limit`].
pub fn render(source: &str, host: &Host, findings: &[Finding]) -> (String, bool) {
    let mut out = format!(
        "portico doctor: {source} on {} (kernel {}, {} core(s) online, {} allowed)\n",
        host.hostname,
        host.kernel,
        host.online_cpus.len(),
        host.allowed_cpus.len()
    );
    for f in findings {
        let tag = match f.severity {
            Severity::Ok => "ok   ",
            Severity::Note => "note ",
            Severity::Limit => "LIMIT",
        };
        out.push_str(&format!("{tag}  {}: {}\n", f.check, f.detail));
        if !f.advice.is_empty() {
            out.push_str(&format!("       -> {}\n", f.advice));
        }
    }
    let limits = findings
        .iter()
        .filter(|f| f.severity == Severity::Limit)
        .count();
    if limits == 0 {
        out.push_str("nothing on this host limits the gateway below its configuration\n");
    } else {
        out.push_str(&format!(
            "{limits} finding(s) limit the gateway on this host (LIMIT above)\n"
        ));
    }
    (out, limits > 0)
}
