//! W3C Trace Context Level 1 (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` and `tracestate` a request carries, and the gateway's part in the
//! trace as a participant.
//!
//! With `[tracing]` configured, every request gets a [`TraceContext`]
//! ([`TraceContext::for_request`]): a valid incoming `traceparent` is continued
//! (same trace ID, the caller's span as parent, its sampled flag kept); a missing
//! or invalid one starts a new trace (a new random trace ID, sampled when
//! `sample_ratio` says so) and the incoming `tracestate` is dropped, as §3.3.1.1 of
//! the specification requires. The gateway's own server span gets a new span ID;
//! each upstream try gets another, and that one goes upstream as the parent
//! (`traceparent` written by `crate::http`, span ID set per try with
//! [`set_parent_id`]).
//!
//! Parsing is pure: [`parse_traceparent`] and [`parse_tracestate`] take the field
//! values and return what is valid, so the rules are unit-tested here.

use std::cell::Cell;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use smallvec::SmallVec;

/// Length of a version-00 `traceparent` value: `00-` + 32 + `-` + 16 + `-` + 2.
pub const TRACEPARENT_LEN: usize = 55;
/// Where the parent-id (span ID) digits are in a `traceparent` value.
const PARENT_ID_AT: std::ops::Range<usize> = 36..52;
/// Most list members a `tracestate` may have (§3.3.1.1).
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The sampled bit of `trace-flags`.
const SAMPLED: u8 = 0x01;

/// What an incoming `traceparent` says, once it was found valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traceparent {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The caller's span (8 bytes, never all zero).
    pub parent_id: [u8; 8],
    /// `trace-flags`, only the bits version 00 defines kept (the sampled bit).
    pub flags: u8,
}

/// A request's position in a distributed trace, as the gateway takes part in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// `trace_id` as 32 lowercase hex digits, written once: the `traceparent`
    /// sent upstream and the access-log line copy it ([`TraceContext::trace_id_hex`]).
    pub(crate) trace_hex: [u8; 32],
    /// The caller's span, when the request continued a trace.
    pub parent_id: Option<[u8; 8]>,
    /// The gateway's server span for this request.
    pub span_id: [u8; 8],
    /// `trace-flags` sent upstream (bit 0 = sampled).
    pub flags: u8,
    /// The incoming `tracestate` list, normalized (members joined by `,`), when the
    /// trace was continued and the list was valid.
    pub tracestate: Option<Vec<u8>>,
    /// Wall-clock time the request started, in Unix nanoseconds, for span
    /// timestamps (sampled only).
    pub started_at: Option<u64>,
    /// One client span per upstream try (sampled requests only); the first is
    /// kept inline.
    pub tries: SmallVec<[TrySpan; 1]>,
}

/// One upstream try as a client span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrySpan {
    pub span_id: [u8; 8],
    pub started: Instant,
    pub ended: Option<Instant>,
    /// The upstream's index in the generation's snapshot.
    pub upstream: usize,
    /// The endpoint's number in the snapshot (`Endpoint::id`).
    pub endpoint: usize,
    /// 1 for the first try.
    pub attempt: u32,
    /// The response status, when a response head came.
    pub status: Option<u16>,
    /// Why the try failed, when it did (`connect`, `timeout`, ...).
    pub failure: Option<&'static str>,
    /// A composed route's part: its name and method (a forwarded try has the
    /// request's method).
    pub part: Option<(String, String)>,
}

impl TraceContext {
    /// The context of a request whose `traceparent` field values are
    /// `traceparents` (all of them: two make it invalid) and whose `tracestate`
    /// values are `tracestates`, with `sample_ratio` (0.0–1.0) deciding for new
    /// traces. IDs come from `ids`.
    pub fn for_request(
        traceparents: &[&[u8]],
        tracestates: &[&[u8]],
        sample_ratio: f64,
        ids: &TraceIds,
        unix_nanos_now: impl FnOnce() -> u64,
    ) -> TraceContext {
        let incoming = match traceparents {
            [one] => parse_traceparent(one),
            _ => None,
        };
        let (trace_id, parent_id, flags, tracestate) = match incoming {
            Some(tp) => (
                tp.trace_id,
                Some(tp.parent_id),
                tp.flags,
                parse_tracestate(tracestates),
            ),
            None => {
                let trace_id = ids.trace_id();
                let flags = if ratio_samples(&trace_id, sample_ratio) {
                    SAMPLED
                } else {
                    0
                };
                (trace_id, None, flags, None)
            }
        };
        let sampled = flags & SAMPLED != 0;
        TraceContext {
            trace_id,
            trace_hex: hex_of(&trace_id),
            parent_id,
            span_id: ids.span_id(),
            flags,
            tracestate,
            started_at: sampled.then(unix_nanos_now),
            tries: SmallVec::new(),
        }
    }

    /// The trace is recorded and exported.
    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// The `traceparent` value that names `span_id` as the parent (version 00).
    pub fn traceparent(&self, span_id: &[u8; 8]) -> [u8; TRACEPARENT_LEN] {
        let mut out = [b'-'; TRACEPARENT_LEN];
        out[..2].copy_from_slice(b"00");
        out[3..35].copy_from_slice(&self.trace_hex);
        hex_into(&mut out[PARENT_ID_AT], span_id);
        out[53..].copy_from_slice(&HEX_PAIRS[usize::from(self.flags)]);
        out
    }

    /// The trace ID as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> &[u8; 32] {
        &self.trace_hex
    }

    /// Unix nanoseconds of `at`, counted from the request's start (`received` is
    /// the request's start as an `Instant`); 0 when the trace is not sampled.
    pub fn unix_nanos(&self, received: Instant, at: Instant) -> u64 {
        self.unix_nanos_after(at.saturating_duration_since(received))
    }

    /// Unix nanoseconds `since` after the request's start (no `Instant`
    /// arithmetic: a caller that has the distance already saves a subtraction of
    /// two `timespec`s); 0 when the trace is not sampled.
    #[inline]
    pub fn unix_nanos_after(&self, since: Duration) -> u64 {
        match self.started_at {
            Some(start) => start.saturating_add(nanos(since)),
            None => 0,
        }
    }
}

/// `d` in nanoseconds, saturating (in `u64`: `Duration::as_nanos` is a `u128`).
#[inline]
fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// Puts `span_id` into a `traceparent` value written by
/// [`TraceContext::traceparent`] (in an upstream head, for another try).
pub fn set_parent_id(traceparent: &mut [u8], span_id: &[u8; 8]) {
    if let Some(digits) = traceparent.get_mut(PARENT_ID_AT) {
        hex_into(digits, span_id);
    }
}

/// Parses a `traceparent` value (§3.2), surrounding spaces and tabs allowed.
///
/// Version 00 must be exactly `00-<32 hex>-<16 hex>-<2 hex>`, lowercase. A later
/// version (not `ff`) is read by the version-00 rules on its first 55 characters;
/// anything after them must start with `-` (§4.3, forward compatibility). An
/// all-zero trace or parent ID is invalid. Returns `None` when invalid.
pub fn parse_traceparent(value: &[u8]) -> Option<Traceparent> {
    let value = trim_ows(value);
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = hex_byte(&value[0..2])?;
    match version {
        0xff => return None,
        0x00 if value.len() != TRACEPARENT_LEN => return None,
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut trace_id = [0u8; 16];
    let mut parent_id = [0u8; 8];
    unhex_into(&value[3..35], &mut trace_id)?;
    unhex_into(&value[PARENT_ID_AT], &mut parent_id)?;
    let flags = hex_byte(&value[53..55])?;
    if trace_id == [0; 16] || parent_id == [0; 8] {
        return None;
    }
    Some(Traceparent {
        trace_id,
        parent_id,
        flags: flags & SAMPLED,
    })
}

/// Combines the `tracestate` field values (in order, as one list, §3.3.1) and
/// checks every member by the specification's current grammar: a key of 1–256
/// lowercase letters, digits and `_-*/@`, starting with a letter or digit (a
/// superset of Level 1's `simple-key` and `tenant@system`, so no list a newer
/// vendor sends is lost); a value of printable ASCII but `,` and `=`, not ending in
/// a space, up to 256. Spaces and tabs around members and empty members are
/// dropped, and so is a later member whose key came before (senders should not
/// repeat a key; receivers may drop repeats). Returns the list joined by `,`, or
/// `None` when it is empty or invalid (a bad member, more than 32 members): the
/// whole list is then discarded.
pub fn parse_tracestate(values: &[&[u8]]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut keys: Vec<&[u8]> = Vec::new();
    let mut members = 0;
    for value in values {
        for member in value.split(|&b| b == b',') {
            let member = trim_ows(member);
            if member.is_empty() {
                continue;
            }
            let eq = member.iter().position(|&b| b == b'=')?;
            let (key, value) = (&member[..eq], &member[eq + 1..]);
            if !valid_key(key) || !valid_value(value) {
                return None;
            }
            members += 1;
            if members > MAX_TRACESTATE_MEMBERS {
                return None;
            }
            if keys.contains(&key) {
                continue;
            }
            keys.push(key);
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(member);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Whether a trace with `trace_id` is sampled at `ratio`: its last 8 bytes, read
/// as a number, fall under `ratio` × 2⁶⁴ (the same decision wherever it is made).
fn ratio_samples(trace_id: &[u8; 16], ratio: f64) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    if ratio <= 0.0 {
        return false;
    }
    let mut low = [0u8; 8];
    low.copy_from_slice(&trace_id[8..]);
    let x = u64::from_be_bytes(low);
    (x as f64) < ratio * 18_446_744_073_709_551_616.0
}

/// One worker's source of trace and span IDs (xorshift64*, seeded per worker from
/// the clock and the worker number; IDs need to be unique, not secret).
pub struct TraceIds {
    state: Cell<u64>,
}

impl TraceIds {
    /// The generator of worker `worker`.
    pub fn new(worker: usize) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let seed = splitmix(nanos ^ ((worker as u64 + 1) << 48) ^ u64::from(std::process::id()));
        TraceIds {
            state: Cell::new(seed | 1),
        }
    }

    fn next(&self) -> u64 {
        let mut x = self.state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A random, non-zero span ID.
    pub fn span_id(&self) -> [u8; 8] {
        loop {
            let v = self.next();
            if v != 0 {
                return v.to_be_bytes();
            }
        }
    }

    /// A random, non-zero trace ID.
    pub fn trace_id(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.next().to_be_bytes());
        out[8..].copy_from_slice(&self.span_id());
        out
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `key = ( lcalpha / DIGIT ) 0*255 ( keychar )`, `keychar = lcalpha / DIGIT / "_" /
/// "-" / "*" / "/" / "@"`.
fn valid_key(key: &[u8]) -> bool {
    (1..=256).contains(&key.len())
        && key
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && key
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(&b))
}

/// `value`: 1–256 printable ASCII characters but `,` and `=`, the last not a space.
fn valid_value(value: &[u8]) -> bool {
    (1..=256).contains(&value.len())
        && value
            .iter()
            .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
        && value.last().is_some_and(|&b| b != b' ')
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// A trace ID as 32 lowercase hex digits (for [`TraceContext::trace_hex`]).
pub(crate) fn hex_of(trace_id: &[u8; 16]) -> [u8; 32] {
    let mut out = [0u8; 32];
    hex_into(&mut out, trace_id);
    out
}

/// Writes `bytes` as lowercase hex into `out` (twice as long): one two-byte
/// load and store per byte from [`HEX_PAIRS`] (two nibble lookups per byte
/// were ≈ 6.5 instructions a byte, 24 bytes per traced request).
#[inline]
fn hex_into(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// Every byte's two lowercase hex digits.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = [HEX[b >> 4], HEX[b & 0x0f]];
        b += 1;
    }
    t
};

/// One lowercase hex digit's value (uppercase is invalid in `traceparent`).
fn unhex(d: u8) -> Option<u8> {
    match d {
        b'0'..=b'9' => Some(d - b'0'),
        b'a'..=b'f' => Some(d - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(two: &[u8]) -> Option<u8> {
    Some(unhex(two[0])? << 4 | unhex(two[1])?)
}

fn unhex_into(digits: &[u8], out: &mut [u8]) -> Option<()> {
    for (pair, o) in digits.chunks_exact(2).zip(out.iter_mut()) {
        *o = hex_byte(pair)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn hex_digits_of_every_byte_at_every_place() {
        for b in 0..=255u8 {
            for at in 0..9 {
                let mut bytes = [0x5au8; 9];
                bytes[at] = b;
                let mut out = [0u8; 18];
                hex_into(&mut out, &bytes);
                let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                assert_eq!(std::str::from_utf8(&out).unwrap(), expected);
            }
        }
    }

    #[test]
    fn version_00_is_parsed_exactly() {
        let tp = parse_traceparent(TP).unwrap();
        assert_eq!(tp.trace_id[0], 0x0a);
        assert_eq!(
            tp.parent_id,
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31]
        );
        assert_eq!(tp.flags, 1);
        // Surrounding spaces and tabs are optional whitespace.
        assert!(
            parse_traceparent(b" \t00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\t")
                .is_some()
        );
        // Unknown flag bits are not carried on.
        let tp =
            parse_traceparent(b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff").unwrap();
        assert_eq!(tp.flags, 1);
    }

    #[test]
    fn invalid_version_00_values_are_refused() {
        for bad in [
            &b"00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"[..], // uppercase
            b"00-00000000000000000000000000000000-b7ad6b7169203331-01",      // zero trace
            b"00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",      // zero parent
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.",     // trailing
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",    // extra in 00
            b"ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",      // version ff
            b"0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"000-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b".0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-001",
            b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-.0",
            b"00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn later_versions_are_read_forward_compatibly() {
        let tp =
            parse_traceparent(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01").unwrap();
        assert_eq!(tp.trace_id[15], 0x9c);
        assert!(parse_traceparent(
            b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-will-be-like"
        )
        .is_some());
        assert!(parse_traceparent(
            b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.what-the-future-will-be-like"
        )
        .is_none());
        assert!(
            parse_traceparent(b"cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0").is_none()
        );
    }

    #[test]
    fn tracestate_lists_are_combined_or_discarded_whole() {
        let ok = |v: &[&[u8]]| parse_tracestate(v).map(|s| String::from_utf8(s).unwrap());
        assert_eq!(
            ok(&[b"foo=1,bar=2", b"rojo=1", b""]),
            Some("foo=1,bar=2,rojo=1".into())
        );
        assert_eq!(ok(&[b"foo=1 \t , \t bar=2,"]), Some("foo=1,bar=2".into()));
        assert_eq!(ok(&[b"t@v=1"]), Some("t@v=1".into()));
        assert_eq!(
            ok(&[b"foo@=1,0x=2,foo@@bar=3"]),
            Some("foo@=1,0x=2,foo@@bar=3".into())
        );
        // A repeated key keeps its first (most recent) entry.
        assert_eq!(
            ok(&[b"foo=1,foo=2", b"bar=3,foo=4"]),
            Some("foo=1,bar=3".into())
        );
        assert_eq!(ok(&[b"k= spaced value"]), Some("k= spaced value".into()));
        assert_eq!(ok(&[b""]), None);
        for bad in [
            &b"FOO=1"[..],
            b"foo.bar=1",
            b"foo =1",
            b"@foo=1,bar=2",
            b"_foo=1",
            b"foo=bar=baz",
            b"foo=,bar=3",
            b"foo=a\tb",
            b"foo",
        ] {
            assert_eq!(
                parse_tracestate(&[bad]),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_key = format!("{}=1", "z".repeat(257));
        assert_eq!(parse_tracestate(&[long_key.as_bytes()]), None);
        let max_key = format!("{}=1", "z".repeat(256));
        assert!(parse_tracestate(&[max_key.as_bytes()]).is_some());
        let tenant = format!("{}@{}=1", "t".repeat(242), "v".repeat(13));
        assert!(parse_tracestate(&[tenant.as_bytes()]).is_some());
        let members: Vec<String> = (1..=33).map(|i| format!("k{i}=v")).collect();
        assert!(parse_tracestate(&[members[..32].join(",").as_bytes()]).is_some());
        assert_eq!(parse_tracestate(&[members.join(",").as_bytes()]), None);
    }

    #[test]
    fn a_valid_parent_is_continued_and_an_invalid_one_restarts() {
        let ids = TraceIds::new(0);
        let ctx = TraceContext::for_request(&[TP], &[b"a=1"], 0.0, &ids, || 7);
        assert_eq!(ctx.trace_id, parse_traceparent(TP).unwrap().trace_id);
        assert_eq!(
            ctx.parent_id,
            Some(parse_traceparent(TP).unwrap().parent_id)
        );
        assert!(
            ctx.sampled(),
            "the caller's sampled flag wins over the ratio"
        );
        assert_eq!(ctx.tracestate.as_deref(), Some(&b"a=1"[..]));
        assert_ne!(ctx.span_id, [0; 8]);

        let restarted = TraceContext::for_request(&[b"00-zz"], &[b"a=1"], 1.0, &ids, || 7);
        assert_ne!(restarted.trace_id, ctx.trace_id);
        assert_eq!((restarted.parent_id, &restarted.tracestate), (None, &None));
        assert!(restarted.sampled());
        assert_eq!(
            restarted.started_at,
            Some(7),
            "a sampled trace keeps its start"
        );
        // Two traceparent fields are invalid too.
        let two = TraceContext::for_request(&[TP, TP], &[], 1.0, &ids, || 7);
        assert_ne!(two.trace_id, ctx.trace_id);

        let unsampled = TraceContext::for_request(&[], &[], 0.0, &ids, || 7);
        assert!(!unsampled.sampled());
        assert_eq!(unsampled.started_at, None);
    }

    #[test]
    fn traceparent_values_carry_the_span_given() {
        let ids = TraceIds::new(1);
        let ctx = TraceContext::for_request(&[TP], &[], 1.0, &ids, || 7);
        let span = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut value = ctx.traceparent(&span);
        assert_eq!(
            &value[..],
            &b"00-0af7651916cd43dd8448eb211c80319c-0102030405060708-01"[..]
        );
        set_parent_id(&mut value, &[0xff; 8]);
        let parsed = parse_traceparent(&value).unwrap();
        assert_eq!(parsed.parent_id, [0xff; 8]);
        assert_eq!(
            &ctx.trace_id_hex()[..],
            &b"0af7651916cd43dd8448eb211c80319c"[..]
        );
    }

    #[test]
    fn the_ratio_samples_about_its_share() {
        let ids = TraceIds::new(2);
        let sampled = (0..10_000)
            .filter(|_| ratio_samples(&ids.trace_id(), 0.25))
            .count();
        assert!((2_000..3_000).contains(&sampled), "{sampled}");
        assert!(ratio_samples(&[0xff; 16], 1.0));
        assert!(!ratio_samples(&[0; 16], 0.0));
    }
}
