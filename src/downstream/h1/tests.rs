//! The local-reply exit on a real loopback connection: what the client reads, and
//! the one keep-alive decision (client's wish, the reply, an unread body, the
//! drain, HTTP/1.0); and the request body as the pipeline pulls it (a chunked
//! body's trailer lines left out, the connection kept for the next request).

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

/// Answers each request with `200` and, as its body, the request body exactly as
/// the pipeline would forward it: the bytes that came with the head, then every
/// piece.
struct EchoBody;

impl Handler for EchoBody {
    async fn handle<D: Downstream>(&self, d: &mut D) {
        let mut body = Vec::new();
        if d.take_buffered(&mut body).is_err() {
            return d.abort();
        }
        loop {
            match d.next_piece().await {
                Ok(Some(piece)) => {
                    body.extend_from_slice(&piece.buf[piece.range.clone()]);
                    d.give_back(piece);
                }
                Ok(None) => break,
                Err(_) => return d.abort(),
            }
        }
        let reply = LocalReply::new(200, "text/plain", body);
        let _ = d.send_reply(&reply, &FieldList::new(), "rid").await;
    }

    async fn refuse<D: Downstream>(&self, d: &mut D, error: HttpError) {
        Answer {
            close: true,
            drain: None,
        }
        .refuse(d, error)
        .await
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
        underscores: crate::http::UnderscoreHeaders::Drop,
    }
}

/// Serves one connection on a monoio thread (`drained`: the drain is raised while
/// the first request is handled); returns the client side.
fn serve_one(close: bool, drained: bool) -> TcpStream {
    serve_with(move |drain| Answer {
        close,
        drain: drained.then(|| drain.clone()),
    })
}

/// Serves one connection with the handler `make` builds on the monoio thread.
fn serve_with<H: Handler>(make: impl FnOnce(&Rc<DrainSignal>) -> H + Send + 'static) -> TcpStream {
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
            let handler = make(&drain);
            let conn = Box::new(super::ClientConn::new(stream, ConnInfo::plain(peer)));
            let idle = IdleDeadlines::default();
            super::serve(conn, &limits(), &drain, &idle, &handler).await;
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

/// A chunked request body's trailer lines never reach the upstream, whether they
/// come with the head or in later reads, split anywhere (the final CRLF included);
/// what is sent is the body up to `0\r\n\r\n`, and the request after it is read
/// from the right place.
#[test]
fn chunked_trailer_lines_are_left_out_of_the_pieces() {
    let head = b"POST /u HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n";
    let body = b"3\r\nabc\r\n0\r\nX-User-Id: admin\r\nX-B: 2\r\n\r\n";
    let next = b"GET /next HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n";
    let sent = "3\r\nabc\r\n0\r\n\r\n";
    // Every cut of the body: the part before it comes with the head (take_buffered),
    // the rest and the next request arrive later (next_piece).
    for cut in 0..=body.len() {
        let mut client = serve_with(|_| EchoBody);
        let mut first = head.to_vec();
        first.extend_from_slice(&body[..cut]);
        client.write_all(&first).unwrap();
        std::thread::sleep(Duration::from_millis(15));
        let mut rest = body[cut..].to_vec();
        rest.extend_from_slice(next);
        let out = exchange(client, &rest);
        assert_eq!(responses(&out), 2, "cut at {cut}: {out}");
        let (one, two) = out.split_at(out.rfind("HTTP/1.1 ").unwrap());
        assert!(
            one.ends_with(&format!("\r\n\r\n{sent}")),
            "cut at {cut}: {one}"
        );
        assert!(!one.contains("admin"), "cut at {cut}: {one}");
        assert!(two.starts_with("HTTP/1.1 200"), "cut at {cut}: {two}");
    }
}
