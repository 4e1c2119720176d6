//! Shaping one part's answer before the merge, in this order: `select` (a JSON
//! pointer, RFC 6901), then `allow` or `deny` (top-level keys kept or dropped), then
//! `rename`. Keys keep the order the service wrote them in.

use serde_json::{Map, Value};

use crate::config::{KeyFilter, Shape};

/// Why an answer could not be shaped (the part fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShapeError {
    /// `select` points at nothing in this answer.
    SelectMissing,
    /// `allow`, `deny` or `rename` (or a flat merge) needs an object.
    NotAnObject,
}

impl ShapeError {
    pub fn message(self) -> &'static str {
        match self {
            ShapeError::SelectMissing => "select points at nothing in the answer",
            ShapeError::NotAnObject => "the answer is not a JSON object",
        }
    }
}

/// Applies `shape` to `value`.
pub fn shape(mut value: Value, shape: &Shape) -> Result<Value, ShapeError> {
    if shape.is_identity() {
        return Ok(value);
    }
    if let Some(pointer) = &shape.select {
        value = value
            .pointer_mut(pointer)
            .map(Value::take)
            .ok_or(ShapeError::SelectMissing)?;
    }
    if matches!(shape.keys, KeyFilter::All) && shape.rename.is_empty() {
        return Ok(value);
    }
    let Value::Object(map) = value else {
        return Err(ShapeError::NotAnObject);
    };
    let kept = map.into_iter().filter(|(k, _)| match &shape.keys {
        KeyFilter::All => true,
        KeyFilter::Allow(allowed) => allowed.contains(k),
        KeyFilter::Deny(denied) => !denied.contains(k),
    });
    // Renamed keys stay where they were; a new name that was already there
    // takes the renamed value (at the first place).
    let renamed: Map<String, Value> = kept
        .map(
            |(k, v)| match shape.rename.iter().find(|(from, _)| *from == k) {
                Some((_, to)) => (to.clone(), v),
                None => (k, v),
            },
        )
        .collect();
    Ok(Value::Object(renamed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shaped(value: Value, s: Shape) -> Result<String, ShapeError> {
        shape(value, &s).map(|v| v.to_string())
    }

    #[test]
    fn select_then_allow_then_rename_keep_the_order() {
        let answer = json!({"data": {"z": 1, "a": 2, "m": 3}, "meta": {}});
        let s = Shape {
            select: Some("/data".into()),
            keys: KeyFilter::Allow(vec!["m".into(), "z".into()]),
            rename: vec![("z".into(), "zed".into())],
        };
        assert_eq!(shaped(answer, s).unwrap(), r#"{"zed":1,"m":3}"#);
    }

    #[test]
    fn deny_drops_keys() {
        let s = Shape {
            keys: KeyFilter::Deny(vec!["secret".into()]),
            ..Shape::default()
        };
        assert_eq!(
            shaped(json!({"a": 1, "secret": 2}), s).unwrap(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn select_alone_takes_any_value() {
        let s = Shape {
            select: Some("/items/1".into()),
            ..Shape::default()
        };
        assert_eq!(shaped(json!({"items": [5, 6]}), s).unwrap(), "6");
    }

    #[test]
    fn failures() {
        let s = Shape {
            select: Some("/nope".into()),
            ..Shape::default()
        };
        assert_eq!(shaped(json!({}), s), Err(ShapeError::SelectMissing));
        let s = Shape {
            keys: KeyFilter::Allow(vec!["a".into()]),
            ..Shape::default()
        };
        assert_eq!(shaped(json!([1]), s), Err(ShapeError::NotAnObject));
    }
}
