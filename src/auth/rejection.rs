//! Why a request was not let through, and the RFC 6750 answer for it.
//!
//! Descriptions are short fixed phrases: they name what was wrong with the token,
//! never a key, a secret or the token itself.

use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// No token where one is required: 401 with a bare challenge (RFC 6750 §3.1).
    Missing,
    /// A token that does not verify: 401, `error="invalid_token"`.
    InvalidToken(Cow<'static, str>),
    /// A malformed request, e.g. two different tokens: 400, `error="invalid_request"`.
    InvalidRequest(&'static str),
    /// The provider has no keys yet (its JWKS was never fetched): 503.
    NoKeys,
}

impl Rejection {
    pub fn invalid(description: &'static str) -> Self {
        Rejection::InvalidToken(Cow::Borrowed(description))
    }

    pub fn status(&self) -> u16 {
        match self {
            Rejection::Missing | Rejection::InvalidToken(_) => 401,
            Rejection::InvalidRequest(_) => 400,
            Rejection::NoKeys => 503,
        }
    }

    /// The message of the JSON error body.
    pub fn message(&self) -> &str {
        match self {
            Rejection::Missing => "a bearer token is required",
            Rejection::InvalidToken(d) => d,
            Rejection::InvalidRequest(d) => d,
            Rejection::NoKeys => "authentication keys are not available yet",
        }
    }

    /// The `WWW-Authenticate` value; `challenge` is the provider's `Bearer realm="..."`.
    pub fn www_authenticate(&self, challenge: &str) -> Option<String> {
        match self {
            Rejection::Missing => Some(challenge.to_string()),
            Rejection::InvalidToken(d) => Some(format!(
                "{challenge}, error=\"invalid_token\", error_description=\"{d}\""
            )),
            Rejection::InvalidRequest(d) => Some(format!(
                "{challenge}, error=\"invalid_request\", error_description=\"{d}\""
            )),
            Rejection::NoKeys => None,
        }
    }
}
