//! Building and sending the exact request an upstream script sends for one corpus case.

use std::sync::Arc;

use anyhow::Context;
use serde_json::Value;

use crate::corpus::{self, CorpusCase};
use crate::script::{
    BodyEncoding, CONTROLLER_HOST, FileSource, HostRewrite, Method, ScriptBehaviour,
};

#[derive(Clone, Debug)]
pub struct AttachedFile {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum PreparedBody {
    Empty,
    Text(String),
    /// Text fields in order, then the `file` part (as `requests` orders data before files).
    Multipart {
        fields: Vec<(String, String)>,
        file: AttachedFile,
    },
}

#[derive(Clone, Debug)]
pub struct PreparedRequest {
    pub method: Method,
    pub url: String,
    pub headers: &'static [(&'static str, &'static str)],
    pub body: PreparedBody,
}

/// The simulated cluster, never added, that a kubeconfig posted without a cluster name points at.
const UNNAMED_CLUSTER: &str = "unnamed";

/// Files the multipart scripts attach: a cluster's kubeconfig points at the simulated cluster of
/// the same name (added to the simulator on first use), archives come from the corpus.
pub struct FileResolver {
    sim: Arc<emco_sim::Sim>,
}

impl FileResolver {
    pub fn new(sim: Arc<emco_sim::Sim>) -> FileResolver {
        FileResolver { sim }
    }

    /// `cluster` is the `metadata.name` of the request body; it names the simulated cluster a
    /// kubeconfig points at (upstream attaches one file, `config`, to every cluster post).
    pub fn resolve(
        &self,
        source: FileSource,
        name: &str,
        cluster: Option<&str>,
    ) -> anyhow::Result<AttachedFile> {
        match source {
            FileSource::Kubeconfig => {
                let target = match cluster {
                    Some(cluster) => {
                        match self.sim.add_cluster(cluster) {
                            Ok(_) | Err(emco_sim::SimError::ClusterExists(_)) => {}
                            Err(e) => {
                                return Err(e).with_context(|| {
                                    format!(
                                        "adding simulated cluster {cluster:?} for kubeconfig {name:?}"
                                    )
                                });
                            }
                        }
                        cluster
                    }
                    // a body without a name (the 400 cases) must be refused: any kubeconfig will do
                    None => UNNAMED_CLUSTER,
                };
                let file_name = name.rsplit('/').next().unwrap_or(name).to_owned();
                Ok(AttachedFile {
                    file_name,
                    bytes: self.sim.kubeconfig(target).into_bytes(),
                })
            }
            FileSource::Archive => {
                let path = corpus::archive_dirs()
                    .iter()
                    .map(|dir| dir.join(name))
                    .find(|path| path.is_file())
                    .with_context(|| {
                        format!(
                            "archive {name:?} is in none of {:?}",
                            corpus::archive_dirs()
                        )
                    })?;
                let bytes =
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let file_name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{} has no file name", path.display()))?
                    .to_owned();
                Ok(AttachedFile { file_name, bytes })
            }
        }
    }
}

impl CorpusCase {
    /// `metadata.name` of the request body, which names the cluster a kubeconfig is posted for.
    pub fn body_name(&self) -> Option<&str> {
        self.request_body
            .as_ref()
            .and_then(|body| body.pointer("/metadata/name"))
            .and_then(Value::as_str)
    }
}

/// Overwrites `spec.host` the way `json_parser.get_request_body_controller` does; bodies without a
/// `spec` object are left alone.
pub fn rewrite_host(value: &mut Value) {
    if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("host".to_owned(), Value::String(CONTROLLER_HOST.to_owned()));
    }
}

/// The expected response after the script's own rewriting.
pub fn expected_text(case: &CorpusCase, shape: &ScriptBehaviour) -> Option<Value> {
    let mut text = case.response_text.clone()?;
    match shape.host_rewrite {
        HostRewrite::None => {}
        HostRewrite::RequestAndResponse | HostRewrite::Response => rewrite_host(&mut text),
        HostRewrite::ResponseList => {
            if let Some(items) = text.as_array_mut() {
                items.iter_mut().for_each(rewrite_host);
            }
        }
    }
    Some(text)
}

pub fn prepare(
    base_url: &str,
    anchor: &str,
    case: &CorpusCase,
    shape: &ScriptBehaviour,
    files: &FileResolver,
) -> anyhow::Result<PreparedRequest> {
    let mut body_value = case.request_body.clone();
    if shape.host_rewrite == HostRewrite::RequestAndResponse
        && let Some(value) = body_value.as_mut()
    {
        rewrite_host(value);
    }
    let attached = |source: FileSource| -> anyhow::Result<AttachedFile> {
        let name = case
            .request_file
            .as_deref()
            .context("multipart script without RequestBodyFile")?;
        files.resolve(source, name, case.body_name())
    };
    let body = match shape.encoding {
        BodyEncoding::Empty => PreparedBody::Empty,
        // json.dumps(None) is "null": a missing RequestBody is still sent
        BodyEncoding::Json => {
            PreparedBody::Text(serde_json::to_string(&body_value.unwrap_or(Value::Null))?)
        }
        BodyEncoding::PythonForm => match body_value {
            None => PreparedBody::Empty,
            Some(value) => PreparedBody::Text(python_urlencode(&python_form_pairs(&value))),
        },
        BodyEncoding::Multipart(source) => {
            let metadata = serde_json::to_string(&body_value.unwrap_or(Value::Null))?;
            PreparedBody::Multipart {
                fields: vec![("metadata".to_owned(), metadata)],
                file: attached(source)?,
            }
        }
        BodyEncoding::PythonFormMultipart(source) => {
            let metadata = body_value.unwrap_or(Value::Null);
            let fields = python_form_pairs(&serde_json::json!({ "metadata": metadata }));
            PreparedBody::Multipart {
                fields,
                file: attached(source)?,
            }
        }
    };
    Ok(PreparedRequest {
        method: shape.method,
        url: format!("{base_url}/v2/{anchor}"),
        headers: shape.headers,
        body,
    })
}

/// The (key, value) pairs `requests` derives from a dict passed as `data=`: scalars become one
/// pair (`str(v)`, `None` dropped), and any iterable value — a dict included, which iterates its
/// keys — becomes one pair per element. Nested dicts therefore lose their values entirely.
pub fn python_form_pairs(data: &Value) -> Vec<(String, String)> {
    let Some(object) = data.as_object() else {
        return Vec::new();
    };
    let mut pairs = Vec::new();
    for (key, value) in object {
        match value {
            Value::Null => {}
            Value::Object(inner) => pairs.extend(inner.keys().map(|k| (key.clone(), k.clone()))),
            Value::Array(items) => pairs.extend(
                items
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(|v| (key.clone(), python_str(v))),
            ),
            scalar => pairs.push((key.clone(), python_str(scalar))),
        }
    }
    pairs
}

/// `str(v)` for the JSON values that reach it; containers fall back to JSON text, which the
/// corpus never produces at this depth.
fn python_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        other => other.to_string(),
    }
}

/// `urllib.parse.urlencode(pairs)`: `quote_plus` on keys and values.
pub fn python_urlencode(pairs: &[(String, String)]) -> String {
    fn quote_plus(text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for byte in text.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                    out.push(byte as char)
                }
                b' ' => out.push('+'),
                other => out.push_str(&format!("%{other:02X}")),
            }
        }
        out
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl PreparedRequest {
    /// One-line description for failure reports.
    pub fn describe(&self) -> String {
        let body = match &self.body {
            PreparedBody::Empty => "(no body)".to_owned(),
            PreparedBody::Text(text) => clip(text, 600),
            PreparedBody::Multipart { fields, file } => {
                let fields: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", clip(v, 300)))
                    .collect();
                format!(
                    "multipart [{}; file={} ({} bytes)]",
                    fields.join("; "),
                    file.file_name,
                    file.bytes.len()
                )
            }
        };
        format!("{} {}  {}", self.method.as_str(), self.url, body)
    }

    pub async fn send(&self, client: &reqwest::Client) -> anyhow::Result<(u16, String)> {
        let method = match self.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let mut builder = client.request(method, &self.url);
        for (name, value) in self.headers {
            builder = builder.header(*name, *value);
        }
        builder = match &self.body {
            PreparedBody::Empty => builder,
            PreparedBody::Text(text) => builder.body(text.clone()),
            PreparedBody::Multipart { fields, file } => {
                let mut form = reqwest::multipart::Form::new();
                for (name, value) in fields {
                    form = form.text(name.clone(), value.clone());
                }
                let part = reqwest::multipart::Part::bytes(file.bytes.clone())
                    .file_name(file.file_name.clone());
                builder.multipart(form.part("file", part))
            }
        };
        let response = builder
            .send()
            .await
            .with_context(|| format!("sending {}", self.describe()))?;
        let status = response.status().as_u16();
        let text = response.text().await.context("reading the response body")?;
        Ok((status, text))
    }
}

pub fn clip(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        return text.to_owned();
    }
    let head: String = text.chars().take(limit).collect();
    format!("{head}… ({} bytes in all)", text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn form_encoding_keeps_only_the_keys_of_nested_dicts_like_requests() {
        let body = json!({
            "metadata": {"name": "proj2", "description": "proj2 description"},
            "spec": {"compositeAppVersion": "v1"},
            "flag": true,
            "gone": null,
            "list": ["a b", 3]
        });
        let encoded = python_urlencode(&python_form_pairs(&body));
        assert_eq!(
            encoded,
            "metadata=name&metadata=description&spec=compositeAppVersion&flag=True&list=a+b&list=3"
        );
        assert!(
            serde_json::from_str::<Value>(&encoded).is_err(),
            "the 422 bodies must not be JSON"
        );
    }

    #[test]
    fn urlencode_escapes_like_quote_plus() {
        let pairs = vec![("k/ey".to_owned(), "a&b=c~d é".to_owned())];
        assert_eq!(python_urlencode(&pairs), "k%2Fey=a%26b%3Dc~d+%C3%A9");
    }

    #[test]
    fn controller_host_is_rewritten_in_request_and_expected_list() {
        let mut body = json!({"metadata": {"name": "rsync"}, "spec": {"host": "rsync", "port": 1}});
        rewrite_host(&mut body);
        assert_eq!(body["spec"]["host"], CONTROLLER_HOST);
        let mut no_spec = json!({"metadata": {"name": "x"}});
        rewrite_host(&mut no_spec);
        assert_eq!(no_spec, json!({"metadata": {"name": "x"}}));
    }

    #[test]
    fn multipart_neg422_sends_one_metadata_part_per_key() -> anyhow::Result<()> {
        let files = FileResolver::new(emco_sim::Sim::new(emco_sim::SimOptions::default()));
        let case = CorpusCase {
            request_body: Some(json!({"metadata": {"name": "c", "description": "d"}})),
            request_file: Some("config".to_owned()),
            status: crate::corpus::ExpectedStatus(vec![422]),
            response_text: None,
        };
        let shape = crate::script::behaviour("test_postClusterNeg422.py")?;
        let request = prepare(
            "http://h",
            "cluster-providers/p/clusters",
            &case,
            &shape,
            &files,
        )?;
        let PreparedBody::Multipart { fields, file } = request.body else {
            panic!("expected multipart");
        };
        assert_eq!(fields, [("metadata".to_owned(), "metadata".to_owned())]);
        assert_eq!(file.file_name, "config");
        assert_eq!(request.url, "http://h/v2/cluster-providers/p/clusters");
        Ok(())
    }

    #[test]
    fn a_cluster_post_attaches_the_kubeconfig_of_the_simulated_cluster_of_that_name()
    -> anyhow::Result<()> {
        let sim = emco_sim::Sim::new(emco_sim::SimOptions::default());
        sim.set_base_url("http://127.0.0.1:7");
        let files = FileResolver::new(sim.clone());
        let first = files.resolve(FileSource::Kubeconfig, "kube_north/config", Some("edge-a"))?;
        assert_eq!(first.file_name, "config");
        let text = String::from_utf8(first.bytes)?;
        assert!(
            text.contains("server: http://127.0.0.1:7/clusters/edge-a\n"),
            "{text}"
        );
        assert_eq!(sim.cluster_names(), ["edge-a"]);
        // posting the same cluster again (the 409 case) reuses the simulated cluster
        let again = files.resolve(FileSource::Kubeconfig, "config", Some("edge-a"))?;
        assert_eq!(String::from_utf8(again.bytes)?, text);
        assert_eq!(sim.cluster_names(), ["edge-a"]);
        let unnamed = files.resolve(FileSource::Kubeconfig, "config", None)?;
        assert!(String::from_utf8(unnamed.bytes)?.contains("/clusters/unnamed\n"));
        assert_eq!(
            sim.cluster_names(),
            ["edge-a"],
            "nothing added without a name"
        );
        assert!(
            files
                .resolve(FileSource::Kubeconfig, "config", Some("Not_A_Label"))
                .is_err()
        );
        Ok(())
    }

    #[test]
    fn every_attached_file_resolves() -> anyhow::Result<()> {
        let files = FileResolver::new(emco_sim::Sim::new(emco_sim::SimOptions::default()));
        for row in crate::corpus::load_sequence()? {
            let shape = crate::script::behaviour(&row.script)?;
            let source = match shape.encoding {
                BodyEncoding::Multipart(source) | BodyEncoding::PythonFormMultipart(source) => {
                    source
                }
                _ => continue,
            };
            for case in crate::corpus::load_input(&row)?.cases {
                let name = case
                    .request_file
                    .as_deref()
                    .context("multipart case without a file")?;
                let file = files
                    .resolve(source, name, case.body_name())
                    .with_context(|| row.label())?;
                assert!(!file.bytes.is_empty(), "{}: {name} is empty", row.label());
            }
        }
        Ok(())
    }
}
