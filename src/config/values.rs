//! Small checks shared by the compilers of the sections: numbers in range,
//! durations, tokens. Each records a problem at the value's place and returns a
//! usable value, so checking goes on.

use std::time::Duration;

use toml::Spanned;

use super::error::Problems;

/// The value, or 1 after recording "must be greater than 0".
pub(super) fn positive(v: &Spanned<u64>, p: &mut Problems<'_>) -> u64 {
    if *v.get_ref() == 0 {
        p.at(v.span(), "must be greater than 0");
        return 1;
    }
    *v.get_ref()
}

/// The value when it is within `min..=max`; else the nearest bound, after
/// recording the range.
pub(super) fn in_range(v: &Spanned<u64>, min: u64, max: u64, p: &mut Problems<'_>) -> u64 {
    let x = *v.get_ref();
    if !(min..=max).contains(&x) {
        p.at(
            v.span(),
            format!("{x} is out of range: must be from {min} to {max}"),
        );
        return x.clamp(min, max);
    }
    x
}

/// A positive number of milliseconds as a duration.
pub(super) fn millis(v: &Spanned<u64>, p: &mut Problems<'_>) -> Duration {
    Duration::from_millis(positive(v, p))
}

/// An RFC 9110 token (header names, methods).
pub(super) fn is_token(s: &str) -> bool {
    crate::http::is_token(s.as_bytes())
}
