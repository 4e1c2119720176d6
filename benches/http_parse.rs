//! Request-head parsing micro benchmark: `portico::http::parse_request` on heads of
//! typical shapes, next to bare `httparse` (the tokenizer it is built on) as the
//! reference. Std only; prints `name: N ns/op` (best of 15 runs), and checks that a
//! reused `RequestHead` makes parsing allocation-free.
//!
//!     cargo bench --bench http_parse

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::time::Instant;

use portico::http::{parse_request, HeadLimits, Parsed, RequestHead, UnderscoreHeaders};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

/// The gateway's default limits (config/schema.rs).
const LIMITS: HeadLimits = HeadLimits {
    max_header_bytes: 16_384,
    max_headers: 100,
    max_uri_bytes: 8_192,
    underscores: UnderscoreHeaders::Drop,
};

/// What `curl` or `wrk` sends: request line, Host and two more.
const MINIMAL: &[u8] = b"GET /svc1/v1/users/42 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n";

/// A typical API call through a gateway: a bearer token (~600 B), JSON, tracing and
/// forwarding headers, a POST body announced by Content-Length.
fn typical() -> Vec<u8> {
    let token = format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.{}.{}",
        "eyJzdWIiOiJ1c2VyLTQyIiwiaXNzIjoiaHR0cHM6Ly9pZHAuZXhhbXBsZS5jb20iLCJhdWQiOiJhcGkiLCJleHAiOjE5MDAwMDAwMDB9"
            .repeat(2),
        "c2lnbmF0dXJl".repeat(28)
    );
    format!(
        "POST /svc123/v1/users/42/orders?limit=10&offset=20 HTTP/1.1\r\n\
         Host: api.example.com\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\n\
         Accept: application/json\r\n\
         Accept-Encoding: gzip, deflate, br\r\n\
         Accept-Language: en-US,en;q=0.9\r\n\
         Authorization: Bearer {token}\r\n\
         Content-Type: application/json\r\n\
         Content-Length: 512\r\n\
         X-Request-Id: 0f8fad5b-d9cb-469f-a165-70867728950e\r\n\
         Traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
         X-Forwarded-For: 203.0.113.7\r\n\
         Connection: keep-alive\r\n\r\n"
    )
    .into_bytes()
}

/// A browser-sized head: 40 headers, cookies, about 4 KiB.
fn large() -> Vec<u8> {
    let mut head =
        b"GET /app/dashboard?tab=overview&range=7d HTTP/1.1\r\nHost: app.example.com\r\n".to_vec();
    head.extend_from_slice(
        format!("Cookie: {}\r\n", "session=abcdef0123456789; ".repeat(60)).as_bytes(),
    );
    for i in 0..38 {
        head.extend_from_slice(
            format!("X-Custom-Header-{i}: value-{i}-{}\r\n", "v".repeat(40)).as_bytes(),
        );
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// ns per call of `f`: the best of 15 runs of `iters` calls (the run least disturbed
/// by other work on the machine).
fn measure(name: &str, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let best = (0..15)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .fold(f64::INFINITY, f64::min);
    println!("{name}: {best:.1} ns/op");
}

fn bench_portico(name: &str, buf: &[u8], expect: Parsed) {
    let mut head = RequestHead::default();
    let parsed = parse_request(buf, &LIMITS, &mut head);
    assert_eq!(parsed.as_ref().ok(), Some(&expect), "{name}: {parsed:?}");
    measure(name, 100_000, || {
        black_box(parse_request(black_box(buf), &LIMITS, &mut head).is_ok());
    });
}

/// Bare httparse with uninitialized header slots, as `parse_request` calls it.
fn bench_httparse(name: &str, buf: &[u8]) {
    measure(name, 100_000, || {
        let mut slots: [MaybeUninit<httparse::Header<'_>>; 100] =
            [const { MaybeUninit::uninit() }; 100];
        let mut req = httparse::Request::new(&mut []);
        black_box(
            req.parse_with_uninit_headers(black_box(buf), &mut slots)
                .is_ok(),
        );
    });
}

fn main() {
    let typical = typical();
    let large = large();
    println!(
        "heads: minimal {} B / 3 headers, typical {} B / 12 headers, large {} B / 40 headers",
        MINIMAL.len(),
        typical.len(),
        large.len()
    );

    bench_portico("parse_request, minimal GET", MINIMAL, Parsed::Complete);
    bench_portico(
        "parse_request, typical API POST",
        &typical,
        Parsed::Complete,
    );
    bench_portico("parse_request, large 4 KiB head", &large, Parsed::Complete);
    let cut = typical.len() - 40;
    bench_portico(
        "parse_request, typical head cut short (Partial)",
        &typical[..cut],
        Parsed::Partial,
    );
    let smuggle =
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n";
    let mut head = RequestHead::default();
    assert!(parse_request(smuggle, &LIMITS, &mut head).is_err());
    measure("parse_request, rejected CL+TE (400)", 100_000, || {
        black_box(parse_request(black_box(smuggle), &LIMITS, &mut head).is_err());
    });

    bench_httparse("httparse alone, minimal GET (reference)", MINIMAL);
    bench_httparse("httparse alone, typical API POST (reference)", &typical);
    bench_httparse("httparse alone, large 4 KiB head (reference)", &large);

    // A warm RequestHead keeps its header vector: parsing allocates nothing.
    let mut head = RequestHead::default();
    let _ = parse_request(&large, &LIMITS, &mut head);
    let before = counting_alloc::allocations();
    for buf in [MINIMAL, &typical, &large] {
        black_box(parse_request(buf, &LIMITS, &mut head).is_ok());
    }
    let allocations = counting_alloc::allocations() - before;
    println!("parse_request allocations for 3 heads on a warm RequestHead: {allocations}");
    assert_eq!(allocations, 0, "a warm parse must not allocate");
}
