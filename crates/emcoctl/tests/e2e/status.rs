//! Black-box tests of `emcoctl status`: the built binary against a small in-test hub that serves a scripted
//! sequence of status answers, rendered by emco-core exactly as the real hub renders them.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use emco_core::lifecycle::{DigState, DigStatus};
use emco_core::status::{
    AppContextStatus, AppInput, ClusterInput, Connectivity, ContextInput, DeployedStatus, Gvk,
    ReadyStatus, ResourceInput, StatusInput, StatusQuery, render,
};

const GROUP: &str = "projects/p/composite-apps/ca/v1/deployment-intent-groups/dig";

// ------------------------------------------------------------------------------------------------------------
// Status answers, built with the hub's own renderer.

fn resource(
    name: &str,
    kind: &str,
    deployed: DeployedStatus,
    ready: Option<ReadyStatus>,
) -> ResourceInput {
    ResourceInput {
        name: name.to_owned(),
        gvk: Gvk {
            group: if kind == "Deployment" { "apps" } else { "" }.to_owned(),
            version: "v1".to_owned(),
            kind: kind.to_owned(),
        },
        deployed: Some(deployed),
        ready,
        detail: None,
    }
}

fn lifecycle(states: &[DigState]) -> DigStatus {
    // Built through the stored document's serde form, which keeps working as the struct grows fields.
    let actions: Vec<serde_json::Value> = states
        .iter()
        .map(|state| serde_json::json!({ "state": state, "time": "2026-01-01T00:00:00Z", "revision": 0 }))
        .collect();
    serde_json::from_value(serde_json::json!({
        "state": states.last().copied().unwrap_or_default(),
        "actions": actions,
        "revision": 1,
    }))
    .unwrap()
}

/// The group `dig`: app firewall on p+edge01 (a ConfigMap and a Deployment) and p+edge02 (a ConfigMap),
/// every resource in the given deployed and ready state, except the edge01 Deployment's readiness when
/// `deployment_ready` says otherwise.
fn group(
    context: AppContextStatus,
    deployed: DeployedStatus,
    ready: Option<ReadyStatus>,
    deployment_ready: Option<ReadyStatus>,
) -> StatusInput {
    StatusInput {
        project: "p".to_owned(),
        composite_app: "ca".to_owned(),
        composite_app_version: "v1".to_owned(),
        name: "dig".to_owned(),
        lifecycle: lifecycle(&[
            DigState::Created,
            DigState::Approved,
            DigState::Instantiated,
        ]),
        action_instances: vec![String::new(), String::new(), "100".to_owned()],
        status_context_id: "100".to_owned(),
        context: Some(ContextInput {
            context_id: "100".to_owned(),
            status: context,
            apps: vec![AppInput {
                name: "firewall".to_owned(),
                clusters: vec![
                    ClusterInput {
                        provider: "p".to_owned(),
                        cluster: "edge01".to_owned(),
                        connectivity: Connectivity::Available,
                        resources: vec![
                            resource("fw-cm", "ConfigMap", deployed, ready),
                            resource("fw", "Deployment", deployed, deployment_ready),
                        ],
                    },
                    ClusterInput {
                        provider: "p".to_owned(),
                        cluster: "edge02".to_owned(),
                        connectivity: Connectivity::Available,
                        resources: vec![resource("fw-cm", "ConfigMap", deployed, ready)],
                    },
                ],
            }],
        }),
        ..StatusInput::default()
    }
}

fn approved() -> StatusInput {
    let mut input = group(
        AppContextStatus::Instantiating,
        DeployedStatus::Pending,
        None,
        None,
    );
    input.context = None;
    input.lifecycle = lifecycle(&[DigState::Created, DigState::Approved]);
    input.action_instances.truncate(2);
    input
}

fn pending() -> StatusInput {
    group(
        AppContextStatus::Instantiating,
        DeployedStatus::Pending,
        None,
        None,
    )
}

fn not_ready() -> StatusInput {
    group(
        AppContextStatus::Instantiated,
        DeployedStatus::Applied,
        Some(ReadyStatus::Ready),
        Some(ReadyStatus::NotReady),
    )
}

fn ready() -> StatusInput {
    group(
        AppContextStatus::Instantiated,
        DeployedStatus::Applied,
        Some(ReadyStatus::Ready),
        Some(ReadyStatus::Ready),
    )
}

// ------------------------------------------------------------------------------------------------------------
// The scripted hub.

#[derive(Default)]
struct Script {
    /// Served in order, one per look; the last one repeats.
    steps: Vec<StatusInput>,
    /// How many answers of each kind (`status=deployed`, `status=ready`) went out.
    served: Mutex<HashMap<String, usize>>,
    /// Path and query of every request.
    requests: Mutex<Vec<String>>,
    /// How many requests still get 503 before the script is served (a hub restarting).
    unavailable: Mutex<usize>,
}

struct Hub {
    script: Arc<Script>,
    port: u16,
}

impl Hub {
    async fn start(steps: Vec<StatusInput>) -> Hub {
        let script = Arc::new(Script {
            steps,
            ..Script::default()
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().fallback(serve).with_state(script.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Hub { script, port }
    }

    fn requests(&self) -> Vec<String> {
        self.script.requests.lock().unwrap().clone()
    }
}

async fn serve(State(script): State<Arc<Script>>, request: Request) -> Response {
    let uri = request.uri().clone();
    script
        .requests
        .lock()
        .unwrap()
        .push(uri.path_and_query().unwrap().to_string());
    {
        let mut unavailable = script.unavailable.lock().unwrap();
        if *unavailable > 0 {
            *unavailable -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, "starting up").into_response();
        }
    }
    if uri.path() != format!("/v2/{GROUP}/status") {
        return (StatusCode::NOT_FOUND, "deployment intent group not found\n").into_response();
    }
    let mut params: HashMap<String, Vec<String>> = HashMap::new();
    for pair in uri.query().unwrap_or_default().split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        params
            .entry(key.to_owned())
            .or_default()
            .push(value.to_owned());
    }
    let kind = params["status"][0].clone();
    let index = {
        let mut served = script.served.lock().unwrap();
        let count = served.entry(kind).or_default();
        *count += 1;
        *count - 1
    };
    let input = &script.steps[index.min(script.steps.len() - 1)];
    match render(&StatusQuery::parse(&params).unwrap(), input) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
        Err(err) => (StatusCode::BAD_REQUEST, err.to_string()).into_response(),
    }
}

// ------------------------------------------------------------------------------------------------------------
// Running the binary.

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A temp directory whose `.emco.yaml` points the orchestrator at `hub`.
fn home(hub: &Hub) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join(".emco.yaml"),
        format!("orchestrator:\n  host: 127.0.0.1\n  port: {}\n", hub.port),
    )
    .unwrap();
    dir
}

async fn emcoctl(dir: &Path, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_emcoctl"))
        .args(args)
        .current_dir(dir)
        .env("HOME", dir)
        .env_remove("EMCOCTL_CONFIG")
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Watch lines without their `[elapsed] ` stamp.
fn unstamped(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .map(|line| match line.strip_prefix('[') {
            Some(rest) => rest
                .split_once("] ")
                .map_or(line, |(_, text)| text)
                .to_owned(),
            None => line.to_owned(),
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_prints_the_view_once() {
    let hub = Hub::start(vec![not_ready()]).await;
    let dir = home(&hub);
    let run = emcoctl(dir.path(), &["status", &format!("/v2/{GROUP}")]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            "dig: state Instantiated, deployed Instantiated",
            "  firewall @ p+edge01: Available, applied 2/2, ready 1/2",
            "  firewall @ p+edge02: Available, applied 1/1, ready 1/1",
            "  total: 2 clusters, applied 3/3, ready 2/3 (not ready)",
        ]
    );
    assert!(run.stderr.contains("Using config file: "), "{}", run.stderr);
    assert_eq!(
        hub.requests(),
        [
            format!("/v2/{GROUP}/status?status=deployed&output=all"),
            format!("/v2/{GROUP}/status?status=ready&output=all"),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_the_deploy_until_every_resource_is_ready() {
    let hub = Hub::start(vec![approved(), pending(), not_ready(), ready()]).await;
    let dir = home(&hub);
    let run = emcoctl(
        dir.path(),
        &["status", GROUP, "--watch", "--interval", "50ms"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        !run.stdout.contains('\x1b'),
        "escape codes in {:?}",
        run.stdout
    );
    // Every line but the first and the last is stamped with the time since the watch started.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[1..lines.len() - 1].iter().all(|l| l.starts_with('[')),
        "{lines:?}"
    );
    assert_eq!(
        unstamped(&run.stdout),
        [
            format!("watching dig ({GROUP}) every 50ms for up to 10m00s"),
            "dig: state Approved, not deployed yet".to_owned(),
            "dig total: no resources yet (not ready)".to_owned(),
            "dig: state Instantiated, deployed Instantiating".to_owned(),
            "dig firewall @ p+edge01: Available, applied 0/2, ready 0/2".to_owned(),
            "dig firewall @ p+edge02: Available, applied 0/1, ready 0/1".to_owned(),
            "dig total: 2 clusters, applied 0/3, ready 0/3 (not ready)".to_owned(),
            // Only the lines that changed are printed again.
            "dig: state Instantiated, deployed Instantiated".to_owned(),
            "dig firewall @ p+edge01: Available, applied 2/2, ready 1/2".to_owned(),
            "dig firewall @ p+edge02: Available, applied 1/1, ready 1/1".to_owned(),
            "dig total: 2 clusters, applied 3/3, ready 2/3 (not ready)".to_owned(),
            "dig firewall @ p+edge01: Available, applied 2/2, ready 2/2".to_owned(),
            "dig total: 2 clusters, applied 3/3, ready 3/3 (ready)".to_owned(),
            lines.last().unwrap().to_string(),
        ]
    );
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("dig: all resources ready after "),
        "{lines:?}"
    );
    // Four looks, two queries each; nothing after it was ready.
    assert_eq!(hub.requests().len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_times_out_naming_what_is_not_ready() {
    let hub = Hub::start(vec![not_ready()]).await;
    let dir = home(&hub);
    let started = std::time::Instant::now();
    let run = emcoctl(
        dir.path(),
        &[
            "status",
            GROUP,
            "--watch",
            "--interval",
            "100ms",
            "--timeout",
            "500ms",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        run.stderr.contains("error: timed out after "),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("  dig: firewall @ p+edge01: Deployment/fw (Applied, NotReady)\n"),
        "{}",
        run.stderr
    );
    // The state was printed once: nothing changed while it waited.
    assert_eq!(
        unstamped(&run.stdout)
            .iter()
            .filter(|l| l.contains("firewall @ p+edge01"))
            .count(),
        1,
        "{}",
        run.stdout
    );
    // It kept asking until the time ran out.
    assert!(hub.requests().len() >= 4, "{:?}", hub.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_group_is_a_404_naming_the_group() {
    let hub = Hub::start(vec![ready()]).await;
    let dir = home(&hub);
    let missing = "projects/p/composite-apps/ca/v1/deployment-intent-groups/nosuch";
    let message = format!(
        "deployment intent group {missing} not found (404 Not Found: deployment intent group not found)"
    );
    let run = emcoctl(dir.path(), &["status", missing]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("error: {message}\n")),
        "{}",
        run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    // Watching does not wait for a group that is not there.
    let run = emcoctl(dir.path(), &["status", missing, "--watch"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("error: nosuch: {message}\n")),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_rides_out_a_briefly_unavailable_hub() {
    let hub = Hub::start(vec![ready()]).await;
    *hub.script.unavailable.lock().unwrap() = 2;
    let dir = home(&hub);
    let run = emcoctl(
        dir.path(),
        &["status", GROUP, "--watch", "--interval", "50ms"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines = unstamped(&run.stdout);
    // Said once, although two looks failed, then the status.
    assert_eq!(
        lines[1],
        format!(
            "dig: GET /v2/{GROUP}/status?status=deployed&output=all answered 503 Service Unavailable: starting up (retrying)"
        )
    );
    assert_eq!(lines[2], "dig: state Instantiated, deployed Instantiated");
    assert!(
        lines
            .last()
            .unwrap()
            .starts_with("dig: all resources ready after ")
    );
    // Without --watch the same answer is an error.
    *hub.script.unavailable.lock().unwrap() = 1;
    let run = emcoctl(dir.path(), &["status", GROUP]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("answered 503 Service Unavailable"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_stops_when_the_deploy_fails() {
    let failed = group(
        AppContextStatus::InstantiateFailed,
        DeployedStatus::Failed,
        None,
        None,
    );
    let hub = Hub::start(vec![pending(), failed]).await;
    let dir = home(&hub);
    let run = emcoctl(
        dir.path(),
        &["status", GROUP, "--watch", "--interval", "50ms"],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("error: dig: the deploy failed (deployed status InstantiateFailed)"),
        "{}",
        run.stderr
    );
    assert!(
        unstamped(&run.stdout).contains(
            &"dig firewall @ p+edge02: Available, applied 0/1, ready 0/1, failed: ConfigMap/fw-cm"
                .to_owned()
        ),
        "{}",
        run.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_narrow_the_view() {
    let hub = Hub::start(vec![not_ready()]).await;
    let dir = home(&hub);
    let run = emcoctl(
        dir.path(),
        &["status", GROUP, "--app", "firewall", "--cluster", "edge02"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout.lines().collect::<Vec<_>>(),
        [
            "dig: state Instantiated, deployed Instantiated",
            "  firewall @ p+edge02: Available, applied 1/1, ready 1/1",
            "  total: 1 cluster, applied 1/1, ready 1/1 (ready)",
        ]
    );
    assert!(
        hub.requests()
            .iter()
            .all(|r| r.ends_with("&output=all&app=firewall")),
        "{:?}",
        hub.requests()
    );
    // The hub refuses an app the group lacks, and emcoctl says so.
    let run = emcoctl(dir.path(), &["status", GROUP, "--app", "nosuch"]).await;
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("answered 400 Bad Request: filter app nosuch not in list of apps"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_read_from_resource_files_and_full_urls_work() {
    let hub = Hub::start(vec![ready()]).await;
    let dir = home(&hub);
    std::fs::write(
        dir.path().join("dig.yaml"),
        "version: emco/v2\nresourceContext:\n  anchor: projects/{{.Project}}/composite-apps/ca/v1/deployment-intent-groups\n\
         metadata:\n  name: dig\nspec:\n  version: r1\n---\n\
         version: emco/v2\nresourceContext:\n  anchor: projects/{{.Project}}/composite-apps/ca/v1/deployment-intent-groups/dig/instantiate\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("values.yaml"), "Project: p\n").unwrap();
    let run = emcoctl(
        dir.path(),
        &["status", "-f", "dig.yaml", "-v", "values.yaml", "--watch"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("dig total: 2 clusters, applied 3/3, ready 3/3 (ready)"),
        "{}",
        run.stdout
    );

    // A full URL goes where it says, whatever the config says.
    let elsewhere = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{}/v2/{GROUP}/status", hub.port);
    let run = emcoctl(elsewhere.path(), &["status", &url]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("dig: state Instantiated, deployed Instantiated\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_before_any_request() {
    let hub = Hub::start(vec![ready()]).await;
    let dir = home(&hub);
    std::fs::write(
        dir.path().join("project.yaml"),
        "resourceContext: {anchor: projects}\nmetadata: {name: p}\n",
    )
    .unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["status", "projects/p"],
            "is not a deployment intent group",
        ),
        (&["status"], "give a deployment intent group"),
        (
            &["status", GROUP, "--interval", "soon"],
            "invalid value 'soon'",
        ),
        (
            &["status", "-f", "project.yaml"],
            "define no deployment intent group",
        ),
        (&["status", GROUP, "-f", "project.yaml"], "not both"),
    ];
    for (args, message) in cases {
        let run = emcoctl(dir.path(), args).await;
        assert_eq!(run.code, 2, "{args:?}");
        assert!(run.stderr.contains(message), "{args:?}: {}", run.stderr);
    }
    assert!(hub.requests().is_empty(), "{:?}", hub.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_of_the_status_anchor_still_shows_the_raw_answer() {
    let hub = Hub::start(vec![ready()]).await;
    let dir = home(&hub);
    let run = emcoctl(
        dir.path(),
        &[
            "get",
            &format!("{GROUP}/status?status=ready&output=summary"),
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.starts_with(&format!(
        "GET /v2/{GROUP}/status?status=ready&output=summary --> 200 OK\n{{\n"
    )));
    assert!(
        run.stdout.contains("\"readyStatus\": \"Ready\""),
        "{}",
        run.stdout
    );
}

/// Runs emcoctl under `script`, which gives it a pseudo-terminal; `None` when there is no `script`.
async fn on_terminal(dir: &Path, args: &str) -> Option<(i32, String)> {
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no `script` to provide a terminal");
        return None;
    }
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_emcoctl"));
    let output = tokio::process::Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir)
        .env("HOME", dir)
        .env("TERM", "xterm")
        .env_remove("EMCOCTL_CONFIG")
        .output()
        .await
        .unwrap();
    Some((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    ))
}

/// The terminal output without escape sequences (colours, cursor movement).
fn without_escapes(screen: &str) -> String {
    let mut plain = String::new();
    let mut chars = screen.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_the_watch_draws_progress_bars() {
    let hub = Hub::start(vec![pending(), not_ready(), ready()]).await;
    let dir = home(&hub);
    let Some((code, screen)) = on_terminal(
        dir.path(),
        &format!("status {GROUP} --watch --interval 100ms"),
    )
    .await
    else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    // Redrawn in place (cursor movement), bars filling up to the final counts.
    assert!(screen.contains("\x1b["), "{screen:?}");
    let plain = without_escapes(&screen);
    assert!(
        plain.contains(
            "firewall @ p+edge01 [                        ] Available, applied 0/2, ready 0/2"
        ),
        "{plain}"
    );
    assert!(
        plain.contains(
            "firewall @ p+edge01 [========================] Available, applied 2/2, ready 2/2"
        ),
        "{plain}"
    );
    assert!(plain.contains("applied 3/3, ready 3/3 (ready)"), "{plain}");
    assert!(plain.contains("dig: all resources ready after "), "{plain}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_terminal_a_timed_out_watch_leaves_the_bars_as_they_were() {
    let hub = Hub::start(vec![not_ready()]).await;
    let dir = home(&hub);
    let Some((code, screen)) = on_terminal(
        dir.path(),
        &format!("status {GROUP} --watch --interval 100ms --timeout 400ms"),
    )
    .await
    else {
        return;
    };
    assert_eq!(code, 2, "{screen}");
    let plain = without_escapes(&screen);
    assert!(
        plain.contains(
            "firewall @ p+edge01 [============>           ] Available, applied 2/2, ready 1/2"
        ),
        "{plain}"
    );
    // Never drawn as full while only half ready.
    assert!(
        !plain.contains("[========================] Available, applied 2/2, ready 1/2"),
        "{plain}"
    );
    assert!(plain.contains("error: timed out after "), "{plain}");
}
