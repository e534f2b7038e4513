//! `emcoctl status`: the deploy progress of deployment intent groups, once or (`--watch`) until every resource
//! on every cluster is ready.
//!
//! Each look asks the hub's status endpoint twice, `?status=deployed&output=all` (what the synchronizer
//! applied) and `?status=ready&output=all` (what the clusters report), and shows per app and cluster the
//! connectivity, applied and ready counts and the failed resources. `--app` is passed to the hub (which
//! refuses an app the group lacks); `--cluster` is applied here, so both `provider+cluster` and a bare cluster
//! name work. Upstream emcoctl has no such command; `emcoctl get <group>/status` still shows the raw answer.
//!
//! Exit codes: 0 shown (or, watching, everything ready); 1 an HTTP error or a group that failed or was
//! terminated; 2 the watch timed out, or the input was unusable.

mod display;
pub mod view;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use reqwest::{Method, StatusCode, Url};

use crate::client::{Client, ClientError, Payload, Request};
use crate::commands::{
    EXIT_BAD_INPUT, EXIT_CALL_FAILED, EXIT_OK, Options, load_config, load_files,
};
use crate::resource::{Resource, last_segment};
use crate::routing::normalize_anchor;
use display::Display;
use view::{
    BodyError, GroupStatus, Verdict, format_duration, format_stamp, parse_duration, snapshot_lines,
};

/// Exit code when a watch ran out of time before everything was ready.
pub const EXIT_TIMED_OUT: u8 = 2;

/// At most this many not-ready items are listed when a watch times out.
const MAX_LISTED: usize = 20;

/// `emcoctl status` flags.
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// The group: projects/P/composite-apps/CA/V/deployment-intent-groups/G (a leading /v2 or a full http URL
    /// is fine); or give -f FILE [-v VALUES] for every group defined in the files
    #[arg(value_name = "GROUP")]
    pub group: Option<String>,

    /// Refresh until every resource on every cluster is Ready (exit 0), the timeout passes (exit 2), or the
    /// group fails or is terminated (exit 1)
    #[arg(long)]
    pub watch: bool,

    /// Time between refreshes while watching (e.g. 500ms, 2s)
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,

    /// How long to watch before giving up (e.g. 90s, 10m, 1h)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Only this app (repeatable)
    #[arg(long = "app", value_name = "APP")]
    pub apps: Vec<String>,

    /// Only this cluster: PROVIDER+CLUSTER or just CLUSTER (repeatable)
    #[arg(long = "cluster", value_name = "CLUSTER")]
    pub clusters: Vec<String>,
}

/// A group path that is not a deployment intent group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{given:?} is not a deployment intent group; expected projects/<project>/composite-apps/<composite app>/<version>/deployment-intent-groups/<group>"
    )]
    NotAGroup { given: String },
    #[error("{given:?} is not a usable URL: {message}")]
    Url { given: String, message: String },
}

/// The deployment intent group to look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigTarget {
    /// The group's name, how lines refer to it.
    pub name: String,
    /// `projects/p/composite-apps/ca/v1/deployment-intent-groups/dig`.
    pub anchor: String,
    /// For a full URL on the command line: everything before `projects/` (`http://host:port/v2`), used instead
    /// of the config's address.
    pub base: Option<String>,
}

/// Characters that may stand unescaped in a query value.
fn is_query_safe(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

fn encode_query_value(value: &str) -> String {
    value
        .bytes()
        .map(|byte| {
            if is_query_safe(byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

impl DigTarget {
    /// Reads a group path, a `/v2/...` path, or a full `http(s)://` URL; a trailing `/status` and any query are
    /// dropped, since the command builds its own.
    pub fn parse(given: &str) -> Result<DigTarget, TargetError> {
        let trimmed = given.trim();
        let (base, path) = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            let url = Url::parse(trimmed).map_err(|err| TargetError::Url {
                given: given.to_owned(),
                message: err.to_string(),
            })?;
            let path = url.path().to_owned();
            let start = path
                .find("/projects/")
                .ok_or_else(|| TargetError::NotAGroup {
                    given: given.to_owned(),
                })?;
            let origin = url.origin().ascii_serialization();
            (
                Some(format!("{origin}{}", &path[..start])),
                path[start..].to_owned(),
            )
        } else {
            (None, trimmed.to_owned())
        };
        let path = path.split(['?', '#']).next().unwrap_or_default();
        let anchor = normalize_anchor(path).trim_end_matches('/');
        let anchor = anchor.strip_suffix("/status").unwrap_or(anchor);
        let segments: Vec<&str> = anchor.split('/').collect();
        let shape_ok = segments.len() == 7
            && segments[0] == "projects"
            && segments[2] == "composite-apps"
            && segments[5] == "deployment-intent-groups"
            && segments.iter().all(|segment| !segment.is_empty());
        if !shape_ok {
            return Err(TargetError::NotAGroup {
                given: given.to_owned(),
            });
        }
        Ok(DigTarget {
            name: segments[6].to_owned(),
            anchor: anchor.to_owned(),
            base,
        })
    }

    /// Every deployment intent group the resource files define (documents anchored at
    /// `.../deployment-intent-groups` with a metadata name), each once, in file order.
    pub fn from_resources(resources: &[Resource]) -> Vec<DigTarget> {
        let mut targets: Vec<DigTarget> = Vec::new();
        for resource in resources {
            if last_segment(&resource.anchor) != "deployment-intent-groups"
                || resource.metadata.name.is_empty()
            {
                continue;
            }
            if let Ok(target) = DigTarget::parse(&resource.item_anchor())
                && !targets.contains(&target)
            {
                targets.push(target);
            }
        }
        targets
    }

    /// The anchor of one status query: `.../status?status=ready&output=all&app=a`.
    pub fn status_anchor(&self, status: &str, apps: &[String]) -> String {
        let mut anchor = format!("{}/status?status={status}&output=all", self.anchor);
        for app in apps {
            anchor.push_str("&app=");
            anchor.push_str(&encode_query_value(app));
        }
        anchor
    }

    fn url(&self, client: &Client, anchor: &str) -> Result<Url, FetchError> {
        match &self.base {
            Some(base) => {
                let text = format!("{base}/{anchor}");
                Url::parse(&text).map_err(|err| {
                    FetchError::Client(ClientError::Url {
                        url: text,
                        message: err.to_string(),
                    })
                })
            }
            None => client.url(anchor).map_err(FetchError::Client),
        }
    }
}

/// Why one look at a group got no status.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("deployment intent group {anchor} not found ({status}{body})", body = detail(.body))]
    NotFound {
        anchor: String,
        status: String,
        body: String,
    },
    #[error("GET {path} answered {status}{body}", body = detail(.body))]
    Http {
        path: String,
        code: StatusCode,
        status: String,
        body: String,
    },
    #[error(transparent)]
    Client(ClientError),
    #[error(transparent)]
    Body(#[from] BodyError),
}

fn detail(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl FetchError {
    /// Worth asking again while watching: the hub unreachable or briefly unavailable.
    fn is_transient(&self) -> bool {
        match self {
            FetchError::Client(ClientError::Transport { .. }) => true,
            FetchError::Http { code, .. } => matches!(
                *code,
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            _ => false,
        }
    }
}

/// A server's error text, on one line and short.
fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > 300 {
        let cut: String = one_line.chars().take(300).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

fn status_text(code: StatusCode) -> String {
    match code.canonical_reason() {
        Some(reason) => format!("{} {reason}", code.as_u16()),
        None => code.as_u16().to_string(),
    }
}

async fn get_answer(
    client: &Client,
    target: &DigTarget,
    status: &str,
    apps: &[String],
) -> Result<bytes::Bytes, FetchError> {
    let anchor = target.status_anchor(status, apps);
    let url = target.url(client, &anchor)?;
    let request = Request {
        method: Method::GET,
        anchor: anchor.clone(),
        payload: Payload::None,
        accept_json: true,
    };
    let response = client
        .send_to(url.clone(), &request)
        .await
        .map_err(FetchError::Client)?;
    if response.status == StatusCode::NOT_FOUND {
        return Err(FetchError::NotFound {
            anchor: target.anchor.clone(),
            status: status_text(response.status),
            body: body_excerpt(&response.body),
        });
    }
    if !response.status.is_success() {
        let path = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        return Err(FetchError::Http {
            path,
            code: response.status,
            status: status_text(response.status),
            body: body_excerpt(&response.body),
        });
    }
    Ok(response.body)
}

/// One look at a group: both answers, merged.
async fn fetch(
    client: &Client,
    target: &DigTarget,
    args: &StatusArgs,
) -> Result<GroupStatus, FetchError> {
    let deployed = get_answer(client, target, "deployed", &args.apps).await?;
    let ready = get_answer(client, target, "ready", &args.apps).await?;
    Ok(GroupStatus::from_answers(
        &deployed,
        &ready,
        &args.clusters,
    )?)
}

/// Runs `emcoctl status`; `tty` chooses progress bars over plain lines when watching.
pub async fn run(
    args: StatusArgs,
    options: &Options,
    config_path: Option<&Path>,
    out: &mut dyn Write,
    tty: bool,
) -> u8 {
    let targets = match targets(&args, options) {
        Ok(targets) => targets,
        Err(code) => return code,
    };
    let (config, notice) = match load_config(config_path) {
        Ok(loaded) => loaded,
        Err(code) => return code,
    };
    let token = options.token.first().cloned();
    let client = match Client::new(config, token) {
        Ok(client) => client,
        Err(err) => {
            eprintln!("error: {err}");
            return EXIT_BAD_INPUT;
        }
    };
    for target in &targets {
        if let Err(err) = target.url(&client, &target.status_anchor("ready", &[])) {
            eprintln!("error: {}: {err}", target.anchor);
            return EXIT_BAD_INPUT;
        }
    }
    eprintln!("{notice}");
    if args.watch {
        watch(&client, &targets, &args, out, tty).await
    } else {
        show_once(&client, &targets, &args, out).await
    }
}

/// The groups named on the command line or defined in the files.
fn targets(args: &StatusArgs, options: &Options) -> Result<Vec<DigTarget>, u8> {
    match (&args.group, options.filename.is_empty()) {
        (Some(_), false) => {
            eprintln!("error: give either a group or resource files (-f), not both");
            Err(EXIT_BAD_INPUT)
        }
        (Some(group), true) => DigTarget::parse(group).map(|t| vec![t]).map_err(|err| {
            eprintln!("error: {err}");
            EXIT_BAD_INPUT
        }),
        (None, false) => {
            let resources = load_files(options)?;
            let targets = DigTarget::from_resources(&resources);
            if targets.is_empty() {
                let files: Vec<String> = options
                    .filename
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                eprintln!(
                    "error: {} define no deployment intent group (a document anchored at .../deployment-intent-groups with a metadata name)",
                    files.join(", ")
                );
                return Err(EXIT_BAD_INPUT);
            }
            Ok(targets)
        }
        (None, true) => {
            eprintln!(
                "error: give a deployment intent group (projects/P/composite-apps/CA/V/deployment-intent-groups/G) or resource files (-f FILE); see 'emcoctl status --help'"
            );
            Err(EXIT_BAD_INPUT)
        }
    }
}

async fn show_once(
    client: &Client,
    targets: &[DigTarget],
    args: &StatusArgs,
    out: &mut dyn Write,
) -> u8 {
    let mut code = EXIT_OK;
    for target in targets {
        match fetch(client, target, args).await {
            Ok(status) => {
                for line in snapshot_lines(&target.name, &status) {
                    let _ = writeln!(out, "{line}");
                }
            }
            Err(err) => {
                eprintln!("error: {err}");
                code = EXIT_CALL_FAILED;
            }
        }
        let _ = out.flush();
    }
    code
}

/// What a watch knows about one group.
struct Watched<'t> {
    target: &'t DigTarget,
    last: Option<GroupStatus>,
    problem: Option<String>,
    ready: bool,
}

async fn watch(
    client: &Client,
    targets: &[DigTarget],
    args: &StatusArgs,
    out: &mut dyn Write,
    tty: bool,
) -> u8 {
    let start = Instant::now();
    for target in targets {
        let _ = writeln!(
            out,
            "watching {} ({}) every {} for up to {}",
            target.name,
            target.anchor,
            format_duration(args.interval),
            format_duration(args.timeout)
        );
    }
    let _ = out.flush();
    let mut groups: Vec<Watched> = targets
        .iter()
        .map(|target| Watched {
            target,
            last: None,
            problem: None,
            ready: false,
        })
        .collect();
    let names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let mut display = if tty {
        Display::bars(&names)
    } else {
        Display::lines(&mut *out, targets.len())
    };

    let outcome = loop {
        if let Some(outcome) = poll(client, args, &mut groups, &mut display, start).await {
            break outcome;
        }
        if groups.iter().all(|g| g.ready) {
            break Outcome::Ready;
        }
        let elapsed = start.elapsed();
        if elapsed >= args.timeout {
            break Outcome::TimedOut;
        }
        tokio::time::sleep(args.interval.min(args.timeout - elapsed)).await;
    };
    display.finish();
    drop(display);

    let took = format_stamp(start.elapsed());
    match outcome {
        Outcome::Ready => {
            let _ = writeln!(
                out,
                "{}: all resources ready after {took}",
                names.join(", ")
            );
            let _ = out.flush();
            EXIT_OK
        }
        Outcome::Failed { name, reason } => {
            eprintln!("error: {name}: {reason}");
            EXIT_CALL_FAILED
        }
        Outcome::TimedOut => {
            eprintln!("error: timed out after {took}; not ready:");
            let waiting = not_ready(&groups);
            for item in waiting.iter().take(MAX_LISTED) {
                eprintln!("  {item}");
            }
            if waiting.len() > MAX_LISTED {
                eprintln!("  ... and {} more", waiting.len() - MAX_LISTED);
            }
            EXIT_TIMED_OUT
        }
    }
}

/// How a watch ended.
enum Outcome {
    Ready,
    Failed { name: String, reason: String },
    TimedOut,
}

/// Looks at every group not yet ready; `Some` ends the watch (a failed group, or an answer that will not get
/// better by asking again).
async fn poll(
    client: &Client,
    args: &StatusArgs,
    groups: &mut [Watched<'_>],
    display: &mut Display<'_>,
    start: Instant,
) -> Option<Outcome> {
    for (index, group) in groups.iter_mut().enumerate() {
        if group.ready {
            continue;
        }
        let target = group.target;
        let name = &target.name;
        match fetch(client, target, args).await {
            Ok(status) => {
                display.status(index, name, &status, start.elapsed());
                match status.verdict() {
                    Verdict::Ready => group.ready = true,
                    Verdict::Failed(reason) => {
                        return Some(Outcome::Failed {
                            name: name.clone(),
                            reason,
                        });
                    }
                    Verdict::Waiting(_) => {}
                }
                group.last = Some(status);
                group.problem = None;
            }
            Err(err) if err.is_transient() => {
                let problem = err.to_string();
                display.problem(index, name, group.last.as_ref(), &problem, start.elapsed());
                group.problem = Some(problem);
            }
            Err(err) => {
                return Some(Outcome::Failed {
                    name: name.clone(),
                    reason: err.to_string(),
                });
            }
        }
    }
    None
}

/// What holds each unfinished group back, for the timeout message.
fn not_ready(groups: &[Watched<'_>]) -> Vec<String> {
    let mut items = Vec::new();
    for group in groups.iter().filter(|g| !g.ready) {
        let name = &group.target.name;
        if let Some(problem) = &group.problem {
            items.push(format!("{name}: no answer: {problem}"));
        }
        match group.last.as_ref().map(GroupStatus::verdict) {
            Some(Verdict::Waiting(reasons)) => {
                items.extend(
                    reasons
                        .into_iter()
                        .map(|reason| format!("{name}: {reason}")),
                );
            }
            Some(_) => {}
            None if group.problem.is_none() => items.push(format!("{name}: no answer yet")),
            None => {}
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::parse_documents;

    #[test]
    fn group_paths_urls_and_status_suffixes_are_accepted() {
        let plain =
            DigTarget::parse("projects/p/composite-apps/ca/v1/deployment-intent-groups/dig")
                .unwrap();
        assert_eq!(
            plain,
            DigTarget {
                name: "dig".to_owned(),
                anchor: "projects/p/composite-apps/ca/v1/deployment-intent-groups/dig".to_owned(),
                base: None,
            }
        );
        for given in [
            "/v2/projects/p/composite-apps/ca/v1/deployment-intent-groups/dig",
            "/projects/p/composite-apps/ca/v1/deployment-intent-groups/dig/",
            "v2/projects/p/composite-apps/ca/v1/deployment-intent-groups/dig/status?status=ready",
        ] {
            assert_eq!(DigTarget::parse(given).unwrap(), plain, "{given}");
        }
        let url = DigTarget::parse(
            "http://hub.example:9015/v2/projects/p/composite-apps/ca/v1/deployment-intent-groups/dig/status",
        )
        .unwrap();
        assert_eq!(url.anchor, plain.anchor);
        assert_eq!(url.base.as_deref(), Some("http://hub.example:9015/v2"));
    }

    #[test]
    fn other_paths_are_refused() {
        for given in [
            "",
            "projects/p",
            "projects/p/composite-apps/ca/v1/deployment-intent-groups",
            "projects/p/composite-apps/ca/v1/apps/a",
            "projects/p/composite-apps/ca/v1/deployment-intent-groups/dig/instantiate",
            "projects//composite-apps/ca/v1/deployment-intent-groups/dig",
            "http://hub:9015/v2/cluster-providers/cp",
        ] {
            assert!(
                matches!(DigTarget::parse(given), Err(TargetError::NotAGroup { .. })),
                "{given:?} accepted"
            );
        }
        assert!(matches!(
            DigTarget::parse("http://[bad/projects"),
            Err(TargetError::Url { .. })
        ));
    }

    #[test]
    fn status_anchors_carry_the_query_and_app_filters() {
        let target =
            DigTarget::parse("projects/p/composite-apps/ca/v1/deployment-intent-groups/dig")
                .unwrap();
        assert_eq!(
            target.status_anchor("ready", &["fw".to_owned(), "a b&c".to_owned()]),
            "projects/p/composite-apps/ca/v1/deployment-intent-groups/dig/status?status=ready&output=all&app=fw&app=a%20b%26c"
        );
    }

    #[test]
    fn groups_are_found_in_resource_files() {
        let text = "resourceContext: {anchor: projects}\nmetadata: {name: p}\n---\n\
            resourceContext: {anchor: projects/p/composite-apps/ca/v1/deployment-intent-groups}\nmetadata: {name: one}\n---\n\
            resourceContext: {anchor: projects/p/composite-apps/ca/v1/deployment-intent-groups/one/intents}\nmetadata: {name: i}\n---\n\
            resourceContext: {anchor: projects/p/composite-apps/ca/v1/deployment-intent-groups/one/instantiate}\n---\n\
            resourceContext: {anchor: projects/q/composite-apps/cb/v2/deployment-intent-groups}\nmetadata: {name: two}\n---\n\
            resourceContext: {anchor: projects/p/composite-apps/ca/v1/deployment-intent-groups}\nmetadata: {name: one}\n";
        let resources = parse_documents(Path::new("r.yaml"), text, false).unwrap();
        let anchors: Vec<String> = DigTarget::from_resources(&resources)
            .into_iter()
            .map(|t| t.anchor)
            .collect();
        assert_eq!(
            anchors,
            [
                "projects/p/composite-apps/ca/v1/deployment-intent-groups/one",
                "projects/q/composite-apps/cb/v2/deployment-intent-groups/two",
            ]
        );
    }

    #[test]
    fn transient_errors_are_retried_and_others_are_not() {
        let http = |code: StatusCode| FetchError::Http {
            path: "/x".to_owned(),
            code,
            status: status_text(code),
            body: String::new(),
        };
        assert!(http(StatusCode::SERVICE_UNAVAILABLE).is_transient());
        assert!(!http(StatusCode::BAD_REQUEST).is_transient());
        assert!(!http(StatusCode::INTERNAL_SERVER_ERROR).is_transient());
        let transport = FetchError::Client(ClientError::Transport {
            url: "http://x".to_owned(),
            message: "cannot connect".to_owned(),
        });
        assert!(transport.is_transient());
        let not_found = FetchError::NotFound {
            anchor: "projects/p/composite-apps/ca/v1/deployment-intent-groups/dig".to_owned(),
            status: status_text(StatusCode::NOT_FOUND),
            body: "not found".to_owned(),
        };
        assert!(!not_found.is_transient());
        assert_eq!(
            not_found.to_string(),
            "deployment intent group projects/p/composite-apps/ca/v1/deployment-intent-groups/dig not found (404 Not Found: not found)"
        );
    }

    #[test]
    fn flags_parse_with_defaults() {
        use crate::commands::{Cli, Command};
        use clap::Parser;
        let cli = Cli::try_parse_from([
            "emcoctl",
            "status",
            "projects/p/composite-apps/ca/v1/deployment-intent-groups/d",
            "--watch",
            "--interval",
            "250ms",
            "--app",
            "a",
            "--app",
            "b",
            "--cluster",
            "p+c1",
        ])
        .unwrap();
        let Command::Status(args) = cli.command else {
            panic!("not status: {:?}", cli.command);
        };
        assert!(args.watch);
        assert_eq!(args.interval, Duration::from_millis(250));
        assert_eq!(args.timeout, Duration::from_secs(600));
        assert_eq!(args.apps, ["a", "b"]);
        assert_eq!(args.clusters, ["p+c1"]);

        let cli =
            Cli::try_parse_from(["emcoctl", "-f", "x.yaml", "status", "-v", "v.yaml"]).unwrap();
        let Command::Status(args) = cli.command else {
            panic!("not status: {:?}", cli.command);
        };
        assert!(!args.watch && args.group.is_none());
        assert_eq!(args.interval, Duration::from_secs(1));
        assert_eq!(cli.options.filename.len(), 1);
        assert_eq!(cli.options.values.len(), 1);
        assert!(Cli::try_parse_from(["emcoctl", "status", "g", "--timeout", "soon"]).is_err());
    }

    #[test]
    fn server_text_is_cut_to_one_short_line() {
        assert_eq!(body_excerpt(b"  no\n such\tgroup \n"), "no such group");
        let long = "x".repeat(400);
        assert_eq!(body_excerpt(long.as_bytes()).len(), 303);
    }
}
