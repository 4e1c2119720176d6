//! The progress line of `portico-load run`: shown each second when stdout is a
//! terminal (a pseudo-terminal from util-linux `script`), never when stdout is a
//! pipe, and not with `--quiet`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_portico-load");

/// `portico-load serve` on a free port, killed when dropped.
struct Serve(Child, String);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve() -> Serve {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--workers", "1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("portico-load serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("the listening line");
    let addr = line
        .strip_prefix("portico-load serve listening on ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_else(|| panic!("unexpected start line {line:?}"))
        .to_string();
    Serve(child, format!("http://{addr}/"))
}

/// What `portico-load run -d 2s URL extra...` writes to stdout, on a terminal or not.
fn run(url: &str, extra: &str, terminal: bool) -> String {
    let cmd = format!("{BIN} run -d 2s -c 2 {extra} {url}");
    let out = if terminal {
        Command::new("script")
            .args(["-q", "-e", "-c", &cmd, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("util-linux script runs")
    } else {
        Command::new("sh")
            .args(["-c", &cmd])
            .stdin(Stdio::null())
            .output()
            .expect("sh runs")
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[test]
fn the_progress_line_is_for_terminals_only() {
    let s = serve();
    let tty = run(&s.1, "", true);
    let lines: Vec<&str> = tty
        .split("\r\x1b[K")
        .filter(|l| l.contains(" req/s  p50 "))
        .collect();
    assert_eq!(lines.len(), 2, "one line per second of a 2 s run: {tty:?}");
    assert!(lines[0].trim_start().starts_with("1s "), "{tty:?}");
    assert!(
        lines[1].contains("p99") && lines[1].ends_with("errors: none"),
        "{tty:?}"
    );
    assert!(
        tty.contains("latency    p50"),
        "the report follows: {tty:?}"
    );

    let quiet = run(&s.1, "--quiet", true);
    assert!(
        !quiet.contains("req/s  p50") && !quiet.contains('\x1b'),
        "{quiet:?}"
    );
    let piped = run(&s.1, "", false);
    assert!(
        !piped.contains("req/s  p50") && !piped.contains('\x1b'),
        "{piped:?}"
    );
    assert!(piped.contains("latency    p50"));
}
