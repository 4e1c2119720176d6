//! The transform stage of a forwarded request: the route's header rules (merged
//! over its upstream's defaults at load, `crate::transform`) applied as the request
//! head goes upstream and as the response head comes back. A route without rules or
//! `cors` passes at the cost of a branch; a rule set whose values are all literal
//! renders nothing per request (its fields were written once at load).

use crate::config::Route;
use crate::downstream::Downstream;
use crate::transform::{is_cors_field, FieldRules, RequestValues};
use crate::upstream::UpstreamResponse;

use super::context::RequestCtx;

/// The route's rules for the request that goes upstream, when it has any.
pub fn request_rules(route: &Route) -> Option<&FieldRules> {
    route
        .header_rules
        .as_deref()
        .map(|r| &r.request)
        .filter(|r| !r.is_empty())
}

/// What rule values read from this request (`{request_id}`, `{client_ip}`,
/// `{claim.NAME}`, `{trace_id}`: empty until the request has a trace context).
pub fn values<'a, D: Downstream>(ctx: &'a RequestCtx, d: &'a D) -> RequestValues<'a> {
    RequestValues {
        request_id: ctx.id.as_str(),
        client_ip: d.conn().peer.ip(),
        caller: ctx.caller.as_deref(),
        trace_id: ctx.trace.as_ref().map(|t| &t.trace_id),
    }
}

/// Edits the upstream's response head before it is relayed: the fields the route's
/// response rules remove or set are dropped (and on a route with `cors`, the
/// upstream's own `Access-Control-*` fields: the gateway answers CORS there), and
/// the rules' fields join the ones the gateway adds to the response.
pub fn response_head<D: Downstream>(
    route: &Route,
    ctx: &mut RequestCtx,
    d: &D,
    response: &mut UpstreamResponse,
) {
    let rules = route
        .header_rules
        .as_deref()
        .map(|r| &r.response)
        .filter(|r| !r.is_empty());
    let cors = route.cors.is_some();
    if rules.is_none() && !cors {
        return;
    }
    response.remove_fields(&mut |name| {
        (cors && is_cors_field(name)) || rules.is_some_and(|r| r.drops(name))
    });
    if let Some(rules) = rules {
        let mut fields = std::mem::take(&mut ctx.response_fields);
        rules.append_to(&values(ctx, d), &mut fields);
        ctx.response_fields = fields;
    }
}
