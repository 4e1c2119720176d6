//! The TOML shape of the transform keys: `request_headers` and `response_headers`
//! (on a `[[route]]`, and on an `[[upstream]]` as defaults) and a route's `cors`.
//! `compile_transform.rs` checks them and builds what the workers use.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// `request_headers = { set = {…}, add = {…}, remove = […] }` (or `response_headers`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesSection {
    #[serde(default)]
    pub set: FieldMap,
    #[serde(default)]
    pub add: FieldMap,
    #[serde(default)]
    pub remove: Vec<Spanned<String>>,
}

/// A table of field name → value, in the order of the file (fields are written in
/// that order).
#[derive(Debug, Default)]
pub struct FieldMap(pub Vec<(Spanned<String>, Spanned<String>)>);

impl<'de> Deserialize<'de> for FieldMap {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct InOrder;
        impl<'de> Visitor<'de> for InOrder {
            type Value = FieldMap;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table of header names and string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FieldMap, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    out.push(entry);
                }
                Ok(FieldMap(out))
            }
        }
        d.deserialize_map(InOrder)
    }
}

/// A route's `cors = { allow_origins, allow_methods, allow_headers, expose_headers,
/// allow_credentials, max_age_s }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSection {
    pub allow_origins: Spanned<Vec<Spanned<String>>>,
    pub allow_methods: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    pub allow_headers: Vec<Spanned<String>>,
    #[serde(default)]
    pub expose_headers: Vec<Spanned<String>>,
    pub allow_credentials: Option<Spanned<bool>>,
    pub max_age_s: Option<Spanned<u64>>,
}

/// A route's `transcode = { descriptor_set = "api.pb", services = ["pkg.Users"] }`:
/// REST → gRPC from the services' `google.api.http` annotations.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscodeSection {
    /// A compiled descriptor set (`protoc --include_imports --descriptor_set_out`),
    /// relative to the configuration file.
    pub descriptor_set: Spanned<String>,
    /// Full names of the services whose annotated methods the route serves.
    pub services: Vec<Spanned<String>>,
    /// Largest JSON request body read (default 1 MiB).
    pub max_json_body_bytes: Option<Spanned<u64>>,
    /// Largest gRPC message sent or accepted (default 4 MiB).
    pub max_message_bytes: Option<Spanned<u64>>,
}
