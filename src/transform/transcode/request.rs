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

#[cfg(test)]
mod tests {
    use prost_reflect::prost_types::field_descriptor_proto::{Label, Type};
    use prost_reflect::prost_types::{
        DescriptorProto, FieldDescriptorProto, FileDescriptorProto, FileDescriptorSet,
    };
    use prost_reflect::DescriptorPool;

    use super::*;
    use crate::transform::transcode::PathTemplate;

    fn field(
        name: &str,
        number: i32,
        ty: Type,
        label: Label,
        type_name: &str,
    ) -> FieldDescriptorProto {
        FieldDescriptorProto {
            name: Some(name.into()),
            number: Some(number),
            r#type: Some(ty as i32),
            label: Some(label as i32),
            type_name: (!type_name.is_empty()).then(|| type_name.into()),
            json_name: Some(
                name.split('_')
                    .enumerate()
                    .map(|(i, p)| {
                        if i == 0 {
                            p.to_string()
                        } else {
                            p[..1].to_uppercase() + &p[1..]
                        }
                    })
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// `t.Req { string id = 1; int32 page_size = 2; repeated string tags = 3;
    /// Inner inner = 4; }`, `t.Inner { bool on = 1; int64 count = 2; }`.
    fn binding(template: &str, body: Option<&str>) -> Binding {
        let file = FileDescriptorProto {
            name: Some("t.proto".into()),
            package: Some("t".into()),
            syntax: Some("proto3".into()),
            message_type: vec![
                DescriptorProto {
                    name: Some("Req".into()),
                    field: vec![
                        field("id", 1, Type::String, Label::Optional, ""),
                        field("page_size", 2, Type::Int32, Label::Optional, ""),
                        field("tags", 3, Type::String, Label::Repeated, ""),
                        field("inner", 4, Type::Message, Label::Optional, ".t.Inner"),
                    ],
                    ..Default::default()
                },
                DescriptorProto {
                    name: Some("Inner".into()),
                    field: vec![
                        field("on", 1, Type::Bool, Label::Optional, ""),
                        field("count", 2, Type::Int64, Label::Optional, ""),
                    ],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let set = FileDescriptorSet { file: vec![file] };
        let pool = DescriptorPool::decode(set.encode_to_vec().as_slice()).unwrap();
        let input = pool.get_message_by_name("t.Req").unwrap();
        let template = PathTemplate::parse(template).unwrap();
        let path_fields = template
            .variables()
            .iter()
            .map(|v| vec![input.get_field_by_name(&v.field_path[0]).unwrap()])
            .collect();
        let body = match body {
            None => BodyRule::None,
            Some("*") => BodyRule::Whole,
            Some(name) => BodyRule::Field(input.get_field_by_name(name).unwrap()),
        };
        Binding {
            http_method: "GET".into(),
            pattern: "/x".into(),
            rpc_path: "/t.S/M".into(),
            output: input.clone(),
            input,
            template,
            path_fields,
            body,
            response_body: None,
            server_streaming: false,
        }
    }

    fn decoded(b: &Binding, framed: &[u8]) -> serde_json::Value {
        assert_eq!(framed[0], 0);
        let len = u32::from_be_bytes([framed[1], framed[2], framed[3], framed[4]]) as usize;
        assert_eq!(framed.len(), 5 + len);
        let m = DynamicMessage::decode(b.input.clone(), &framed[5..]).unwrap();
        serde_json::to_value(&m).unwrap()
    }

    #[test]
    fn path_query_and_body_make_one_message() {
        let b = binding("/v1/{id}", Some("inner"));
        let framed = b
            .request_message(
                &["a b".into()],
                Some("pageSize=20&tags=x&tags=y+z&tags=%C3%A9"),
                br#"{"on": true, "count": "7"}"#,
                1024,
            )
            .unwrap();
        assert_eq!(
            decoded(&b, &framed),
            serde_json::json!({"id": "a b", "pageSize": 20, "tags": ["x", "y z", "é"], "inner": {"on": true, "count": "7"}})
        );
        // Nested query fields by proto names; bools as true/false.
        let b = binding("/v1/{id}", None);
        let framed = b
            .request_message(
                &["1".into()],
                Some("inner.on=true&inner.count=3&page_size=2"),
                b"",
                1024,
            )
            .unwrap();
        assert_eq!(
            decoded(&b, &framed),
            serde_json::json!({"id": "1", "pageSize": 2, "inner": {"on": true, "count": "3"}})
        );
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let b = binding("/v1/{id}", None);
        let refused = |query: &str, body: &[u8]| {
            b.request_message(&["1".into()], Some(query), body, 1024)
                .unwrap_err()
                .message
        };
        assert!(refused("page_size=1&page_size=2", b"").contains("given twice"));
        assert!(refused("inner=x", b"").contains("unknown query parameter"));
        assert!(refused("inner.on=yes", b"").contains("not a valid bool"));
        assert!(refused("pageSize=big", b"").contains("pageSize"));
        assert!(refused("id=2", b"").contains("the path or the body sets"));
        assert!(refused("", b"{}").contains("takes no request body"));
        // The path value replaces the body's under body "*"; a nested bad value is named.
        let b = binding("/v1/{id}", Some("*"));
        let framed = b
            .request_message(&["9".into()], None, br#"{"id": "0", "tags": ["t"]}"#, 1024)
            .unwrap();
        assert_eq!(
            decoded(&b, &framed),
            serde_json::json!({"id": "9", "tags": ["t"]})
        );
        let e = b
            .request_message(
                &["9".into()],
                None,
                br#"{"inner": {"count": "many"}}"#,
                1024,
            )
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert!(
            e.message.contains("(field \"inner.count\")"),
            "{}",
            e.message
        );
        // Over max_message_bytes: 413.
        let e = b
            .request_message(
                &["9".into()],
                None,
                br#"{"tags": ["a long enough tag"]}"#,
                8,
            )
            .unwrap_err();
        assert_eq!(e.status, 413);
    }
}
