//! A private `redis-server` per test, on a free 127.0.0.1 port, without
//! persistence; stopped, paused and restarted by its PID only.

use std::path::PathBuf;
use std::time::Duration;

use super::procs::{free_port, spawn, wait_for_port, Proc};

pub struct RedisServer {
    pub port: u16,
    proc: Option<Proc>,
}

fn binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join("redis-server");
        if p.exists() {
            return p;
        }
    }
    PathBuf::from("/usr/bin/redis-server")
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            proc: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let proc = spawn(
            &binary(),
            &[
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            &[],
            &format!("redis-{port}"),
            None,
        );
        assert!(
            wait_for_port(self.port, Duration::from_secs(10)),
            "redis-server did not listen on {port}: {}",
            proc.stderr_text() + &proc.stdout_text()
        );
        self.proc = Some(proc);
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn pause(&self) {
        if let Some(p) = &self.proc {
            p.signal(libc::SIGSTOP);
        }
    }

    /// Kills the server (SIGKILL after waking it); new connections are refused.
    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.signal(libc::SIGCONT);
            p.signal(libc::SIGKILL);
            p.wait_exit(Duration::from_secs(5));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
