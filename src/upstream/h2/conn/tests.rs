//! The connection's state fed by hand: responses, resets, GOAWAY, errors.

use super::*;
use crate::http::http2::frame::{flag, kind};
use crate::http::http2::hpack::Encoder;

fn frames(build: impl FnOnce(&mut Vec<u8>, &mut Encoder)) -> Vec<u8> {
    let mut out = Vec::new();
    build(&mut out, &mut Encoder::new());
    out
}

fn head(out: &mut Vec<u8>, e: &mut Encoder, id: u32, fields: &[(&[u8], &[u8])], end: bool) {
    let start = frame::begin_header_block(out);
    for (n, v) in fields {
        e.field(n, v, out);
    }
    frame::frame_header_block(out, start, id, end, DEFAULT_MAX_FRAME);
}

/// Opens a stream for a `GET` without a body; returns its ID.
fn open_get(conn: &Connection) -> u32 {
    conn.open_stream(true, false, |e, o| e.field(b":method", b"GET", o))
        .unwrap()
}

#[test]
fn a_response_reaches_its_stream_and_a_false_length_resets_it() {
    let conn = Connection::new();
    let (a, b) = (open_get(&conn), open_get(&conn));
    let bytes = frames(|out, e| {
        frame::put_settings(out, &[(setting::MAX_CONCURRENT_STREAMS, 7)]);
        head(
            out,
            e,
            a,
            &[(b":status", b"200"), (b"content-length", b"5")],
            false,
        );
        frame::put_data(out, a, b"hello", true);
        head(
            out,
            e,
            b,
            &[(b":status", b"200"), (b"content-length", b"9")],
            false,
        );
        frame::put_data(out, b, b"short", true);
    });
    let taken = conn.state.borrow_mut().receive(&bytes).unwrap();
    assert_eq!(taken, bytes.len());
    assert_eq!(conn.peer_max_streams(), 7);
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let Poll::Ready(Ok(h)) = conn.poll_head(a, &mut cx) else {
        panic!("no head")
    };
    assert_eq!((h.status, h.content_length), (200, Some(5)));
    let mut buf = Vec::new();
    assert!(matches!(
        conn.poll_data(a, &mut buf, &mut cx),
        Poll::Ready(Ok(true))
    ));
    assert_eq!(buf, b"hello");
    assert!(matches!(
        conn.poll_data(a, &mut buf, &mut cx),
        Poll::Ready(Ok(false))
    ));
    // Stream b's body is shorter than its content-length: reset, and an error
    // once the bytes it did get are taken.
    assert!(matches!(conn.poll_head(b, &mut cx), Poll::Ready(Ok(_))));
    assert!(matches!(
        conn.poll_data(b, &mut buf, &mut cx),
        Poll::Ready(Ok(true))
    ));
    assert_eq!(
        conn.poll_data(b, &mut buf, &mut cx),
        Poll::Ready(Err(StreamError::Malformed))
    );
    let out = conn.state.borrow().out.clone();
    let rst = out.windows(4).any(|w| w == [0, 0, 4, kind::RST_STREAM]);
    assert!(rst, "a RST_STREAM was queued");
}

#[test]
fn goaway_refuses_the_streams_above_its_last_and_push_is_a_connection_error() {
    let conn = Connection::new();
    let (a, b) = (open_get(&conn), open_get(&conn));
    let mut bytes = Vec::new();
    frame::put_goaway(&mut bytes, a, code::NO_ERROR);
    conn.state.borrow_mut().receive(&bytes).unwrap();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    assert!(matches!(
        conn.poll_head(b, &mut cx),
        Poll::Ready(Err(StreamError::Refused))
    ));
    assert!(conn.poll_head(a, &mut cx).is_pending());
    assert!(!conn.is_usable());
    let mut push = Vec::new();
    frame::put_head(&mut push, 4, kind::PUSH_PROMISE, flag::END_HEADERS, a);
    push.extend_from_slice(&[0, 0, 0, 2]);
    assert_eq!(
        conn.state.borrow_mut().receive(&push),
        Err(code::PROTOCOL_ERROR)
    );
    assert!(!feed_for_fuzzing(&bytes));
    assert!(feed_for_fuzzing(&push));
}

#[test]
fn an_endpoint_that_floods_pings_and_reads_nothing_is_cut_off() {
    let conn = Connection::new();
    let mut ping = Vec::new();
    frame::put_head(&mut ping, 8, kind::PING, 0, 0);
    ping.extend_from_slice(b"12345678");
    // Each PING queues a 17-octet answer that the endpoint never reads.
    let pings = OUTPUT_LIMIT / 17 + 2;
    let bytes: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * pings)
        .collect();
    assert_eq!(
        conn.state.borrow_mut().receive(&bytes),
        Err(code::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn the_fuzz_entry_delivers_frames_longer_than_one_read_whole() {
    // A 150-octet frame of an unknown type (ignored, §4.1) arrives in two reads of
    // the fuzz entry's 100 octets; read from its second octet on, its header would
    // claim 38,650 octets, a FRAME_SIZE_ERROR.
    let mut bytes = Vec::new();
    frame::put_head(&mut bytes, 150, 0xfa, 0, 0);
    bytes.extend_from_slice(&[0; 150]);
    assert!(!feed_for_fuzzing(&bytes));
    let conn = Connection::new();
    assert_eq!(conn.state.borrow_mut().receive(&bytes), Ok(bytes.len()));
}
