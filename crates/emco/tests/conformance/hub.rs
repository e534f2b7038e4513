//! Running the real `emco serve` binary on a free local port for the replay.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL: Duration = Duration::from_millis(100);

/// A hub process; killed when dropped.
pub struct Hub {
    child: Child,
    pub base_url: String,
    stderr_path: PathBuf,
}

impl Hub {
    /// Starts `binary serve --listen 127.0.0.1:PORT --data DATA_DIR --helm HELM` and waits for
    /// `GET /healthz` == 200.
    pub async fn start(
        binary: &Path,
        data_dir: &Path,
        log_dir: &Path,
        client: &reqwest::Client,
        extra_args: &[&str],
    ) -> anyhow::Result<Hub> {
        let port = free_port()?;
        let listen = format!("127.0.0.1:{port}");
        let stderr_path = log_dir.join("hub.stderr");
        let stdout_path = log_dir.join("hub.stdout");
        let helm = helm_binary()?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--listen")
            .arg(&listen)
            .arg("--data")
            .arg(data_dir)
            .arg("--helm")
            .arg(&helm)
            .args(extra_args)
            .stdin(Stdio::null())
            // files, not pipes: nobody drains a pipe during the replay and a full one would block the hub
            .stdout(File::create(&stdout_path)?)
            .stderr(File::create(&stderr_path)?)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let mut hub = Hub {
            child,
            base_url: format!("http://{listen}"),
            stderr_path,
        };
        hub.wait_ready(client).await?;
        Ok(hub)
    }

    async fn wait_ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = format!("{}/healthz", self.base_url);
        let mut last = String::from("no attempt yet");
        while started.elapsed() < READY_TIMEOUT {
            if let Some(exit) = self.child.try_wait()? {
                bail!(
                    "the hub exited before becoming ready ({exit}); its stderr:\n{}",
                    self.stderr()
                );
            }
            match client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
            {
                Ok(response) if response.status() == reqwest::StatusCode::OK => return Ok(()),
                Ok(response) => last = format!("status {}", response.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(READY_POLL).await;
        }
        bail!(
            "GET {url} did not answer 200 within {READY_TIMEOUT:?} (last: {last}); the hub's stderr:\n{}",
            self.stderr()
        )
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path)
            .unwrap_or_else(|e| format!("(cannot read stderr: {e})"))
    }

    /// `Some(status)` once the process has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // the hub may already be gone; nothing useful to do with either error here
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `helm` the hub renders the corpus's charts with: `EMCO_HELM_BIN`, `helm` on `PATH`, or the
/// workspace's pinned copy that `scripts/ensure-deps.sh` installs in `.tools/bin`.
fn helm_binary() -> anyhow::Result<PathBuf> {
    if let Some(found) = emco_helm::find_helm() {
        return Ok(found);
    }
    let pinned = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bin/helm");
    ensure!(
        pinned.is_file(),
        "no helm binary: set EMCO_HELM_BIN, put helm on PATH, or run scripts/ensure-deps.sh"
    );
    Ok(pinned)
}

/// Asks the OS for a free port; the small window before the hub binds it is acceptable for a test.
fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
