//! Which worker runs on which core.
//!
//! Pinning respects the CPU set the process was started with (taskset, cgroup
//! cpusets): "auto" means one worker per allowed core, and worker i runs on the
//! i-th allowed core (wrapping around when there are more workers than cores).
//! `[server.runtime] cpus` narrows the cores to the ones listed, each of which must
//! be in that CPU set.

use core_affinity::CoreId;

use crate::config::ServerSettings;

/// The core for each worker; `None` entries are not pinned.
///
/// Errors: `cpus` names a core outside the process's CPU set (the message names
/// them and the set).
pub fn worker_cores(server: &ServerSettings) -> Result<Vec<Option<CoreId>>, String> {
    let allowed = core_affinity::get_core_ids().unwrap_or_default();
    let usable = match &server.runtime.cpus {
        None => allowed,
        Some(listed) => cores_within(listed, &allowed)?,
    };
    let count = server.workers.unwrap_or(usable.len()).max(1);
    Ok((0..count)
        .map(|i| {
            if (server.pin_workers || server.runtime.cpus.is_some()) && !usable.is_empty() {
                Some(usable[i % usable.len()])
            } else {
                None
            }
        })
        .collect())
}

/// The listed cores, each checked against `allowed`. Errors name the ones outside.
pub fn cores_within(listed: &[usize], allowed: &[CoreId]) -> Result<Vec<CoreId>, String> {
    let outside: Vec<String> = listed
        .iter()
        .filter(|c| !allowed.iter().any(|a| a.id == **c))
        .map(|c| c.to_string())
        .collect();
    if !outside.is_empty() {
        let set: Vec<String> = allowed.iter().map(|a| a.id.to_string()).collect();
        return Err(format!(
            "[server.runtime] cpus names core(s) {} outside the CPU set this process may run on ({}); \
             list cores of that set, or start the process with a CPU set that holds them (taskset, cgroup cpuset)",
            outside.join(","),
            set.join(",")
        ));
    }
    Ok(listed.iter().map(|&id| CoreId { id }).collect())
}
