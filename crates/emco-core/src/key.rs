//! Resource identity: which kind a resource is and the values of its key elements.
//!
//! Every stored resource is named by its kind plus one value per key element, from the root of its
//! parent chain down to itself (an app is `project / compositeApp / compositeAppVersion / app`). The
//! same identity maps to exactly one storage key, so parent checks, child listings and reference
//! indexes are all prefix operations on the store.

use std::fmt;

/// Prefix of the stored resource documents: `d/{kind}/{v1}/.../{vn}`.
pub const DATA_PREFIX: &str = "d/";
/// Prefix of the reverse-reference index: `x/{target kind}/{target values}/{referrer kind}/{referrer values}`.
pub const REFERRER_PREFIX: &str = "x/";
/// Prefix of guard keys, rewritten whenever a child or referrer of a resource is written so that a
/// concurrent delete of that resource fails its compare and re-checks.
pub const GUARD_PREFIX: &str = "g/";
/// Prefix of binary attachments (chart and profile archives, kubeconfigs): `b/{kind}/{values}`.
pub const BLOB_PREFIX: &str = "b/";
/// Prefix of lifecycle state documents (deployment intent groups, logical clouds): `s/{kind}/{values}`.
pub const STATE_PREFIX: &str = "s/";

/// The identity of one resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: String,
    /// `(key element, value)` from the root of the parent chain down to the resource itself.
    pub elements: Vec<(String, String)>,
}

impl ResourceKey {
    pub fn new(kind: impl Into<String>, elements: Vec<(String, String)>) -> Self {
        Self {
            kind: kind.into(),
            elements,
        }
    }

    /// The value of one key element, if the key has it.
    pub fn get(&self, element: &str) -> Option<&str> {
        self.elements
            .iter()
            .find(|(k, _)| k == element)
            .map(|(_, v)| v.as_str())
    }

    /// The resource's own name (the value of its last key element).
    pub fn name(&self) -> &str {
        self.elements.last().map(|(_, v)| v.as_str()).unwrap_or("")
    }

    fn values_path(&self) -> String {
        let mut out = String::new();
        for (i, (_, v)) in self.elements.iter().enumerate() {
            if i > 0 {
                out.push('/');
            }
            out.push_str(v);
        }
        out
    }

    /// Storage key of the resource document.
    pub fn data_key(&self) -> String {
        format!("{DATA_PREFIX}{}/{}", self.kind, self.values_path())
    }

    /// Storage key of the resource's guard.
    pub fn guard_key(&self) -> String {
        format!("{GUARD_PREFIX}{}/{}", self.kind, self.values_path())
    }

    /// Storage key of the resource's binary attachment.
    pub fn blob_key(&self) -> String {
        format!("{BLOB_PREFIX}{}/{}", self.kind, self.values_path())
    }

    /// Storage key of the resource's lifecycle state.
    pub fn state_key(&self) -> String {
        format!("{STATE_PREFIX}{}/{}", self.kind, self.values_path())
    }

    /// Prefix under which every resource referring to this one has an index entry.
    pub fn referrers_prefix(&self) -> String {
        format!("{REFERRER_PREFIX}{}/{}/", self.kind, self.values_path())
    }

    /// The index entry recording that `referrer` refers to `self`.
    pub fn referrer_entry(&self, referrer: &ResourceKey) -> String {
        format!(
            "{}{}/{}",
            self.referrers_prefix(),
            referrer.kind,
            referrer.values_path()
        )
    }

    /// Prefix listing every resource of `kind` whose key starts with all of this key's values
    /// (the direct children of this resource when `kind` is a child kind).
    pub fn child_prefix(&self, kind: &str) -> String {
        if self.elements.is_empty() {
            format!("{DATA_PREFIX}{kind}/")
        } else {
            format!("{DATA_PREFIX}{kind}/{}/", self.values_path())
        }
    }

    /// Parses `d/{kind}/{values}` back into values (the element names come from the schema).
    pub fn values_from_data_key<'a>(kind: &str, data_key: &'a str) -> Option<Vec<&'a str>> {
        let rest = data_key
            .strip_prefix(DATA_PREFIX)?
            .strip_prefix(kind)?
            .strip_prefix('/')?;
        Some(rest.split('/').collect())
    }
}

impl fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        for (k, v) in &self.elements {
            write!(f, " {k}={v}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> ResourceKey {
        ResourceKey::new(
            "app",
            vec![
                ("project".into(), "p1".into()),
                ("compositeApp".into(), "ca".into()),
                ("compositeAppVersion".into(), "v1".into()),
                ("app".into(), "a1".into()),
            ],
        )
    }

    #[test]
    fn storage_keys_are_prefix_friendly() {
        let k = app();
        assert_eq!(k.data_key(), "d/app/p1/ca/v1/a1");
        assert_eq!(
            k.child_prefix("appDependency"),
            "d/appDependency/p1/ca/v1/a1/"
        );
        assert_eq!(k.referrers_prefix(), "x/app/p1/ca/v1/a1/");
        let referrer = ResourceKey::new("appProfile", vec![("project".into(), "p1".into())]);
        assert_eq!(
            k.referrer_entry(&referrer),
            "x/app/p1/ca/v1/a1/appProfile/p1"
        );
        assert_eq!(k.name(), "a1");
        assert_eq!(k.get("compositeApp"), Some("ca"));
        assert_eq!(
            ResourceKey::values_from_data_key("app", "d/app/p1/ca/v1/a1"),
            Some(vec!["p1", "ca", "v1", "a1"])
        );
        assert_eq!(ResourceKey::values_from_data_key("ap", "d/app/p1"), None);
    }

    #[test]
    fn root_child_prefix_lists_the_whole_kind() {
        let root = ResourceKey::new("none", vec![]);
        assert_eq!(root.child_prefix("project"), "d/project/");
    }
}
