//! `scripts/demo` end to end, on the bundled `config/demo.toml` with its addresses
//! moved to free ports by the PORTICO_DEMO_* variables: its tour gets every answer
//! the demo promises (static, echo, trace context, JWT 401/200, five 200s then a 429
//! with its headers, the composed route, /metrics), and however it stops — by
//! itself, on Ctrl-C, on SIGTERM, or killed outright — no process it started is
//! left behind.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{free_ports, load_binary};

/// A demo run: the script in its own process group, its output in a file.
struct Demo {
    child: Child,
    out: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal_group(libc::SIGTERM);
            let _ = wait(&mut self.child, Duration::from_secs(20));
        }
        let _ = std::fs::remove_file(&self.out);
    }
}

impl Demo {
    /// Starts `scripts/demo ARGS` on free ports (the PORTICO_DEMO_* variables move
    /// the bundled config/demo.toml) with the test build's binaries. The demo's
    /// temporary folder goes into this test process's own (TMPDIR), so a demo killed
    /// outright, whose clean-up never runs, leaves nothing in the shared one.
    fn start(name: &str, args: &[&str]) -> Demo {
        let [gateway, admin, up1, up2] = free_ports::<4>();
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = std::env::temp_dir().join(format!("portico-demo-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&tmp).expect("scratch folder");
        let out = tmp.join("demo.out");
        let file = std::fs::File::create(&out).expect("output file");
        let bin = load_binary().parent().expect("binary folder").to_path_buf();
        let child = Command::new(root.join("scripts/demo"))
            .args(args)
            .env("PORTICO_DEMO_BIN", bin)
            .env("PORTICO_DEMO_GATEWAY", format!("127.0.0.1:{gateway}"))
            .env("PORTICO_DEMO_ADMIN", format!("127.0.0.1:{admin}"))
            .env(
                "PORTICO_DEMO_UPSTREAMS",
                format!("127.0.0.1:{up1} 127.0.0.1:{up2}"),
            )
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup"))
            .stderr(file)
            // Its own group, as a shell's foreground job is: Ctrl-C goes to all of it.
            .process_group(0)
            .spawn()
            .expect("scripts/demo runs");
        Demo { child, out }
    }

    fn output(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.out) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the output contains `text`, or fails with the output.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.output().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the demo exited ({status}) before '{text}':\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no '{text}' within 60 s:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn signal_group(&self, sig: i32) {
        unsafe {
            libc::kill(-(self.child.id() as i32), sig);
        }
    }

    /// Waits for the script's exit; its code, and its output.
    fn exit(&mut self) -> (Option<i32>, String) {
        let status = wait(&mut self.child, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("the demo did not stop:\n{}", self.output()));
        (status.code(), self.output())
    }

    /// The PIDs the script said it started.
    fn started(&self) -> Vec<i32> {
        self.output()
            .lines()
            .filter_map(|l| l.trim_end().rsplit_once(" PID ")?.1.parse().ok())
            .collect()
    }
}

fn wait(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Every PID in `pids` is gone (within a few seconds: a process killed by its
/// parent's death may take a moment to drain).
fn all_gone(pids: &[i32], output: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    for &pid in pids {
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "PID {pid} was left behind:\n{output}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The process exists and is not a zombie (a zombie of ours is reaped by its parent).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

#[test]
fn the_tour_gets_every_promised_answer_and_leaves_nothing_behind() {
    let mut demo = Demo::start("check", &["--check"]);
    let (code, out) = demo.exit();
    assert_eq!(code, Some(0), "{out}");
    for said in [
        "every answer was as promised",
        "six quick requests: 200 200 200 200 200 429",
        "the upstream got traceparent: 00-0af7651916cd43dd8448eb211c80319c-",
        "the upstream got x-user-id: demo-user",
        "x-portico-composition: complete",
        "TOKEN=ey",
    ] {
        assert!(out.contains(said), "no '{said}' in:\n{out}");
    }
    let started = demo.started();
    assert_eq!(started.len(), 3, "two upstreams and the gateway: {out}");
    all_gone(&started, &out);
}

#[test]
fn ctrl_c_stops_the_demo_and_every_process_it_started() {
    let mut demo = Demo::start("ctrl-c", &["--for", "0"]);
    demo.wait_for("Serving until you press Ctrl-C");
    // Ctrl-C: SIGINT to the terminal's foreground group, the script and its children.
    demo.signal_group(libc::SIGINT);
    let (code, out) = demo.exit();
    assert_eq!(code, Some(130), "{out}");
    assert!(out.contains("stopping (Ctrl-C)"), "{out}");
    let started = demo.started();
    assert_eq!(started.len(), 4, "upstreams, gateway, log follower: {out}");
    all_gone(&started, &out);
}

#[test]
fn the_demo_stops_by_itself_and_when_killed() {
    let mut timed = Demo::start("timed", &["--for", "2"]);
    let mut killed = Demo::start("killed", &["--for", "0"]);

    let (code, out) = timed.exit();
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("2 s have passed; stopping"), "{out}");
    all_gone(&timed.started(), &out);

    // Killed outright, no trap runs: its children get SIGTERM from the kernel
    // (setpriv --pdeathsig, util-linux) and stop by themselves.
    killed.wait_for("Serving until you press Ctrl-C");
    let setpriv = Command::new("setpriv")
        .args(["--pdeathsig", "TERM", "--", "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !setpriv {
        eprintln!("no setpriv here: a killed demo's children are not stopped; not checked");
        return;
    }
    let started = killed.started();
    assert_eq!(started.len(), 4);
    unsafe {
        libc::kill(killed.child.id() as i32, libc::SIGKILL);
    }
    let (code, out) = killed.exit();
    assert_eq!(code, None, "killed by a signal: {out}");
    all_gone(&started, &out);
}
