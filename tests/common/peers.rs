//! Peers the tests drive: curl (one request, any protocol flags), the Python `h2`
//! client (tests/h2/floods.py: floods, plain requests, stalls), and the Python
//! servers and clients under tests/ (grpcio, websockets) that report in JSON.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

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
    let port = port.to_string();
    python_json("tests/h2/floods.py", &[&[port.as_str()], args].concat())
}

/// `python3 SCRIPT ARGS…` (`script` relative to the crate root), Debian's python3:
/// the one JSON report it prints on stdout.
pub fn python_json(script: &str, args: &[&str]) -> serde_json::Value {
    let out = Command::new("/usr/bin/python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
        .args(args)
        .output()
        .expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| {
        panic!(
            "{script} {args:?}: {e}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A Python server under tests/ run as `python3 SCRIPT ARGS… PORT` on a free port,
/// started once it prints `listening`; killed when dropped.
pub struct PythonServer {
    child: Child,
    pub port: u16,
}

impl PythonServer {
    /// Starts `script` (relative to the crate root) with `args` then the port;
    /// `what` names it if it does not start.
    pub fn start(script: &str, args: &[&str], what: &str) -> PythonServer {
        let port = super::free_port();
        let mut child = Command::new("/usr/bin/python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join(script))
            .args(args)
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let out = child.stdout.take().expect("stdout");
        BufReader::new(out)
            .read_line(&mut line)
            .expect("server says it listens");
        assert_eq!(line.trim(), "listening", "{what} did not start");
        PythonServer { child, port }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the PID of a child this process started and still owns.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}
