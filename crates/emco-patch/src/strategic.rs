//! Kubernetes strategic merge patch, behaving like apimachinery's `strategicpatch` package
//! (`StrategicMergePatch`, as used by `kubectl patch --type strategic` and the API server).
//!
//! Rules, in the order they apply to each map of the patch:
//! * `$patch: replace` makes the map replace the current one; `$patch: delete` empties it;
//!   any other `$patch` value is an error.
//! * `$retainKeys: [..]` removes current keys not listed (and every patch key must be listed).
//! * `$setElementOrder/<field>: [..]` merges `<field>` and then orders it as listed, keeping the
//!   current relative order of the items the list does not mention.
//! * `null` deletes a key; `$deleteFromPrimitiveList/<field>: [..]` removes scalars from a list
//!   (applied after the map's other keys, so a scalar both added and deleted ends up deleted).
//! * A key missing from the current map takes the patch value, without its `null` members and
//!   without maps/list items carrying `$patch`.
//! * Maps merge recursively unless the schema says `replace`; lists are replaced unless the
//!   schema says `merge`: lists of maps then merge item by item on the merge key (items with
//!   `$patch: delete` remove, `$patch: replace` replaces the list), lists of scalars become a
//!   union. Merged lists are ordered like apimachinery orders them: the items the patch names,
//!   in patch order, interleaved with the other current items, in current order; a current item
//!   goes before a patch item only when both were in the current list in that order, so items
//!   the patch adds come before the current items not yet placed.

use crate::rfc7396::prune_null_members;
use crate::schema::child_meta;
use crate::{FieldMeta, GroupVersionKind, PatchError, PatchSchema, PatchStrategy, ValueShape};
use serde_json::{Map, Value};

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";

/// Applies a strategic merge patch to a copy of `doc`, an object of kind `kind` whose field
/// metadata `schema` provides (use [`crate::BuiltinSchema`] for Kubernetes' built-in kinds).
///
/// The result equals `kubectl patch --local --type strategic` for built-in kinds (see the
/// crate's oracle tests); key order follows `doc`, new keys appended. Differences from kubectl:
/// fields its Go types do not have are merged as untyped (kubectl fails when both sides hold a
/// map or list there), `null` items in merged lists are an error (kubectl crashes), and kinds
/// unknown to `schema` are patched as untyped (kubectl refuses them locally).
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    schema: &dyn PatchSchema,
    kind: &GroupVersionKind,
) -> Result<Value, PatchError> {
    let Value::Object(doc) = doc else {
        return Err(PatchError::NotAnObject { what: "document" });
    };
    let patch = match patch {
        Value::Object(patch) => patch.clone(),
        // A JSON `null` patch decodes to an empty map in apimachinery.
        Value::Null => Map::new(),
        _ => return Err(PatchError::NotAnObject { what: "patch" }),
    };
    let engine = Engine { schema };
    let root = schema.root_shape(kind);
    engine
        .merge_map(doc.clone(), patch, &root)
        .map(Value::Object)
}

/// The JSON types as Go's decoder distinguishes them (integers and floats differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GoType {
    Null,
    Bool,
    Int,
    Float,
    String,
    List,
    Map,
}

fn go_type(value: &Value) -> GoType {
    match value {
        Value::Null => GoType::Null,
        Value::Bool(_) => GoType::Bool,
        Value::Number(number) if number.is_i64() => GoType::Int,
        Value::Number(_) => GoType::Float,
        Value::String(_) => GoType::String,
        Value::Array(_) => GoType::List,
        Value::Object(_) => GoType::Map,
    }
}

fn go_type_name(value: &Value) -> &'static str {
    match go_type(value) {
        GoType::Null => "null",
        GoType::Bool => "a boolean",
        GoType::Int | GoType::Float => "a number",
        GoType::String => "a string",
        GoType::List => "a list",
        GoType::Map => "a map",
    }
}

/// Go's `==` on decoded JSON scalars: same Go type and value (`1` and `1.0` differ).
fn go_equal(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Number(l), Value::Number(r)) => {
            if go_type(left) != go_type(right) {
                return false;
            }
            match (l.as_i64(), r.as_i64()) {
                (Some(l), Some(r)) => l == r,
                _ => l.as_f64() == r.as_f64(),
            }
        }
        _ => left == right,
    }
}

/// The merge-key values of a list item, one per key (`None` where the item lacks the key).
fn merge_key_values<'a>(item: &'a Value, keys: &[String]) -> Vec<Option<&'a Value>> {
    let members = item.as_object();
    keys.iter()
        .map(|key| members.and_then(|members| members.get(key)))
        .collect()
}

fn has_merge_key(item: &Value, keys: &[String]) -> bool {
    merge_key_values(item, keys).iter().any(Option::is_some)
}

/// Two list items are the same element of a merge list: every key present in both with equal
/// values, or absent from both, and at least one key present.
fn same_element(left: &Value, right: &Value, keys: &[String]) -> bool {
    let (left, right) = (merge_key_values(left, keys), merge_key_values(right, keys));
    let mut any_present = false;
    for (l, r) in left.iter().zip(&right) {
        match (l, r) {
            (Some(l), Some(r)) if go_equal(l, r) => any_present = true,
            (None, None) => {}
            _ => return false,
        }
    }
    any_present
}

fn missing_merge_key(item: &Value, keys: &[String]) -> PatchError {
    PatchError::MissingMergeKey {
        item: item.to_string(),
        merge_key: keys.join(","),
    }
}

/// Drops maps (and list items) that carry a `$patch` directive; `None` if `value` itself does.
fn remove_directives(value: Value) -> Option<Value> {
    match value {
        Value::Object(members) => {
            if members.contains_key(DIRECTIVE) {
                return None;
            }
            let members = members
                .into_iter()
                .filter_map(|(key, member)| remove_directives(member).map(|member| (key, member)))
                .collect();
            Some(Value::Object(members))
        }
        Value::Array(items) => Some(Value::Array(
            items.into_iter().filter_map(remove_directives).collect(),
        )),
        other => Some(other),
    }
}

/// A patch value for a key the current map lacks (or holds with another type): its `null`
/// members go, and so do the parts carrying `$patch`.
fn new_value(mut patch_value: Value) -> Option<Value> {
    prune_null_members(&mut patch_value);
    remove_directives(patch_value)
}

/// The field name after `prefix/` in a parallel-list directive key.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Result<&'a str, PatchError> {
    match key.split_once('/') {
        Some((head, field)) if head == prefix => Ok(field),
        _ => Err(PatchError::InvalidDirective(format!(
            "invalid patch format of {prefix} key {key:?}"
        ))),
    }
}

/// The Go type shared by all items of the lists (error for mixed types, lists of lists, `null`
/// items, or no items at all).
fn element_type(lists: &[&[Value]], field: &str) -> Result<GoType, PatchError> {
    let mut found: Option<GoType> = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let item_type = go_type(item);
        match found {
            None if item_type == GoType::Null => {
                return Err(PatchError::NullListItem(field.to_owned()));
            }
            None if item_type == GoType::List => return Err(PatchError::ListOfLists),
            None => found = Some(item_type),
            Some(previous) if previous != item_type => {
                let all: Vec<Value> = lists
                    .iter()
                    .map(|list| Value::Array(list.to_vec()))
                    .collect();
                return Err(PatchError::MixedListTypes(Value::Array(all).to_string()));
            }
            Some(_) => {}
        }
    }
    found.ok_or_else(|| {
        PatchError::InvalidDirective(format!("no elements in any of the lists for {field}"))
    })
}

/// Position of `item` in `order`: by merge key for lists of maps, by value otherwise.
fn index_in(order: &[Value], item: &Value, keys: &[String], element: GoType) -> Option<usize> {
    if element == GoType::Map {
        let wanted = merge_key_values(item, keys);
        order.iter().position(|candidate| {
            let values = merge_key_values(candidate, keys);
            values.len() == wanted.len()
                && values.iter().zip(&wanted).all(|pair| match pair {
                    (Some(l), Some(r)) => go_equal(l, r),
                    (None, None) => true,
                    _ => false,
                })
        })
    } else {
        order.iter().position(|candidate| go_equal(candidate, item))
    }
}

/// Stable-sorts `items` by their position in `order` (apimachinery's `normalizeSliceOrder`):
/// an insertion sort whose "less" also holds whenever either item is missing from `order`,
/// exactly as the Go comparison does.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    keys: &[String],
    element: GoType,
) -> Result<Vec<Value>, PatchError> {
    let (mut items, to_delete): (Vec<Value>, Vec<Value>) = if element == GoType::Map {
        if let Some(item) = items
            .iter()
            .chain(order)
            .find(|item| !has_merge_key(item, keys))
        {
            return Err(missing_merge_key(item, keys));
        }
        items
            .into_iter()
            .partition(|item| item.get(DIRECTIVE).and_then(Value::as_str) != Some("delete"))
    } else {
        (items, Vec::new())
    };
    let mut positions: Vec<Option<usize>> = items
        .iter()
        .map(|item| index_in(order, item, keys, element))
        .collect();
    let less = |left: Option<usize>, right: Option<usize>| match (left, right) {
        (Some(left), Some(right)) => left < right,
        _ => true,
    };
    for unsorted in 1..items.len() {
        let mut at = unsorted;
        while at > 0 && less(positions[at], positions[at - 1]) {
            items.swap(at, at - 1);
            positions.swap(at, at - 1);
            at -= 1;
        }
    }
    items.extend(to_delete);
    Ok(items)
}

/// apimachinery's `normalizeElementOrder`: patch items in `patch_order`, server-only items in
/// `server_order`, then interleaved: a server-only item goes first only when both it and the
/// next patch item are in `server_order` and it comes earlier there.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    keys: &[String],
    element: GoType,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, keys, element)?;
    let server_only = sort_by_order(server_only, server_order, keys, element)?;
    let mut merged = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut server_only = server_only.into_iter().peekable();
    let mut patch_items = patch_items.into_iter().peekable();
    loop {
        let take_server_item = match (server_only.peek(), patch_items.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(server_item), Some(patch_item)) => {
                match (
                    index_in(server_order, server_item, keys, element),
                    index_in(server_order, patch_item, keys, element),
                ) {
                    (Some(server_at), Some(patch_at)) => server_at < patch_at,
                    _ => false,
                }
            }
        };
        let next = if take_server_item {
            server_only.next()
        } else {
            patch_items.next()
        };
        merged.extend(next);
    }
    Ok(merged)
}

/// Splits `merged` into the items `by` mentions (by merge key, or by value without keys) and
/// the others.
fn partition_by_presence(
    merged: Vec<Value>,
    by: &[Value],
    keys: &[String],
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in merged {
        let mentioned = if keys.is_empty() {
            by.iter().any(|candidate| go_equal(candidate, &item))
        } else {
            if !item.is_object() || !has_merge_key(&item, keys) {
                return Err(missing_merge_key(&item, keys));
            }
            by.iter()
                .any(|candidate| same_element(candidate, &item, keys))
        };
        if mentioned {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

struct Engine<'a> {
    schema: &'a dyn PatchSchema,
}

impl Engine<'_> {
    /// apimachinery's `mergeMap` with `MergeParallelList` and `IgnoreUnmatchedNulls` set.
    fn merge_map(
        &self,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        shape: &ValueShape,
    ) -> Result<Map<String, Value>, PatchError> {
        if let Some(directive) = patch.get(DIRECTIVE) {
            return match directive.as_str() {
                Some("replace") => {
                    patch.shift_remove(DIRECTIVE);
                    Ok(patch)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(PatchError::UnknownDirective {
                    directive: directive.to_string(),
                    context: Value::Object(patch.clone()).to_string(),
                }),
            };
        }
        apply_retain_keys(&mut original, &mut patch)?;
        self.apply_set_element_orders(&mut original, &mut patch, shape)?;

        // Go iterates the patch map in random order; when a scalar is both added to a list and
        // listed in `$deleteFromPrimitiveList` for it, kubectl's result varies between runs.
        // Applying the deletion lists last makes deletion win, every time.
        let (deletions, others): (Vec<_>, Vec<_>) = patch
            .into_iter()
            .partition(|(key, _)| key.starts_with(DELETE_FROM_PRIMITIVE_LIST));
        for (key, patch_value) in others.into_iter().chain(deletions) {
            let (field, is_delete_list) = if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                (
                    directive_field(&key, DELETE_FROM_PRIMITIVE_LIST)?.to_owned(),
                    true,
                )
            } else {
                (key, false)
            };
            if patch_value.is_null() {
                original.shift_remove(&field);
                continue;
            }
            let Some(slot) = original.get_mut(&field) else {
                if !is_delete_list && let Some(value) = new_value(patch_value) {
                    original.insert(field, value);
                }
                continue;
            };
            let current = std::mem::take(slot);
            match self.merge_value(current, patch_value, shape, &field, is_delete_list)? {
                Some(merged) => *slot = merged,
                None => {
                    original.shift_remove(&field);
                }
            }
        }
        Ok(original)
    }

    /// Merges one existing field; `None` removes it.
    fn merge_value(
        &self,
        current: Value,
        patch_value: Value,
        parent: &ValueShape,
        field: &str,
        is_delete_list: bool,
    ) -> Result<Option<Value>, PatchError> {
        if go_type(&current) != go_type(&patch_value) {
            return Ok(if is_delete_list {
                Some(current)
            } else {
                new_value(patch_value)
            });
        }
        match (current, patch_value) {
            (Value::Object(current), Value::Object(patch_map)) => {
                let meta = child_meta(self.schema, parent, field);
                if meta.strategy == PatchStrategy::Replace {
                    Ok(Some(Value::Object(patch_map)))
                } else {
                    Ok(Some(Value::Object(self.merge_map(
                        current,
                        patch_map,
                        &meta.shape,
                    )?)))
                }
            }
            (Value::Array(current), Value::Array(patch_list)) => {
                let meta = child_meta(self.schema, parent, field);
                if meta.merges_list() || is_delete_list {
                    Ok(Some(Value::Array(self.merge_list(
                        current,
                        patch_list,
                        &meta,
                        field,
                        is_delete_list,
                    )?)))
                } else {
                    Ok(Some(Value::Array(patch_list)))
                }
            }
            (_, scalar) => Ok(Some(scalar)),
        }
    }

    /// apimachinery's `mergeSlice` for a list with merge strategy (or a deletion list).
    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        meta: &FieldMeta,
        field: &str,
        is_delete_list: bool,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let element = element_type(&[&original, &patch], field)?;
        let keys = &meta.merge_keys;
        let (merged, server_order, patch_order) = if element != GoType::Map {
            if is_delete_list {
                return Ok(original
                    .into_iter()
                    .filter(|item| !patch.iter().any(|deleted| go_equal(deleted, item)))
                    .collect());
            }
            let mut union: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for item in original.iter().chain(&patch) {
                if !union.iter().any(|seen| go_equal(seen, item)) {
                    union.push(item.clone());
                }
            }
            (union, original, patch)
        } else {
            if keys.is_empty() {
                return Err(PatchError::NoMergeKey {
                    field: field.to_owned(),
                });
            }
            let (original, patch) = apply_list_directives(original, patch, keys)?;
            let merged = self.merge_items(original.clone(), &patch, keys, meta)?;
            (merged, original, patch)
        };
        let (patch_items, server_only) = partition_by_presence(merged, &patch_order, keys)?;
        normalize_element_order(
            patch_items,
            server_only,
            &patch_order,
            &server_order,
            keys,
            element,
        )
    }

    /// Merges each patch item into the current item with the same merge key, or appends it.
    fn merge_items(
        &self,
        mut original: Vec<Value>,
        patch: &[Value],
        keys: &[String],
        meta: &FieldMeta,
    ) -> Result<Vec<Value>, PatchError> {
        let item_shape = match &meta.shape {
            ValueShape::List(items) => (**items).clone(),
            _ => ValueShape::Untyped,
        };
        for item in patch {
            if !has_merge_key(item, keys) {
                return Err(missing_merge_key(item, keys));
            }
            let found = original
                .iter()
                .position(|candidate| same_element(candidate, item, keys));
            match (found, item) {
                (Some(at), Value::Object(item_patch)) => {
                    let current = match std::mem::take(&mut original[at]) {
                        Value::Object(current) => current,
                        _ => Map::new(),
                    };
                    let merged = self.merge_map(current, item_patch.clone(), &item_shape)?;
                    original[at] = Value::Object(merged);
                }
                _ => original.push(item.clone()),
            }
        }
        Ok(original)
    }

    /// apimachinery's `mergePatchIntoOriginal`: handles every `$setElementOrder/<field>` of the
    /// patch map, merging `<field>` and ordering it; removes both keys from the patch.
    fn apply_set_element_orders(
        &self,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        shape: &ValueShape,
    ) -> Result<(), PatchError> {
        let directive_keys: Vec<String> = patch
            .keys()
            .filter(|key| key.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for directive_key in directive_keys {
            let Some(order) = patch.shift_remove(&directive_key) else {
                continue;
            };
            let Value::Array(order) = order else {
                return Err(PatchError::TypeMismatch {
                    field: directive_key,
                    expected: "a list",
                    got: go_type_name(&order),
                });
            };
            let field = directive_field(&directive_key, SET_ELEMENT_ORDER)?.to_owned();
            let original_list = list_field(original, &field)?;
            let patch_list = list_field(patch, &field)?;
            let meta = child_meta(self.schema, shape, &field);
            let keys = &meta.merge_keys;
            validate_against_order(patch_list.as_deref().unwrap_or_default(), &order, keys)?;

            let server_order = original_list.clone().unwrap_or_default();
            let patch_values = patch_list.clone().unwrap_or_default();
            let merged = match (original_list, patch_list) {
                (Some(current), None) => current,
                (None, Some(patch_items)) => match remove_directives(Value::Array(patch_items)) {
                    Some(Value::Array(items)) => items,
                    _ => Vec::new(),
                },
                (Some(current), Some(patch_items)) => {
                    if meta.merges_list() {
                        self.merge_list(current, patch_items, &meta, &field, false)?
                    } else {
                        patch_items
                    }
                }
                (None, None) => continue,
            };
            let (listed, unlisted) = partition_by_presence(merged, &order, keys)?;
            let element = element_type(&[&server_order, &patch_values], &field)?;
            let ordered =
                normalize_element_order(listed, unlisted, &order, &server_order, keys, element)?;
            original.insert(field.clone(), Value::Array(ordered));
            patch.shift_remove(&field);
        }
        Ok(())
    }
}

/// The list at `field` of `map`, if present (error if it is not a list).
fn list_field(map: &Map<String, Value>, field: &str) -> Result<Option<Vec<Value>>, PatchError> {
    match map.get(field) {
        None => Ok(None),
        Some(Value::Array(items)) => Ok(Some(items.clone())),
        Some(other) => Err(PatchError::TypeMismatch {
            field: field.to_owned(),
            expected: "a list",
            got: go_type_name(other),
        }),
    }
}

/// apimachinery's `mergeSliceWithSpecialElements`: applies `$patch: delete` items to the current
/// list and `$patch: replace` (the patch's other items become the list); returns the current
/// list and the patch items left to merge.
fn apply_list_directives(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    keys: &[String],
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for item in patch {
        let Some(directive) = item.get(DIRECTIVE) else {
            plain.push(item);
            continue;
        };
        match directive.as_str() {
            Some("delete") => {
                if !has_merge_key(&item, keys) {
                    return Err(missing_merge_key(&item, keys));
                }
                original.retain(|candidate| !same_element(candidate, &item, keys));
            }
            Some("replace") => replace = true,
            Some("merge") => return Err(PatchError::ListMergeDirective),
            _ => {
                return Err(PatchError::UnknownDirective {
                    directive: directive.to_string(),
                    context: item.to_string(),
                });
            }
        }
    }
    if replace {
        Ok((plain, Vec::new()))
    } else {
        Ok((original, plain))
    }
}

/// apimachinery's `validatePatchWithSetOrderList`: the patch's items (deletions and directive
/// items aside) must appear in the `$setElementOrder` list, in the same relative order.
fn validate_against_order(
    patch: &[Value],
    order: &[Value],
    keys: &[String],
) -> Result<(), PatchError> {
    if order.is_empty() || patch.is_empty() {
        return Ok(());
    }
    let mut items: Vec<&Value> = Vec::with_capacity(patch.len());
    for item in patch {
        if !keys.is_empty() {
            if !item.is_object() {
                return Err(PatchError::TypeMismatch {
                    field: SET_ELEMENT_ORDER.to_owned(),
                    expected: "a map",
                    got: go_type_name(item),
                });
            }
            if item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                continue;
            }
        }
        items.push(item);
    }
    let (mut at_patch, mut at_order) = (0, 0);
    while at_patch < items.len() && at_order < order.len() {
        let item = items[at_patch];
        if item.get(DIRECTIVE).is_some() {
            at_patch += 1;
            continue;
        }
        let matches = if keys.is_empty() {
            go_equal(item, &order[at_order])
        } else {
            for side in [item, &order[at_order]] {
                if !side.is_object() || !has_merge_key(side, keys) {
                    return Err(missing_merge_key(side, keys));
                }
            }
            same_element(item, &order[at_order], keys)
        };
        if matches {
            at_patch += 1;
        }
        at_order += 1;
    }
    if at_patch < items.len() {
        return Err(PatchError::InvalidDirective(format!(
            "the order in patch list {} doesn't match {SET_ELEMENT_ORDER} list {}",
            Value::Array(patch.to_vec()),
            Value::Array(order.to_vec())
        )));
    }
    Ok(())
}

/// apimachinery's `applyRetainKeysDirective` (server side): drops current keys `$retainKeys` does
/// not list; every non-null patch key must be listed.
fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let Value::Array(retain) = retain else {
        return Err(PatchError::InvalidDirective(format!(
            "{RETAIN_KEYS} must be a list"
        )));
    };
    let retained = |key: &str| retain.iter().any(|listed| listed.as_str() == Some(key));
    for (key, value) in patch.iter() {
        let exempt = value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || key.starts_with(SET_ELEMENT_ORDER);
        if !exempt && !retained(key) {
            return Err(PatchError::InvalidDirective(format!(
                "{RETAIN_KEYS} does not list the patched key {key:?}"
            )));
        }
    }
    original.retain(|key, _| retained(key));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuiltinSchema, ListType};
    use serde_json::json;

    fn pod() -> GroupVersionKind {
        GroupVersionKind::new("", "v1", "Pod")
    }

    fn patch_pod(doc: Value, patch: Value) -> Result<Value, PatchError> {
        strategic_merge_patch(&doc, &patch, &BuiltinSchema, &pod())
    }

    fn pod_with(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec})
    }

    #[test]
    fn maps_merge_and_null_deletes() {
        let doc = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let patched = patch_pod(doc, json!({"metadata": {"labels": {"a": null, "c": "3"}, "annotations": {"x": null, "y": "1"}}})).unwrap();
        assert_eq!(
            patched,
            json!({"metadata": {"labels": {"b": "2", "c": "3"}, "annotations": {"y": "1"}}})
        );
    }

    #[test]
    fn merge_lists_of_maps_merge_by_key_new_items_first() {
        let doc = pod_with(
            json!({"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}),
        );
        let patch = json!({"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "n", "image": "3"}]}});
        let patched = patch_pod(doc.clone(), patch).unwrap();
        assert_eq!(
            patched["spec"]["containers"],
            json!([{"name": "a", "image": "1"}, {"name": "b", "image": "2"}, {"name": "n", "image": "3"}])
        );
        // A new item ahead of every current item it is compared with goes first.
        let patched = patch_pod(
            doc,
            json!({"spec": {"containers": [{"name": "n", "image": "3"}]}}),
        )
        .unwrap();
        assert_eq!(container_names(&patched), ["n", "a", "b"]);
    }

    fn container_names(pod: &Value) -> Vec<&str> {
        pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn merge_lists_of_scalars_are_a_union() {
        let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patched = patch_pod(doc, json!({"metadata": {"finalizers": ["c", "x", "a"]}})).unwrap();
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["b", "c", "x", "a"])
        );
    }

    #[test]
    fn other_lists_are_replaced() {
        let doc = pod_with(
            json!({"tolerations": [{"key": "a"}], "containers": [{"name": "c", "args": ["1", "2"]}]}),
        );
        let patch = json!({"spec": {"tolerations": [{"key": "b"}], "containers": [{"name": "c", "args": ["3"]}]}});
        let patched = patch_pod(doc, patch).unwrap();
        assert_eq!(patched["spec"]["tolerations"], json!([{"key": "b"}]));
        assert_eq!(patched["spec"]["containers"][0]["args"], json!(["3"]));
    }

    #[test]
    fn patch_directive_in_maps() {
        let doc = json!({"metadata": {"labels": {"a": "1"}, "annotations": {"b": "2"}}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "z": "9"}, "annotations": {"$patch": "delete"}}});
        assert_eq!(
            patch_pod(doc.clone(), patch).unwrap(),
            json!({"metadata": {"labels": {"z": "9"}, "annotations": {}}})
        );
        let merge = json!({"metadata": {"labels": {"$patch": "merge"}}});
        assert!(matches!(
            patch_pod(doc.clone(), merge),
            Err(PatchError::UnknownDirective { .. })
        ));
        // A new key whose value carries `$patch` is dropped.
        let patched = patch_pod(doc, json!({"spec": {"$patch": "delete"}})).unwrap();
        assert!(patched.get("spec").is_none());
    }

    #[test]
    fn patch_directive_in_list_items() {
        let doc = pod_with(json!({"containers": [{"name": "a"}, {"name": "b"}]}));
        let delete = json!({"spec": {"containers": [{"name": "a", "$patch": "delete"}]}});
        assert_eq!(
            container_names(&patch_pod(doc.clone(), delete).unwrap()),
            ["b"]
        );
        let replace = json!({"spec": {"containers": [{"$patch": "replace"}, {"name": "z"}]}});
        assert_eq!(
            container_names(&patch_pod(doc.clone(), replace).unwrap()),
            ["z"]
        );
        let merge = json!({"spec": {"containers": [{"name": "a", "$patch": "merge"}]}});
        assert_eq!(
            patch_pod(doc.clone(), merge),
            Err(PatchError::ListMergeDirective)
        );
        let keyless = json!({"spec": {"containers": [{"$patch": "delete"}]}});
        assert!(matches!(
            patch_pod(doc, keyless),
            Err(PatchError::MissingMergeKey { .. })
        ));
    }

    #[test]
    fn retain_keys_clears_unlisted_fields_and_checks_the_patch() {
        let doc = json!({"spec": {"volumes": [{"name": "v", "configMap": {"name": "c"}}]}});
        let patch = json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name", "secret"], "secret": {"secretName": "s"}}]}});
        let patched = patch_pod(doc.clone(), patch).unwrap();
        assert_eq!(
            patched["spec"]["volumes"],
            json!([{"name": "v", "secret": {"secretName": "s"}}])
        );
        let unlisted =
            json!({"spec": {"volumes": [{"name": "v", "$retainKeys": ["name"], "secret": {}}]}});
        assert!(matches!(
            patch_pod(doc, unlisted),
            Err(PatchError::InvalidDirective(_))
        ));
    }

    #[test]
    fn set_element_order_orders_merged_lists() {
        let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}, "spec": {"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}});
        let patch = json!({
            "metadata": {"$setElementOrder/finalizers": ["d", "c", "a", "b"], "finalizers": ["d"]},
            "spec": {"$setElementOrder/containers": [{"name": "c"}, {"name": "n"}, {"name": "a"}], "containers": [{"name": "n"}, {"name": "b", "$patch": "delete"}]}
        });
        let patched = patch_pod(doc.clone(), patch).unwrap();
        assert_eq!(
            patched["metadata"]["finalizers"],
            json!(["d", "c", "a", "b"])
        );
        assert_eq!(container_names(&patched), ["c", "n", "a"]);
        let out_of_order = json!({"spec": {"$setElementOrder/containers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "b"}, {"name": "a"}]}});
        assert!(matches!(
            patch_pod(doc, out_of_order),
            Err(PatchError::InvalidDirective(_))
        ));
    }

    #[test]
    fn delete_from_primitive_list_removes_scalars_and_wins_over_additions() {
        let doc = json!({"metadata": {"finalizers": ["a", "b", "c"]}});
        let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "x"], "finalizers": ["x", "y"]}});
        assert_eq!(
            patch_pod(doc, patch).unwrap()["metadata"]["finalizers"],
            json!(["y", "a", "c"])
        );
        let bad_key = json!({"metadata": {"$deleteFromPrimitiveList": ["a"]}});
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        assert!(matches!(
            patch_pod(doc, bad_key),
            Err(PatchError::InvalidDirective(_))
        ));
    }

    #[test]
    fn replace_strategy_replaces_maps() {
        let doc = json!({"spec": {"selector": {"matchLabels": {"a": "1"}}}});
        let patch = json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}});
        let pdb = GroupVersionKind::new("policy", "v1", "PodDisruptionBudget");
        let patched = strategic_merge_patch(&doc, &patch, &BuiltinSchema, &pdb).unwrap();
        assert_eq!(
            patched,
            json!({"spec": {"selector": {"matchLabels": {"b": "2"}}}})
        );
    }

    #[test]
    fn new_values_lose_nulls_but_new_list_items_are_taken_raw() {
        let doc = pod_with(json!({"containers": [{"name": "a"}]}));
        let patch = json!({"spec": {"containers": [{"name": "n", "image": null}], "nodeSelector": {"k": null, "j": "v"}}});
        let patched = patch_pod(doc, patch).unwrap();
        assert_eq!(
            patched["spec"]["containers"][0],
            json!({"name": "n", "image": null})
        );
        assert_eq!(patched["spec"]["nodeSelector"], json!({"j": "v"}));
    }

    #[test]
    fn list_item_type_errors() {
        let doc = json!({"metadata": {"finalizers": ["a"]}});
        let mixed = json!({"metadata": {"finalizers": [1]}});
        assert!(matches!(
            patch_pod(doc.clone(), mixed),
            Err(PatchError::MixedListTypes(_))
        ));
        let null_item = json!({"metadata": {"finalizers": [null]}});
        assert!(matches!(
            patch_pod(json!({"metadata": {"finalizers": [null]}}), null_item),
            Err(PatchError::NullListItem(_))
        ));
        assert!(matches!(
            patch_pod(json!([]), json!({})),
            Err(PatchError::NotAnObject { what: "document" })
        ));
        assert!(matches!(
            patch_pod(json!({}), json!([])),
            Err(PatchError::NotAnObject { what: "patch" })
        ));
    }

    #[test]
    fn unknown_kinds_merge_maps_and_replace_lists() {
        let widget = GroupVersionKind::new("example.com", "v1", "Widget");
        let doc = json!({"spec": {"items": [{"name": "a"}], "config": {"x": 1}}});
        let patch = json!({"spec": {"items": [{"name": "b"}], "config": {"y": 2}}});
        let patched = strategic_merge_patch(&doc, &patch, &BuiltinSchema, &widget).unwrap();
        assert_eq!(
            patched,
            json!({"spec": {"items": [{"name": "b"}], "config": {"x": 1, "y": 2}}})
        );
    }

    /// A schema where a list merges on two keys, like `x-kubernetes-list-map-keys`.
    struct TwoKeySchema;

    impl PatchSchema for TwoKeySchema {
        fn root_shape(&self, _: &GroupVersionKind) -> ValueShape {
            ValueShape::Struct("root".into())
        }

        fn field(&self, type_name: &str, field: &str) -> Option<FieldMeta> {
            (type_name == "root" && field == "ports").then(|| FieldMeta {
                shape: ValueShape::List(Box::new(ValueShape::Untyped)),
                strategy: PatchStrategy::Merge,
                merge_keys: vec!["port".into(), "protocol".into()],
                list_type: Some(ListType::Map),
                list_map_keys: vec!["port".into(), "protocol".into()],
                ..FieldMeta::default()
            })
        }
    }

    #[test]
    fn multiple_merge_keys_identify_items_together() {
        let doc = json!({"ports": [{"port": 53, "protocol": "TCP", "name": "a"}, {"port": 80, "protocol": "TCP"}]});
        let patch = json!({"ports": [{"port": 53, "protocol": "UDP", "name": "b"}, {"port": 80, "protocol": "TCP", "name": "web"}, {"port": 53, "protocol": "TCP", "$patch": "delete"}]});
        let patched = strategic_merge_patch(&doc, &patch, &TwoKeySchema, &pod()).unwrap();
        assert_eq!(
            patched,
            json!({"ports": [{"port": 53, "protocol": "UDP", "name": "b"}, {"port": 80, "protocol": "TCP", "name": "web"}]})
        );
    }
}
