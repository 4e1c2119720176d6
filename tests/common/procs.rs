//! Starting and stopping the processes a test needs, always by PID.

use std::collections::HashSet;
use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A port that was free a moment ago on 127.0.0.1, and not handed out before in
/// this test process (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` distinct ports that were free a moment ago: all bound at once, then released,
/// so two of them can never be the same port. A port this process handed out
/// before is never handed out again: threads of one test run gateways at the same
/// time, and the kernel may offer a port again as soon as it is released, before
/// the process it was meant for binds it (two gateways, one port, one refused).
pub fn free_ports<const N: usize>() -> [u16; N] {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    let mut held: Vec<TcpListener> = Vec::with_capacity(N);
    // Ports seen again are kept bound until the end, so the kernel offers others.
    let mut skipped: Vec<TcpListener> = Vec::new();
    while held.len() < N {
        let l = TcpListener::bind("127.0.0.1:0").expect("no free port on 127.0.0.1");
        let port = l.local_addr().expect("bound").port();
        if given.insert(port) {
            held.push(l);
        } else {
            skipped.push(l);
        }
    }
    let mut ports = [0u16; N];
    for (p, l) in ports.iter_mut().zip(&held) {
        *p = l.local_addr().expect("bound").port();
    }
    ports
}

pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portico"))
        .parent()
        .expect("binary has a folder")
        .to_path_buf()
}

/// The `portico-load` binary, built on first use if `cargo test` did not build it.
pub fn load_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let path = target_dir().join("portico-load");
            if !path.exists() {
                let profile_release = target_dir().ends_with("release");
                let mut cmd = Command::new(env!("CARGO"));
                cmd.args(["build", "-p", "portico-load"]);
                if profile_release {
                    cmd.arg("--release");
                }
                let status = cmd.status().expect("cargo runs");
                assert!(status.success(), "building portico-load failed");
            }
            path
        })
        .clone()
}

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
    pub out: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits up to `timeout` for the process to exit; its exit code if it did.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// What the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// What the process wrote to stdout so far.
    pub fn stdout_text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS:")
    }

    /// Peak resident set size in KiB, from /proc.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM:")
    }
}

fn proc_status_kib(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(3)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

fn scratch_dir() -> PathBuf {
    static SWEPT: OnceLock<()> = OnceLock::new();
    SWEPT.get_or_init(sweep_stale_scratch);
    let dir = std::env::temp_dir().join(format!(
        "portico-test-{}-{}",
        std::process::id(),
        std::thread::current()
            .name()
            .unwrap_or("t")
            .replace("::", "-")
    ));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Removes what earlier test processes left in the temporary folder: entries named
/// `portico-NAME-PID...` (the tests name their scratch files and folders so) whose
/// process is gone and that were not touched for ten minutes. Tests do not clean up
/// after themselves (a failed one's files are what there is to read), so this keeps
/// the folder from growing without bound on a machine that runs them often.
fn sweep_stale_scratch() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let old = |m: &std::fs::Metadata| {
        m.modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(600))
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix("portico-")) else {
            continue;
        };
        // The first part made only of digits is the PID (`-` and `.` separate).
        let Some(pid) = rest
            .split(['-', '.'])
            .find(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && old(&m) => {
                let _ = std::fs::remove_dir_all(&path);
            }
            Ok(m) if old(&m) => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// What `portico check` said about a configuration.
pub struct Checked {
    pub code: Option<i32>,
    /// The file checked, as its messages name it.
    pub path: String,
    pub stderr: String,
    pub stdout: String,
}

/// Writes `text` to a file called `name`, in a folder of its own in this test's
/// scratch folder (so names never clash); returns its path.
pub fn write_config(name: &str, text: &str) -> PathBuf {
    static CONFIGS: AtomicUsize = AtomicUsize::new(0);
    let n = CONFIGS.fetch_add(1, Ordering::Relaxed);
    let dir = scratch_dir().join(format!("config-{n}"));
    std::fs::create_dir_all(&dir).expect("config folder");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

/// Writes `text` as [`write_config`] does and runs `portico check --config` on it.
pub fn portico_check(name: &str, text: &str) -> Checked {
    let path = write_config(name, text);
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config", path.to_str().expect("utf-8 path")])
        .output()
        .expect("portico check runs");
    Checked {
        code: out.status.code(),
        path: path.display().to_string(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

pub fn spawn(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    tag: &str,
    taskset: Option<&str>,
) -> Proc {
    spawn_customized(bin, args, env, tag, taskset, &|_| {})
}

/// A change to the command before it starts (a resource limit, a pipe for stdout).
pub type Customize<'a> = &'a dyn Fn(&mut Command);

/// Makes the child start with a descriptor limit (`RLIMIT_NOFILE`, soft and hard)
/// of `nofile`, as `ulimit -n` would.
pub fn limit_descriptors(cmd: &mut Command, nofile: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: nofile,
                rlim_max: nofile,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// As [`spawn`], with `customize` applied to the command last.
pub fn spawn_customized(
    bin: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    tag: &str,
    taskset: Option<&str>,
    customize: Customize<'_>,
) -> Proc {
    // Numbered: two processes never share a log, even with the same tag.
    static SPAWNED: AtomicUsize = AtomicUsize::new(0);
    let n = SPAWNED.fetch_add(1, Ordering::Relaxed);
    let dir = scratch_dir();
    let log = dir.join(format!("{tag}-{n}.stderr"));
    let out = dir.join(format!("{tag}-{n}.stdout"));
    let mut cmd = match taskset {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&log).expect("stderr file"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    customize(&mut cmd);
    let child = cmd.spawn().expect("process starts");
    Proc { child, log, out }
}

/// A running `portico-load serve`.
pub struct Upstream {
    pub port: u16,
    pub proc: Proc,
}

impl Upstream {
    /// Starts `portico-load serve` on a free port with extra `args`.
    /// A port free a moment ago can be taken meanwhile (another test's gateway): the
    /// server then refuses to start, and another port is tried. It counts as up
    /// only once it says it listens (something else may answer on the port).
    pub fn start(args: &[&str]) -> Upstream {
        for _ in 0..3 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut all = vec!["serve", "--listen", &listen];
            all.extend_from_slice(args);
            let mut proc = spawn(&load_binary(), &all, &[], &format!("serve-{port}"), None);
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if proc.stdout_text().contains("listening on") {
                    return Upstream { port, proc };
                }
                if proc.wait_exit(Duration::from_millis(20)).is_some() {
                    break;
                }
            }
        }
        panic!("portico-load serve did not listen (its ports were taken three times)")
    }

    pub fn echo() -> Upstream {
        Upstream::start(&["--echo"])
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Requests this upstream has served (its `/__hits` counter).
    pub fn hits(&self) -> u64 {
        let mut c = super::Client::connect(self.port);
        let r = c.get("/__hits");
        let text = String::from_utf8_lossy(&r.body).to_string();
        let v: serde_json::Value = serde_json::from_str(&text).expect("hits json");
        v["requests"].as_u64().expect("requests")
    }
}

/// A running gateway with its config file.
pub struct Gateway {
    pub port: u16,
    pub admin_port: u16,
    /// A second free port, for configs that write `{port2}`.
    pub port2: u16,
    pub config: PathBuf,
    pub proc: Proc,
}

impl Gateway {
    /// Sends `raw` on a new connection and expects the gateway's own answer
    /// `status`, with nothing reaching the upstream (`upstream_hits` counts what
    /// it received). Returns the answer and the connection, for more checks.
    pub fn expect_refused(
        &self,
        raw: &[u8],
        status: u16,
        upstream_hits: impl Fn() -> usize,
    ) -> (super::Response, super::Client) {
        let before = upstream_hits();
        let mut c = self.client();
        c.send(raw);
        let r = c
            .response()
            .unwrap_or_else(|| panic!("no response to {:?}", String::from_utf8_lossy(raw)));
        assert_eq!(
            r.status,
            status,
            "for {:?}: {}",
            String::from_utf8_lossy(raw),
            r.text()
        );
        assert_eq!(
            upstream_hits(),
            before,
            "{:?} reached the upstream",
            String::from_utf8_lossy(raw)
        );
        (r, c)
    }

    /// Starts `portico run` on `config`, where `{port}` and `{admin}` are replaced by
    /// free ports; waits for both to accept connections.
    pub fn start(config: &str) -> Gateway {
        Gateway::start_with(config, &[], None)
    }

    /// Starts `n` gateways on the same config (each with its own ports), e.g.
    /// instances of one fleet sharing a Redis.
    pub fn start_many(config: &str, n: usize) -> Vec<Gateway> {
        (0..n).map(|_| Gateway::start(config)).collect()
    }

    pub fn start_with(config: &str, env: &[(&str, &str)], taskset: Option<&str>) -> Gateway {
        Gateway::start_customized(config, env, taskset, &|_| {})
    }

    /// As [`Gateway::start_with`], with `customize` applied to the command last.
    pub fn start_customized(
        config: &str,
        env: &[(&str, &str)],
        taskset: Option<&str>,
        customize: Customize<'_>,
    ) -> Gateway {
        // A port free a moment ago can be taken meanwhile (another test's listener,
        // or the ephemeral source port of some connection): then try other ports.
        for _ in 0..3 {
            match Gateway::try_start(config, env, taskset, customize) {
                Ok(gw) => return gw,
                Err(stderr)
                    if stderr.contains("Address already in use")
                        || stderr.contains("another process")
                        // the same refusal, its words cut by another thread's line
                        || stderr.contains("--takeover") =>
                {
                    continue
                }
                Err(stderr) => panic!("gateway did not listen:\n{stderr}"),
            }
        }
        panic!("gateway did not listen: its ports were taken three times")
    }

    fn try_start(
        config: &str,
        env: &[(&str, &str)],
        taskset: Option<&str>,
        customize: Customize<'_>,
    ) -> Result<Gateway, String> {
        let [port, admin_port, port2] = free_ports::<3>();
        let text = config
            .replace("{port}", &port.to_string())
            .replace("{port2}", &port2.to_string())
            .replace("{admin}", &admin_port.to_string());
        let path = scratch_dir().join(format!("portico-{port}.toml"));
        std::fs::write(&path, text).expect("write config");
        let proc = spawn_customized(
            Path::new(env!("CARGO_BIN_EXE_portico")),
            &["run", "--config", path.to_str().expect("utf-8 path")],
            env,
            &format!("portico-{port}"),
            taskset,
            customize,
        );
        let mut gw = Gateway {
            port,
            admin_port,
            port2,
            config: path,
            proc,
        };
        let admin_up =
            || !config.contains("{admin}") || wait_for_port(admin_port, Duration::from_secs(10));
        if !wait_for_port(port, Duration::from_secs(10)) || !admin_up() {
            let code = gw.proc.wait_exit(Duration::from_millis(100));
            return Err(format!("(exit {code:?}) {}", gw.proc.stderr_text()));
        }
        // The ports accept while start-up still checks them and the workers report
        // in; the gateway is started once it says "serving" (or it exits refusing).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if gw.proc.stderr_text().contains(" serving ")
                || gw.proc.stdout_text().contains(" serving ")
            {
                return Ok(gw);
            }
            if let Some(code) = gw.proc.wait_exit(Duration::from_millis(20)) {
                return Err(format!("(exit {code}) {}", gw.proc.stderr_text()));
            }
        }
        Ok(gw)
    }

    pub fn client(&self) -> super::Client {
        super::Client::connect(self.port)
    }

    /// Total of one counter from the admin `/stats`, after the workers published it.
    pub fn stat(&self, name: &str) -> u64 {
        std::thread::sleep(Duration::from_millis(120));
        let mut c = super::Client::connect(self.admin_port);
        let r = c.get("/stats");
        let v: serde_json::Value = serde_json::from_slice(&r.body).expect("stats json");
        v[name].as_u64().unwrap_or_else(|| panic!("no stat {name}"))
    }
}

/// Reads everything a stream sends until it closes or `timeout` passes.
pub fn read_all(stream: &mut TcpStream, timeout: Duration) -> Vec<u8> {
    let _ = stream.set_read_timeout(Some(timeout));
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
}
