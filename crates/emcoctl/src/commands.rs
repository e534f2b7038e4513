//! The command line: upstream emcoctl's commands and flags, the calls each command makes for a set of resources,
//! and the output a person reads.
//!
//! Behaviour kept from upstream: `apply` POSTs every document to its anchor; `update` PUTs to the resource's own
//! URL; `get` GETs it; `delete` walks the documents in reverse, turns a trailing `instantiate` or `apply` into a
//! POST to `terminate`, and skips `approve`, `status`, `migrate`, `update` and `rollback`. A 409 is a failure like
//! any other status outside 2xx (upstream does not retry with PUT). `-s` stops at the first failed status;
//! a transport error (service unreachable) always stops. `-w N` sleeps N seconds after each 202.
//!
//! Differences: every `-f` file is used (upstream reads only the first), values files are merged, upload files
//! are all read before the first call, and the exit code is 1 when any call failed, 2 when the input is unusable.
//! One addition: `status` shows (and with `--watch` follows) the deploy progress of deployment intent groups;
//! see [`crate::status`].

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgAction, Args, Parser, Subcommand};
use reqwest::Method;

use crate::client::{Client, FilePart, Payload, Request, Response};
use crate::config::{Config, ConfigSource};
use crate::resource::{self, Resource, last_segment};
use crate::routing::normalize_anchor;
use crate::status::StatusArgs;

/// Exit code when every call succeeded.
pub const EXIT_OK: u8 = 0;
/// Exit code when a call failed: a status outside 2xx, or the service could not be reached.
pub const EXIT_CALL_FAILED: u8 = 1;
/// Exit code when the input (flags, config, files, templates) could not be used; nothing was sent.
pub const EXIT_BAD_INPUT: u8 = 2;

/// CLI for EMCO: reads upstream emcoctl's config, resource files, values files and flags unchanged.
#[derive(Debug, Parser)]
#[command(name = "emcoctl", version, about, long_about = None)]
pub struct Cli {
    /// Config file with each service's host and port [default: $HOME/.emco.yaml]
    #[arg(long, global = true, value_name = "FILE", env = "EMCOCTL_CONFIG")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub options: Options,

    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts, before or after the command name (as upstream's flag parser allows).
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Resource file (repeatable, or comma-separated)
    #[arg(
        short = 'f',
        long = "filename",
        global = true,
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub filename: Vec<PathBuf>,

    /// Values file: the resource files are Go templates rendered with these values (repeatable; merged)
    #[arg(
        short = 'v',
        long = "values",
        global = true,
        value_delimiter = ',',
        value_name = "FILE"
    )]
    pub values: Vec<PathBuf>,

    /// Bearer token for the EMCO API (the first one is used)
    #[arg(
        short = 't',
        long = "token",
        global = true,
        value_delimiter = ',',
        value_name = "TOKEN"
    )]
    pub token: Vec<String>,

    /// Stop at the first call that fails
    #[arg(
        short = 's',
        long = "stop",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        default_value = "false",
        hide_default_value = true,
        hide_possible_values = true,
        action = ArgAction::Set,
    )]
    pub stop: bool,

    /// Seconds to wait after a call is accepted (202)
    #[arg(
        short = 'w',
        long = "waitTime",
        global = true,
        default_value_t = 0,
        value_name = "SECONDS"
    )]
    pub wait_time: u64,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Create (POST) the resources in the files, or POST an anchor with no body (e.g. .../instantiate)
    Apply {
        /// Anchor to POST without a body, used when no -f is given
        anchor: Option<String>,
    },
    /// Get the resources in the files, or an anchor (a list, a resource, a status query)
    Get {
        /// Anchor to GET, used when no -f is given
        anchor: Option<String>,
    },
    /// Delete the resources in the files (in reverse order), or an anchor
    Delete {
        /// Anchor to DELETE, used when no -f is given
        anchor: Option<String>,
    },
    /// Update (PUT) the resources in the files
    Update {
        /// Not supported: update needs -f
        anchor: Option<String>,
    },
    /// Show the deploy progress of deployment intent groups; --watch follows it until everything is ready
    Status(StatusArgs),
    /// Watch status notifications (upstream uses gRPC; not implemented yet)
    Watch {
        /// Status anchor and filters
        args: Vec<String>,
    },
}

/// What a command does with resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Get,
    Delete,
    Update,
}

/// Anchors naming a lifecycle action rather than a resource.
const ACTIONS_WITHOUT_PUT: &[&str] = &[
    "instantiate",
    "apply",
    "approve",
    "terminate",
    "migrate",
    "update",
    "rollback",
];
const ACTIONS_WITHOUT_GET: &[&str] = &[
    "instantiate",
    "apply",
    "approve",
    "terminate",
    "migrate",
    "update",
    "rollback",
    "stop",
];
const ACTIONS_WITHOUT_DELETE: &[&str] = &["approve", "status", "migrate", "update", "rollback"];
/// Collections whose items answer GET with multipart content unless asked for JSON.
const MULTIPART_COLLECTIONS: &[&str] = &[
    "apps",
    "profiles",
    "clusters",
    "resources",
    "customizations",
];

/// One step of a plan: a call, or a document the command has nothing to do for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Call(PlannedCall),
    Skip {
        method: Method,
        anchor: String,
        reason: String,
    },
}

/// A call whose upload files are not read yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedCall {
    pub method: Method,
    pub anchor: String,
    pub body: PlannedBody,
    pub accept_json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlannedBody {
    None,
    Json(String),
    /// Files go in parts named `field`; upstream names a lone `file:` upload "filename" and `files:` uploads by
    /// their base names.
    Multipart {
        metadata: String,
        field: &'static str,
        files: Vec<PathBuf>,
    },
}

fn call(method: Method, anchor: String, body: PlannedBody) -> Step {
    let accept_json = method == Method::GET && wants_json(&anchor);
    Step::Call(PlannedCall {
        method,
        anchor,
        body,
        accept_json,
    })
}

fn wants_json(anchor: &str) -> bool {
    let path = anchor.split('?').next().unwrap_or(anchor);
    let segments: Vec<&str> = path.split('/').collect();
    segments.len() >= 3 && MULTIPART_COLLECTIONS.contains(&segments[segments.len() - 2])
}

fn upload_body(resource: &Resource) -> Option<PlannedBody> {
    let metadata = resource.body();
    if let Some(file) = &resource.file {
        return Some(PlannedBody::Multipart {
            metadata,
            field: "file",
            files: vec![file.clone()],
        });
    }
    if !resource.files.is_empty() {
        return Some(PlannedBody::Multipart {
            metadata,
            field: "files",
            files: resource.files.clone(),
        });
    }
    None
}

/// The steps `operation` takes for the documents, in the order it takes them.
pub fn plan(operation: Operation, resources: &[Resource]) -> Vec<Step> {
    match operation {
        Operation::Delete => resources
            .iter()
            .rev()
            .map(|r| plan_one(operation, r))
            .collect(),
        _ => resources.iter().map(|r| plan_one(operation, r)).collect(),
    }
}

fn plan_one(operation: Operation, resource: &Resource) -> Step {
    let action = last_segment(&resource.anchor);
    let skip = |method: Method, reason: &str| Step::Skip {
        method,
        anchor: resource.anchor.clone(),
        reason: reason.to_string(),
    };
    match operation {
        Operation::Apply => {
            let body = upload_body(resource).unwrap_or_else(|| PlannedBody::Json(resource.body()));
            call(Method::POST, resource.anchor.clone(), body)
        }
        Operation::Update => match upload_body(resource) {
            Some(body) => call(Method::PUT, resource.item_anchor(), body),
            None if ACTIONS_WITHOUT_PUT.contains(&action) => {
                skip(Method::PUT, &format!("nothing to update for {action}"))
            }
            None => call(
                Method::PUT,
                resource.item_anchor(),
                PlannedBody::Json(resource.body()),
            ),
        },
        Operation::Get => {
            if ACTIONS_WITHOUT_GET.contains(&action) {
                skip(Method::GET, &format!("nothing to get for {action}"))
            } else {
                call(Method::GET, resource.item_anchor(), PlannedBody::None)
            }
        }
        Operation::Delete => {
            if action == "instantiate" || action == "apply" {
                let base = resource
                    .anchor
                    .strip_suffix(action)
                    .unwrap_or(&resource.anchor);
                call(
                    Method::POST,
                    format!("{base}terminate"),
                    PlannedBody::Json(String::new()),
                )
            } else if ACTIONS_WITHOUT_DELETE.contains(&action) {
                skip(Method::DELETE, &format!("nothing to delete for {action}"))
            } else {
                call(Method::DELETE, resource.item_anchor(), PlannedBody::None)
            }
        }
    }
}

/// Reads the upload files of every call, so a missing file stops the run before anything is sent.
pub fn read_uploads(steps: &[Step]) -> Result<Vec<Option<Request>>, Vec<String>> {
    let mut problems = Vec::new();
    let mut requests = Vec::new();
    for step in steps {
        let Step::Call(planned) = step else {
            requests.push(None);
            continue;
        };
        let payload = match &planned.body {
            PlannedBody::None => Payload::None,
            PlannedBody::Json(body) => Payload::Json(body.clone()),
            PlannedBody::Multipart {
                metadata,
                field,
                files,
            } => {
                let mut parts = Vec::new();
                for path in files {
                    match read_upload(path) {
                        Ok(bytes) => parts.push(FilePart {
                            field: (*field).to_string(),
                            filename: upload_filename(field, path),
                            bytes,
                        }),
                        Err(problem) => {
                            problems.push(format!("{} (for {})", problem, planned.anchor))
                        }
                    }
                }
                Payload::Multipart {
                    metadata: metadata.clone(),
                    parts,
                }
            }
        };
        requests.push(Some(Request {
            method: planned.method.clone(),
            anchor: planned.anchor.clone(),
            payload,
            accept_json: planned.accept_json,
        }));
    }
    if problems.is_empty() {
        Ok(requests)
    } else {
        Err(problems)
    }
}

fn read_upload(path: &Path) -> Result<Vec<u8>, String> {
    if path.is_dir() {
        return Err(format!(
            "cannot upload {}: it is a directory",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|err| format!("cannot read upload file {}: {err}", path.display()))
}

fn upload_filename(field: &str, path: &Path) -> String {
    if field == "file" {
        return "filename".to_string();
    }
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

impl Cli {
    pub async fn run(self) -> ExitCode {
        // Not locked for the whole run: a watch's progress bars draw to stdout from their own thread.
        let mut out = std::io::stdout();
        let tty = out.is_terminal();
        let code = self.run_with(&mut out, tty).await;
        let _ = out.flush();
        ExitCode::from(code)
    }

    /// Runs the command, writing the call log to `out` and problems to stderr; returns the exit code.
    pub async fn run_to(self, out: &mut dyn Write) -> u8 {
        self.run_with(out, false).await
    }

    /// As [`Cli::run_to`]; `tty` says `out` is a terminal (then `status --watch` draws progress bars).
    pub async fn run_with(self, out: &mut dyn Write, tty: bool) -> u8 {
        let Cli {
            config,
            options,
            command,
        } = self;
        let (operation, anchor) = match command {
            Command::Apply { anchor } => (Operation::Apply, anchor),
            Command::Get { anchor } => (Operation::Get, anchor),
            Command::Delete { anchor } => (Operation::Delete, anchor),
            Command::Update { anchor } => (Operation::Update, anchor),
            Command::Status(args) => {
                return crate::status::run(args, &options, config.as_deref(), out, tty).await;
            }
            Command::Watch { .. } => {
                eprintln!(
                    "error: emcoctl watch (gRPC status notifications) is not implemented yet; use `emcoctl status --watch <group>`"
                );
                return EXIT_BAD_INPUT;
            }
        };

        let (config, config_notice) = match load_config(config.as_deref()) {
            Ok(loaded) => loaded,
            Err(code) => return code,
        };

        let steps = if !options.filename.is_empty() {
            match load_files(&options) {
                Ok(resources) => plan(operation, &resources),
                Err(code) => return code,
            }
        } else if let Some(anchor) = anchor {
            let anchor = normalize_anchor(&anchor).to_string();
            match operation {
                Operation::Apply => {
                    vec![call(Method::POST, anchor, PlannedBody::Json(String::new()))]
                }
                Operation::Get => vec![call(Method::GET, anchor, PlannedBody::None)],
                Operation::Delete => vec![call(Method::DELETE, anchor, PlannedBody::None)],
                Operation::Update => {
                    eprintln!(
                        "error: update needs resource files: emcoctl update -f FILE [-v VALUES]"
                    );
                    return EXIT_BAD_INPUT;
                }
            }
        } else {
            let name = format!("{operation:?}").to_lowercase();
            eprintln!(
                "error: give resource files (-f FILE) or an anchor; see 'emcoctl {name} --help'"
            );
            return EXIT_BAD_INPUT;
        };

        let requests = match read_uploads(&steps) {
            Ok(requests) => requests,
            Err(problems) => {
                for problem in problems {
                    eprintln!("error: {problem}");
                }
                return EXIT_BAD_INPUT;
            }
        };
        let token = options.token.first().cloned();
        let client = match Client::new(config, token) {
            Ok(client) => client,
            Err(err) => {
                eprintln!("error: {err}");
                return EXIT_BAD_INPUT;
            }
        };
        // Every URL is resolved before the first call, so an anchor no configured service serves stops the run
        // before it changes anything.
        let mut unroutable = false;
        for request in requests.iter().flatten() {
            if let Err(err) = client.url(&request.anchor) {
                eprintln!("error: {}: {err}", request.anchor);
                unroutable = true;
            }
        }
        if unroutable {
            return EXIT_BAD_INPUT;
        }
        eprintln!("{config_notice}");
        execute(&client, &steps, requests, &options, out).await
    }
}

/// Reads the config (`--config`, else `$HOME/.emco.*`, else defaults) and the notice saying which was used;
/// on failure the problem is on stderr and the exit code is returned.
pub(crate) fn load_config(explicit: Option<&Path>) -> Result<(Config, String), u8> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let config = Config::load(explicit, home.as_deref()).map_err(|err| {
        eprintln!("error: {err}");
        EXIT_BAD_INPUT
    })?;
    let notice = match &config.source {
        ConfigSource::File(path) => format!("Using config file: {}", path.display()),
        ConfigSource::Defaults => {
            "No config file found; using localhost:9015 for every service".to_string()
        }
    };
    Ok((config, notice))
}

/// Loads the `-f` files (rendered with the `-v` values), warning on stderr about template keys without a
/// value; on failure the problem is on stderr and the exit code is returned.
pub(crate) fn load_files(options: &Options) -> Result<Vec<Resource>, u8> {
    let loaded = resource::load(&options.filename, &options.values).map_err(|err| {
        eprintln!("error: {err}");
        EXIT_BAD_INPUT
    })?;
    for (path, key) in &loaded.missing_keys {
        eprintln!(
            "warning: {}:{}: no value for {} in the values files; rendered as \"<no value>\"",
            path.display(),
            key.line,
            key.key
        );
    }
    Ok(loaded.resources)
}

/// Sends the requests in order, printing each call; returns the exit code.
async fn execute(
    client: &Client,
    steps: &[Step],
    requests: Vec<Option<Request>>,
    options: &Options,
    out: &mut dyn Write,
) -> u8 {
    let mut failed = false;
    for (step, request) in steps.iter().zip(requests) {
        let request = match (step, request) {
            (
                Step::Skip {
                    method,
                    anchor,
                    reason,
                },
                _,
            ) => {
                let _ = writeln!(out, "{method} /v2/{anchor} --> skipped ({reason})");
                continue;
            }
            (Step::Call(_), Some(request)) => request,
            (Step::Call(_), None) => continue,
        };
        let path = display_path(client, &request.anchor);
        match client.send(&request).await {
            Ok(response) => {
                let _ = writeln!(
                    out,
                    "{} {path} --> {}",
                    request.method,
                    status_text(&response)
                );
                write_body(out, &response);
                if response.status.is_success() {
                    if response.status == reqwest::StatusCode::ACCEPTED && options.wait_time > 0 {
                        let _ = writeln!(out, "Accepted; waiting {} s", options.wait_time);
                        let _ = out.flush();
                        tokio::time::sleep(Duration::from_secs(options.wait_time)).await;
                    }
                } else {
                    failed = true;
                    if options.stop {
                        let _ = writeln!(out, "Stopping at the first failure (--stop)");
                        break;
                    }
                }
            }
            Err(err) => {
                let _ = writeln!(out, "{} {path} --> error: {err}", request.method);
                failed = true;
                // Like upstream, a call that never got an answer ends the run whatever -s says.
                break;
            }
        }
        let _ = out.flush();
    }
    if failed { EXIT_CALL_FAILED } else { EXIT_OK }
}

/// The URL path (and query) of an anchor's request, for the call log.
fn display_path(client: &Client, anchor: &str) -> String {
    match client.url(anchor) {
        Ok(url) => match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_string(),
        },
        Err(_) => format!("/v2/{anchor}"),
    }
}

fn status_text(response: &Response) -> String {
    match response.status.canonical_reason() {
        Some(reason) => format!("{} {reason}", response.status.as_u16()),
        None => response.status.as_u16().to_string(),
    }
}

/// Writes a response body for a person: JSON pretty-printed, text as is, other bytes summarised.
fn write_body(out: &mut dyn Write, response: &Response) {
    let body = &response.body;
    if body.is_empty() {
        return;
    }
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(body)
        && let Ok(pretty) = serde_json::to_string_pretty(&json)
    {
        let _ = writeln!(out, "{pretty}");
        return;
    }
    match std::str::from_utf8(body) {
        Ok(text) if !text.contains('\0') => {
            let _ = writeln!(out, "{}", text.trim_end());
        }
        _ => {
            let content_type = response
                .content_type
                .as_deref()
                .unwrap_or("unknown content type");
            let _ = writeln!(out, "({} bytes of {content_type})", body.len());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::parse_documents;

    fn resources(text: &str) -> Vec<Resource> {
        parse_documents(Path::new("r.yaml"), text, false).unwrap()
    }

    fn summary(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|step| match step {
                Step::Call(c) => {
                    let body = match &c.body {
                        PlannedBody::None => "-".to_string(),
                        PlannedBody::Json(b) if b.is_empty() => "empty".to_string(),
                        PlannedBody::Json(_) => "json".to_string(),
                        PlannedBody::Multipart { field, files, .. } => {
                            format!("{field}:{}", files.len())
                        }
                    };
                    format!(
                        "{} {} {body}{}",
                        c.method,
                        c.anchor,
                        if c.accept_json { " accept-json" } else { "" }
                    )
                }
                Step::Skip { method, anchor, .. } => format!("skip {method} {anchor}"),
            })
            .collect()
    }

    const DOCS: &str = "resourceContext: {anchor: projects}\nmetadata: {name: p}\n---\nresourceContext: {anchor: projects/p/composite-apps}\nmetadata: {name: ca}\nspec: {compositeAppVersion: v1}\n---\nresourceContext: {anchor: projects/p/composite-apps/ca/v1/apps}\nmetadata: {name: app}\nfile: app.tgz\n---\nresourceContext: {anchor: projects/p/composite-apps/ca/v1/deployment-intent-groups/d/approve}\n---\nresourceContext: {anchor: projects/p/composite-apps/ca/v1/deployment-intent-groups/d/instantiate}\n---\nresourceContext: {anchor: cluster-providers/cp/clusters/c/labels}\nclusterLabel: edge\n---\nresourceContext: {anchor: cluster-providers/cp/clusters/c/apply}\n";

    #[test]
    fn apply_posts_every_document_in_order() {
        assert_eq!(
            summary(&plan(Operation::Apply, &resources(DOCS))),
            [
                "POST projects json",
                "POST projects/p/composite-apps json",
                "POST projects/p/composite-apps/ca/v1/apps file:1",
                "POST projects/p/composite-apps/ca/v1/deployment-intent-groups/d/approve json",
                "POST projects/p/composite-apps/ca/v1/deployment-intent-groups/d/instantiate json",
                "POST cluster-providers/cp/clusters/c/labels json",
                "POST cluster-providers/cp/clusters/c/apply json",
            ]
        );
    }

    #[test]
    fn delete_runs_in_reverse_terminates_and_skips() {
        assert_eq!(
            summary(&plan(Operation::Delete, &resources(DOCS))),
            [
                "POST cluster-providers/cp/clusters/c/terminate empty",
                "DELETE cluster-providers/cp/clusters/c/labels/edge -",
                "POST projects/p/composite-apps/ca/v1/deployment-intent-groups/d/terminate empty",
                "skip DELETE projects/p/composite-apps/ca/v1/deployment-intent-groups/d/approve",
                "DELETE projects/p/composite-apps/ca/v1/apps/app -",
                "DELETE projects/p/composite-apps/ca/v1 -",
                "DELETE projects/p -",
            ]
        );
    }

    #[test]
    fn update_puts_to_the_resource_and_skips_actions() {
        assert_eq!(
            summary(&plan(Operation::Update, &resources(DOCS))),
            [
                "PUT projects/p json",
                "PUT projects/p/composite-apps/ca/v1 json",
                "PUT projects/p/composite-apps/ca/v1/apps/app file:1",
                "skip PUT projects/p/composite-apps/ca/v1/deployment-intent-groups/d/approve",
                "skip PUT projects/p/composite-apps/ca/v1/deployment-intent-groups/d/instantiate",
                "PUT cluster-providers/cp/clusters/c/labels/edge json",
                "skip PUT cluster-providers/cp/clusters/c/apply",
            ]
        );
    }

    #[test]
    fn get_asks_multipart_collections_for_json() {
        assert_eq!(
            summary(&plan(Operation::Get, &resources(DOCS))),
            [
                "GET projects/p -",
                "GET projects/p/composite-apps/ca/v1 -",
                "GET projects/p/composite-apps/ca/v1/apps/app - accept-json",
                "skip GET projects/p/composite-apps/ca/v1/deployment-intent-groups/d/approve",
                "skip GET projects/p/composite-apps/ca/v1/deployment-intent-groups/d/instantiate",
                "GET cluster-providers/cp/clusters/c/labels/edge -",
                "skip GET cluster-providers/cp/clusters/c/apply",
            ]
        );
        assert!(wants_json("cluster-providers/cp/clusters/c1"));
        assert!(!wants_json("cluster-providers/cp/clusters"));
    }

    #[test]
    fn uploads_are_read_up_front_and_named_like_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one.json");
        std::fs::write(&one, "{}").unwrap();
        let text = format!(
            "resourceContext: {{anchor: a/apps}}\nmetadata: {{name: x}}\nfile: {one}\n---\nresourceContext: {{anchor: a/customizations}}\nmetadata: {{name: y}}\nfiles: [{one}, {one}]\n",
            one = one.display()
        );
        let requests = read_uploads(&plan(Operation::Apply, &resources(&text))).unwrap();
        let names: Vec<Vec<(String, String)>> = requests
            .iter()
            .map(|request| match &request.as_ref().unwrap().payload {
                Payload::Multipart { parts, .. } => parts
                    .iter()
                    .map(|p| (p.field.clone(), p.filename.clone()))
                    .collect(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            vec![
                vec![("file".to_string(), "filename".to_string())],
                vec![
                    ("files".to_string(), "one.json".to_string()),
                    ("files".to_string(), "one.json".to_string())
                ],
            ]
        );
        let missing = resources(
            "resourceContext: {anchor: a/apps}\nmetadata: {name: x}\nfile: /no/such.tgz\n",
        );
        let problems = read_uploads(&plan(Operation::Apply, &missing)).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("cannot read upload file /no/such.tgz"),
            "{problems:?}"
        );
        // Delete never reads uploads.
        assert!(read_uploads(&plan(Operation::Delete, &missing)).is_ok());
    }

    #[test]
    fn flags_parse_like_upstream() {
        let cli = Cli::try_parse_from([
            "emcoctl",
            "--config",
            "c.yaml",
            "-v",
            "values.yaml",
            "delete",
            "-f",
            "a.yaml,b.yaml",
            "-f",
            "c.yaml",
            "-w",
            "5",
            "-s",
        ])
        .unwrap();
        assert_eq!(cli.config, Some(PathBuf::from("c.yaml")));
        assert_eq!(cli.options.values, vec![PathBuf::from("values.yaml")]);
        assert_eq!(cli.options.filename.len(), 3);
        assert_eq!(cli.options.wait_time, 5);
        assert!(cli.options.stop);
        assert!(matches!(cli.command, Command::Delete { anchor: None }));
        let cli = Cli::try_parse_from([
            "emcoctl",
            "get",
            "projects",
            "-t",
            "tok",
            "--stop=false",
            "--waitTime=3",
        ])
        .unwrap();
        assert!(!cli.options.stop);
        assert_eq!(cli.options.wait_time, 3);
        assert_eq!(cli.options.token, vec!["tok".to_string()]);
        assert!(matches!(cli.command, Command::Get { anchor: Some(ref a) } if a == "projects"));
        let cli = Cli::try_parse_from(["emcoctl", "apply", "-sf", "x.yaml"]).unwrap();
        assert!(cli.options.stop);
        assert_eq!(cli.options.filename, vec![PathBuf::from("x.yaml")]);
    }
}
