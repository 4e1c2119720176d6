//! The failure policy and the merge, over the parts' outcomes in declared order:
//! whether a failed part fails the call, and the one JSON document the parts make
//! otherwise. Nothing here depends on the order the answers arrived in.

use serde_json::{Map, Value};

use crate::config::{ComposePlan, Merge, OnPartFailure};

use super::failure::{FailureKind, PartFailure};

/// Whether the failure of part `index` fails the whole call: always with
/// `on_part_failure = "fail"`, and for a required part with `"partial"`. Client
/// failures (its body could not be read) always do.
pub fn decides(plan: &ComposePlan, index: usize, failure: &PartFailure) -> bool {
    failure.kind == FailureKind::Client
        || plan.on_part_failure == OnPartFailure::Fail
        || plan.parts.get(index).is_none_or(|p| p.required)
}

/// What the call answers.
#[derive(Debug)]
pub enum Answer {
    /// The merged document, and the parts (indexes, declared order) that failed
    /// and were replaced by their fallback or left out.
    Merged { body: Value, missing: Vec<usize> },
    /// Part `part` failed and that fails the call.
    Failed { part: usize, failure: PartFailure },
}

/// Merges the outcomes (one per part, in declared order) as `plan` says: the first
/// deciding failure in declared order fails the call; otherwise parts merge
/// `nested` (each under its name) or `flat` (top-level keys in declared order, a
/// later part's value winning a collision), failed optional parts replaced by their
/// fallback or left out.
pub fn merge(plan: &ComposePlan, outcomes: Vec<Result<Value, PartFailure>>) -> Answer {
    if let Some((part, failure)) = outcomes.iter().enumerate().find_map(|(i, o)| {
        // A part cancelled because another had failed is not the reason.
        let f = o.as_ref().err()?;
        (f.kind != FailureKind::Cancelled && decides(plan, i, f)).then_some((i, f))
    }) {
        return Answer::Failed {
            part,
            failure: failure.clone(),
        };
    }
    let mut body = Map::new();
    let mut missing = Vec::new();
    for (i, (part, outcome)) in plan.parts.iter().zip(outcomes).enumerate() {
        let value = match outcome {
            Ok(value) => value,
            Err(_) => {
                missing.push(i);
                match &part.fallback {
                    Some(fallback) => fallback.clone(),
                    None => continue,
                }
            }
        };
        match (plan.merge, value) {
            (Merge::Nested, value) => {
                body.insert(part.name.clone(), value);
            }
            (Merge::Flat, Value::Object(map)) => {
                for (k, v) in map {
                    body.insert(k, v);
                }
            }
            // The part checked that a flat answer is an object, and the config
            // that a flat fallback is.
            (Merge::Flat, _) => {}
        }
    }
    Answer::Merged {
        body: Value::Object(body),
        missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ComposePart, On4xx, Shape, Template};
    use serde_json::json;
    use std::time::Duration;

    fn part(name: &str, required: bool, fallback: Option<Value>) -> ComposePart {
        ComposePart {
            name: name.into(),
            upstream: 0,
            method: "GET".into(),
            path: Template::default(),
            query: Vec::new(),
            headers: Vec::new(),
            timeout: None,
            required,
            fallback,
            shape: Shape::default(),
            forward_body: false,
            on_4xx: On4xx::Fail,
        }
    }

    fn plan(merge: Merge, policy: OnPartFailure, parts: Vec<ComposePart>) -> ComposePlan {
        ComposePlan {
            merge,
            on_part_failure: policy,
            deadline: Duration::from_secs(1),
            max_part_bytes: 1024,
            max_response_bytes: 1024,
            parts,
            slot: 0,
        }
    }

    fn failed() -> Result<Value, PartFailure> {
        Err(PartFailure::new(FailureKind::Status, "x"))
    }

    fn merged(answer: Answer) -> (String, Vec<usize>) {
        match answer {
            Answer::Merged { body, missing } => (body.to_string(), missing),
            Answer::Failed { part, .. } => panic!("part {part} failed the call"),
        }
    }

    #[test]
    fn nested_keeps_declared_order() {
        let p = plan(
            Merge::Nested,
            OnPartFailure::Fail,
            vec![part("z", true, None), part("a", true, None)],
        );
        let (body, missing) = merged(merge(&p, vec![Ok(json!(1)), Ok(json!({"k": 2}))]));
        assert_eq!(body, r#"{"z":1,"a":{"k":2}}"#);
        assert!(missing.is_empty());
    }

    #[test]
    fn flat_later_part_wins_at_the_first_place() {
        let p = plan(
            Merge::Flat,
            OnPartFailure::Fail,
            vec![part("one", true, None), part("two", true, None)],
        );
        let outcomes = vec![Ok(json!({"id": 1, "a": 1})), Ok(json!({"b": 2, "id": 2}))];
        assert_eq!(merged(merge(&p, outcomes)).0, r#"{"id":2,"a":1,"b":2}"#);
    }

    #[test]
    fn partial_uses_fallbacks_and_leaves_out_the_rest() {
        let p = plan(
            Merge::Nested,
            OnPartFailure::Partial,
            vec![
                part("user", true, None),
                part("recs", false, Some(json!([]))),
                part("ads", false, None),
            ],
        );
        let (body, missing) = merged(merge(&p, vec![Ok(json!({"id": 7})), failed(), failed()]));
        assert_eq!(body, r#"{"user":{"id":7},"recs":[]}"#);
        assert_eq!(missing, [1, 2]);
    }

    #[test]
    fn the_first_deciding_failure_in_declared_order_fails_the_call() {
        let p = plan(
            Merge::Nested,
            OnPartFailure::Partial,
            vec![
                part("opt", false, None),
                part("a", true, None),
                part("b", true, None),
            ],
        );
        match merge(&p, vec![failed(), Ok(json!(1)), failed()]) {
            Answer::Failed { part, .. } => assert_eq!(part, 2),
            other => panic!("{other:?}"),
        }
        let p = plan(
            Merge::Nested,
            OnPartFailure::Fail,
            vec![part("a", true, None), part("b", true, None)],
        );
        assert!(matches!(
            merge(&p, vec![Ok(json!(1)), failed()]),
            Answer::Failed { part: 1, .. }
        ));
    }
}
