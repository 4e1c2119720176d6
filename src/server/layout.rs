//! Which worker runs on which core.
//!
//! Pinning respects the CPU set the process was started with (taskset, cgroup
//! cpusets): "auto" means one worker per allowed core, and worker i runs on the
//! i-th allowed core (wrapping around when there are more workers than cores).

use core_affinity::CoreId;

/// The core for each worker; `None` entries are not pinned.
pub fn worker_cores(workers: Option<usize>, pin: bool) -> Vec<Option<CoreId>> {
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    let count = workers.unwrap_or(allowed.len()).max(1);
    (0..count)
        .map(|i| {
            if pin && !allowed.is_empty() {
                Some(allowed[i % allowed.len()])
            } else {
                None
            }
        })
        .collect()
}
