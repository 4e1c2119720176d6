//! Header rules: what a route (merged over its upstream's defaults) does to the
//! fields of the request it sends upstream and of the response it relays back.
//!
//! One direction's rules, in the order they apply (as Kong's request-transformer
//! orders remove before replace and add, and as Envoy removes before it adds):
//!
//! 1. `remove`: every field of that name is dropped;
//! 2. `set`: every field of that name is dropped, then one is appended with the
//!    rule's value (replace, or add when there was none: Envoy's
//!    `OVERWRITE_IF_EXISTS_OR_ADD`);
//! 3. `add`: a field is appended with the rule's value, the others of that name kept
//!    (Envoy's `APPEND_IF_EXISTS_OR_ADD`).
//!
//! A value that renders empty (an absent claim or trace ID) appends nothing; `set`
//! still drops what was there, so a client can never supply the value a rule meant
//! to set. A name appears once per direction (in one of set, add, remove).

use crate::http::FieldList;

use super::template::{FieldTemplate, RequestValues};

/// A route's rules for both directions.
#[derive(Debug, Default)]
pub struct HeaderRules {
    /// Applied to the request that goes upstream.
    pub request: FieldRules,
    /// Applied to the response the upstream sends back.
    pub response: FieldRules,
}

/// What one kind of rule does to a field name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Set,
    Add,
    Remove,
}

/// One rule as written: a lowercase field name, its kind, and (for set and add) its
/// compiled value.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    pub kind: RuleKind,
    pub value: Option<FieldTemplate>,
}

/// One direction's rules, compiled.
#[derive(Debug, Default)]
pub struct FieldRules {
    /// Lowercase names whose fields are dropped: those of `remove` and `set`.
    drop: Vec<Box<[u8]>>,
    /// Fields appended, in order: the `set` ones, then the `add` ones.
    append: Vec<(Box<[u8]>, FieldTemplate)>,
    /// `append` rendered once at load, when no value has a per-request placeholder.
    literal: Option<FieldList>,
}

impl FieldRules {
    /// Compiles a route's rules of one direction over its upstream's `defaults`: the
    /// route wins per name — a name the route mentions (in set, add or remove) takes
    /// none of the upstream's rules for that name; the upstream's other rules apply,
    /// first.
    pub fn merged(defaults: &[Rule], own: &[Rule]) -> FieldRules {
        let inherited = defaults
            .iter()
            .filter(|d| !own.iter().any(|r| r.name == d.name));
        let rules: Vec<&Rule> = inherited.chain(own).collect();
        let mut out = FieldRules::default();
        for kind in [RuleKind::Remove, RuleKind::Set, RuleKind::Add] {
            for r in rules.iter().filter(|r| r.kind == kind) {
                if kind != RuleKind::Add {
                    out.drop.push(r.name.as_bytes().into());
                }
                if let Some(value) = &r.value {
                    out.append.push((r.name.as_bytes().into(), value.clone()));
                }
            }
        }
        out.literal = out
            .append
            .iter()
            .map(|(name, t)| t.literal().map(|v| (name, v)))
            .collect::<Option<Vec<_>>>()
            .map(|fields| {
                let mut list = FieldList::new();
                for (name, value) in fields {
                    list.push(name, value);
                }
                list
            });
        out
    }

    /// No rule at all.
    pub fn is_empty(&self) -> bool {
        self.drop.is_empty() && self.append.is_empty()
    }

    /// Whether a field named `name` (any case) is dropped.
    pub fn drops(&self, name: &[u8]) -> bool {
        self.drop.iter().any(|d| d.eq_ignore_ascii_case(name))
    }

    /// The fields to append for one request: the list compiled at load when every
    /// value is literal (no allocation), else rendered into `scratch`.
    pub fn fields<'a>(
        &'a self,
        values: &RequestValues<'_>,
        scratch: &'a mut FieldList,
    ) -> &'a FieldList {
        if let Some(list) = &self.literal {
            return list;
        }
        self.append_to(values, scratch);
        scratch
    }

    /// Appends the fields rendered for one request to `out`.
    pub fn append_to(&self, values: &RequestValues<'_>, out: &mut FieldList) {
        if let Some(list) = &self.literal {
            out.extend(list);
            return;
        }
        let mut value = Vec::with_capacity(64);
        for (name, template) in &self.append {
            value.clear();
            if template.render(values, &mut value) {
                out.push(name, &value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::RouteValues;
    use super::*;

    fn rule(name: &str, kind: RuleKind, value: Option<&str>) -> Rule {
        let fixed = RouteValues {
            route: "r",
            upstream: "u",
        };
        Rule {
            name: name.to_string(),
            kind,
            value: value.map(|v| FieldTemplate::parse(v, fixed).unwrap()),
        }
    }

    fn values() -> RequestValues<'static> {
        RequestValues {
            request_id: "id-1",
            client_ip: "127.0.0.1".parse().unwrap(),
            caller: None,
            trace_id: None,
        }
    }

    fn listed(list: &FieldList) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn set_drops_and_appends_add_appends_remove_drops() {
        let rules = FieldRules::merged(
            &[],
            &[
                rule("x-add", RuleKind::Add, Some("a")),
                rule("x-set", RuleKind::Set, Some("s")),
                rule("x-gone", RuleKind::Remove, None),
            ],
        );
        assert!(rules.drops(b"X-Set") && rules.drops(b"x-gone"));
        assert!(!rules.drops(b"x-add"));
        let mut scratch = FieldList::new();
        // Set fields come before add fields; all literal: compiled once.
        assert_eq!(
            listed(rules.fields(&values(), &mut scratch)),
            [("x-set".into(), "s".into()), ("x-add".into(), "a".into())]
        );
        assert!(scratch.is_empty());
    }

    #[test]
    fn the_route_wins_per_name_over_its_upstream() {
        let upstream = [
            rule("x-env", RuleKind::Set, Some("prod")),
            rule("x-team", RuleKind::Set, Some("core")),
            rule("x-debug", RuleKind::Remove, None),
        ];
        let route = [
            rule("x-team", RuleKind::Add, Some("edge")),
            rule("x-debug", RuleKind::Set, Some("1")),
        ];
        let rules = FieldRules::merged(&upstream, &route);
        let mut scratch = FieldList::new();
        assert_eq!(
            listed(rules.fields(&values(), &mut scratch)),
            [
                ("x-env".into(), "prod".into()),
                ("x-debug".into(), "1".into()),
                ("x-team".into(), "edge".into())
            ]
        );
        // The route adds x-team: the upstream's set (which would drop) is gone.
        assert!(!rules.drops(b"x-team"));
        assert!(rules.drops(b"x-env") && rules.drops(b"x-debug"));
    }

    #[test]
    fn templated_values_render_per_request_and_empty_ones_are_skipped() {
        let rules = FieldRules::merged(
            &[],
            &[
                rule("x-id", RuleKind::Set, Some("{request_id}")),
                rule("x-user", RuleKind::Set, Some("{claim.sub}")),
            ],
        );
        let mut scratch = FieldList::new();
        assert_eq!(
            listed(rules.fields(&values(), &mut scratch)),
            [("x-id".into(), "id-1".into())]
        );
        // The client's x-user is still dropped.
        assert!(rules.drops(b"x-user"));
    }
}
