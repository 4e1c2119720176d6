//! The local-reply exit on a real loopback connection: what the client reads, and
//! the one keep-alive decision (client's wish, the reply, an unread body, the
//! drain, HTTP/1.0).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::rc::Rc;
use std::time::Duration;

use crate::config::Limits;
use crate::downstream::{ConnInfo, Downstream, DrainSignal, Handler, IdleDeadlines};
use crate::http::{FieldList, HttpError, LocalReply};

/// Answers every request with a 404 (closing when `close`; raising the drain first
/// when `drain` is set), and refusals with their status.
struct Answer {
    close: bool,
    drain: Option<Rc<DrainSignal>>,
}

impl Handler for Answer {
    async fn handle<D: Downstream>(&self, d: &mut D) {
        if let Some(drain) = &self.drain {
            drain.raise();
        }
        let mut reply = LocalReply::error(404, "no route", "rid");
        reply.close = self.close;
        let _ = d.send_reply(&reply, &FieldList::new(), "rid").await;
    }

    async fn refuse<D: Downstream>(&self, d: &mut D, error: HttpError) {
        let reply = LocalReply::error(error.status, error.reason, "rid").closing();
        let _ = d.send_reply(&reply, &FieldList::new(), "rid").await;
    }
}

fn limits() -> Limits {
    Limits {
        max_connections_per_worker: 10,
        max_header_bytes: 16384,
        max_headers: 100,
        max_uri_bytes: 8192,
        max_body_bytes: 1 << 20,
        header_read_timeout: Duration::from_secs(2),
        body_read_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        send_timeout: Duration::from_secs(2),
    }
}

/// Serves one connection on a monoio thread (`drained`: the drain is raised while
/// the first request is handled); returns the client side.
fn serve_one(close: bool, drained: bool) -> TcpStream {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (stream, peer) = listener.accept().unwrap();
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async move {
            let stream = monoio::net::TcpStream::from_std(stream).unwrap();
            let drain = Rc::new(DrainSignal::default());
            let answer = Answer {
                close,
                drain: drained.then(|| drain.clone()),
            };
            let conn = Box::new(super::ClientConn::new(stream, ConnInfo::plain(peer)));
            let idle = IdleDeadlines::default();
            super::serve(conn, &limits(), &drain, &idle, &answer).await;
        });
    });
    let client = TcpStream::connect(addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client
}

/// Sends `bytes`, then reads until the server closes (or 5 s pass).
fn exchange(mut client: TcpStream, bytes: &[u8]) -> String {
    client.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = client.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn responses(text: &str) -> usize {
    text.matches("HTTP/1.1 ").count()
}

#[test]
fn keep_alive_carries_pipelined_requests_and_a_body_that_already_arrived() {
    let out = exchange(
        serve_one(false, false),
        b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nhelloGET /c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
    );
    assert_eq!(responses(&out), 3, "{out}");
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");
    assert!(out.contains("x-request-id: rid\r\n"));
    assert!(out.contains("{\"error\": \"no route\", \"request_id\": \"rid\"}"));
}

#[test]
fn an_unread_body_closes_the_connection() {
    let out = exchange(
        serve_one(false, false),
        b"POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\nhello",
    );
    assert_eq!(responses(&out), 1, "{out}");
    assert!(out.contains("connection: close"), "{out}");
}

#[test]
fn a_closing_reply_and_the_drain_close_the_connection() {
    for (close, drained) in [(true, false), (false, true)] {
        let out = exchange(
            serve_one(close, drained),
            b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n",
        );
        assert_eq!(
            responses(&out),
            1,
            "close {close}, drained {drained}: {out}"
        );
        assert!(out.contains("connection: close"), "{out}");
    }
}

#[test]
fn http10_clients_keep_alive_only_when_they_ask() {
    let out = exchange(
        serve_one(false, false),
        b"GET /a HTTP/1.0\r\nconnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n",
    );
    assert_eq!(responses(&out), 2, "{out}");
    assert_eq!(out.matches("connection: keep-alive").count(), 1, "{out}");
    assert_eq!(out.matches("connection: close").count(), 1, "{out}");
}

#[test]
fn head_gets_no_body_and_a_refused_head_closes() {
    let out = exchange(
        serve_one(false, false),
        b"HEAD /a HTTP/1.1\r\nhost: x\r\n\r\nGET / HTTP/1.1\r\nhost: x\r\nhost: y\r\n\r\n",
    );
    assert_eq!(responses(&out), 2, "{out}");
    let (first, second) = out.split_at(out.rfind("HTTP/1.1 400").unwrap());
    assert!(
        first.ends_with("\r\n\r\n"),
        "no body after a HEAD reply: {first}"
    );
    assert!(first.contains("content-length: "));
    assert!(second.contains("more than one Host header"), "{second}");
    assert!(second.contains("connection: close"), "{second}");
}
