//! One Git repository (and branch) the hub writes: a local clone kept as a cache, one writer
//! task per repository, changes queued by any number of clusters. Each change becomes one commit
//! with its own message; the queued commits go out in one push. A push refused as not a
//! fast-forward (someone else pushed) starts over from the remote branch and re-applies the
//! changes, so nothing is lost and nothing is force-pushed. The real `git` command does the work.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use tokio::process::Command;
use tokio::sync::{Mutex, mpsc, oneshot};
use tracing::{debug, warn};

/// How long one `git` command may take.
const GIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Pushes tried per batch when others keep pushing first.
const PUSH_ATTEMPTS: usize = 8;
/// Reads within this long of the clone matching the remote skip the fetch. The hub is the only
/// writer of its clusters' folders and its own pushes keep the clone current, so a read this
/// fresh sees everything it wrote; a delete of N objects then costs one fetch, not N.
const READ_FRESHNESS: Duration = Duration::from_secs(1);

/// Why a Git operation failed (the message is git's own, credentials removed).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct GitError(pub String);

/// Where the hub writes and as whom.
#[derive(Clone)]
pub struct RepoSpec {
    pub url: String,
    pub branch: String,
    pub user: String,
    pub token: String,
}

impl std::fmt::Debug for RepoSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepoSpec")
            .field("url", &self.url)
            .field("branch", &self.branch)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Files derived from the tree after a change: with `when_dir_has_files` holding any file,
/// `files` are written; else they are removed (an agent's objects for one deployment).
#[derive(Debug, Clone)]
pub struct Derived {
    pub when_dir_has_files: String,
    pub files: Vec<(String, Vec<u8>)>,
}

/// One commit's worth of work.
#[derive(Debug, Clone)]
pub struct Change {
    pub message: String,
    /// Path → new content, or `None` to remove the file.
    pub files: BTreeMap<String, Option<Vec<u8>>>,
    pub derived: Vec<Derived>,
}

struct Queued {
    change: Change,
    done: oneshot::Sender<Result<(), GitError>>,
}

/// A handle on one repository's writer (cheap to clone).
#[derive(Clone)]
pub struct GitRepo {
    spec: Arc<RepoSpec>,
    dir: PathBuf,
    queue: mpsc::UnboundedSender<Queued>,
    /// Held while git runs in the clone (reads of the tree wait for a consistent state); holds
    /// when the clone last matched the remote branch.
    tree: Arc<Mutex<Option<Instant>>>,
}

impl GitRepo {
    /// Starts the writer of `spec`, cloning into `dir` when first needed.
    pub fn start(spec: RepoSpec, dir: PathBuf) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let repo = Self {
            spec: Arc::new(spec),
            dir,
            queue,
            tree: Arc::new(Mutex::new(None)),
        };
        tokio::spawn(writer(repo.clone(), receiver));
        repo
    }

    pub fn spec(&self) -> &RepoSpec {
        &self.spec
    }

    /// Commits and pushes `change`; returns once it is on the remote branch. An empty change
    /// (or one that changes nothing) pushes nothing.
    pub async fn commit(&self, change: Change) -> Result<(), GitError> {
        let (done, result) = oneshot::channel();
        self.queue
            .send(Queued { change, done })
            .map_err(|_| GitError("the repository's writer has stopped".into()))?;
        result
            .await
            .map_err(|_| GitError("the repository's writer has stopped".into()))?
    }

    /// The paths under `prefix` (a folder) whose file name is `file_name`, as of the last
    /// fetch (brought up to date first).
    pub async fn find(&self, prefix: &str, file_name: &str) -> Result<Vec<String>, GitError> {
        let mut synced = self.tree.lock().await;
        self.sync_for_read(&mut synced).await?;
        let root = self.dir.join(prefix);
        let mut found = Vec::new();
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if entry.file_name().to_str() == Some(file_name)
                    && let Ok(relative) = path.strip_prefix(&self.dir)
                {
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Whether folder `dir` holds any file on the branch (brought up to date first).
    pub async fn has_files(&self, dir: &str) -> Result<bool, GitError> {
        let mut synced = self.tree.lock().await;
        self.sync_for_read(&mut synced).await?;
        Ok(dir_has_files(&self.dir.join(dir)))
    }

    /// The content of `path` on the branch as last fetched.
    pub async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, GitError> {
        let mut synced = self.tree.lock().await;
        self.sync_for_read(&mut synced).await?;
        Ok(std::fs::read(self.dir.join(path)).ok())
    }

    fn git(&self) -> Command {
        let mut command = Command::new("git");
        command.current_dir(&self.dir);
        auth_env(&mut command, &self.spec);
        command
    }

    /// Runs git in the clone; the error carries git's message.
    async fn run(&self, args: &[&str]) -> Result<String, GitError> {
        let mut command = self.git();
        command.args(args);
        run(command, &self.spec).await
    }

    /// Brings the clone up to date unless it matched the remote within [`READ_FRESHNESS`].
    async fn sync_for_read(&self, synced: &mut Option<Instant>) -> Result<(), GitError> {
        if synced.is_some_and(|at| at.elapsed() < READ_FRESHNESS) {
            return Ok(());
        }
        *synced = None;
        self.sync().await?;
        *synced = Some(Instant::now());
        Ok(())
    }

    /// Makes the clone exist and match the remote branch (which may not exist yet: an empty
    /// repository gets the branch with the first push).
    async fn sync(&self) -> Result<(), GitError> {
        if !self.dir.join(".git").exists() {
            std::fs::create_dir_all(&self.dir)
                .map_err(|error| GitError(format!("creating {}: {error}", self.dir.display())))?;
            self.run(&["init", "--quiet"]).await?;
            self.run(&["remote", "add", "origin", &self.spec.url])
                .await?;
        }
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", self.spec.branch);
        let fetched = self
            .run(&["fetch", "--quiet", "--no-tags", "origin", &refspec])
            .await;
        let remote = format!("origin/{}", self.spec.branch);
        match fetched {
            Ok(_) => {
                self.run(&["checkout", "--quiet", "-B", &self.spec.branch, &remote])
                    .await?;
                self.run(&["reset", "--quiet", "--hard", &remote]).await?;
            }
            // An empty repository, or one without the branch yet.
            Err(GitError(message)) if message.contains("couldn't find remote ref") => {
                let _ = self
                    .run(&["checkout", "--quiet", "--orphan", &self.spec.branch])
                    .await;
                let _ = self.run(&["rm", "-r", "--quiet", "--cached", "."]).await;
                remove_worktree_files(&self.dir);
            }
            Err(error) => return Err(error),
        }
        self.run(&["clean", "-fdq"]).await?;
        Ok(())
    }

    /// Applies a change to the work tree and commits it; `false` when it changed nothing.
    async fn apply(&self, change: &Change) -> Result<bool, GitError> {
        for (path, content) in &change.files {
            let full = self.dir.join(path);
            match content {
                Some(bytes) => write_file(&full, bytes)?,
                None => remove_file(&self.dir, &full),
            }
        }
        for derived in &change.derived {
            let keep = dir_has_files(&self.dir.join(&derived.when_dir_has_files));
            for (path, bytes) in &derived.files {
                let full = self.dir.join(path);
                if keep {
                    write_file(&full, bytes)?;
                } else {
                    remove_file(&self.dir, &full);
                }
            }
        }
        self.run(&["add", "--all"]).await?;
        if self.run(&["diff", "--cached", "--quiet"]).await.is_ok() {
            return Ok(false);
        }
        self.run(&["commit", "--quiet", "--no-verify", "-m", &change.message])
            .await?;
        Ok(true)
    }

    /// One batch: from the remote branch, every change as its commit, one push; starts over
    /// when the push is not a fast-forward.
    async fn write_batch(&self, changes: &[&Change]) -> Result<(), GitError> {
        let mut synced = self.tree.lock().await;
        // Whatever happens below, the clone matches the remote only once a sync or push says so.
        *synced = None;
        let mut last = GitError("no push was tried".into());
        for attempt in 0..PUSH_ATTEMPTS {
            self.sync().await?;
            let fetched = Instant::now();
            let mut committed = false;
            for change in changes {
                committed |= self.apply(change).await?;
            }
            if !committed {
                *synced = Some(fetched);
                return Ok(());
            }
            let target = format!("HEAD:refs/heads/{}", self.spec.branch);
            match self.run(&["push", "--quiet", "origin", &target]).await {
                Ok(_) => {
                    // The remote is now what the clone holds, as of the fetch before.
                    *synced = Some(fetched);
                    return Ok(());
                }
                Err(GitError(message)) if is_not_fast_forward(&message) => {
                    debug!(url = %self.spec.url, attempt, "push raced another writer; retrying");
                    last = GitError(message);
                    tokio::time::sleep(Duration::from_millis(20 * (attempt as u64 + 1))).await;
                }
                Err(error) => return Err(error),
            }
        }
        Err(last)
    }
}

async fn writer(repo: GitRepo, mut receiver: mpsc::UnboundedReceiver<Queued>) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = receiver.try_recv() {
            batch.push(next);
        }
        let changes: Vec<&Change> = batch.iter().map(|queued| &queued.change).collect();
        let result = repo.write_batch(&changes).await;
        if let Err(error) = &result {
            warn!(url = %repo.spec.url, %error, "writing the repository failed");
        }
        for queued in batch {
            let _ = queued.done.send(result.clone());
        }
    }
}

fn is_not_fast_forward(message: &str) -> bool {
    ["non-fast-forward", "fetch first", "rejected", "stale info"]
        .iter()
        .any(|sign| message.contains(sign))
}

/// Credentials go in an HTTP header through git's environment: never on disk, in the URL or in
/// the process arguments.
fn auth_env(command: &mut Command, spec: &RepoSpec) {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", spec.user, spec.token));
    command
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_COUNT", "4")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {basic}"),
        )
        .env("GIT_CONFIG_KEY_1", "user.name")
        .env("GIT_CONFIG_VALUE_1", "EMCO")
        .env("GIT_CONFIG_KEY_2", "user.email")
        .env("GIT_CONFIG_VALUE_2", "emco@localhost")
        .env("GIT_CONFIG_KEY_3", "init.defaultBranch")
        .env("GIT_CONFIG_VALUE_3", &spec.branch)
        .stdin(Stdio::null())
        .kill_on_drop(true);
}

async fn run(mut command: Command, spec: &RepoSpec) -> Result<String, GitError> {
    let output = tokio::time::timeout(GIT_TIMEOUT, command.output())
        .await
        .map_err(|_| GitError(format!("git did not finish within {GIT_TIMEOUT:?}")))?
        .map_err(|error| GitError(format!("running git: {error}")))?;
    if output.status.success() {
        return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
    }
    let mut message = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if message.is_empty() {
        message = format!("git exited with {}", output.status);
    }
    // Git never prints the header, but a URL may carry the token; a very short token would
    // garble every message, and says little anyway.
    if spec.token.len() >= 4 {
        message = message.replace(&spec.token, "***");
    }
    // With credentials in a header, git reports a refusal as a failed prompt: say what it is.
    if message.contains("terminal prompts disabled") || message.contains("Authentication failed") {
        message = format!(
            "the server refused user {}'s token for {} ({message})",
            spec.user, spec.url
        );
    }
    Err(GitError(message))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), GitError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| GitError(format!("creating {}: {error}", parent.display())))?;
    }
    std::fs::write(path, bytes)
        .map_err(|error| GitError(format!("writing {}: {error}", path.display())))
}

/// Removes a file and the folders it leaves empty (Git keeps no empty folders either).
fn remove_file(root: &Path, path: &Path) {
    let _ = std::fs::remove_file(path);
    let mut dir = path.parent();
    while let Some(current) = dir {
        if current == root || std::fs::remove_dir(current).is_err() {
            break;
        }
        dir = current.parent();
    }
}

fn dir_has_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| !entry.path().is_dir() || dir_has_files(&entry.path()))
}

fn remove_worktree_files(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name() == ".git" {
            continue;
        }
        let path = entry.path();
        let _ = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
    }
}
