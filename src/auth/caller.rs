//! The verified caller: the token's claims and the identity headers rendered from
//! them once, so a cached token costs no JSON work on later requests.

use serde_json::Value;

use crate::http::FieldList;

use super::verify::Claims;

/// Who the caller is, as a verified token says.
pub struct Caller {
    pub claims: Claims,
    /// The fields of the provider's `claims_to_headers`, ready to append to the
    /// upstream request.
    pub identity_headers: FieldList,
    /// Unix seconds after which this verification may no longer be reused
    /// (`exp` + leeway); `None` = the token has no `exp`.
    pub valid_until: Option<u64>,
}

impl Caller {
    /// A claim as text: strings as they are, numbers and booleans printed, arrays of
    /// those joined with `,`. Objects and nulls have no text form.
    pub fn claim_text(&self, name: &str) -> Option<String> {
        self.claims.get(name).and_then(claim_text)
    }
}

/// Renders `claims_to_headers` for `claims`. A claim that is absent or has no text
/// form sets no header; a value with control characters refuses the token (it
/// could otherwise split the upstream request head).
pub fn render_identity_headers(
    claims: &Claims,
    claims_to_headers: &[(String, String)],
) -> Result<FieldList, &'static str> {
    let mut out = FieldList::new();
    for (claim, header) in claims_to_headers {
        let Some(text) = claims.get(claim).and_then(claim_text) else {
            continue;
        };
        if text.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err("a claim holds characters not allowed in a header");
        }
        out.push(header.as_bytes(), text.trim().as_bytes());
    }
    Ok(out)
}

fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|i| match i {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    other => claim_text(other),
                })
                .collect();
            parts.map(|p| p.join(","))
        }
        Value::Object(_) | Value::Null => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_claims() {
        let claims: Claims = serde_json::from_str(
            r#"{"sub": "u1", "n": 5, "roles": ["a", "b"], "obj": {"x": 1}, "bad": "a\r\nx-evil: 1"}"#,
        )
        .unwrap();
        let map = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let h = render_identity_headers(
            &claims,
            &map(&[
                ("sub", "x-user-id"),
                ("n", "x-n"),
                ("roles", "x-roles"),
                ("obj", "x-obj"),
                ("missing", "x-m"),
            ]),
        )
        .unwrap();
        let fields: Vec<(&[u8], &[u8])> = h.iter().collect();
        assert_eq!(
            fields,
            vec![
                (&b"x-user-id"[..], &b"u1"[..]),
                (b"x-n", b"5"),
                (b"x-roles", b"a,b")
            ]
        );
        assert!(render_identity_headers(&claims, &map(&[("bad", "x-bad")])).is_err());
    }
}
