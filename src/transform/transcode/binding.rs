//! The HTTP bindings of gRPC methods, read from the `google.api.http` option of
//! each method of the named services (google/api/http.proto): HTTP method, path
//! template, where the body goes, what the response body is. Each rule and each
//! of its `additional_bindings` is one [`Binding`]. Methods without the option, and
//! rules the gateway cannot serve (streaming, a path variable on a message field,
//! ...), are skipped with the reason, for `portico check` to warn about.

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    Value,
};

use super::path_template::PathTemplate;

/// The option's full name (extension 72295728 of `google.protobuf.MethodOptions`).
const HTTP_OPTION: &str = "google.api.http";

/// One HTTP binding of a unary or server-streaming gRPC method.
pub struct Binding {
    /// The HTTP method (uppercase for the standard ones; a `custom` kind as given).
    pub http_method: String,
    pub template: PathTemplate,
    /// The template as written, for messages.
    pub pattern: String,
    /// The gRPC call's `:path`: `/package.Service/Method`.
    pub rpc_path: String,
    pub input: MessageDescriptor,
    pub output: MessageDescriptor,
    /// The request field each path variable sets, in the template's order.
    pub path_fields: Vec<Vec<FieldDescriptor>>,
    pub body: BodyRule,
    /// `response_body`: the one field of the response that is the HTTP body.
    pub response_body: Option<FieldDescriptor>,
    /// A server-streaming method: its messages are answered as newline-delimited
    /// JSON, one line each.
    pub server_streaming: bool,
}

/// Where the JSON body of the request goes (`body` of the rule).
#[derive(Clone)]
pub enum BodyRule {
    /// No `body`: a request body is refused; query parameters fill the fields.
    None,
    /// `body: "*"`: the body is the request message (path variables aside); no
    /// query parameters.
    Whole,
    /// `body: "field"`: the body is that field's value; query parameters fill the
    /// other fields.
    Field(FieldDescriptor),
}

/// A method of a named service that gets no binding, and why.
pub struct Skipped {
    /// Index of the service in the route's `services`.
    pub service: usize,
    pub reason: String,
}

/// The bindings of `services` (full names) in `pool`. `Err(i)`: `services[i]` is
/// not in the descriptor set. Methods that cannot be served are in the second list.
pub fn read_bindings(
    pool: &DescriptorPool,
    services: &[&str],
) -> Result<(Vec<Binding>, Vec<Skipped>), usize> {
    let option = pool.get_extension_by_name(HTTP_OPTION);
    let mut bindings = Vec::new();
    let mut skipped = Vec::new();
    for (i, name) in services.iter().enumerate() {
        let service = pool.get_service_by_name(name).ok_or(i)?;
        for method in service.methods() {
            let skip = |reason: String| Skipped {
                service: i,
                reason: format!("{}: {reason}", method.full_name()),
            };
            let rule = option.as_ref().and_then(|o| {
                let options = method.options();
                options
                    .has_extension(o)
                    .then(|| options.get_extension(o).into_owned())
            });
            let Some(Value::Message(rule)) = rule else {
                skipped.push(skip(
                    "no google.api.http annotation; not transcoded".to_string(),
                ));
                continue;
            };
            if method.is_client_streaming() {
                skipped.push(skip(
                    "client-streaming and bidirectional methods are not transcoded (unary and server streaming only)"
                        .to_string(),
                ));
                continue;
            }
            let mut rules = vec![rule.clone()];
            if let Some(Value::List(more)) =
                rule.get_field_by_name("additional_bindings").as_deref()
            {
                rules.extend(more.iter().filter_map(|v| v.as_message().cloned()));
            }
            for rule in &rules {
                match binding(&method, rule) {
                    Ok(b) => bindings.push(b),
                    Err(reason) => skipped.push(skip(reason)),
                }
            }
        }
    }
    Ok((bindings, skipped))
}

/// One rule of `method` as a binding, or why it cannot be one.
fn binding(method: &MethodDescriptor, rule: &DynamicMessage) -> Result<Binding, String> {
    let text = |name: &str| match rule.get_field_by_name(name).as_deref() {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    let mut pattern = None;
    for verb in ["get", "put", "post", "delete", "patch"] {
        if let Some(path) = text(verb) {
            pattern = Some((verb.to_ascii_uppercase(), path));
        }
    }
    if let Some(Value::Message(custom)) = rule.get_field_by_name("custom").as_deref() {
        let field = |n: &str| match custom.get_field_by_name(n).as_deref() {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        if let (Some(kind), Some(path)) = (field("kind"), field("path")) {
            pattern = Some((kind, path));
        }
    }
    let (http_method, pattern) = pattern.ok_or("the http rule has no pattern")?;
    let template = PathTemplate::parse(&pattern).map_err(|e| e.to_string())?;
    let input = method.input();
    let output = method.output();
    let mut path_fields = Vec::new();
    for v in template.variables() {
        let fields = field_path(&input, &v.field_path)?;
        if let Some(leaf) = fields.last() {
            if leaf.is_list() || leaf.is_map() || matches!(leaf.kind(), Kind::Message(_)) {
                return Err(format!(
                    "path variable {{{}}} must name a single scalar field",
                    v.field_path.join(".")
                ));
            }
        }
        path_fields.push(fields);
    }
    let body = match text("body").as_deref() {
        None => BodyRule::None,
        Some("*") => BodyRule::Whole,
        Some(name) => BodyRule::Field(
            input
                .get_field_by_name(name)
                .ok_or_else(|| format!("body field \"{name}\" is not in {}", input.full_name()))?,
        ),
    };
    let response_body = match text("response_body") {
        None => None,
        Some(name) => {
            let field = output.get_field_by_name(&name).ok_or_else(|| {
                format!("response_body \"{name}\" is not in {}", output.full_name())
            })?;
            if field.is_list() || field.is_map() || !matches!(field.kind(), Kind::Message(_)) {
                return Err(format!(
                    "response_body \"{name}\" must name a single message field (the gateway renders messages)"
                ));
            }
            Some(field)
        }
    };
    Ok(Binding {
        http_method,
        template,
        pattern,
        rpc_path: format!("/{}/{}", method.parent_service().full_name(), method.name()),
        input,
        output,
        path_fields,
        body,
        response_body,
        server_streaming: method.is_server_streaming(),
    })
}

/// The fields along a dotted path from `message` (proto field names), each but the
/// last a singular message field.
fn field_path(
    message: &MessageDescriptor,
    path: &[String],
) -> Result<Vec<FieldDescriptor>, String> {
    let mut fields = Vec::with_capacity(path.len());
    let mut current = message.clone();
    for (i, name) in path.iter().enumerate() {
        let field = current.get_field_by_name(name).ok_or_else(|| {
            format!(
                "path variable {{{}}}: no field \"{name}\" in {}",
                path.join("."),
                current.full_name()
            )
        })?;
        if i + 1 < path.len() {
            match field.kind() {
                Kind::Message(m) if !field.is_list() && !field.is_map() => current = m,
                _ => {
                    return Err(format!(
                        "path variable {{{}}}: \"{name}\" is not a message field",
                        path.join(".")
                    ))
                }
            }
        }
        fields.push(field);
    }
    Ok(fields)
}
