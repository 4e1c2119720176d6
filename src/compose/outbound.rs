//! The request head one part sends: its method, the rendered path and query, and
//! the fields a part carries — the gateway's identity fields from the verified
//! caller, the client certificate subject, `X-Forwarded-*`, `X-Request-Id`, the
//! part's own `headers`, `Accept: application/json`, and with trace context the
//! gateway's `traceparent` naming the part's own span. Client fields are not
//! copied, except the token (when the provider forwards it) and, to the part that
//! gets the client's body, its `Content-Type` and `Content-Encoding`.

use crate::auth::TokenSource;
use crate::config::{ComposePart, Endpoint, Route, Snapshot};
use crate::downstream::Downstream;
use crate::http::{
    write_upstream_request, BodyFraming, FieldList, HeaderEdit, TraceFields, UpstreamRequest,
};
use crate::observe::TraceContext;

use super::template::{render, RequestValues, Unrenderable};

/// What a part's head takes from the client's request.
pub struct ClientRequest<'a> {
    pub request_id: &'a str,
    /// The normalized path (what the route matched).
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: Option<&'a str>,
    /// The request's authority, for `X-Forwarded-Host`.
    pub authority: Option<&'a [u8]>,
    pub caller: Option<&'a crate::auth::Caller>,
    /// The request's trace context (with `[tracing]`).
    pub trace: Option<&'a TraceContext>,
}

/// Writes `part`'s request head for `endpoint` into `out` (cleared first), or
/// names the template value that is missing. With trace context, `span_id` is the
/// part's client span, sent upstream as the parent.
#[allow(clippy::too_many_arguments)]
pub fn write_head<D: Downstream>(
    out: &mut Vec<u8>,
    part: &ComposePart,
    endpoint: &Endpoint,
    route: &Route,
    snapshot: &Snapshot,
    req: &ClientRequest<'_>,
    span_id: Option<[u8; 8]>,
    d: &D,
) -> Result<(), Unrenderable> {
    let values = RequestValues {
        path: req.path,
        query: req.query,
        headers: d,
        caller: req.caller,
    };
    let mut target = Vec::with_capacity(128);
    render(&part.path, &values, &mut target)?;
    for (name, value) in &part.query {
        match (target.contains(&b'?'), target.last()) {
            (false, _) => target.push(b'?'),
            (true, Some(b'?' | b'&')) => {}
            (true, _) => target.push(b'&'),
        }
        target.extend_from_slice(name.as_bytes());
        target.push(b'=');
        render(value, &values, &mut target)?;
    }
    let mut fields = FieldList::new();
    let mut value = Vec::new();
    for (name, template) in &part.headers {
        value.clear();
        render(template, &values, &mut value)?;
        fields.push(name.as_bytes(), &value);
    }
    if !part.headers.iter().any(|(name, _)| name == "accept") {
        fields.push(b"accept", b"application/json");
    }
    // Templates write ASCII only (literals are checked at load, values encoded).
    let target = String::from_utf8_lossy(&target);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (&*target, None),
    };
    let none = FieldList::new();
    let added = [
        req.caller.map_or(&none, |c| &c.identity_headers),
        d.conn().client_subject.as_ref().unwrap_or(&none),
        &fields,
    ];
    let body = if part.forward_body {
        d.body_framing()
    } else if matches!(part.method.as_str(), "GET" | "HEAD") {
        BodyFraming::None
    } else {
        BodyFraming::Length(0)
    };
    let traceparent = req.trace.zip(span_id).map(|(t, span)| t.traceparent(&span));
    let request = UpstreamRequest {
        method: part.method.as_bytes(),
        path,
        query,
        host: endpoint.authority.as_bytes(),
        client_host: req.authority,
        client_ip: &d.conn().peer_ip,
        secure: d.conn().secure,
        http10: false,
        body,
        upgrade: None,
        added: &added,
        request_id: req.request_id.as_bytes(),
        trace: match (req.trace, &traceparent) {
            (Some(trace), Some(value)) => TraceFields::Replace {
                traceparent: value,
                tracestate: trace.tracestate.as_deref(),
            },
            _ => TraceFields::PassThrough,
        },
    };
    let token_headers = forwarded_token_headers(route, snapshot);
    write_upstream_request(out, d, &request, |name, _| {
        let body_field = part.forward_body
            && (name.eq_ignore_ascii_case(b"content-type")
                || name.eq_ignore_ascii_case(b"content-encoding"));
        let token = token_headers
            .iter()
            .any(|h| name.eq_ignore_ascii_case(h.as_bytes()));
        if body_field || token {
            HeaderEdit::Keep
        } else {
            HeaderEdit::Drop
        }
    });
    Ok(())
}

/// The header fields the route's provider takes its token from, when it forwards
/// the token upstream (`forward_token = true`).
fn forwarded_token_headers<'s>(route: &Route, snapshot: &'s Snapshot) -> Vec<&'s str> {
    let provider = route
        .auth
        .as_ref()
        .and_then(|a| snapshot.auth.providers.get(a.provider));
    provider
        .filter(|p| p.forward_token)
        .map(|p| {
            p.token_from
                .iter()
                .filter_map(|s| match s {
                    TokenSource::Header(h) => Some(h.as_str()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}
