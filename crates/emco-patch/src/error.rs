//! Errors of the patch functions; messages follow kubectl's where it has one.

use thiserror::Error;

/// Why a patch could not be applied (or computed).
#[derive(Debug, Error, Clone, PartialEq)]
pub enum PatchError {
    /// The JSON patch document is not a list of RFC 6902 operations.
    #[error("invalid JSON patch document: {0}")]
    InvalidJsonPatch(String),
    /// An RFC 6902 operation failed (missing path, failed `test`, …).
    #[error("JSON patch failed: {0}")]
    JsonPatchFailed(String),
    /// The document or the patch is not a JSON object where one is required.
    #[error("{what} must be a JSON object")]
    NotAnObject {
        /// Which input was wrong ("document", "patch", "original", "modified").
        what: &'static str,
    },
    /// A `$patch` directive whose value is not `replace` or `delete` (in a list item,
    /// `merge` is reported as [`PatchError::ListMergeDirective`] instead).
    #[error("unknown patch type: {directive} in {context}")]
    UnknownDirective {
        /// The directive's value, as JSON.
        directive: String,
        /// The map or list item that carried it, as JSON.
        context: String,
    },
    /// `$patch: merge` inside a list, which apimachinery rejects.
    #[error("merging lists cannot yet be specified in the patch")]
    ListMergeDirective,
    /// A list item of a merge-by-key list lacks the merge key.
    #[error("map: {item} does not contain declared merge key: {merge_key}")]
    MissingMergeKey {
        /// The item, as JSON.
        item: String,
        /// The merge key(s), comma separated.
        merge_key: String,
    },
    /// A merge list whose items are maps, but no merge key is known for it.
    #[error("cannot merge lists without merge key for field {field}")]
    NoMergeKey {
        /// The list's field name.
        field: String,
    },
    /// The items of lists being merged do not all have the same JSON type.
    #[error("list element types are not identical: {0}")]
    MixedListTypes(String),
    /// Lists of lists cannot be merged.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A list item is `null` in a list being merged (kubectl crashes on this).
    #[error("null items cannot be merged in list {0}")]
    NullListItem(String),
    /// A `$setElementOrder`, `$deleteFromPrimitiveList` or `$retainKeys` directive is malformed or
    /// does not agree with the rest of the patch.
    #[error("invalid patch directive: {0}")]
    InvalidDirective(String),
    /// A value in the document or patch has the wrong JSON type for the operation.
    #[error("invalid value for {field}: expected {expected}, got {got}")]
    TypeMismatch {
        /// The field.
        field: String,
        /// What was expected ("a list", "a map").
        expected: &'static str,
        /// The JSON type found.
        got: &'static str,
    },
}
