//! Driving the simulator's Git server and pull modes from tests: a working copy pushed with the
//! real git CLI, control-API calls, and reads of a cluster's objects.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use super::{Harness, send};

/// `git -C dir ARGS` with no prompts and no system or user configuration.
pub fn git(dir: &Path, args: &[&str]) -> Output {
    std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .unwrap()
}

/// Like [`git`], failing the test when git fails; answers its output.
pub fn git_ok(dir: &Path, args: &[&str]) -> String {
    let output = git(dir, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A working copy of one repository of the simulator's Git server.
pub struct Work {
    pub dir: PathBuf,
}

impl Work {
    pub fn new(base: &Path, name: &str, url_with_credentials: &str) -> Self {
        let dir = base.join(format!("work-{name}"));
        std::fs::create_dir_all(&dir).unwrap();
        git_ok(&dir, &["init", "-q", "-b", "main"]);
        git_ok(&dir, &["config", "user.email", "t@example.com"]);
        git_ok(&dir, &["config", "user.name", "t"]);
        git_ok(&dir, &["remote", "add", "origin", url_with_credentials]);
        Self { dir }
    }

    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, content).unwrap();
    }

    pub fn remove(&self, path: &str) {
        std::fs::remove_file(self.dir.join(path)).unwrap();
    }

    /// Commits everything, pushes, answers the commit's sha.
    pub fn push(&self, message: &str) -> String {
        git_ok(&self.dir, &["add", "-A"]);
        git_ok(&self.dir, &["commit", "-q", "-m", message]);
        git_ok(&self.dir, &["push", "-q", "origin", "main"]);
        git_ok(&self.dir, &["rev-parse", "HEAD"]).trim().to_owned()
    }
}

/// `POST url` with a JSON body.
pub async fn post(url: &str, body: Option<Value>) -> (u16, Value) {
    send("POST", url, "application/json", body).await
}

/// The object at API `path` of `cluster`, `None` when it is not found.
pub async fn get_object(harness: &Harness, cluster: &str, path: &str) -> Option<Value> {
    let url = format!("{}{path}", harness.sim().server_url(cluster));
    let response = reqwest::get(&url).await.unwrap();
    if response.status().as_u16() == 404 {
        return None;
    }
    assert!(response.status().is_success(), "GET {path}");
    Some(response.json().await.unwrap())
}

/// What every pull mode's setup refuses on `edge-1`: a body without its folder field
/// (`folder_field`) or with a URL that is not a string is 400 naming the field; an unknown
/// cluster is 404; a reconcile before setup is 404.
pub async fn check_setup_refusals(
    base: &str,
    mode: &str,
    url: &str,
    folder_field: &str,
    folder: &str,
) {
    let setup = format!("{base}/sim/clusters/edge-1/{mode}");
    let (code, answer) = post(&setup, Some(json!({"url": url}))).await;
    assert_eq!(code, 400, "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(message.contains(&format!("`{folder_field}`")), "{answer}");
    let (code, answer) = post(&setup, Some(json!({"url": 7, folder_field: folder}))).await;
    assert_eq!(code, 400, "{answer}");
    let message = answer["error"].as_str().unwrap_or_default();
    assert!(message.contains("`url`"), "{answer}");
    let unknown = format!("{base}/sim/clusters/nowhere/{mode}");
    let (code, _) = post(&unknown, Some(json!({"url": url, folder_field: folder}))).await;
    assert_eq!(code, 404);
    let (code, _) = post(&format!("{setup}/reconcile"), None).await;
    assert_eq!(code, 404, "not set up yet");
}
