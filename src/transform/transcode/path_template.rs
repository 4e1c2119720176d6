//! The path templates of `google.api.http` rules (google/api/http.proto, "Path
//! template syntax"), parsed once at load and matched against normalized request
//! paths:
//!
//! ```text
//! Template = "/" Segments [ Verb ] ;
//! Segments = Segment { "/" Segment } ;
//! Segment  = "*" | "**" | LITERAL | Variable ;
//! Variable = "{" FieldPath [ "=" Segments ] "}" ;
//! FieldPath = IDENT { "." IDENT } ;
//! Verb     = ":" LITERAL ;
//! ```
//!
//! `{id}` is `{id=*}`: one segment. `**` matches any number of segments and must
//! be the last segment. A variable's value is its segments joined by `/`,
//! percent-decoded (the gateway's normalization has already refused `%2F`).

use std::fmt;

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathTemplate {
    segments: Vec<Segment>,
    /// `:verb` after the last segment, without the colon.
    verb: Option<String>,
    variables: Vec<Variable>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// `*`: exactly one segment.
    One,
    /// `**`: any number of segments (last only).
    Any,
}

/// A variable: the field it sets (dotted path) and the segments it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub field_path: Vec<String>,
    first: usize,
    /// One past the last segment; the last variable of a template ending in `**`
    /// runs to the end of the path.
    end: usize,
}

/// Why a template does not parse (said at load, by `portico check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError(String);

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PathTemplate {
    /// Parses `template` (e.g. `/v1/{name=shelves/*/books/*}:publish`).
    pub fn parse(template: &str) -> Result<PathTemplate, TemplateError> {
        let bad = |why: &str| TemplateError(format!("path template \"{template}\": {why}"));
        let rest = template
            .strip_prefix('/')
            .ok_or_else(|| bad("must start with /"))?;
        let mut parser = Parser {
            text: rest.as_bytes(),
            at: 0,
            segments: Vec::new(),
            variables: Vec::new(),
        };
        parser.segments(false).map_err(|why| bad(&why))?;
        let verb = match parser.peek() {
            None => None,
            Some(b':') => {
                let v = &rest[parser.at + 1..];
                if v.is_empty() || !v.bytes().all(is_literal_byte) {
                    return Err(bad("the verb after ':' must be a literal"));
                }
                Some(v.to_string())
            }
            Some(c) => return Err(bad(&format!("unexpected '{}'", c as char))),
        };
        let segments = parser.segments;
        if let Some(i) = segments.iter().position(|s| *s == Segment::Any) {
            if i + 1 != segments.len() {
                return Err(bad("'**' must be the last segment"));
            }
        }
        Ok(PathTemplate {
            segments,
            verb,
            variables: parser.variables,
        })
    }

    /// The template's variables, in order.
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// How specific the template is, to try the most specific first: literal
    /// segments, then a verb, count for it; `**` against it.
    pub fn specificity(&self) -> (usize, bool, bool) {
        let literals = self
            .segments
            .iter()
            .filter(|s| matches!(s, Segment::Literal(_)))
            .count();
        let open = self.segments.last() == Some(&Segment::Any);
        (literals, self.verb.is_some(), !open)
    }

    /// Matches a normalized request `path`: the values of the variables, in the
    /// order of [`variables`](Self::variables), percent-decoded; `None` when the
    /// path does not match or a value is not UTF-8.
    pub fn matches(&self, path: &str) -> Option<Vec<String>> {
        let mut path = path.strip_prefix('/')?;
        if let Some(verb) = &self.verb {
            let cut = path.len().checked_sub(verb.len() + 1)?;
            if path.get(cut..cut + 1) != Some(":") || path.get(cut + 1..) != Some(verb.as_str()) {
                return None;
            }
            path = &path[..cut];
        }
        let parts: Vec<&str> = if path.is_empty() {
            Vec::new()
        } else {
            path.split('/').collect()
        };
        let open = self.segments.last() == Some(&Segment::Any);
        let fixed = self.segments.len() - usize::from(open);
        if parts.len() < fixed || (!open && parts.len() != fixed) {
            return None;
        }
        for (segment, part) in self.segments.iter().zip(&parts) {
            match segment {
                Segment::Literal(l) if l != part => return None,
                Segment::One if part.is_empty() => return None,
                _ => {}
            }
        }
        self.variables
            .iter()
            .map(|v| {
                let end = if open && v.end == self.segments.len() {
                    parts.len()
                } else {
                    v.end
                };
                percent_decode(&parts.get(v.first..end)?.join("/"))
            })
            .collect()
    }
}

struct Parser<'t> {
    text: &'t [u8],
    at: usize,
    segments: Vec<Segment>,
    variables: Vec<Variable>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    /// Segments up to the end, a ':' (verb) or, inside a variable, a '}'.
    fn segments(&mut self, in_variable: bool) -> Result<(), String> {
        loop {
            self.segment(in_variable)?;
            match self.peek() {
                Some(b'/') => self.at += 1,
                _ => return Ok(()),
            }
        }
    }

    fn segment(&mut self, in_variable: bool) -> Result<(), String> {
        let start = self.at;
        match self.peek() {
            Some(b'{') if !in_variable => return self.variable(),
            Some(b'{') => return Err("variables cannot nest".into()),
            Some(b'*') => {
                self.at += 1;
                if self.peek() == Some(b'*') {
                    self.at += 1;
                    self.segments.push(Segment::Any);
                } else {
                    self.segments.push(Segment::One);
                }
                return Ok(());
            }
            _ => {}
        }
        while self.peek().is_some_and(is_literal_byte) {
            self.at += 1;
        }
        if self.at == start {
            return Err("empty segment".into());
        }
        let literal = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        self.segments.push(Segment::Literal(literal));
        Ok(())
    }

    fn variable(&mut self) -> Result<(), String> {
        self.at += 1;
        let start = self.at;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        {
            self.at += 1;
        }
        let name = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        let field_path: Vec<String> = name.split('.').map(str::to_string).collect();
        if field_path.iter().any(String::is_empty) {
            return Err(format!("variable \"{name}\" is not a field path"));
        }
        let first = self.segments.len();
        match self.peek() {
            Some(b'=') => {
                self.at += 1;
                self.segments(true)?;
            }
            _ => self.segments.push(Segment::One),
        }
        if self.peek() != Some(b'}') {
            return Err(format!("variable \"{name}\" is not closed with '}}'"));
        }
        self.at += 1;
        self.variables.push(Variable {
            field_path,
            first,
            end: self.segments.len(),
        });
        Ok(())
    }
}

/// Bytes of a literal segment: RFC 3986 unreserved, sub-delims, '@' and '%'
/// (escapes), never '/', ':', '{', '}', '*' or '='.
fn is_literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()+,;@%".contains(&b)
}

/// `%XX` escapes decoded; `None` for a malformed escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &str, path: &str) -> Option<Vec<String>> {
        PathTemplate::parse(t).unwrap().matches(path)
    }

    #[test]
    fn simple_variables() {
        assert_eq!(
            values("/v1/users/{id}", "/v1/users/42"),
            Some(vec!["42".into()])
        );
        assert_eq!(values("/v1/users/{id}", "/v1/users/42/x"), None);
        assert_eq!(values("/v1/users/{id}", "/v1/users/"), None);
        assert_eq!(values("/v1/users/{id}", "/v1/users"), None);
        assert_eq!(values("/v1/users/{id}", "/v1/user/1"), None);
        assert_eq!(values("/v1/users", "/v1/users"), Some(vec![]));
        assert_eq!(
            values("/v1/users/{user.id}", "/v1/users/a%20b"),
            Some(vec!["a b".into()])
        );
        let t = PathTemplate::parse("/v1/{a.b}/{c}").unwrap();
        assert_eq!(t.variables()[0].field_path, vec!["a", "b"]);
    }

    #[test]
    fn multi_segment_variables_and_verbs() {
        let t = "/v1/{name=shelves/*/books/*}";
        assert_eq!(
            values(t, "/v1/shelves/1/books/2"),
            Some(vec!["shelves/1/books/2".into()])
        );
        assert_eq!(values(t, "/v1/shelves/1/book/2"), None);
        let t = "/v1/{name=files/**}:download";
        assert_eq!(
            values(t, "/v1/files/a/b/c:download"),
            Some(vec!["files/a/b/c".into()])
        );
        // `**` matches zero segments too.
        assert_eq!(values(t, "/v1/files:download"), Some(vec!["files".into()]));
        assert_eq!(values(t, "/v1/file:download"), None);
        assert_eq!(values(t, "/v1/files/a"), None);
        assert_eq!(values("/v1/{name=**}", "/v1/x/y"), Some(vec!["x/y".into()]));
        assert_eq!(
            values("/v1/items/{id}:cancel", "/v1/items/7:cancel"),
            Some(vec!["7".into()])
        );
        // Without a verb in the template, a colon is part of the value.
        assert_eq!(
            values("/v1/items/{id}", "/v1/items/a:b"),
            Some(vec!["a:b".into()])
        );
    }

    #[test]
    fn refused_templates() {
        for t in [
            "v1/x",
            "/v1/**/x",
            "/v1/{a={b}}",
            "/v1/{a",
            "/v1//x",
            "/v1/{}",
            "/v1/x:",
            "/v1/{a.}",
        ] {
            assert!(PathTemplate::parse(t).is_err(), "{t}");
        }
    }

    #[test]
    fn specificity_prefers_literals() {
        let a = PathTemplate::parse("/v1/users/me").unwrap();
        let b = PathTemplate::parse("/v1/users/{id}").unwrap();
        assert!(a.specificity() > b.specificity());
    }
}
