//! Replays upstream EMCO's pytest REST corpus (`full_api_test_list` then `cleanup_test_list`)
//! against the real `emco serve` binary, checking each step the way its upstream script does.
//! The corpus's clusters are simulated (`emco_sim`, in this process), so its lifecycle steps
//! really deploy the corpus's app and terminate it.
//!
//! Steps allowed to fail are listed, with reasons, in `expected_failures.tsv`; the test fails on any
//! other failure and on any listed step that passes, so the list stays honest.

mod check;
mod corpus;
mod expected;
mod hub;
mod request;
mod script;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::check::Expectation;
use crate::corpus::{SequenceRow, StepId};
use crate::hub::Hub;
use crate::request::{FileResolver, PreparedRequest, clip};
use crate::script::Check;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const BODY_REPORT_LIMIT: usize = 2000;

/// Legacy `status` values of a synchronizer run still under way.
const RUN_IN_PROGRESS: [&str; 3] = ["Instantiating", "Terminating", "Updating"];
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
const SETTLE_POLL: Duration = Duration::from_millis(100);

/// The outcome of one step: empty `problems` means it passed.
struct StepReport {
    row: SequenceRow,
    problems: Vec<String>,
    /// Request, expectation and response of each case, for the failure report.
    transcript: Vec<String>,
}

impl StepReport {
    fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    fn render(&self, heading: &str) -> String {
        let mut out = format!("--- {heading}: {}\n", self.row.label());
        for line in &self.transcript {
            out.push_str(line);
            out.push('\n');
        }
        for problem in &self.problems {
            out.push_str(&format!("    problem: {problem}\n"));
        }
        out
    }
}

async fn replay_step(
    row: &SequenceRow,
    base_url: &str,
    client: &reqwest::Client,
    files: &FileResolver,
) -> StepReport {
    let mut report = StepReport {
        row: row.clone(),
        problems: Vec::new(),
        transcript: Vec::new(),
    };
    let prepared =
        script::behaviour(&row.script).and_then(|shape| Ok((shape, corpus::load_input(row)?)));
    let (shape, input) = match prepared {
        Ok(found) => found,
        Err(e) => {
            report
                .problems
                .push(format!("cannot prepare the step: {e:#}"));
            return report;
        }
    };
    let inverted = script::is_inverted(&row.input);
    for (index, case) in input.cases.iter().enumerate() {
        let expected_text = request::expected_text(case, &shape);
        let expectation = Expectation {
            status: &case.status,
            text: expected_text.as_ref(),
            check: shape.check,
            inverted,
        };
        let request = match request::prepare(base_url, &input.anchor, case, &shape, files) {
            Ok(request) => request,
            Err(e) => {
                report
                    .problems
                    .push(format!("case {index}: cannot build the request: {e:#}"));
                continue;
            }
        };
        report
            .transcript
            .push(format!("    request:  {}", request.describe()));
        if shape.check == Check::DeploymentStatus {
            let waited = wait_for_run_to_settle(&request, client).await;
            report.transcript.push(format!("    settled:  {waited}"));
        }
        report
            .transcript
            .push(format!("    expected: {}", expectation.describe()));
        match request.send(client).await {
            Ok((status, body)) => {
                report
                    .transcript
                    .push(format!("    got:      status {status}"));
                report
                    .transcript
                    .push(format!("    body:     {}", clip(&body, BODY_REPORT_LIMIT)));
                report.problems.extend(
                    expectation
                        .problems(status, &body)
                        .into_iter()
                        .map(|p| format!("case {index}: {p}")),
                );
            }
            Err(e) => report
                .problems
                .push(format!("case {index}: request failed: {e:#}")),
        }
    }
    report
}

/// Each simulated cluster with the number of objects it holds and its resourceVersion.
fn simulated_clusters(sim: &emco_sim::Sim) -> String {
    let described: Vec<String> = sim
        .cluster_names()
        .into_iter()
        .filter_map(|name| {
            let cluster = sim.cluster(&name)?;
            let state = cluster.lock();
            Some(format!(
                "{name} ({} objects, resourceVersion {})",
                state.object_count(),
                state.resource_version()
            ))
        })
        .collect();
    if described.is_empty() {
        "none".to_owned()
    } else {
        described.join(", ")
    }
}

/// Polls a status query until its legacy `status` is no longer a run in progress, bounded by
/// `SETTLE_TIMEOUT`, and says what it saw.
///
/// Instantiate and terminate answer at once and the synchronizer applies (or deletes and
/// confirms the deletion) in the background. Upstream's scripts took about 0.35 s a step, so its
/// run had finished by the status step; this replay reaches `full_api_test_list#382` (status after
/// the terminate of #376) in well under a second, often while the run is still `Terminating`
/// (measured: 1-4 polls). Waiting here only removes that race: the step then sends its own
/// request and checks it unchanged, and a run that never finishes still fails it (reported as
/// `Instantiating`/`Terminating` after the timeout).
async fn wait_for_run_to_settle(request: &PreparedRequest, client: &reqwest::Client) -> String {
    let started = std::time::Instant::now();
    let mut poll = 0u32;
    loop {
        poll += 1;
        let status = match request.send(client).await {
            Ok((200, body)) => serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("status").and_then(|s| s.as_str().map(str::to_owned))),
            // an error answer is the step's to judge: nothing to wait for
            Ok((status, _)) => return format!("no wait (status {status})"),
            Err(e) => return format!("no wait ({e:#})"),
        };
        let elapsed = started.elapsed();
        match status {
            Some(status) if RUN_IN_PROGRESS.contains(&status.as_str()) => {
                if elapsed >= SETTLE_TIMEOUT {
                    return format!("still {status} after {poll} polls in {elapsed:?}");
                }
            }
            Some(status) => return format!("{status} at poll {poll}, after {elapsed:?}"),
            None => return "no wait (no status field)".to_owned(),
        }
        tokio::time::sleep(SETTLE_POLL).await;
    }
}

#[derive(Default)]
struct Tally {
    passed: usize,
    expected_failures: usize,
    unexpected_failures: Vec<String>,
    unexpected_passes: Vec<String>,
}

fn judge(reports: &[StepReport], expected: &BTreeMap<StepId, String>) -> Tally {
    let mut tally = Tally::default();
    for report in reports {
        match (report.passed(), expected.get(&report.row.id)) {
            (true, None) => tally.passed += 1,
            (false, Some(_)) => tally.expected_failures += 1,
            (false, None) => tally.unexpected_failures.push(report.render("FAILED")),
            (true, Some(reason)) => tally.unexpected_passes.push(format!(
                "--- now passes: remove it from expected_failures.tsv: {} (listed as: {reason})\n",
                report.row.label()
            )),
        }
    }
    tally
}

#[test]
fn judging_keeps_the_expected_failure_list_honest() {
    let report = |step: u32, problems: &[&str]| StepReport {
        row: SequenceRow {
            id: StepId {
                list: corpus::StepList::FullApi,
                step,
            },
            suite_dir: "project".to_owned(),
            script: "test_getProjects.py".to_owned(),
            input: "test_getProjects.json".to_owned(),
        },
        problems: problems.iter().map(|p| (*p).to_owned()).collect(),
        transcript: Vec::new(),
    };
    let reports = [
        report(1, &[]),
        report(2, &["status"]),
        report(3, &["status"]),
        report(4, &[]),
    ];
    let expected: BTreeMap<StepId, String> = [3, 4]
        .into_iter()
        .map(|step| {
            (
                StepId {
                    list: corpus::StepList::FullApi,
                    step,
                },
                "reason".to_owned(),
            )
        })
        .collect();
    let tally = judge(&reports, &expected);
    assert_eq!((tally.passed, tally.expected_failures), (1, 1));
    assert_eq!(tally.unexpected_failures.len(), 1);
    assert!(tally.unexpected_failures[0].contains("full_api_test_list#2"));
    assert_eq!(tally.unexpected_passes.len(), 1);
    assert!(
        tally.unexpected_passes[0].contains("now passes: remove it from expected_failures.tsv")
    );
}

/// Upstream-compatible mode: references to missing resources are stored (upstream only warns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rest_corpus_replays_against_the_hub() -> anyhow::Result<()> {
    replay(
        &["--dangling-references", "allow"],
        expected::load_expected_failures()?,
    )
    .await
}

/// The hub's default: a write naming a missing resource is refused (the corpus has a few).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rest_corpus_replays_against_the_hub_with_strict_references() -> anyhow::Result<()>
{
    replay(&[], expected::load_strict_expected_failures()?).await
}

/// The same replay with all state in a real etcd (strict references).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_rest_corpus_replays_against_the_hub_on_etcd() -> anyhow::Result<()> {
    let Some(etcd) = emco_store::testing::EtcdServer::start() else {
        return Ok(());
    };
    let address = etcd.endpoint.replace("http://", "etcd://");
    replay(
        &["--store", &address],
        expected::load_strict_expected_failures()?,
    )
    .await
}

async fn replay(hub_args: &[&str], expected: BTreeMap<StepId, String>) -> anyhow::Result<()> {
    let rows = corpus::load_sequence()?;
    let scratch = tempfile::tempdir()?;
    let data_dir = scratch.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    // Workloads ready at once: the corpus checks deployment, not readiness, and the replay
    // should not wait on simulated controllers.
    let sim = emco_sim::Sim::new(emco_sim::SimOptions {
        ready_after: Duration::ZERO,
        ..Default::default()
    });
    let sim = emco_sim::spawn(sim, "127.0.0.1:0".parse()?)
        .await
        .context("starting the simulated clusters")?;
    let client = reqwest::Client::builder()
        // a registry proxy in the environment must not swallow requests to 127.0.0.1
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;

    let mut hub = Hub::start(
        Path::new(env!("CARGO_BIN_EXE_emco")),
        &data_dir,
        scratch.path(),
        &client,
        hub_args,
    )
    .await?;
    let files = FileResolver::new(sim.sim.clone());
    let mut reports = Vec::with_capacity(rows.len());
    for row in &rows {
        reports.push(replay_step(row, &hub.base_url, &client, &files).await);
    }
    let hub_exit = hub.exit_status();
    let hub_stderr = hub.stderr();
    drop(hub);
    let clusters = simulated_clusters(&sim.sim);
    drop(sim);

    let tally = judge(&reports, &expected);
    // set to see why the listed steps fail (their transcripts are not printed otherwise)
    if std::env::var_os("CONFORMANCE_SHOW_EXPECTED").is_some() {
        for report in reports.iter().filter(|r| !r.passed()) {
            if let Some(reason) = expected.get(&report.row.id) {
                println!("{}", report.render(&format!("expected failure ({reason})")));
            }
        }
    }
    for failure in &tally.unexpected_failures {
        println!("{failure}");
    }
    for pass in &tally.unexpected_passes {
        println!("{pass}");
    }
    if let Some(exit) = hub_exit {
        println!("the hub exited during the replay ({exit}); its stderr:\n{hub_stderr}");
    }
    println!(
        "conformance (hub args {hub_args:?}): {} passed, {} expected failures, {} failed; simulated clusters at the end: {clusters}",
        tally.passed,
        tally.expected_failures,
        tally.unexpected_failures.len() + tally.unexpected_passes.len()
    );
    anyhow::ensure!(
        tally.unexpected_failures.is_empty() && tally.unexpected_passes.is_empty(),
        "{} steps failed that are not in expected_failures.tsv and {} listed steps now pass (details above)",
        tally.unexpected_failures.len(),
        tally.unexpected_passes.len()
    );
    Ok(())
}
