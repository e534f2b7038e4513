//! The (group, version, kind) triple that names a Kubernetes object type.

use serde_json::Value;
use std::fmt;

/// A Kubernetes group/version/kind. The core group is the empty string (`v1` Pods, Services…).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupVersionKind {
    /// API group, e.g. `apps`; empty for the core group.
    pub group: String,
    /// API version within the group, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
}

impl GroupVersionKind {
    /// Builds a GVK from its three parts.
    pub fn new(
        group: impl Into<String>,
        version: impl Into<String>,
        kind: impl Into<String>,
    ) -> Self {
        Self {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
        }
    }

    /// Splits an `apiVersion` (`apps/v1`, or `v1` for the core group) and pairs it with `kind`.
    pub fn from_api_version(api_version: &str, kind: impl Into<String>) -> Self {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        Self::new(group, version, kind)
    }

    /// Reads `apiVersion` and `kind` from a Kubernetes object; `None` if either is missing or not
    /// a string.
    pub fn of_object(object: &Value) -> Option<Self> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        Some(Self::from_api_version(api_version, kind))
    }

    /// The `apiVersion` string: `group/version`, or just `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

impl fmt::Display for GroupVersionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.api_version(), self.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn splits_api_versions_with_and_without_group() {
        let apps = GroupVersionKind::from_api_version("apps/v1", "Deployment");
        assert_eq!(apps, GroupVersionKind::new("apps", "v1", "Deployment"));
        assert_eq!(apps.to_string(), "apps/v1/Deployment");
        let core = GroupVersionKind::of_object(&json!({"apiVersion": "v1", "kind": "Pod"}));
        assert_eq!(core, Some(GroupVersionKind::new("", "v1", "Pod")));
        assert_eq!(core.map(|gvk| gvk.api_version()).as_deref(), Some("v1"));
        assert_eq!(GroupVersionKind::of_object(&json!({"kind": "Pod"})), None);
    }
}
