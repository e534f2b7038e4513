//! Rules shared by many kinds: the resource-name pattern and the `metadata` object variants.

use super::dsl::{Field, Schema, StringRule, kept, omitempty, pattern, string, structure};

pattern!(pub NAME = "^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$");

/// Longest resource name upstream's schemas allow.
pub const NAME_MAX_CHARS: usize = 128;
/// Longest name that upstream's handlers accept where they also apply Kubernetes' label-value
/// rule (DTC intents, networks, network interfaces).
pub const K8S_NAME_MAX_CHARS: usize = 63;
pub const DESCRIPTION_MAX_CHARS: usize = 1024;
pub const USER_DATA_MAX_CHARS: usize = 512;

/// A resource name: what `metadata.name` (and a name in a URL path) must look like.
pub fn name() -> StringRule {
    string().max_chars(NAME_MAX_CHARS).pattern(&NAME)
}

/// [`name`] as a schema.
pub fn name_rule() -> Schema {
    name().into()
}

/// `metadata` of upstream's `metadata.json`, on a Go struct whose four fields have no
/// `omitempty`: a body without a name shows upstream an empty one, which fails the pattern.
pub fn metadata() -> Field {
    metadata_with_name(name())
}

/// [`metadata`] with a different rule for the name.
pub fn metadata_with_name(name: StringRule) -> Field {
    kept(
        "metadata",
        structure([
            kept("name", name).required(),
            kept("description", string().max_chars(DESCRIPTION_MAX_CHARS)),
            kept("userData1", string().max_chars(USER_DATA_MAX_CHARS)),
            kept("userData2", string().max_chars(USER_DATA_MAX_CHARS)),
        ]),
    )
}

/// [`metadata`] for a handler that also applies Kubernetes' label-value rule to the name
/// (at most 63 characters).
pub fn metadata_k8s_name() -> Field {
    metadata_with_name(name().max_chars(K8S_NAME_MAX_CHARS))
}

/// `metadata` on a Go struct whose fields all have `omitempty` (app placement intents).
pub fn metadata_omitempty() -> Field {
    kept(
        "metadata",
        structure([
            omitempty("name", name()).required(),
            omitempty("description", string().max_chars(DESCRIPTION_MAX_CHARS)),
            omitempty("userData1", string().max_chars(USER_DATA_MAX_CHARS)),
            omitempty("userData2", string().max_chars(USER_DATA_MAX_CHARS)),
        ]),
    )
}

/// `metadata` of the generic action controller's schemas, which bound the name and the user
/// data but not the description.
pub fn metadata_without_description_limit() -> Field {
    kept(
        "metadata",
        structure([
            kept("name", name()).required(),
            kept("userData1", string().max_chars(USER_DATA_MAX_CHARS)),
            kept("userData2", string().max_chars(USER_DATA_MAX_CHARS)),
        ]),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap (house rule).
mod tests {
    use super::*;

    #[test]
    fn name_pattern_matches_upstream_examples() {
        for good in [
            "a",
            "ab",
            "proj1",
            "monitor-composite-app",
            "a.b_c-d",
            "9",
            "A9",
        ] {
            assert!(NAME.is_match(good), "{good}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "_a",
            "a_",
            ".a",
            "a.",
            "a b",
            "a/b",
            "a%",
            "cluster-label-1%",
        ] {
            assert!(!NAME.is_match(bad), "{bad}");
        }
    }
}
