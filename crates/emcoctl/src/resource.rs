//! Resource files: multi-document YAML in upstream emcoctl's format, optionally rendered as templates first.
//!
//! Each document is `version`, `resourceContext.anchor`, `metadata` (`name`, `description`, `userData1`,
//! `userData2`), `spec`, `clusterLabel`, and `file` or `files` for multipart uploads. Other keys are ignored, as
//! upstream ignores them. The request body is upstream's: `{"metadata": {...}, "clusterLabel": ..., "spec": {...}}`
//! with `spec` keys sorted, as Go's JSON encoder writes maps.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::{Map, Value};

use crate::routing::normalize_anchor;
use crate::template::{self, MissingKey, TemplateError};

/// A resource file or values file that could not be used; every variant names the file and, where known, where.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("values file {path} is not usable: {message}")]
    Values { path: PathBuf, message: String },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{path}: document {document} (line {line}, column {column}{rendered}): invalid YAML: {message}", rendered = rendered_note(*.templated))]
    Yaml {
        path: PathBuf,
        document: usize,
        line: usize,
        column: usize,
        templated: bool,
        message: String,
    },
    #[error("{path}: document {document} (line {line}{rendered}): {message}", rendered = rendered_note(*.templated))]
    Invalid {
        path: PathBuf,
        document: usize,
        line: usize,
        templated: bool,
        message: String,
    },
}

fn rendered_note(templated: bool) -> &'static str {
    if templated {
        " of the rendered template"
    } else {
        ""
    }
}

/// The `metadata` block; upstream keeps exactly these four fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    pub name: String,
    pub description: String,
    pub user_data1: String,
    pub user_data2: String,
}

/// One document of a resource file.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    /// The file it came from, as given on the command line.
    pub path: PathBuf,
    /// 1-based among the file's non-empty documents.
    pub document: usize,
    /// 1-based line where the document starts (in the rendered text when templated).
    pub line: usize,
    pub anchor: String,
    pub metadata: Metadata,
    pub spec: Option<Map<String, Value>>,
    pub cluster_label: String,
    /// `file:`, uploaded as the multipart part `file`.
    pub file: Option<PathBuf>,
    /// `files:`, uploaded as multipart parts named `files`.
    pub files: Vec<PathBuf>,
}

/// What the files said, plus the template keys that had no value (upstream renders those as `<no value>`).
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub missing_keys: Vec<(PathBuf, MissingKey)>,
}

impl Resource {
    /// The JSON body upstream sends for this document.
    pub fn body(&self) -> String {
        let mut metadata = Map::new();
        metadata.insert("name".into(), Value::String(self.metadata.name.clone()));
        for (key, value) in [
            ("description", &self.metadata.description),
            ("userData1", &self.metadata.user_data1),
            ("userData2", &self.metadata.user_data2),
        ] {
            if !value.is_empty() {
                metadata.insert(key.into(), Value::String(value.clone()));
            }
        }
        let mut body = Map::new();
        body.insert("metadata".into(), Value::Object(metadata));
        if !self.cluster_label.is_empty() {
            body.insert(
                "clusterLabel".into(),
                Value::String(self.cluster_label.clone()),
            );
        }
        if let Some(spec) = self.spec.as_ref().filter(|spec| !spec.is_empty()) {
            body.insert("spec".into(), sorted(&Value::Object(spec.clone())));
        }
        Value::Object(body).to_string()
    }

    /// The URL of the resource itself: the anchor plus the metadata name (and, under `composite-apps`, the
    /// `spec.compositeAppVersion`), or plus the cluster label; the anchor alone when there is neither.
    pub fn item_anchor(&self) -> String {
        if !self.metadata.name.is_empty() {
            let mut anchor = format!("{}/{}", self.anchor, self.metadata.name);
            if last_segment(&self.anchor) == "composite-apps" {
                let version = self
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.get("compositeAppVersion"))
                    .map(scalar_text)
                    .unwrap_or_default();
                anchor.push('/');
                anchor.push_str(&version);
            }
            anchor
        } else if !self.cluster_label.is_empty() {
            format!("{}/{}", self.anchor, self.cluster_label)
        } else {
            self.anchor.clone()
        }
    }
}

/// The last `/`-separated segment of an anchor, ignoring any query string.
pub fn last_segment(anchor: &str) -> &str {
    let path = anchor.split('?').next().unwrap_or(anchor);
    path.rsplit('/').next().unwrap_or(path)
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Sorts object keys recursively, as Go's encoder does for `map[string]interface{}`.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.clone(), sorted(v)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Reads every resource file in order; with values files, each is first rendered as a Go template whose data is
/// the values files merged (later files win, mappings merged key by key).
pub fn load(files: &[PathBuf], values_files: &[PathBuf]) -> Result<Loaded, InputError> {
    let values = if values_files.is_empty() {
        None
    } else {
        let mut merged = Value::Null;
        for path in values_files {
            merge(&mut merged, read_values(path)?);
        }
        Some(merged)
    };
    let mut loaded = Loaded::default();
    for path in files {
        let text = read_text(path)?;
        let (text, templated) = match &values {
            Some(values) => {
                let rendered = template::render(&path.display().to_string(), &text, values)?;
                loaded.missing_keys.extend(
                    rendered
                        .missing_keys
                        .into_iter()
                        .map(|key| (path.clone(), key)),
                );
                (rendered.text, true)
            }
            None => (text, false),
        };
        loaded
            .resources
            .extend(parse_documents(path, &text, templated)?);
    }
    Ok(loaded)
}

fn read_text(path: &Path) -> Result<String, InputError> {
    let read_error = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(read_error(std::io::Error::other(
            "is a directory, expected a YAML file",
        )));
    }
    let bytes = std::fs::read(path).map_err(read_error)?;
    String::from_utf8(bytes).map_err(|_| read_error(std::io::Error::other("not UTF-8 text")))
}

/// The first document of a values file; upstream uses only that one.
fn read_values(path: &Path) -> Result<Value, InputError> {
    let text = read_text(path)?;
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|err| InputError::Values {
            path: path.to_path_buf(),
            message: yaml_message(&err),
        })?;
    documents
        .into_iter()
        .next()
        .ok_or_else(|| InputError::Values {
            path: path.to_path_buf(),
            message: "it holds no YAML document".to_string(),
        })
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// A slice of the file holding one document, with the line it starts on.
struct Chunk {
    first_line: usize,
    text: String,
}

/// Splits a YAML stream at `---` and `...` marker lines. A marker at column 0 always ends a document in YAML,
/// even inside block scalars, so this split agrees with a YAML parser while keeping exact line numbers.
fn split_documents(text: &str) -> Vec<Chunk> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut chunks = vec![Chunk {
        first_line: 1,
        text: String::new(),
    }];
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let is_marker = |marker: &str| {
            line.strip_prefix(marker)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r', '\n']))
        };
        if is_marker("---") || is_marker("...") {
            // Content after `--- ` belongs to the new document; keep its columns by blanking the marker.
            let rest = if is_marker("---") {
                format!("   {}", &line[3..])
            } else {
                String::new()
            };
            chunks.push(Chunk {
                first_line: index + 1,
                text: rest,
            });
            continue;
        }
        if let Some(chunk) = chunks.last_mut() {
            chunk.text.push_str(line);
        }
    }
    chunks.retain(|chunk| !is_blank_document(&chunk.text));
    chunks
}

fn is_blank_document(text: &str) -> bool {
    text.lines().all(|line| {
        let trimmed = line.trim();
        trimmed.is_empty() || trimmed.starts_with('#')
    })
}

/// The parser's message without its own "at line L, column C" suffix, which counts from the start of the
/// document rather than the file; the caller reports the file position instead.
fn yaml_message(err: &serde_saphyr::Error) -> String {
    let message = err.without_snippet().to_string();
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => message[..at].to_string(),
        _ => message,
    }
}

/// Parses one document. Upstream's YAML library accepts tab-indented lines inside flow collections (upstream's
/// own examples have them) where YAML 1.2 wants spaces; when the strict parse fails on a tab, the document is
/// parsed again with tabs in leading whitespace widened to spaces, and the first error stands if that fails too.
fn parse_lenient(text: &str) -> Result<RawDocument, serde_saphyr::Error> {
    match serde_saphyr::from_str(text) {
        Err(err) if err.without_snippet().to_string().contains("tabs") => {
            let detabbed: String = text
                .split_inclusive('\n')
                .map(|line| {
                    let indent_len = line.len() - line.trim_start_matches([' ', '\t']).len();
                    let (indent, rest) = line.split_at(indent_len);
                    format!("{}{rest}", indent.replace('\t', "        "))
                })
                .collect();
            serde_saphyr::from_str(&detabbed).map_err(|_| err)
        }
        other => other,
    }
}

/// Parses the documents of one (already rendered) file.
pub fn parse_documents(
    path: &Path,
    text: &str,
    templated: bool,
) -> Result<Vec<Resource>, InputError> {
    let mut resources = Vec::new();
    for (index, chunk) in split_documents(text).into_iter().enumerate() {
        let document = index + 1;
        let raw: RawDocument = parse_lenient(&chunk.text).map_err(|err| {
            let location = err.location();
            let line = location
                .and_then(|location| usize::try_from(location.line()).ok())
                .filter(|line| *line > 0)
                .map_or(chunk.first_line, |line| chunk.first_line + line - 1);
            let column = location
                .and_then(|location| usize::try_from(location.column()).ok())
                .unwrap_or(1);
            InputError::Yaml {
                path: path.to_path_buf(),
                document,
                line,
                column,
                templated,
                message: yaml_message(&err),
            }
        })?;
        let invalid = |message: String| InputError::Invalid {
            path: path.to_path_buf(),
            document,
            line: chunk.first_line,
            templated,
            message,
        };
        let anchor = raw
            .resource_context
            .and_then(|context| context.anchor)
            .map(|anchor| normalize_anchor(&anchor.0).to_string())
            .unwrap_or_default();
        if anchor.is_empty() {
            return Err(invalid("resourceContext.anchor is missing".to_string()));
        }
        let spec = match raw.spec {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(_) => return Err(invalid("spec must be a mapping".to_string())),
        };
        let metadata = raw.metadata.unwrap_or_default();
        let text = |field: Option<Scalar>| field.map(|s| s.0).unwrap_or_default();
        let file = text(raw.file);
        resources.push(Resource {
            path: path.to_path_buf(),
            document,
            line: chunk.first_line,
            anchor,
            metadata: Metadata {
                name: text(metadata.name),
                description: text(metadata.description),
                user_data1: text(metadata.user_data1),
                user_data2: text(metadata.user_data2),
            },
            spec,
            cluster_label: text(raw.cluster_label),
            file: (!file.is_empty()).then(|| PathBuf::from(file.trim())),
            files: raw
                .files
                .unwrap_or_default()
                .into_iter()
                .map(|s| PathBuf::from(s.0.trim()))
                .collect(),
        });
    }
    Ok(resources)
}

#[derive(Deserialize)]
struct RawDocument {
    #[serde(rename = "resourceContext", default)]
    resource_context: Option<RawContext>,
    #[serde(default)]
    metadata: Option<RawMetadata>,
    #[serde(default)]
    spec: Option<Value>,
    #[serde(default)]
    file: Option<Scalar>,
    #[serde(default)]
    files: Option<Vec<Scalar>>,
    #[serde(rename = "clusterLabel", default)]
    cluster_label: Option<Scalar>,
}

#[derive(Deserialize)]
struct RawContext {
    #[serde(default)]
    anchor: Option<Scalar>,
}

#[derive(Deserialize, Default)]
struct RawMetadata {
    #[serde(default)]
    name: Option<Scalar>,
    #[serde(default)]
    description: Option<Scalar>,
    #[serde(rename = "userData1", default)]
    user_data1: Option<Scalar>,
    #[serde(rename = "userData2", default)]
    user_data2: Option<Scalar>,
}

/// Any YAML scalar read as text, as upstream's decoder fills a string field (`name: 123` is `"123"`).
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or other scalar")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Scalar, E> {
                Ok(Scalar(String::new()))
            }
        }
        deserializer.deserialize_str(ScalarVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Vec<Resource> {
        parse_documents(Path::new("r.yaml"), text, false).unwrap()
    }

    fn parse_err(text: &str) -> String {
        parse_documents(Path::new("r.yaml"), text, false)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn reads_all_upstream_fields() {
        let docs = parse(
            "# leading comment\n---\nversion: emco/v2\nresourceContext:\n  anchor: projects/p/composite-apps\nmetadata :\n  name: ca\n  description: d\n  userData1: u1\n  userData2: u2\n  extra: dropped\nspec:\n  compositeAppVersion: v1\nunknown: ignored\n---\nversion: emco/v2\nresourceContext:\n  anchor: cluster-providers/cp/clusters/c/labels\nclusterLabel: edge\n---\n# only a comment\n---\nversion: emco/v2\nresourceContext:\n  anchor: projects/p/composite-apps/ca/v1/apps\nmetadata:\n  name: app\nfile:\n  output/app.tgz\n---\nresourceContext: {anchor: x/customizations}\nmetadata: {name: c}\nfiles:\n  - a/one.json  # comment\n  - two.json\n",
        );
        assert_eq!(docs.len(), 4);
        assert_eq!(docs[0].anchor, "projects/p/composite-apps");
        assert_eq!(docs[0].document, 1);
        assert_eq!(docs[0].line, 2);
        assert_eq!(
            docs[0].metadata,
            Metadata {
                name: "ca".into(),
                description: "d".into(),
                user_data1: "u1".into(),
                user_data2: "u2".into()
            }
        );
        assert_eq!(docs[0].item_anchor(), "projects/p/composite-apps/ca/v1");
        assert_eq!(docs[1].cluster_label, "edge");
        assert_eq!(
            docs[1].item_anchor(),
            "cluster-providers/cp/clusters/c/labels/edge"
        );
        assert_eq!(docs[2].document, 3);
        assert_eq!(docs[2].file, Some(PathBuf::from("output/app.tgz")));
        assert_eq!(
            docs[3].files,
            vec![PathBuf::from("a/one.json"), PathBuf::from("two.json")]
        );
    }

    #[test]
    fn body_matches_upstream_shape() {
        let docs = parse(
            "resourceContext:\n  anchor: projects\nmetadata:\n  name: p\n  userData2: x\nclusterLabel: l\nspec:\n  z: 1\n  a: {y: \"0\", b: [2, {d: 1, c: true}]}\n",
        );
        assert_eq!(
            docs[0].body(),
            r#"{"metadata":{"name":"p","userData2":"x"},"clusterLabel":"l","spec":{"a":{"b":[2,{"c":true,"d":1}],"y":"0"},"z":1}}"#
        );
        let bare = parse(
            "resourceContext:\n  anchor: projects/p/composite-apps/c/v1/deployment-intent-groups/d/approve\n",
        );
        assert_eq!(bare[0].body(), r#"{"metadata":{"name":""}}"#);
        assert_eq!(bare[0].item_anchor(), bare[0].anchor);
        let empty_spec =
            parse("resourceContext: {anchor: projects}\nmetadata: {name: p}\nspec: {}\n");
        assert_eq!(empty_spec[0].body(), r#"{"metadata":{"name":"p"}}"#);
    }

    #[test]
    fn scalars_become_text() {
        let docs = parse(
            "resourceContext: {anchor: projects}\nmetadata:\n  name: 123\n  description: true\n  userData1: ~\n",
        );
        assert_eq!(docs[0].metadata.name, "123");
        assert_eq!(docs[0].metadata.description, "true");
        assert_eq!(docs[0].metadata.user_data1, "");
    }

    #[test]
    fn tabs_inside_flow_sequences_are_accepted() {
        // As in upstream's test-gac examples.
        let docs = parse(
            "resourceContext: {anchor: projects}\nmetadata: {name: n}\nspec:\n  patchJson: [\n    {\n\t    \"op\": \"replace\",\n\t    \"value\": \"db\" # note\n\t  }\n\t]\n",
        );
        assert_eq!(
            docs[0].spec.as_ref().unwrap()["patchJson"],
            json!([{"op": "replace", "value": "db"}])
        );
    }

    #[test]
    fn yaml_errors_name_document_and_file_line() {
        let err = parse_err(
            "resourceContext: {anchor: projects}\nmetadata: {name: a}\n---\n# second\nresourceContext: {anchor: projects}\nmetadata: {name: [unclosed\n",
        );
        assert_eq!(
            err,
            "r.yaml: document 2 (line 6, column 18): invalid YAML: expected string scalar"
        );
    }

    #[test]
    fn missing_anchor_and_bad_spec_are_reported() {
        assert!(
            parse_err("metadata: {name: a}\n")
                .contains("document 1 (line 1): resourceContext.anchor is missing")
        );
        assert!(
            parse_err("resourceContext: {anchor: projects}\nspec: [1]\n")
                .contains("spec must be a mapping")
        );
    }

    #[test]
    fn documents_split_at_markers_only_at_column_zero() {
        let docs = parse(
            "resourceContext: {anchor: a}\nspec:\n  text: |\n    ---not a marker\n     --- indented\n--- # comment\nresourceContext: {anchor: b}\n...\n",
        );
        assert_eq!(docs.len(), 2);
        assert_eq!(
            docs[0].spec.as_ref().unwrap()["text"],
            json!("---not a marker\n --- indented\n")
        );
        assert_eq!((docs[1].anchor.as_str(), docs[1].line), ("b", 6));
    }

    #[test]
    fn load_renders_with_merged_values_and_reports_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("r.yaml");
        std::fs::write(&file, "resourceContext:\n  anchor: projects\nmetadata:\n  name: {{.Name}}\n  description: {{.Nope}}\nspec:\n  port: {{.Deep.Port}}\n").unwrap();
        let base = dir.path().join("values.yaml");
        std::fs::write(&base, "Name: first\nDeep: {Port: 1, Host: h}\n").unwrap();
        let overlay = dir.path().join("more.yaml");
        std::fs::write(&overlay, "Name: second\nDeep: {Port: 2}\n").unwrap();
        let loaded = load(std::slice::from_ref(&file), &[base, overlay]).unwrap();
        assert_eq!(loaded.resources[0].metadata.name, "second");
        assert_eq!(loaded.resources[0].metadata.description, "<no value>");
        assert_eq!(loaded.resources[0].spec.as_ref().unwrap()["port"], json!(2));
        assert_eq!(loaded.missing_keys.len(), 1);
        assert_eq!(loaded.missing_keys[0].1.key, ".Nope");
        // Without values files the text is not a template.
        std::fs::write(
            &file,
            "resourceContext: {anchor: projects}\nmetadata: {name: \"{{.Name}}\"}\n",
        )
        .unwrap();
        let raw = load(std::slice::from_ref(&file), &[]).unwrap();
        assert_eq!(raw.resources[0].metadata.name, "{{.Name}}");
    }

    #[test]
    fn load_reports_unreadable_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.yaml");
        let err = load(std::slice::from_ref(&missing), &[])
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read ") && err.contains("missing.yaml"),
            "{err}"
        );
        let err = load(&[dir.path().to_path_buf()], &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is a directory"), "{err}");
        let empty = dir.path().join("empty.yaml");
        std::fs::write(&empty, "# nothing\n").unwrap();
        let err = load(std::slice::from_ref(&empty), std::slice::from_ref(&empty))
            .unwrap_err()
            .to_string();
        assert!(err.contains("holds no YAML document"), "{err}");
    }

    #[test]
    fn upstream_range_example_expands_per_app() {
        let reference =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/emco-reference");
        let file = reference.join("jacobtrvl-emco/examples/test-flux/02-deployment-intent.yaml");
        let values = reference.join("generated-from-jacobtrvl-emco/examples/test-flux/values.yaml");
        let loaded = load(std::slice::from_ref(&file), &[values]).unwrap();
        assert!(loaded.missing_keys.is_empty(), "{:?}", loaded.missing_keys);
        let apps: Vec<(&str, &str, Option<&Path>)> = loaded
            .resources
            .iter()
            .filter(|r| r.anchor.ends_with("/apps") || r.anchor.ends_with("/profiles"))
            .map(|r| {
                (
                    r.anchor.as_str(),
                    r.metadata.name.as_str(),
                    r.file.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            apps,
            [
                (
                    "projects/proj-flux-1/composite-apps/test-composite-app/v1/apps",
                    "collectd",
                    Some(Path::new("output/collectd.tar.gz"))
                ),
                (
                    "projects/proj-flux-1/composite-apps/test-composite-app/v1/composite-profiles/test-composite-profile/profiles",
                    "collectd-profile",
                    Some(Path::new("output/collectd_profile.tar.gz"))
                ),
            ]
        );
    }

    /// Every upstream example resource file renders and parses: with the values its example generates when
    /// the reference corpus has them, else with a distinct value for every key it asks for.
    #[test]
    fn every_upstream_example_document_parses() {
        let reference =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/emco-reference");
        let examples = reference.join("jacobtrvl-emco/examples");
        let mut count = 0;
        let mut stack = vec![examples.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(text) = std::fs::read_to_string(&path) else {
                    continue;
                };
                if !text.contains("version: emco/v2") {
                    continue;
                }
                let relative = path.strip_prefix(&examples).unwrap();
                let generated = relative
                    .ancestors()
                    .skip(1)
                    .map(|dir| {
                        reference
                            .join("generated-from-jacobtrvl-emco/examples")
                            .join(dir)
                            .join("values.yaml")
                    })
                    .find(|candidate| candidate.is_file());
                let empty = template::render("x", &text, &json!({}))
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let rendered = match generated {
                    Some(values) => {
                        template::render("x", &text, &read_values(&values).unwrap()).unwrap()
                    }
                    None => {
                        let mut keyed = Map::new();
                        for missing in &empty.missing_keys {
                            let key = missing.key.trim_start_matches('$').trim_start_matches('.');
                            let key = key.split('.').next().unwrap_or_default().to_string();
                            let value = Value::String(format!("v-{}", key.to_lowercase()));
                            keyed.insert(key, value);
                        }
                        // Keys used as lists cannot take a string; those files are checked with no values.
                        template::render("x", &text, &Value::Object(keyed)).unwrap_or(empty)
                    }
                };
                let docs =
                    parse_documents(&path, &rendered.text, true).unwrap_or_else(|e| panic!("{e}"));
                count += docs.len();
            }
        }
        assert!(count > 900, "only {count} documents");
    }
}
