//! Configuration: read one TOML file, report every problem as `file:line:col: reason`,
//! and compile what is valid into an immutable [`Snapshot`].
//!
//! Parsing goes section by section over a spanned TOML tree, so one bad `[[route]]`
//! does not hide the problems in the next one.

mod compile;
mod compile_auth;
mod compile_auth_keys;
mod compile_compose;
mod compile_http2;
mod compile_resilience;
mod compile_transcode;
mod compile_transform;
mod compose;
mod compose_schema;
mod error;
mod http2;
mod rate_limits;
mod resilience;
mod schema;
mod schema_resilience;
mod schema_transform;
mod snapshot;
mod values;

pub use compose::*;
pub use error::{ConfigError, ConfigErrors};
pub use http2::{FloodLimits, Http2Settings};
pub use resilience::*;
pub use snapshot::*;

use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use error::Problems;

/// Reads and compiles the configuration file at `path`.
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => parse(&file, &text),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            line: 1,
            col: 1,
            reason: format!("cannot read the file: {e}"),
        }])),
    }
}

/// Compiles configuration text; `file` names it in error messages.
pub fn parse(file: &str, text: &str) -> Result<Snapshot, ConfigErrors> {
    let mut problems = Problems::new(file, text);
    let sections = read_sections(text, &mut problems);
    let snapshot = compile::compile(file, sections, &mut problems);
    let warnings = problems.take_warnings();
    problems.into_result()?;
    match snapshot {
        Some(mut s) => {
            s.warnings = warnings;
            Ok(s)
        }
        None => Err(ConfigErrors(vec![ConfigError {
            file: file.to_string(),
            line: 1,
            col: 1,
            reason: "the configuration could not be compiled".to_string(),
        }])),
    }
}

/// The sections of the file, each parsed on its own.
#[derive(Default)]
pub(crate) struct Sections {
    pub server: Option<schema::ServerSection>,
    pub admin: Option<schema::AdminSection>,
    pub upstreams: Vec<schema::UpstreamSection>,
    pub routes: Vec<schema::RouteSection>,
    pub log: Option<schema::LogSection>,
    pub rate_limits: Vec<schema::RateLimitSection>,
    pub fleet: Option<schema::FleetSection>,
    pub rate_limit_headers: Option<schema::RateLimitHeadersSection>,
    pub auth: Option<schema::AuthSection>,
    pub compose: Option<compose_schema::ComposeLimitsSection>,
}

/// Sections that later versions handle; named so the error says so.
const NOT_YET: &[&str] = &[];
const KNOWN: &str =
    "server, admin, upstream, route, log, auth, rate_limit, fleet, rate_limit_headers, compose";

fn read_sections(text: &str, problems: &mut Problems<'_>) -> Sections {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    for e in &syntax_errors {
        problems.at(e.span().unwrap_or(0..0), e.message().trim().to_string());
    }
    let mut out = Sections::default();
    if !syntax_errors.is_empty() {
        return out;
    }
    for (key, value) in root.into_inner() {
        let span = key.span();
        match key.get_ref().as_ref() {
            "server" => out.server = one(value, problems),
            "admin" => out.admin = one(value, problems),
            "log" => out.log = one(value, problems),
            "auth" => out.auth = one(value, problems),
            "upstream" => out.upstreams = many(value, "[[upstream]]", problems),
            "route" => out.routes = many(value, "[[route]]", problems),
            "rate_limit" => out.rate_limits = many(value, "[[rate_limit]]", problems),
            "fleet" => out.fleet = one(value, problems),
            "rate_limit_headers" => out.rate_limit_headers = one(value, problems),
            "compose" => out.compose = one(value, problems),
            other if NOT_YET.contains(&other) => problems.at(
                span,
                format!("`{other}` is not supported by this version of portico"),
            ),
            other => problems.at(
                span,
                format!("unknown section `{other}`; expected one of: {KNOWN}"),
            ),
        }
    }
    out
}

fn one<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    problems: &mut Problems<'_>,
) -> Option<T> {
    let span = value.span();
    match T::deserialize(ValueDeserializer::from(value)) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.at(e.span().unwrap_or(span), e.message().trim().to_string());
            None
        }
    }
}

fn many<T: for<'de> Deserialize<'de>>(
    value: Spanned<DeValue<'_>>,
    what: &str,
    problems: &mut Problems<'_>,
) -> Vec<T> {
    let span = value.span();
    match value.into_inner() {
        DeValue::Array(items) => items
            .into_iter()
            .filter_map(|item| one(item, problems))
            .collect(),
        _ => {
            problems.at(span, format!("expected an array of tables: write {what}"));
            Vec::new()
        }
    }
}
