//! A REST request made into the gRPC request message of its binding, as the HTTP
//! rule says (google/api/http.proto): path variables set their fields, the JSON
//! body fills the message (`body: "*"`) or one field (`body: "name"`), and query
//! parameters fill the fields neither of them sets. The pieces are gathered into
//! one JSON object, read with the proto3 JSON mapping (prost-reflect), unknown
//! fields and bad values refused, and encoded as one length-prefixed gRPC message.

use prost::Message as _;
use prost_reflect::{DeserializeOptions, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value};

use super::binding::{Binding, BodyRule};
use super::path_template::percent_decode;

/// A request that cannot be made into the method's message: answered with
/// `status` (400, or 413 for a message over the limit) before any upstream call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest {
    pub status: u16,
    pub message: String,
}

fn bad(message: impl Into<String>) -> BadRequest {
    BadRequest {
        status: 400,
        message: message.into(),
    }
}

impl Binding {
    /// The gRPC request body for this binding: one message, length-prefixed
    /// (`0`, 4-byte big-endian length, the encoded message). `captures` are the
    /// path variables' values ([`PathTemplate::matches`](super::PathTemplate::matches)),
    /// `query` the raw query string, `body` the JSON body (empty: none).
    /// `max_message_bytes` bounds the encoded message.
    pub fn request_message(
        &self,
        captures: &[String],
        query: Option<&str>,
        body: &[u8],
        max_message_bytes: usize,
    ) -> Result<Vec<u8>, BadRequest> {
        let mut json = self.body_json(body)?;
        for (fields, value) in self.path_fields.iter().zip(captures) {
            let Some(leaf) = fields.last() else { continue };
            let value = scalar_json(leaf, value).ok_or_else(|| {
                bad(format!(
                    "path value \"{value}\" is not a valid {}",
                    kind_name(leaf)
                ))
            })?;
            set_nested(&mut json, fields, value, Place::Replace)?;
        }
        if let Some(q) = query.filter(|q| !q.is_empty()) {
            self.query_fields(q, &mut json)?;
        }
        let json = Value::Object(json);
        let message = read_message(&self.input, &json).map_err(|e| {
            let at = match &json {
                Value::Object(map) => blame(&self.input, map),
                _ => None,
            }
            .map(|path| format!(" (field \"{path}\")"))
            .unwrap_or_default();
            bad(format!(
                "invalid request for {}{at}: {e}",
                self.input.full_name()
            ))
        })?;
        let len = message.encoded_len();
        if len > max_message_bytes {
            return Err(BadRequest {
                status: 413,
                message: format!(
                    "request message of {len} bytes is over max_message_bytes ({max_message_bytes})"
                ),
            });
        }
        let mut framed = Vec::with_capacity(5 + len);
        framed.push(0);
        framed.extend_from_slice(&(len as u32).to_be_bytes());
        message
            .encode(&mut framed)
            .map_err(|e| bad(format!("cannot encode the request: {e}")))?;
        Ok(framed)
    }

    /// The JSON object the body gives: the whole message, one field of it, or
    /// nothing (a body is then refused).
    fn body_json(&self, body: &[u8]) -> Result<Map<String, Value>, BadRequest> {
        let blank = body.iter().all(u8::is_ascii_whitespace);
        match &self.body {
            BodyRule::None if blank => Ok(Map::new()),
            BodyRule::None => Err(bad(format!(
                "{} {} takes no request body",
                self.http_method, self.pattern
            ))),
            _ if blank => Ok(Map::new()),
            BodyRule::Whole => match parse_json(body)? {
                Value::Object(map) => Ok(map),
                _ => Err(bad("the request body must be a JSON object")),
            },
            BodyRule::Field(field) => {
                let mut map = Map::new();
                map.insert(field.json_name().to_string(), parse_json(body)?);
                Ok(map)
            }
        }
    }

    /// Adds the query parameters to `json`: each names a field path (proto or
    /// JSON names, dotted) to a scalar, enum, well-known value, or a repeated one of
    /// those (the parameter given once per element).
    fn query_fields(&self, query: &str, json: &mut Map<String, Value>) -> Result<(), BadRequest> {
        if matches!(self.body, BodyRule::Whole) {
            return Err(bad(
                "query parameters are not accepted here: the body is the whole request message (body: \"*\")",
            ));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = form_decode(name)
                .ok_or_else(|| bad(format!("query parameter \"{name}\" is not valid UTF-8")))?;
            let value = form_decode(value)
                .ok_or_else(|| bad(format!("the value of \"{name}\" is not valid UTF-8")))?;
            let fields = resolve(&self.input, &name)
                .ok_or_else(|| bad(format!("unknown query parameter \"{name}\"")))?;
            let bound = self.path_fields.iter().any(|p| p == &fields)
                || matches!(&self.body, BodyRule::Field(b) if fields.first() == Some(b));
            if bound {
                return Err(bad(format!(
                    "query parameter \"{name}\" names a field the path or the body sets"
                )));
            }
            let Some(leaf) = fields.last() else { continue };
            let parsed = scalar_json(leaf, &value).ok_or_else(|| {
                bad(format!(
                    "query parameter \"{name}\": \"{value}\" is not a valid {}",
                    kind_name(leaf)
                ))
            })?;
            let place = if leaf.is_list() {
                Place::Append
            } else {
                Place::Once
            };
            set_nested(json, &fields, parsed, place)
                .map_err(|e| bad(format!("query parameter \"{name}\": {}", e.message)))?;
        }
        Ok(())
    }
}

/// `json` read as a `message` by the proto3 JSON mapping, unknown fields refused.
fn read_message(
    message: &MessageDescriptor,
    json: &Value,
) -> Result<DynamicMessage, serde_json::Error> {
    DynamicMessage::deserialize_with_options(
        message.clone(),
        json,
        &DeserializeOptions::new().deny_unknown_fields(true),
    )
}

/// The dotted path of the first field of `json` that `message` refuses (read one
/// at a time, into nested messages), so the client is told which one. Only on
/// the error path.
fn blame(message: &MessageDescriptor, json: &Map<String, Value>) -> Option<String> {
    for (key, value) in json {
        let mut one = Map::new();
        one.insert(key.clone(), value.clone());
        if read_message(message, &Value::Object(one)).is_ok() {
            continue;
        }
        let field = message
            .get_field_by_json_name(key)
            .or_else(|| message.get_field_by_name(key));
        let inner = match (field.as_ref().map(FieldDescriptor::kind), value) {
            (Some(Kind::Message(m)), Value::Object(o))
                if !field.as_ref().is_some_and(|f| f.is_map()) =>
            {
                blame(&m, o)
            }
            _ => None,
        };
        return Some(match inner {
            Some(path) => format!("{key}.{path}"),
            None => key.clone(),
        });
    }
    None
}

/// The body as JSON; a syntax error says where.
fn parse_json(body: &[u8]) -> Result<Value, BadRequest> {
    serde_json::from_slice(body)
        .map_err(|e| bad(format!("the request body is not valid JSON: {e}")))
}

/// The field path of a query parameter name (`a.b.c`, each part a proto or JSON
/// field name); every part but the last a singular message field, the last not a
/// map and not a message other than a well-known value type.
fn resolve(message: &MessageDescriptor, name: &str) -> Option<Vec<FieldDescriptor>> {
    let parts: Vec<&str> = name.split('.').collect();
    let mut fields = Vec::with_capacity(parts.len());
    let mut current = message.clone();
    for (i, part) in parts.iter().enumerate() {
        let field = current
            .get_field_by_name(part)
            .or_else(|| current.get_field_by_json_name(part))?;
        let last = i + 1 == parts.len();
        match field.kind() {
            Kind::Message(m) if !last && !field.is_list() && !field.is_map() => current = m,
            _ if !last => return None,
            _ if field.is_map() => return None,
            Kind::Message(m) if !is_string_valued(&m) => return None,
            _ => {}
        }
        fields.push(field);
    }
    Some(fields)
}

/// Well-known messages whose proto3 JSON form is a string or a number, so a path
/// or query value can give them.
fn is_string_valued(m: &MessageDescriptor) -> bool {
    matches!(
        m.full_name(),
        "google.protobuf.Timestamp"
            | "google.protobuf.Duration"
            | "google.protobuf.FieldMask"
            | "google.protobuf.StringValue"
            | "google.protobuf.BytesValue"
            | "google.protobuf.Int32Value"
            | "google.protobuf.UInt32Value"
            | "google.protobuf.Int64Value"
            | "google.protobuf.UInt64Value"
            | "google.protobuf.FloatValue"
            | "google.protobuf.DoubleValue"
            | "google.protobuf.BoolValue"
    )
}

/// A path or query value as the JSON the proto3 mapping reads for `field`'s type:
/// booleans as `true`/`false`, enum numbers as numbers, everything else as the
/// string the mapping accepts (numbers, names, base64, RFC 3339 times).
fn scalar_json(field: &FieldDescriptor, text: &str) -> Option<Value> {
    match field.kind() {
        Kind::Bool => parse_bool(text),
        Kind::Message(m) if m.full_name() == "google.protobuf.BoolValue" => parse_bool(text),
        Kind::Message(m) if !is_string_valued(&m) => None,
        Kind::Enum(_) => Some(match text.parse::<i32>() {
            Ok(n) => Value::from(n),
            Err(_) => Value::String(text.to_string()),
        }),
        _ => Some(Value::String(text.to_string())),
    }
}

fn parse_bool(text: &str) -> Option<Value> {
    match text {
        "true" => Some(Value::Bool(true)),
        "false" => Some(Value::Bool(false)),
        _ => None,
    }
}

/// What a field holds, in words, for messages.
fn kind_name(field: &FieldDescriptor) -> String {
    match field.kind() {
        Kind::Enum(e) => format!("{} value", e.full_name()),
        Kind::Message(m) => m.full_name().to_string(),
        k => format!("{k:?}").to_ascii_lowercase(),
    }
}

/// How a value joins what is already at its place.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Place {
    /// A path value: it replaces what the body said.
    Replace,
    /// A singular query parameter: given twice is an error.
    Once,
    /// An element of a repeated field.
    Append,
}

/// Sets `value` at `fields` in `json`, keyed by JSON names (a proto-named key for
/// the same field is taken over), as `place` says.
fn set_nested(
    json: &mut Map<String, Value>,
    fields: &[FieldDescriptor],
    value: Value,
    place: Place,
) -> Result<(), BadRequest> {
    let Some((leaf, parents)) = fields.split_last() else {
        return Ok(());
    };
    let mut map = json;
    for f in parents {
        let inner = take_key(map, f).unwrap_or_else(|| Value::Object(Map::new()));
        let entry = map.entry(f.json_name().to_string()).or_insert(inner);
        map = match entry {
            Value::Object(m) => m,
            _ => {
                return Err(bad(format!(
                    "field \"{}\" must be an object",
                    f.json_name()
                )))
            }
        };
    }
    let value = match (place, take_key(map, leaf)) {
        (Place::Append, Some(Value::Array(mut items))) => {
            items.push(value);
            Value::Array(items)
        }
        (Place::Append, _) => Value::Array(vec![value]),
        (Place::Once, Some(_)) => return Err(bad("given twice")),
        _ => value,
    };
    map.insert(leaf.json_name().to_string(), value);
    Ok(())
}

/// Removes and returns the value under `field`'s JSON or proto name.
fn take_key(map: &mut Map<String, Value>, field: &FieldDescriptor) -> Option<Value> {
    let by_json = map.remove(field.json_name());
    let by_name = map.remove(field.name());
    by_json.or(by_name)
}

/// `application/x-www-form-urlencoded` decoding of a query name or value: `+` is
/// a space, `%XX` escapes decoded; `None` for bytes that are not UTF-8.
fn form_decode(text: &str) -> Option<String> {
    if text.contains('+') {
        percent_decode(&text.replace('+', " "))
    } else {
        percent_decode(text)
    }
}
