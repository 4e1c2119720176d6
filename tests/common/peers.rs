//! HTTP/2 peers the tests drive: curl (one request, any protocol flags) and the
//! Python `h2` client (tests/h2/floods.py: floods, plain requests, stalls).

use std::path::Path;
use std::process::Command;

/// `curl` with `args` (URL included), up to 10 s: (HTTP version as curl writes
/// it, `2` or `1.1`; status, 0 when none came; body).
pub fn curl(args: &[&str]) -> (String, u16, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "-",
            "-w",
            "\n%{http_version} %{http_code}",
        ])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, tail) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (version, code) = tail.split_once(' ').unwrap_or(("0", "0"));
    (
        version.to_string(),
        code.trim().parse().unwrap_or(0),
        body.to_string(),
    )
}

/// tests/h2/floods.py against `port` with `args` (see its docstring): its one
/// JSON report.
pub fn h2_client(port: u16, args: &[&str]) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/h2/floods.py");
    let out = Command::new("/usr/bin/python3")
        .arg(script)
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "floods.py {args:?}: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
