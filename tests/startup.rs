//! Start-up next to a running gateway (issue 9, kind 4) and descriptor limits known
//! up front (kind 5): a second gateway on the same address is refused with a clear
//! error and disturbs none of the first one's clients, also when it fails late;
//! `--takeover` hands the address over for an upgrade; a configuration that cannot
//! fit in the descriptor limit is warned about or refused.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::procs::{limit_descriptors, load_binary, spawn, Proc};
use common::{Client, Gateway};

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:{port}"]
workers = 2
drain_timeout_ms = 3000
[admin]
listen = "127.0.0.1:{admin}"
[log]
access_log = "off"
[[route]]
name = "root"
respond = { status = 200, body = "BODY" }
"#;

fn portico(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(args)
        .output()
        .expect("portico runs")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A closed-loop `portico-load run` with a new connection per request (so every
/// request goes through some listener's accept queue), writing its JSON report.
fn start_load(port: u16, seconds: u64, tag: &str) -> (Proc, PathBuf) {
    let json =
        std::env::temp_dir().join(format!("portico-startup-{}-{tag}.json", std::process::id()));
    let _ = std::fs::remove_file(&json);
    let proc = spawn(
        &load_binary(),
        &[
            "run",
            "--new-connection",
            "-c",
            "8",
            "-d",
            &format!("{seconds}s"),
            "--timeout",
            "5s",
            "--json",
            path_str(&json),
            &format!("http://127.0.0.1:{port}/"),
        ],
        &[],
        &format!("load-{tag}"),
        None,
    );
    (proc, json)
}

/// Waits for the load to end; returns (responses, errors by kind, the report).
fn finish_load(mut proc: Proc, json: &Path) -> (u64, serde_json::Value, String) {
    assert_eq!(
        proc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "portico-load: {}",
        proc.stderr_text()
    );
    let text = std::fs::read_to_string(json).expect("the load report");
    let v: serde_json::Value = serde_json::from_str(&text).expect("report json");
    (
        v["requests"].as_u64().unwrap_or(0),
        v["errors"].clone(),
        text,
    )
}

fn no_errors(errors: &serde_json::Value) -> bool {
    errors
        .as_object()
        .is_some_and(|m| m.values().all(|n| n.as_u64() == Some(0)))
}

#[test]
fn a_duplicate_start_next_to_a_loaded_gateway_fails_clearly_and_disturbs_nothing() {
    let gw = Gateway::start(CONFIG);
    let (load, json) = start_load(gw.port, 4, "duplicate");
    std::thread::sleep(Duration::from_millis(500));

    // A late failure: the second start shares the data address on purpose
    // (--takeover) but its admin address is held by some other program.
    let held = TcpListener::bind("127.0.0.1:0").expect("a port to hold");
    let late = std::fs::read_to_string(&gw.config)
        .expect("config")
        .replace(
            &format!("127.0.0.1:{}\"\n[log]", gw.admin_port),
            &format!(
                "127.0.0.1:{}\"\n[log]",
                held.local_addr().expect("addr").port()
            ),
        );
    let late_path = gw.config.with_extension("late.toml");
    std::fs::write(&late_path, late).expect("write config");

    for _ in 0..3 {
        // The same configuration again: refused before anything is bound.
        let out = portico(&["run", "--config", path_str(&gw.config)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("cannot listen on 127.0.0.1:{}", gw.port))
                && err.contains("another process already listens there")
                && err.contains("--takeover"),
            "{err}"
        );
        let out = portico(&["run", "--takeover", "--config", path_str(&late_path)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot start the admin listener"), "{err}");
        assert!(!err.contains("serving"), "{err}");
    }
    let (requests, errors, report) = finish_load(load, &json);
    assert!(requests > 100, "{report}");
    assert!(
        no_errors(&errors),
        "the running gateway's clients saw errors: {report}"
    );
}

/// `net.ipv4.tcp_migrate_req` set to 1 while it lives (where this process may write
/// it: root, a writable /proc/sys), the old value put back on drop. With it the
/// kernel hands the connections still mid-handshake on a closing listener to the
/// other listeners of its group instead of resetting them (docs/operations.md,
/// "Takeover"); the gateway warns at a takeover when it is 0.
struct MigrateRequests {
    before: Option<String>,
}

const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

impl MigrateRequests {
    fn on() -> MigrateRequests {
        let before = std::fs::read_to_string(MIGRATE_REQ)
            .ok()
            .filter(|_| std::fs::write(MIGRATE_REQ, "1").is_ok());
        MigrateRequests { before }
    }

    fn is_on(&self) -> bool {
        self.before.is_some()
    }
}

impl Drop for MigrateRequests {
    fn drop(&mut self) {
        if let Some(v) = &self.before {
            let _ = std::fs::write(MIGRATE_REQ, v.trim());
        }
    }
}

#[test]
fn takeover_hands_the_address_to_the_new_gateway_without_client_errors() {
    let migrate = MigrateRequests::on();
    let mut old = Gateway::start(&CONFIG.replace("BODY", "old"));
    let text = std::fs::read_to_string(&old.config)
        .expect("config")
        .replace("\"old\"", "\"new\"");
    let new_config = old.config.with_extension("new.toml");
    std::fs::write(&new_config, text).expect("write config");
    let (load, json) = start_load(old.port, 4, "takeover");
    std::thread::sleep(Duration::from_millis(500));

    let new = spawn(
        Path::new(env!("CARGO_BIN_EXE_portico")),
        &["run", "--takeover", "--config", path_str(&new_config)],
        &[],
        "takeover-new",
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while !new.stderr_text().contains("serving") {
        assert!(Instant::now() < deadline, "{}", new.stderr_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        new.stderr_text()
            .contains(&format!("takeover: sharing 127.0.0.1:{}", old.port)),
        "{}",
        new.stderr_text()
    );
    // Both serve now; then the old one drains and exits.
    std::thread::sleep(Duration::from_millis(500));
    old.proc.signal(libc::SIGTERM);
    assert_eq!(old.proc.wait_exit(Duration::from_secs(10)), Some(0));
    let (requests, errors, report) = finish_load(load, &json);
    assert!(requests > 100, "{report}");
    if migrate.is_on() {
        assert!(no_errors(&errors), "clients saw errors: {report}");
    } else {
        // Without migration the kernel resets what is mid-handshake at the instant
        // the old listeners close (1 in about 20 runs of this test saw one): a
        // handful of resets or refused connects at most, nothing else.
        let count = |kind: &str| errors[kind].as_u64().unwrap_or(0);
        let total: u64 = errors
            .as_object()
            .map_or(0, |m| m.values().filter_map(|n| n.as_u64()).sum());
        assert!(
            count("reset") + count("connect") == total && total <= 3,
            "clients saw errors: {report}"
        );
    }
    let migrate_off = std::fs::read_to_string(MIGRATE_REQ).is_ok_and(|v| v.trim() == "0");
    assert_eq!(
        new.stderr_text().contains("tcp_migrate_req is 0"),
        migrate_off,
        "the takeover warns exactly when requests do not migrate: {}",
        new.stderr_text()
    );
    assert_eq!(Client::connect(old.port).get("/").text(), "new");
    drop(new);
}

#[test]
fn a_configuration_that_needs_more_descriptors_than_the_limit_is_warned_about_or_refused() {
    // 2 workers × (10000 clients + 2 × 1 listener + 2) + 32 > 1024.
    let gw = Gateway::start_customized(CONFIG, &[], None, &|cmd| limit_descriptors(cmd, 1024));
    let log = gw.proc.stderr_text();
    assert!(
        log.contains("descriptors: this configuration may hold up to")
            && log.contains("limit (RLIMIT_NOFILE) is 1024")
            && log.contains("fd_limit = \"refuse\" makes this an error"),
        "{log}"
    );
    assert_eq!(gw.client().get("/").status, 200);

    let refuse = CONFIG.replace(
        "drain_timeout_ms",
        "fd_limit = \"refuse\"\ndrain_timeout_ms",
    );
    let path = gw.config.with_extension("refuse.toml");
    std::fs::write(
        &path,
        refuse
            .replace("{port}", &common::free_port().to_string())
            .replace("{admin}", &common::free_port().to_string()),
    )
    .expect("write config");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portico"));
    cmd.args(["run", "--config", path_str(&path)]);
    limit_descriptors(&mut cmd, 1024);
    let out = cmd.output().expect("portico runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // (1024 - 32 for the process) / 2 workers - 4 (listener, spare, runtime).
    assert!(
        err.contains("max_connections_per_worker to 492 or less")
            && err.contains("fd_limit = \"refuse\""),
        "{err}"
    );
}

#[test]
fn check_names_a_bad_fd_limit_with_its_position() {
    let path = std::env::temp_dir().join(format!("portico-fd-limit-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        "[server]\nlisten = [\"127.0.0.1:1\"]\nfd_limit = \"maybe\"\n[[route]]\nname = \"r\"\nrespond = { status = 200 }\n",
    )
    .expect("write config");
    let out = portico(&["check", "--config", path_str(&path)]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "{}:3:12: fd_limit must be \"warn\" or \"refuse\", not \"maybe\"",
            path.display()
        )),
        "{err}"
    );
}
