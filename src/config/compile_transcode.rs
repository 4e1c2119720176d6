//! Checks and compiles a route's `transcode = { descriptor_set, services, ... }`:
//! the descriptor set read (relative to the configuration file) and decoded, each
//! service found, each method's `google.api.http` rule compiled (a method without
//! one, or with one the gateway cannot serve, is skipped with a warning), the
//! route's upstream HTTP/2, and the limits in range. The key is taken out of the
//! section before the routes compile ([`take_route`]); the forwarding route it
//! names becomes a transcoding one after ([`attach`]).

use std::ops::Range;
use std::path::Path;

use toml::Spanned;

use super::error::Problems;
use super::schema::RouteSection;
use super::schema_transform::TranscodeSection;
use super::snapshot::{Action, Route, TranscodeRoute, Upstream, UpstreamProtocol};
use super::values::in_range;
use crate::transform::transcode::{
    LoadError, Transcoder, DEFAULT_MAX_JSON_BODY_BYTES, DEFAULT_MAX_MESSAGE_BYTES,
};

/// Largest `max_json_body_bytes` and `max_message_bytes` accepted (64 MiB): the
/// whole body and message are held in memory on the worker.
const MAX_LIMIT: u64 = 64 << 20;

/// A route's `transcode` key, taken out of its section, with the keys that do not
/// go with it.
pub(super) struct TranscodeSections {
    section: Spanned<TranscodeSection>,
    /// Where `strip_prefix`, `rewrite_prefix` or `retry` are, if given.
    not_with: Vec<(&'static str, Range<usize>)>,
}

/// Takes a route's `transcode` key out of its section.
pub(super) fn take_route(r: &mut RouteSection) -> Option<TranscodeSections> {
    let section = r.transcode.take()?;
    let mut not_with = Vec::new();
    if let Some(s) = r.strip_prefix.as_ref().filter(|s| *s.get_ref()) {
        not_with.push(("strip_prefix", s.span()));
    }
    if let Some(rw) = &r.rewrite_prefix {
        not_with.push(("rewrite_prefix", rw.span()));
    }
    if let Some(retry) = &r.retry {
        not_with.push(("retry", retry.span()));
    }
    Some(TranscodeSections { section, not_with })
}

/// Makes each route with a `transcode` key a transcoding route (`routes` and
/// `sections` in file order); `base` is the configuration file's folder.
pub(super) fn attach(
    routes: &mut [Route],
    sections: Vec<Option<TranscodeSections>>,
    upstreams: &[Upstream],
    base: &Path,
    p: &mut Problems<'_>,
) {
    for (route, s) in routes.iter_mut().zip(sections) {
        let Some(s) = s else { continue };
        let span = s.section.span();
        for (key, at) in &s.not_with {
            p.at(
                at.clone(),
                format!("{key} does not apply to a transcode route (the gRPC path comes from the bindings; calls are not retried)"),
            );
        }
        let Action::Forward(index) = route.action else {
            p.at(span, "transcode needs upstream = \"NAME\" (an HTTP/2 upstream), not respond or [route.compose]");
            continue;
        };
        let Some(upstream) = upstreams.get(index) else {
            continue;
        };
        if upstream.protocol == UpstreamProtocol::Http1 {
            p.at(
                span,
                format!(
                    "transcode needs an HTTP/2 upstream (protocol = \"h2\" or \"h2c\"); \"{}\" speaks HTTP/1.1",
                    upstream.name
                ),
            );
            continue;
        }
        if let Some(transcoder) = transcoder(s.section.get_ref(), base, p) {
            route.action = Action::Transcode(Box::new(TranscodeRoute {
                upstream: index,
                transcoder,
            }));
        }
    }
}

/// The route's bindings and limits; `None` after recording why not.
fn transcoder(t: &TranscodeSection, base: &Path, p: &mut Problems<'_>) -> Option<Transcoder> {
    let max_json = t
        .max_json_body_bytes
        .as_ref()
        .map_or(DEFAULT_MAX_JSON_BODY_BYTES, |v| {
            in_range(v, 2, MAX_LIMIT, p)
        });
    let max_message = t
        .max_message_bytes
        .as_ref()
        .map_or(DEFAULT_MAX_MESSAGE_BYTES, |v| {
            in_range(v, 1, MAX_LIMIT, p) as usize
        });
    let file = base.join(t.descriptor_set.get_ref());
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) => {
            p.at(
                t.descriptor_set.span(),
                format!("cannot read descriptor set {}: {e}", file.display()),
            );
            return None;
        }
    };
    if t.services.is_empty() {
        p.at(
            t.descriptor_set.span(),
            "services is empty: name the services to transcode (e.g. [\"pkg.Users\"])",
        );
        return None;
    }
    let names: Vec<&str> = t.services.iter().map(|s| s.get_ref().as_str()).collect();
    let (transcoder, skipped) = match Transcoder::from_descriptor_set(
        &bytes,
        &names,
        max_json,
        max_message,
    ) {
        Ok(done) => done,
        Err(LoadError::Descriptors(why)) => {
            p.at(
                    t.descriptor_set.span(),
                    format!(
                        "{} is not a descriptor set (protoc --include_imports --descriptor_set_out): {why}",
                        file.display()
                    ),
                );
            return None;
        }
        Err(LoadError::UnknownService(i)) => {
            let (at, name) = (t.services[i].span(), names[i]);
            p.at(
                at,
                format!(
                    "service \"{name}\" is not in {} (give its full name, package included)",
                    file.display()
                ),
            );
            return None;
        }
    };
    for s in skipped {
        p.warn(t.services[s.service].span(), s.reason);
    }
    if transcoder.bindings().is_empty() {
        p.at(
            t.descriptor_set.span(),
            "no method of these services has a google.api.http binding the gateway can serve: the route would answer only 404",
        );
        return None;
    }
    Some(transcoder)
}
