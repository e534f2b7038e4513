//! Rendering an app's chart with its profile and the group's override values, through the real
//! `helm template`, as upstream EMCO's orchestrator renders it before deploying.
//!
//! Upstream (`orchestrator/utils/helm`) extracts the chart and the profile, copies each profile
//! `configresource` file over `<extraction root>/<chartpath>` (so `chartpath` starts with the
//! chart's directory, and its parent directory must already exist), then renders with Helm's
//! install action in client-only dry-run mode: release name = the deployment intent group's
//! `spec.version`, namespace = the logical cloud's namespace (`default` when empty), CRDs from
//! `crds/` included, values = the profile's override values file (`-f`) and then the group's
//! `overrideValues` for the app as `--set key=value` strings.
//!
//! [`HelmRenderer`] reproduces that by running `helm template` with the same inputs: the chart's
//! own `values.yaml` is applied by Helm, the profile's values file is passed with `-f`, and each
//! override is passed with `--set`, so Helm's own merge and `--set` syntax (dotted paths, list
//! indexes, `\,` escapes, typed `true`/`1`/`null` values, and the error upstream gets for a value
//! with an unescaped comma) apply unchanged. Merging in Rust would have to re-implement Helm's
//! `strvals` parser to be exact. Upstream builds the `--set` list from a Go map, so its order is
//! random; here the overrides keep the order they are given in (later ones win on conflicts).
//!
//! The [`Renderer`] trait lets deploy code be tested without a subprocess: a test renderer
//! returns a YAML stream, and [`Renderer::render_release`] classifies it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use crate::archive::{Chart, Profile};
use crate::release::{DEFAULT_NAMESPACE, ManifestError, Release};

/// Environment variable naming the `helm` binary to use; see [`find_helm`].
pub const HELM_BIN_ENV: &str = "EMCO_HELM_BIN";

/// Longest release name Helm accepts.
const MAX_RELEASE_NAME_LEN: usize = 53;

/// Longest namespace Kubernetes accepts (a DNS-1123 label).
const MAX_NAMESPACE_LEN: usize = 63;

/// Most stderr kept for error messages; the rest is read and discarded.
const MAX_STDERR_BYTES: usize = 64 * 1024;

/// Hint that the Helm CLI appends to template errors; it is about the CLI, not the chart.
const DEBUG_HINT: &str = "Use --debug flag to render out invalid YAML";

/// Everything one render needs.
#[derive(Debug, Clone, Copy)]
pub struct RenderRequest<'a> {
    /// The app's chart.
    pub chart: &'a Chart,
    /// The app's profile (override values file and config resources), if any.
    pub profile: Option<&'a Profile>,
    /// Release name: the deployment intent group's `spec.version`.
    pub release_name: &'a str,
    /// Namespace: the logical cloud's namespace; empty means `default`.
    pub namespace: &'a str,
    /// The group's `overrideValues` for this app, as `(key, value)` pairs in `--set` syntax
    /// (see [`override_values_for_app`]).
    pub override_values: &'a [(String, String)],
}

impl RenderRequest<'_> {
    /// The namespace the release renders into.
    pub fn effective_namespace(&self) -> &str {
        if self.namespace.is_empty() {
            DEFAULT_NAMESPACE
        } else {
            self.namespace
        }
    }

    /// Checks the release name, namespace and overrides before anything is written or run.
    pub fn validate(&self) -> Result<(), RenderError> {
        if let Some(reason) = dns_label_problem(self.release_name, MAX_RELEASE_NAME_LEN) {
            return Err(RenderError::InvalidReleaseName {
                name: self.release_name.to_owned(),
                reason,
            });
        }
        if !self.namespace.is_empty()
            && let Some(reason) = dns_label_problem(self.namespace, MAX_NAMESPACE_LEN)
        {
            return Err(RenderError::InvalidNamespace {
                namespace: self.namespace.to_owned(),
                reason,
            });
        }
        for (key, value) in self.override_values {
            let reason = if key.is_empty() {
                Some("the key is empty")
            } else if key.contains('\0') || value.contains('\0') {
                Some("it contains a NUL character")
            } else {
                None
            };
            if let Some(reason) = reason {
                return Err(RenderError::InvalidOverride {
                    key: key.clone(),
                    reason,
                });
            }
        }
        Ok(())
    }
}

/// Why a chart could not be rendered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    /// The release name is not one Helm (and upstream) accept.
    #[error("release name {name:?} is invalid: {reason}")]
    InvalidReleaseName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The namespace is not a DNS-1123 label.
    #[error("namespace {namespace:?} is invalid: {reason}")]
    InvalidNamespace {
        /// The namespace given.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An override value cannot be passed to Helm.
    #[error("override value {key:?} is invalid: {reason}")]
    InvalidOverride {
        /// The key.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A chart file path is not a safe relative path (the archive reader never produces one).
    #[error("chart file {path:?} has an unsafe path")]
    UnsafePath {
        /// The path.
        path: String,
    },
    /// A profile `configresource` cannot be copied into the chart.
    #[error("profile config resource {file_path:?} cannot be copied to {chart_path:?}: {reason}")]
    ConfigResource {
        /// Source file in the profile.
        file_path: String,
        /// Destination, relative to the directory holding the chart.
        chart_path: String,
        /// Why.
        reason: String,
    },
    /// The chart could not be written to a scratch directory.
    #[error("cannot prepare the chart for rendering: {0}")]
    Workspace(#[source] std::io::Error),
    /// The `helm` binary could not be run.
    #[error("cannot run helm at {path}: {source}")]
    HelmUnavailable {
        /// The binary tried.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Helm refused the chart or its values; `message` is Helm's own error text.
    #[error("helm could not render the chart: {message}")]
    Helm {
        /// Helm's error message (stderr without the CLI's `Error: ` prefix and `--debug` hint).
        message: String,
        /// Helm's exit code, if it exited normally.
        exit_code: Option<i32>,
    },
    /// Helm ran longer than [`HelmConfig::timeout`] and was killed.
    #[error("helm did not finish rendering within {0:?}")]
    Timeout(Duration),
    /// Helm printed more than [`HelmConfig::max_output_bytes`] and was killed.
    #[error("helm printed more than {limit} bytes of manifests")]
    OutputTooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// Helm's output is not UTF-8.
    #[error("helm output is not valid UTF-8")]
    OutputNotUtf8,
    /// Reading Helm's output or waiting for it failed.
    #[error("error while running helm: {0}")]
    Process(#[source] std::io::Error),
    /// The rendered stream could not be classified.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Renders charts into a YAML stream of manifests.
#[async_trait::async_trait]
pub trait Renderer: Send + Sync {
    /// Renders `request` into what `helm template` prints: `---`-separated documents, each
    /// preceded by a `# Source: <template path>` comment.
    async fn render(&self, request: &RenderRequest<'_>) -> Result<String, RenderError>;

    /// Renders `request` and classifies the result into a [`Release`].
    async fn render_release(&self, request: &RenderRequest<'_>) -> Result<Release, RenderError> {
        request.validate()?;
        let stream = self.render(request).await?;
        Ok(Release::from_rendered(
            &stream,
            request.release_name,
            request.effective_namespace(),
        )?)
    }
}

/// How [`HelmRenderer`] runs Helm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmConfig {
    /// The `helm` binary (Helm 3; the project pins 3.17.1).
    pub helm_bin: PathBuf,
    /// Longest a render may take before Helm is killed.
    pub timeout: Duration,
    /// Most manifest bytes accepted from Helm before it is killed.
    pub max_output_bytes: usize,
    /// `--kube-version` for `.Capabilities.KubeVersion`; `None` leaves Helm's default (v1.32.0
    /// for Helm 3.17.1). Upstream renders with its embedded Helm 3.8.0 library's default, which
    /// is v1.20.0 (the release ldflags that raise it are not applied to a library build); set
    /// `Some("1.20.0")` to reproduce that, at the price of charts choosing APIs that current
    /// clusters no longer serve.
    pub kube_version: Option<String>,
    /// Directory for scratch copies of charts; `None` is the system temporary directory.
    pub scratch_dir: Option<PathBuf>,
}

impl HelmConfig {
    /// Defaults: 30 s timeout, 64 MiB of output, Helm's default Kubernetes version.
    pub fn new(helm_bin: impl Into<PathBuf>) -> Self {
        Self {
            helm_bin: helm_bin.into(),
            timeout: Duration::from_secs(30),
            max_output_bytes: 64 * 1024 * 1024,
            kube_version: None,
            scratch_dir: None,
        }
    }
}

/// The `helm` binary named by `EMCO_HELM_BIN`, else the first `helm` on `PATH`.
pub fn find_helm() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(HELM_BIN_ENV).filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let search_path = std::env::var_os("PATH")?;
    std::env::split_paths(&search_path)
        .map(|dir| dir.join("helm"))
        .find(|candidate| is_executable_file(candidate))
}

fn is_executable_file(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

/// Renders with the real `helm template`.
#[derive(Debug, Clone)]
pub struct HelmRenderer {
    config: HelmConfig,
}

impl HelmRenderer {
    /// A renderer running Helm as `config` says.
    pub fn new(config: HelmConfig) -> Self {
        Self { config }
    }

    /// The configuration in use.
    pub fn config(&self) -> &HelmConfig {
        &self.config
    }

    /// `helm version --short`, e.g. `v3.17.1+g980d8ac`.
    pub async fn version(&self) -> Result<String, RenderError> {
        let scratch = self.scratch()?;
        let output = self
            .run(scratch.path(), &["version".into(), "--short".into()])
            .await?;
        Ok(output.trim().to_owned())
    }

    fn scratch(&self) -> Result<tempfile::TempDir, RenderError> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("emco-helm-");
        match &self.config.scratch_dir {
            Some(dir) => builder.tempdir_in(dir),
            None => builder.tempdir(),
        }
        .map_err(RenderError::Workspace)
    }

    /// Runs Helm in `dir` with a clean environment, bounded in time and output.
    async fn run(&self, dir: &Path, args: &[String]) -> Result<String, RenderError> {
        let mut command = Command::new(&self.config.helm_bin);
        command
            .args(args)
            .current_dir(dir)
            // Nothing from the hub's environment (HELM_DEBUG, HELM_NAMESPACE, kubeconfig,
            // registry credentials) may change what is rendered; Helm's own state goes to the
            // scratch directory.
            .env_clear()
            .env("HOME", dir)
            .env("HELM_CACHE_HOME", dir.join(".helm/cache"))
            .env("HELM_CONFIG_HOME", dir.join(".helm/config"))
            .env("HELM_DATA_HOME", dir.join(".helm/data"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|source| RenderError::HelmUnavailable {
                path: self.config.helm_bin.clone(),
                source,
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(RenderError::Process(std::io::Error::other(
                "helm's output pipes were not opened",
            )));
        };
        let limit = self.config.max_output_bytes;
        let outcome = tokio::time::timeout(self.config.timeout, async {
            let (stdout, stderr) = tokio::try_join!(
                read_limited(stdout, limit),
                read_stderr(stderr, MAX_STDERR_BYTES)
            )?;
            let status = child.wait().await.map_err(Failure::Io)?;
            Ok::<_, Failure>((stdout, stderr, status))
        })
        .await;
        let (stdout, stderr, status) = match outcome {
            Ok(Ok(finished)) => finished,
            Ok(Err(failure)) => {
                stop(&mut child).await;
                return Err(match failure {
                    Failure::Io(error) => RenderError::Process(error),
                    Failure::TooLarge => RenderError::OutputTooLarge { limit },
                });
            }
            Err(_elapsed) => {
                stop(&mut child).await;
                return Err(RenderError::Timeout(self.config.timeout));
            }
        };
        finish(stdout, &stderr, status)
    }
}

#[async_trait::async_trait]
impl Renderer for HelmRenderer {
    async fn render(&self, request: &RenderRequest<'_>) -> Result<String, RenderError> {
        request.validate()?;
        let scratch = self.scratch()?;
        // The chart is a few hundred KB at most (bounded by the archive limits), so writing it
        // synchronously costs less than handing each file to the blocking pool.
        let chart_dir = write_chart(scratch.path(), request)?;
        let mut args: Vec<String> = vec![
            "template".into(),
            request.release_name.into(),
            chart_dir,
            format!("--namespace={}", request.effective_namespace()),
            "--include-crds".into(),
        ];
        if let Some(kube_version) = &self.config.kube_version {
            args.push(format!("--kube-version={kube_version}"));
        }
        if let Some(values_file) = write_profile_values(scratch.path(), request.profile)? {
            args.push(format!("--values={values_file}"));
        }
        for (key, value) in request.override_values {
            args.push(format!("--set={key}={value}"));
        }
        tracing::debug!(
            chart = %request.chart.name,
            release = request.release_name,
            namespace = request.effective_namespace(),
            overrides = request.override_values.len(),
            "rendering chart with helm template"
        );
        self.run(scratch.path(), &args).await
    }
}

/// Why collecting Helm's output stopped early.
enum Failure {
    Io(std::io::Error),
    TooLarge,
}

async fn stop(child: &mut tokio::process::Child) {
    if let Err(error) = child.start_kill() {
        tracing::debug!(%error, "helm had already exited");
    }
    if let Err(error) = child.wait().await {
        tracing::warn!(%error, "could not reap the helm process");
    }
}

fn finish(stdout: Vec<u8>, stderr: &[u8], status: ExitStatus) -> Result<String, RenderError> {
    let stderr = String::from_utf8_lossy(stderr);
    if !status.success() {
        return Err(RenderError::Helm {
            message: helm_error_message(&stderr),
            exit_code: status.code(),
        });
    }
    if !stderr.trim().is_empty() {
        // Helm reports dropped objects (unknown hooks) and chart warnings here.
        tracing::warn!(stderr = %stderr.trim(), "helm rendered with warnings");
    }
    String::from_utf8(stdout).map_err(|_| RenderError::OutputNotUtf8)
}

/// Helm's error text: from the last `Error: ` line on, without that prefix and the CLI's
/// `--debug` hint; the whole of stderr if Helm printed no such line.
fn helm_error_message(stderr: &str) -> String {
    let start = stderr
        .match_indices("Error: ")
        .filter(|(at, _)| *at == 0 || stderr[..*at].ends_with('\n'))
        .last()
        .map_or(0, |(at, prefix)| at + prefix.len());
    let message = stderr[start..].trim();
    let message = message.strip_suffix(DEBUG_HINT).unwrap_or(message).trim();
    if message.is_empty() {
        "helm exited without an error message".to_owned()
    } else {
        message.to_owned()
    }
}

async fn read_limited<R: AsyncRead + Unpin>(
    mut reader: R,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let mut collected = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = reader.read(&mut chunk).await.map_err(Failure::Io)?;
        if read == 0 {
            return Ok(collected);
        }
        if collected.len() + read > limit {
            return Err(Failure::TooLarge);
        }
        collected.extend_from_slice(&chunk[..read]);
    }
}

/// Keeps the first `limit` bytes and drains the rest, so Helm never blocks on a full pipe.
async fn read_stderr<R: AsyncRead + Unpin>(reader: R, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut kept = Vec::new();
    let mut limited = reader.take(limit as u64);
    limited.read_to_end(&mut kept).await.map_err(Failure::Io)?;
    let mut rest = limited.into_inner();
    tokio::io::copy(&mut rest, &mut tokio::io::sink())
        .await
        .map_err(Failure::Io)?;
    Ok(kept)
}

/// Writes the chart under `<scratch>/chart/`, applies the profile's config resources, and returns
/// the chart directory relative to `scratch`.
fn write_chart(scratch: &Path, request: &RenderRequest<'_>) -> Result<String, RenderError> {
    let chart = request.chart;
    if safe_relative(&chart.root_dir).is_none() || chart.root_dir.contains('/') {
        return Err(RenderError::UnsafePath {
            path: chart.root_dir.clone(),
        });
    }
    let extracted = scratch.join("chart");
    for file in &chart.archive.files {
        let relative = safe_relative(&file.path).ok_or_else(|| RenderError::UnsafePath {
            path: file.path.clone(),
        })?;
        let target = extracted.join(relative);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(RenderError::Workspace)?;
        }
        std::fs::write(&target, &file.contents).map_err(RenderError::Workspace)?;
    }
    if let Some(profile) = request.profile {
        apply_config_resources(&extracted, &chart.root_dir, profile)?;
    }
    Ok(format!("chart/{}", chart.root_dir))
}

/// Copies each `configresource` file over `<extraction root>/<chartpath>`, as upstream does: the
/// destination's directory must exist, and an existing file is replaced.
fn apply_config_resources(
    extracted: &Path,
    root_dir: &str,
    profile: &Profile,
) -> Result<(), RenderError> {
    for resource in &profile.manifest.config_resources {
        let failure = |reason: String| RenderError::ConfigResource {
            file_path: resource.file_path.clone(),
            chart_path: resource.chart_path.clone(),
            reason,
        };
        let contents = profile
            .archive
            .get(&resource.file_path)
            .ok_or_else(|| failure("the profile has no such file".to_owned()))?;
        let relative = safe_relative(&resource.chart_path)
            .ok_or_else(|| failure("the destination is not a safe relative path".to_owned()))?;
        let target = extracted.join(relative);
        let parent_exists = target.parent().is_some_and(Path::is_dir);
        if !parent_exists {
            return Err(failure(
                "its directory does not exist in the chart".to_owned(),
            ));
        }
        if target.is_dir() {
            return Err(failure("it names a directory of the chart".to_owned()));
        }
        if !resource.chart_path.starts_with(&format!("{root_dir}/")) {
            // Upstream writes it beside the chart too, where Helm never reads it.
            tracing::warn!(
                chart_path = %resource.chart_path,
                chart = root_dir,
                "profile config resource lies outside the chart directory and has no effect"
            );
        }
        std::fs::write(&target, &contents.contents).map_err(|error| failure(error.to_string()))?;
    }
    Ok(())
}

/// Writes the profile's override values file under `<scratch>/profile/`, returning its path
/// relative to `scratch` (the prefix keeps Helm from reading a file named `-` as stdin).
fn write_profile_values(
    scratch: &Path,
    profile: Option<&Profile>,
) -> Result<Option<String>, RenderError> {
    let Some(profile) = profile else {
        return Ok(None);
    };
    let values_path = &profile.manifest.values_path;
    let contents = profile
        .values()
        .ok_or_else(|| RenderError::ConfigResource {
            file_path: values_path.clone(),
            chart_path: String::new(),
            reason: "the profile has no such values file".to_owned(),
        })?;
    safe_relative(values_path).ok_or_else(|| RenderError::UnsafePath {
        path: values_path.clone(),
    })?;
    // Helm reads `--values` as CSV, so a comma or quote in the name would split or mangle it;
    // such files get a plain name (other names are kept, for Helm's error messages).
    let plain_name = values_path
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-' | b'/'));
    let relative = if plain_name {
        format!("profile/{values_path}")
    } else {
        "profile/values.yaml".to_owned()
    };
    let target = scratch.join(&relative);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(RenderError::Workspace)?;
    }
    std::fs::write(&target, contents).map_err(RenderError::Workspace)?;
    Ok(Some(relative))
}

/// `path` as a relative path that cannot leave its base directory, or `None`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let safe = !path.is_empty()
        && !path.starts_with('/')
        && !path.contains(['\\', '\0'])
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..");
    safe.then(|| PathBuf::from(path))
}

/// Why `name` is not a DNS-1123 label of at most `max_len` characters, if it is not.
fn dns_label_problem(name: &str, max_len: usize) -> Option<String> {
    if name.is_empty() {
        return Some("it is empty".to_owned());
    }
    if name.len() > max_len {
        return Some(format!("it is longer than {max_len} characters"));
    }
    let valid_chars = name
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    let alphanumeric_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(first, last)| first != b'-' && last != b'-');
    if valid_chars && alphanumeric_ends {
        None
    } else {
        Some(
            "it must be a DNS-1123 label: lower-case letters, digits and '-', starting and \
             ending with a letter or digit"
                .to_owned(),
        )
    }
}

/// The overrides for `app` from a deployment intent group's `spec.overrideValues`
/// (`[{"app": name, "values": {"a.b": "v"}}]`): the first entry naming the app, as upstream
/// picks it, with its values in stored order. Non-string scalar values are passed as their JSON
/// text; nested values and malformed entries are skipped.
pub fn override_values_for_app(
    override_values: &serde_json::Value,
    app: &str,
) -> Vec<(String, String)> {
    let Some(entries) = override_values.as_array() else {
        return Vec::new();
    };
    let Some(values) = entries
        .iter()
        .find(|entry| entry.get("app").and_then(serde_json::Value::as_str) == Some(app))
        .and_then(|entry| entry.get("values"))
        .and_then(serde_json::Value::as_object)
    else {
        return Vec::new();
    };
    values
        .iter()
        .filter_map(|(key, value)| {
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                serde_json::Value::Number(number) => number.to_string(),
                serde_json::Value::Bool(flag) => flag.to_string(),
                _ => return None,
            };
            Some((key.clone(), text))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn release_names_follow_upstream_and_helm_rules() {
        assert_eq!(dns_label_problem("r1", MAX_RELEASE_NAME_LEN), None);
        assert_eq!(
            dns_label_problem("my-release-2", MAX_RELEASE_NAME_LEN),
            None
        );
        for bad in ["", "R1", "r_1", "-r", "r-", "a.b", "r 1", &"a".repeat(54)] {
            assert!(
                dns_label_problem(bad, MAX_RELEASE_NAME_LEN).is_some(),
                "{bad:?} should be rejected"
            );
        }
        assert_eq!(
            dns_label_problem(&"a".repeat(53), MAX_RELEASE_NAME_LEN),
            None
        );
        assert_eq!(dns_label_problem(&"a".repeat(63), MAX_NAMESPACE_LEN), None);
    }

    #[test]
    fn safe_relative_rejects_escapes() {
        assert!(safe_relative("app/templates/x.yaml").is_some());
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "./a",
            "a\\b",
            "a\0b",
            "a/",
        ] {
            assert!(safe_relative(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn helm_error_message_is_cleaned_of_cli_noise() {
        let stderr = "walk.go:75: found symbolic link\nError: template: app/templates/x.yaml:1:10: \
                      executing \"x\" at <.Values.a.b>: nil pointer evaluating interface {}.b\n\n\
                      Use --debug flag to render out invalid YAML\n";
        assert_eq!(
            helm_error_message(stderr),
            "template: app/templates/x.yaml:1:10: executing \"x\" at <.Values.a.b>: nil pointer \
             evaluating interface {}.b"
        );
        assert_eq!(
            helm_error_message("Error: failed parsing --set data: key \"y\" has no value\n"),
            "failed parsing --set data: key \"y\" has no value"
        );
        assert_eq!(helm_error_message("panic: boom\n"), "panic: boom");
        assert_eq!(
            helm_error_message(""),
            "helm exited without an error message"
        );
        // "Error: " inside a line is not the CLI's prefix.
        assert_eq!(helm_error_message("x: Error: inner\n"), "x: Error: inner");
    }

    #[test]
    fn overrides_for_an_app_come_from_its_first_entry_in_order() {
        let overrides = json!([
            {"app": "other", "values": {"x": "1"}},
            {"app": "web", "values": {"b.c": "2", "a": "one", "n": 3, "t": true, "skip": {"k": 1}}},
            {"app": "web", "values": {"ignored": "yes"}}
        ]);
        assert_eq!(
            override_values_for_app(&overrides, "web"),
            [
                ("b.c".to_owned(), "2".to_owned()),
                ("a".to_owned(), "one".to_owned()),
                ("n".to_owned(), "3".to_owned()),
                ("t".to_owned(), "true".to_owned()),
            ]
        );
        assert!(override_values_for_app(&overrides, "missing").is_empty());
        assert!(override_values_for_app(&json!({}), "web").is_empty());
    }

    fn chart() -> Chart {
        Chart {
            name: "demo".to_owned(),
            version: Some("0.1.0".to_owned()),
            root_dir: "demo".to_owned(),
            archive: crate::archive::Archive::default(),
        }
    }

    fn validate(
        release_name: &str,
        namespace: &str,
        override_values: &[(String, String)],
    ) -> Result<(), RenderError> {
        let chart = chart();
        RenderRequest {
            chart: &chart,
            profile: None,
            release_name,
            namespace,
            override_values,
        }
        .validate()
    }

    #[test]
    fn requests_are_validated_before_rendering() {
        assert!(validate("r1", "", &[]).is_ok());
        assert!(validate("r1", "team-a", &[("a.b".to_owned(), "x,y".to_owned())]).is_ok());
        assert!(matches!(
            validate("R1", "", &[]),
            Err(RenderError::InvalidReleaseName { .. })
        ));
        assert!(matches!(
            validate("r1", "--kubeconfig=/x", &[]),
            Err(RenderError::InvalidNamespace { .. })
        ));
        assert!(matches!(
            validate("r1", "", &[(String::new(), "v".to_owned())]),
            Err(RenderError::InvalidOverride { .. })
        ));
        assert!(matches!(
            validate("r1", "", &[("k".to_owned(), "a\0b".to_owned())]),
            Err(RenderError::InvalidOverride { .. })
        ));
    }

    #[test]
    fn effective_namespace_defaults_like_upstream() {
        let chart = chart();
        let mut request = RenderRequest {
            chart: &chart,
            profile: None,
            release_name: "r1",
            namespace: "",
            override_values: &[],
        };
        assert_eq!(request.effective_namespace(), "default");
        request.namespace = "edge";
        assert_eq!(request.effective_namespace(), "edge");
    }
}
