//! RFC 6902 JSON Patch, via the `json-patch` crate.

use crate::PatchError;
use serde_json::Value;

/// Applies an RFC 6902 JSON Patch (`patch` is the JSON list of operations) to a copy of `doc`.
///
/// All-or-nothing: on error `doc` is untouched (it is borrowed) and nothing is returned. Matches
/// `kubectl patch --type json` for the standard operations; kubectl's library additionally accepts
/// negative array indices (`/list/-1`), which are rejected here as RFC 6902 requires.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|error| PatchError::InvalidJsonPatch(error.to_string()))?;
    let mut patched = doc.clone();
    json_patch::patch(&mut patched, &operations)
        .map_err(|error| PatchError::JsonPatchFailed(error.to_string()))?;
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_every_operation_kind() {
        let doc = json!({"a": {"b": [1, 2]}, "c": "x"});
        let patch = json!([
            {"op": "add", "path": "/a/b/-", "value": 3},
            {"op": "add", "path": "/a/b/0", "value": 0},
            {"op": "remove", "path": "/a/b/1"},
            {"op": "replace", "path": "/c", "value": "y"},
            {"op": "copy", "from": "/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "test", "path": "/e", "value": "y"},
        ]);
        let patched = json_patch(&doc, &patch).unwrap();
        assert_eq!(patched, json!({"a": {"b": [0, 2, 3]}, "c": "y", "e": "y"}));
    }

    #[test]
    fn failed_test_or_missing_path_is_an_error_and_leaves_nothing_half_done() {
        let doc = json!({"a": 1});
        let failed_test = json!([{"op": "replace", "path": "/a", "value": 2}, {"op": "test", "path": "/a", "value": 3}]);
        assert!(matches!(
            json_patch(&doc, &failed_test),
            Err(PatchError::JsonPatchFailed(_))
        ));
        let missing = json!([{"op": "remove", "path": "/nope"}]);
        assert!(matches!(
            json_patch(&doc, &missing),
            Err(PatchError::JsonPatchFailed(_))
        ));
        let not_a_patch = json!({"op": "add"});
        assert!(matches!(
            json_patch(&doc, &not_a_patch),
            Err(PatchError::InvalidJsonPatch(_))
        ));
    }
}
