//! The client's cancellation of a request it no longer wants: an HTTP/2 stream the
//! client reset (RST_STREAM), seen while the gateway is busy elsewhere (waiting for
//! the upstream), so the request's work stops and its end is recorded at once.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::SendStream;

/// The two handles of an HTTP/2 response, shared by the stream's request (which
/// sends on them) and its [`ClientReset`] watch. Never borrowed across an await.
pub struct ResponseHandles {
    pub head: RefCell<SendResponse<Bytes>>,
    /// The body's stream, once the head went out without ending the stream.
    pub body: RefCell<Option<SendStream<Bytes>>>,
}

/// Resolves when the client resets the stream, or its connection fails.
pub struct ClientReset(pub Rc<ResponseHandles>);

impl ClientReset {
    /// Waits for the reset (or the connection's failure).
    pub async fn wait(&self) {
        poll_fn(|cx| {
            // Once the body streams, the reset is watched on the body's handle
            // (the head's would answer "already sent").
            if let Some(body) = self.0.body.borrow_mut().as_mut() {
                return body.poll_reset(cx).map(|_| ());
            }
            self.0.head.borrow_mut().poll_reset(cx).map(|_| ())
        })
        .await
    }
}
