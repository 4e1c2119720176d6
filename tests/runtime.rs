//! `[server.runtime]` as an operator sees it: each setting takes effect in the running
//! gateway (the driver it logs, the cores it pins, the kernel's SQPOLL thread), bad
//! values are refused by `portico check` at their place, and `portico doctor` reports
//! what on the host caps the gateway.

mod common;

use std::process::Command;
use std::time::Duration;

use common::procs::{limit_descriptors, spawn_customized, write_config};
use common::Gateway;

fn portico() -> Command {
    Command::new(env!("CARGO_BIN_EXE_portico"))
}

/// A one-worker gateway answering 200 "hi", with `runtime` as its `[server.runtime]`.
fn gateway(runtime: &str, taskset: Option<&str>) -> Gateway {
    Gateway::start_with(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\n[server.runtime]\n{runtime}\n[[route]]\nname = \"r\"\nrespond = {{ status = 200, body = \"hi\" }}\n"
        ),
        &[],
        taskset,
    )
}

fn serves(gw: &Gateway) {
    let mut c = gw.client();
    for _ in 0..3 {
        assert_eq!(c.get("/").text(), "hi");
    }
}

/// The names of the process's threads (`/proc/PID/task/*/comm`).
fn thread_names(pid: u32) -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        if let Ok(n) = std::fs::read_to_string(task.path().join("comm")) {
            names.push(n.trim().to_string());
        }
    }
    names
}

#[test]
fn the_driver_asked_for_is_the_driver_used() {
    let gw = gateway("driver = \"epoll\"", None);
    serves(&gw);
    let log = gw.proc.stderr_text();
    assert!(
        log.contains("worker 0 on core 0, driver epoll") || log.contains("driver epoll"),
        "{log}"
    );
    assert!(!log.contains("driver io_uring"), "{log}");

    let gw = gateway("driver = \"io_uring\"\nring_entries = 512", None);
    serves(&gw);
    let log = gw.proc.stderr_text();
    assert!(log.contains("driver io_uring (512 entries)"), "{log}");
}

#[test]
fn sqpoll_starts_the_kernels_polling_thread() {
    let gw = gateway("sqpoll_idle_ms = 20", None);
    serves(&gw);
    let log = gw.proc.stderr_text();
    assert!(log.contains("sqpoll idle 20 ms"), "{log}");
    let names = thread_names(gw.proc.pid());
    assert!(
        names.iter().any(|n| n.starts_with("iou-sqp-")),
        "no SQPOLL thread among {names:?}"
    );

    let gw = gateway("", None);
    serves(&gw);
    let names = thread_names(gw.proc.pid());
    assert!(
        !names.iter().any(|n| n.starts_with("iou-sqp-")),
        "SQPOLL thread without sqpoll: {names:?}"
    );
}

#[test]
fn workers_run_on_the_cores_listed() {
    // Two workers on core 0 only: both pinned there, whatever the CPU set holds.
    let gw = Gateway::start(
        "[server]\nlisten = [\"127.0.0.1:{port}\"]\nworkers = 2\npin_workers = false\n[server.runtime]\ncpus = \"0\"\n[[route]]\nname = \"r\"\nrespond = { status = 200, body = \"hi\" }\n",
    );
    serves(&gw);
    let log = gw.proc.stderr_text();
    assert!(log.contains("worker 0 on core 0"), "{log}");
    assert!(log.contains("worker 1 on core 0"), "{log}");
}

#[test]
fn cores_outside_the_cpu_set_fail_start_up_clearly() {
    let path = write_config(
        "outside.toml",
        "[server]\nlisten = [\"127.0.0.1:1\"]\n[server.runtime]\ncpus = \"1\"\n[[route]]\nname = \"r\"\nrespond = { status = 204 }\n",
    );
    let mut proc = spawn_customized(
        std::path::Path::new(env!("CARGO_BIN_EXE_portico")),
        &["run", "--config", path.to_str().unwrap()],
        &[],
        "portico-outside",
        Some("0"),
        &|_| {},
    );
    assert_eq!(proc.wait_exit(Duration::from_secs(10)), Some(1));
    let log = proc.stderr_text();
    assert!(
        log.contains("cpus names core(s) 1 outside the CPU set this process may run on (0)"),
        "{log}"
    );
}

#[test]
fn check_refuses_bad_runtime_values_at_their_place() {
    let path = write_config(
        "bad-runtime.toml",
        r#"[server]
listen = ["127.0.0.1:8080"]

[server.runtime]
driver = "uring"
cpus = "3-1"
ring_entries = 1000
read_buffer_bytes = 10
write_buffer_bytes = 2000000
accepts_in_flight = 0

[[route]]
name = "r"
respond = { status = 204 }
"#,
    );
    let out = portico()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let file = path.to_str().unwrap();
    for (place, words) in [
        (
            "5:10",
            "driver must be \"auto\", \"io_uring\" or \"epoll\", not \"uring\"",
        ),
        ("6:8", "the range 3-1 runs backwards"),
        ("7:16", "ring_entries must be a power of two"),
        ("8:21", "10 is out of range: must be from 1024 to 1048576"),
        ("9:22", "2000000 is out of range"),
        ("10:21", "0 is out of range: must be from 1 to 64"),
    ] {
        assert!(
            err.contains(&format!("{file}:{place}: ")) && err.contains(words),
            "{place} {words}\n{err}"
        );
    }

    let path = write_config(
        "sqpoll-epoll.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n[server.runtime]\ndriver = \"epoll\"\nsqpoll_idle_ms = 10\n[[route]]\nname = \"r\"\nrespond = { status = 204 }\n",
    );
    let out = portico()
        .args(["check", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:5:18: sqpoll_idle_ms needs io_uring",
            path.display()
        )),
        "{err}"
    );
}

/// `portico doctor` with `config`, started under a descriptor limit of `nofile`.
fn doctor(config: &std::path::Path, nofile: Option<u64>) -> (Option<i32>, String) {
    let mut proc = spawn_customized(
        std::path::Path::new(env!("CARGO_BIN_EXE_portico")),
        &["doctor", "--config", config.to_str().unwrap()],
        &[],
        &format!(
            "portico-doctor-{}",
            config.file_stem().unwrap().to_string_lossy()
        ),
        None,
        &|cmd| {
            if let Some(n) = nofile {
                limit_descriptors(cmd, n);
            }
        },
    );
    let code = proc.wait_exit(Duration::from_secs(20));
    (code, proc.stdout_text())
}

#[test]
fn doctor_reports_a_low_descriptor_limit_and_a_backlog_the_kernel_caps() {
    let somaxconn: u64 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        somaxconn < 65535,
        "this host's somaxconn ({somaxconn}) leaves no larger backlog to configure"
    );
    let backlog = somaxconn + 1;
    let path = write_config(
        "doctor-limited.toml",
        &format!(
            "[server]\nlisten = [\"127.0.0.1:8080\"]\nworkers = 1\nmax_connections_per_worker = 1000\nlisten_backlog = {backlog}\n[[route]]\nname = \"r\"\nrespond = {{ status = 204 }}\n"
        ),
    );
    let (code, out) = doctor(&path, Some(256));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("LIMIT  descriptors:"), "{out}");
    assert!(
        out.contains("the limit (ulimit -n, hard RLIMIT_NOFILE) is 256"),
        "{out}"
    );
    assert!(out.contains("lower max_connections_per_worker to"), "{out}");
    assert!(out.contains("LIMIT  listen backlog:"), "{out}");
    assert!(
        out.contains(&format!(
            "listen_backlog = {backlog}, but net.core.somaxconn = {somaxconn}"
        )),
        "{out}"
    );
    assert!(out.contains("2 finding(s) limit the gateway"), "{out}");

    // The same host with a configuration that fits: exit 0, nothing marked LIMIT.
    let path = write_config(
        "doctor-fits.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\"]\nworkers = 1\nmax_connections_per_worker = 100\nlisten_backlog = 128\n[[route]]\nname = \"r\"\nrespond = { status = 204 }\n",
    );
    let (code, out) = doctor(&path, Some(1024));
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.lines().any(|l| l.starts_with("LIMIT")), "{out}");
    assert!(out.contains("ok     descriptors:"), "{out}");
}

#[test]
fn doctor_wants_a_valid_configuration_first() {
    let path = write_config(
        "doctor-bad.toml",
        "[server]\nlisten = [\"127.0.0.1:8080\"]\n[server.runtime]\ndriver = \"nope\"\n",
    );
    let out = portico()
        .args(["doctor", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:4:10:", path.display())), "{err}");
}

/// Resident KiB the gateway grows by while `n` connections each hold a partial
/// request head (busy: their buffers are allocated and kept until the head is whole).
fn busy_connection_kib(runtime: &str, n: usize) -> u64 {
    let gw = Gateway::start_with(
        &format!(
            "[server]\nlisten = [\"127.0.0.1:{{port}}\"]\nworkers = 1\nheader_read_timeout_ms = 60000\n[server.runtime]\n{runtime}\n[log]\naccess_log = \"off\"\n[[route]]\nname = \"r\"\nrespond = {{ status = 200, body = \"hi\" }}\n"
        ),
        // jemalloc fills each new allocation (junk), so an allocated buffer is
        // resident whether or not a read wrote into all of it.
        &[("_RJEM_MALLOC_CONF", "junk:alloc")],
        None,
    );
    serves(&gw);
    std::thread::sleep(Duration::from_millis(300));
    let before = gw.proc.rss_kib();
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", gw.port)).unwrap();
        std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap();
        conns.push(s);
    }
    std::thread::sleep(Duration::from_millis(700));
    let during = gw.proc.rss_kib();
    drop(conns);
    during.saturating_sub(before)
}

#[test]
fn buffer_sizes_show_in_the_memory_of_busy_connections() {
    let n = 200;
    let small = busy_connection_kib("read_buffer_bytes = 1024\nwrite_buffer_bytes = 1024", n);
    let large = busy_connection_kib("read_buffer_bytes = 65536\nwrite_buffer_bytes = 65536", n);
    eprintln!(
        "{n} busy connections: +{small} KiB with 1 KiB buffers, +{large} KiB with 64 KiB buffers"
    );
    // 126 KiB more per connection with the large buffers; half of it is plenty.
    assert!(
        large >= small + (n as u64) * 63,
        "+{small} KiB with 1 KiB buffers, +{large} KiB with 64 KiB buffers, for {n} connections"
    );
}

#[test]
fn several_accepts_in_flight_take_a_burst_of_connections() {
    let gw = gateway("accepts_in_flight = 8", None);
    serves(&gw);
    let log = gw.proc.stderr_text();
    assert!(log.contains("with 8 accepts in flight"), "{log}");
    // A burst of connections, all open at once, each answered.
    let mut conns: Vec<common::Client> = (0..200).map(|_| gw.client()).collect();
    for c in conns.iter_mut() {
        assert_eq!(c.get("/").text(), "hi");
    }
    // And the drain ends every loop: the process exits 0 in time.
    drop(conns);
    let mut gw = gw;
    gw.proc.signal(libc::SIGTERM);
    assert_eq!(gw.proc.wait_exit(Duration::from_secs(10)), Some(0));
}
