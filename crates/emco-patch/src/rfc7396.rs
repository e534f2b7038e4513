//! RFC 7396 JSON Merge Patch, with the null pruning of the library kubectl and the API server use.

use serde_json::{Map, Value};

/// Applies an RFC 7396 JSON Merge Patch to a copy of `doc`: objects merge recursively, a `null`
/// value deletes the key, anything else (lists included) replaces.
///
/// Where RFC 7396 leaves `null`s inside newly added values alone, this follows
/// `kubectl patch --type merge` (evanphx/json-patch v4): when a value is added under a new key, or
/// replaces a non-object, the `null` members of the objects inside it are dropped (also inside
/// lists; `null` list items stay). A value that replaces an object is taken as is.
/// A non-object `patch` replaces the whole document (kubectl rejects a top-level `null` patch;
/// here it yields `null`, as the RFC says).
pub fn merge_patch(doc: &Value, patch: &Value) -> Value {
    match (doc, patch) {
        (Value::Object(doc), Value::Object(patch)) => {
            let mut merged = doc.clone();
            merge_members(&mut merged, patch);
            Value::Object(merged)
        }
        (_, Value::Object(patch)) => {
            let mut replacement = Value::Object(patch.clone());
            prune_null_members(&mut replacement);
            replacement
        }
        (_, other) => other.clone(),
    }
}

fn merge_members(doc: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, patch_value) in patch {
        if patch_value.is_null() {
            doc.shift_remove(key);
            continue;
        }
        match (doc.get_mut(key), patch_value) {
            (Some(Value::Object(current)), Value::Object(patch_members)) => {
                merge_members(current, patch_members);
            }
            // Replacing an object: the library kubectl uses takes the value unpruned.
            (Some(current @ Value::Object(_)), other) => *current = other.clone(),
            (Some(current), other) => {
                let mut replacement = other.clone();
                prune_null_members(&mut replacement);
                *current = replacement;
            }
            (None, other) => {
                let mut added = other.clone();
                prune_null_members(&mut added);
                doc.insert(key.clone(), added);
            }
        }
    }
}

/// Drops `null` members of every object inside `value`; `null` list items are kept.
pub(crate) fn prune_null_members(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|_, member| !member.is_null());
            members.values_mut().for_each(prune_null_members);
        }
        Value::Array(items) => items.iter_mut().for_each(prune_null_members),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merges_maps_deletes_nulls_and_replaces_lists() {
        let doc = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x"});
        let patch = json!({"a": {"c": null, "d": 3}, "l": [3], "s": null});
        assert_eq!(
            merge_patch(&doc, &patch),
            json!({"a": {"b": 1, "d": 3}, "l": [3]})
        );
    }

    #[test]
    fn prunes_nulls_inside_added_values_like_kubectl() {
        let doc = json!({"obj": {"x": 1}, "list": [1], "s": "v"});
        let patch = json!({
            "new": {"a": null, "b": {"c": null, "d": 1}, "l": [{"k": null}, null]},
            "obj": [{"k": null}],
            "list": [{"k": null}],
            "s": {"q": null, "r": 1},
        });
        assert_eq!(
            merge_patch(&doc, &patch),
            json!({
                "new": {"b": {"d": 1}, "l": [{}, null]},
                "obj": [{"k": null}],
                "list": [{}],
                "s": {"r": 1},
            })
        );
    }

    #[test]
    fn non_object_patch_replaces_the_document() {
        assert_eq!(merge_patch(&json!({"a": 1}), &json!([1])), json!([1]));
        assert_eq!(
            merge_patch(&json!([1]), &json!({"a": null, "b": 2})),
            json!({"b": 2})
        );
    }
}
