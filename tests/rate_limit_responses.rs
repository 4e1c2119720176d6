//! What a client sees from the rate-limit stage: 429 with `Retry-After`, the
//! `RateLimit` fields in each style, the order of a route's policies, keys and
//! their fallbacks. Slow policies (per hour) keep the outcomes exact.

mod common;

use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use common::{Client, Gateway, Response};

fn gateway(routes: &str, sections: &str) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[log]
access_log = "off"
{routes}
{sections}
"#
    ))
}

fn route(name: &str, prefix: &str, limits: &str) -> String {
    format!(
        r#"
[[route]]
name = "{name}"
path_prefix = "{prefix}"
respond = {{ status = 200, body = "ok" }}
rate_limits = [{limits}]
"#
    )
}

/// GET with extra header lines; a short pause first, so that a lease request the
/// previous request sent has been answered (the stage never waits for it).
fn get(c: &mut Client, path: &str, headers: &str) -> Response {
    std::thread::sleep(Duration::from_millis(15));
    c.send(format!("GET {path} HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    c.response().expect("a response")
}

fn statuses(c: &mut Client, n: usize, headers: &str) -> Vec<u16> {
    (0..n).map(|_| get(c, "/", headers).status).collect()
}

#[test]
fn a_429_has_retry_after_the_ratelimit_fields_and_a_json_body() {
    let gw = gateway(
        &route("api", "/", r#""hourly""#),
        r#"
[[rate_limit]]
name = "hourly"
key = "ip"
rate = "2/h"
burst = 2
"#,
    );
    let mut c = gw.client();
    assert_eq!(statuses(&mut c, 2, ""), [200, 200]);
    let r = get(&mut c, "/", "");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("1800"), "{r:?}");
    assert_eq!(r.header("ratelimit-policy"), Some("\"hourly\";q=2;w=3600"));
    assert_eq!(r.header("ratelimit"), Some("\"hourly\";r=0;t=1800"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["error"], "rate limited");
    assert_eq!(body["policy"], "hourly");
    assert_eq!(body["retry_after_s"], 1800);
    assert!(body["request_id"].is_string());
    assert!(
        r.header("connection").is_none(),
        "the connection stays open"
    );
    assert_eq!(get(&mut c, "/", "").status, 429, "on the same connection");
    assert_eq!(gw.stat("ratelimit_denied"), 2);
    assert_eq!(gw.stat("responses_4xx"), 2);
}

#[test]
fn allowed_responses_carry_the_fields_when_asked_in_legacy_style() {
    let gw = gateway(
        &route("api", "/", r#""per-ip""#),
        r#"
[[rate_limit]]
name = "per-ip"
key = "ip"
rate = "1/h"
burst = 3
scope = "worker"

[rate_limit_headers]
style = "legacy"
on_allowed = true
"#,
    );
    let mut c = gw.client();
    let r = get(&mut c, "/", "");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("2"));
    assert!(r.header("ratelimit").is_none());
    assert_eq!(
        get(&mut c, "/", "").header("x-ratelimit-remaining"),
        Some("1")
    );
    assert_eq!(
        get(&mut c, "/", "").header("x-ratelimit-remaining"),
        Some("0")
    );
    let r = get(&mut c, "/", "");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(r.header("x-ratelimit-reset"), Some("3600"));
}

#[test]
fn style_none_sends_only_retry_after_and_allowed_responses_stay_clean() {
    let gw = gateway(
        &route("api", "/", r#""p""#),
        r#"
[[rate_limit]]
name = "p"
key = "global"
rate = "1/h"
burst = 1
scope = "worker"

[rate_limit_headers]
style = "none"
"#,
    );
    let mut c = gw.client();
    let ok = get(&mut c, "/", "");
    assert_eq!(ok.status, 200);
    assert!(ok.header("ratelimit").is_none() && ok.header("x-ratelimit-limit").is_none());
    let r = get(&mut c, "/", "");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3600"));
    assert!(r.header("ratelimit").is_none() && r.header("ratelimit-policy").is_none());
}

/// The route lists the global ceiling first; the per-key policy is checked first
/// anyway, and a request it refuses spends nothing of the ceiling.
#[test]
fn the_most_specific_policy_answers_first_and_later_ones_spend_nothing() {
    let gw = gateway(
        &route("api", "/", r#""ceiling", "per-key""#),
        r#"
[[rate_limit]]
name = "ceiling"
key = "global"
rate = "1/h"
burst = 5
scope = "worker"

[[rate_limit]]
name = "per-key"
key = "header:x-api-key"
rate = "1/h"
burst = 2
scope = "worker"
"#,
    );
    let mut c = gw.client();
    let a = "x-api-key: a\r\n";
    let b = "x-api-key: b\r\n";
    assert_eq!(statuses(&mut c, 4, a), [200, 200, 429, 429]);
    let r = get(&mut c, "/", a);
    assert!(
        r.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"per-key\"")),
        "{r:?}"
    );
    // The ceiling has spent only the 2 admitted requests: b gets 2, c gets 1.
    assert_eq!(statuses(&mut c, 3, b), [200, 200, 429]);
    let r = get(&mut c, "/", "x-api-key: c\r\n");
    assert_eq!(r.status, 200);
    let r = get(&mut c, "/", "x-api-key: c\r\n");
    assert_eq!(r.status, 429);
    assert!(
        r.header("ratelimit")
            .is_some_and(|v| v.starts_with("\"ceiling\"")),
        "{r:?}"
    );
}

#[test]
fn composite_keys_give_each_route_its_own_bucket() {
    let routes = route("a", "/a", r#""per-key-route""#) + &route("b", "/b", r#""per-key-route""#);
    let gw = gateway(
        &routes,
        r#"
[[rate_limit]]
name = "per-key-route"
key = ["header:x-api-key", "route"]
rate = "1/h"
burst = 1
scope = "worker"
"#,
    );
    let mut c = gw.client();
    let k = "x-api-key: k\r\n";
    assert_eq!(get(&mut c, "/a", k).status, 200);
    assert_eq!(get(&mut c, "/a", k).status, 429);
    assert_eq!(
        get(&mut c, "/b", k).status,
        200,
        "another route, another bucket"
    );
    assert_eq!(get(&mut c, "/a", "x-api-key: other\r\n").status, 200);
}

/// Until authentication provides verified claims, a `claim:` key has no value and
/// the fallback decides: the client address by default, or no limit with `skip`.
#[test]
fn claim_keys_fall_back_without_verified_claims() {
    let routes =
        route("ip", "/ip", r#""per-user""#) + &route("skip", "/skip", r#""per-user-or-skip""#);
    let gw = gateway(
        &routes,
        r#"
[[rate_limit]]
name = "per-user"
key = "claim:sub"
rate = "1/h"
burst = 1
scope = "worker"

[[rate_limit]]
name = "per-user-or-skip"
key = "claim:sub"
rate = "1/h"
burst = 1
scope = "worker"
fallback = "skip"
"#,
    );
    let mut c = gw.client();
    assert_eq!(get(&mut c, "/ip", "").status, 200);
    assert_eq!(get(&mut c, "/ip", "").status, 429, "keyed on the address");
    for _ in 0..3 {
        assert_eq!(
            get(&mut c, "/skip", "").status,
            200,
            "the policy does not apply"
        );
    }
}

/// Loopback is a /8: clients from 127.0.0.1 and 127.0.0.2 are two addresses but
/// one /24.
#[test]
fn ip_and_ip_prefix_keys_tell_clients_apart_by_address_and_network() {
    let routes = route("ip", "/ip", r#""per-ip""#) + &route("net", "/net", r#""per-net""#);
    let gw = gateway(
        &routes,
        r#"
[[rate_limit]]
name = "per-ip"
key = "ip"
rate = "1/h"
burst = 1
scope = "worker"

[[rate_limit]]
name = "per-net"
key = "ip_prefix:/24,/64"
rate = "1/h"
burst = 1
scope = "worker"
"#,
    );
    let mut one = client_from(Ipv4Addr::new(127, 0, 0, 1), gw.port);
    let mut two = client_from(Ipv4Addr::new(127, 0, 0, 2), gw.port);
    assert_eq!(get(&mut one, "/ip", "").status, 200);
    assert_eq!(get(&mut two, "/ip", "").status, 200, "another address");
    assert_eq!(get(&mut one, "/ip", "").status, 429);
    assert_eq!(get(&mut one, "/net", "").status, 200);
    assert_eq!(get(&mut two, "/net", "").status, 429, "the same /24");
}

/// A client whose connection comes from `source` (any 127/8 address).
fn client_from(source: Ipv4Addr, port: u16) -> Client {
    let stream = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let bind = sockaddr(SocketAddrV4::new(source, 0));
        let to = sockaddr(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(
            libc::bind(fd, &bind as *const _ as *const libc::sockaddr, len),
            0
        );
        assert_eq!(
            libc::connect(fd, &to as *const _ as *const libc::sockaddr, len),
            0
        );
        TcpStream::from_raw_fd(fd)
    };
    Client::from_stream(stream)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// With authentication, `claim:sub` gives every verified user a bucket of their own,
/// and a `before_auth` address policy refuses floods before any token is verified.
#[test]
fn claim_keys_limit_each_verified_user_and_address_limits_run_before_auth() {
    use common::jwt::{claims, header, SigningKey};
    let key = SigningKey::hmac();
    let secret = std::env::temp_dir().join(format!("portico-rl-secret-{}", std::process::id()));
    std::fs::write(&secret, key.secret()).expect("secret file");
    let gw = gateway(
        r#"
[[route]]
name = "api"
path_prefix = "/"
respond = { status = 200, body = "ok" }
auth = "main"
rate_limits = ["per-user", "per-ip"]
"#,
        &format!(
            r#"
[auth.jwt.main]
issuer = "https://id.test/"
audiences = ["api"]
algorithms = ["HS256"]
hmac_secret_file = "{}"

[[rate_limit]]
name = "per-user"
key = "claim:sub"
rate = "1/h"
burst = 1
scope = "worker"

[[rate_limit]]
name = "per-ip"
key = "ip"
rate = "1/h"
burst = 5
scope = "worker"
before_auth = true
"#,
            secret.display()
        ),
    );
    let bearer = |sub: &str| {
        format!(
            "authorization: Bearer {}\r\n",
            key.sign(&header("HS256", None), &claims(sub))
        )
    };
    let mut c = gw.client();
    let policy_of = |r: &Response| {
        r.header("ratelimit")
            .and_then(|v| v.split(';').next())
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(get(&mut c, "/", &bearer("alice")).status, 200);
    let r = get(&mut c, "/", &bearer("alice"));
    assert_eq!((r.status, policy_of(&r).as_str()), (429, "\"per-user\""));
    assert_eq!(
        get(&mut c, "/", &bearer("bob")).status,
        200,
        "bob's own bucket"
    );
    assert_eq!(
        get(&mut c, "/", "").status,
        401,
        "no token: the verifier refuses"
    );
    assert_eq!(get(&mut c, "/", &bearer("carol")).status, 200);
    // Five requests from this address so far: the address limit now answers first.
    let r = get(&mut c, "/", &bearer("dave"));
    assert_eq!((r.status, policy_of(&r).as_str()), (429, "\"per-ip\""));
    let r = get(&mut c, "/", "");
    assert_eq!(r.status, 429, "refused before authentication, not 401");
    let _ = std::fs::remove_file(&secret);
}
