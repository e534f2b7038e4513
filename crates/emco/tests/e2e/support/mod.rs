//! What the deploy end-to-end tests share: the real `emco sim` and `emco serve` processes, the
//! real `emcoctl` and `kubectl` binaries, a small REST client for the hub, generated Helm chart and
//! profile archives, and polling with deadlines.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use reqwest::StatusCode;
use serde_json::Value;

pub mod archive;
#[path = "../../conformance/hub.rs"]
#[allow(dead_code)] // The conformance replay's hub: these tests use only part of it.
pub mod hub;

pub const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/emco-reference"
);

/// Upstream's example files (`examples/...`), unchanged.
pub fn upstream_example(path: &str) -> PathBuf {
    PathBuf::from(format!("{SHARED}/jacobtrvl-emco/examples/{path}"))
}

/// What upstream's setup scripts generate: rendered files, values, and the chart and profile
/// archives (`tarballs/`).
pub fn generated(path: &str) -> PathBuf {
    PathBuf::from(format!("{SHARED}/generated-from-jacobtrvl-emco/{path}"))
}

/// `emcoctl` lives next to `emco` in the target directory; build it if this test ran alone.
pub fn emcoctl_binary() -> anyhow::Result<PathBuf> {
    let emco = Path::new(env!("CARGO_BIN_EXE_emco"));
    let candidate = emco.with_file_name(format!("emcoctl{}", std::env::consts::EXE_SUFFIX));
    if !candidate.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "emcoctl"])
            .status()?;
        if !status.success() {
            bail!("building emcoctl failed");
        }
    }
    Ok(candidate)
}

/// How long a process may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `emco sim`; killed when dropped.
pub struct Sim {
    child: Child,
    /// `http://127.0.0.1:PORT`: the control API lives under `/sim`.
    pub base_url: String,
    pub kubeconfig_dir: PathBuf,
}

impl Sim {
    /// `emco sim --clusters N --prefix P --ready-after D` on a free port.
    pub async fn start(
        scratch: &Path,
        clusters: usize,
        prefix: &str,
        ready_after: &str,
    ) -> anyhow::Result<Sim> {
        Self::start_with(scratch, clusters, prefix, ready_after, &[]).await
    }

    /// [`Sim::start`] with more arguments (`--tls`).
    pub async fn start_with(
        scratch: &Path,
        clusters: usize,
        prefix: &str,
        ready_after: &str,
        extra_args: &[&str],
    ) -> anyhow::Result<Sim> {
        let kubeconfig_dir = scratch.join("kubeconfigs");
        let stdout_path = scratch.join("sim.stdout");
        let stderr_path = scratch.join("sim.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_emco"))
            .arg("sim")
            .args(["--clusters", &clusters.to_string(), "--prefix", prefix])
            .args(["--listen", "127.0.0.1:0", "--ready-after", ready_after])
            .arg("--kubeconfig-dir")
            .arg(&kubeconfig_dir)
            .args(extra_args)
            .stdin(Stdio::null())
            // files, not pipes: nobody drains a pipe and a full one would block the simulator
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .context("spawning emco sim")?;
        let started = Instant::now();
        loop {
            if let Some(exit) = child.try_wait()? {
                bail!(
                    "emco sim exited ({exit}): {}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if let Some((_, url)) = stdout.split_once("clusters ready on ") {
                let base_url = url.split_whitespace().next().unwrap_or_default().to_owned();
                return Ok(Sim {
                    child,
                    base_url,
                    kubeconfig_dir,
                });
            }
            ensure!(
                started.elapsed() < START_TIMEOUT,
                "emco sim did not report ready within {START_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.kubeconfig_dir.join(format!("{cluster}.kubeconfig"))
    }

    /// `PUT /sim/clusters/{cluster}/faults` with `plan`.
    pub async fn set_faults(
        &self,
        client: &reqwest::Client,
        cluster: &str,
        plan: Value,
    ) -> anyhow::Result<()> {
        let response = client
            .put(format!("{}/sim/clusters/{cluster}/faults", self.base_url))
            .json(&plan)
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::OK,
            "setting faults on {cluster}: {}",
            response.status()
        );
        Ok(())
    }

    /// `DELETE /sim/clusters/{cluster}/faults`.
    pub async fn clear_faults(
        &self,
        client: &reqwest::Client,
        cluster: &str,
    ) -> anyhow::Result<()> {
        let response = client
            .delete(format!("{}/sim/clusters/{cluster}/faults", self.base_url))
            .send()
            .await?;
        ensure!(
            response.status() == StatusCode::NO_CONTENT,
            "clearing faults on {cluster}: {}",
            response.status()
        );
        Ok(())
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        // the process may already be gone; nothing useful to do with either error here
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that never goes through a proxy.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()?)
}

/// Starts the hub (with the real Helm, which `hub::Hub::start` passes) and quick retries, so
/// the fault tests converge in seconds.
pub async fn start_hub(scratch: &Path, client: &reqwest::Client) -> anyhow::Result<hub::Hub> {
    start_hub_with(scratch, client, &[]).await
}

/// [`start_hub`] with more `emco serve` arguments.
pub async fn start_hub_with(
    scratch: &Path,
    client: &reqwest::Client,
    extra_args: &[&str],
) -> anyhow::Result<hub::Hub> {
    let data = scratch.join("hub-data");
    std::fs::create_dir_all(&data)?;
    let mut args = vec!["--backoff-ms", "200", "--max-backoff-ms", "1000"];
    args.extend_from_slice(extra_args);
    hub::Hub::start(
        Path::new(env!("CARGO_BIN_EXE_emco")),
        &data,
        scratch,
        client,
        &args,
    )
    .await
}

/// One answer of the hub: status and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: String,
}

impl Answer {
    /// The answer, when its status is `expected`.
    pub fn expect(self, expected: StatusCode, what: &str) -> anyhow::Result<Answer> {
        ensure!(
            self.status == expected,
            "{what}: answered {} (expected {expected}): {}",
            self.status,
            self.body
        );
        Ok(self)
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }
}

/// The hub's REST API (`/v2/...` paths).
pub struct Api {
    pub client: reqwest::Client,
    pub base_url: String,
}

impl Api {
    async fn answer(request: reqwest::RequestBuilder) -> anyhow::Result<Answer> {
        let response = request.send().await?;
        let status = response.status();
        let body = response.text().await?;
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        Self::answer(self.client.get(format!("{}{path}", self.base_url))).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        Self::answer(
            self.client
                .post(format!("{}{path}", self.base_url))
                .json(body),
        )
        .await
    }

    /// `POST` with a `metadata` JSON part and one `file` part, as emcoctl uploads.
    pub async fn post_file(
        &self,
        path: &str,
        metadata: &Value,
        file: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let form = reqwest::multipart::Form::new()
            .text("metadata", metadata.to_string())
            .part(
                "file",
                reqwest::multipart::Part::bytes(file).file_name("archive.tgz"),
            );
        Self::answer(
            self.client
                .post(format!("{}{path}", self.base_url))
                .multipart(form),
        )
        .await
    }

    /// An action without a body (`approve`, `instantiate`, ...).
    pub async fn action(&self, path: &str) -> anyhow::Result<Answer> {
        Self::answer(self.client.post(format!("{}{path}", self.base_url))).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        Self::answer(self.client.delete(format!("{}{path}", self.base_url))).await
    }

    /// `GET {group}/status?{query}` as JSON.
    pub async fn status(&self, group: &str, query: &str) -> anyhow::Result<Value> {
        self.get(&format!("{group}/status?{query}"))
            .await?
            .expect(StatusCode::OK, "status")?
            .json()
    }
}

/// The real `emcoctl` with a config pointing every service at the hub.
pub struct Emcoctl {
    binary: PathBuf,
    config: PathBuf,
}

/// What one `emcoctl` run printed.
#[derive(Debug)]
pub struct CtlOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CtlOutput {
    /// Lines reporting a 4xx or 5xx answer.
    pub fn failures(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.contains(" --> 4") || l.contains(" --> 5"))
            .collect()
    }
}

impl Emcoctl {
    pub fn new(hub_url: &str, scratch: &Path) -> anyhow::Result<Emcoctl> {
        let address = hub_url.trim_start_matches("http://");
        let (host, port) = address.rsplit_once(':').context("hub address")?;
        let mut config = String::new();
        for service in [
            "orchestrator",
            "clm",
            "ncm",
            "ovnaction",
            "dcm",
            "gac",
            "dtc",
            "hpaplacement",
            "sfc",
            "sfcclient",
        ] {
            config.push_str(&format!("{service}:\n  host: {host}\n  port: {port}\n"));
        }
        let path = scratch.join("emco-cfg.yaml");
        std::fs::write(&path, config)?;
        Ok(Emcoctl {
            binary: emcoctl_binary()?,
            config: path,
        })
    }

    pub fn run(&self, args: &[&std::ffi::OsStr]) -> anyhow::Result<CtlOutput> {
        self.run_in(None, args)
    }

    /// Runs in `dir` (upload files named relative to it), as upstream's scripts run in the
    /// example's directory.
    pub fn run_in(
        &self,
        dir: Option<&Path>,
        args: &[&std::ffi::OsStr],
    ) -> anyhow::Result<CtlOutput> {
        let mut command = Command::new(&self.binary);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let output = command
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .output()?;
        Ok(CtlOutput {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// `emcoctl VERB -f FILE -v VALUES` in FILE's directory; fails unless every call succeeded
    /// except the lines starting with one of `allowed` (each with why, at the call site).
    pub fn file(
        &self,
        verb: &str,
        file: &Path,
        values: &Path,
        allowed: &[&str],
    ) -> anyhow::Result<CtlOutput> {
        self.file_in(file.parent(), verb, file, values, allowed)
    }

    /// Like [`Emcoctl::file`], run in `dir` (where the file's relative upload paths resolve).
    pub fn file_in(
        &self,
        dir: Option<&Path>,
        verb: &str,
        file: &Path,
        values: &Path,
        allowed: &[&str],
    ) -> anyhow::Result<CtlOutput> {
        let out = self.run_in(
            dir,
            &[
                verb.as_ref(),
                "-f".as_ref(),
                file.as_os_str(),
                "-v".as_ref(),
                values.as_os_str(),
            ],
        )?;
        let unexpected: Vec<&str> = out
            .failures()
            .into_iter()
            .filter(|l| !allowed.iter().any(|a| l.starts_with(a)))
            .collect();
        let only_allowed = out.code == Some(1) && unexpected.is_empty();
        if out.code != Some(0) && !only_allowed || !unexpected.is_empty() {
            bail!(
                "emcoctl {verb} -f {} failed ({:?}):\n{}\n{}",
                file.display(),
                out.code,
                out.stdout,
                out.stderr
            );
        }
        Ok(out)
    }

    /// `emcoctl status GROUP --watch --interval 250ms --timeout T`.
    pub fn watch(&self, group: &str, timeout: &str) -> anyhow::Result<CtlOutput> {
        self.run(&[
            "status".as_ref(),
            group.as_ref(),
            "--watch".as_ref(),
            "--interval".as_ref(),
            "250ms".as_ref(),
            "--timeout".as_ref(),
            timeout.as_ref(),
        ])
    }
}

/// `kubectl` 1.32 against one simulated cluster: the independent client.
pub struct Kubectl {
    kubeconfig: PathBuf,
    cache_dir: PathBuf,
}

impl Kubectl {
    pub fn new(kubeconfig: PathBuf, scratch: &Path) -> Kubectl {
        Kubectl {
            kubeconfig,
            // one cache per test: parallel tests must not share discovery caches
            cache_dir: scratch.join("kubectl-cache"),
        }
    }

    /// `kubectl get TYPES -A -l emco/deployment-id -o json`: the items.
    pub fn labelled(&self, types: &str) -> anyhow::Result<Vec<Value>> {
        self.get_json(&[types, "-A", "-l", "emco/deployment-id"])
    }

    /// `kubectl ARGS`: its output.
    pub fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache_dir)
            .arg("--request-timeout=10s")
            .args(args)
            .output()
            .context("running kubectl (1.32 is expected on PATH)")?;
        ensure!(
            output.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// `kubectl get ARGS -o json`: the items.
    pub fn get_json(&self, args: &[&str]) -> anyhow::Result<Vec<Value>> {
        let get: Vec<&str> = ["get"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["-o", "json"])
            .collect();
        let list: Value = serde_json::from_str(&self.run(&get)?)?;
        Ok(list["items"].as_array().cloned().unwrap_or_default())
    }
}

/// Polls `probe` every `every` until it gives `Some`, or fails after `timeout` with the last
/// thing `probe` said.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Result<T, String>>>,
{
    let started = Instant::now();
    loop {
        let last = match probe().await? {
            Ok(value) => return Ok(value),
            Err(last) => last,
        };
        if started.elapsed() >= timeout {
            bail!("{what}: not so after {timeout:?}; last: {last}");
        }
        tokio::time::sleep(every).await;
    }
}

pub use archive::tar_gz;

/// A chart `name` with `templates` (file name, text) and `values`.
pub fn chart(name: &str, values: &str, templates: &[(&str, &str)]) -> anyhow::Result<Vec<u8>> {
    let chart_yaml = format!("apiVersion: v2\nname: {name}\ntype: application\nversion: 0.1.0\n");
    let values_path = format!("{name}/values.yaml");
    let chart_path = format!("{name}/Chart.yaml");
    let paths: Vec<String> = templates
        .iter()
        .map(|(file, _)| format!("{name}/templates/{file}"))
        .collect();
    let mut files: Vec<(&str, &str)> = vec![(&chart_path, &chart_yaml), (&values_path, values)];
    for (path, (_, text)) in paths.iter().zip(templates) {
        files.push((path, text));
    }
    tar_gz(&files)
}

/// A profile archive whose `override_values.yaml` is `values`.
pub fn profile(values: &str) -> anyhow::Result<Vec<u8>> {
    tar_gz(&[
        (
            "manifest.yaml",
            "---\nversion: v1\ntype:\n  values: \"override_values.yaml\"\n",
        ),
        ("override_values.yaml", values),
    ])
}

/// A small app: a ConfigMap and a Deployment (which the simulator makes ready after its delay).
pub fn web_chart(name: &str) -> anyhow::Result<Vec<u8>> {
    chart(
        name,
        "greeting: hello\nreplicas: 1\n",
        &[
            (
                "configmap.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-{{ .Chart.Name }}\n\
                 data:\n  greeting: {{ .Values.greeting | quote }}\n",
            ),
            (
                "deployment.yaml",
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}-{{ .Chart.Name }}\n\
                 spec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: {{ .Chart.Name }}}\n\
                 \x20 template:\n    metadata:\n      labels: {app: {{ .Chart.Name }}}\n    spec:\n\
                 \x20     containers:\n      - name: web\n        image: registry.example/web:1.0\n",
            ),
        ],
    )
}

/// Upstream's values file at `source` made real, line by line, as its setup scripts would:
/// - a key `rewrite` answers for (indentation trimmed) gets that value;
/// - `KEY: /path/to/{cluster}.kubeconfig` gets `kubeconfig(cluster)`;
/// - with `archives`, `PackagesPath` and `output/...` point at the generated archives; without,
///   they stay relative, for emcoctl run in a folder with `output` in it, as upstream runs.
pub fn example_values(
    source: &Path,
    archives: bool,
    kubeconfig: impl Fn(&str) -> PathBuf,
    rewrite: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(source).with_context(|| format!("reading {}", source.display()))?;
    let tarballs = generated("tarballs").display().to_string();
    let mut out = String::new();
    for line in text.lines() {
        let (key, value) = line.split_once(':').unwrap_or((line, ""));
        let cluster = value
            .trim()
            .strip_prefix("/path/to/")
            .map(|file| file.trim_end_matches(".kubeconfig"));
        let line = if let Some(value) = rewrite(key.trim()) {
            format!("{key}: {value}")
        } else if let Some(cluster) = cluster {
            format!("{key}: {}", kubeconfig(cluster).display())
        } else if archives && key.trim() == "PackagesPath" {
            format!("{key}: {tarballs}")
        } else if archives {
            line.replace("output/", &format!("{tarballs}/"))
        } else {
            line.to_owned()
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

/// Writes `text` to `path`; returns the path.
pub fn write_file(path: PathBuf, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Seconds since the Unix epoch of an RFC 3339 UTC time (`2026-11-23T16:14:41Z`), as Kubernetes
/// writes them (whole seconds).
pub fn unix_seconds(stamp: &str) -> anyhow::Result<i64> {
    let bad = || anyhow::anyhow!("not an RFC 3339 UTC time: {stamp:?}");
    let (date, time) = stamp.split_once('T').ok_or_else(bad)?;
    let time = time.trim_end_matches('Z');
    let mut date_parts = date.split('-').map(str::parse::<i64>);
    let (Some(Ok(year)), Some(Ok(month)), Some(Ok(day))) =
        (date_parts.next(), date_parts.next(), date_parts.next())
    else {
        return Err(bad());
    };
    let mut time_parts = time
        .split(':')
        .map(|p| p.split('.').next().unwrap_or(p).parse::<i64>());
    let (Some(Ok(hour)), Some(Ok(minute)), Some(Ok(second))) =
        (time_parts.next(), time_parts.next(), time_parts.next())
    else {
        return Err(bad());
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[test]
fn unix_seconds_reads_kubernetes_times() {
    assert_eq!(unix_seconds("1970-01-01T00:00:00Z").unwrap(), 0);
    assert_eq!(unix_seconds("2000-03-01T00:00:10Z").unwrap(), 951_868_810);
    assert_eq!(unix_seconds("2026-11-23T16:14:41Z").unwrap(), 1_795_450_481);
}

/// REST onboarding shared by the end-to-end tests: each step expects upstream's success status.
impl Api {
    /// `POST path` with a JSON body, expecting 201.
    pub async fn create(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        self.post_json(path, body)
            .await?
            .expect(StatusCode::CREATED, path)?;
        Ok(())
    }

    /// `POST path` with `metadata` and one file, expecting 201.
    pub async fn create_file(
        &self,
        path: &str,
        metadata: &Value,
        file: Vec<u8>,
    ) -> anyhow::Result<()> {
        self.post_file(path, metadata, file)
            .await?
            .expect(StatusCode::CREATED, path)?;
        Ok(())
    }

    /// `POST path` without a body (an action), expecting 202.
    pub async fn accepted(&self, path: &str) -> anyhow::Result<()> {
        self.action(path)
            .await?
            .expect(StatusCode::ACCEPTED, path)?;
        Ok(())
    }

    /// Cluster provider `provider` with the simulator's clusters `names`, each labelled `label`.
    pub async fn clusters(
        &self,
        sim: &Sim,
        provider: &str,
        names: &[&str],
        label: Option<&str>,
    ) -> anyhow::Result<()> {
        self.create(
            "/v2/cluster-providers",
            &serde_json::json!({"metadata": {"name": provider}}),
        )
        .await?;
        for name in names {
            let clusters = format!("/v2/cluster-providers/{provider}/clusters");
            self.create_file(
                &clusters,
                &serde_json::json!({"metadata": {"name": name}}),
                std::fs::read(sim.kubeconfig(name))?,
            )
            .await?;
            if let Some(label) = label {
                self.create(
                    &format!("{clusters}/{name}/labels"),
                    &serde_json::json!({"clusterLabel": label}),
                )
                .await?;
            }
        }
        Ok(())
    }

    /// Project `project` with an instantiated admin logical cloud `default` over `clusters`.
    pub async fn project_with_admin_cloud(
        &self,
        project: &str,
        provider: &str,
        clusters: &[&str],
    ) -> anyhow::Result<()> {
        self.create(
            "/v2/projects",
            &serde_json::json!({"metadata": {"name": project}}),
        )
        .await?;
        let cloud = format!("/v2/projects/{project}/logical-clouds");
        self.create(
            &cloud,
            &serde_json::json!({"metadata": {"name": "default"}, "spec": {"level": "0"}}),
        )
        .await?;
        for cluster in clusters {
            self.create(
                &format!("{cloud}/default/cluster-references"),
                &serde_json::json!({"metadata": {"name": cluster},
                        "spec": {"clusterProvider": provider, "cluster": cluster,
                                 "loadbalancerIp": "0.0.0.0"}}),
            )
            .await?;
        }
        self.accepted(&format!("{cloud}/default/instantiate")).await
    }

    /// Version `version` of composite app `ca` with one app (`chart`), a composite profile
    /// `prof` with the app's profile (`replicas: 1`); returns the version's path.
    pub async fn composite_app(
        &self,
        project: &str,
        ca: &str,
        version: &str,
        app: &str,
        chart: Vec<u8>,
    ) -> anyhow::Result<String> {
        self.create(
            &format!("/v2/projects/{project}/composite-apps"),
            &serde_json::json!({"metadata": {"name": ca}, "spec": {"compositeAppVersion": version}}),
        )
        .await?;
        let base = format!("/v2/projects/{project}/composite-apps/{ca}/{version}");
        self.create_file(
            &format!("{base}/apps"),
            &serde_json::json!({"metadata": {"name": app}}),
            chart,
        )
        .await?;
        self.create(
            &format!("{base}/composite-profiles"),
            &serde_json::json!({"metadata": {"name": "prof"}}),
        )
        .await?;
        self.create_file(
            &format!("{base}/composite-profiles/prof/profiles"),
            &serde_json::json!({"metadata": {"name": format!("{app}-profile")}, "spec": {"app": app}}),
            profile("replicas: 1\n")?,
        )
        .await?;
        Ok(base)
    }

    /// Group `dig` (release `r1`, cloud `default`) of the version at `base` placing `app` by
    /// `all_of` (upstream's `allOf` list), with `intents` beside the placement intent (`{}` for
    /// none); returns the group's path.
    pub async fn group(
        &self,
        base: &str,
        dig: &str,
        app: &str,
        all_of: Value,
        intents: Value,
    ) -> anyhow::Result<String> {
        self.create(
            &format!("{base}/deployment-intent-groups"),
            &serde_json::json!({"metadata": {"name": dig},
                    "spec": {"compositeProfile": "prof", "version": "r1", "logicalCloud": "default",
                             "overrideValues": []}}),
        )
        .await?;
        let group = format!("{base}/deployment-intent-groups/{dig}");
        self.create(
            &format!("{group}/generic-placement-intents"),
            &serde_json::json!({"metadata": {"name": "placement"}}),
        )
        .await?;
        self.create(
            &format!("{group}/generic-placement-intents/placement/app-intents"),
            &serde_json::json!({"metadata": {"name": format!("{app}-placement")},
                    "spec": {"app": app, "intent": {"allOf": all_of}}}),
        )
        .await?;
        let mut intent = serde_json::json!({"genericPlacementIntent": "placement"});
        if let (Some(map), Some(extra)) = (intent.as_object_mut(), intents.as_object()) {
            map.extend(extra.clone());
        }
        self.create(
            &format!("{group}/intents"),
            &serde_json::json!({"metadata": {"name": "intents"}, "spec": {"intent": intent}}),
        )
        .await?;
        Ok(group)
    }
}

/// What most end-to-end tests start with: `emco sim` with `clusters` clusters named
/// `{prefix}1…`, a hub, and clients of both, in a scratch directory removed at the end.
pub struct Bed {
    pub client: reqwest::Client,
    pub sim: Sim,
    pub hub: hub::Hub,
    pub api: Api,
    /// Last: removed after the processes above are gone.
    scratch: tempfile::TempDir,
}

impl Bed {
    pub async fn start(clusters: usize, prefix: &str, ready_after: &str) -> anyhow::Result<Bed> {
        Self::start_with(clusters, prefix, ready_after, &[]).await
    }

    /// [`Bed::start`] with more `emco sim` arguments (`--tls`: clusters served over HTTPS, which
    /// client certificates need).
    pub async fn start_with(
        clusters: usize,
        prefix: &str,
        ready_after: &str,
        sim_args: &[&str],
    ) -> anyhow::Result<Bed> {
        let scratch = tempfile::tempdir()?;
        let client = http_client()?;
        let sim = Sim::start_with(scratch.path(), clusters, prefix, ready_after, sim_args).await?;
        let hub = start_hub(scratch.path(), &client).await?;
        let api = Api {
            client: client.clone(),
            base_url: hub.base_url.clone(),
        };
        Ok(Bed {
            client,
            sim,
            hub,
            api,
            scratch,
        })
    }

    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// The real `emcoctl`, configured for this hub.
    pub fn emcoctl(&self) -> anyhow::Result<Emcoctl> {
        Emcoctl::new(&self.hub.base_url, self.scratch())
    }

    /// `kubectl` against one simulated cluster.
    pub fn kubectl(&self, cluster: &str) -> Kubectl {
        Kubectl::new(self.sim.kubeconfig(cluster), self.scratch())
    }
}
