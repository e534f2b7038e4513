//! Kubernetes patch semantics on `serde_json::Value`, pure and without I/O.
//!
//! Three patch types, as `kubectl patch --type json|merge|strategic` and the API server apply them:
//!
//! * [`json_patch`](fn@json_patch): RFC 6902 JSON Patch (a list of `add`/`remove`/`replace`/`move`/`copy`/`test`);
//! * [`merge_patch`]: RFC 7396 JSON Merge Patch (maps merge recursively, `null` deletes, lists replace);
//! * [`strategic_merge_patch`]: Kubernetes strategic merge patch, the behaviour of
//!   `k8s.io/apimachinery/pkg/util/strategicpatch` (lists merged by key, `$patch` directives,
//!   `$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`), driven by a
//!   [`PatchSchema`]. [`BuiltinSchema`] knows the Kubernetes built-in types.
//!
//! [`create_two_way_merge_patch`] computes the strategic merge patch that turns one object into
//! another (the two-way part of what client-side `kubectl apply` sends).

mod diff;
mod error;
mod gvk;
mod rfc6902;
mod rfc7396;
mod schema;
mod strategic;

pub use diff::create_two_way_merge_patch;
pub use error::PatchError;
pub use gvk::GroupVersionKind;
pub use rfc6902::json_patch;
pub use rfc7396::merge_patch;
pub use schema::{
    BuiltinSchema, FieldMeta, ListType, PatchSchema, PatchStrategy, ValueShape, lookup_path,
};
pub use strategic::strategic_merge_patch;
