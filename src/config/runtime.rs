//! `[server.runtime]` checked: the driver, the cores, the ring, the buffers and the
//! accepts of every worker. Whether the listed cores are in the process's CPU set is
//! known only where it runs: start-up (`server::layout`) and `portico doctor` check
//! that; here the syntax and the ranges.

use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::schema_runtime::RuntimeSection;
use super::values::in_range;

/// Which event-loop driver a worker runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    /// io_uring; epoll when io_uring is unavailable or the ring is refused (logged).
    Auto,
    /// io_uring only: a worker whose ring is refused fails start-up.
    IoUring,
    /// epoll only.
    Epoll,
}

impl Driver {
    /// The name as `[server.runtime] driver` writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Auto => "auto",
            Driver::IoUring => "io_uring",
            Driver::Epoll => "epoll",
        }
    }
}

/// How each worker's runtime is built (all workers alike: docs/tuning.md says why
/// there are no per-worker overrides).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeSettings {
    pub driver: Driver,
    /// Core numbers from `cpus`, ascending, without repeats; `None` = all allowed.
    pub cpus: Option<Vec<usize>>,
    /// Submission queue entries, 256 to 32768, a power of two (the kernel rounds up).
    pub ring_entries: u32,
    /// `Some(idle)`: SQPOLL with this idle time before the poller sleeps.
    pub sqpoll_idle: Option<Duration>,
    /// Bytes; first read buffer of a client connection.
    pub read_buffer_bytes: usize,
    /// Bytes; the response-head write buffer of a client connection.
    pub write_buffer_bytes: usize,
    /// Accept operations each worker keeps waiting per listener.
    pub accepts_in_flight: usize,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        RuntimeSettings {
            driver: Driver::Auto,
            cpus: None,
            ring_entries: 1024,
            sqpoll_idle: None,
            read_buffer_bytes: 4096,
            write_buffer_bytes: 4096,
            accepts_in_flight: 1,
        }
    }
}

/// Most cores `cpus` may name (the kernel's default CONFIG_NR_CPUS upper range).
const MAX_CPU: usize = 8191;

/// Checks `[server.runtime]`, recording each problem at its key.
pub(super) fn compile(r: &RuntimeSection, p: &mut Problems<'_>) -> RuntimeSettings {
    let driver = match r.driver.get_ref().as_str() {
        "auto" => Driver::Auto,
        "io_uring" => Driver::IoUring,
        "epoll" => Driver::Epoll,
        other => {
            p.at(
                r.driver.span(),
                format!("driver must be \"auto\", \"io_uring\" or \"epoll\", not \"{other}\""),
            );
            Driver::Auto
        }
    };
    let cpus = r
        .cpus
        .as_ref()
        .and_then(|c| match parse_cpu_list(c.get_ref()) {
            Ok(list) => Some(list),
            Err(e) => {
                p.at(c.span(), format!("cpus \"{}\": {e}", c.get_ref()));
                None
            }
        });
    let ring_entries = in_range(&r.ring_entries, 256, 32768, p) as u32;
    if !ring_entries.is_power_of_two() {
        p.at(
            r.ring_entries.span(),
            format!(
                "ring_entries must be a power of two (the kernel rounds {ring_entries} up to {})",
                ring_entries.next_power_of_two()
            ),
        );
    }
    let sqpoll = *r.sqpoll_idle_ms.get_ref();
    let sqpoll_idle = if sqpoll == 0 {
        None
    } else {
        Some(Duration::from_millis(in_range(
            &r.sqpoll_idle_ms,
            1,
            60_000,
            p,
        )))
    };
    if sqpoll_idle.is_some() && driver == Driver::Epoll {
        p.at(
            r.sqpoll_idle_ms.span(),
            "sqpoll_idle_ms needs io_uring, but driver is \"epoll\"",
        );
    }
    RuntimeSettings {
        driver,
        cpus,
        ring_entries,
        sqpoll_idle,
        read_buffer_bytes: in_range(&r.read_buffer_bytes, 1024, 1 << 20, p) as usize,
        write_buffer_bytes: in_range(&r.write_buffer_bytes, 512, 1 << 20, p) as usize,
        accepts_in_flight: bounded(&r.accepts_in_flight, 1, 64, p),
    }
}

fn bounded(v: &Spanned<u64>, min: u64, max: u64, p: &mut Problems<'_>) -> usize {
    in_range(v, min, max, p) as usize
}

/// Parses a Linux CPU list (`cpuset(7)`: `"0-3,6,8-9"`) into ascending, distinct
/// core numbers. Errors: empty, malformed, a reversed range, or a core past 8191.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cores = Vec::new();
    for part in text.split(',').map(str::trim) {
        if part.is_empty() {
            return Err("an empty entry (write e.g. \"0-3,6\")".into());
        }
        let (first, last) = match part.split_once('-') {
            Some((a, b)) => (core_number(a)?, core_number(b)?),
            None => {
                let n = core_number(part)?;
                (n, n)
            }
        };
        if first > last {
            return Err(format!("the range {part} runs backwards"));
        }
        cores.extend(first..=last);
    }
    cores.sort_unstable();
    cores.dedup();
    Ok(cores)
}

fn core_number(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if n <= MAX_CPU => Ok(n),
        Ok(n) => Err(format!("core {n} is past {MAX_CPU}")),
        Err(_) => Err(format!("\"{}\" is not a core number", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_cpu_list;

    #[test]
    fn cpu_lists_as_cpuset_writes_them() {
        assert_eq!(parse_cpu_list("1-3,6"), Ok(vec![1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("6, 1-2,2"), Ok(vec![1, 2, 6]));
        assert_eq!(parse_cpu_list("0"), Ok(vec![0]));
        assert!(parse_cpu_list("").is_err());
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("1,,2").is_err());
        assert!(parse_cpu_list("a").is_err());
        assert!(parse_cpu_list("9000").is_err());
    }
}
