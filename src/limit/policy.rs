//! A compiled rate-limit policy, and the parsing of its `key` and `rate` strings.
//!
//! The config layer (`src/config/rate_limits.rs`) reads `[[rate_limit]]`, `[fleet]`
//! and `[rate_limit_headers]` and builds these; the worker's [`LocalLimiter`] and
//! the [`GlobalLimiter`] thread only read them.
//!
//! [`LocalLimiter`]: super::LocalLimiter
//! [`GlobalLimiter`]: super::GlobalLimiter

use std::time::Duration;

/// Everything about rate limiting in one snapshot.
#[derive(Debug, Default)]
pub struct RateLimitSettings {
    /// All `[[rate_limit]]` policies; routes refer to them by index.
    pub policies: Vec<Policy>,
    /// `[fleet]`, present when a policy has `scope = "fleet"`.
    pub fleet: Option<FleetSettings>,
    pub headers: HeaderSettings,
}

impl RateLimitSettings {
    /// True when some policy needs the global limiter thread (instance or fleet scope).
    pub fn needs_limiter(&self) -> bool {
        self.policies.iter().any(|p| p.scope != Scope::Worker)
    }
}

/// One `[[rate_limit]]`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// The parts of the key, in order; a composite key has several.
    pub key: Vec<KeyPart>,
    /// What a request with no value for a key part uses instead.
    pub fallback: Fallback,
    /// Tokens per second (the sustained rate).
    pub rate: f64,
    /// Bucket capacity (the one-shot spike), at least 1.
    pub burst: f64,
    pub scope: Scope,
    /// Checked before authentication (address keys; never claims).
    pub before_auth: bool,
    /// Keys kept per table (each worker, and the limiter thread); least recently
    /// used keys are evicted beyond it.
    pub max_keys: usize,
}

/// A policy's identity across configurations: its name, key, fallback, rate,
/// burst, scope, phase and table size. A reload keeps the buckets and leases of a
/// policy whose identity did not change (on the workers and in the limiter thread),
/// and starts a changed one afresh; the workers and the limiter thread name
/// policies to each other by it, never by their position in a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PolicyId(pub u64);

impl Policy {
    /// This policy's [`PolicyId`].
    pub fn id(&self) -> PolicyId {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.name.hash(&mut h);
        self.key.hash(&mut h);
        self.fallback.hash(&mut h);
        self.rate.to_bits().hash(&mut h);
        self.burst.to_bits().hash(&mut h);
        self.scope.hash(&mut h);
        self.before_auth.hash(&mut h);
        self.max_keys.hash(&mut h);
        PolicyId(h.finish())
    }

    /// How specific the key is, for ordering a route's policies: per-identity keys
    /// first, the global ceiling last, so a client refused by its own limit does not
    /// spend tokens of the shared ones.
    pub fn specificity(&self) -> u32 {
        self.key.iter().map(KeyPart::specificity).sum()
    }

    /// `q` of `RateLimit-Policy`: the bucket size.
    pub fn quota(&self) -> u64 {
        self.burst.floor() as u64
    }

    /// `w` of `RateLimit-Policy`: seconds the rate takes to fill the whole bucket.
    pub fn window_secs(&self) -> u64 {
        ((self.burst / self.rate).ceil() as u64).max(1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// A bucket per worker thread; no coordination.
    Worker,
    /// Two-stage: worker leases from the limiter thread's true bucket.
    Instance,
    /// As `Instance`, and the limiter thread takes tokens from Redis.
    Fleet,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Worker => "worker",
            Scope::Instance => "instance",
            Scope::Fleet => "fleet",
        }
    }
}

/// One part of a policy key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// The client address.
    Ip,
    /// The client's network: IPv4 masked to `v4` bits, IPv6 to `v6` bits.
    IpPrefix { v4: u8, v6: u8 },
    /// A request header (lowercase name).
    Header(String),
    /// A verified JWT claim.
    Claim(String),
    /// The route's name: one bucket per route.
    Route,
    /// One bucket for everything.
    Global,
}

impl KeyPart {
    /// Parses `ip`, `ip_prefix:/N`, `ip_prefix:/N4,/N6`, `header:NAME`, `claim:NAME`,
    /// `route` or `global`.
    pub fn parse(text: &str) -> Result<KeyPart, String> {
        match text {
            "ip" => return Ok(KeyPart::Ip),
            "route" => return Ok(KeyPart::Route),
            "global" => return Ok(KeyPart::Global),
            _ => {}
        }
        if let Some(lengths) = text.strip_prefix("ip_prefix:") {
            return parse_prefix(lengths);
        }
        if let Some(name) = text.strip_prefix("header:") {
            if crate::http::is_token(name.as_bytes()) {
                return Ok(KeyPart::Header(name.to_ascii_lowercase()));
            }
            return Err(format!("\"{text}\": \"{name}\" is not a header name"));
        }
        if let Some(name) = text.strip_prefix("claim:") {
            if !name.is_empty() && name.len() <= 128 && !name.contains(char::is_control) {
                return Ok(KeyPart::Claim(name.to_string()));
            }
            return Err(format!("\"{text}\": a claim name is needed after claim:"));
        }
        Err(format!(
            "key \"{text}\" must be ip, ip_prefix:/N, header:NAME, claim:NAME, route or global"
        ))
    }

    fn specificity(&self) -> u32 {
        match self {
            KeyPart::Header(_) | KeyPart::Claim(_) => 8,
            KeyPart::Ip => 4,
            KeyPart::IpPrefix { .. } => 2,
            KeyPart::Route => 1,
            KeyPart::Global => 0,
        }
    }

    /// Known from the connection alone, before authentication.
    pub fn is_address(&self) -> bool {
        matches!(
            self,
            KeyPart::Ip | KeyPart::IpPrefix { .. } | KeyPart::Route | KeyPart::Global
        )
    }
}

fn parse_prefix(lengths: &str) -> Result<KeyPart, String> {
    let bits = |s: &str, max: u8| -> Result<u8, String> {
        let n = s
            .trim()
            .strip_prefix('/')
            .and_then(|n| n.parse::<u8>().ok())
            .ok_or_else(|| format!("ip_prefix length \"{s}\" must look like /24"))?;
        if n == 0 || n > max {
            return Err(format!("ip_prefix length /{n} must be from /1 to /{max}"));
        }
        Ok(n)
    };
    match lengths.split_once(',') {
        Some((v4, v6)) => Ok(KeyPart::IpPrefix {
            v4: bits(v4, 32)?,
            v6: bits(v6, 128)?,
        }),
        None => {
            let n = bits(lengths, 128)?;
            Ok(KeyPart::IpPrefix {
                v4: n.min(32),
                v6: n,
            })
        }
    }
}

/// What a request with no value for a key part (a missing header or claim) uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Fallback {
    /// This key part instead (an address part: always known).
    Key(KeyPart),
    /// The policy does not apply to the request.
    Skip,
}

impl Fallback {
    pub fn parse(text: &str) -> Result<Fallback, String> {
        if text == "skip" {
            return Ok(Fallback::Skip);
        }
        match KeyPart::parse(text) {
            Ok(part) if part.is_address() => Ok(Fallback::Key(part)),
            _ => Err(format!(
                "fallback \"{text}\" must be ip, ip_prefix:/N, route, global or skip"
            )),
        }
    }
}

/// Parses a rate: `"N"` or `"N/s"` (per second), `"N/m"` (per minute), `"N/h"` (per hour).
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (number, per) = match text.split_once('/') {
        Some((n, unit)) => {
            let per = match unit.trim() {
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                other => return Err(format!("rate unit \"/{other}\" must be /s, /m or /h")),
            };
            (n.trim(), per)
        }
        None => (text.trim(), 1.0),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| format!("rate \"{text}\" must look like 100, \"100/s\" or \"6000/m\""))?;
    check_rate(n / per)
}

/// A rate in tokens per second must be positive and sane.
pub fn check_rate(per_second: f64) -> Result<f64, String> {
    if per_second.is_finite() && per_second > 0.0 && per_second <= 1e9 {
        Ok(per_second)
    } else {
        Err("rate must be greater than 0 and at most 1e9 per second".to_string())
    }
}

/// `[fleet]`: the Redis every instance shares.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetSettings {
    pub redis: String,
    pub sync_interval: Duration,
    pub redis_timeout: Duration,
    pub on_redis_failure: OnRedisFailure,
    /// Prefix of every Redis key Portico writes.
    pub key_prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRedisFailure {
    /// Admit everything a fleet policy would have checked.
    Open,
    /// Refuse everything a fleet policy checks (429).
    Closed,
    /// Enforce each fleet policy per instance, as `scope = "instance"` does.
    Instance,
}

impl OnRedisFailure {
    pub fn name(self) -> &'static str {
        match self {
            OnRedisFailure::Open => "open",
            OnRedisFailure::Closed => "closed",
            OnRedisFailure::Instance => "instance",
        }
    }
}

/// `[rate_limit_headers]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderSettings {
    pub style: HeaderStyle,
    /// Also on responses that were allowed.
    pub on_allowed: bool,
}

impl Default for HeaderSettings {
    fn default() -> Self {
        HeaderSettings {
            style: HeaderStyle::Draft,
            on_allowed: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
    Draft,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    Legacy,
    /// Only `Retry-After` on a 429.
    None,
}

/// The policies of one route, as indices into [`RateLimitSettings::policies`],
/// most specific first.
#[derive(Debug, Clone, Default)]
pub struct RouteLimits {
    pub before_auth: Vec<usize>,
    pub after_auth: Vec<usize>,
}

impl RouteLimits {
    pub fn is_empty(&self) -> bool {
        self.before_auth.is_empty() && self.after_auth.is_empty()
    }
}

/// An RFC 9110 token.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert_eq!(KeyPart::parse("ip"), Ok(KeyPart::Ip));
        assert_eq!(
            KeyPart::parse("ip_prefix:/64"),
            Ok(KeyPart::IpPrefix { v4: 32, v6: 64 })
        );
        assert_eq!(
            KeyPart::parse("ip_prefix:/24,/56"),
            Ok(KeyPart::IpPrefix { v4: 24, v6: 56 })
        );
        assert_eq!(
            KeyPart::parse("header:X-Api-Key"),
            Ok(KeyPart::Header("x-api-key".into()))
        );
        assert_eq!(
            KeyPart::parse("claim:sub"),
            Ok(KeyPart::Claim("sub".into()))
        );
        assert!(KeyPart::parse("ip_prefix:/33,/64").is_err());
        assert!(KeyPart::parse("ip_prefix:24").is_err());
        assert!(KeyPart::parse("header:bad name").is_err());
        assert!(KeyPart::parse("user").is_err());
    }

    #[test]
    fn fallbacks_are_address_keys_or_skip() {
        assert_eq!(Fallback::parse("ip"), Ok(Fallback::Key(KeyPart::Ip)));
        assert_eq!(Fallback::parse("skip"), Ok(Fallback::Skip));
        assert!(Fallback::parse("header:x").is_err());
        assert!(Fallback::parse("claim:sub").is_err());
    }

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("100"), Ok(100.0));
        assert_eq!(parse_rate("1000/s"), Ok(1000.0));
        assert_eq!(parse_rate("6000/m"), Ok(100.0));
        assert_eq!(parse_rate("36/h"), Ok(0.01));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("-1/s").is_err());
        assert!(parse_rate("10/d").is_err());
        assert!(parse_rate("many").is_err());
    }

    #[test]
    fn specificity_orders_identity_before_ceilings() {
        let p = |key: Vec<KeyPart>| Policy {
            name: "p".into(),
            key,
            fallback: Fallback::Key(KeyPart::Ip),
            rate: 1.0,
            burst: 1.0,
            scope: Scope::Instance,
            before_auth: false,
            max_keys: 10,
        };
        let user_route = p(vec![KeyPart::Claim("sub".into()), KeyPart::Route]);
        let user = p(vec![KeyPart::Claim("sub".into())]);
        let ip = p(vec![KeyPart::Ip]);
        let global = p(vec![KeyPart::Global]);
        assert!(user_route.specificity() > user.specificity());
        assert!(user.specificity() > ip.specificity());
        assert!(ip.specificity() > global.specificity());
    }

    #[test]
    fn policy_header_figures() {
        let p = Policy {
            name: "p".into(),
            key: vec![KeyPart::Ip],
            fallback: Fallback::Key(KeyPart::Ip),
            rate: 1000.0,
            burst: 5000.0,
            scope: Scope::Instance,
            before_auth: false,
            max_keys: 10,
        };
        assert_eq!(p.quota(), 5000);
        assert_eq!(p.window_secs(), 5);
    }
}
