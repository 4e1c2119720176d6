//! The requests a run sends: request `n` goes to URL `n % urls` and carries header-file
//! line `n % lines`, so one run can cycle through many API keys or tokens.
//!
//! Everything that does not change per request is pre-built: a head prefix per URL
//! (request line, `Host`, `Connection: close` with `--new-connection`, the `-H`
//! headers) and a suffix (`Content-Length` and the body). Writing request `n` is three copies into the connection's reused buffer.

use super::target::Target;

/// One `Name: value` header, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    /// Parses `Name: value`: the name an RFC 9110 token, the value free of CR, LF and
    /// NUL, surrounding blanks trimmed.
    pub fn parse(text: &str) -> Result<Header, String> {
        let Some((name, value)) = text.split_once(':') else {
            return Err(format!("bad header {text:?}: want \"Name: value\""));
        };
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(format!("bad header name {name:?} in {text:?}"));
        }
        let value = value.trim_matches([' ', '\t']);
        if value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
            return Err(format!("bad header value in {text:?}: CR, LF or NUL"));
        }
        Ok(Header {
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(self.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// RFC 9110 `tchar`.
pub fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What varies and what does not between the requests of a run.
#[derive(Debug, Clone)]
pub struct RequestSet {
    /// Per URL: request line, Host (unless `-H Host` is given), `Connection: close`
    /// (with `--new-connection`, unless `-H Connection` is given) and the `-H` headers.
    prefixes: Vec<Vec<u8>>,
    /// Header-file lines, each `Name: value\r\n`; may be empty.
    cycled: Vec<Vec<u8>>,
    /// `Content-Length` when there is a body, the empty line, the body.
    suffix: Vec<u8>,
    head_method: bool,
}

impl RequestSet {
    pub fn new(
        method: &str,
        targets: &[Target],
        headers: &[Header],
        cycled: &[Header],
        body: Option<&[u8]>,
        close: bool,
    ) -> RequestSet {
        let given = |name: &str| {
            let named = |h: &Header| h.name.eq_ignore_ascii_case(name);
            headers.iter().any(named) || cycled.iter().any(named)
        };
        let own_host = given("host");
        let close = close && !given("connection");
        let prefixes = targets
            .iter()
            .map(|target| {
                let mut p = Vec::new();
                p.extend_from_slice(method.as_bytes());
                p.push(b' ');
                p.extend_from_slice(target.path.as_bytes());
                p.extend_from_slice(b" HTTP/1.1\r\n");
                if !own_host {
                    p.extend_from_slice(b"Host: ");
                    p.extend_from_slice(target.authority.as_bytes());
                    p.extend_from_slice(b"\r\n");
                }
                if close {
                    p.extend_from_slice(b"Connection: close\r\n");
                }
                for h in headers {
                    h.write(&mut p);
                }
                p
            })
            .collect();
        let cycled = cycled
            .iter()
            .map(|h| {
                let mut line = Vec::new();
                h.write(&mut line);
                line
            })
            .collect();
        let mut suffix = Vec::new();
        if let Some(body) = body {
            suffix.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        suffix.extend_from_slice(b"\r\n");
        suffix.extend_from_slice(body.unwrap_or_default());
        RequestSet {
            prefixes,
            cycled,
            suffix,
            head_method: method == "HEAD",
        }
    }

    /// Replaces `out` with request number `n`.
    pub fn write(&self, n: u64, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(pick(&self.prefixes, n));
        if !self.cycled.is_empty() {
            out.extend_from_slice(pick(&self.cycled, n));
        }
        out.extend_from_slice(&self.suffix);
    }

    /// HEAD responses carry no body whatever their length headers say.
    pub fn is_head(&self) -> bool {
        self.head_method
    }
}

fn pick(list: &[Vec<u8>], n: u64) -> &[u8] {
    // `list` is never empty here and `n % len < len`, so the index is in range.
    let len = list.len() as u64;
    &list[(n % len) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target::parse(url).unwrap()
    }

    #[test]
    fn headers() {
        assert_eq!(
            Header::parse("X-Api-Key:  k1 "),
            Ok(Header {
                name: "X-Api-Key".into(),
                value: "k1".into()
            })
        );
        assert!(Header::parse("Authorization: Bearer a.b.c").is_ok());
        assert!(Header::parse("no colon").is_err());
        assert!(Header::parse("Bad Name: v").is_err());
        assert!(Header::parse(": v").is_err());
        assert!(Header::parse("X: a\r\nInjected: b").is_err());
    }

    #[test]
    fn cycles_urls_and_header_lines() {
        let targets = [
            target("http://127.0.0.1:1/a"),
            target("http://127.0.0.1:1/b?x"),
        ];
        let fixed = [Header::parse("Accept: */*").unwrap()];
        let keys: Vec<Header> = (0..3)
            .map(|i| Header::parse(&format!("X-Key: k{i}")).unwrap())
            .collect();
        let set = RequestSet::new("GET", &targets, &fixed, &keys, None, false);
        let mut out = Vec::new();
        set.write(0, &mut out);
        assert_eq!(
            out,
            b"GET /a HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: */*\r\nX-Key: k0\r\n\r\n"
        );
        set.write(5, &mut out);
        assert_eq!(
            out,
            b"GET /b?x HTTP/1.1\r\nHost: 127.0.0.1:1\r\nAccept: */*\r\nX-Key: k2\r\n\r\n"
        );
    }

    #[test]
    fn body_and_own_host() {
        let host = [Header::parse("host: example.test").unwrap()];
        let set = RequestSet::new(
            "POST",
            &[target("http://127.0.0.1:1/")],
            &host,
            &[],
            Some(b"hello"),
            false,
        );
        let mut out = Vec::new();
        set.write(7, &mut out);
        assert_eq!(
            out,
            b"POST / HTTP/1.1\r\nhost: example.test\r\nContent-Length: 5\r\n\r\nhello"
        );
        assert!(!set.is_head());
    }

    #[test]
    fn new_connection_asks_the_server_to_close() {
        let targets = [target("http://127.0.0.1:1/")];
        let set = RequestSet::new("GET", &targets, &[], &[], None, true);
        let mut out = Vec::new();
        set.write(0, &mut out);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: close\r\n\r\n"
        );
        let own = [Header::parse("Connection: keep-alive").unwrap()];
        let set = RequestSet::new("GET", &targets, &own, &[], None, true);
        set.write(0, &mut out);
        assert_eq!(
            out,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\nConnection: keep-alive\r\n\r\n"
        );
    }
}
