//! The exchange against raw-socket upstreams on loopback: what it sends, what it
//! returns, where it fails, and when a connection goes back to the pool.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::Duration;

use monoio::time::Instant;

use crate::config::{parse, Snapshot};
use crate::downstream::{BodyError, BodySource, Piece};
use crate::observe::Counters;

use super::{Exchanger, FailureSource, OutboundRequest, UpstreamPools};

/// A body handed out in the given pieces, after `buffered` was taken with the head.
struct Pieces {
    buffered: Vec<u8>,
    pieces: Vec<Vec<u8>>,
}

impl BodySource for Pieces {
    fn body_framing(&self) -> crate::http::BodyFraming {
        crate::http::BodyFraming::Length(
            (self.buffered.len() + self.pieces.iter().map(Vec::len).sum::<usize>()) as u64,
        )
    }

    fn is_complete(&self) -> bool {
        self.buffered.is_empty() && self.pieces.is_empty()
    }

    fn take_buffered(&mut self, out: &mut Vec<u8>) -> Result<(), BodyError> {
        out.append(&mut self.buffered);
        Ok(())
    }

    async fn next_piece(&mut self) -> Result<Option<Piece>, BodyError> {
        if self.pieces.is_empty() {
            return Ok(None);
        }
        let buf = self.pieces.remove(0);
        let range = 0..buf.len();
        Ok(Some(Piece { buf, range }))
    }

    fn give_back(&mut self, _piece: Piece) {}
}

fn no_body() -> Pieces {
    Pieces {
        buffered: Vec::new(),
        pieces: Vec::new(),
    }
}

/// An upstream that runs `script` on each accepted connection, in turn.
fn upstream(
    scripts: Vec<Box<dyn FnOnce(std::net::TcpStream) + Send>>,
) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        for script in scripts {
            let (stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            script(stream);
        }
    });
    (addr, handle)
}

/// Reads one request head (and `body` more bytes) from `s`; returns all of it.
fn read_request(s: &mut std::net::TcpStream, body: usize) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            if got.len() >= end + 4 + body {
                return got;
            }
        }
        let n = s.read(&mut buf).unwrap_or(0);
        if n == 0 {
            return got;
        }
        got.extend_from_slice(&buf[..n]);
    }
}

fn snapshot(addr: SocketAddr) -> Snapshot {
    parse(
        "t.toml",
        &format!(
            r#"
[[upstream]]
name = "u"
endpoints = ["{addr}"]
connect_timeout_ms = 500
[[route]]
name = "r"
path_prefix = "/"
upstream = "u"
"#
        ),
    )
    .expect("config")
}

fn run<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn head(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

#[test]
fn a_request_and_its_answer_then_the_connection_is_reused() {
    let (addr, up) = upstream(vec![Box::new(|mut s| {
        for _ in 0..2 {
            let req = read_request(&mut s, 0);
            assert!(req.starts_with(b"GET /a HTTP/1.1\r\n"));
            s.write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
            )
            .unwrap();
        }
    })]);
    let snap = snapshot(addr);
    let (pools, counters) = (UpstreamPools::new(), Counters::default());
    let ex = Exchanger {
        pools: &pools,
        h2: &super::H2Pools::new(),
        counters: &counters,
    };
    run(async {
        for round in 0..2 {
            let mut h = head("GET /a HTTP/1.1\r\nhost: x\r\n\r\n");
            let request = OutboundRequest {
                upgrade: false,
                head: &mut h,
                is_head: false,
                idempotent: true,
                deadline: Instant::now() + Duration::from_secs(2),
                breaker: None,
                started: monoio::time::Instant::now(),
            };
            let u = &snap.upstreams[0];
            let mut resp = ex
                .exchange(u, &u.endpoints[0], request, &mut no_body())
                .await
                .expect("an answer");
            assert_eq!(resp.status(), 200, "1xx is skipped");
            assert_eq!(resp.connected.is_some(), round == 0, "round {round}");
            let early = resp.early_body().expect("checked framing");
            assert_eq!(&resp.head_bytes()[early], b"hello");
            assert!(resp.next_piece().await.unwrap().is_none());
            resp.finish(&pools);
        }
    });
    assert_eq!(counters.upstream_connects.get(), 1);
    assert_eq!(counters.upstream_reused.get(), 1);
    up.join().unwrap();
}

#[test]
fn a_streamed_body_reaches_the_upstream_whole() {
    let (addr, up) = upstream(vec![Box::new(|mut s| {
        let req = read_request(&mut s, 11);
        assert!(req.ends_with(b"\r\n\r\nhello world"), "{req:?}");
        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
    })]);
    let snap = snapshot(addr);
    let (pools, counters) = (UpstreamPools::new(), Counters::default());
    let ex = Exchanger {
        pools: &pools,
        h2: &super::H2Pools::new(),
        counters: &counters,
    };
    let mut body = Pieces {
        buffered: b"hel".to_vec(),
        pieces: vec![b"lo ".to_vec(), b"world".to_vec()],
    };
    run(async {
        let mut h = head("POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 11\r\n\r\n");
        body.take_buffered(&mut h).unwrap();
        let u = &snap.upstreams[0];
        let request = OutboundRequest {
            upgrade: false,
            head: &mut h,
            is_head: false,
            idempotent: true,
            deadline: Instant::now() + Duration::from_secs(2),
            breaker: None,
            started: monoio::time::Instant::now(),
        };
        let resp = ex.exchange(u, &u.endpoints[0], request, &mut body).await;
        assert_eq!(resp.expect("an answer").status(), 204);
    });
    up.join().unwrap();
}

#[test]
fn failures_say_where_they_happened_and_whether_to_replay() {
    // 1: the endpoint closes without answering; 2: it never answers.
    let (addr, up) = upstream(vec![
        Box::new(|mut s| {
            read_request(&mut s, 0);
        }),
        Box::new(|mut s| {
            read_request(&mut s, 0);
            std::thread::sleep(Duration::from_millis(600));
        }),
    ]);
    let snap = snapshot(addr);
    let (pools, counters) = (UpstreamPools::new(), Counters::default());
    let ex = Exchanger {
        pools: &pools,
        h2: &super::H2Pools::new(),
        counters: &counters,
    };
    let u = &snap.upstreams[0];
    run(async {
        let mut h = head("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        let closed = ex
            .exchange(
                u,
                &u.endpoints[0],
                OutboundRequest {
                    upgrade: false,
                    head: &mut h,
                    is_head: false,
                    idempotent: true,
                    deadline: Instant::now() + Duration::from_secs(2),
                    breaker: None,
                    started: monoio::time::Instant::now(),
                },
                &mut no_body(),
            )
            .await
            .err()
            .expect("a failure");
        assert_eq!(closed.source, FailureSource::Closed);
        assert_eq!(closed.status(), 502);
        assert!(
            closed.replayable,
            "nothing was answered and the body is whole"
        );
        assert!(
            !closed.is_stale_connection(),
            "a fresh connection is not stale"
        );

        let timed_out = ex
            .exchange(
                u,
                &u.endpoints[0],
                OutboundRequest {
                    upgrade: false,
                    head: &mut h,
                    is_head: false,
                    idempotent: true,
                    deadline: Instant::now() + Duration::from_millis(200),
                    breaker: None,
                    started: monoio::time::Instant::now(),
                },
                &mut no_body(),
            )
            .await
            .err()
            .expect("a failure");
        assert_eq!(timed_out.source, FailureSource::Timeout);
        assert_eq!(timed_out.status(), 504);
        assert!(!timed_out.replayable, "the endpoint may have acted on it");
    });
    up.join().unwrap();

    // Nobody listens any more: the connect fails.
    run(async {
        let mut h = head("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        let refused = ex
            .exchange(
                u,
                &u.endpoints[0],
                OutboundRequest {
                    upgrade: false,
                    head: &mut h,
                    is_head: false,
                    idempotent: true,
                    deadline: Instant::now() + Duration::from_secs(1),
                    breaker: None,
                    started: monoio::time::Instant::now(),
                },
                &mut no_body(),
            )
            .await
            .err()
            .expect("a failure");
        assert_eq!(refused.source, FailureSource::Connect);
        assert_eq!(refused.status(), 502);
    });
    assert_eq!(counters.upstream_connect_failures.get(), 1);
}

#[test]
fn a_connection_with_bytes_after_the_body_is_not_pooled() {
    let (addr, up) = upstream(vec![Box::new(|mut s| {
        read_request(&mut s, 0);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA")
            .unwrap();
    })]);
    let snap = snapshot(addr);
    let (pools, counters) = (UpstreamPools::new(), Counters::default());
    let ex = Exchanger {
        pools: &pools,
        h2: &super::H2Pools::new(),
        counters: &counters,
    };
    let u = &snap.upstreams[0];
    run(async {
        let mut h = head("GET / HTTP/1.1\r\nhost: x\r\n\r\n");
        let resp = ex
            .exchange(
                u,
                &u.endpoints[0],
                OutboundRequest {
                    upgrade: false,
                    head: &mut h,
                    is_head: false,
                    idempotent: true,
                    deadline: Instant::now() + Duration::from_secs(2),
                    breaker: None,
                    started: monoio::time::Instant::now(),
                },
                &mut no_body(),
            )
            .await
            .expect("an answer");
        let early = resp.early_body().expect("checked framing");
        assert_eq!(&resp.head_bytes()[early], b"ok");
        resp.finish(&pools);
    });
    assert!(pools
        .take(
            &snap.upstreams[0].endpoints[0].key,
            std::time::Instant::now(),
            &counters
        )
        .is_none());
    up.join().unwrap();
}

#[test]
fn late_bytes_keep_a_pooled_connection_from_being_used() {
    // The upstream answers a HEAD, then sends bytes that look like a response.
    let (addr, up) = upstream(vec![Box::new(|mut s| {
        read_request(&mut s, 0);
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 59\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nevil")
            .unwrap();
        std::thread::sleep(Duration::from_millis(300));
    })]);
    let snap = snapshot(addr);
    let (pools, counters) = (UpstreamPools::new(), Counters::default());
    let ex = Exchanger {
        pools: &pools,
        h2: &super::H2Pools::new(),
        counters: &counters,
    };
    let u = &snap.upstreams[0];
    run(async {
        let mut h = head("HEAD / HTTP/1.1\r\nhost: x\r\n\r\n");
        let resp = ex
            .exchange(
                u,
                &u.endpoints[0],
                OutboundRequest {
                    upgrade: false,
                    head: &mut h,
                    is_head: true,
                    idempotent: true,
                    deadline: Instant::now() + Duration::from_secs(2),
                    breaker: None,
                    started: monoio::time::Instant::now(),
                },
                &mut no_body(),
            )
            .await
            .expect("an answer");
        assert!(resp.early_body().expect("checked framing").is_empty());
        resp.finish(&pools);
        monoio::time::sleep(Duration::from_millis(150)).await;
    });
    assert!(pools
        .take(&u.endpoints[0].key, std::time::Instant::now(), &counters)
        .is_none());
    assert_eq!(counters.upstream_pool_discarded.get(), 1);
    up.join().unwrap();
}

#[test]
fn a_non_idempotent_request_is_not_replayable() {
    let (addr, up) = upstream(vec![Box::new(|mut s| {
        read_request(&mut s, 0);
    })]);
    let snap = snapshot(addr);
    let (pools, counters) = (UpstreamPools::new(), Counters::default());
    let ex = Exchanger {
        pools: &pools,
        h2: &super::H2Pools::new(),
        counters: &counters,
    };
    let u = &snap.upstreams[0];
    run(async {
        let mut h = head("POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n");
        let e = ex
            .exchange(
                u,
                &u.endpoints[0],
                OutboundRequest {
                    upgrade: false,
                    head: &mut h,
                    is_head: false,
                    idempotent: false,
                    deadline: Instant::now() + Duration::from_secs(2),
                    breaker: None,
                    started: monoio::time::Instant::now(),
                },
                &mut no_body(),
            )
            .await
            .err()
            .expect("a failure");
        assert_eq!(e.source, FailureSource::Closed);
        assert!(!e.replayable, "the endpoint may have acted on a POST");
    });
    up.join().unwrap();
}
