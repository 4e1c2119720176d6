//! File descriptors, known up front: at start-up the soft `RLIMIT_NOFILE` is raised
//! to the hard limit, and the descriptors the configuration may hold open at once
//! are estimated and compared with it. Too few: a warning with the arithmetic, or a
//! refusal to start with `[server] fd_limit = "refuse"`.
//!
//! The estimate (docs/operations.md, "File descriptors"), per worker:
//! - `max_connections_per_worker` client connections;
//! - as many upstream connections in use (a client connection has at most one
//!   request in flight, and a request one upstream connection at a time);
//! - the idle pools: `max_idle_per_endpoint` × endpoints, summed over upstreams;
//! - per listener address: the socket, and the spare descriptor of its accept loop;
//! - the runtime: an io_uring (or epoll) descriptor and an eventfd;
//!
//! and for the process: [`PROCESS_DESCRIPTORS`] (standard streams, signal pipe, admin
//! listener and connection, access-log file, Redis, slack) plus one per JWKS fetcher
//! and one per health-checked endpoint (the prober's connections).

use crate::config::{FdLimitPolicy, Snapshot};

/// Descriptors of the process outside the workers (see the module comment).
pub const PROCESS_DESCRIPTORS: u64 = 32;
/// Descriptors of a worker's runtime (ring or epoll, eventfd).
const RUNTIME_DESCRIPTORS: u64 = 2;

/// What the configuration may hold open, by part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorEstimate {
    pub workers: u64,
    pub client_connections: u64,
    pub upstream_connections: u64,
    pub pooled: u64,
    pub listeners: u64,
    pub process: u64,
}

impl DescriptorEstimate {
    /// The estimate for `snapshot` run with `workers` workers.
    pub fn of(snapshot: &Snapshot, workers: usize) -> DescriptorEstimate {
        let server = &snapshot.server;
        let clients = server.limits.max_connections_per_worker as u64;
        let pooled = snapshot
            .upstreams
            .iter()
            .map(|u| (u.max_idle_per_endpoint as u64).saturating_mul(u.endpoints.len() as u64))
            .fold(0u64, u64::saturating_add);
        let remote_jwks = snapshot
            .auth
            .providers
            .iter()
            .filter(|p| p.remote.is_some())
            .count() as u64;
        let probed: u64 = snapshot
            .upstreams
            .iter()
            .filter(|u| u.health_check.is_some())
            .map(|u| u.endpoints.len() as u64)
            .sum();
        DescriptorEstimate {
            workers: workers as u64,
            client_connections: clients,
            upstream_connections: if snapshot.upstreams.is_empty() {
                0
            } else {
                clients
            },
            pooled,
            listeners: (server.listen.len() + server.tls.len()) as u64,
            process: PROCESS_DESCRIPTORS + remote_jwks + probed,
        }
    }

    pub fn per_worker(&self) -> u64 {
        self.client_connections
            .saturating_add(self.upstream_connections)
            .saturating_add(self.pooled)
            .saturating_add(2 * self.listeners)
            .saturating_add(RUNTIME_DESCRIPTORS)
    }

    pub fn total(&self) -> u64 {
        self.workers
            .saturating_mul(self.per_worker())
            .saturating_add(self.process)
    }

    /// The arithmetic, for the log: `2 workers × (10000 client + ...) + 32 = N`.
    pub fn explain(&self) -> String {
        format!(
            "{} worker(s) × ({} client + {} upstream + {} pooled + {} for {} listener(s) + {} runtime) + {} process = {}",
            self.workers,
            self.client_connections,
            self.upstream_connections,
            self.pooled,
            2 * self.listeners,
            self.listeners,
            RUNTIME_DESCRIPTORS,
            self.process,
            self.total()
        )
    }

    /// The largest `max_connections_per_worker` that fits in `limit`.
    pub fn connections_that_fit(&self, limit: u64) -> u64 {
        let fixed_per_worker =
            self.per_worker() - self.client_connections - self.upstream_connections;
        let per_connection = if self.upstream_connections > 0 { 2 } else { 1 };
        let room = limit
            .saturating_sub(self.process)
            .checked_div(self.workers.max(1))
            .unwrap_or(0)
            .saturating_sub(fixed_per_worker);
        room / per_connection
    }
}

/// Raises the soft limit, estimates, and warns or refuses per `[server] fd_limit`.
/// Errors only with `fd_limit = "refuse"` when the estimate does not fit.
pub fn check_limit(snapshot: &Snapshot, workers: usize) -> Result<(), String> {
    let limit = match raise_soft_limit() {
        Ok(Raised { from, to }) => {
            if to > from {
                tracing::info!("descriptor limit (RLIMIT_NOFILE) raised from {from} to {to}");
            }
            to
        }
        Err(e) => {
            tracing::warn!("cannot read or raise the descriptor limit (RLIMIT_NOFILE): {e}");
            return Ok(());
        }
    };
    let estimate = DescriptorEstimate::of(snapshot, workers);
    if estimate.total() <= limit {
        tracing::debug!(
            "descriptors: up to {} needed, limit {limit}",
            estimate.explain()
        );
        return Ok(());
    }
    let message = format!(
        "descriptors: this configuration may hold up to {} open, but the limit \
         (RLIMIT_NOFILE) is {limit}. Raise the limit (ulimit -n, systemd LimitNOFILE=, \
         docker --ulimit nofile=) or lower max_connections_per_worker to {} or less; \
         past the limit new connections are refused with 503",
        estimate.explain(),
        estimate.connections_that_fit(limit)
    );
    match snapshot.server.fd_limit {
        FdLimitPolicy::Warn => {
            tracing::warn!("{message} ([server] fd_limit = \"refuse\" makes this an error)");
            Ok(())
        }
        FdLimitPolicy::Refuse => Err(format!("{message} ([server] fd_limit = \"refuse\")")),
    }
}

/// The descriptor limit `portico run` will have once it raised its soft limit: the
/// hard `RLIMIT_NOFILE` (capped by `fs.nr_open` when unlimited). Changes nothing.
///
/// Errors: getrlimit(2) failing.
pub fn usable_limit() -> std::io::Result<u64> {
    let lim = nofile()?;
    if lim.rlim_max == libc::RLIM_INFINITY {
        return Ok(nr_open().unwrap_or(lim.rlim_cur));
    }
    Ok(lim.rlim_max.max(lim.rlim_cur))
}

struct Raised {
    from: u64,
    to: u64,
}

/// Sets the soft `RLIMIT_NOFILE` to the hard one (capped by `fs.nr_open`, as an
/// unlimited hard limit cannot be the soft one). Returns the soft limit before and after.
fn raise_soft_limit() -> std::io::Result<Raised> {
    let lim = nofile()?;
    let from = lim.rlim_cur;
    let mut target = lim.rlim_max;
    if target == libc::RLIM_INFINITY {
        target = nr_open().unwrap_or(from);
    }
    if target <= from {
        return Ok(Raised { from, to: from });
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: lim.rlim_max,
    };
    // SAFETY: `raised` is a valid rlimit; raising the soft limit up to the hard one
    // needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Raised { from, to: target })
}

/// The kernel's ceiling on a process's descriptors (`/proc/sys/fs/nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The process's `RLIMIT_NOFILE` (soft and hard). Errors: getrlimit(2) failing.
fn nofile() -> std::io::Result<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lim)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(config: &str, workers: usize) -> DescriptorEstimate {
        let snapshot = crate::config::parse("t.toml", config).expect("config");
        DescriptorEstimate::of(&snapshot, workers)
    }

    #[test]
    fn the_estimate_adds_clients_upstreams_pools_listeners_and_the_process() {
        let e = estimate(
            r#"
[server]
listen = ["127.0.0.1:1", "127.0.0.1:2"]
max_connections_per_worker = 100
[[upstream]]
name = "u"
endpoints = ["127.0.0.1:9001", "127.0.0.1:9002"]
max_idle_per_endpoint = 8
[[route]]
name = "r"
upstream = "u"
"#,
            3,
        );
        // Per worker: 100 + 100 + 16 + 2 × 2 + 2 = 222.
        assert_eq!(e.per_worker(), 222);
        assert_eq!(e.total(), 3 * 222 + PROCESS_DESCRIPTORS);
        assert!(
            e.explain().ends_with(&format!("= {}", e.total())),
            "{}",
            e.explain()
        );
        // What fits in 500: (500 - 32) / 3 = 156 per worker, minus 22 fixed (pools
        // 16, listeners 4, runtime 2), 2 per connection: 67.
        assert_eq!(e.connections_that_fit(500), 67);
    }

    #[test]
    fn static_answers_need_no_upstream_connections() {
        let e = estimate(
            "[server]\nlisten = [\"127.0.0.1:1\"]\nmax_connections_per_worker = 10\n[[route]]\nname = \"r\"\nrespond = { status = 200 }\n",
            1,
        );
        assert_eq!(e.per_worker(), 10 + 2 + 2);
    }
}
