//! Configuration: read one TOML file, report every problem as `file:line:col: reason`,
//! and compile what is valid into an immutable [`Snapshot`].
//!
//! Parsing goes section by section over a spanned TOML tree, so one bad `[[route]]`
//! does not hide the problems in the next one.

mod compile;
mod compile_auth;
mod compile_auth_keys;
mod compile_compose;
mod compile_control;
mod compile_http2;
mod compile_observe;
mod compile_resilience;
mod compile_transcode;
mod compile_transform;
mod compose;
mod compose_schema;
mod control;
mod error;
mod http2;
mod rate_limits;
mod resilience;
mod runtime;
mod schema;
mod schema_control;
mod schema_observe;
mod schema_resilience;
mod schema_runtime;
mod schema_transform;
mod snapshot;
mod values;

pub use compose::*;
pub use control::{ConfigHash, ConfigLimits, ReloadSettings, MAX_READ_BYTES};
pub use error::{ConfigError, ConfigErrors};
pub use http2::{FloodLimits, Http2Settings};
pub use resilience::*;
pub use runtime::{parse_cpu_list, Driver, RuntimeSettings};
pub use snapshot::*;

use std::io::Read;
use std::path::Path;

use serde::Deserialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use toml::Spanned;

use error::Problems;

/// Reads and compiles the configuration file at `path` (following symbolic links).
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    parse(&path.display().to_string(), &read(path)?)
}

/// Reads the configuration file at `path`: a file over [`MAX_READ_BYTES`] is
/// refused without being read to its end, as is one that is not UTF-8.
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    let problem = |reason: String| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 1,
            col: 1,
            reason,
        }])
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| problem(format!("cannot read the file: {e}")))?;
    if bytes.len() as u64 > MAX_READ_BYTES {
        return Err(problem(format!(
            "the file is larger than {MAX_READ_BYTES} bytes, the most portico reads"
        )));
    }
    String::from_utf8(bytes).map_err(|e| problem(format!("the file is not UTF-8: {e}")))
}

/// Compiles configuration text; `file` names it in error messages. The text is
/// checked against its `[config_limits]` before anything else is compiled.
pub fn parse(file: &str, text: &str) -> Result<Snapshot, ConfigErrors> {
    let mut problems = Problems::new(file, text);
    let sections = read_sections(text, &mut problems);
    let limits = compile_control::config_limits(sections.config_limits.as_ref(), &mut problems);
    let before = problems.count();
    compile_control::check_limits(&sections, text.len(), &limits, &mut problems);
    // Nothing is compiled (no name resolved, no certificate read) from a file over
    // its limits.
    let snapshot = match problems.count() == before {
        true => compile::compile(file, sections, &mut problems).map(|mut s| {
            s.hash = ConfigHash::of(text);
            s
        }),
        false => None,
    };
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
    pub tracing: Option<schema_observe::TracingSection>,
    pub reload: Option<schema_control::ReloadSection>,
    pub config_limits: Option<schema_control::ConfigLimitsSection>,
}

/// Sections that later versions handle; named so the error says so.
const NOT_YET: &[&str] = &[];
const KNOWN: &str = "server, admin, upstream, route, log, auth, rate_limit, fleet, \
                     rate_limit_headers, compose, tracing, reload, config_limits";

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
            "tracing" => out.tracing = one(value, problems),
            "reload" => out.reload = one(value, problems),
            "config_limits" => out.config_limits = one(value, problems),
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
