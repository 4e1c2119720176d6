//! A request the codec refuses: the status to answer with and a short reason.

use std::fmt;

/// Answered with `status` and a JSON body naming `reason`; the connection is closed
/// afterwards because the rest of the byte stream cannot be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

impl HttpError {
    pub const fn new(status: u16, reason: &'static str) -> Self {
        HttpError { status, reason }
    }
    pub const fn bad_request(reason: &'static str) -> Self {
        HttpError::new(400, reason)
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}
