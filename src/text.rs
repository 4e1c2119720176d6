//! Numbers, durations and addresses written as text on the request path without
//! `core::fmt`: the access log, span attributes and the forwarding headers write a
//! few of these per request, and `Ipv4Addr`'s `Display` alone measured about 3% of a
//! proxied request's CPU with the JSON access log and tracing on (perf, 2026-11-30).
//! Each writes exactly what the `Display` it replaces writes (tests below).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Appends `n` in decimal (as `u64`'s `Display`). Under 10,000 (statuses,
/// attempts, milliseconds, small byte counts) it is one copy of a size known when
/// compiling, made from two-digit pairs; past that the `itoa` crate writes it (its
/// text is copied with a `memcpy` call of a length known only then).
#[inline]
pub fn push_u64(out: &mut Vec<u8>, n: u64) {
    if n < 10_000 {
        push_small(out, n as usize);
    } else {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    }
}

/// "00" to "99", two bytes each.
const DIGIT_PAIRS: &[u8; 200] = b"\
0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// The two digits of `n` (under 100).
#[inline(always)]
fn pair(n: usize) -> [u8; 2] {
    let at = 2 * (n % 100);
    [DIGIT_PAIRS[at], DIGIT_PAIRS[at + 1]]
}

/// `n` (under 10,000) in decimal, without leading zeros.
#[inline(always)]
fn push_small(out: &mut Vec<u8>, n: usize) {
    if n < 10 {
        out.push(b'0' + n as u8);
    } else if n < 100 {
        out.extend_from_slice(&pair(n));
    } else if n < 1000 {
        let [a, b] = pair(n % 100);
        out.extend_from_slice(&[b'0' + (n / 100) as u8, a, b]);
    } else {
        let ([a, b], [c, d]) = (pair(n / 100), pair(n % 100));
        out.extend_from_slice(&[a, b, c, d]);
    }
}

/// Appends `d` in milliseconds with three decimals, rounded to the nearest
/// microsecond (as `format!("{:.3}", d.as_secs_f64() * 1000.0)`, without the
/// float's rounding error): `0.217`, `1500.000`.
#[inline]
pub fn push_millis(out: &mut Vec<u8>, d: Duration) {
    // In u64: `as_nanos` is a u128, and its division a call to `__udivti3`.
    let micros = d
        .as_secs()
        .saturating_mul(1_000_000)
        .saturating_add(u64::from((d.subsec_nanos() + 500) / 1000));
    push_u64(out, micros / 1000);
    let [a, b, c] = three_digits((micros % 1000) as usize);
    out.extend_from_slice(&[b'.', a, b, c]);
}

/// `n` (under 1,000) as three digits, zeros in front: the decimals of
/// milliseconds, the milliseconds of a timestamp.
#[inline(always)]
pub fn three_digits(n: usize) -> [u8; 3] {
    let [b, c] = pair(n % 100);
    [b'0' + (n / 100 % 10) as u8, b, c]
}

/// Whether `test` holds for every eight-byte word of `bytes`, for tests that look
/// at each byte of a word alone (ASCII, printable): a string of 8 bytes or more
/// is read a word at a time, the last word overlapping the one before; a shorter
/// one as one word made of its bytes (read in overlapping pieces) padded with
/// `a`, which such a test must pass. An empty string passes.
#[inline(always)]
pub fn every_word(bytes: &[u8], test: impl Fn(u64) -> bool) -> bool {
    let n = bytes.len();
    let b = bytes;
    if n == 0 {
        true
    } else if n < 4 {
        test(u64::from_ne_bytes([
            b[0],
            b[n / 2],
            b[n - 1],
            b'a',
            b'a',
            b'a',
            b'a',
            b'a',
        ]))
    } else if n < 8 {
        let (x, y) = (
            [b[0], b[1], b[2], b[3]],
            [b[n - 4], b[n - 3], b[n - 2], b[n - 1]],
        );
        test(u64::from(u32::from_ne_bytes(x)) << 32 | u64::from(u32::from_ne_bytes(y)))
    } else {
        let (words, _) = bytes.as_chunks::<8>();
        let mut last = [0u8; 8];
        last.copy_from_slice(&bytes[n - 8..]);
        words.iter().all(|w| test(u64::from_ne_bytes(*w))) && test(u64::from_ne_bytes(last))
    }
}

/// Whether `bytes` is all ASCII ([`every_word`]: no byte has its high bit set).
#[inline(always)]
pub fn is_ascii(bytes: &[u8]) -> bool {
    every_word(bytes, |w| w & 0x8080_8080_8080_8080 == 0)
}

/// Appends `ip` as its `Display` writes it (dotted quad; RFC 5952 text for IPv6).
pub fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    out.extend_from_slice(ip_text(ip).as_bytes());
}

/// `ip` as its `Display` writes it, on the stack: for a writer that needs the
/// text's length before the text (the rate-limit key).
pub fn ip_text(ip: IpAddr) -> IpText {
    let mut text = IpText {
        buf: [0; IP_TEXT_MAX],
        len: 0,
        v6: ip.is_ipv6(),
    };
    match ip {
        IpAddr::V4(v4) => {
            // Three digit slots and a dot after the digits for every octet: stores
            // of a fixed size (a copy of `n` bytes was a memcpy call); the next
            // octet overwrites what is not kept, the last dot is dropped.
            let mut len = 0;
            for octet in v4.octets() {
                let [n, a, b, c] = OCTETS[usize::from(octet)];
                let n = usize::from(n);
                text.buf[len..len + 3].copy_from_slice(&[a, b, c]);
                text.buf[len + n] = b'.';
                len += n + 1;
            }
            text.len = len - 1;
        }
        IpAddr::V6(v6) => {
            use std::io::Write as _;
            let mut w = &mut text.buf[..];
            let _ = write!(w, "{v6}");
            text.len = IP_TEXT_MAX - w.len();
        }
    }
    text
}

/// Room for the longest text form of an address (RFC 4291 §2.2,
/// `ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255`); `Display` writes at most 39.
const IP_TEXT_MAX: usize = 45;

/// An address's text (see [`ip_text`]).
#[derive(Clone, Copy)]
pub struct IpText {
    buf: [u8; IP_TEXT_MAX],
    len: usize,
    v6: bool,
}

impl IpText {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// The address is IPv6 (its text needs brackets beside a port).
    pub fn is_v6(&self) -> bool {
        self.v6
    }
}

impl std::fmt::Debug for IpText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Appends `addr` as its `Display` writes it (`1.2.3.4:80`, `[::1]:80`).
pub fn push_socket_addr(out: &mut Vec<u8>, addr: SocketAddr) {
    match addr {
        SocketAddr::V4(v4) => push_ip(out, IpAddr::V4(*v4.ip())),
        SocketAddr::V6(v6) => {
            out.push(b'[');
            push_ip(out, IpAddr::V6(*v6.ip()));
            if v6.scope_id() != 0 {
                out.push(b'%');
                push_u64(out, u64::from(v6.scope_id()));
            }
            out.push(b']');
        }
    }
    out.push(b':');
    push_u64(out, u64::from(addr.port()));
}

/// A socket address's text rendered once (an endpoint's, when the config is
/// compiled), so that the access log and the spans of every request copy it
/// instead of writing it: the address as `Display` writes it, and its IP part.
#[derive(Clone, Copy)]
pub struct AddrText {
    buf: [u8; ADDR_TEXT_MAX],
    len: u8,
    /// Where the IP's text is in `buf` (inside the brackets of an IPv6 address).
    ip: (u8, u8),
    port: u16,
}

/// `[` + an IPv6 text + `%` + a scope id + `]:` + a port.
const ADDR_TEXT_MAX: usize = 1 + IP_TEXT_MAX + 1 + 10 + 2 + 5;

impl AddrText {
    /// `addr`'s text.
    pub fn new(addr: SocketAddr) -> Self {
        let mut out = Vec::with_capacity(ADDR_TEXT_MAX);
        push_socket_addr(&mut out, addr);
        let ip = ip_text(addr.ip());
        let start = usize::from(addr.is_ipv6());
        let mut buf = [0; ADDR_TEXT_MAX];
        let len = out.len().min(ADDR_TEXT_MAX);
        buf[..len].copy_from_slice(&out[..len]);
        AddrText {
            buf,
            len: len as u8,
            ip: (start as u8, (start + ip.as_bytes().len()) as u8),
            port: addr.port(),
        }
    }

    /// The address as `Display` writes it (`1.2.3.4:80`, `[::1]:80`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The IP part, without brackets.
    pub fn ip(&self) -> &[u8] {
        &self.buf[usize::from(self.ip.0)..usize::from(self.ip.1)]
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl PartialEq for AddrText {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for AddrText {}

impl std::fmt::Debug for AddrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// For each octet: how many digits, then the digits.
const OCTETS: [[u8; 4]; 256] = {
    let mut table = [[0u8; 4]; 256];
    let mut n = 0;
    while n < 256 {
        let (h, t, u) = ((n / 100) as u8, (n / 10 % 10) as u8, (n % 10) as u8);
        table[n] = if n >= 100 {
            [3, b'0' + h, b'0' + t, b'0' + u]
        } else if n >= 10 {
            [2, b'0' + t, b'0' + u, 0]
        } else {
            [1, b'0' + u, 0, 0]
        };
        n += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn text(f: impl Fn(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn three_digits_are_zero_padded() {
        for n in 0..1000 {
            assert_eq!(three_digits(n), format!("{n:03}").as_bytes(), "{n}");
        }
    }

    #[test]
    fn ascii_is_found_for_every_byte_in_every_position() {
        for len in (1..=18).chain([23, 24, 25]) {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        is_ascii(&bytes),
                        b.is_ascii(),
                        "byte {b:#x} at {at} of {len}"
                    );
                }
            }
        }
        assert!(is_ascii(b""));
    }

    #[test]
    fn numbers_and_addresses_read_as_display_writes_them() {
        for n in (0..=10_001).chain([65_535, u64::MAX]) {
            assert_eq!(text(|o| push_u64(o, n)), n.to_string());
        }
        for n in 0..=255u8 {
            let ip = IpAddr::V4(Ipv4Addr::new(n, 9, 99, 100));
            assert_eq!(text(|o| push_ip(o, ip)), ip.to_string());
        }
        for ip in [
            "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255",
            "0.0.0.0",
            "127.0.0.1",
            "255.255.255.255",
            "10.20.3.40",
            "::1",
            "2001:db8::8a2e:370:7334",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(text(|o| push_ip(o, ip)), ip.to_string());
        }
        for addr in [
            "127.0.0.1:9001",
            "1.2.3.4:0",
            "[::1]:443",
            "[fe80::1%2]:8080",
        ] {
            let addr: SocketAddr = addr.parse().unwrap();
            assert_eq!(text(|o| push_socket_addr(o, addr)), addr.to_string());
            let rendered = AddrText::new(addr);
            assert_eq!(rendered.as_bytes(), addr.to_string().as_bytes());
            assert_eq!(rendered.ip(), addr.ip().to_string().as_bytes());
            assert_eq!(rendered.port(), addr.port());
        }
    }

    #[test]
    fn milliseconds_have_three_decimals() {
        for (d, s) in [
            (Duration::ZERO, "0.000"),
            (Duration::from_micros(217), "0.217"),
            (Duration::from_nanos(217_499), "0.217"),
            (Duration::from_nanos(217_500), "0.218"),
            (Duration::from_millis(1500), "1500.000"),
            (Duration::from_micros(12_345_678), "12345.678"),
            // Rounding carries into the next second.
            (Duration::new(2, 999_999_600), "3000.000"),
            (Duration::from_micros(9_999_999), "9999.999"),
            (Duration::from_micros(10_000_000), "10000.000"),
            (Duration::from_micros(99_500), "99.500"),
        ] {
            assert_eq!(text(|o| push_millis(o, d)), s);
        }
    }
}
