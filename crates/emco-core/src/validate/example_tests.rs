//! Runs the bodies of upstream's emcoctl example files (`examples/**.yaml`, `src/*/examples/**`)
//! through [`validate`]: upstream accepts them, so must we. Template placeholders are filled from
//! the example's generated `values.yaml`; documents that still hold template logic are skipped.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::conformance_tests::{kind_of, reference_dir};
use super::validate;

/// Example documents upstream itself would refuse, with the refusal: this app intent predates
/// the rename of `app-name` to `app`.
const STALE_EXAMPLES: &[(&str, &str)] = &[(
    "src/hpa-plc/examples/emcoctl/hpa/hpa-test-advanced.yaml",
    "spec.app: is required",
)];

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if path.is_dir() {
            // Helm charts are not emcoctl files.
            if name != "helm" && name != "helm_charts" {
                yaml_files(&path, out);
            }
        } else if name.ends_with(".yaml") {
            out.push(path);
        }
    }
}

/// `{{ .Key }}` placeholders and their values from the example's generated `values.yaml`.
fn template_values(example_dir: &Path, upstream: &Path) -> Vec<(String, String)> {
    let relative = example_dir.strip_prefix(upstream).unwrap_or(example_dir);
    let values_file = reference_dir()
        .join("generated-from-jacobtrvl-emco")
        .join(relative)
        .join("values.yaml");
    let Ok(text) = fs::read_to_string(values_file) else {
        return Vec::new();
    };
    let Ok(Value::Object(values)) = serde_saphyr::from_str::<Value>(&text) else {
        return Vec::new();
    };
    values
        .into_iter()
        .filter_map(|(key, value)| {
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => return None,
            };
            Some((key, text))
        })
        .collect()
}

fn fill_placeholders(text: &str, values: &[(String, String)]) -> String {
    let mut text = text.to_owned();
    for (key, value) in values {
        for placeholder in [format!("{{{{ .{key} }}}}"), format!("{{{{.{key}}}}}")] {
            text = text.replace(&placeholder, value);
        }
    }
    text
}

#[test]
fn upstream_example_bodies_are_accepted() {
    let upstream = reference_dir().join("jacobtrvl-emco");
    let mut files = Vec::new();
    yaml_files(&upstream.join("examples"), &mut files);
    yaml_files(&upstream.join("src"), &mut files);
    files.sort();
    let (mut checked, mut refused) = (0, Vec::new());
    for path in files {
        let Ok(raw) = fs::read_to_string(&path) else {
            continue;
        };
        if !raw.contains("resourceContext") {
            continue;
        }
        let values = template_values(path.parent().unwrap_or(&upstream), &upstream);
        let text = fill_placeholders(&raw, &values);
        let file = path
            .strip_prefix(&upstream)
            .unwrap_or(&path)
            .display()
            .to_string();
        for document in text.split("\n---") {
            if document.contains("{{") || !document.contains("resourceContext") {
                continue;
            }
            let Ok(Value::Object(mut document)) = serde_saphyr::from_str::<Value>(document) else {
                continue;
            };
            let Some(anchor) = document["resourceContext"]["anchor"]
                .as_str()
                .map(str::to_owned)
            else {
                continue;
            };
            // Lifecycle calls (rollback, temporal actions) have no stored kind.
            let Some(kind) = kind_of(&anchor, true) else {
                continue;
            };
            // emcoctl sends these members (a cluster label is a top-level `clusterLabel`).
            document.retain(|key, _| ["metadata", "spec", "clusterLabel"].contains(&key.as_str()));
            checked += 1;
            if let Err(err) = validate(kind, &Value::Object(document))
                && !STALE_EXAMPLES
                    .iter()
                    .any(|&(stale, error)| stale == file && err.to_string() == error)
            {
                refused.push(format!("{file} ({kind} at {anchor}): {err}"));
            }
        }
    }
    assert!(
        refused.is_empty(),
        "{} example bodies refused:\n{}",
        refused.len(),
        refused.join("\n")
    );
    assert!(checked > 400, "only {checked} example bodies checked");
}
