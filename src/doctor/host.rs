//! What `portico doctor` reads about the host: the CPU set, resource limits, the
//! sysctls an edge proxy depends on, io_uring's availability and where the network
//! card's interrupts go. Read once, from /proc and /sys and getrlimit(2); a value the
//! host does not expose is `None` and its check says so.

use std::path::Path;

/// A reading of the host.
#[derive(Clone, Debug)]
pub struct Host {
    pub hostname: String,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: String,
    /// (major, minor) of `kernel`.
    pub kernel_version: Option<(u32, u32)>,
    /// Cores online on the host (`/sys/devices/system/cpu/online`).
    pub online_cpus: Vec<usize>,
    /// Cores this process may run on (sched_getaffinity: taskset, cgroup cpuset).
    pub allowed_cpus: Vec<usize>,
    /// The descriptor limit `portico run` would have (hard RLIMIT_NOFILE).
    pub nofile: Option<u64>,
    /// Soft RLIMIT_NOFILE as started (what `ulimit -n` shows).
    pub nofile_soft: Option<u64>,
    /// RLIMIT_MEMLOCK in bytes (`None` = unlimited or unreadable).
    pub memlock: Option<u64>,
    pub somaxconn: Option<u64>,
    pub tcp_max_syn_backlog: Option<u64>,
    /// `net.ipv4.ip_local_port_range`, both ends inclusive.
    pub local_ports: Option<(u64, u64)>,
    /// `kernel.io_uring_disabled` (0 allowed, 1 privileged only, 2 off); `None` on
    /// kernels before 6.6, which do not have it.
    pub io_uring_disabled: Option<u64>,
    /// Setting up a ring of the configured size here: `Ok` or the kernel's error.
    pub io_uring_setup: Result<(), String>,
    /// Transparent huge pages mode (the bracketed word of
    /// `/sys/kernel/mm/transparent_hugepage/enabled`).
    pub thp: Option<String>,
    /// Network interrupts: (IRQ name, cores it is delivered to).
    pub nic_irqs: Vec<(String, Vec<usize>)>,
}

impl Host {
    /// Reads this host. `ring_entries` is the ring size to try setting up.
    pub fn read(ring_entries: u32) -> Host {
        let kernel = text("/proc/sys/kernel/osrelease").unwrap_or_default();
        Host {
            hostname: text("/proc/sys/kernel/hostname").unwrap_or_else(|| "this host".into()),
            kernel_version: kernel_version(&kernel),
            kernel,
            online_cpus: text("/sys/devices/system/cpu/online")
                .and_then(|t| crate::config::parse_cpu_list(&t).ok())
                .unwrap_or_default(),
            allowed_cpus: core_affinity::get_core_ids()
                .unwrap_or_default()
                .iter()
                .map(|c| c.id)
                .collect(),
            nofile: crate::server::usable_limit().ok(),
            nofile_soft: rlimit(libc::RLIMIT_NOFILE).map(|(soft, _)| soft),
            memlock: rlimit(libc::RLIMIT_MEMLOCK)
                .map(|(soft, _)| soft)
                .filter(|v| *v != libc::RLIM_INFINITY),
            somaxconn: number("/proc/sys/net/core/somaxconn"),
            tcp_max_syn_backlog: number("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
            local_ports: text("/proc/sys/net/ipv4/ip_local_port_range").and_then(|t| {
                let mut it = t.split_whitespace().filter_map(|v| v.parse().ok());
                Some((it.next()?, it.next()?))
            }),
            io_uring_disabled: number("/proc/sys/kernel/io_uring_disabled"),
            io_uring_setup: io_uring::IoUring::new(ring_entries)
                .map(|_| ())
                .map_err(|e| e.to_string()),
            thp: text("/sys/kernel/mm/transparent_hugepage/enabled").and_then(|t| {
                let start = t.find('[')?;
                let end = t[start..].find(']')? + start;
                Some(t[start + 1..end].to_string())
            }),
            nic_irqs: nic_irqs(),
        }
    }
}

fn text(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_string())
}

fn number(path: &str) -> Option<u64> {
    text(path)?.parse().ok()
}

fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

fn rlimit(resource: libc::__rlimit_resource_t) -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of the call.
    if unsafe { libc::getrlimit(resource, &mut lim) } != 0 {
        return None;
    }
    Some((lim.rlim_cur, lim.rlim_max))
}

/// Interrupt lines of the network interfaces' devices (their PCI device's
/// `msi_irqs`, or the virtio device's parent's), except configuration-change lines,
/// and the cores each is delivered to (`/proc/irq/N/effective_affinity_list`).
fn nic_irqs() -> Vec<(String, Vec<usize>)> {
    let names = irq_names();
    let mut out = Vec::new();
    let Ok(interfaces) = std::fs::read_dir("/sys/class/net") else {
        return out;
    };
    for interface in interfaces.flatten() {
        let Ok(device) = std::fs::canonicalize(interface.path().join("device")) else {
            continue; // lo, bridges, ifb: no device of their own
        };
        let msi = [device.join("msi_irqs"), device.join("../msi_irqs")];
        let Some(irqs) = msi.iter().find_map(|d| std::fs::read_dir(d).ok()) else {
            continue;
        };
        let mut numbers: Vec<u32> = irqs
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        for irq in numbers {
            let name = names
                .iter()
                .find(|(n, _)| *n == irq)
                .map(|(_, name)| name.clone())
                .unwrap_or_else(|| format!("irq {irq}"));
            if name.ends_with("-config") {
                continue;
            }
            let affinity = Path::new("/proc/irq")
                .join(irq.to_string())
                .join("effective_affinity_list");
            let cores = std::fs::read_to_string(&affinity)
                .ok()
                .and_then(|t| crate::config::parse_cpu_list(t.trim()).ok())
                .unwrap_or_default();
            out.push((name, cores));
        }
    }
    out
}

/// IRQ number → the name `/proc/interrupts` gives it (its last column).
fn irq_names() -> Vec<(u32, String)> {
    let Some(table) = text("/proc/interrupts") else {
        return Vec::new();
    };
    table
        .lines()
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            Some((
                irq.parse().ok()?,
                rest.split_whitespace().last()?.to_string(),
            ))
        })
        .collect()
}
