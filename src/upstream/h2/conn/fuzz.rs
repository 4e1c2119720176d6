//! The entry the fuzz target `h2_client` drives (fuzz/fuzz_targets/h2_client.rs).

use std::task::{Context, Poll, Waker};

use super::Connection;

/// Feeds `bytes` to a fresh connection with three streams open, as if the
/// endpoint had sent them, then takes what each stream got: for the fuzz target
/// `h2_client` (fuzz/), which only asks that nothing panics. Returns whether the
/// bytes were a connection error.
#[doc(hidden)]
pub fn feed_for_fuzzing(bytes: &[u8]) -> bool {
    let conn = Connection::new();
    let ids: Vec<u32> = (0..3)
        .filter_map(|i| {
            conn.open_stream(i == 0, i == 1, |e, out| e.field(b":method", b"GET", out))
                .ok()
        })
        .collect();
    let failed = {
        let mut s = conn.state.borrow_mut();
        // In reads of 100 octets, kept until their frames are whole, as the
        // driver's reader does.
        let mut buf = Vec::new();
        let mut failed = false;
        for read in bytes.chunks(100) {
            buf.extend_from_slice(read);
            match s.receive(&buf) {
                Ok(n) => {
                    buf.drain(..n);
                }
                Err(e) => {
                    s.fail(e);
                    failed = true;
                    break;
                }
            }
        }
        failed
    };
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut buf = Vec::new();
    for id in ids {
        let _ = conn.poll_head(id, &mut cx);
        if let Poll::Ready(Ok(true)) = conn.poll_data(id, &mut buf, &mut cx) {
            conn.release(id, buf.len());
        }
        let _ = conn.poll_trailers(id, &mut cx);
        if let Poll::Ready(Ok(n)) = conn.poll_send_capacity(id, 10, &mut cx) {
            let _ = conn.send_data(id, &vec![0; n], true);
        }
        conn.close_stream(id);
    }
    failed
}
