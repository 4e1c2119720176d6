//! REST → gRPC transcoding (issue 17) against a real gRPC server: Python grpcio
//! (Debian's python3-grpcio) serving tests/transcode/users.proto, whose descriptor
//! set is built here with grpcio-tools (`grpc_tools.protoc --include_imports
//! --descriptor_set_out`, google/api/*.proto from tests/fixtures). GET with path and
//! query fields, POST and PATCH/PUT with JSON bodies, gRPC errors mapped to their
//! HTTP status with a JSON body, unknown fields and bad values refused with 400
//! before any call (the server's call counter unchanged), a server stream as
//! newline-delimited JSON, and what `portico check` refuses at file:line:col.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::peers::PythonServer;
use common::{Client, Gateway, Response};
use serde_json::json;

/// The descriptor set of tests/transcode/users.proto, built once per test process.
fn descriptor_set() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("portico-transcode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let out = dir.join("users.pb");
        let status = Command::new("/usr/bin/python3")
            .args(["-c", "import grpc_tools, os, sys; from grpc_tools import protoc; inc = os.path.join(os.path.dirname(grpc_tools.__file__), '_proto'); sys.exit(protoc.main(['protoc', '-I' + inc] + sys.argv[1:]))"])
            .arg(format!("-I{}", root.join("tests/fixtures").display()))
            .arg(format!("-I{}", root.join("tests/transcode").display()))
            .arg("--include_imports")
            .arg(format!("--descriptor_set_out={}", out.display()))
            .arg("users.proto")
            .status()
            .expect("python3 runs grpc_tools.protoc");
        assert!(status.success(), "grpc_tools.protoc failed");
        out
    })
}

/// The Users service on a free port; stopped when dropped.
fn users_service() -> PythonServer {
    let set = descriptor_set().to_str().expect("a UTF-8 scratch path");
    PythonServer::start("tests/transcode/server.py", &[set], "the gRPC server")
}

/// A gateway with one transcoding route to `service`.
fn gateway(service: &PythonServer) -> Gateway {
    Gateway::start(&format!(
        r#"
[server]
listen = ["127.0.0.1:{{port}}"]
workers = 1
[admin]
listen = "127.0.0.1:{{admin}}"
[[upstream]]
name = "users"
endpoints = ["127.0.0.1:{}"]
protocol = "h2c"
[[route]]
name = "users-rest"
path_prefix = "/v1/"
upstream = "users"
timeout_ms = 10000
transcode = {{ descriptor_set = "{}", services = ["portico.test.Users"], max_json_body_bytes = 4096 }}
"#,
        service.port,
        descriptor_set().display()
    ))
}

/// Sends `method path` with `fields` (lines without CRLF) and a body, if any.
fn request(gw: &Gateway, method: &str, path: &str, fields: &[&str], body: &str) -> Response {
    let mut client = Client::connect(gw.port);
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: api.test\r\n");
    for f in fields {
        head.push_str(f);
        head.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" || method == "PATCH" || method == "PUT" {
        head.push_str(&format!(
            "content-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body);
    client.send(head.as_bytes());
    client.response().expect("a response")
}

/// How many calls of its methods the server has answered (over REST too).
fn calls(gw: &Gateway) -> u64 {
    let r = request(gw, "GET", "/v1/calls", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["calls"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn get_maps_path_and_query_fields_onto_the_request_message() {
    let service = users_service();
    let gw = gateway(&service);
    let r = request(
        &gw,
        "GET",
        "/v1/users/42?verbose=true&fields=email&fields=name&minRole=ADMIN",
        &["x-tenant: acme"],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({
            "id": "42",
            "displayName": "user 42 (verbose)",
            // int64 as a string, enums by name: the proto3 JSON mapping.
            "karma": "9007199254740993",
            "role": "ADMIN",
            "tags": ["email", "name"],
            // The client's own fields travel as call metadata.
            "tenant": "acme"
        })
    );
    // Proto field names work as well as JSON names; a percent-encoded path value
    // is decoded; an enum given by number.
    let r = request(&gw, "GET", "/v1/users/a%20b?min_role=2", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["id"], "a b");
    assert_eq!(r.json()["role"], "MEMBER");
    // No binding for the path: 404; a bound path with another method: 405 + Allow.
    let r = request(&gw, "GET", "/v1/groups/1", &[], "");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], 5);
    let r = request(&gw, "DELETE", "/v1/users/1", &[], "");
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, PATCH, PUT"));
}

#[test]
fn post_and_patch_map_the_json_body() {
    let service = users_service();
    let gw = gateway(&service);
    // body: "user": the JSON body is that field; the query fills the others.
    let r = request(
        &gw,
        "POST",
        "/v1/users?requestId=u-7",
        &["x-tenant: acme"],
        r#"{"displayName": "Ada", "karma": "12", "tags": ["math"]}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "u-7", "displayName": "Ada", "karma": "12", "tags": ["math"], "tenant": "acme"})
    );
    // body: "*": the body is the message; the path variable sets `id` over it.
    let r = request(
        &gw,
        "PATCH",
        "/v1/users/9",
        &[],
        r#"{"id": "ignored", "display_name": "Bob", "role": "MEMBER"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        json!({"id": "9", "displayName": "Bob", "role": "MEMBER"})
    );
    // The additional binding of the same method.
    let r = request(&gw, "PUT", "/v1/users/10", &[], r#"{"karma": 3}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"id": "10", "karma": "3"}));
    // Chunked request bodies are read whole.
    let mut client = Client::connect(gw.port);
    client.send(b"POST /v1/users?requestId=c HTTP/1.1\r\nhost: api.test\r\ntransfer-encoding: chunked\r\n\r\n8\r\n{\"displa\r\n10\r\nyName\": \"Chunk\"}\r\n0\r\n\r\n");
    let r = client.response().expect("a response");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["displayName"], "Chunk");
}

#[test]
fn grpc_errors_become_their_http_status_with_a_json_body() {
    let service = users_service();
    let gw = gateway(&service);
    let r = request(&gw, "GET", "/v1/users/missing", &[], "");
    assert_eq!(r.status, 404, "NOT_FOUND → 404: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"code": 5, "message": "user missing not found", "details": []})
    );
    let r = request(&gw, "GET", "/v1/users/denied", &[], "");
    assert_eq!(r.status, 403, "PERMISSION_DENIED → 403: {}", r.text());
    // grpc-message is percent-encoded on the wire; the client reads it decoded.
    assert_eq!(
        r.json(),
        json!({"code": 7, "message": "not yours: 100% private", "details": []})
    );
    let r = request(&gw, "POST", "/v1/users?requestId=x", &[], "{}");
    assert_eq!(r.status, 400, "INVALID_ARGUMENT → 400: {}", r.text());
    assert_eq!(r.json()["code"], 3);
    assert_eq!(r.json()["message"], "display_name is required");
}

#[test]
fn unknown_fields_and_bad_values_are_refused_before_any_call() {
    let service = users_service();
    let gw = gateway(&service);
    let before = calls(&gw);
    let refused = [
        // An unknown field in the body, named in the answer.
        (
            "POST",
            "/v1/users",
            r#"{"displayName": "x", "nickname": "y"}"#,
            "nickname",
        ),
        // An unknown query parameter.
        ("GET", "/v1/users/1?colour=red", "", "colour"),
        // A bad value: not a bool, not an int64, not an enum name.
        ("GET", "/v1/users/1?verbose=maybe", "", "verbose"),
        ("PATCH", "/v1/users/1", r#"{"karma": "lots"}"#, "karma"),
        ("GET", "/v1/users/1?minRole=OWNER", "", "OWNER"),
        // Not JSON, or not an object where the whole message is the body.
        ("PATCH", "/v1/users/1", "{nope", "not valid JSON"),
        ("PATCH", "/v1/users/1", "[1, 2]", "JSON object"),
        // A body where the binding takes none; a query parameter where body is "*".
        (
            "GET",
            "/v1/users/1",
            r#"{"id": "2"}"#,
            "takes no request body",
        ),
        ("PATCH", "/v1/users/1?role=ADMIN", "{}", "query parameters"),
        // A query parameter for the field the body sets.
        (
            "POST",
            "/v1/users?user.karma=1",
            r#"{"displayName": "x"}"#,
            "user.karma",
        ),
    ];
    for (method, path, body, named) in refused {
        let r = request(&gw, method, path, &[], body);
        assert_eq!(r.status, 400, "{method} {path} {body}: {}", r.text());
        let answer = r.json();
        assert_eq!(answer["code"], 3, "INVALID_ARGUMENT: {answer}");
        let message = answer["message"].as_str().unwrap_or("");
        assert!(message.contains(named), "{method} {path}: {message}");
    }
    // Over max_json_body_bytes (4096 here): 413 before reading it.
    let big = format!(r#"{{"displayName": "{}"}}"#, "x".repeat(5000));
    let r = request(&gw, "POST", "/v1/users", &[], &big);
    assert_eq!(r.status, 413, "{}", r.text());
    assert_eq!(calls(&gw), before, "no refused request reached the service");
}

#[test]
fn server_streams_become_newline_delimited_json() {
    let service = users_service();
    let gw = gateway(&service);
    let lines = |r: &Response| -> Vec<serde_json::Value> {
        r.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    };
    let r = request(&gw, "GET", "/v1/users?count=3", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    assert!(r.text().ends_with('\n'), "{:?}", r.text());
    assert_eq!(
        lines(&r),
        vec![
            json!({"result": {"id": "1", "displayName": "user 1"}}),
            json!({"result": {"id": "2", "displayName": "user 2"}}),
            json!({"result": {"id": "3", "displayName": "user 3"}}),
        ]
    );
    // No message: an empty body.
    let r = request(&gw, "GET", "/v1/users?count=0", &[], "");
    assert_eq!((r.status, r.text()), (200, String::new()));
    // Failing after its first messages: the status is sent already, so the error
    // is the last line.
    let r = request(&gw, "GET", "/v1/users?count=2&fail=true", &[], "");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = lines(&r);
    assert_eq!(got.len(), 3, "{got:?}");
    assert_eq!(
        got[2],
        json!({"error": {"code": 8, "message": "quota spent after 2", "details": []}})
    );
    // Failing before any message: the mapped status, as a unary call.
    let r = request(&gw, "GET", "/v1/users?fail=true", &[], "");
    assert_eq!(r.status, 429, "RESOURCE_EXHAUSTED → 429: {}", r.text());
    assert_eq!(
        r.json(),
        json!({"code": 8, "message": "quota spent after 0", "details": []})
    );
}

/// `portico check` on `text` (written next to the descriptor set, so a relative
/// `descriptor_set` resolves there): exit code, file, stderr.
fn check(text: &str, name: &str) -> (Option<i32>, String, String) {
    let dir = descriptor_set().parent().expect("scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_portico"))
        .args(["check", "--config", path.to_str().expect("utf-8 path")])
        .output()
        .expect("portico check runs");
    (
        out.status.code(),
        path.display().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn check_refuses_bad_transcode_settings_at_their_place() {
    descriptor_set();
    let text = r#"[server]
listen = ["127.0.0.1:9"]
[[upstream]]
name = "grpc"
endpoints = ["127.0.0.1:9"]
protocol = "h2c"
[[upstream]]
name = "plain"
endpoints = ["127.0.0.1:9"]
[[route]]
name = "missing-file"
path_prefix = "/a/"
upstream = "grpc"
transcode = { descriptor_set = "nope.pb", services = ["portico.test.Users"] }
[[route]]
name = "unknown-service"
path_prefix = "/b/"
upstream = "grpc"
transcode = { descriptor_set = "users.pb", services = ["portico.test.Users", "portico.test.Groups"] }
[[route]]
name = "http1-upstream"
path_prefix = "/c/"
upstream = "plain"
transcode = { descriptor_set = "users.pb", services = ["portico.test.Users"] }
[[route]]
name = "limits"
path_prefix = "/d/"
upstream = "grpc"
strip_prefix = true
transcode = { descriptor_set = "users.pb", services = ["portico.test.Users"], max_message_bytes = 0 }
"#;
    let (code, file, err) = check(text, "bad-transcode.toml");
    assert_eq!(code, Some(1), "{err}");
    for (at, what) in [
        ("14:32", "cannot read descriptor set"),
        ("19:78", "service \"portico.test.Groups\" is not in"),
        ("24:13", "transcode needs an HTTP/2 upstream"),
        ("29:16", "strip_prefix does not apply to a transcode route"),
        ("30:99", "out of range"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.starts_with(&format!("{file}:{at}: ")) && l.contains(what)),
            "expected {at}: {what} in:\n{err}"
        );
    }
    // A method without a google.api.http annotation is skipped with a warning.
    let ok = r#"[server]
listen = ["127.0.0.1:9"]
[[upstream]]
name = "grpc"
endpoints = ["127.0.0.1:9"]
protocol = "h2c"
[[route]]
name = "users"
path_prefix = "/v1/"
upstream = "grpc"
transcode = { descriptor_set = "users.pb", services = ["portico.test.Users"] }
"#;
    let (code, file, err) = check(ok, "good-transcode.toml");
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "{file}:11:56: warning: portico.test.Users.Ping: no google.api.http annotation"
        )),
        "{err}"
    );
}
