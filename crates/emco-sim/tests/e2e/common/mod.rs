//! Shared test harness: a simulator serving in-process on a free port, with kubeconfigs in a
//! temporary directory, and helpers to drive the real `kubectl` and raw HTTP against it.

pub mod git;

use std::path::PathBuf;
use std::process::Output;
use std::sync::Arc;
use std::time::Duration;

use emco_sim::{RunningSim, Sim, SimOptions};
use serde_json::Value;
use tempfile::TempDir;

/// A running simulator and the files that go with it.
pub struct Harness {
    pub running: RunningSim,
    pub dir: TempDir,
}

impl Harness {
    /// Starts a simulator with `clusters` clusters named `edge-1` … on a free port.
    pub async fn start(clusters: usize) -> Self {
        Self::start_with(clusters, |_| {}).await
    }

    /// Same, with options adjusted by `tune`.
    pub async fn start_with(clusters: usize, tune: impl FnOnce(&mut SimOptions)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SimOptions {
            kubeconfig_dir: Some(dir.path().join("kubeconfigs")),
            ..SimOptions::default()
        };
        tune(&mut options);
        let sim = Sim::new(options);
        sim.add_clusters("edge-", clusters).unwrap();
        let running = emco_sim::spawn(sim, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        Self { running, dir }
    }

    pub fn sim(&self) -> &Arc<Sim> {
        &self.running.sim
    }

    pub fn kubeconfig(&self, cluster: &str) -> PathBuf {
        self.dir
            .path()
            .join("kubeconfigs")
            .join(format!("{cluster}.kubeconfig"))
    }

    /// Runs `kubectl` against `cluster` with a private discovery cache.
    pub async fn kubectl(&self, cluster: &str, args: &[&str]) -> Output {
        let cache = self.dir.path().join("kube-cache");
        tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(self.kubeconfig(cluster))
                .arg("--cache-dir")
                .arg(&cache)
                .args(args)
                .env("HOME", self.dir.path())
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("kubectl finished within a minute")
        .expect("kubectl runs")
    }

    /// Runs `kubectl`, asserting success, and returns its standard output.
    pub async fn kubectl_ok(&self, cluster: &str, args: &[&str]) -> String {
        let output = self.kubectl(cluster, args).await;
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `kubectl` with `stdin` as its input (for `apply -f -`).
    pub async fn kubectl_stdin(&self, cluster: &str, args: &[&str], stdin: &str) -> Output {
        use tokio::io::AsyncWriteExt;
        let cache = self.dir.path().join("kube-cache");
        let mut child = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.kubeconfig(cluster))
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("kubectl runs");
        let mut input = child.stdin.take().unwrap();
        input.write_all(stdin.as_bytes()).await.unwrap();
        drop(input);
        tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finished within a minute")
            .unwrap()
    }

    /// `kubectl apply -f -` of `manifest`, asserting success; returns standard output.
    pub async fn apply(&self, cluster: &str, manifest: &str, extra: &[&str]) -> String {
        let mut args = vec!["apply", "-f", "-"];
        args.extend_from_slice(extra);
        let output = self.kubectl_stdin(cluster, &args, manifest).await;
        assert!(
            output.status.success(),
            "kubectl apply failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The URL of `path` in `cluster`.
    pub fn url(&self, cluster: &str, path: &str) -> String {
        format!("{}/clusters/{cluster}{path}", self.running.url)
    }

    /// A raw HTTP request; returns (status, JSON body or Null).
    pub async fn http(
        &self,
        method: &str,
        url: &str,
        content_type: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        send(method, url, content_type, body).await
    }
}

/// `METHOD url` with an optional body of `content_type`: the status and the JSON answer
/// (`null` when it is not JSON).
pub async fn send(
    method: &str,
    url: &str,
    content_type: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), url);
    if let Some(body) = body {
        request = request
            .header("content-type", content_type)
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
