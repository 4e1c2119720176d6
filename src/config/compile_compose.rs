//! Validation and compilation of `[route.compose]` into a [`ComposePlan`]: every key
//! checked at its place in the file, templates parsed once, and the key collisions
//! of a flat merge that can be known from the config reported as warnings.

use std::collections::HashMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::compose::*;
use super::compose_schema::{
    ComposeLimitsSection, ComposeSection, MergeSetting, On4xxSetting, OnPartFailureSetting,
    PartSection,
};
use super::error::Problems;
use super::snapshot::Upstream;
use super::values::{in_range, is_token};
use crate::route::PathPattern;

/// The deadline of a composed route without `deadline_ms` (or its `timeout_ms`,
/// when that is shorter).
const DEFAULT_DEADLINE: Duration = Duration::from_millis(2_000);

/// `[compose]`, checked.
pub(super) struct ComposeLimits {
    pub max_parts_per_route: usize,
    pub max_part_bytes: u64,
    pub max_response_bytes: u64,
}

/// Checks `[compose]` (absent: the defaults).
pub(super) fn limits(section: Option<ComposeLimitsSection>, p: &mut Problems<'_>) -> ComposeLimits {
    let s = section.unwrap_or_default();
    ComposeLimits {
        max_parts_per_route: in_range(&s.max_parts_per_route, 1, 256, p) as usize,
        max_part_bytes: in_range(&s.max_part_bytes, 1, 1 << 30, p),
        max_response_bytes: in_range(&s.max_response_bytes, 1, 1 << 30, p),
    }
}

/// What a composed route's plan depends on besides its own section.
pub(super) struct RouteContext<'a> {
    pub name: &'a str,
    /// The route's exact `path` when it names segments (`/users/{id}`).
    pub pattern: Option<PathPattern>,
    /// The route authenticates (claims can be read).
    pub has_auth: bool,
    /// The route's `timeout_ms`, when given.
    pub timeout: Option<Duration>,
    /// Position among the snapshot's composed routes.
    pub slot: usize,
}

/// Compiles one route's `[route.compose]`.
pub(super) fn plan(
    section: &Spanned<ComposeSection>,
    route: &RouteContext<'_>,
    limits: &ComposeLimits,
    upstreams: &[Upstream],
    p: &mut Problems<'_>,
) -> ComposePlan {
    let c = section.get_ref();
    let deadline = match &c.deadline_ms {
        Some(d) => {
            let deadline = Duration::from_millis(in_range(d, 1, 3_600_000, p));
            if let Some(timeout) = route.timeout.filter(|t| deadline > *t) {
                p.at(
                    d.span(),
                    format!(
                        "deadline_ms {} exceeds the route's timeout_ms {}",
                        deadline.as_millis(),
                        timeout.as_millis()
                    ),
                );
            }
            deadline
        }
        None => route
            .timeout
            .map_or(DEFAULT_DEADLINE, |t| t.min(DEFAULT_DEADLINE)),
    };
    let on_part_failure = match c.on_part_failure {
        OnPartFailureSetting::Fail => OnPartFailure::Fail,
        OnPartFailureSetting::Partial => OnPartFailure::Partial,
    };
    let merge = match c.merge {
        MergeSetting::Nested => Merge::Nested,
        MergeSetting::Flat => Merge::Flat,
    };
    if c.part.is_empty() {
        p.at(
            section.span(),
            format!(
                "route \"{}\": [route.compose] needs at least one [[route.compose.part]]",
                route.name
            ),
        );
    }
    if let Some(extra) = c.part.get(limits.max_parts_per_route) {
        p.at(
            extra.get_ref().name.span(),
            format!(
                "route \"{}\" has {} parts; [compose] max_parts_per_route is {}",
                route.name,
                c.part.len(),
                limits.max_parts_per_route
            ),
        );
    }
    let mut names: HashMap<String, Range<usize>> = HashMap::new();
    let mut forwarded_body: Option<String> = None;
    let mut parts = Vec::new();
    for section in &c.part {
        let s = section.get_ref();
        let part = part(s, route, on_part_failure, merge, deadline, upstreams, p);
        if names.insert(part.name.clone(), s.name.span()).is_some() {
            p.at(
                s.name.span(),
                format!(
                    "duplicate part name \"{}\" in route \"{}\"",
                    part.name, route.name
                ),
            );
        }
        if part.forward_body {
            if let (Some(first), Some(body)) = (&forwarded_body, &s.body) {
                p.at(
                    body.span(),
                    format!("the client's body already goes to part \"{first}\"; it can go to one part only"),
                );
            }
            forwarded_body.get_or_insert_with(|| part.name.clone());
        }
        parts.push(part);
    }
    if merge == Merge::Flat {
        warn_flat_collisions(route.name, &c.part, &parts, p);
    }
    ComposePlan {
        merge,
        on_part_failure,
        deadline,
        max_part_bytes: c
            .max_part_bytes
            .as_ref()
            .map_or(limits.max_part_bytes, |b| in_range(b, 1, 1 << 30, p)),
        max_response_bytes: c
            .max_response_bytes
            .as_ref()
            .map_or(limits.max_response_bytes, |b| in_range(b, 1, 1 << 30, p)),
        parts,
        slot: route.slot,
    }
}

fn part(
    s: &PartSection,
    route: &RouteContext<'_>,
    policy: OnPartFailure,
    merge: Merge,
    deadline: Duration,
    upstreams: &[Upstream],
    p: &mut Problems<'_>,
) -> ComposePart {
    let name = s.name.get_ref().clone();
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
    {
        p.at(
            s.name.span(),
            format!("part name \"{name}\" must be letters, digits, '_', '-' or '.' (it is listed in a header)"),
        );
    }
    let upstream = match upstreams
        .iter()
        .position(|u| &u.name == s.upstream.get_ref())
    {
        Some(i) => i,
        None => {
            p.at(
                s.upstream.span(),
                format!(
                    "part \"{name}\" names unknown upstream \"{}\"",
                    s.upstream.get_ref()
                ),
            );
            0
        }
    };
    let method = match &s.method {
        Some(m) if is_token(m.get_ref()) => m.get_ref().to_ascii_uppercase(),
        Some(m) => {
            p.at(
                m.span(),
                format!("\"{}\" is not an HTTP method", m.get_ref()),
            );
            "GET".to_string()
        }
        None => "GET".to_string(),
    };
    let forward_body = match &s.body {
        Some(b) if b.get_ref() == "forward" => {
            if method == "GET" || method == "HEAD" {
                p.at(
                    b.span(),
                    format!("body = \"forward\" needs a method that carries a body, not {method}"),
                );
            }
            true
        }
        Some(b) => {
            p.at(
                b.span(),
                format!("body \"{}\": the only value is \"forward\"", b.get_ref()),
            );
            false
        }
        None => false,
    };
    let path = {
        let t = &s.path;
        if !t.get_ref().starts_with('/') {
            p.at(
                t.span(),
                format!("path \"{}\" must start with '/'", t.get_ref()),
            );
        }
        template(t, Where::Path, route, p)
    };
    let query = s
        .query
        .iter()
        .map(|(k, v)| {
            if k.is_empty() {
                p.at(v.span(), "a query parameter needs a name");
            }
            (encode_component(k), template(v, Where::Query, route, p))
        })
        .collect();
    let headers = s
        .headers
        .iter()
        .map(|(k, v)| {
            let lower = k.to_ascii_lowercase();
            if !is_token(k) {
                p.at(v.span(), format!("\"{k}\" is not a valid header name"));
            } else if GATEWAY_FIELDS.contains(&lower.as_str()) || lower.starts_with("x-forwarded-")
            {
                p.at(
                    v.span(),
                    format!("header \"{k}\" is set by the gateway and cannot be configured"),
                );
            }
            (lower, template(v, Where::Header, route, p))
        })
        .collect();
    let timeout = s.timeout_ms.as_ref().map(|t| {
        let timeout = Duration::from_millis(in_range(t, 1, 3_600_000, p));
        if timeout >= deadline {
            p.at(
                t.span(),
                format!(
                    "timeout_ms {} is not below the route's deadline_ms {}: the deadline ends the part first",
                    timeout.as_millis(),
                    deadline.as_millis()
                ),
            );
        }
        timeout
    });
    let required = s.required.as_ref().is_none_or(|r| *r.get_ref());
    if let Some(r) = &s.required {
        if !*r.get_ref() && policy == OnPartFailure::Fail {
            p.at(
                r.span(),
                "required = false has no effect with on_part_failure = \"fail\" (any failed part fails the call), only with \"partial\"",
            );
        }
    }
    let fallback = s.fallback.as_ref().map(|f| {
        if required {
            p.at(
                f.span(),
                "fallback is only used by parts with required = false (a failed required part fails the call)",
            );
        }
        if merge == Merge::Flat && !f.get_ref().is_object() {
            p.at(
                f.span(),
                "with merge = \"flat\" a fallback must be a table (its keys are merged)",
            );
        }
        f.get_ref().clone()
    });
    ComposePart {
        name,
        upstream,
        method,
        path,
        query,
        headers,
        timeout,
        required,
        fallback,
        shape: shape(s, p),
        forward_body,
        on_4xx: match s.on_4xx {
            On4xxSetting::Fail => On4xx::Fail,
            On4xxSetting::Data => On4xx::Data,
        },
    }
}

/// Header fields the gateway writes on every part request itself.
const GATEWAY_FIELDS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "expect",
    "x-request-id",
];

fn shape(s: &PartSection, p: &mut Problems<'_>) -> Shape {
    let select = s.select.as_ref().map(|sel| {
        let v = sel.get_ref();
        if let Err(why) = check_pointer(v) {
            p.at(sel.span(), format!("select \"{v}\": {why}"));
        }
        v.clone()
    });
    let list = |l: &Spanned<Vec<Spanned<String>>>, what: &str, p: &mut Problems<'_>| {
        if l.get_ref().is_empty() {
            p.at(
                l.span(),
                format!("{what} is empty; leave it out to keep every key"),
            );
        }
        l.get_ref()
            .iter()
            .map(|k| k.get_ref().clone())
            .collect::<Vec<_>>()
    };
    let keys = match (&s.allow, &s.deny) {
        (Some(a), Some(_)) => {
            p.at(a.span(), "give either allow or deny, not both");
            KeyFilter::All
        }
        (Some(a), None) => KeyFilter::Allow(list(a, "allow", p)),
        (None, Some(d)) => KeyFilter::Deny(list(d, "deny", p)),
        (None, None) => KeyFilter::All,
    };
    let rename = s
        .rename
        .iter()
        .map(|(from, to)| {
            let never = match &keys {
                KeyFilter::Allow(allowed) => !allowed.contains(from),
                KeyFilter::Deny(denied) => denied.contains(from),
                KeyFilter::All => false,
            };
            if never {
                p.at(
                    to.span(),
                    format!(
                        "rename \"{from}\": allow/deny drops that key first, so this never applies"
                    ),
                );
            }
            if to.get_ref().is_empty() {
                p.at(
                    to.span(),
                    format!("rename \"{from}\": the new name is empty"),
                );
            }
            (from.clone(), to.get_ref().clone())
        })
        .collect();
    Shape {
        select,
        keys,
        rename,
    }
}

/// An RFC 6901 JSON pointer: empty, or `/`-separated tokens where `~` is only
/// `~0` or `~1`.
fn check_pointer(v: &str) -> Result<(), &'static str> {
    if !v.is_empty() && !v.starts_with('/') {
        return Err("a JSON pointer is empty or starts with '/'");
    }
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("'~' must be followed by 0 or 1 (RFC 6901)");
        }
    }
    Ok(())
}

/// What a template is for, which decides how literals are checked and values encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Where {
    /// A part's `path`: literals are written as URL text; values are encoded for a
    /// path segment before the first `?` and for a query component after it.
    Path,
    /// A `query` value: literals are text, percent-encoded here once.
    Query,
    /// A `headers` value: visible ASCII, spaces and tabs.
    Header,
}

/// Parses `{source.NAME}` placeholders out of a template; a `{` or `}` that is not
/// part of one is an error (write `%7B` / `%7D` in a path).
fn template(
    raw: &Spanned<String>,
    place: Where,
    route: &RouteContext<'_>,
    p: &mut Problems<'_>,
) -> Template {
    let text = raw.get_ref();
    let mut pieces = Vec::new();
    let mut in_query = false;
    let mut rest = text.as_str();
    let fail = |why: String, p: &mut Problems<'_>| p.at(raw.span(), format!("\"{text}\": {why}"));
    while !rest.is_empty() {
        let literal_end = rest.find(['{', '}']).unwrap_or(rest.len());
        let literal = &rest[..literal_end];
        if !literal.is_empty() {
            if let Some(bad) = literal.chars().find(|&c| !literal_char_ok(place, c)) {
                fail(format!("{bad:?} cannot be written here"), p);
            }
            let written = if place == Where::Query {
                encode_component(literal)
            } else {
                literal.to_string()
            };
            in_query |= place == Where::Path && literal.contains('?');
            pieces.push(TemplatePiece::Literal(written));
        }
        rest = &rest[literal_end..];
        if rest.is_empty() {
            break;
        }
        if rest.starts_with('}') {
            fail("'}' without '{'".into(), p);
            break;
        }
        let Some(close) = rest.find('}') else {
            fail("'{' without '}'".into(), p);
            break;
        };
        let inner = &rest[1..close];
        rest = &rest[close + 1..];
        let encoding = match place {
            Where::Path if in_query => Encoding::QueryComponent,
            Where::Path => Encoding::PathSegment,
            Where::Query => Encoding::QueryComponent,
            Where::Header => Encoding::FieldValue,
        };
        match placeholder(inner, route) {
            Ok(source) => pieces.push(TemplatePiece::Value(Placeholder {
                source,
                encoding,
                text: inner.to_string(),
            })),
            Err(why) => fail(why, p),
        }
    }
    Template { pieces }
}

fn literal_char_ok(place: Where, c: char) -> bool {
    match place {
        Where::Path => c.is_ascii_graphic() && c != '#',
        Where::Query => c == ' ' || c.is_ascii_graphic(),
        Where::Header => c == ' ' || c == '\t' || c.is_ascii_graphic(),
    }
}

/// `path.NAME`, `query.NAME`, `header.NAME` or `claim.NAME`.
fn placeholder(inner: &str, route: &RouteContext<'_>) -> Result<ValueSource, String> {
    let (source, name) = inner.split_once('.').unwrap_or((inner, ""));
    if name.is_empty() {
        return Err(format!(
            "{{{inner}}}: write {{path.NAME}}, {{query.NAME}}, {{header.NAME}} or {{claim.NAME}}"
        ));
    }
    match source {
        "path" => {
            let index = route
                .pattern
                .as_ref()
                .and_then(|pat| pat.segment_index(name));
            index.map(ValueSource::Path).ok_or_else(|| {
                let names: Vec<&str> = route.pattern.iter().flat_map(|pat| pat.names()).collect();
                if names.is_empty() {
                    format!("{{{inner}}}: the route's path names no segments (write path = \"/a/{{{name}}}\")")
                } else {
                    format!(
                        "{{{inner}}}: the route's path has no segment {{{name}}} (it has {})",
                        names.iter().map(|n| format!("{{{n}}}")).collect::<Vec<_>>().join(", ")
                    )
                }
            })
        }
        "query" => Ok(ValueSource::Query(name.to_string())),
        "header" if is_token(name) => Ok(ValueSource::Header(name.to_ascii_lowercase())),
        "header" => Err(format!("{{{inner}}}: \"{name}\" is not a header name")),
        "claim" if route.has_auth => Ok(ValueSource::Claim(name.to_string())),
        "claim" => Err(format!(
            "{{{inner}}}: claims are only known on a route that authenticates (auth = ...)"
        )),
        other => Err(format!(
            "{{{inner}}}: unknown source \"{other}\" (expected path, query, header or claim)"
        )),
    }
}

/// Reports keys that two parts of a flat merge can both produce, as far as the config
/// tells: the keys a part keeps (`allow`, renamed), the new names of `rename`, and
/// the keys of a table `fallback`. One warning per key and route.
fn warn_flat_collisions(
    route: &str,
    sections: &[Spanned<PartSection>],
    parts: &[ComposePart],
    p: &mut Problems<'_>,
) {
    let mut producers: Vec<(String, Vec<usize>)> = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        for key in known_keys(part) {
            match producers.iter_mut().find(|(k, _)| *k == key) {
                Some((_, list)) if !list.contains(&i) => list.push(i),
                Some(_) => {}
                None => producers.push((key, vec![i])),
            }
        }
    }
    for (key, list) in producers.iter().filter(|(_, l)| l.len() > 1) {
        let names: Vec<String> = list
            .iter()
            .map(|&i| format!("\"{}\"", parts[i].name))
            .collect();
        let Some(&last) = list.last() else { continue };
        p.warn(
            sections[last].get_ref().name.span(),
            format!(
                "route \"{route}\": flat merge: key \"{key}\" can come from parts {}; the last declared, \"{}\", wins",
                names.join(", "),
                parts[last].name
            ),
        );
    }
}

/// The top-level keys a part is known to be able to produce.
fn known_keys(part: &ComposePart) -> Vec<String> {
    let renamed = |k: &str| {
        part.shape
            .rename
            .iter()
            .find(|(from, _)| from == k)
            .map_or_else(|| k.to_string(), |(_, to)| to.clone())
    };
    let mut keys: Vec<String> = match &part.shape.keys {
        KeyFilter::Allow(allowed) => allowed.iter().map(|k| renamed(k)).collect(),
        _ => part.shape.rename.iter().map(|(_, to)| to.clone()).collect(),
    };
    if let Some(serde_json::Value::Object(map)) = &part.fallback {
        keys.extend(map.keys().cloned());
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Percent-encodes every byte but the unreserved ones (RFC 3986 §2.3).
pub(super) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
