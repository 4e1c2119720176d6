//! The TOML shape of composition, as docs/composition.md documents it: a route's
//! `[route.compose]` with its `[[route.compose.part]]`s, and the `[compose]` limits
//! every composed route is held to. Unknown keys are errors; defaults live here.
//! `compile_compose.rs` validates these and builds the route's [`ComposePlan`].
//!
//! [`ComposePlan`]: super::ComposePlan

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// `[compose]`: limits for every composed route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComposeLimitsSection {
    pub max_parts_per_route: Spanned<u64>,
    pub max_part_bytes: Spanned<u64>,
    pub max_response_bytes: Spanned<u64>,
}

impl Default for ComposeLimitsSection {
    fn default() -> Self {
        ComposeLimitsSection {
            max_parts_per_route: Spanned::new(0..0, 16),
            max_part_bytes: Spanned::new(0..0, 1 << 20),
            max_response_bytes: Spanned::new(0..0, 4 << 20),
        }
    }
}

/// `[route.compose]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeSection {
    #[serde(default)]
    pub merge: MergeSetting,
    #[serde(default)]
    pub on_part_failure: OnPartFailureSetting,
    pub deadline_ms: Option<Spanned<u64>>,
    /// Overrides `[compose] max_part_bytes` for this route.
    pub max_part_bytes: Option<Spanned<u64>>,
    /// Overrides `[compose] max_response_bytes` for this route.
    pub max_response_bytes: Option<Spanned<u64>>,
    #[serde(default)]
    pub part: Vec<Spanned<PartSection>>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MergeSetting {
    #[default]
    Nested,
    Flat,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnPartFailureSetting {
    #[default]
    Fail,
    Partial,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum On4xxSetting {
    #[default]
    Fail,
    Data,
}

/// `[[route.compose.part]]`: one upstream call of a composed route.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSection {
    pub name: Spanned<String>,
    pub upstream: Spanned<String>,
    pub method: Option<Spanned<String>>,
    /// A template; a query may follow `?`.
    pub path: Spanned<String>,
    /// Query parameters added after the path's own, in name order; values are templates.
    #[serde(default)]
    pub query: BTreeMap<String, Spanned<String>>,
    /// Header fields sent to the part; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub timeout_ms: Option<Spanned<u64>>,
    pub required: Option<Spanned<bool>>,
    /// Any TOML value, used as JSON when the part fails.
    pub fallback: Option<Spanned<serde_json::Value>>,
    /// A JSON pointer (RFC 6901) into the part's answer.
    pub select: Option<Spanned<String>>,
    pub allow: Option<Spanned<Vec<Spanned<String>>>>,
    pub deny: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub rename: BTreeMap<String, Spanned<String>>,
    /// `"forward"`: the client's request body goes to this part.
    pub body: Option<Spanned<String>>,
    /// What a 4xx answer is: a failure (default) or the part's data.
    #[serde(default)]
    pub on_4xx: On4xxSetting,
}
