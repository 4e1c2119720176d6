//! A composed route's plan, compiled once at load (`compile_compose.rs`) and run per
//! request by `crate::compose`: the parts to call, their request templates, how each
//! answer is shaped, how the answers merge, and what a failed part does to the call.
//! docs/composition.md is the operator's view.

use std::time::Duration;

use serde_json::Value;

/// What a `[route.compose]` route does.
#[derive(Debug)]
pub struct ComposePlan {
    pub merge: Merge,
    pub on_part_failure: OnPartFailure,
    /// The whole fan-out must be done by then (from the moment the parts start).
    pub deadline: Duration,
    /// Largest part answer body (payload bytes, chunk framing excluded).
    pub max_part_bytes: u64,
    /// Largest merged answer body.
    pub max_response_bytes: u64,
    /// In declared order: the order of the merge, whatever the order of arrival.
    pub parts: Vec<ComposePart>,
    /// This route's position among the snapshot's composed routes (its counters).
    pub slot: usize,
}

/// `merge`: how part answers become one JSON document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// `{"part-name": answer, ...}`.
    Nested,
    /// The answers' top-level keys in one object; a later part wins a collision.
    Flat,
}

/// `on_part_failure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPartFailure {
    /// All or nothing: any failed part fails the call.
    Fail,
    /// A failed required part fails the call; failed optional parts are replaced
    /// by their fallback or left out, and the answer says which.
    Partial,
}

/// `on_4xx`: what a part's 4xx answer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On4xx {
    /// A failure of the part, like a 5xx.
    Fail,
    /// The part's data (its JSON body, shaped like a 2xx answer).
    Data,
}

/// One `[[route.compose.part]]`.
#[derive(Debug)]
pub struct ComposePart {
    pub name: String,
    /// Index into `Snapshot::upstreams`.
    pub upstream: usize,
    /// Uppercase method token.
    pub method: String,
    /// The path, with the query written after `?` when the template has one.
    pub path: Template,
    /// Parameters appended to the query: the name (already percent-encoded) and
    /// the value's template.
    pub query: Vec<(String, Template)>,
    /// Header fields sent to the part: lowercase name, value template.
    pub headers: Vec<(String, Template)>,
    /// The part's own timeout; `None`: the route's deadline only.
    pub timeout: Option<Duration>,
    pub required: bool,
    /// Used in place of the answer when the part fails (`on_part_failure = "partial"`).
    pub fallback: Option<Value>,
    pub shape: Shape,
    /// `body = "forward"`: the client's request body goes to this part.
    pub forward_body: bool,
    pub on_4xx: On4xx,
}

/// How a part's answer is cut down before the merge, in this order: `select`, then
/// `allow` / `deny`, then `rename`.
#[derive(Debug, Default)]
pub struct Shape {
    /// A JSON pointer (RFC 6901): the answer becomes the value it points at.
    pub select: Option<String>,
    pub keys: KeyFilter,
    /// Top-level key → new name, in name order.
    pub rename: Vec<(String, String)>,
}

/// `allow` / `deny`: which top-level keys of an object answer are kept.
#[derive(Debug, Default)]
pub enum KeyFilter {
    #[default]
    All,
    Allow(Vec<String>),
    Deny(Vec<String>),
}

impl Shape {
    /// No shaping at all: the answer is merged as it came.
    pub fn is_identity(&self) -> bool {
        self.select.is_none() && matches!(self.keys, KeyFilter::All) && self.rename.is_empty()
    }
}

/// A string with placeholders (`/users/{path.user_id}`), parsed once.
#[derive(Debug, Default)]
pub struct Template {
    pub pieces: Vec<TemplatePiece>,
}

#[derive(Debug)]
pub enum TemplatePiece {
    /// Written as is (already valid where it goes).
    Literal(String),
    Value(Placeholder),
}

/// `{source.NAME}`: a value read from the request.
#[derive(Debug)]
pub struct Placeholder {
    pub source: ValueSource,
    pub encoding: Encoding,
    /// `path.user_id`, as written, for the error that names a missing value.
    pub text: String,
}

/// Where a placeholder's value comes from.
#[derive(Debug, PartialEq, Eq)]
pub enum ValueSource {
    /// A named segment of the route's path, by position (`route::path_segment`).
    Path(usize),
    /// A query parameter of the client's request.
    Query(String),
    /// A header field of the client's request (lowercase name).
    Header(String),
    /// A claim of the verified caller.
    Claim(String),
}

/// How a value is written where its placeholder stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// In the path: every byte but `A-Z a-z 0-9 - . _ ~` percent-encoded (so `/`
    /// becomes `%2F`); `.` and `..` are refused.
    PathSegment,
    /// In the query: every byte but `A-Z a-z 0-9 - . _ ~` percent-encoded.
    QueryComponent,
    /// In a header field: as is; control characters are refused.
    FieldValue,
}
