//! The transform stage's rules, compiled once at load and applied per request:
//! header rules per route, over per-upstream defaults, for the request that goes
//! upstream and the response that comes back (`header_rules.rs`, values from
//! `template.rs`, names refused in `protected.rs`), and CORS answered at the door
//! (`cors.rs`). The proxy applies them (`proxy/cors_stage.rs`,
//! `proxy/transform_stage.rs`); docs/transform.md is the operator's page.
//!
//! REST → gRPC transcoding (`transcode/`): a route's `google.api.http` bindings
//! from a compiled descriptor set, the request message from path, query and JSON
//! body, the JSON answer from the gRPC one (applied in `proxy/transcode_stage.rs`).

mod cors;
mod header_rules;
mod protected;
mod template;
pub mod transcode;

pub use cors::{
    is_cors_field, preflight_method, AllowList, AllowOrigins, CorsPolicy, OriginPattern, Refusal,
    PREFLIGHT_VARY,
};
pub use header_rules::{FieldRules, HeaderRules, Rule, RuleKind};
pub use protected::{why_protected, Direction};
pub use template::{FieldTemplate, RequestValues, RouteValues, PLACEHOLDERS};
