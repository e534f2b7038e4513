//! Two-way strategic merge patch computation, like apimachinery's `CreateTwoWayMergePatch`:
//! the patch that, applied with [`crate::strategic_merge_patch`], turns `original` into
//! `modified`.

use crate::schema::child_meta;
use crate::{GroupVersionKind, PatchError, PatchSchema, PatchStrategy, ValueShape};
use serde_json::{Map, Value};
use std::cmp::Ordering;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Computes the strategic merge patch from `original` to `modified` (both objects of `kind`),
/// as apimachinery's `CreateTwoWayMergePatch` does: changed and added fields, `null` for removed
/// map keys, `$patch: delete` items and `$setElementOrder/<field>` for merge lists of maps,
/// `$deleteFromPrimitiveList/<field>` and `$setElementOrder/<field>` for merge lists of scalars,
/// `$retainKeys` for fields with the `retainKeys` strategy, whole values for other lists and for
/// maps with the `replace` strategy (those are always sent, changed or not).
///
/// Client-side `kubectl apply` builds its patch from a three-way comparison (last applied,
/// local file, live object); this is the two-way part only.
pub fn create_two_way_merge_patch(
    original: &Value,
    modified: &Value,
    schema: &dyn PatchSchema,
    kind: &GroupVersionKind,
) -> Result<Value, PatchError> {
    let Value::Object(original) = original else {
        return Err(PatchError::NotAnObject { what: "original" });
    };
    let Value::Object(modified) = modified else {
        return Err(PatchError::NotAnObject { what: "modified" });
    };
    let differ = Differ { schema };
    differ
        .diff_maps(original, modified, &schema.root_shape(kind), false)
        .map(Value::Object)
}

/// How Go's `fmt` prints a decoded JSON scalar (`%v`), which apimachinery sorts by.
fn go_format(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => "<nil>".to_owned(),
        Value::Number(number) if number.is_i64() => number.to_string(),
        Value::Number(number) => match number.as_f64() {
            Some(float) if float.fract() == 0.0 && float.abs() < 1e21 => format!("{float:.0}"),
            Some(float) => float.to_string(),
            None => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// The merge-key values of a list-of-maps item, printed and joined, for sorting and matching.
fn merge_key_text(item: &Map<String, Value>, keys: &[String]) -> String {
    keys.iter()
        .map(|key| item.get(key).map_or_else(|| "<nil>".to_owned(), go_format))
        .collect::<Vec<_>>()
        .join("\u{0}")
}

fn same_json_type(left: &Value, right: &Value) -> bool {
    std::mem::discriminant(left) == std::mem::discriminant(right)
        && (!left.is_number() || left.is_i64() == right.is_i64())
}

fn as_maps<'a>(
    items: &'a [Value],
    keys: &[String],
) -> Result<Vec<&'a Map<String, Value>>, PatchError> {
    items
        .iter()
        .map(|item| match item {
            Value::Object(members) if keys.iter().any(|key| members.contains_key(key)) => {
                Ok(members)
            }
            other => Err(PatchError::MissingMergeKey {
                item: other.to_string(),
                merge_key: keys.join(","),
            }),
        })
        .collect()
}

/// Only the merge keys of an item (what `$setElementOrder` and `$patch: delete` items carry).
fn merge_key_members(item: &Map<String, Value>, keys: &[String]) -> Map<String, Value> {
    keys.iter()
        .filter_map(|key| item.get(key).map(|value| (key.clone(), value.clone())))
        .collect()
}

struct Differ<'a> {
    schema: &'a dyn PatchSchema,
}

/// What a merge-list diff contributes: the patch list, scalar deletions, and the order list.
struct ListDiff {
    patch: Vec<Value>,
    deletions: Vec<Value>,
    order: Option<Vec<Value>>,
}

impl Differ<'_> {
    /// apimachinery's `diffMaps` with `SetElementOrder` on.
    fn diff_maps(
        &self,
        original: &Map<String, Value>,
        modified: &Map<String, Value>,
        shape: &ValueShape,
        build_retain_keys: bool,
    ) -> Result<Map<String, Value>, PatchError> {
        let mut patch = Map::new();
        let mut retain_keys: Vec<Value> = Vec::new();
        for (key, modified_value) in modified {
            if build_retain_keys && !modified_value.is_null() {
                retain_keys.push(Value::String(key.clone()));
            }
            let Some(original_value) = original.get(key) else {
                patch.insert(key.clone(), modified_value.clone());
                continue;
            };
            if key == DIRECTIVE {
                if original_value != modified_value {
                    patch.insert(key.clone(), modified_value.clone());
                }
                continue;
            }
            if !same_json_type(original_value, modified_value) {
                patch.insert(key.clone(), modified_value.clone());
                continue;
            }
            match (original_value, modified_value) {
                (Value::Object(original_map), Value::Object(modified_map)) => {
                    let meta = child_meta(self.schema, shape, key);
                    if meta.strategy == PatchStrategy::Replace {
                        patch.insert(key.clone(), modified_value.clone());
                    } else {
                        let nested = self.diff_maps(
                            original_map,
                            modified_map,
                            &meta.shape,
                            meta.retain_keys,
                        )?;
                        if !nested.is_empty() {
                            patch.insert(key.clone(), Value::Object(nested));
                        }
                    }
                }
                (Value::Array(original_list), Value::Array(modified_list)) => {
                    let meta = child_meta(self.schema, shape, key);
                    if meta.merges_list() {
                        let item_shape = match &meta.shape {
                            ValueShape::List(items) => (**items).clone(),
                            _ => ValueShape::Untyped,
                        };
                        let diff = self.diff_lists(
                            original_list,
                            modified_list,
                            &item_shape,
                            &meta.merge_keys,
                            meta.retain_keys,
                        )?;
                        if !diff.patch.is_empty() {
                            patch.insert(key.clone(), Value::Array(diff.patch));
                        }
                        if !diff.deletions.is_empty() {
                            patch.insert(
                                format!("{DELETE_FROM_PRIMITIVE_LIST}/{key}"),
                                Value::Array(diff.deletions),
                            );
                        }
                        if let Some(order) = diff.order.filter(|order| !order.is_empty()) {
                            patch.insert(format!("{SET_ELEMENT_ORDER}/{key}"), Value::Array(order));
                        }
                    } else if original_value != modified_value {
                        patch.insert(key.clone(), modified_value.clone());
                    }
                }
                _ => {
                    if original_value != modified_value {
                        patch.insert(key.clone(), modified_value.clone());
                    }
                }
            }
        }
        for key in original.keys() {
            if !modified.contains_key(key) {
                patch.insert(key.clone(), Value::Null);
            }
        }
        let original_has_more = original
            .iter()
            .any(|(key, value)| !value.is_null() && !modified.contains_key(key));
        if !retain_keys.is_empty() && (!patch.is_empty() || original_has_more) {
            retain_keys.sort_by_key(go_format);
            patch.insert(RETAIN_KEYS.to_owned(), Value::Array(retain_keys));
        }
        Ok(patch)
    }

    /// apimachinery's `diffLists` for a list with merge strategy.
    fn diff_lists(
        &self,
        original: &[Value],
        modified: &[Value],
        item_shape: &ValueShape,
        keys: &[String],
        build_retain_keys: bool,
    ) -> Result<ListDiff, PatchError> {
        if original.is_empty() {
            return Ok(ListDiff {
                patch: modified.to_vec(),
                deletions: Vec::new(),
                order: None,
            });
        }
        let first = original.iter().chain(modified).next();
        if let Some(bad) = original
            .iter()
            .chain(modified)
            .find(|item| first.is_some_and(|first| !same_json_type(first, item)))
        {
            return Err(PatchError::MixedListTypes(format!(
                "{bad} among {}",
                Value::Array(original.to_vec())
            )));
        }
        match first {
            Some(Value::Object(_)) => {
                if keys.is_empty() {
                    return Err(PatchError::NoMergeKey {
                        field: "list".to_owned(),
                    });
                }
                self.diff_lists_of_maps(original, modified, item_shape, keys, build_retain_keys)
            }
            Some(Value::Array(_)) => Err(PatchError::ListOfLists),
            _ => Ok(diff_lists_of_scalars(original, modified)),
        }
    }

    fn diff_lists_of_maps(
        &self,
        original: &[Value],
        modified: &[Value],
        item_shape: &ValueShape,
        keys: &[String],
        build_retain_keys: bool,
    ) -> Result<ListDiff, PatchError> {
        let mut original_sorted = as_maps(original, keys)?;
        let mut modified_sorted = as_maps(modified, keys)?;
        original_sorted.sort_by_key(|item| merge_key_text(item, keys));
        modified_sorted.sort_by_key(|item| merge_key_text(item, keys));

        let mut changes: Vec<Value> = Vec::new();
        let mut deletions: Vec<Value> = Vec::new();
        let (mut at_original, mut at_modified) = (0, 0);
        loop {
            let step = match (
                original_sorted.get(at_original),
                modified_sorted.get(at_modified),
            ) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(o), Some(m)) => merge_key_text(o, keys).cmp(&merge_key_text(m, keys)),
            };
            match step {
                Ordering::Equal => {
                    let (o, m) = (original_sorted[at_original], modified_sorted[at_modified]);
                    let mut nested = self.diff_maps(o, m, item_shape, build_retain_keys)?;
                    if !nested.is_empty() {
                        nested.extend(merge_key_members(m, keys));
                        changes.push(Value::Object(nested));
                    }
                    at_original += 1;
                    at_modified += 1;
                }
                Ordering::Greater => {
                    changes.push(Value::Object(modified_sorted[at_modified].clone()));
                    at_modified += 1;
                }
                Ordering::Less => {
                    let mut delete = merge_key_members(original_sorted[at_original], keys);
                    delete.insert(DIRECTIVE.to_owned(), Value::String("delete".to_owned()));
                    deletions.push(Value::Object(delete));
                    at_original += 1;
                }
            }
        }
        // Changes in the modified list's order, then the deletions.
        let position = |item: &Value| {
            item.as_object().and_then(|item| {
                let text = merge_key_text(item, keys);
                modified.iter().position(|candidate| {
                    candidate
                        .as_object()
                        .is_some_and(|candidate| merge_key_text(candidate, keys) == text)
                })
            })
        };
        changes.sort_by_key(|item| position(item));
        let order_same = original.len() == modified.len()
            && original.iter().zip(modified).all(|(o, m)| match (o, m) {
                (Value::Object(o), Value::Object(m)) => {
                    merge_key_text(o, keys) == merge_key_text(m, keys)
                }
                _ => false,
            });
        changes.extend(deletions);
        let order = (!changes.is_empty() || !order_same).then(|| {
            modified
                .iter()
                .filter_map(Value::as_object)
                .map(|item| Value::Object(merge_key_members(item, keys)))
                .collect()
        });
        Ok(ListDiff {
            patch: changes,
            deletions: Vec::new(),
            order,
        })
    }
}

/// apimachinery's `diffListsOfScalars`: additions (in modified order), deletions (sorted,
/// deduplicated), and the modified list as the order when anything differs.
fn diff_lists_of_scalars(original: &[Value], modified: &[Value]) -> ListDiff {
    let mut original_sorted: Vec<&Value> = original.iter().collect();
    let mut modified_sorted: Vec<&Value> = modified.iter().collect();
    original_sorted.sort_by_key(|value| go_format(value));
    modified_sorted.sort_by_key(|value| go_format(value));
    let mut additions: Vec<Value> = Vec::new();
    let mut deletions: Vec<Value> = Vec::new();
    let (mut at_original, mut at_modified) = (0, 0);
    loop {
        let step = match (
            original_sorted.get(at_original),
            modified_sorted.get(at_modified),
        ) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(o), Some(m)) => go_format(o).cmp(&go_format(m)),
        };
        match step {
            Ordering::Equal => {
                at_original += 1;
                at_modified += 1;
            }
            Ordering::Less => {
                let deleted = original_sorted[at_original];
                if !deletions.contains(deleted) {
                    deletions.push(deleted.clone());
                }
                at_original += 1;
            }
            Ordering::Greater => {
                additions.push(modified_sorted[at_modified].clone());
                at_modified += 1;
            }
        }
    }
    additions.sort_by_key(|item| modified.iter().position(|candidate| candidate == item));
    let order = (!deletions.is_empty() || original != modified).then(|| modified.to_vec());
    ListDiff {
        patch: additions,
        deletions,
        order,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltinSchema, strategic_merge_patch};
    use serde_json::json;

    fn deployment() -> GroupVersionKind {
        GroupVersionKind::new("apps", "v1", "Deployment")
    }

    fn round_trip(original: Value, modified: Value) -> Value {
        let patch = create_two_way_merge_patch(&original, &modified, &BuiltinSchema, &deployment())
            .unwrap();
        let patched =
            strategic_merge_patch(&original, &patch, &BuiltinSchema, &deployment()).unwrap();
        assert_eq!(patched, modified, "patch {patch}");
        patch
    }

    #[test]
    fn maps_send_changes_and_nulls() {
        let patch = round_trip(
            json!({"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"replicas": 1}}),
            json!({"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"replicas": 1}}),
        );
        assert_eq!(
            patch,
            json!({"metadata": {"labels": {"c": "3", "b": null}}})
        );
    }

    #[test]
    fn merge_lists_send_changes_deletions_and_order() {
        let containers =
            |list: Value| json!({"spec": {"template": {"spec": {"containers": list}}}});
        let patch = round_trip(
            containers(
                json!([{"name": "a", "image": "1"}, {"name": "b", "image": "1"}, {"name": "c", "image": "1"}]),
            ),
            containers(
                json!([{"name": "c", "image": "1"}, {"name": "n", "image": "2"}, {"name": "a", "image": "2"}]),
            ),
        );
        assert_eq!(
            patch["spec"]["template"]["spec"],
            json!({
                "containers": [{"name": "n", "image": "2"}, {"image": "2", "name": "a"}, {"name": "b", "$patch": "delete"}],
                "$setElementOrder/containers": [{"name": "c"}, {"name": "n"}, {"name": "a"}]
            })
        );
    }

    #[test]
    fn scalar_merge_lists_send_additions_deletions_and_order() {
        let patch = round_trip(
            json!({"metadata": {"finalizers": ["a", "b", "c"]}}),
            json!({"metadata": {"finalizers": ["c", "d", "a"]}}),
        );
        assert_eq!(
            patch["metadata"],
            json!({
                "finalizers": ["d"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "$setElementOrder/finalizers": ["c", "d", "a"]
            })
        );
    }

    #[test]
    fn retain_keys_fields_list_their_keys() {
        let patch = round_trip(
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"type": "Recreate"}}}),
        );
        assert_eq!(
            patch["spec"]["strategy"],
            json!({"type": "Recreate", "rollingUpdate": null, "$retainKeys": ["type"]})
        );
    }

    #[test]
    fn unchanged_objects_give_an_empty_patch() {
        let object = json!({"metadata": {"name": "d", "finalizers": ["x"]}, "spec": {"template": {"spec": {"containers": [{"name": "a"}]}}}});
        assert_eq!(round_trip(object.clone(), object), json!({}));
    }
}
