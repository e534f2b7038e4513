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
use emco_core::gitops;
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

    /// The paths of the files under the folders `prefixes`, as of the last fetch (brought up
    /// to date first), in one walk. A `*` component of a prefix stands for any one folder
    /// (`namespaces/*/p+c/context`), so a walk stays inside the folders asked for instead of
    /// the whole repository.
    pub async fn files_under(&self, prefixes: &[String]) -> Result<Vec<String>, GitError> {
        let mut synced = self.tree.lock().await;
        self.sync_for_read(&mut synced).await?;
        let mut stack: Vec<PathBuf> = prefixes
            .iter()
            .flat_map(|prefix| expand_prefix(&self.dir, prefix))
            .collect();
        let mut found = Vec::new();
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(relative) = path.strip_prefix(&self.dir) {
                    found.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found.dedup();
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

    /// Applies a change to the work tree and returns what it changed there (path → new
    /// content, or `None` for a removal), the derived files included; empty when it changed
    /// nothing.
    fn apply(&self, change: &Change) -> Result<Vec<FileChange>, GitError> {
        let mut done = Vec::new();
        let mut put = |path: &str, content: Option<&Vec<u8>>| -> Result<(), GitError> {
            check_path(path)?;
            let full = self.dir.join(path);
            let current = std::fs::read(&full).ok();
            match content {
                Some(bytes) if current.as_ref() != Some(bytes) => {
                    write_file(&full, bytes)?;
                    done.push((path.to_owned(), Some(bytes.clone())));
                }
                None if current.is_some() => {
                    remove_file(&self.dir, &full);
                    done.push((path.to_owned(), None));
                }
                _ => {}
            }
            Ok(())
        };
        for (path, content) in &change.files {
            put(path, content.as_ref())?;
        }
        for derived in &change.derived {
            let keep = dir_has_files(&self.dir.join(&derived.when_dir_has_files));
            for (path, bytes) in &derived.files {
                put(path, keep.then_some(bytes))?;
            }
        }
        Ok(done)
    }

    /// One batch: from the remote branch, every change as its commit, one push; starts over
    /// when the push is not a fast-forward. The commits are made by one `git fast-import`
    /// (each holding only its own files), not one `git add` + `git commit` per change, which
    /// would read and write the whole index for every change of a large repository.
    async fn write_batch(&self, changes: &[&Change]) -> Result<(), GitError> {
        let mut synced = self.tree.lock().await;
        // Whatever happens below, the clone matches the remote only once a sync or push says so.
        *synced = None;
        let mut last = GitError("no push was tried".into());
        let remote = format!("refs/remotes/origin/{}", self.spec.branch);
        for attempt in 0..PUSH_ATTEMPTS {
            self.sync().await?;
            let fetched = Instant::now();
            let base = self
                .run(&["rev-parse", "--verify", "--quiet", &remote])
                .await
                .ok()
                .map(|sha| sha.trim().to_owned());
            let mut stream = Vec::new();
            stream.extend_from_slice(format!("reset {BATCH_REF}\n").as_bytes());
            if let Some(base) = &base {
                stream.extend_from_slice(format!("from {base}\n\n").as_bytes());
            }
            let mut commits = 0;
            let when = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs());
            for change in changes {
                let files = self.apply(change)?;
                if files.is_empty() {
                    continue;
                }
                commits += 1;
                fast_import_commit(&mut stream, &change.message, when, &files);
            }
            if commits == 0 {
                *synced = Some(fetched);
                return Ok(());
            }
            self.fast_import(stream).await?;
            self.run(&[
                "checkout",
                "--quiet",
                "--force",
                "-B",
                &self.spec.branch,
                BATCH_REF,
            ])
            .await?;
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

    /// Runs `git fast-import` in the clone with `stream` as its input.
    async fn fast_import(&self, stream: Vec<u8>) -> Result<(), GitError> {
        use tokio::io::AsyncWriteExt;
        let mut command = self.git();
        command
            // `--force`: the batch ref is ours and starts over from the remote each time.
            .args(["fast-import", "--quiet", "--done", "--force"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|error| GitError(format!("running git fast-import: {error}")))?;
        let mut stdin = child
            .stdin
            .take()
            .ok_or_else(|| GitError("git fast-import has no input".into()))?;
        let feed = async move {
            stdin.write_all(&stream).await?;
            stdin.write_all(b"done\n").await?;
            stdin.shutdown().await
        };
        let (fed, output) = tokio::time::timeout(GIT_TIMEOUT, async {
            tokio::join!(feed, child.wait_with_output())
        })
        .await
        .map_err(|_| {
            GitError(format!(
                "git fast-import did not finish within {GIT_TIMEOUT:?}"
            ))
        })?;
        let output =
            output.map_err(|error| GitError(format!("running git fast-import: {error}")))?;
        if !output.status.success() {
            return Err(GitError(format!(
                "git fast-import: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        fed.map_err(|error| GitError(format!("feeding git fast-import: {error}")))
    }
}

/// A path and its new content, or `None` for a removal.
type FileChange = (String, Option<Vec<u8>>);

/// The local ref a batch's commits are built on before they become the branch.
const BATCH_REF: &str = "refs/emco/batch";

/// Appends one commit of `files` on [`BATCH_REF`] to a fast-import stream.
fn fast_import_commit(stream: &mut Vec<u8>, message: &str, when: u64, files: &[FileChange]) {
    stream.extend_from_slice(
        format!(
            "commit {BATCH_REF}\ncommitter EMCO <emco@localhost> {when} +0000\ndata {}\n",
            message.len()
        )
        .as_bytes(),
    );
    stream.extend_from_slice(message.as_bytes());
    stream.push(b'\n');
    for (path, content) in files {
        match content {
            Some(bytes) => {
                stream.extend_from_slice(
                    format!("M 100644 inline {path}\ndata {}\n", bytes.len()).as_bytes(),
                );
                stream.extend_from_slice(bytes);
                stream.push(b'\n');
            }
            None => stream.extend_from_slice(format!("D {path}\n").as_bytes()),
        }
    }
    stream.push(b'\n');
}

/// Refuses a path that could leave the clone or confuse fast-import (see
/// [`gitops::plain_repo_path`]); the Git target checks each object's path before staging it,
/// so this is the last line.
fn check_path(path: &str) -> Result<(), GitError> {
    gitops::plain_repo_path(path).map_err(GitError)
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

/// The folders of the clone a prefix names, `*` components matched against what exists.
fn expand_prefix(root: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut dirs = vec![root.to_path_buf()];
    for part in prefix.split('/').filter(|part| !part.is_empty()) {
        dirs = if part == "*" {
            dirs.iter()
                .filter_map(|dir| std::fs::read_dir(dir).ok())
                .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
                .filter(|path| path.is_dir() && !path.ends_with(".git"))
                .collect()
        } else {
            dirs.iter().map(|dir| dir.join(part)).collect()
        };
    }
    dirs
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_star_in_a_prefix_matches_existing_folders_only() {
        let root = tempfile::tempdir().expect("temporary directory");
        for dir in [
            "namespaces/a/p+c/context",
            "namespaces/b/p+other/context",
            ".git/objects",
        ] {
            std::fs::create_dir_all(root.path().join(dir)).expect("folder");
        }
        let mut found: Vec<String> = expand_prefix(root.path(), "namespaces/*/p+c/context")
            .into_iter()
            .filter(|dir| dir.is_dir())
            .filter_map(|dir| {
                dir.strip_prefix(root.path())
                    .ok()
                    .map(|relative| relative.to_string_lossy().into_owned())
            })
            .collect();
        found.sort();
        assert_eq!(found, vec!["namespaces/a/p+c/context".to_owned()]);
        assert_eq!(
            expand_prefix(root.path(), "clusters/p+c/context"),
            vec![root.path().join("clusters/p+c/context")]
        );
        // A star never walks into git's own folder.
        assert!(
            expand_prefix(root.path(), "*")
                .iter()
                .all(|dir| !dir.ends_with(".git"))
        );
    }
}
