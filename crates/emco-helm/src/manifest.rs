//! Splitting a rendered YAML stream into documents exactly where Helm splits it, and parsing each
//! document the way Kubernetes reads manifests.
//!
//! Helm does not use a YAML parser to split: `releaseutil.SplitManifests` cuts the text at every
//! `---` that starts a line (regex `(?:^|\s*\n)---\s*` with Go's ASCII `\s`) and trims each piece.
//! A `---` inside an indented block scalar therefore stays put, while one at column 0 splits even
//! inside a quoted string. Each piece Helm prints starts with a `# Source: <template path>`
//! comment; pieces that lack one (the second and later documents of a multi-document file in a
//! chart's `crds/` directory, which Helm prints as one piece) inherit the previous piece's source.
//!
//! Documents are parsed with YAML 1.1 scalar rules, as Kubernetes' YAML decoder (go-yaml v2) does:
//! `0755` is octal (493), `yes`/`on` are booleans; duplicate keys keep the last value.

use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

/// Helm's document separator. Go's `\s` is ASCII-only (`[\t\n\f\r ]`), unlike Rust's default.
static SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[\t\n\x0C\r ]*\n)---[\t\n\x0C\r ]*").expect("constant regex is valid")
});

/// The comment Helm puts before every rendered template.
const SOURCE_PREFIX: &str = "# Source: ";

/// Deepest YAML nesting accepted. The deepest upstream example (the `monitor` chart's CRD
/// schema) nests 36 levels; parsing recurses per level, and a debug build overflows a 2 MiB thread
/// stack (tokio's default) somewhere past 80 levels, so deeper documents are refused with an
/// error rather than allowed to abort the process.
pub const MAX_YAML_DEPTH: usize = 64;

/// One document of a rendered stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestDocument<'a> {
    /// Position among the non-empty pieces of the stream, from 0.
    pub index: usize,
    /// The chart-relative template path (`collectd/templates/service.yaml`), if known.
    pub source: Option<&'a str>,
    /// The document text, without the `# Source:` line.
    pub body: &'a str,
}

/// Splits a rendered stream as Helm's `SplitManifests` does, attaching each piece's source.
pub fn split_documents(stream: &str) -> Vec<ManifestDocument<'_>> {
    let mut documents = Vec::new();
    let mut source = None;
    for piece in SEPARATOR.split(stream.trim()) {
        if piece.is_empty() {
            continue;
        }
        let piece = piece.trim();
        let body = match piece.strip_prefix(SOURCE_PREFIX) {
            Some(rest) => {
                let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
                source = Some(line.trim_end());
                body
            }
            None => piece,
        };
        documents.push(ManifestDocument {
            index: documents.len(),
            source,
            body,
        });
    }
    documents
}

/// Parses one document into JSON. Empty or comment-only documents give `None`.
pub fn parse_document(body: &str) -> Result<Option<Value>, serde_saphyr::Error> {
    let value: Value = serde_saphyr::from_str_with_options(body, kubernetes_yaml_options())?;
    Ok(match value {
        Value::Null => None,
        value => Some(value),
    })
}

/// YAML options that read manifests as Kubernetes does (see the module documentation).
fn kubernetes_yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_YAML_DEPTH;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.legacy_octal_numbers = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    options
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bodies(stream: &str) -> Vec<&str> {
        split_documents(stream)
            .into_iter()
            .map(|document| document.body)
            .collect()
    }

    #[test]
    fn splits_helm_output_and_keeps_sources() {
        let stream = "---\n# Source: app/templates/a.yaml\nkind: A\n---\n# Source: app/templates/b.yaml\nkind: B\n";
        let documents = split_documents(stream);
        assert_eq!(documents.len(), 2);
        assert_eq!(documents[0].source, Some("app/templates/a.yaml"));
        assert_eq!(documents[0].body, "kind: A");
        assert_eq!(documents[1].source, Some("app/templates/b.yaml"));
        assert_eq!(documents[1].body, "kind: B");
        assert_eq!(documents[1].index, 1);
    }

    #[test]
    fn pieces_without_a_source_inherit_the_previous_one() {
        let stream = "---\n# Source: app/crds/x.yaml\nkind: X\n---\nkind: Y\n\n---\n# Source: app/templates/z.yaml\nkind: Z";
        let sources: Vec<_> = split_documents(stream)
            .into_iter()
            .map(|document| document.source)
            .collect();
        assert_eq!(
            sources,
            [
                Some("app/crds/x.yaml"),
                Some("app/crds/x.yaml"),
                Some("app/templates/z.yaml")
            ]
        );
        assert_eq!(split_documents("kind: A")[0].source, None);
    }

    #[test]
    fn empty_pieces_are_skipped() {
        assert!(split_documents("").is_empty());
        assert!(split_documents(" \n\t\n").is_empty());
        assert!(split_documents("  \n---  \n").is_empty());
        // Back-to-back separators: the first match eats the newline the second one needs, so
        // Helm leaves a bare `---` piece, which parses as an empty document.
        assert_eq!(bodies("---\n---\n   \n---"), ["---"]);
        assert_eq!(parse_document("---").unwrap(), None);
        // Helm's pieces here are `---\nkind: A` and `---`; as YAML, one object and nothing.
        let parsed: Vec<Value> = bodies("---\n---\nkind: A\n---\n\n---\n")
            .into_iter()
            .filter_map(|body| parse_document(body).unwrap())
            .collect();
        assert_eq!(parsed, [json!({"kind": "A"})]);
    }

    #[test]
    fn indented_separator_inside_a_block_scalar_does_not_split() {
        let stream =
            "kind: ConfigMap\ndata:\n  text: |\n    before\n    ---\n    after\n---\nkind: B";
        let documents = bodies(stream);
        assert_eq!(documents.len(), 2);
        let config_map = parse_document(documents[0]).unwrap().unwrap();
        assert_eq!(config_map["data"]["text"], "before\n---\nafter\n");
    }

    #[test]
    fn column_zero_separator_splits_even_inside_a_quoted_string_like_helm() {
        // Helm cuts here too; the first half is then invalid YAML and is reported as such.
        let stream = "kind: A\nnote: \"one\n---\ntwo\"";
        let documents = bodies(stream);
        assert_eq!(documents, ["kind: A\nnote: \"one", "two\""]);
        assert!(parse_document(documents[0]).is_err());
    }

    #[test]
    fn separator_swallows_trailing_text_whitespace_and_joins_what_follows() {
        // `---foo` starts a document with `foo` in Helm's splitter, unlike a YAML parser.
        assert_eq!(bodies("a: 1\n---foo: 2"), ["a: 1", "foo: 2"]);
        assert_eq!(bodies("a: 1\n--- \n\n  b: 2"), ["a: 1", "b: 2"]);
        // A `---` that does not start a line is text.
        assert_eq!(bodies("a: x---y"), ["a: x---y"]);
    }

    #[test]
    fn comment_only_and_empty_documents_parse_to_none() {
        assert_eq!(parse_document("").unwrap(), None);
        assert_eq!(parse_document("# just a comment\n# another").unwrap(), None);
        assert_eq!(parse_document("~").unwrap(), None);
    }

    #[test]
    fn scalars_follow_kubernetes_yaml_rules() {
        let value = parse_document(
            "mode: 0755\nflag: on\nanswer: no\nquoted: \"0755\"\ncount: 1_000\nhex: 0x1F\nnine: 09\nname: web",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            value,
            json!({"mode": 493, "flag": true, "answer": false, "quoted": "0755",
                   "count": 1000, "hex": 31, "nine": 9.0, "name": "web"})
        );
    }

    #[test]
    fn duplicate_keys_keep_the_last_value_and_anchors_resolve() {
        let value = parse_document("a: 1\na: 2\nbase: &b {x: 1}\nderived:\n  <<: *b\n  y: 2")
            .unwrap()
            .unwrap();
        assert_eq!(
            value,
            json!({"a": 2, "base": {"x": 1}, "derived": {"y": 2, "x": 1}})
        );
    }

    fn nested(depth: usize) -> String {
        let mut text = String::new();
        for level in 0..depth {
            text.push_str(&"  ".repeat(level));
            text.push_str("p:\n");
        }
        text.push_str(&"  ".repeat(depth));
        text.push_str("leaf: 1\n");
        text
    }

    #[test]
    fn nesting_is_bounded_by_an_error_not_a_stack_overflow() {
        assert!(
            parse_document(&nested(MAX_YAML_DEPTH - 2))
                .unwrap()
                .is_some()
        );
        assert!(parse_document(&nested(MAX_YAML_DEPTH + 1)).is_err());
        assert!(parse_document(&nested(10_000)).is_err());
        let flow = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_document(&flow).is_err());
    }

    #[test]
    fn invalid_yaml_is_an_error() {
        assert!(parse_document("a: [1, 2").is_err());
        assert!(parse_document("a: 1\n  b: 2").is_err());
    }
}
