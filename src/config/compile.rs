//! Validation and compilation of the parsed sections into a [`Snapshot`].
//!
//! Every check records a problem at the offending key and goes on, so `portico check`
//! reports all problems of a file at once.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use toml::Spanned;

use super::compile_compose::{self, ComposeLimits, RouteContext};
use super::error::Problems;
use super::rate_limits;
use super::schema::{self, Balance, Workers};
use super::snapshot::*;
use super::values::{in_range, is_token, millis, positive};
use super::Sections;
use crate::http::{FieldList, UnderscoreHeaders};
use crate::observe::AccessLogTarget;
use crate::route::{self, HeaderMatch, PathMatch, RouteSpec, RouteTable};
use crate::text::AddrText;
use crate::tls::{
    CertSettings, ListenerTls, TlsListenerSettings, TlsVersion, UpstreamTls, UpstreamTlsSettings,
};

pub(crate) fn compile(
    file: &str,
    mut sections: Sections,
    problems: &mut Problems<'_>,
) -> Option<Snapshot> {
    let base = Path::new(file)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let server = server_settings(sections.server.unwrap_or_default(), &base, problems);
    let admin_section = sections.admin.take();
    let admin = admin_section
        .as_ref()
        .and_then(|a| socket_addr(&a.listen, problems));
    let admin_token_env = admin_section
        .as_ref()
        .and_then(|a| super::compile_control::admin_token_env(a, admin, problems));
    let reload = super::compile_control::reload_settings(sections.reload.as_ref(), problems);
    let log = log_settings(sections.log.unwrap_or_default(), problems);
    let tracing = sections
        .tracing
        .take()
        .map(|t| super::compile_observe::tracing(t, problems));
    let upstream_rules: Vec<_> = sections
        .upstreams
        .iter_mut()
        .map(super::compile_transform::take_upstream)
        .collect();
    let upstreams = upstreams(sections.upstreams, &base, problems);
    let endpoint_count = upstreams.iter().map(|u| u.endpoints.len()).sum();
    let mut auth = super::compile_auth::auth_settings(sections.auth, file, problems);
    // What the TLS layer asserts (a client certificate's subject) is an identity
    // header too: a client's copy is stripped before routing, like a claim header.
    for h in server.iter().flat_map(|s| &s.reserved_headers) {
        let h = h.as_bytes().to_vec();
        if !auth.identity_headers.contains(&h) {
            auth.identity_headers.push(h);
        }
    }
    let rate_limits = rate_limits::compile(
        std::mem::take(&mut sections.rate_limits),
        sections.fleet.take(),
        sections.rate_limit_headers.take(),
        problems,
    );
    let route_policies: Vec<_> = sections
        .routes
        .iter_mut()
        .map(|r| std::mem::take(&mut r.rate_limits))
        .collect();
    let transforms: Vec<_> = sections
        .routes
        .iter_mut()
        .map(super::compile_transform::take_route)
        .collect();
    let transcodes: Vec<_> = sections
        .routes
        .iter_mut()
        .map(super::compile_transcode::take_route)
        .collect();
    let compose_limits = compile_compose::limits(sections.compose.take(), problems);
    let (specs, mut routes) = routes(
        sections.routes,
        &upstreams,
        &auth,
        &compose_limits,
        problems,
    );
    for (route, names) in routes.iter_mut().zip(route_policies) {
        route.limits = rate_limits::route_limits(&route.name, &names, &rate_limits, problems);
    }
    super::compile_transcode::attach(&mut routes, transcodes, &upstreams, &base, problems);
    super::compile_transform::attach(
        &mut routes,
        &specs,
        transforms,
        &upstream_rules,
        &upstreams,
        &auth,
        problems,
    );
    if !problems.is_empty() {
        return None;
    }
    Some(Snapshot {
        source: file.to_string(),
        hash: super::ConfigHash::default(),
        server: server?,
        admin,
        admin_token_env,
        reload,
        log,
        route_table: RouteTable::new(&specs),
        routes,
        upstreams,
        endpoint_count,
        rate_limits: Arc::new(rate_limits),
        auth,
        warnings: Vec::new(),
        tracing,
    })
}

fn server_settings(
    s: schema::ServerSection,
    base: &Path,
    p: &mut Problems<'_>,
) -> Option<ServerSettings> {
    let mut listen = Vec::new();
    for l in &s.listen {
        if let Some(addr) = socket_addr(l, p) {
            if listen.contains(&addr) {
                p.at(l.span(), format!("listen address {addr} is given twice"));
            }
            listen.push(addr);
        }
    }
    let workers = match s.workers.get_ref() {
        Workers::Named(n) if n == Workers::AUTO => None,
        Workers::Count(n) if (1..=1024).contains(n) => Some(*n as usize),
        Workers::Count(n) => {
            p.at(
                s.workers.span(),
                format!("workers must be \"auto\" or from 1 to 1024, not {n}"),
            );
            None
        }
        Workers::Named(n) => {
            p.at(
                s.workers.span(),
                format!("workers must be \"auto\" or from 1 to 1024, not \"{n}\""),
            );
            None
        }
    };
    let limits = Limits {
        max_connections_per_worker: positive(&s.max_connections_per_worker, p) as usize,
        max_header_bytes: in_range(&s.max_header_bytes, 1024, 1 << 20, p) as usize,
        max_headers: in_range(&s.max_headers, 8, 1000, p) as usize,
        max_uri_bytes: in_range(&s.max_uri_bytes, 64, 1 << 20, p) as usize,
        max_body_bytes: *s.max_body_bytes.get_ref(),
        header_read_timeout: millis(&s.header_read_timeout_ms, p),
        body_read_timeout: millis(&s.body_read_timeout_ms, p),
        idle_timeout: millis(&s.idle_timeout_ms, p),
        send_timeout: millis(&s.send_timeout_ms, p),
        underscores: match s.headers_with_underscores {
            schema::UnderscoreHeadersSetting::Drop => UnderscoreHeaders::Drop,
            schema::UnderscoreHeadersSetting::Reject => UnderscoreHeaders::Reject,
            schema::UnderscoreHeadersSetting::Allow => UnderscoreHeaders::Allow,
        },
    };
    if limits.max_uri_bytes > limits.max_header_bytes {
        p.at(
            s.max_uri_bytes.span(),
            "max_uri_bytes must not exceed max_header_bytes (the request line is part of the head)",
        );
    }
    let tls: Vec<TlsListener> = s
        .tls
        .iter()
        .filter_map(|t| tls_listener(t, base, &listen, p))
        .collect();
    if listen.is_empty() && s.listen.is_empty() && tls.is_empty() {
        p.at(
            0..0,
            "[server] needs at least one listener: listen or [[server.tls]]",
        );
    }
    let reserved_headers = tls
        .iter()
        .filter_map(|t| t.settings.client_subject_header.clone())
        .collect();
    Some(ServerSettings {
        listen,
        tls,
        reserved_headers,
        workers,
        pin_workers: s.pin_workers,
        listen_backlog: in_range(&s.listen_backlog, 1, 65535, p) as i32,
        fd_limit: fd_limit_policy(&s.fd_limit, p),
        limits,
        drain_timeout: Duration::from_millis(*s.drain_timeout_ms.get_ref()),
        redirect_to_https: s.redirect_to_https,
        max_in_flight_per_worker: positive(&s.max_in_flight_per_worker, p) as usize,
        http2: super::compile_http2::http2_settings(&s, p),
        runtime: super::runtime::compile(&s.runtime, p),
        path_parameters: match s.path_parameters {
            schema::PathParametersSetting::Reject => route::PathParameters::Reject,
            schema::PathParametersSetting::Strip => route::PathParameters::Strip,
        },
    })
}

fn fd_limit_policy(v: &Spanned<String>, p: &mut Problems<'_>) -> FdLimitPolicy {
    match v.get_ref().as_str() {
        "warn" => FdLimitPolicy::Warn,
        "refuse" => FdLimitPolicy::Refuse,
        other => {
            p.at(
                v.span(),
                format!("fd_limit must be \"warn\" or \"refuse\", not \"{other}\""),
            );
            FdLimitPolicy::Warn
        }
    }
}

fn log_settings(l: schema::LogSection, p: &mut Problems<'_>) -> LogSettings {
    let level = l.level.get_ref().to_ascii_lowercase();
    if !["trace", "debug", "info", "warn", "error", "off"].contains(&level.as_str()) {
        p.at(
            l.level.span(),
            format!(
                "log level \"{}\" is not one of trace, debug, info, warn, error, off",
                l.level.get_ref()
            ),
        );
    }
    let access_log = match l.access_log.get_ref().as_str() {
        "off" => AccessLogTarget::Off,
        "stdout" => AccessLogTarget::Stdout,
        "" => {
            p.at(
                l.access_log.span(),
                "access_log must be stdout, off or a file path",
            );
            AccessLogTarget::Off
        }
        path => AccessLogTarget::File(PathBuf::from(path)),
    };
    let access_log_format = super::compile_observe::access_log_format(&l.access_log_format, p);
    LogSettings {
        level,
        access_log,
        access_log_format,
    }
}

fn upstreams(
    list: Vec<schema::UpstreamSection>,
    base: &Path,
    p: &mut Problems<'_>,
) -> Vec<Upstream> {
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    let mut next_endpoint = 0;
    let mut out = Vec::new();
    for u in list {
        let name = u.name.get_ref().clone();
        check_name(&u.name, "upstream", &mut seen, p);
        if u.endpoints.get_ref().is_empty() {
            p.at(
                u.endpoints.span(),
                format!("upstream \"{name}\" has no endpoints"),
            );
        }
        let (protocol, max_concurrent_streams) = super::compile_http2::upstream_protocol(&u, p);
        let tls = u
            .tls
            .as_ref()
            .and_then(|t| upstream_tls(t, base, protocol, p));
        let mut endpoints = Vec::new();
        for e in u.endpoints.get_ref() {
            for addr in resolve(e, p) {
                if endpoints.iter().any(|x: &Endpoint| x.addr == addr) {
                    continue;
                }
                endpoints.push(Endpoint {
                    id: next_endpoint,
                    addr,
                    text: AddrText::new(addr),
                    authority: e.get_ref().clone(),
                    key: EndpointKey::new(addr, e.get_ref(), tls.as_deref()),
                });
                next_endpoint += 1;
            }
        }
        let balance = match (u.balance, &u.hash_on) {
            (Balance::RoundRobin, None) => BalancePolicy::RoundRobin,
            (Balance::LeastRequest, None) => BalancePolicy::LeastRequest,
            (Balance::Hash, None) => BalancePolicy::Hash(HashOn::ClientIp),
            (Balance::Hash, Some(h)) => BalancePolicy::Hash(hash_on(h, p)),
            (_, Some(h)) => {
                p.at(h.span(), "hash_on is only used with balance = \"hash\"");
                BalancePolicy::RoundRobin
            }
        };
        let resilience = super::compile_resilience::upstream(&u, p);
        out.push(Upstream {
            name,
            endpoints,
            balance,
            connect_timeout: millis(&u.connect_timeout_ms, p),
            request_timeout: millis(&u.request_timeout_ms, p),
            send_timeout: millis(&u.send_timeout_ms, p),
            max_idle_per_endpoint: *u.max_idle_per_endpoint.get_ref() as usize,
            pool_idle_timeout: millis(&u.pool_idle_timeout_ms, p),
            max_requests_per_connection: positive(&u.max_requests_per_connection, p),
            tls,
            protocol,
            max_concurrent_streams,
            health_check: resilience.health_check,
            outlier: resilience.outlier,
            breakers: resilience.breakers,
            retry_budget: resilience.retry_budget,
        });
    }
    out
}

/// Compiles one `[[server.tls]]`, loading its certificates now so `check` catches a
/// missing file or a key that does not match its certificate.
fn tls_listener(
    t: &schema::TlsListenerSection,
    base: &Path,
    plain: &[SocketAddr],
    p: &mut Problems<'_>,
) -> Option<TlsListener> {
    let listen = socket_addr(&t.listen, p)?;
    if plain.contains(&listen) {
        p.at(
            t.listen.span(),
            format!("{listen} is already a plaintext listener"),
        );
    }
    let min_version = match t.min_version.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("1.2") => TlsVersion::V1_2,
        Some("1.3") => TlsVersion::V1_3,
        Some(other) => {
            p.at(
                t.min_version.as_ref().map_or(0..0, |v| v.span()),
                format!("min_version \"{other}\" must be \"1.2\" or \"1.3\""),
            );
            TlsVersion::V1_2
        }
    };
    if t.cert.is_empty() {
        p.at(
            t.listen.span(),
            format!("TLS listener {listen} has no [[server.tls.cert]]"),
        );
    }
    let mut certs = Vec::new();
    let mut names: HashMap<String, Range<usize>> = HashMap::new();
    for c in &t.cert {
        let c_ref = c.get_ref();
        check_name(&c_ref.name, "certificate", &mut names, p);
        let sni = c_ref
            .sni
            .iter()
            .map(|n| {
                let v = n.get_ref().trim_end_matches('.').to_ascii_lowercase();
                let bare = v.strip_prefix("*.").unwrap_or(&v);
                if bare.is_empty() || bare.contains('*') || bare.contains(':') {
                    p.at(
                        n.span(),
                        format!(
                            "sni \"{}\" must be a name like api.example.com or *.example.com",
                            n.get_ref()
                        ),
                    );
                }
                v
            })
            .collect();
        certs.push(CertSettings {
            name: c_ref.name.get_ref().clone(),
            sni,
            cert: base.join(c_ref.cert.get_ref()),
            key: base.join(c_ref.key.get_ref()),
        });
    }
    let default_cert = t.default_cert.as_ref().map(|d| {
        if !names.contains_key(d.get_ref()) {
            p.at(
                d.span(),
                format!(
                    "default_cert \"{}\" is not the name of a [[server.tls.cert]] here",
                    d.get_ref()
                ),
            );
        }
        d.get_ref().clone()
    });
    let client_subject_header = t.client_subject_header.as_ref().map(|h| {
        if !is_token(h.get_ref()) {
            p.at(
                h.span(),
                format!("\"{}\" is not a valid header name", h.get_ref()),
            );
        }
        h.get_ref().to_ascii_lowercase()
    });
    if client_subject_header.is_some() && t.client_ca.is_none() {
        if let Some(h) = &t.client_subject_header {
            p.at(h.span(), "client_subject_header needs client_ca (client certificates are only verified with it)");
        }
    }
    let settings = TlsListenerSettings {
        listen,
        min_version,
        handshake_timeout: millis(&t.handshake_timeout_ms, p),
        default_cert,
        client_ca: t.client_ca.as_ref().map(|c| base.join(c.get_ref())),
        client_subject_header,
        certs,
    };
    match ListenerTls::load(&settings) {
        Ok(tls) => Some(TlsListener {
            settings,
            tls: Arc::new(tls),
        }),
        Err(errors) => {
            for (cert, reason) in errors {
                let span = match cert.and_then(|i| t.cert.get(i)) {
                    Some(c) => c.span(),
                    None => t.client_ca.as_ref().map_or(t.listen.span(), |c| c.span()),
                };
                p.at(span, reason);
            }
            None
        }
    }
}

fn upstream_tls(
    t: &Spanned<schema::UpstreamTlsSection>,
    base: &Path,
    protocol: UpstreamProtocol,
    p: &mut Problems<'_>,
) -> Option<Arc<UpstreamTls>> {
    let s = t.get_ref();
    let settings = UpstreamTlsSettings {
        sni: s.sni.as_ref().map(|n| n.get_ref().clone()),
        ca: s.ca.as_ref().map(|c| base.join(c.get_ref())),
        verify: *s.verify.get_ref(),
        client_cert: s.client_cert.as_ref().map(|c| base.join(c.get_ref())),
        client_key: s.client_key.as_ref().map(|c| base.join(c.get_ref())),
        h2: protocol == UpstreamProtocol::H2,
    };
    match UpstreamTls::load(&settings) {
        Ok(tls) => Some(Arc::new(tls)),
        Err(e) => {
            p.at(t.span(), format!("upstream tls: {e}"));
            None
        }
    }
}

fn hash_on(h: &Spanned<String>, p: &mut Problems<'_>) -> HashOn {
    let v = h.get_ref();
    if v == "client_ip" {
        return HashOn::ClientIp;
    }
    match v.strip_prefix("header:") {
        Some(name) if is_token(name) => HashOn::Header(name.to_ascii_lowercase()),
        _ => {
            p.at(
                h.span(),
                format!("hash_on \"{v}\" must be \"client_ip\" or \"header:NAME\""),
            );
            HashOn::ClientIp
        }
    }
}

fn routes(
    list: Vec<schema::RouteSection>,
    upstreams: &[Upstream],
    auth: &crate::auth::AuthSettings,
    compose_limits: &ComposeLimits,
    p: &mut Problems<'_>,
) -> (Vec<RouteSpec>, Vec<Route>) {
    let mut composed = 0;
    let mut seen: HashMap<String, Range<usize>> = HashMap::new();
    let mut specs = Vec::new();
    let mut routes = Vec::new();
    for r in list {
        let problems_before = p.count();
        let name = r.name.get_ref().clone();
        check_name(&r.name, "route", &mut seen, p);
        let path = match (&r.path, &r.path_prefix) {
            (Some(a), Some(_)) => {
                p.at(a.span(), "give either path or path_prefix, not both");
                PathMatch::Prefix("/".to_string())
            }
            (Some(exact), None) => PathMatch::Exact(config_path(exact, p)),
            (None, Some(prefix)) => PathMatch::Prefix(config_path(prefix, p)),
            (None, None) => PathMatch::Prefix("/".to_string()),
        };
        let host = r.host.as_ref().map(|h| host_pattern(h, p));
        let methods = r.methods.as_ref().map(|ms| {
            let mut out: Vec<String> = Vec::new();
            for m in ms {
                if !is_token(m.get_ref()) {
                    p.at(
                        m.span(),
                        format!("\"{}\" is not an HTTP method", m.get_ref()),
                    );
                }
                let upper = m.get_ref().to_ascii_uppercase();
                if !out.contains(&upper) {
                    out.push(upper);
                }
            }
            if out.is_empty() {
                p.at(
                    r.name.span(),
                    "methods is empty: no request could match; leave it out to match any method",
                );
            }
            out
        });
        let headers = r
            .headers
            .iter()
            .map(|(k, v)| {
                if !is_token(k) {
                    p.at(v.span(), format!("\"{k}\" is not a valid header name"));
                }
                let m = if v.get_ref() == "*" {
                    HeaderMatch::Present
                } else {
                    HeaderMatch::Equals(v.get_ref().as_bytes().to_vec())
                };
                (k.to_ascii_lowercase(), m)
            })
            .collect();
        // What strip_prefix / rewrite_prefix replace: the prefix, or an exact path whole.
        let prefix = match &path {
            PathMatch::Prefix(pre) if r.path_prefix.is_some() => Some(pre.clone()),
            PathMatch::Exact(exact) => Some(exact.clone()),
            PathMatch::Prefix(_) => None,
        };
        let strip_prefix = r.strip_prefix.as_ref().is_some_and(|s| *s.get_ref());
        if let Some(s) = &r.strip_prefix {
            if *s.get_ref() && prefix.is_none() {
                p.at(s.span(), "strip_prefix needs path_prefix or path");
            }
        }
        let rewrite_prefix = r.rewrite_prefix.as_ref().map(|rw| {
            if prefix.is_none() {
                p.at(rw.span(), "rewrite_prefix needs path_prefix or path");
            }
            if strip_prefix {
                p.at(
                    rw.span(),
                    "give either strip_prefix or rewrite_prefix, not both",
                );
            }
            config_path(rw, p)
        });
        // Named segments (`/users/{id}`) match any value, so there is no fixed
        // prefix to strip or rewrite.
        let pattern = match &path {
            PathMatch::Exact(exact) => route::PathPattern::parse(exact).ok().flatten(),
            PathMatch::Prefix(_) => None,
        };
        if pattern.is_some() && (strip_prefix || rewrite_prefix.is_some()) {
            let span = r.rewrite_prefix.as_ref().map_or_else(
                || r.strip_prefix.as_ref().map_or(r.name.span(), |s| s.span()),
                |rw| rw.span(),
            );
            p.at(
                span,
                "a path with named segments has no fixed prefix to strip or rewrite",
            );
        }
        let (action, upstream_timeout) = match (&r.upstream, &r.respond, &r.compose) {
            (None, None, Some(c)) => {
                if strip_prefix || rewrite_prefix.is_some() || r.preserve_host {
                    p.at(
                        c.span(),
                        "strip_prefix, rewrite_prefix and preserve_host do not apply to a compose route (each part has its own path)",
                    );
                }
                let context = RouteContext {
                    name: &name,
                    pattern,
                    has_auth: r.auth.is_some(),
                    timeout: r.timeout_ms.as_ref().map(|t| millis(t, p)),
                    slot: composed,
                };
                composed += 1;
                let plan = compile_compose::plan(c, &context, compose_limits, upstreams, p);
                (Action::Compose(plan), Duration::from_secs(15))
            }
            (Some(u), None, None) => match upstreams.iter().position(|x| &x.name == u.get_ref()) {
                Some(i) => (Action::Forward(i), upstreams[i].request_timeout),
                None => {
                    p.at(
                        u.span(),
                        format!(
                            "route \"{name}\" names unknown upstream \"{}\"",
                            u.get_ref()
                        ),
                    );
                    (Action::Forward(0), Duration::from_secs(15))
                }
            },
            (None, Some(resp), None) => (
                Action::Respond(fixed_response(resp, p)),
                Duration::from_secs(15),
            ),
            (None, None, None) => {
                p.at(
                    r.name.span(),
                    format!("route \"{name}\" needs upstream = \"NAME\", respond = {{ ... }} or [route.compose]"),
                );
                (Action::Forward(0), Duration::from_secs(15))
            }
            (u, resp, c) => {
                let span = u
                    .as_ref()
                    .map(|u| u.span())
                    .or_else(|| resp.as_ref().map(|r| r.span()))
                    .or_else(|| c.as_ref().map(|c| c.span()))
                    .unwrap_or(r.name.span());
                p.at(
                    span,
                    "give one of upstream, respond or [route.compose], not several",
                );
                (Action::Forward(0), Duration::from_secs(15))
            }
        };
        let timeout = r
            .timeout_ms
            .as_ref()
            .map(|t| millis(t, p))
            .unwrap_or(upstream_timeout);
        let spec = RouteSpec {
            name: name.clone(),
            host,
            path,
            methods,
            headers,
        };
        // The route stage's own rules; only asked when the keys above were fine,
        // so one mistake is not reported twice.
        if p.count() == problems_before {
            if let Err(reason) = spec.check() {
                p.at(r.name.span(), format!("route \"{name}\": {reason}"));
            }
        }
        specs.push(spec);
        let websocket = super::compile_http2::route_websocket(
            &r,
            match action {
                Action::Forward(i) if r.upstream.is_some() => upstreams.get(i),
                _ => None,
            },
            p,
        );
        let retry = super::compile_resilience::route_retry(
            &r,
            matches!(action, Action::Forward(_)) && r.respond.is_none(),
            p,
        );
        routes.push(Route {
            name,
            action,
            path_prefix: prefix,
            strip_prefix,
            rewrite_prefix,
            preserve_host: r.preserve_host,
            timeout,
            limits: Default::default(),
            auth: r
                .auth
                .as_ref()
                .and_then(|a| super::compile_auth::route_auth(a, auth, p)),
            retry,
            websocket,
            header_rules: None,
            cors: None,
        });
    }
    (specs, routes)
}

fn fixed_response(resp: &Spanned<schema::RespondSection>, p: &mut Problems<'_>) -> FixedResponse {
    let r = resp.get_ref();
    let status = *r.status.get_ref();
    if !(200..=599).contains(&status) {
        p.at(
            r.status.span(),
            format!("status {status} must be between 200 and 599"),
        );
    }
    let status = status.clamp(200, 599) as u16;
    let mut fields = FieldList::new();
    let mut has_type = false;
    for (k, v) in &r.headers {
        let lower = k.to_ascii_lowercase();
        if !is_token(k) {
            p.at(v.span(), format!("\"{k}\" is not a valid header name"));
        } else if [
            "content-length",
            "transfer-encoding",
            "connection",
            "x-request-id",
        ]
        .contains(&lower.as_str())
        {
            p.at(
                v.span(),
                format!("header \"{k}\" is set by the gateway and cannot be configured"),
            );
        }
        if !v
            .get_ref()
            .bytes()
            .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
        {
            p.at(
                v.span(),
                format!("header \"{k}\" has a value with characters not allowed in HTTP"),
            );
        }
        has_type |= lower == "content-type";
        fields.push(lower.as_bytes(), v.get_ref().as_bytes());
    }
    if !has_type && !r.body.is_empty() {
        fields.push(b"content-type", b"text/plain; charset=utf-8");
    }
    FixedResponse {
        status,
        fields,
        body: r.body.clone().into_bytes(),
    }
}

fn check_name(
    name: &Spanned<String>,
    what: &str,
    seen: &mut HashMap<String, Range<usize>>,
    p: &mut Problems<'_>,
) {
    let n = name.get_ref();
    if n.is_empty() {
        p.at(name.span(), format!("{what} name must not be empty"));
    } else if seen.contains_key(n) {
        p.at(name.span(), format!("duplicate {what} name \"{n}\""));
    } else {
        seen.insert(n.clone(), name.span());
    }
}

/// A path written in the config must already be in normalized form, so what an
/// operator reads is what is matched.
fn config_path(path: &Spanned<String>, p: &mut Problems<'_>) -> String {
    let raw = path.get_ref();
    if !raw.starts_with('/') {
        p.at(path.span(), format!("path \"{raw}\" must start with '/'"));
        return raw.clone();
    }
    match route::normalize_path(raw.as_bytes(), route::PathParameters::Reject) {
        Ok(n) if n.query.is_some() => {
            p.at(
                path.span(),
                format!("path \"{raw}\" must not contain a query"),
            );
            raw.clone()
        }
        Ok(n) if n.path != *raw => {
            p.at(
                path.span(),
                format!("path \"{raw}\" is not normalized; write \"{}\"", n.path),
            );
            raw.clone()
        }
        Ok(n) => n.path,
        Err(e) => {
            p.at(path.span(), format!("path \"{raw}\": {e}"));
            raw.clone()
        }
    }
}

fn host_pattern(h: &Spanned<String>, p: &mut Problems<'_>) -> String {
    let v = h.get_ref().to_ascii_lowercase();
    let name = v.strip_prefix("*.").unwrap_or(&v);
    let ok = !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        p.at(
            h.span(),
            format!(
                "host \"{}\" must be a name like api.example.com or *.example.com",
                h.get_ref()
            ),
        );
    }
    v
}

fn socket_addr(s: &Spanned<String>, p: &mut Problems<'_>) -> Option<SocketAddr> {
    match s.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            p.at(
                s.span(),
                format!(
                    "\"{}\" is not an address like 127.0.0.1:8080 or [::1]:8080",
                    s.get_ref()
                ),
            );
            None
        }
    }
}

/// Resolves an endpoint `host:port` once, at load time. Every address of a name is
/// an endpoint of its own, as in nginx.
fn resolve(e: &Spanned<String>, p: &mut Problems<'_>) -> Vec<SocketAddr> {
    let v = e.get_ref();
    let Some((host, port)) = v.rsplit_once(':') else {
        p.at(e.span(), format!("endpoint \"{v}\" must be host:port"));
        return Vec::new();
    };
    if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
        p.at(
            e.span(),
            format!("endpoint \"{v}\" must be host:port with a port from 1 to 65535"),
        );
        return Vec::new();
    }
    match v.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                p.at(e.span(), format!("endpoint \"{v}\" resolved to no address"));
            }
            addrs
        }
        Err(err) => {
            p.at(
                e.span(),
                format!("endpoint \"{v}\" cannot be resolved: {err}"),
            );
            Vec::new()
        }
    }
}
