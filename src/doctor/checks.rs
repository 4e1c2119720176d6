//! Each check of `portico doctor`: one function per thing on the host that can cap
//! the gateway, in the order the report prints them.

use crate::config::{Driver, Snapshot};
use crate::server::{cores_within, DescriptorEstimate};

use super::{Finding, Host, Severity};

/// Every check, in report order.
pub fn all(snapshot: &Snapshot, host: &Host) -> Vec<Finding> {
    let workers = worker_count(snapshot, host);
    vec![
        cores(snapshot, host, workers),
        descriptors(snapshot, host, workers),
        listen_backlog(snapshot, host),
        io_uring(snapshot, host),
        locked_memory(snapshot, host, workers),
        huge_pages(host),
        local_ports(snapshot, host, workers),
        interrupts(snapshot, host),
    ]
}

fn finding(severity: Severity, check: &'static str, detail: String, advice: String) -> Finding {
    Finding {
        severity,
        check,
        detail,
        advice,
    }
}

/// The cores workers would run on: `cpus` when given, else the allowed set.
fn usable_cpus(snapshot: &Snapshot, host: &Host) -> Vec<usize> {
    match &snapshot.server.runtime.cpus {
        Some(listed) => listed.clone(),
        None => host.allowed_cpus.clone(),
    }
}

fn worker_count(snapshot: &Snapshot, host: &Host) -> usize {
    snapshot
        .server
        .workers
        .unwrap_or_else(|| usable_cpus(snapshot, host).len())
        .max(1)
}

fn list(cores: &[usize]) -> String {
    let parts: Vec<String> = cores.iter().map(usize::to_string).collect();
    parts.join(",")
}

fn cores(snapshot: &Snapshot, host: &Host, workers: usize) -> Finding {
    let allowed: Vec<core_affinity::CoreId> = host
        .allowed_cpus
        .iter()
        .map(|&id| core_affinity::CoreId { id })
        .collect();
    if let Some(listed) = &snapshot.server.runtime.cpus {
        if let Err(e) = cores_within(listed, &allowed) {
            return finding(Severity::Limit, "cores", e, String::new());
        }
    }
    let usable = usable_cpus(snapshot, host);
    let used = &usable[..workers.min(usable.len())];
    let mut detail = format!(
        "{workers} worker(s) on core(s) {} (CPU set {}, {} online)",
        list(used),
        list(&host.allowed_cpus),
        host.online_cpus.len()
    );
    if workers > usable.len() {
        detail.push_str(&format!(
            "; {workers} workers share {} core(s)",
            usable.len()
        ));
        return finding(
            Severity::Note,
            "cores",
            detail,
            "one worker per core is the design: set workers = \"auto\" or list more cores in [server.runtime] cpus".into(),
        );
    }
    if snapshot.server.runtime.sqpoll_idle.is_some() && workers >= host.online_cpus.len() {
        return finding(
            Severity::Note,
            "cores",
            detail,
            "with sqpoll each worker has a kernel polling thread that spins while busy: leave cores for them (fewer workers or cpus)".into(),
        );
    }
    finding(Severity::Ok, "cores", detail, String::new())
}

fn descriptors(snapshot: &Snapshot, host: &Host, workers: usize) -> Finding {
    let estimate = DescriptorEstimate::of(snapshot, workers);
    let Some(limit) = host.nofile else {
        return finding(
            Severity::Note,
            "descriptors",
            "cannot read RLIMIT_NOFILE".into(),
            String::new(),
        );
    };
    let soft = host
        .nofile_soft
        .filter(|s| *s < limit)
        .map(|s| format!(" (soft {s}, raised to it at start)"))
        .unwrap_or_default();
    if estimate.total() <= limit {
        return finding(
            Severity::Ok,
            "descriptors",
            format!("up to {} needed, limit {limit}{soft}", estimate.total()),
            String::new(),
        );
    }
    finding(
        Severity::Limit,
        "descriptors",
        format!(
            "up to {} needed, but the limit (ulimit -n, hard RLIMIT_NOFILE) is {limit}{soft}",
            estimate.explain()
        ),
        format!(
            "raise it (ulimit -Hn/-n, systemd LimitNOFILE=, docker --ulimit nofile=) to {} or more, or lower max_connections_per_worker to {} or less",
            estimate.total(),
            estimate.connections_that_fit(limit)
        ),
    )
}

fn listen_backlog(snapshot: &Snapshot, host: &Host) -> Finding {
    let backlog = snapshot.server.listen_backlog as u64;
    let Some(somaxconn) = host.somaxconn else {
        return finding(
            Severity::Note,
            "listen backlog",
            "cannot read net.core.somaxconn".into(),
            String::new(),
        );
    };
    if backlog > somaxconn {
        return finding(
            Severity::Limit,
            "listen backlog",
            format!(
                "listen_backlog = {backlog}, but net.core.somaxconn = {somaxconn}: the kernel caps each listener's queue at {somaxconn}, and connections past it are dropped in a burst"
            ),
            format!(
                "sysctl -w net.core.somaxconn={backlog} (and net.ipv4.tcp_max_syn_backlog), or lower listen_backlog to {somaxconn}"
            ),
        );
    }
    let syn = host.tcp_max_syn_backlog.unwrap_or(u64::MAX);
    if syn < backlog {
        return finding(
            Severity::Note,
            "listen backlog",
            format!(
                "listen_backlog = {backlog} within net.core.somaxconn = {somaxconn}; net.ipv4.tcp_max_syn_backlog = {syn} bounds half-open connections below it (SYN cookies take over past it)"
            ),
            format!("sysctl -w net.ipv4.tcp_max_syn_backlog={backlog} for bursts of new connections"),
        );
    }
    finding(
        Severity::Ok,
        "listen backlog",
        format!("listen_backlog = {backlog} within net.core.somaxconn = {somaxconn}"),
        String::new(),
    )
}

fn io_uring(snapshot: &Snapshot, host: &Host) -> Finding {
    let runtime = &snapshot.server.runtime;
    let disabled = match host.io_uring_disabled {
        Some(0) | None => String::new(),
        Some(v) => format!(" (kernel.io_uring_disabled = {v})"),
    };
    match (&host.io_uring_setup, runtime.driver) {
        (_, Driver::Epoll) => finding(
            Severity::Ok,
            "io_uring",
            "not used: driver = \"epoll\"".into(),
            String::new(),
        ),
        (Ok(()), _) => finding(
            Severity::Ok,
            "io_uring",
            format!(
                "a ring of {} entries sets up here{disabled}",
                runtime.ring_entries
            ),
            String::new(),
        ),
        (Err(e), driver) => {
            let cause = if e.contains("Operation not permitted") {
                "blocked: kernel.io_uring_disabled, or a container's seccomp profile (Docker's default blocks io_uring since 25.0)"
            } else if e.contains("Cannot allocate memory") {
                "refused for memory (locked-memory limit on kernels before 5.12, or no contiguous pages)"
            } else {
                "refused"
            };
            let severity = if driver == Driver::IoUring {
                Severity::Limit
            } else {
                Severity::Note
            };
            finding(
                severity,
                "io_uring",
                format!(
                    "a ring of {} entries does not set up here: {e}{disabled}; {cause}",
                    runtime.ring_entries
                ),
                if driver == Driver::IoUring {
                    "driver = \"io_uring\" will fail start-up: allow io_uring (sysctl kernel.io_uring_disabled=0, a seccomp profile that permits io_uring_setup/enter/register) or use driver = \"auto\"".into()
                } else {
                    "workers fall back to epoll (more syscalls per request: docs/tuning.md); allow io_uring to get it back".into()
                },
            )
        }
    }
}

/// Bytes of one ring's shared memory: 64-byte SQEs, twice as many 16-byte CQEs, the
/// SQ index array, rounded up to pages.
fn ring_bytes(entries: u32) -> u64 {
    let e = entries as u64;
    (e * 64 + 2 * e * 16 + e * 4 + 4096).div_ceil(4096) * 4096
}

fn locked_memory(snapshot: &Snapshot, host: &Host, workers: usize) -> Finding {
    let runtime = &snapshot.server.runtime;
    let rings = ring_bytes(runtime.ring_entries) * (workers as u64 + 1);
    let charged_to_memlock = matches!(host.kernel_version, Some(v) if v < (5, 12));
    let limit = host
        .memlock
        .map(|b| format!("{} KiB", b / 1024))
        .unwrap_or_else(|| "unlimited".into());
    if runtime.driver == Driver::Epoll {
        return finding(
            Severity::Ok,
            "locked memory",
            "no rings: driver = \"epoll\"".into(),
            String::new(),
        );
    }
    if !charged_to_memlock {
        return finding(
            Severity::Ok,
            "locked memory",
            format!(
                "rings take about {} KiB; kernel {} charges them to the memory cgroup, not RLIMIT_MEMLOCK ({limit})",
                rings / 1024,
                host.kernel
            ),
            String::new(),
        );
    }
    match host.memlock {
        Some(bytes) if bytes < rings => finding(
            if runtime.driver == Driver::IoUring {
                Severity::Limit
            } else {
                Severity::Note
            },
            "locked memory",
            format!(
                "rings need about {} KiB locked, RLIMIT_MEMLOCK is {limit} (kernel {} counts rings against it)",
                rings / 1024,
                host.kernel
            ),
            "raise it (ulimit -l, systemd LimitMEMLOCK=) or lower [server.runtime] ring_entries".into(),
        ),
        _ => finding(
            Severity::Ok,
            "locked memory",
            format!(
                "rings need about {} KiB locked, RLIMIT_MEMLOCK is {limit}",
                rings / 1024
            ),
            String::new(),
        ),
    }
}

fn huge_pages(host: &Host) -> Finding {
    match host.thp.as_deref() {
        Some("always") => finding(
            Severity::Note,
            "transparent huge pages",
            "always: khugepaged may back sparse per-connection memory with 2 MiB pages, so resident memory grows with idle connections".into(),
            "echo madvise > /sys/kernel/mm/transparent_hugepage/enabled (the gateway does not ask for huge pages)".into(),
        ),
        Some(mode) => finding(
            Severity::Ok,
            "transparent huge pages",
            mode.to_string(),
            String::new(),
        ),
        None => finding(
            Severity::Ok,
            "transparent huge pages",
            "not available".into(),
            String::new(),
        ),
    }
}

fn local_ports(snapshot: &Snapshot, host: &Host, workers: usize) -> Finding {
    let Some((low, high)) = host.local_ports else {
        return finding(
            Severity::Note,
            "local ports",
            "cannot read net.ipv4.ip_local_port_range".into(),
            String::new(),
        );
    };
    let range = high.saturating_sub(low) + 1;
    if snapshot.upstreams.is_empty() {
        return finding(
            Severity::Ok,
            "local ports",
            format!("{low}-{high}; no upstreams"),
            String::new(),
        );
    }
    let per_endpoint =
        (snapshot.server.limits.max_connections_per_worker as u64).saturating_mul(workers as u64);
    let detail = format!(
        "{low}-{high} ({range} ports): at most {range} connections to one endpoint at a time, counting those in TIME_WAIT (60 s after we close one); the configuration may open up to {per_endpoint} to one endpoint"
    );
    if per_endpoint > range {
        return finding(
            Severity::Note,
            "local ports",
            detail,
            "widen it (sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"), spread load over more endpoints, and keep upstream connections pooled (max_idle_per_endpoint)".into(),
        );
    }
    finding(Severity::Ok, "local ports", detail, String::new())
}

fn interrupts(snapshot: &Snapshot, host: &Host) -> Finding {
    if host.nic_irqs.is_empty() {
        return finding(
            Severity::Ok,
            "interrupts",
            "no network interrupt lines visible (container, or no MSI device)".into(),
            String::new(),
        );
    }
    let workers = usable_cpus(snapshot, host);
    let mut on_workers = Vec::new();
    let mut shown = Vec::new();
    for (name, cores) in &host.nic_irqs {
        shown.push(format!("{name} -> {}", list(cores)));
        if cores.iter().any(|c| workers.contains(c)) {
            on_workers.push(name.clone());
        }
    }
    let detail = format!("network interrupts: {}", shown.join(", "));
    if on_workers.is_empty() || workers.len() >= host.online_cpus.len() {
        // Every core runs a worker: the interrupts must land on one of them.
        return finding(Severity::Ok, "interrupts", detail, String::new());
    }
    finding(
        Severity::Note,
        "interrupts",
        format!("{detail}; {} land on worker cores while other cores are free", on_workers.join(", ")),
        "steer them to cores without workers (/proc/irq/N/smp_affinity_list, irqbalance --banirq) or leave those cores out of [server.runtime] cpus".into(),
    )
}
