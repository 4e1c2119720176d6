//! Checks and compiles the transform keys: every route's header rules, merged over
//! its upstream's defaults (`{route}` and `{upstream}` written in per route), and its
//! CORS policy. The keys are taken out of the sections before the routes compile
//! ([`take_route`], [`take_upstream`]) and attached to the compiled routes after
//! ([`attach`]), when the identity fields they may not touch are known.

use std::ops::Range;

use toml::Spanned;

use super::error::Problems;
use super::schema::{RouteAuthSection, RouteSection, UpstreamSection};
use super::schema_transform::{CorsSection, HeaderRulesSection};
use super::snapshot::{Action, Route, Upstream};
use super::values::is_token;
use crate::auth::AuthSettings;
use crate::route::RouteSpec;
use crate::transform::{
    why_protected, AllowList, AllowOrigins, CorsPolicy, Direction, FieldRules, FieldTemplate,
    HeaderRules, OriginPattern, RouteValues, Rule, RuleKind,
};

/// `allow_methods` of a route that lists no `methods`.
const DEFAULT_METHODS: [&str; 6] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];
/// Longest `max_age_s` accepted (Firefox's cap; Chromium caps at 7200).
const MAX_AGE_S: u64 = 86_400;

/// A route's transform keys, taken out of its section.
pub(super) struct RouteTransformSections {
    request: Option<Spanned<HeaderRulesSection>>,
    response: Option<Spanned<HeaderRulesSection>>,
    cors: Option<Spanned<CorsSection>>,
    /// Where the route's `auth` is, when it gives `cors_preflight`.
    cors_preflight: Option<Range<usize>>,
}

/// An upstream's default header rules, taken out of its section.
pub(super) struct UpstreamRuleSections {
    request: Option<Spanned<HeaderRulesSection>>,
    response: Option<Spanned<HeaderRulesSection>>,
}

/// Takes a route's transform keys out of its section.
pub(super) fn take_route(r: &mut RouteSection) -> RouteTransformSections {
    let cors_preflight = r.auth.as_ref().and_then(|a| match a.get_ref() {
        RouteAuthSection::Table(t) if t.cors_preflight.is_some() => Some(a.span()),
        _ => None,
    });
    RouteTransformSections {
        request: r.request_headers.take(),
        response: r.response_headers.take(),
        cors: r.cors.take(),
        cors_preflight,
    }
}

/// Takes an upstream's default header rules out of its section.
pub(super) fn take_upstream(u: &mut UpstreamSection) -> UpstreamRuleSections {
    UpstreamRuleSections {
        request: u.request_headers.take(),
        response: u.response_headers.take(),
    }
}

/// Compiles the header rules and CORS policy of every route (`routes`, `specs` and
/// `sections` in file order; `upstream_sections` in the order of `upstreams`).
pub(super) fn attach(
    routes: &mut [Route],
    specs: &[RouteSpec],
    sections: Vec<RouteTransformSections>,
    upstream_sections: &[UpstreamRuleSections],
    upstreams: &[Upstream],
    auth: &AuthSettings,
    p: &mut Problems<'_>,
) {
    let defaults: Vec<[Vec<Checked>; 2]> = upstream_sections
        .iter()
        .map(|u| {
            [
                check_rules(&u.request, Direction::Request, auth, p),
                check_rules(&u.response, Direction::Response, auth, p),
            ]
        })
        .collect();
    for ((route, spec), s) in routes.iter_mut().zip(specs).zip(sections) {
        let own = [
            check_rules(&s.request, Direction::Request, auth, p),
            check_rules(&s.response, Direction::Response, auth, p),
        ];
        match route.action {
            Action::Forward(index) => {
                let (Some(upstream), Some([req, resp])) =
                    (upstreams.get(index), defaults.get(index))
                else {
                    continue;
                };
                let fixed = RouteValues {
                    route: &route.name,
                    upstream: &upstream.name,
                };
                let rules = HeaderRules {
                    request: FieldRules::merged(&build(req, fixed, p), &build(&own[0], fixed, p)),
                    response: FieldRules::merged(&build(resp, fixed, p), &build(&own[1], fixed, p)),
                };
                if !(rules.request.is_empty() && rules.response.is_empty()) {
                    route.header_rules = Some(Box::new(rules));
                }
            }
            Action::Respond(_) | Action::Compose(_) | Action::Transcode(_) => {
                let why = match route.action {
                    Action::Respond(_) => "a respond route writes its fields in respond.headers",
                    Action::Transcode(_) => {
                        "a transcode route makes its gRPC call's head itself (docs/transform.md)"
                    }
                    _ => "composition parts write their own heads (each part's headers)",
                };
                for (key, section) in [
                    ("request_headers", &s.request),
                    ("response_headers", &s.response),
                ] {
                    if let Some(section) = section {
                        p.at(
                            section.span(),
                            format!("{key} applies to a route that forwards to an upstream; {why}"),
                        );
                    }
                }
            }
        }
        if let Some(c) = &s.cors {
            if let Some(span) = s.cors_preflight.clone() {
                p.at(
                    span,
                    "cors_preflight has no effect on a route with cors: the gateway answers its preflights before authentication; remove it",
                );
            }
            route.cors = Some(Box::new(cors_policy(c, spec.methods.as_deref(), p)));
        }
    }
}

/// One rule whose name was checked; its value is compiled per route.
struct Checked {
    name: String,
    kind: RuleKind,
    value: Option<Spanned<String>>,
}

/// Checks one `request_headers` / `response_headers` table: names that are tokens,
/// not protected, given once; values that compile.
fn check_rules(
    section: &Option<Spanned<HeaderRulesSection>>,
    direction: Direction,
    auth: &AuthSettings,
    p: &mut Problems<'_>,
) -> Vec<Checked> {
    let Some(section) = section else {
        return Vec::new();
    };
    let key = match direction {
        Direction::Request => "request_headers",
        Direction::Response => "response_headers",
    };
    let s = section.get_ref();
    let named = s
        .set
        .0
        .iter()
        .map(|(n, v)| (n, RuleKind::Set, Some(v)))
        .chain(s.add.0.iter().map(|(n, v)| (n, RuleKind::Add, Some(v))))
        .chain(s.remove.iter().map(|n| (n, RuleKind::Remove, None)));
    let mut out: Vec<Checked> = Vec::new();
    for (name, kind, value) in named {
        let lower = name.get_ref().to_ascii_lowercase();
        if !is_token(&lower) {
            p.at(
                name.span(),
                format!("\"{}\" is not a valid header name", name.get_ref()),
            );
            continue;
        }
        if let Some(why) = why_protected(&lower, direction, auth) {
            p.at(
                name.span(),
                format!("{key} cannot touch \"{lower}\": {why}"),
            );
            continue;
        }
        if out.iter().any(|c| c.name == lower) {
            p.at(
                name.span(),
                format!("\"{lower}\" is given twice in {key}: a name goes in one of set, add or remove, once"),
            );
            continue;
        }
        if let Some(v) = value {
            let probe = RouteValues {
                route: "route",
                upstream: "upstream",
            };
            if let Err(why) = FieldTemplate::parse(v.get_ref(), probe) {
                p.at(v.span(), format!("{key}: \"{lower}\": {why}"));
                continue;
            }
        }
        out.push(Checked {
            name: lower,
            kind,
            value: value.cloned(),
        });
    }
    out
}

/// Compiles checked rules for one route (its name and upstream's written in).
fn build(checked: &[Checked], fixed: RouteValues<'_>, p: &mut Problems<'_>) -> Vec<Rule> {
    let mut out = Vec::with_capacity(checked.len());
    for c in checked {
        let value = match &c.value {
            None => None,
            Some(v) => match FieldTemplate::parse(v.get_ref(), fixed) {
                Ok(t) => Some(t),
                Err(why) => {
                    p.at(v.span(), format!("\"{}\": {why}", c.name));
                    continue;
                }
            },
        };
        out.push(Rule {
            name: c.name.clone(),
            kind: c.kind,
            value,
        });
    }
    out
}

/// Compiles a route's `cors`; `route_methods` are the route's `methods`, the
/// default of `allow_methods`.
fn cors_policy(
    c: &Spanned<CorsSection>,
    route_methods: Option<&[String]>,
    p: &mut Problems<'_>,
) -> CorsPolicy {
    let s = c.get_ref();
    let credentials = s.allow_credentials.as_ref().is_some_and(|b| *b.get_ref());
    let origins = s.allow_origins.get_ref();
    if origins.is_empty() {
        p.at(
            s.allow_origins.span(),
            "allow_origins is empty: no origin could be allowed",
        );
    }
    let star = origins.iter().find(|o| o.get_ref() == "*");
    let origins = match star {
        Some(star) => {
            if origins.len() > 1 {
                p.at(star.span(), "\"*\" allows every origin: give it alone");
            }
            if credentials {
                p.at(
                    star.span(),
                    "allow_origins = [\"*\"] cannot be used with allow_credentials = true (browsers refuse it): list the origins",
                );
            }
            AllowOrigins::Any
        }
        None => AllowOrigins::Only(
            origins
                .iter()
                .filter_map(|o| match OriginPattern::parse(o.get_ref()) {
                    Ok(pattern) => Some(pattern),
                    Err(why) => {
                        p.at(o.span(), format!("allow_origins: {why}"));
                        None
                    }
                })
                .collect(),
        ),
    };
    let methods = match &s.allow_methods {
        None => AllowList::Only(match route_methods {
            Some(list) => list.to_vec(),
            None => DEFAULT_METHODS.iter().map(|m| m.to_string()).collect(),
        }),
        Some(list) => {
            if list.get_ref().is_empty() {
                p.at(
                    list.span(),
                    "allow_methods is empty; leave it out for the route's methods",
                );
            }
            token_list(list.get_ref(), "allow_methods", false, p)
        }
    };
    let headers = token_list(&s.allow_headers, "allow_headers", true, p);
    let expose = match token_list(&s.expose_headers, "expose_headers", true, p) {
        AllowList::Any if credentials => {
            let span = s.expose_headers.first().map_or(c.span(), |h| h.span());
            p.at(span, "expose_headers = [\"*\"] is read as a field named * when allow_credentials = true: list the fields");
            Vec::new()
        }
        AllowList::Any => vec!["*".to_string()],
        AllowList::Only(list) => list,
    };
    let max_age_s = s.max_age_s.as_ref().map(|m| {
        let age = *m.get_ref();
        if age > MAX_AGE_S {
            p.at(
                m.span(),
                format!("max_age_s must be at most {MAX_AGE_S} (browsers cap it: Chromium at 7200, Firefox at 86400)"),
            );
        }
        age.min(MAX_AGE_S)
    });
    CorsPolicy::new(origins, methods, headers, &expose, credentials, max_age_s)
}

/// A list of tokens, or `["*"]` (alone); names lowercased (`lowercase`), methods
/// uppercased.
fn token_list(
    list: &[Spanned<String>],
    key: &str,
    lowercase: bool,
    p: &mut Problems<'_>,
) -> AllowList {
    if let Some(star) = list.iter().find(|t| t.get_ref() == "*") {
        if list.len() > 1 {
            p.at(
                star.span(),
                format!("\"*\" in {key} allows any: give it alone"),
            );
        }
        return AllowList::Any;
    }
    let mut out: Vec<String> = Vec::new();
    for t in list {
        if !is_token(t.get_ref()) {
            p.at(
                t.span(),
                format!("{key}: \"{}\" is not a valid name", t.get_ref()),
            );
            continue;
        }
        let v = if lowercase {
            t.get_ref().to_ascii_lowercase()
        } else {
            t.get_ref().to_ascii_uppercase()
        };
        if !out.contains(&v) {
            out.push(v);
        }
    }
    AllowList::Only(out)
}
