//! Validation and compilation of `[[rate_limit]]`, `[fleet]`, `[rate_limit_headers]`
//! and each route's `rate_limits` list.

use std::collections::HashMap;
use std::time::Duration;

use toml::Spanned;

use super::error::Problems;
use super::schema::{
    FleetSection, HeaderStyleSetting, KeySetting, OnRedisFailureSetting, RateLimitHeadersSection,
    RateLimitSection, RateSetting, ScopeSetting,
};
use crate::limit::policy::{check_rate, parse_rate};
use crate::limit::{
    Fallback, FleetSettings, HeaderSettings, HeaderStyle, KeyPart, OnRedisFailure, Policy,
    RateLimitSettings, RouteLimits, Scope,
};

const DEFAULT_MAX_KEYS: u64 = 100_000;

pub(crate) fn compile(
    sections: Vec<RateLimitSection>,
    fleet: Option<FleetSection>,
    headers: Option<RateLimitHeadersSection>,
    p: &mut Problems<'_>,
) -> RateLimitSettings {
    let fleet = fleet.map(|f| fleet_settings(f, p));
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut policies = Vec::new();
    for s in sections {
        if let Some(policy) = policy(s, fleet.is_some(), &mut seen, p) {
            policies.push(policy);
        }
    }
    let headers = headers.unwrap_or_default();
    RateLimitSettings {
        policies,
        fleet,
        headers: HeaderSettings {
            style: match headers.style {
                HeaderStyleSetting::Draft => HeaderStyle::Draft,
                HeaderStyleSetting::Legacy => HeaderStyle::Legacy,
                HeaderStyleSetting::None => HeaderStyle::None,
            },
            on_allowed: headers.on_allowed,
        },
    }
}

fn policy(
    s: RateLimitSection,
    have_fleet: bool,
    seen: &mut HashMap<String, ()>,
    p: &mut Problems<'_>,
) -> Option<Policy> {
    let name = s.name.get_ref().clone();
    if !is_policy_name(&name) {
        p.at(
            s.name.span(),
            format!("rate_limit name \"{name}\" must be 1 to 64 letters, digits, '-', '_' or '.'"),
        );
    } else if seen.insert(name.clone(), ()).is_some() {
        p.at(
            s.name.span(),
            format!("duplicate rate_limit name \"{name}\""),
        );
    }
    let texts: Vec<&str> = match s.key.get_ref() {
        KeySetting::One(k) => vec![k.as_str()],
        KeySetting::Parts(ks) => ks.iter().map(String::as_str).collect(),
    };
    if texts.is_empty() {
        p.at(s.key.span(), "key must name at least one part");
    }
    let mut key = Vec::new();
    for text in texts {
        match KeyPart::parse(text) {
            Ok(part) if key.contains(&part) => {
                p.at(s.key.span(), format!("key part \"{text}\" is given twice"));
            }
            Ok(part) => key.push(part),
            Err(e) => p.at(s.key.span(), e),
        }
    }
    let rate = match s.rate.get_ref() {
        RateSetting::PerSecond(n) => check_rate(*n),
        RateSetting::Text(t) => parse_rate(t),
    };
    let rate = match rate {
        Ok(r) => r,
        Err(e) => {
            p.at(s.rate.span(), e);
            1.0
        }
    };
    let burst = match &s.burst {
        Some(b) => {
            let v = *b.get_ref();
            if !(1.0..=1e9).contains(&v) || v.fract() != 0.0 {
                p.at(b.span(), "burst must be a whole number from 1 to 1e9");
            }
            v.clamp(1.0, 1e9).floor()
        }
        None => rate.ceil().max(1.0),
    };
    let scope = match s.scope.as_ref().map(|s| *s.get_ref()) {
        None | Some(ScopeSetting::Instance) => Scope::Instance,
        Some(ScopeSetting::Worker) => Scope::Worker,
        Some(ScopeSetting::Fleet) => Scope::Fleet,
    };
    if scope == Scope::Fleet && !have_fleet {
        if let Some(sc) = &s.scope {
            p.at(
                sc.span(),
                format!("rate_limit \"{name}\" has scope = \"fleet\", which needs a [fleet] section naming the shared Redis"),
            );
        }
    }
    let before_auth = s.before_auth.as_ref().is_some_and(|b| *b.get_ref());
    if before_auth && key.iter().any(|k| matches!(k, KeyPart::Claim(_))) {
        if let Some(b) = &s.before_auth {
            p.at(
                b.span(),
                format!("rate_limit \"{name}\" keys on a claim, which exists only after authentication: drop before_auth"),
            );
        }
    }
    let fallback = match &s.fallback {
        None => Fallback::Key(KeyPart::Ip),
        Some(f) => match Fallback::parse(f.get_ref()) {
            Ok(fb) => fb,
            Err(e) => {
                p.at(f.span(), e);
                Fallback::Skip
            }
        },
    };
    let max_keys = match &s.max_keys {
        Some(m) => {
            let v = *m.get_ref();
            if !(1..=10_000_000).contains(&v) {
                p.at(m.span(), "max_keys must be from 1 to 10000000");
            }
            v.clamp(1, 10_000_000)
        }
        None => DEFAULT_MAX_KEYS,
    };
    Some(Policy {
        name,
        key,
        fallback,
        rate,
        burst,
        scope,
        before_auth,
        max_keys: max_keys as usize,
    })
}

fn fleet_settings(f: FleetSection, p: &mut Problems<'_>) -> FleetSettings {
    let url = f.redis.get_ref();
    if !url.starts_with("redis://") || redis::Client::open(url.as_str()).is_err() {
        p.at(
            f.redis.span(),
            format!("redis \"{url}\" must be an address like redis://127.0.0.1:6379 (optionally redis://:password@host:port/db)"),
        );
    }
    let ms = |v: &Spanned<u64>, what: &str, p: &mut Problems<'_>| {
        let x = *v.get_ref();
        if !(1..=60_000).contains(&x) {
            p.at(v.span(), format!("{what} must be from 1 to 60000"));
        }
        Duration::from_millis(x.clamp(1, 60_000))
    };
    let key_prefix = f.key_prefix.get_ref().clone();
    if key_prefix.len() > 128 || key_prefix.contains(char::is_whitespace) {
        p.at(
            f.key_prefix.span(),
            "key_prefix must be at most 128 characters without spaces",
        );
    }
    FleetSettings {
        redis: url.clone(),
        sync_interval: ms(&f.sync_interval_ms, "sync_interval_ms", p),
        redis_timeout: ms(&f.redis_timeout_ms, "redis_timeout_ms", p),
        on_redis_failure: match f.on_redis_failure {
            OnRedisFailureSetting::Open => OnRedisFailure::Open,
            OnRedisFailureSetting::Closed => OnRedisFailure::Closed,
            OnRedisFailureSetting::Instance => OnRedisFailure::Instance,
        },
        key_prefix,
    }
}

/// Resolves a route's `rate_limits` names; before-auth and after-auth lists, each
/// most specific first (the operator's order breaks ties).
pub(crate) fn route_limits(
    route: &str,
    names: &[Spanned<String>],
    settings: &RateLimitSettings,
    p: &mut Problems<'_>,
) -> RouteLimits {
    let mut chosen: Vec<usize> = Vec::new();
    for n in names {
        match settings
            .policies
            .iter()
            .position(|policy| &policy.name == n.get_ref())
        {
            Some(i) if chosen.contains(&i) => p.at(
                n.span(),
                format!(
                    "route \"{route}\" names rate_limit \"{}\" twice",
                    n.get_ref()
                ),
            ),
            Some(i) => chosen.push(i),
            None => p.at(
                n.span(),
                format!(
                    "route \"{route}\" names unknown rate_limit \"{}\"",
                    n.get_ref()
                ),
            ),
        }
    }
    chosen.sort_by_key(|&i| std::cmp::Reverse(settings.policies[i].specificity()));
    let (before_auth, after_auth) = chosen
        .into_iter()
        .partition(|&i| settings.policies[i].before_auth);
    RouteLimits {
        before_auth,
        after_auth,
    }
}

fn is_policy_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

#[cfg(test)]
mod tests {
    use crate::config::parse;
    use crate::limit::{HeaderStyle, KeyPart, OnRedisFailure, Scope};

    const BASE: &str = r#"
[[route]]
name = "api"
path_prefix = "/"
respond = { status = 200 }
"#;

    fn errors(text: &str) -> String {
        match parse("t.toml", text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_full_example_compiles() {
        let text = r#"
[[route]]
name = "api"
path_prefix = "/"
respond = { status = 200 }
rate_limits = ["global-ceiling", "per-user", "per-ip"]

[[rate_limit]]
name = "per-ip"
key = "ip"
rate = 100
burst = 200
before_auth = true

[[rate_limit]]
name = "per-user"
key = ["claim:sub", "route"]
rate = "6000/m"
scope = "fleet"

[[rate_limit]]
name = "global-ceiling"
key = "global"
rate = 10000
scope = "worker"

[fleet]
redis = "redis://127.0.0.1:6380"
sync_interval_ms = 20
on_redis_failure = "closed"

[rate_limit_headers]
style = "legacy"
on_allowed = true
"#;
        let snap = parse("t.toml", text).unwrap();
        let rl = &snap.rate_limits;
        assert_eq!(rl.policies.len(), 3);
        let per_user = &rl.policies[1];
        assert_eq!(per_user.rate, 100.0);
        assert_eq!(
            per_user.burst, 100.0,
            "burst defaults to one second of rate"
        );
        assert_eq!(per_user.scope, Scope::Fleet);
        assert_eq!(
            per_user.key,
            vec![KeyPart::Claim("sub".into()), KeyPart::Route]
        );
        assert_eq!(rl.policies[0].scope, Scope::Instance, "the default scope");
        let fleet = rl.fleet.as_ref().unwrap();
        assert_eq!(fleet.on_redis_failure, OnRedisFailure::Closed);
        assert_eq!(fleet.redis_timeout.as_millis(), 50);
        assert_eq!(rl.headers.style, HeaderStyle::Legacy);
        assert!(rl.headers.on_allowed);
        let limits = &snap.routes[0].limits;
        assert_eq!(limits.before_auth, vec![0]);
        assert_eq!(
            limits.after_auth,
            vec![1, 2],
            "most specific first, whatever the listed order"
        );
    }

    #[test]
    fn mistakes_are_reported_at_their_key() {
        let e = errors(&format!(
            r#"{BASE}
[[rate_limit]]
name = "a"
key = "user"
rate = "10/d"

[[rate_limit]]
name = "b"
key = "claim:sub"
rate = 1
before_auth = true
scope = "fleet"

[[rate_limit]]
name = "b"
key = "ip"
rate = 0
burst = 0.5
fallback = "header:x"
"#
        ));
        for want in [
            "t.toml:9:7: key \"user\" must be",
            "t.toml:10:8: rate unit \"/d\"",
            "t.toml:16:15: rate_limit \"b\" keys on a claim",
            "t.toml:17:9: rate_limit \"b\" has scope = \"fleet\", which needs a [fleet]",
            "t.toml:20:8: duplicate rate_limit name \"b\"",
            "t.toml:22:8: rate must be greater than 0",
            "t.toml:23:9: burst must be a whole number",
            "t.toml:24:12: fallback \"header:x\" must be",
        ] {
            assert!(e.contains(want), "missing {want:?} in:\n{e}");
        }
    }

    #[test]
    fn routes_name_existing_policies_once() {
        let e = errors(
            r#"
[[route]]
name = "api"
path_prefix = "/"
respond = { status = 200 }
rate_limits = ["nope", "x", "x"]

[[rate_limit]]
name = "x"
key = "ip"
rate = 1
"#,
        );
        assert!(
            e.contains("t.toml:6:16: route \"api\" names unknown rate_limit \"nope\""),
            "{e}"
        );
        assert!(
            e.contains("t.toml:6:29: route \"api\" names rate_limit \"x\" twice"),
            "{e}"
        );
    }

    #[test]
    fn fleet_and_header_sections_are_checked() {
        let e = errors(&format!(
            r#"{BASE}
[fleet]
redis = "http://x"
sync_interval_ms = 0
"#
        ));
        assert!(e.contains("t.toml:8:9: redis \"http://x\" must be"), "{e}");
        assert!(e.contains("t.toml:9:20: sync_interval_ms must be"), "{e}");
        let e = errors(&format!(
            r#"{BASE}
[fleet]
on_redis_failure = "maybe"
"#
        ));
        assert!(e.contains("t.toml:8:20: unknown variant `maybe`"), "{e}");
        let e = errors(&format!(
            r#"{BASE}
[rate_limit_headers]
colour = 1
"#
        ));
        assert!(e.contains("t.toml:8:1: unknown field `colour`"), "{e}");
        let e = errors(&format!(
            r#"{BASE}
[rate_limit_headers]
style = "ietf"
"#
        ));
        assert!(e.contains("unknown variant `ietf`"), "{e}");
    }
}
