//! REST → gRPC transcoding: a route's `transcode = { descriptor_set, services }`
//! compiled once at load into a [`Transcoder`] (the `google.api.http` bindings of
//! the services' unary methods, read from a compiled descriptor set by
//! prost-reflect), then per request: find the binding of the method and path
//! ([`Transcoder::find`]), make the gRPC request message from path, query and JSON
//! body (`request.rs`), and the JSON answer from the gRPC response (`response.rs`).
//! The exchange itself is the proxy's (`proxy/transcode_stage.rs`), over the
//! route's HTTP/2 upstream. docs/transform.md is the operator's page.

mod binding;
mod path_template;
mod request;
mod response;

pub use binding::{Binding, BodyRule, Skipped};
pub use path_template::{PathTemplate, TemplateError};
pub use request::BadRequest;
pub use response::{
    decode_grpc_message, error_json, grpc_code_for, http_status, next_frame, stream_error_line,
    BadResponse,
};

use prost_reflect::DescriptorPool;

/// Default `max_json_body_bytes`: the largest JSON request body read (1 MiB).
pub const DEFAULT_MAX_JSON_BODY_BYTES: u64 = 1 << 20;
/// Default `max_message_bytes`: the largest gRPC message sent or accepted (4 MiB,
/// gRPC's own default receive limit).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;

/// A route's transcoding: its bindings, most specific first, and its limits.
pub struct Transcoder {
    bindings: Vec<Binding>,
    /// The largest JSON request body read; a larger one is answered 413.
    pub max_json_body_bytes: u64,
    /// The largest gRPC message, request or response (bytes, prefix excluded).
    pub max_message_bytes: usize,
}

/// What a request's method and path find.
pub enum Lookup<'t> {
    /// The binding, and its path variables' values.
    Found(&'t Binding, Vec<String>),
    /// The path has bindings, not for this method: the methods it has (for `Allow`).
    WrongMethod(String),
    NotFound,
}

/// Why a descriptor set cannot be used.
#[derive(Debug)]
pub enum LoadError {
    /// The bytes are not a valid `FileDescriptorSet` (prost-reflect's reason).
    Descriptors(String),
    /// `services[i]` is not in the set.
    UnknownService(usize),
}

impl Transcoder {
    /// Compiles the bindings of `services` (full names, e.g. `pkg.Users`) from a
    /// serialized `FileDescriptorSet` (`protoc --include_imports
    /// --descriptor_set_out`). Returns the transcoder and the methods skipped (no
    /// annotation, streaming, a rule the gateway cannot serve), with why.
    pub fn from_descriptor_set(
        bytes: &[u8],
        services: &[&str],
        max_json_body_bytes: u64,
        max_message_bytes: usize,
    ) -> Result<(Transcoder, Vec<Skipped>), LoadError> {
        let pool =
            DescriptorPool::decode(bytes).map_err(|e| LoadError::Descriptors(e.to_string()))?;
        let (mut bindings, skipped) =
            binding::read_bindings(&pool, services).map_err(LoadError::UnknownService)?;
        // Most specific first: a literal segment beats a variable (`/users/me`
        // before `/users/{id}`); file order among equals.
        bindings.sort_by_key(|b| std::cmp::Reverse(b.template.specificity()));
        let transcoder = Transcoder {
            bindings,
            max_json_body_bytes,
            max_message_bytes,
        };
        Ok((transcoder, skipped))
    }

    /// The bindings, in the order they are tried.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The binding for an HTTP `method` and normalized `path`: the first (most
    /// specific) whose method and template match.
    pub fn find(&self, method: &[u8], path: &str) -> Lookup<'_> {
        let mut allowed: Vec<&str> = Vec::new();
        for b in &self.bindings {
            let Some(values) = b.template.matches(path) else {
                continue;
            };
            if b.http_method.as_bytes() == method {
                return Lookup::Found(b, values);
            }
            if !allowed.contains(&b.http_method.as_str()) {
                allowed.push(&b.http_method);
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::WrongMethod(allowed.join(", "))
        }
    }
}
