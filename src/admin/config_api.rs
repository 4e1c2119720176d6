//! The admin listener's configuration calls (docs/control-plane.md):
//!
//! - `GET /config`: the running version (hash, time, source), the canary, each
//!   worker's version, and the last attempts with their outcome and reason — as
//!   the control thread last wrote it ([`ConfigView`]).
//! - `POST /config/reload`: read the file again and try it (validated, then on the
//!   canary workers). Answers once the file is validated (`200` with the new
//!   version, `422` with every problem as `file:line:col`); with `?wait=1`, once it
//!   is promoted (`200`) or rolled back (`422`).
//! - `POST /config/promote`, `POST /config/rollback`: decide the canary in
//!   progress by hand (`409` when there is none).
//!
//! The mutating calls need `Authorization: Bearer TOKEN` when `[admin] token_env`
//! names a token (compared in constant time); without one they are open, which the
//! configuration only allows on a loopback address.
//!
//! The control thread does the work; each mutating call waits for its answer on a
//! short-lived thread of its own (at most [`MAX_WAITING`] at once), so health
//! checks on the admin listener are never held up by a reload.

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{bounded, Sender};

/// What the control thread is asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlAction {
    Reload,
    Promote,
    Rollback,
}

/// One mutating call, for the control thread.
pub struct ControlRequest {
    pub action: ControlAction,
    /// Answer when the attempt is decided (promoted or rolled back), not before.
    pub wait: bool,
    /// Where the answer goes (one answer per request).
    pub reply: Sender<ControlReply>,
}

/// The control thread's answer: an HTTP status and a JSON body.
#[derive(Debug)]
pub struct ControlReply {
    pub status: u16,
    pub body: String,
}

/// `GET /config`'s JSON, rewritten by the control thread whenever it changes.
pub type ConfigView = Arc<Mutex<String>>;

/// The admin listener's end of the control thread.
pub struct ConfigApi {
    /// Requests to the control thread.
    pub requests: Sender<ControlRequest>,
    /// Wakes the control thread (it sleeps on signals and this).
    pub wake: Sender<()>,
    pub view: ConfigView,
    /// The bearer token mutating calls must carry, when one is configured.
    pub token: Option<String>,
    waiting: Arc<AtomicUsize>,
}

/// Mutating calls waiting for the control thread at once; more get `503`.
pub const MAX_WAITING: usize = 8;

/// How long a call waits for the control thread: a reload that waits for its
/// canary is bounded by the window, the others by validation.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3600);

impl ConfigApi {
    pub fn new(
        requests: Sender<ControlRequest>,
        wake: Sender<()>,
        view: ConfigView,
        token: Option<String>,
    ) -> Self {
        ConfigApi {
            requests,
            wake,
            view,
            token,
            waiting: Arc::default(),
        }
    }

    /// Answers a request for `path` (query included) under `/config`.
    /// `authorization` is the request's `Authorization` field, if any.
    pub fn answer(
        &self,
        stream: TcpStream,
        method: &str,
        path: &str,
        authorization: Option<&[u8]>,
    ) -> std::io::Result<()> {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let action = match path {
            "/config" => {
                return match method {
                    "GET" => {
                        let view = self.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        respond(stream, 200, &[], &view)
                    }
                    _ => respond(stream, 405, &[("allow", "GET")], &error_json("use GET")),
                };
            }
            "/config/reload" => ControlAction::Reload,
            "/config/promote" => ControlAction::Promote,
            "/config/rollback" => ControlAction::Rollback,
            _ => return respond(stream, 404, &[], &error_json("not found")),
        };
        if method != "POST" {
            return respond(stream, 405, &[("allow", "POST")], &error_json("use POST"));
        }
        if !self.authorized(authorization) {
            let challenge = [("www-authenticate", "Bearer realm=\"portico-admin\"")];
            return respond(
                stream,
                401,
                &challenge,
                &error_json(
                    "this call needs Authorization: Bearer <the token of [admin] token_env>",
                ),
            );
        }
        let wait = query
            .split('&')
            .any(|kv| kv == "wait=1" || kv == "wait=true");
        self.forward(stream, action, wait)
    }

    /// True when no token is configured, or `authorization` carries it.
    fn authorized(&self, authorization: Option<&[u8]>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let given = authorization
            .and_then(|v| v.strip_prefix(b"Bearer ".as_slice()))
            .map(|t| t.trim_ascii())
            .unwrap_or_default();
        constant_time_eq(given, token.as_bytes())
    }

    /// Hands the call to the control thread and answers on a thread of its own.
    fn forward(&self, stream: TcpStream, action: ControlAction, wait: bool) -> std::io::Result<()> {
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return respond(
                stream,
                503,
                &[("retry-after", "1")],
                &error_json("too many calls in progress"),
            );
        }
        let (reply, answer) = bounded(1);
        let sent = self.requests.send(ControlRequest {
            action,
            wait,
            reply,
        });
        let _ = self.wake.try_send(());
        if sent.is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return respond(stream, 503, &[], &error_json("the gateway is stopping"));
        }
        let waiting = self.waiting.clone();
        let spawned = std::thread::Builder::new()
            .name("portico-admin-call".into())
            .spawn(move || {
                let reply = answer.recv_timeout(ANSWER_TIMEOUT).unwrap_or(ControlReply {
                    status: 503,
                    body: error_json("the control thread did not answer"),
                });
                let _ = respond(stream, reply.status, &[], &reply.body);
                waiting.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(())
    }
}

/// `{"error": "..."}`.
pub fn error_json(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

/// Compares two byte strings in time that depends on their lengths only.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn respond(
    mut stream: TcpStream,
    status: u16,
    fields: &[(&str, &str)],
    body: &str,
) -> std::io::Result<()> {
    let mut out = Vec::new();
    crate::http::write_simple_response_with(
        &mut out,
        status,
        "application/json",
        fields,
        body.as_bytes(),
    );
    stream.set_write_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_must_match_exactly() {
        let (tx, _rx) = bounded(1);
        let (wake, _w) = bounded(1);
        let api = ConfigApi::new(tx, wake, ConfigView::default(), Some("s3cret".into()));
        assert!(api.authorized(Some(b"Bearer s3cret")));
        assert!(!api.authorized(Some(b"Bearer s3cre")));
        assert!(!api.authorized(Some(b"Bearer s3cretX")));
        assert!(!api.authorized(Some(b"Basic s3cret")));
        assert!(!api.authorized(None));
        let (tx, _rx) = bounded(1);
        let (wake, _w) = bounded(1);
        let open = ConfigApi::new(tx, wake, ConfigView::default(), None);
        assert!(open.authorized(None));
    }
}
