//! Judging a response the way the upstream assertion helpers do.

use serde_json::Value;

use crate::corpus::ExpectedStatus;
use crate::script::Check;

/// Statuses that mean "this route or feature is not there" rather than "the hub refused the call";
/// they do not satisfy an inverted (must-be-refused) lifecycle step.
const ABSENT_ROUTE_STATUSES: [u16; 3] = [404, 405, 501];

/// What one case must produce.
pub struct Expectation<'a> {
    pub status: &'a ExpectedStatus,
    pub text: Option<&'a Value>,
    pub check: Check,
    /// The executor passes the step only if the script's assertion fails (see `script::is_inverted`).
    pub inverted: bool,
}

impl Expectation<'_> {
    pub fn describe(&self) -> String {
        let status = if self.inverted {
            format!(
                "status NOT {} (a refusal; {:?} do not count)",
                self.status, ABSENT_ROUTE_STATUSES
            )
        } else {
            format!("status {}", self.status)
        };
        match self.text.filter(|t| python_truthy(t)) {
            None => status,
            Some(Value::String(s))
                if self.check == Check::DeploymentStatus && self.status.accepts(200) =>
            {
                format!("{status}, body.status == {s:?}")
            }
            Some(Value::String(s)) => format!("{status}, body contains {s:?}"),
            Some(json) => format!("{status}, body == {json}"),
        }
    }

    /// Returns the reasons the response fails; empty means it passes.
    pub fn problems(&self, status: u16, body: &str) -> Vec<String> {
        if self.inverted {
            return if self.status.accepts(status) || ABSENT_ROUTE_STATUSES.contains(&status) {
                vec![format!(
                    "status {status} is not a refusal of the premature call"
                )]
            } else {
                Vec::new()
            };
        }
        let mut problems = Vec::new();
        if !self.status.accepts(status) {
            problems.push(format!("status: expected {}, got {status}", self.status));
        }
        // the helpers test `if responseText:`, so empty strings, lists and objects check nothing
        let Some(text) = self.text.filter(|t| python_truthy(t)) else {
            return problems;
        };
        match text {
            Value::String(wanted)
                if self.check == Check::DeploymentStatus && self.status.accepts(200) =>
            {
                let got = serde_json::from_str::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("status").cloned());
                match got {
                    Some(Value::String(got)) if &got == wanted => {}
                    other => {
                        problems.push(format!("body.status: expected {wanted:?}, got {other:?}"))
                    }
                }
            }
            Value::String(wanted) => {
                if !body.contains(wanted.as_str()) {
                    problems.push(format!("body does not contain {wanted:?}"));
                }
            }
            json => match serde_json::from_str::<Value>(body) {
                Ok(got) if python_json_eq(json, &got) => {}
                Ok(_) => problems.push("body differs from the expected JSON".to_owned()),
                Err(e) => problems.push(format!("body is not JSON ({e})")),
            },
        }
        problems
    }
}

/// Python's truth value of a decoded JSON value.
pub fn python_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// `==` between the dicts/lists `json.loads` yields: object key order is irrelevant, list order is
/// not, and `1 == 1.0`.
pub fn python_json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(l, r)| python_json_eq(l, r))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| python_json_eq(v, w)))
        }
        // Python: True == 1, but the corpus never mixes booleans and numbers
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn standard<'a>(status: &'a ExpectedStatus, text: Option<&'a Value>) -> Expectation<'a> {
        Expectation {
            status,
            text,
            check: Check::Standard,
            inverted: false,
        }
    }

    #[test]
    fn json_text_must_equal_ignoring_key_order_but_not_list_order() {
        let created = ExpectedStatus(vec![201]);
        let text = json!({"metadata": {"name": "p", "description": "d"}, "n": [1, 2]});
        let expect = standard(&created, Some(&text));
        assert!(
            expect
                .problems(
                    201,
                    r#"{"n":[1,2.0],"metadata":{"description":"d","name":"p"}}"#
                )
                .is_empty()
        );
        assert_eq!(
            expect
                .problems(
                    201,
                    r#"{"n":[2,1],"metadata":{"description":"d","name":"p"}}"#
                )
                .len(),
            1
        );
        assert_eq!(
            expect
                .problems(
                    201,
                    r#"{"n":[1,2],"metadata":{"description":"d","name":"p","status":"x"}}"#
                )
                .len(),
            1,
            "an extra field is a difference"
        );
        assert_eq!(expect.problems(200, "not json").len(), 2);
    }

    #[test]
    fn string_text_is_a_substring_and_empty_text_checks_nothing() {
        let conflict = ExpectedStatus(vec![409]);
        let text = json!("ClusterProvider already exists");
        let expect = standard(&conflict, Some(&text));
        assert!(
            expect
                .problems(409, "ClusterProvider already exists\n")
                .is_empty()
        );
        assert_eq!(expect.problems(409, "conflict").len(), 1);
        let empty = json!([]);
        assert!(
            standard(&conflict, Some(&empty))
                .problems(409, "anything")
                .is_empty()
        );
    }

    #[test]
    fn deployment_status_compares_the_status_field() {
        let ok = ExpectedStatus(vec![200]);
        let text = json!("Instantiated");
        let expect = Expectation {
            status: &ok,
            text: Some(&text),
            check: Check::DeploymentStatus,
            inverted: false,
        };
        assert!(
            expect
                .problems(200, r#"{"status":"Instantiated","apps":[]}"#)
                .is_empty()
        );
        assert_eq!(expect.problems(200, r#"{"state":"Instantiated"}"#).len(), 1);
    }

    #[test]
    fn inverted_steps_need_a_real_refusal() {
        let accepted = ExpectedStatus(vec![202, 200]);
        let expect = Expectation {
            status: &accepted,
            text: None,
            check: Check::Standard,
            inverted: true,
        };
        assert!(expect.problems(409, "").is_empty());
        assert!(expect.problems(500, "").is_empty());
        for status in [200, 202, 404, 405, 501] {
            assert_eq!(expect.problems(status, "").len(), 1, "status {status}");
        }
    }
}
