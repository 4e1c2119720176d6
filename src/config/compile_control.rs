//! Validation of the control-plane keys: `[reload]`, `[config_limits]` (checked
//! against the file before anything expensive is compiled) and `[admin]
//! token_env`. Each problem is recorded at its key; defaults live in `control.rs`.

use std::net::SocketAddr;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::compile_resilience::number;
use super::control::{ConfigLimits, ReloadSettings};
use super::error::Problems;
use super::schema::AdminSection;
use super::schema_control::{ConfigLimitsSection, ReloadSection};
use super::Sections;

/// Compiles `[reload]` (absent: the defaults).
pub(crate) fn reload_settings(s: Option<&ReloadSection>, p: &mut Problems<'_>) -> ReloadSettings {
    let d = ReloadSettings::default();
    let Some(s) = s else { return d };
    let ms = |v: Option<&Spanned<u64>>, default: Duration, min, max, p: &mut Problems<'_>| {
        Duration::from_millis(number(v, default.as_millis() as u64, min, max, p))
    };
    ReloadSettings {
        canary: s.canary.as_ref().map_or(d.canary, |v| *v.get_ref()),
        canary_workers: number(s.canary_workers.as_ref(), 1, 1, 1024, p) as usize,
        canary_window: ms(s.canary_ms.as_ref(), d.canary_window, 10, 3_600_000, p),
        canary_requests: number(s.canary_requests.as_ref(), 0, 0, u64::MAX, p),
        max_error_increase: share(
            s.canary_max_error_increase.as_ref(),
            d.max_error_increase,
            p,
        ),
        max_rejection_increase: share(
            s.canary_max_rejection_increase.as_ref(),
            d.max_rejection_increase,
            p,
        ),
        watch: s.watch.as_ref().map_or(d.watch, |v| *v.get_ref()),
        watch_debounce: ms(s.watch_debounce_ms.as_ref(), d.watch_debounce, 0, 60_000, p),
    }
}

/// A share from 0 to 1.
fn share(v: Option<&Spanned<f64>>, default: f64, p: &mut Problems<'_>) -> f64 {
    let Some(v) = v else { return default };
    let x = *v.get_ref();
    if !(0.0..=1.0).contains(&x) {
        p.at(
            v.span(),
            format!("{x} is out of range: must be from 0 to 1"),
        );
        return default;
    }
    x
}

/// Compiles `[config_limits]` (absent: the defaults).
pub(crate) fn config_limits(s: Option<&ConfigLimitsSection>, p: &mut Problems<'_>) -> ConfigLimits {
    let d = ConfigLimits::default();
    let Some(s) = s else { return d };
    let max_read = super::control::MAX_READ_BYTES;
    ConfigLimits {
        max_file_bytes: number(
            s.max_file_bytes.as_ref(),
            d.max_file_bytes,
            1024,
            max_read,
            p,
        ),
        max_routes: number(s.max_routes.as_ref(), d.max_routes, 1, u32::MAX.into(), p),
        max_upstreams: number(
            s.max_upstreams.as_ref(),
            d.max_upstreams,
            1,
            u32::MAX.into(),
            p,
        ),
        max_endpoints: number(
            s.max_endpoints.as_ref(),
            d.max_endpoints,
            1,
            u32::MAX.into(),
            p,
        ),
        max_rate_limits: number(s.max_rate_limits.as_ref(), d.max_rate_limits, 1, 65_535, p),
    }
}

/// Checks the file against `limits` before anything is compiled from it: its size,
/// and how many routes, upstreams, endpoints (as written) and rate-limit policies
/// it holds. Each excess is reported at the first entry past the limit.
pub(crate) fn check_limits(
    sections: &Sections,
    file_bytes: usize,
    limits: &ConfigLimits,
    p: &mut Problems<'_>,
) {
    if file_bytes as u64 > limits.max_file_bytes {
        p.at(
            0..0,
            format!(
                "the file has {file_bytes} bytes, more than [config_limits] max_file_bytes = {}",
                limits.max_file_bytes
            ),
        );
    }
    let routes: Vec<Range<usize>> = sections.routes.iter().map(|r| r.name.span()).collect();
    over("routes", "max_routes", &routes, limits.max_routes, p);
    let upstreams: Vec<Range<usize>> = sections.upstreams.iter().map(|u| u.name.span()).collect();
    over(
        "upstreams",
        "max_upstreams",
        &upstreams,
        limits.max_upstreams,
        p,
    );
    let endpoints: Vec<Range<usize>> = sections
        .upstreams
        .iter()
        .flat_map(|u| u.endpoints.get_ref().iter().map(|e| e.span()))
        .collect();
    over(
        "endpoints",
        "max_endpoints",
        &endpoints,
        limits.max_endpoints,
        p,
    );
    let policies: Vec<Range<usize>> = sections.rate_limits.iter().map(|r| r.name.span()).collect();
    over(
        "rate-limit policies",
        "max_rate_limits",
        &policies,
        limits.max_rate_limits,
        p,
    );
}

fn over(what: &str, key: &str, entries: &[Range<usize>], max: u64, p: &mut Problems<'_>) {
    if entries.len() as u64 > max {
        let first_over = entries.get(max as usize).cloned().unwrap_or(0..0);
        p.at(
            first_over,
            format!(
                "{} {what}, more than [config_limits] {key} = {max} (this is the first one over)",
                entries.len()
            ),
        );
    }
}

/// `[admin] token_env`: the name of the environment variable holding the bearer
/// token for the admin listener's mutating calls. Required when the admin
/// listener is not on a loopback address.
pub(crate) fn admin_token_env(
    a: &AdminSection,
    listen: Option<SocketAddr>,
    p: &mut Problems<'_>,
) -> Option<String> {
    let name = a.token_env.as_ref().map(|t| {
        let n = t.get_ref();
        let valid = n.chars().enumerate().all(|(i, c)| {
            c == '_'
                || c.is_ascii_uppercase()
                || c.is_ascii_lowercase()
                || (i > 0 && c.is_ascii_digit())
        });
        if n.is_empty() || !valid {
            p.at(
                t.span(),
                format!(
                    "token_env \"{n}\" must be an environment variable name (letters, digits, _)"
                ),
            );
        }
        n.clone()
    });
    if let (Some(addr), None) = (listen, &name) {
        if !addr.ip().is_loopback() {
            p.at(
                a.listen.span(),
                format!(
                    "the admin listener on {addr} is not on a loopback address: set [admin] token_env \
                     to the name of an environment variable holding a bearer token for its mutating calls"
                ),
            );
        }
    }
    name
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    const ROUTE: &str = "[[route]]\nname = \"r\"\nrespond = { status = 200 }\n";

    fn errors(text: &str) -> String {
        match parse("t.toml", text) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn reload_keys_have_defaults_and_ranges() {
        let s = parse("t.toml", ROUTE).expect("config");
        assert!(s.reload.canary && s.reload.watch);
        assert_eq!(s.reload.canary_workers, 1);
        assert_eq!(s.reload.canary_window.as_millis(), 5_000);
        let text = format!(
            "[reload]\ncanary = false\ncanary_ms = 250\ncanary_max_error_increase = 0\n{ROUTE}"
        );
        let s = parse("t.toml", &text).expect("config");
        assert!(!s.reload.canary);
        assert_eq!(s.reload.canary_window.as_millis(), 250);
        assert_eq!(s.reload.max_error_increase, 0.0);
        let e = errors(&format!("[reload]\ncanary_ms = 0\n{ROUTE}"));
        assert!(e.contains("t.toml:2:13: 0 is out of range"), "{e}");
        let e = errors(&format!("[reload]\nsurprise = 1\n{ROUTE}"));
        assert!(e.contains("t.toml:2:1: unknown field `surprise`"), "{e}");
        let bad = format!("[reload]\ncanary_max_rejection_increase = 2.5\n{ROUTE}");
        assert!(errors(&bad).contains("t.toml:2:33: 2.5 is out of range: must be from 0 to 1"));
    }

    #[test]
    fn a_file_over_its_limits_is_refused_before_it_is_compiled() {
        let mut text = String::from("[config_limits]\nmax_upstreams = 1\nmax_endpoints = 2\n");
        for i in 0..2 {
            // Names that cannot resolve: nothing is compiled, so they are not looked up.
            text.push_str(&format!(
                "[[upstream]]\nname = \"u{i}\"\nendpoints = [\"nowhere.invalid:1\", \"nowhere.invalid:2\"]\n"
            ));
        }
        text.push_str(ROUTE);
        let e = errors(&text);
        assert!(
            e.contains("t.toml:8:8: 2 upstreams, more than [config_limits] max_upstreams = 1"),
            "{e}"
        );
        assert!(
            e.contains("t.toml:9:14: 4 endpoints, more than [config_limits] max_endpoints = 2"),
            "{e}"
        );
        assert!(!e.contains("resolve"), "nothing was resolved: {e}");
        let big = format!(
            "[config_limits]\nmax_file_bytes = 1024\n{ROUTE}# {}\n",
            "x".repeat(1100)
        );
        let expected = format!(
            "t.toml:1:1: the file has {} bytes, more than [config_limits] max_file_bytes = 1024",
            big.len()
        );
        assert!(errors(&big).contains(&expected), "{}", errors(&big));
    }

    #[test]
    fn an_admin_listener_off_loopback_needs_a_token_variable() {
        let open = format!("[admin]\nlisten = \"0.0.0.0:9901\"\n{ROUTE}");
        assert!(errors(&open).contains(
            "t.toml:2:10: the admin listener on 0.0.0.0:9901 is not on a loopback address"
        ));
        let guarded =
            format!("[admin]\nlisten = \"0.0.0.0:9901\"\ntoken_env = \"ADMIN_TOKEN\"\n{ROUTE}");
        let s = parse("t.toml", &guarded).expect("config");
        assert_eq!(s.admin_token_env.as_deref(), Some("ADMIN_TOKEN"));
        let bad = format!("[admin]\ntoken_env = \"1 bad\"\n{ROUTE}");
        assert!(errors(&bad)
            .contains("t.toml:2:13: token_env \"1 bad\" must be an environment variable name"));
    }
}
