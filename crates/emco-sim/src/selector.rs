//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, `exists`, `!exists`, `>`/`<`) and field
//! selectors (`=`, `==`, `!=` on dotted paths such as `metadata.name`), parsed from the query
//! string and matched against objects.

use serde_json::{Map, Value};

use crate::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum LabelOp {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

/// A parsed label selector: all requirements must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    requirements: Vec<(String, LabelOp)>,
}

impl LabelSelector {
    /// Parses `app=web,tier in (a,b),!legacy`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for clause in split_top_level(text) {
            let clause = clause.trim();
            if clause.is_empty() {
                continue;
            }
            requirements.push(parse_requirement(clause).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: found '{clause}', expected: label selector"
                ))
            })?);
        }
        Ok(Self { requirements })
    }

    /// True when no requirement is given (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether labels satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|(key, op)| {
            let value = labels
                .and_then(|labels| labels.get(key))
                .and_then(Value::as_str);
            match op {
                LabelOp::Equals(wanted) => value == Some(wanted.as_str()),
                LabelOp::NotEquals(unwanted) => value != Some(unwanted.as_str()),
                LabelOp::In(values) => {
                    value.is_some_and(|value| values.iter().any(|wanted| wanted == value))
                }
                LabelOp::NotIn(values) => {
                    value.is_none_or(|value| values.iter().all(|unwanted| unwanted != value))
                }
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
                LabelOp::GreaterThan(bound) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *bound),
                LabelOp::LessThan(bound) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *bound),
            }
        })
    }

    /// Whether an object's `metadata.labels` satisfy the selector.
    pub fn matches_object(&self, object: &Value) -> bool {
        self.is_empty()
            || self.matches(
                object
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object),
            )
    }
}

/// Splits on commas outside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (index, character) in text.char_indices() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 317
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
}

fn valid_label_value(value: &str) -> bool {
    value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn parse_value_set(text: &str) -> Option<Vec<String>> {
    let inner = text.trim().strip_prefix('(')?.strip_suffix(')')?;
    let values: Vec<String> = inner
        .split(',')
        .map(|value| value.trim().to_owned())
        .collect();
    values
        .iter()
        .all(|value| valid_label_value(value))
        .then_some(values)
}

fn parse_requirement(clause: &str) -> Option<(String, LabelOp)> {
    if let Some(key) = clause.strip_prefix('!') {
        let key = key.trim();
        return valid_label_key(key).then(|| (key.to_owned(), LabelOp::DoesNotExist));
    }
    for (operator, build) in [
        ("==", LabelOp::Equals as fn(String) -> LabelOp),
        ("!=", LabelOp::NotEquals),
        ("=", LabelOp::Equals),
    ] {
        if let Some((key, value)) = clause.split_once(operator) {
            let (key, value) = (key.trim(), value.trim());
            return (valid_label_key(key) && valid_label_value(value))
                .then(|| (key.to_owned(), build(value.to_owned())));
        }
    }
    for (operator, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = clause.split_once(operator) {
            let bound = value.trim().parse::<i64>().ok()?;
            let key = key.trim();
            let op = if greater {
                LabelOp::GreaterThan(bound)
            } else {
                LabelOp::LessThan(bound)
            };
            return valid_label_key(key).then(|| (key.to_owned(), op));
        }
    }
    let mut words = clause.splitn(2, char::is_whitespace);
    let key = words.next()?.trim();
    let rest = words.next().map(str::trim).unwrap_or_default();
    if !valid_label_key(key) {
        return None;
    }
    if rest.is_empty() {
        return Some((key.to_owned(), LabelOp::Exists));
    }
    if let Some(values) = rest.strip_prefix("notin") {
        return Some((key.to_owned(), LabelOp::NotIn(parse_value_set(values)?)));
    }
    if let Some(values) = rest.strip_prefix("in") {
        return Some((key.to_owned(), LabelOp::In(parse_value_set(values)?)));
    }
    None
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma separated.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    requirements: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses `metadata.name=web,metadata.namespace!=kube-system`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for clause in text
            .split(',')
            .map(str::trim)
            .filter(|clause| !clause.is_empty())
        {
            let (path, equal, value) = if let Some((path, value)) = clause.split_once("!=") {
                (path, false, value)
            } else if let Some((path, value)) = clause.split_once("==") {
                (path, true, value)
            } else if let Some((path, value)) = clause.split_once('=') {
                (path, true, value)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{text}'; can't understand '{clause}'"
                )));
            };
            requirements.push((path.trim().to_owned(), equal, value.trim().to_owned()));
        }
        Ok(Self { requirements })
    }

    /// True when no requirement is given.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// The object name this selector pins (`metadata.name=x`), if it does.
    pub fn pinned_name(&self) -> Option<&str> {
        self.requirements
            .iter()
            .find(|(path, equal, _)| *equal && path == "metadata.name")
            .map(|(_, _, value)| value.as_str())
    }

    /// Whether an object satisfies every requirement (missing fields read as empty strings).
    pub fn matches(&self, object: &Value) -> bool {
        self.requirements.iter().all(|(path, equal, wanted)| {
            let mut current = Some(object);
            for segment in path.split('.') {
                current = current.and_then(|value| value.get(segment));
            }
            let actual = match current {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *wanted) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn label_operators() {
        let app_web = labels(json!({"app": "web", "tier": "front", "replicas": "3"}));
        let cases = [
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app!=db", true),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier in (back)", false),
            ("replicas>2", true),
            ("replicas<2", false),
            ("", true),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).unwrap();
            assert_eq!(selector.matches(Some(&app_web)), expected, "{text}");
        }
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("app=we b").is_err());
    }

    #[test]
    fn field_selectors() {
        let object = json!({"metadata": {"name": "web", "namespace": "default"}, "status": {"phase": "Running"}});
        assert!(
            FieldSelector::parse("metadata.name=web")
                .unwrap()
                .matches(&object)
        );
        assert!(
            FieldSelector::parse("metadata.namespace!=kube-system,status.phase==Running")
                .unwrap()
                .matches(&object)
        );
        assert!(
            !FieldSelector::parse("metadata.name=db")
                .unwrap()
                .matches(&object)
        );
        assert_eq!(
            FieldSelector::parse("metadata.name=web")
                .unwrap()
                .pinned_name(),
            Some("web")
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
