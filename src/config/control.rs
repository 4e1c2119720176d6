//! The compiled control-plane settings of a snapshot: how a reload tries the new
//! configuration (`[reload]`), and what one configuration may hold
//! (`[config_limits]`). docs/control-plane.md explains each decision they drive.

use std::time::Duration;

/// `[reload]`: how a new configuration is tried on part of the workers before all
/// of them take it, and whether the file is watched.
#[derive(Clone, Debug, PartialEq)]
pub struct ReloadSettings {
    /// Try a new configuration on `canary_workers` workers first (`canary`); false:
    /// every worker takes it at once.
    pub canary: bool,
    /// How many workers try it (the first ones); at least one worker always stays
    /// on the running configuration to compare with, when there are two or more.
    pub canary_workers: usize,
    /// How long the canary runs before the verdict (`canary_ms`).
    pub canary_window: Duration,
    /// End the window early once the canary workers served this many requests
    /// (`canary_requests`; 0: the window is time only).
    pub canary_requests: u64,
    /// The most the canary's share of requests answered with a gateway-made 5xx may
    /// exceed the other workers' share (absolute, 0 to 1).
    pub max_error_increase: f64,
    /// The most the canary's share of each kind of local rejection (no route, auth,
    /// rate limit, shed, TLS handshake) may exceed the other workers' (0 to 1).
    pub max_rejection_increase: f64,
    /// Watch the configuration file (its directory) and reload when it changes.
    pub watch: bool,
    /// Changes closer together than this make one reload (`watch_debounce_ms`).
    pub watch_debounce: Duration,
}

impl Default for ReloadSettings {
    fn default() -> Self {
        ReloadSettings {
            canary: true,
            canary_workers: 1,
            canary_window: Duration::from_millis(5_000),
            canary_requests: 0,
            max_error_increase: 0.05,
            max_rejection_increase: 0.25,
            watch: true,
            watch_debounce: Duration::from_millis(200),
        }
    }
}

/// `[config_limits]`: a configuration holding more than these is refused (at
/// start-up, by `portico check`, and by a reload), so an oversized generated file
/// is refused rather than obeyed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigLimits {
    pub max_file_bytes: u64,
    pub max_routes: u64,
    pub max_upstreams: u64,
    /// Endpoints over all upstreams (after name resolution).
    pub max_endpoints: u64,
    pub max_rate_limits: u64,
}

impl Default for ConfigLimits {
    fn default() -> Self {
        ConfigLimits {
            max_file_bytes: 4 * 1024 * 1024,
            max_routes: 10_000,
            max_upstreams: 1_000,
            max_endpoints: 10_000,
            max_rate_limits: 1_000,
        }
    }
}

/// Files larger than this are not read at all, whatever `max_file_bytes` says.
pub const MAX_READ_BYTES: u64 = 64 * 1024 * 1024;

/// The SHA-256 of a configuration file's text: its version as `/config` and the
/// log name it, and how a reload of an unchanged file is recognized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConfigHash(pub [u8; 32]);

impl ConfigHash {
    /// The hash of `text`.
    pub fn of(text: &str) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        ConfigHash(out)
    }

    /// All 64 hex digits.
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The first 12 hex digits, for log lines.
    pub fn short(&self) -> String {
        self.hex()[..12].to_string()
    }
}
