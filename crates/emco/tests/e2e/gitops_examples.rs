//! End to end through Git: upstream's `examples/test-flux` applied unchanged through `emcoctl`
//! to the real hub. cluster1 is reached through its kubeconfig, cluster2 is a Flux cluster: the
//! hub writes its objects into a real Git repository (served by `emco sim` through
//! `git http-backend`, token required), the simulator's Flux-like pull mode applies them, and
//! `emco agent` beside the cluster reports them back. collectd goes to both clusters in one
//! group; status reaches Ready for both; an update and terminate reach both.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, ensure};
use serde_json::{Value, json};
use support::{Bed, Kubectl, generated, upstream_example, wait_for};

const GROUP: &str = "/v2/projects/proj-flux-1/composite-apps/test-composite-app/v1/deployment-intent-groups/test-deployment-intent";
const GIT_USER: &str = "gituser";
const GIT_TOKEN: &str = "gittoken";
/// `gituser:gittoken` in base64, for the test's own clone.
const GIT_BASIC: &str = "Z2l0dXNlcjpnaXR0b2tlbg==";

/// Upstream's generated values for test-flux: the simulator's kubeconfig and Git repository,
/// the generated archives, and collectd placed on both clusters (upstream's values place it
/// on the Flux cluster only).
fn flux_values(dir: &Path, bed: &Bed, git_url: &str, token: &str) -> anyhow::Result<PathBuf> {
    let source = generated("examples/test-flux/values.yaml");
    let text = support::example_values(
        &source,
        true,
        |c| bed.sim.kubeconfig(c),
        |key| match key {
            "GitUrl" => Some(git_url.to_owned()),
            "GitToken" => Some(token.to_owned()),
            _ => None,
        },
    )?;
    let text = text.replace(
        "        Cluster:\n          - cluster2\n",
        "        Cluster:\n          - cluster1\n          - cluster2\n",
    );
    ensure!(text.contains("- cluster1\n          - cluster2"), "{text}");
    support::write_file(dir.join("values.yaml"), &text)
}

/// `emco agent` beside a cluster, killed with the test.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_agent(bed: &Bed, provider: &str, cluster: &str) -> anyhow::Result<Agent> {
    let log = std::fs::File::create(bed.scratch().join("agent.log"))?;
    let child = Command::new(env!("CARGO_BIN_EXE_emco"))
        .arg("agent")
        .args(["--hub", &bed.hub.base_url])
        .args(["--cluster-provider", provider, "--cluster", cluster])
        .arg("--kubeconfig")
        .arg(bed.sim.kubeconfig(cluster))
        .args(["--interval-ms", "200"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("spawning emco agent")?;
    Ok(Agent(child))
}

/// collectd's objects on a cluster, as kubectl lists them (`Kind/name`).
fn collectd_objects(kubectl: &Kubectl) -> anyhow::Result<Vec<String>> {
    Ok(kind_and_names(&kubectl.labelled("daemonsets,configmaps")?))
}

/// `Kind/name` of each object, sorted.
fn kind_and_names(objects: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = objects
        .iter()
        .map(|object| {
            format!(
                "{}/{}",
                object["kind"].as_str().unwrap_or_default(),
                object["metadata"]["name"].as_str().unwrap_or_default()
            )
        })
        .collect();
    names.sort();
    names
}

/// What `flux bootstrap --path=clusters/provider-flux+cluster2` commits: the cluster's own
/// source and root Kustomization, so the cluster's folder is never empty.
fn commit_bootstrap(bed: &Bed, git_url: &str) -> anyhow::Result<()> {
    let clone = bed.scratch().join("bootstrap-clone");
    let git = |args: &[&str]| -> anyhow::Result<()> {
        let output = Command::new("git")
            .current_dir(&clone)
            .args([
                "-c",
                &format!("http.extraHeader=Authorization: Basic {GIT_BASIC}"),
            ])
            .args(["-c", "user.name=flux", "-c", "user.email=flux@localhost"])
            .args(args)
            .output()?;
        ensure!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(())
    };
    std::fs::create_dir_all(clone.join("clusters/provider-flux+cluster2/flux-system"))?;
    git(&["init", "--quiet", "-b", "main"])?;
    std::fs::write(
        clone.join("clusters/provider-flux+cluster2/flux-system/gotk-sync.yaml"),
        [
            "apiVersion: source.toolkit.fluxcd.io/v1",
            "kind: GitRepository",
            "metadata:",
            "  name: flux-system",
            "  namespace: flux-system",
            "spec:",
            "  interval: 1m0s",
            "  ref:",
            "    branch: main",
            "  secretRef:",
            "    name: flux-system",
            &format!("  url: {git_url}"),
            "---",
            "apiVersion: kustomize.toolkit.fluxcd.io/v1",
            "kind: Kustomization",
            "metadata:",
            "  name: flux-system",
            "  namespace: flux-system",
            "spec:",
            "  interval: 10m0s",
            "  path: ./clusters/provider-flux+cluster2",
            "  prune: true",
            "  sourceRef:",
            "    kind: GitRepository",
            "    name: flux-system",
            "",
        ]
        .join("\n"),
    )?;
    git(&["add", "--all"])?;
    git(&["commit", "--quiet", "-m", "Add Flux sync manifests"])?;
    git(&["push", "--quiet", git_url, "main"])?;
    Ok(())
}

fn git_files(bed: &Bed, git_url: &str) -> anyhow::Result<Vec<String>> {
    let clone = bed.scratch().join("check-clone");
    let _ = std::fs::remove_dir_all(&clone);
    let output = Command::new("git")
        .args([
            "-c",
            &format!("http.extraHeader=Authorization: Basic {GIT_BASIC}"),
        ])
        .args(["clone", "--quiet", git_url])
        .arg(&clone)
        .output()?;
    ensure!(
        output.status.success(),
        "git clone: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listing = Command::new("git")
        .current_dir(&clone)
        .args(["ls-files"])
        .output()?;
    Ok(String::from_utf8_lossy(&listing.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

async fn summary(bed: &Bed) -> anyhow::Result<Value> {
    bed.api.status(GROUP, "status=ready&output=summary").await
}

/// A running test-flux: the simulator (Git server with the token, cluster2 bootstrapped for
/// Flux), the hub, `emco agent` beside cluster2, and upstream's files applied through
/// `emcoctl` with `token` in the Git sync object.
struct FluxBed {
    bed: Bed,
    git_url: String,
    values: PathBuf,
    _agent: Agent,
}

async fn start_test_flux(token: &str) -> anyhow::Result<FluxBed> {
    start_test_pull(token, Puller::Flux).await
}

/// What pulls cluster2's folder.
#[derive(Clone, Copy, PartialEq)]
enum Puller {
    /// Flux, bootstrapped as `flux bootstrap` leaves it.
    Flux,
    /// Argo CD with an app-of-apps root Application on the cluster's folder; the cluster is
    /// registered with `gitOpsType: argocd` (test-flux's files otherwise unchanged).
    ArgoCd,
}

/// The hub and `clusters` simulated clusters, the simulator serving Git with the token
/// (pull modes every 300 ms), and its repository `gitrepo`'s URL.
async fn start_git_bed(clusters: usize) -> anyhow::Result<(Bed, String)> {
    let bed = Bed::start_with(
        clusters,
        "cluster",
        "1s",
        &[
            "--git-user",
            &format!("{GIT_USER}:{GIT_TOKEN}"),
            "--flux-interval-ms",
            "300",
        ],
    )
    .await?;
    let repo: Value = bed
        .client
        .post(format!("{}/sim/git/repos/gitrepo", bed.sim.base_url))
        .send()
        .await?
        .json()
        .await?;
    let git_url = repo["url"].as_str().context("repo url")?.to_owned();
    Ok((bed, git_url))
}

async fn start_test_pull(token: &str, puller: Puller) -> anyhow::Result<FluxBed> {
    let (bed, git_url) = start_git_bed(2).await?;
    let client = &bed.client;
    let bootstrap = match puller {
        Puller::Flux => {
            commit_bootstrap(&bed, &git_url)?;
            client
                .post(format!("{}/sim/clusters/cluster2/flux", bed.sim.base_url))
                .json(&json!({"url": git_url, "branch": "main",
                    "path": "./clusters/provider-flux+cluster2",
                    "username": GIT_USER, "token": GIT_TOKEN}))
                .send()
                .await?
        }
        Puller::ArgoCd => {
            client
                .post(format!("{}/sim/clusters/cluster2/argocd", bed.sim.base_url))
                .json(&json!({"url": git_url, "branch": "main",
                    "path": "clusters/provider-flux+cluster2",
                    "username": GIT_USER, "token": GIT_TOKEN}))
                .send()
                .await?
        }
    };
    ensure!(
        bootstrap.status().is_success(),
        "bootstrap: {}",
        bootstrap.text().await?
    );
    let agent = start_agent(&bed, "provider-flux", "cluster2")?;

    let ctl = bed.emcoctl()?;
    let values = flux_values(bed.scratch(), &bed, &git_url, token)?;
    let file = |name: &str| upstream_example(&format!("test-flux/{name}"));
    // The cluster2 entry uploads `values.yaml` (a placeholder file): run where it is.
    let dir = Some(bed.scratch());
    let prerequisites = generated("examples/test-flux/00-prerequisites.yaml");
    let prerequisites = match puller {
        Puller::Flux => prerequisites,
        Puller::ArgoCd => {
            let text = std::fs::read_to_string(&prerequisites)?
                .replace("gitOpsType: \"fluxcd\"", "gitOpsType: \"argocd\"");
            ensure!(text.contains("\"argocd\""), "{text}");
            let path = bed.scratch().join("00-prerequisites-argocd.yaml");
            std::fs::write(&path, text)?;
            path
        }
    };
    ctl.file_in(dir, "apply", &prerequisites, &values, &[])?;
    for name in [
        "01-logical-cloud.yaml",
        "02-deployment-intent.yaml",
        "03-instantiation.yaml",
    ] {
        ctl.file_in(dir, "apply", &file(name), &values, &[])?;
    }
    // The token is sealed: GET shows it masked.
    let sync_object = bed
        .api
        .get("/v2/cluster-providers/provider-flux/cluster-sync-objects/GitObjectFluxRepo")
        .await?
        .json()?;
    ensure!(!sync_object.to_string().contains(token), "{sync_object}");
    Ok(FluxBed {
        bed,
        git_url,
        values,
        _agent: agent,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_flux_example_reaches_a_push_and_a_flux_cluster_through_emcoctl() -> anyhow::Result<()>
{
    push_and_pull_cluster_in_one_group(Puller::Flux).await
}

/// test-flux with cluster2 registered as an Argo CD cluster: the hub writes an Application per
/// deployment beside its folder, the root Application brings it, it syncs (and on the way out
/// its finalizer prunes) the deployment's objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_flux_example_as_an_argo_cd_cluster_through_emcoctl() -> anyhow::Result<()> {
    push_and_pull_cluster_in_one_group(Puller::ArgoCd).await
}

async fn push_and_pull_cluster_in_one_group(puller: Puller) -> anyhow::Result<()> {
    let flux = start_test_pull(GIT_TOKEN, puller).await?;
    let (bed, git_url, values) = (&flux.bed, &flux.git_url, &flux.values);
    let ctl = bed.emcoctl()?;
    let file = |name: &str| upstream_example(&format!("test-flux/{name}"));
    let dir = Some(bed.scratch());
    let group = GROUP.trim_start_matches("/v2/");
    let watch = ctl.watch(group, "90s")?;
    ensure!(
        watch.code == Some(0) && watch.stdout.contains("all resources ready"),
        "emcoctl status --watch:\n{}\n{}\nhub:\n{}\nagent:\n{}",
        watch.stdout,
        watch.stderr,
        bed.hub.stderr(),
        std::fs::read_to_string(bed.scratch().join("agent.log")).unwrap_or_default()
    );
    let cluster1 = bed.kubectl("cluster1");
    let cluster2 = bed.kubectl("cluster2");
    let on_cluster1 = collectd_objects(&cluster1)?;
    let on_cluster2 = collectd_objects(&cluster2)?;
    ensure!(
        !on_cluster1.is_empty() && on_cluster1 == on_cluster2,
        "cluster1 {on_cluster1:?} cluster2 {on_cluster2:?}"
    );
    // On cluster2 the agent applied them (its labels), from the hub's files in Git.
    let daemonsets = cluster2.get_json(&["daemonsets", "-A"])?;
    let (label, prefix) = match puller {
        Puller::Flux => ("kustomize.toolkit.fluxcd.io/name", "kust"),
        Puller::ArgoCd => ("app.kubernetes.io/instance", "emco-"),
    };
    ensure!(
        daemonsets.iter().any(|object| {
            object["metadata"]["labels"][label]
                .as_str()
                .is_some_and(|name| name.starts_with(prefix))
        }),
        "{daemonsets:?}"
    );
    if puller == Puller::ArgoCd {
        let applications = cluster2.get_json(&["applications", "-n", "argocd"])?;
        ensure!(
            applications.iter().any(|app| {
                app["metadata"]["name"]
                    .as_str()
                    .is_some_and(|name| name.starts_with("emco-"))
                    && app["status"]["sync"]["status"] == "Synced"
            }),
            "{applications:?}"
        );
    }
    let files = git_files(bed, git_url)?;
    ensure!(
        files.iter().any(
            |f| f.starts_with("clusters/provider-flux+cluster2/context/")
                && f.contains("/app/collectd/")
        ),
        "{files:?}"
    );
    ensure!(
        !files.iter().any(|f| f.contains("provider-flux+cluster1")),
        "the push cluster has nothing in Git: {files:?}"
    );

    // An update taking collectd off the Flux cluster: its files leave Git, Flux prunes the
    // objects, the agent's report shows them gone; cluster1 keeps its copy.
    let update = bed.scratch().join("update.yaml");
    std::fs::write(
        &update,
        format!(
            "---\nversion: emco/v2\nresourceContext:\n  anchor: {group}/generic-placement-intents/test-placement-intent/app-intents\n\
             metadata:\n  name: collectd-placement-intent\nspec:\n  app: collectd\n  intent:\n    allOf:\n    - clusterProvider: provider-flux\n      cluster: cluster1\n"
        ),
    )?;
    ctl.file_in(dir, "update", &update, values, &[])?;
    let update_action = bed.scratch().join("update-action.yaml");
    std::fs::write(
        &update_action,
        format!("---\nversion: emco/v2\nresourceContext:\n  anchor: {group}/update\n"),
    )?;
    ctl.file_in(dir, "apply", &update_action, values, &[])?;
    wait_for(
        "collectd off the Flux cluster only",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let left = (collectd_objects(&cluster1)?, collectd_objects(&cluster2)?);
            Ok(if left.0 == on_cluster1 && left.1.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            })
        },
    )
    .await?;
    let watch = ctl.watch(group, "60s")?;
    ensure!(
        watch.code == Some(0) && watch.stdout.contains("all resources ready"),
        "after the update:\n{}\n{}",
        watch.stdout,
        watch.stderr
    );
    let files = git_files(bed, git_url)?;
    ensure!(
        !files.iter().any(|f| f.contains("/context/")),
        "the Flux cluster's deployment left Git: {files:?}"
    );

    // Terminate (the README's clean-up order).
    ctl.file_in(dir, "delete", &file("03-instantiation.yaml"), values, &[])?;
    wait_for(
        "collectd gone from both clusters",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let left = (collectd_objects(&cluster1)?, collectd_objects(&cluster2)?);
            Ok(if left.0.is_empty() && left.1.is_empty() {
                Ok(())
            } else {
                Err(format!("{left:?}"))
            })
        },
    )
    .await?;
    let state = wait_for(
        "terminated",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let status = summary(bed).await?;
            let state = status["deployedStatus"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Ok(if state == "Terminated" {
                Ok(status)
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;
    let files = git_files(bed, git_url)?;
    ensure!(
        !files.iter().any(|f| f.contains("/context/")),
        "{files:?} {state}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_leaves_the_flux_cluster_retrying_until_its_sync_object_is_fixed()
-> anyhow::Result<()> {
    let flux = start_test_flux("not-the-token").await?;
    let (bed, values) = (&flux.bed, &flux.values);
    let ctl = bed.emcoctl()?;
    // The push cluster converges; the Flux cluster is retried, saying why.
    let cluster1 = bed.kubectl("cluster1");
    let seen = wait_for(
        "cluster1 deployed, cluster2 retrying with git's reason",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let status = bed
                .api
                .status(GROUP, "status=deployed&output=detail")
                .await?
                .to_string();
            let reason = status.contains("the server refused user gituser's token");
            let deployed = !collectd_objects(&cluster1)?.is_empty();
            Ok(if status.contains("Retrying") && reason && deployed {
                Ok(status)
            } else {
                Err(status)
            })
        },
    )
    .await?;
    ensure!(!seen.contains("not-the-token"), "{seen}");
    // The user fixes the token: the waiting work goes out, nothing lost.
    let fixed = bed.scratch().join("fixed-token.yaml");
    std::fs::write(
        &fixed,
        format!(
            "---\nversion: emco/v2\nresourceContext:\n  anchor: cluster-providers/provider-flux/cluster-sync-objects\n\
             metadata:\n  name: GitObjectFluxRepo\nspec:\n  kv:\n  - userName: {GIT_USER}\n  - gitToken: {GIT_TOKEN}\n\
             \x20 - repoName: gitrepo\n  - branch: main\n  - url: {}\n",
            flux.git_url
        ),
    )?;
    ctl.file_in(Some(bed.scratch()), "update", &fixed, values, &[])?;
    let watch = ctl.watch(GROUP.trim_start_matches("/v2/"), "90s")?;
    ensure!(
        watch.code == Some(0) && watch.stdout.contains("all resources ready"),
        "after fixing the token:\n{}\n{}\nhub:\n{}",
        watch.stdout,
        watch.stderr,
        bed.hub.stderr()
    );
    ensure!(
        collectd_objects(&bed.kubectl("cluster2"))? == collectd_objects(&cluster1)?,
        "cluster2 got collectd"
    );
    Ok(())
}

/// Upstream's test-anthos values with this bed's Git repository and archives; the cluster is
/// the simulator's `cluster1` (upstream's is `acm-cluster`).
fn anthos_values(dir: &Path, git_url: &str) -> anyhow::Result<PathBuf> {
    let source = upstream_example("test-anthos/values.yaml");
    let text = support::example_values(
        &source,
        true,
        // test-anthos names no kubeconfig: its cluster is registered with spec.gitOps only.
        |cluster| PathBuf::from(cluster),
        |key| match key {
            "GitUser" => Some(GIT_USER.to_owned()),
            "GitToken" => Some(GIT_TOKEN.to_owned()),
            "GitRepo" => Some("gitrepo".to_owned()),
            "GitUrl" => Some(git_url.to_owned()),
            "Cluster1" => Some("cluster1".to_owned()),
            _ => None,
        },
    )?;
    support::write_file(dir.join("anthos-values.yaml"), &text)
}

fn git_file(bed: &Bed, path: &str) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(bed.scratch().join("check-clone").join(path))
        .with_context(|| format!("reading {path} from the clone"))?;
    Ok(serde_json::from_str(&text)?)
}

/// The objects of a namespace on a cluster, as kubectl lists them (`Kind/name`).
fn objects_in(kubectl: &Kubectl, namespace: &str) -> anyhow::Result<Vec<String>> {
    let args = [
        "daemonsets,configmaps",
        "-n",
        namespace,
        "-l",
        "emco/deployment-id",
    ];
    Ok(kind_and_names(&kubectl.get_json(&args)?))
}

/// Upstream's test-anthos unchanged through emcoctl: a privileged (level-1) logical cloud on
/// an Anthos cluster, then collectd into it. The cloud's objects and its `RepoSync` go under
/// the cluster's folder, which the cluster's RootSync (set up as the GKE console would, here
/// the simulator's Config Sync mode) applies; the group's objects go under the cloud's
/// namespace folder, which the RepoSync applies into the namespace. `emco agent` reports them;
/// the group is Ready, and terminating it prunes them from the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_anthos_example_syncs_a_privileged_cloud_through_its_repo_sync() -> anyhow::Result<()>
{
    let (bed, git_url) = start_git_bed(1).await?;
    let setup = bed
        .client
        .post(format!(
            "{}/sim/clusters/cluster1/configsync",
            bed.sim.base_url
        ))
        .json(&json!({"url": git_url, "branch": "main",
            "dir": "clusters/provider-anthos+cluster1",
            "username": GIT_USER, "token": GIT_TOKEN}))
        .send()
        .await?;
    ensure!(
        setup.status().is_success(),
        "Config Sync setup: {}",
        setup.text().await?
    );
    let _agent = start_agent(&bed, "provider-anthos", "cluster1")?;
    let values = anthos_values(bed.scratch(), &git_url)?;
    let ctl = bed.emcoctl()?;
    let file = |name: &str| upstream_example(&format!("test-anthos/{name}"));
    let dir = Some(bed.scratch());
    let cluster1 = bed.kubectl("cluster1");
    // The cluster entry uploads `values.yaml` (a placeholder file): run where it is.
    std::fs::copy(file("values.yaml"), bed.scratch().join("values.yaml"))?;
    for name in [
        "00-controllers.yaml",
        "01-prerequisites.yaml",
        "02-logicalcloud.yaml",
    ] {
        ctl.file_in(dir, "apply", &file(name), &values, &[])?;
    }

    // The RootSync brings the cloud: its namespace, and its RepoSync. The cluster's
    // administrator gives the RepoSync its read credentials (never in Git), and approves the
    // cloud user's certificate request on the cluster: the hub cannot reach it.
    wait_for(
        "the cloud's namespace and RepoSync on the cluster",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let namespaces = cluster1.get_json(&["namespaces"])?;
            let namespace = namespaces
                .iter()
                .any(|ns| ns["metadata"]["name"] == "privileged-lc-ns");
            let repo_syncs = cluster1.get_json(&["reposyncs", "-A"])?;
            Ok(if namespace && !repo_syncs.is_empty() {
                Ok(())
            } else {
                Err(format!("namespace {namespace}, RepoSyncs {repo_syncs:?}"))
            })
        },
    )
    .await?;
    cluster1.run(&[
        "create",
        "secret",
        "generic",
        "git-creds",
        "-n",
        "privileged-lc-ns",
        &format!("--from-literal=username={GIT_USER}"),
        &format!("--from-literal=token={GIT_TOKEN}"),
    ])?;
    cluster1.run(&["certificate", "approve", "lc1-privileged-lc-ns-user-csr"])?;

    for name in ["03-deployment-intent.yaml", "04-instantiation.yaml"] {
        ctl.file_in(dir, "apply", &file(name), &values, &[])?;
    }
    let group = "projects/proj-anthos/composite-apps/test-composite-app/v1/deployment-intent-groups/test-deployment-intent";
    let watch = ctl.watch(group, "90s")?;
    ensure!(
        watch.code == Some(0) && watch.stdout.contains("all resources ready"),
        "emcoctl status --watch:\n{}\n{}\nhub:\n{}\nagent:\n{}",
        watch.stdout,
        watch.stderr,
        bed.hub.stderr(),
        std::fs::read_to_string(bed.scratch().join("agent.log")).unwrap_or_default()
    );
    let deployed = objects_in(&cluster1, "privileged-lc-ns")?;
    ensure!(
        deployed.iter().any(|name| name.starts_with("DaemonSet/")),
        "{deployed:?}"
    );
    // The RepoSync applied them, and says so.
    let repo_syncs = cluster1.get_json(&["reposyncs", "-n", "privileged-lc-ns"])?;
    let repo_sync = repo_syncs.first().context("the RepoSync")?;
    ensure!(
        repo_sync["metadata"]["name"] == "repo-sync-lc1"
            && repo_sync["status"]["sync"]["commit"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
        "{repo_sync}"
    );
    let daemonsets = cluster1.get_json(&["daemonsets", "-n", "privileged-lc-ns"])?;
    ensure!(
        !daemonsets.is_empty()
            && daemonsets.iter().all(|ds| {
                ds["metadata"]["annotations"]["configsync.gke.io/manager"]
                    == "privileged-lc-ns_repo-sync-lc1"
            }),
        "{daemonsets:?}"
    );
    // The cloud's user certificate, approved on the cluster, is Ready at the hub too.
    let cloud = wait_for(
        "the cloud's objects ready",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let status = bed
                .api
                .status(
                    "/v2/projects/proj-anthos/logical-clouds/lc1",
                    "status=ready&output=summary",
                )
                .await?;
            Ok(if status["readyStatus"] == "Ready" {
                Ok(status)
            } else {
                Err(status.to_string())
            })
        },
    )
    .await?;

    let files = git_files(&bed, &git_url)?;
    let cluster_dir = "clusters/provider-anthos+cluster1/context/";
    let namespace_dir = "namespaces/privileged-lc-ns/provider-anthos+cluster1/context/";
    let repo_sync_file = files
        .iter()
        .find(|f| f.ends_with("/repo-sync-lc1+RepoSync.json"))
        .context("RepoSync file")?;
    ensure!(repo_sync_file.starts_with(cluster_dir), "{repo_sync_file}");
    let repo_sync = git_file(&bed, repo_sync_file)?;
    ensure!(
        repo_sync["metadata"] == json!({"name": "repo-sync-lc1", "namespace": "privileged-lc-ns"})
            && repo_sync["spec"]["git"]["dir"]
                == "/namespaces/privileged-lc-ns/provider-anthos+cluster1"
            && repo_sync["spec"]["git"]["repo"] == git_url.as_str()
            && repo_sync["spec"]["git"]["branch"] == "main"
            && repo_sync["spec"]["git"]["secretRef"]["name"] == "git-creds",
        "{repo_sync}"
    );
    ensure!(!repo_sync.to_string().contains(GIT_TOKEN), "{repo_sync}");
    ensure!(
        files.iter().any(|f| f.starts_with(cluster_dir)
            && f.ends_with("/app/logical-cloud/privileged-lc-ns+Namespace.yaml")),
        "{files:?}"
    );
    // Each deployment is marked deployed, in its own folder.
    let markers = files.iter().filter(|f| f.ends_with("/deployed")).count();
    ensure!(markers == 2, "{files:?}");
    ensure!(
        files
            .iter()
            .any(|f| f.starts_with(namespace_dir) && f.ends_with("+DaemonSet.yaml")),
        "{files:?}"
    );

    // Terminating the group empties the namespace folder, the RepoSync prunes its objects; the
    // cloud stays.
    ctl.file_in(dir, "delete", &file("04-instantiation.yaml"), &values, &[])?;
    wait_for(
        "the group gone from Git and the cluster",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let files = git_files(&bed, &git_url)?;
            let group = files.iter().any(|f| f.starts_with(namespace_dir));
            // The RepoSync's folder stays with the cloud, so Config Sync prunes.
            let cloud = files
                .iter()
                .any(|f| f.ends_with("/repo-sync-lc1+RepoSync.json"))
                && files.contains(
                    &"namespaces/privileged-lc-ns/provider-anthos+cluster1/logical-cloud"
                        .to_owned(),
                );
            let left = objects_in(&cluster1, "privileged-lc-ns")?;
            Ok(if !group && cloud && left.is_empty() {
                Ok(())
            } else {
                let repo_syncs = cluster1.get_json(&["reposyncs", "-A"])?;
                Err(format!("{files:?} {left:?} {repo_syncs:?}"))
            })
        },
    )
    .await?;
    let state = wait_for(
        "terminated",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let status = bed
                .api
                .status(&format!("/v2/{group}"), "status=ready&output=summary")
                .await?;
            Ok(if status["deployedStatus"] == "Terminated" {
                Ok(())
            } else {
                Err(status.to_string())
            })
        },
    )
    .await;
    state.with_context(|| format!("cloud was {cloud}"))?;

    // The README's clean-up: the group's resources, then the cloud. Its files leave Git, and
    // the RootSync prunes the RepoSync and the cloud's namespace.
    for name in ["03-deployment-intent.yaml", "02-logicalcloud.yaml"] {
        ctl.file_in(dir, "delete", &file(name), &values, &[])?;
    }
    wait_for(
        "the cloud gone from Git and the cluster",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || async {
            let files = git_files(&bed, &git_url)?;
            let repo_syncs = cluster1.get_json(&["reposyncs", "-A"])?;
            let namespace = cluster1
                .get_json(&["namespaces"])?
                .iter()
                .any(|ns| ns["metadata"]["name"] == "privileged-lc-ns");
            // The cluster's folder stays, so that its RootSync prunes rather than fails.
            let kept = files == ["clusters/provider-anthos+cluster1/managed-by-emco"];
            Ok(if kept && repo_syncs.is_empty() && !namespace {
                Ok(())
            } else {
                Err(format!("{files:?} {repo_syncs:?} namespace {namespace}"))
            })
        },
    )
    .await?;
    Ok(())
}
