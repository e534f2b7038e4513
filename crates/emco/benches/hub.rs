//! End-to-end hub benchmark: `cargo bench -p emco --bench hub`.
//!
//! Starts the real `emco serve` binary (the bench profile builds it, inheriting `release`) on a
//! loopback port with a fresh embedded store, and through real HTTP with a bounded number of
//! requests in flight measures:
//! 1. create throughput and latency per kind while filling the store to about 100 000 resources
//!    (a cluster provider with 10 000 clusters, their labels and kv-pairs; projects with composite
//!    apps, apps with small chart archives, composite profiles, logical clouds, deployment intent
//!    groups, generic placement intents and app intents);
//! 2. `GET` by name over a random sample of the stored resources (fixed xorshift seed);
//! 3. listing every cluster: plain, `?label=edge` and `?withLabels=true`, one request at a time;
//! 4. the store's size on disk and the hub's peak RSS and CPU time.
//!
//! Environment knobs: `EMCO_BENCH_SCALE` (default 1.0; 0.1 gives a run of a few seconds),
//! `EMCO_BENCH_CONCURRENCY` (requests in flight, default 16), `EMCO_BENCH_GET_SAMPLES` (default
//! 20 000 x scale), `EMCO_BENCH_LIST_RUNS` (default 20), `EMCO_BENCH_SEED`.
//!
//! Without `--bench` (as `cargo test --all-targets` runs it) it does nothing: it is far too heavy
//! for a test suite.

#[path = "../tests/conformance/hub.rs"]
mod hub;
#[path = "support/proc_usage.rs"]
mod proc_usage;

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::{Value, json};

use hub::Hub;
use proc_usage::{stat_fields, usage};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
const PROVIDER: &str = "bench-provider";
/// The label every other cluster carries, which the filtered listing asks for.
const EDGE_LABEL: &str = "edge";
/// Every cluster also carries one of this many `zone-N` labels.
const ZONES: usize = 8;
const KV_PAIRS_PER_CLUSTER: usize = 2;
const COMPOSITE_APPS_PER_PROJECT: usize = 10;
const APPS_PER_COMPOSITE_APP: usize = 6;
const DIGS_PER_COMPOSITE_APP: usize = 70;
const COMPOSITE_APP_VERSION: &str = "v1";
const LOGICAL_CLOUD: &str = "lc";
const COMPOSITE_PROFILE: &str = "profile";
const PLACEMENT_INTENT: &str = "placement";

fn main() -> anyhow::Result<()> {
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("hub benchmark skipped (heavy): run it with `cargo bench -p emco --bench hub`");
        return Ok(());
    }
    let config = Config::from_env()?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the tokio runtime")?
        .block_on(run(config))
}

/// What the environment asked for.
struct Config {
    scale: f64,
    concurrency: usize,
    get_samples: usize,
    list_runs: usize,
    seed: u64,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        let scale: f64 = env_or("EMCO_BENCH_SCALE", 1.0)?;
        ensure!(
            scale > 0.0 && scale <= 10.0,
            "EMCO_BENCH_SCALE must be in (0, 10], got {scale}"
        );
        let concurrency = env_or("EMCO_BENCH_CONCURRENCY", 16)?;
        ensure!(
            concurrency >= 1,
            "EMCO_BENCH_CONCURRENCY must be at least 1"
        );
        let default_samples = ((20_000.0 * scale).round() as usize).max(1);
        let seed = env_or("EMCO_BENCH_SEED", 0x9E37_79B9_7F4A_7C15)?;
        ensure!(
            seed != 0,
            "EMCO_BENCH_SEED must not be 0 (xorshift would stay at 0)"
        );
        Ok(Self {
            scale,
            concurrency,
            get_samples: env_or("EMCO_BENCH_GET_SAMPLES", default_samples)?,
            list_runs: env_or::<usize>("EMCO_BENCH_LIST_RUNS", 20)?.max(1),
            seed,
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={text:?}: {e}")),
        Err(_) => Ok(default),
    }
}

/// How many of each thing the scale gives.
struct Shape {
    clusters: usize,
    projects: usize,
}

impl Shape {
    fn new(scale: f64) -> Self {
        Self {
            clusters: ((10_000.0 * scale).round() as usize).max(2),
            projects: ((10.0 * scale).round() as usize).max(1),
        }
    }

    fn edge_clusters(&self) -> usize {
        self.clusters.div_ceil(2)
    }
}

/// A tiny xorshift64 generator: reproducible samples without a `rand` dependency.
struct XorShift64(u64);

impl XorShift64 {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..bound` (the modulo bias is irrelevant at these sizes).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// One create request.
struct Create {
    /// Collection path under the base URL (`/v2/...`).
    collection: String,
    body: CreateBody,
}

enum CreateBody {
    Json(Value),
    /// `metadata` JSON part plus one `file` part.
    Multipart {
        metadata: Value,
        file_name: &'static str,
        file: Vec<u8>,
    },
}

/// Every create of one kind; a phase runs only after the previous one has finished.
struct Phase {
    kind: &'static str,
    creates: Vec<Create>,
    /// Item paths of what the phase creates, for the `GET` sample.
    items: Vec<String>,
}

impl Phase {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            creates: Vec::new(),
            items: Vec::new(),
        }
    }

    fn push(&mut self, collection: String, name_path: &str, body: CreateBody) {
        self.items.push(format!("{collection}/{name_path}"));
        self.creates.push(Create { collection, body });
    }
}

fn cluster_name(i: usize) -> String {
    format!("cluster-{i:05}")
}

fn kubeconfig(cluster: &str) -> Vec<u8> {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: https://{cluster}.example:6443\n    insecure-skip-tls-verify: true\ncontexts:\n- name: {cluster}\n  context:\n    cluster: {cluster}\n    user: admin\ncurrent-context: {cluster}\nusers:\n- name: admin\n  user:\n    token: bench-token-0123456789abcdef\n"
    )
    .into_bytes()
}

/// A minimal but valid Helm chart archive (`<name>/Chart.yaml`, values and one template).
fn chart_archive(name: &str) -> anyhow::Result<Vec<u8>> {
    let files = [
        ("Chart.yaml", format!("apiVersion: v2\nname: {name}\nversion: 0.1.0\nappVersion: \"1.0\"\n")),
        ("values.yaml", "replicaCount: 1\nimage: nginx:1.27\n".to_owned()),
        (
            "templates/deployment.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Chart.Name }}\nspec:\n  replicas: {{ .Values.replicaCount }}\n  selector:\n    matchLabels:\n      app: {{ .Chart.Name }}\n  template:\n    metadata:\n      labels:\n        app: {{ .Chart.Name }}\n    spec:\n      containers:\n      - name: main\n        image: {{ .Values.image }}\n".to_owned(),
        ),
    ];
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(encoder);
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, format!("{name}/{path}"), contents.as_bytes())?;
    }
    Ok(tar.into_inner()?.finish()?)
}

/// The whole fill, in dependency order.
fn plan(shape: &Shape) -> anyhow::Result<Vec<Phase>> {
    let provider_collection = "/v2/cluster-providers".to_owned();
    let clusters_collection = format!("{provider_collection}/{PROVIDER}/clusters");

    let mut providers = Phase::new("clusterProvider");
    providers.push(
        provider_collection,
        PROVIDER,
        CreateBody::Json(
            json!({"metadata": {"name": PROVIDER, "description": "benchmark provider"}}),
        ),
    );

    let mut clusters = Phase::new("cluster");
    let mut labels = Phase::new("clusterLabel");
    let mut kv_pairs = Phase::new("clusterKv");
    for i in 0..shape.clusters {
        let cluster = cluster_name(i);
        clusters.push(
            clusters_collection.clone(),
            &cluster,
            CreateBody::Multipart {
                metadata: json!({"metadata": {"name": cluster, "description": "benchmark cluster"}}),
                file_name: "kubeconfig.yaml",
                file: kubeconfig(&cluster),
            },
        );
        let labels_collection = format!("{clusters_collection}/{cluster}/labels");
        let zone = format!("zone-{}", i % ZONES);
        labels.push(
            labels_collection.clone(),
            &zone,
            CreateBody::Json(json!({ "clusterLabel": zone })),
        );
        if i % 2 == 0 {
            labels.push(
                labels_collection,
                EDGE_LABEL,
                CreateBody::Json(json!({ "clusterLabel": EDGE_LABEL })),
            );
        }
        for k in 0..KV_PAIRS_PER_CLUSTER {
            let name = format!("kv-{k}");
            kv_pairs.push(
                format!("{clusters_collection}/{cluster}/kv-pairs"),
                &name,
                CreateBody::Json(json!({
                    "metadata": {"name": name},
                    "spec": {"kv": [{"region": format!("r{}", i % 4)}, {"rack": format!("rack-{}", i % 32)}]}
                })),
            );
        }
    }

    let charts: Vec<(String, Vec<u8>)> = (1..=APPS_PER_COMPOSITE_APP)
        .map(|a| {
            let name = format!("app-{a}");
            let archive = chart_archive(&name)?;
            Ok((name, archive))
        })
        .collect::<anyhow::Result<_>>()?;

    let mut projects = Phase::new("project");
    let mut logical_clouds = Phase::new("logicalCloud");
    let mut composite_apps = Phase::new("compositeApp");
    let mut apps = Phase::new("app");
    let mut profiles = Phase::new("compositeProfile");
    let mut digs = Phase::new("deploymentIntentGroup");
    let mut placements = Phase::new("genericPlacementIntent");
    let mut app_intents = Phase::new("genericAppPlacementIntent");
    let mut dig_counter = 0usize;
    for p in 0..shape.projects {
        let project = format!("project-{p:02}");
        projects.push(
            "/v2/projects".to_owned(),
            &project,
            CreateBody::Json(json!({"metadata": {"name": project}})),
        );
        logical_clouds.push(
            format!("/v2/projects/{project}/logical-clouds"),
            LOGICAL_CLOUD,
            CreateBody::Json(json!({
                "metadata": {"name": LOGICAL_CLOUD},
                "spec": {"namespace": "bench", "user": {"userName": "bench", "type": "certificate"}}
            })),
        );
        for c in 0..COMPOSITE_APPS_PER_PROJECT {
            let composite_app = format!("ca-{c:02}");
            let ca_collection = format!("/v2/projects/{project}/composite-apps");
            composite_apps.push(
                ca_collection.clone(),
                &format!("{composite_app}/{COMPOSITE_APP_VERSION}"),
                CreateBody::Json(json!({
                    "metadata": {"name": composite_app},
                    "spec": {"compositeAppVersion": COMPOSITE_APP_VERSION}
                })),
            );
            let ca_path = format!("{ca_collection}/{composite_app}/{COMPOSITE_APP_VERSION}");
            for (app, archive) in &charts {
                apps.push(
                    format!("{ca_path}/apps"),
                    app,
                    CreateBody::Multipart {
                        metadata: json!({"metadata": {"name": app, "description": "benchmark app"}}),
                        file_name: "chart.tgz",
                        file: archive.clone(),
                    },
                );
            }
            profiles.push(
                format!("{ca_path}/composite-profiles"),
                COMPOSITE_PROFILE,
                CreateBody::Json(json!({"metadata": {"name": COMPOSITE_PROFILE}})),
            );
            for d in 0..DIGS_PER_COMPOSITE_APP {
                let dig = format!("dig-{d:03}");
                let digs_collection = format!("{ca_path}/deployment-intent-groups");
                digs.push(
                    digs_collection.clone(),
                    &dig,
                    CreateBody::Json(json!({
                        "metadata": {"name": dig},
                        "spec": {
                            "compositeProfile": COMPOSITE_PROFILE,
                            "version": "r1",
                            "logicalCloud": LOGICAL_CLOUD,
                            "overrideValues": []
                        }
                    })),
                );
                let placements_collection =
                    format!("{digs_collection}/{dig}/generic-placement-intents");
                placements.push(
                    placements_collection.clone(),
                    PLACEMENT_INTENT,
                    CreateBody::Json(json!({"metadata": {"name": PLACEMENT_INTENT}})),
                );
                for (a, (app, _)) in charts.iter().enumerate() {
                    // Half the apps go to every edge cluster, half to two named clusters (which
                    // makes the hub check and index two cluster references).
                    let intent = if a % 2 == 0 {
                        json!({"allOf": [{"clusterProvider": PROVIDER, "clusterLabel": EDGE_LABEL}]})
                    } else {
                        let first = (dig_counter * 7 + a) % shape.clusters;
                        let second = (first + shape.clusters / 2) % shape.clusters;
                        json!({"allOf": [
                            {"clusterProvider": PROVIDER, "cluster": cluster_name(first)},
                            {"clusterProvider": PROVIDER, "cluster": cluster_name(second)}
                        ]})
                    };
                    let name = format!("intent-{app}");
                    app_intents.push(
                        format!("{placements_collection}/{PLACEMENT_INTENT}/app-intents"),
                        &name,
                        CreateBody::Json(json!({"metadata": {"name": name}, "spec": {"app": app, "intent": intent}})),
                    );
                }
                dig_counter += 1;
            }
        }
    }
    Ok(vec![
        providers,
        clusters,
        labels,
        kv_pairs,
        projects,
        logical_clouds,
        composite_apps,
        apps,
        profiles,
        digs,
        placements,
        app_intents,
    ])
}

/// Latencies of one group of requests and the wall time they took together.
struct Stats {
    latencies: Vec<Duration>,
    wall: Duration,
}

impl Stats {
    fn new(mut latencies: Vec<Duration>, wall: Duration) -> Self {
        latencies.sort_unstable();
        Self { latencies, wall }
    }

    fn merged<'a>(parts: impl IntoIterator<Item = &'a Stats>) -> Self {
        let (mut latencies, mut wall) = (Vec::new(), Duration::ZERO);
        for part in parts {
            latencies.extend_from_slice(&part.latencies);
            wall += part.wall;
        }
        Self::new(latencies, wall)
    }

    fn quantile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let index = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[index]
    }

    fn max(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// `| count | wall s | req/s | p50 | p99 | max |` cells.
    fn row(&self) -> String {
        format!(
            "{:>7} | {:>7.2} | {:>8.0} | {:>7.2} | {:>7.2} | {:>8.2}",
            self.latencies.len(),
            self.wall.as_secs_f64(),
            self.per_second(),
            ms(self.quantile(0.50)),
            ms(self.quantile(0.99)),
            ms(self.max()),
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

const STATS_HEADER: &str = "|   count |  wall s |    req/s |  p50 ms |  p99 ms |   max ms |\n";
const STATS_RULE: &str = "|--------:|--------:|---------:|--------:|--------:|---------:|\n";

async fn send_create(
    client: &reqwest::Client,
    base: &str,
    create: Create,
) -> anyhow::Result<Duration> {
    let url = format!("{base}{}", create.collection);
    let request = match create.body {
        CreateBody::Json(body) => client.post(&url).json(&body),
        CreateBody::Multipart {
            metadata,
            file_name,
            file,
        } => {
            let form = reqwest::multipart::Form::new()
                .text("metadata", metadata.to_string())
                .part(
                    "file",
                    reqwest::multipart::Part::bytes(file).file_name(file_name),
                );
            client.post(&url).multipart(form)
        }
    };
    let started = Instant::now();
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("POST {url}: reading the answer"))?;
    let elapsed = started.elapsed();
    if status != reqwest::StatusCode::CREATED {
        bail!(
            "POST {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok(elapsed)
}

async fn send_get(
    client: &reqwest::Client,
    url: String,
) -> anyhow::Result<(Duration, bytes::Bytes)> {
    let started = Instant::now();
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .with_context(|| format!("GET {url}: reading the answer"))?;
    let elapsed = started.elapsed();
    if status != reqwest::StatusCode::OK {
        bail!(
            "GET {url} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    Ok((elapsed, body))
}

async fn run_creates(
    client: &reqwest::Client,
    base: &str,
    creates: Vec<Create>,
    concurrency: usize,
) -> anyhow::Result<Stats> {
    let started = Instant::now();
    let latencies: Vec<Duration> = stream::iter(creates)
        .map(|create| send_create(client, base, create))
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    Ok(Stats::new(latencies, started.elapsed()))
}

/// `count` distinct indices out of `0..len` (partial Fisher-Yates).
fn sample_indices(len: usize, count: usize, rng: &mut XorShift64) -> Vec<usize> {
    let mut indices: Vec<usize> = (0..len).collect();
    let count = count.min(len);
    for i in 0..count {
        let j = i + rng.below(len - i);
        indices.swap(i, j);
    }
    indices.truncate(count);
    indices
}

/// One listing query and how many clusters it must return.
struct ListQuery {
    label: &'static str,
    query: &'static str,
    expected: usize,
    /// Whether every item must carry a `labels` member.
    with_labels: bool,
}

async fn run_list(
    client: &reqwest::Client,
    base: &str,
    query: &ListQuery,
    runs: usize,
) -> anyhow::Result<(Stats, usize)> {
    let url = format!(
        "{base}/v2/cluster-providers/{PROVIDER}/clusters{}",
        query.query
    );
    let mut latencies = Vec::with_capacity(runs);
    let mut bytes = 0;
    let started = Instant::now();
    for _ in 0..runs {
        let (elapsed, body) = send_get(client, url.clone()).await?;
        latencies.push(elapsed);
        bytes = body.len();
        let items: Vec<Value> = serde_json::from_slice(&body)
            .with_context(|| format!("GET {url}: not a JSON array"))?;
        ensure!(
            items.len() == query.expected,
            "GET {url} returned {} items, expected {}",
            items.len(),
            query.expected
        );
        if query.with_labels {
            ensure!(
                items
                    .iter()
                    .all(|item| item.get("labels").is_some_and(Value::is_array)),
                "GET {url}: an item has no labels array"
            );
        }
    }
    Ok((Stats::new(latencies, started.elapsed()), bytes))
}

/// The hub is our child: find it by parent pid and by the data directory on its command line.
fn hub_pid(data_dir: &Path) -> anyhow::Result<u32> {
    let me = std::process::id();
    let wanted = data_dir.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc")? {
        let entry = entry?;
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(parent) =
            stat_fields(&stat).and_then(|f| f.get(1).and_then(|p| p.parse::<u32>().ok()))
        else {
            continue;
        };
        if parent != me {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline)
            .split('\0')
            .any(|arg| arg == wanted)
        {
            return Ok(pid);
        }
    }
    bail!("no child process serving {wanted} found in /proc")
}

/// The fields of `/proc/PID/stat` after the parenthesised command name (state is field 0).
/// `du`-style size of a directory tree: (allocated bytes, apparent bytes).
fn disk_usage(dir: &Path) -> anyhow::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let (mut allocated, mut apparent) = (0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b) = disk_usage(&entry.path())?;
            allocated += a;
            apparent += b;
        } else {
            allocated += meta.blocks() * 512;
            apparent += meta.len();
        }
    }
    Ok((allocated, apparent))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Prints a report section as soon as it is measured (a full run takes minutes).
fn emit(text: &str) {
    print!("{text}");
    // Progress only: a closed stdout must not fail the run.
    let _ = std::io::stdout().flush();
}

async fn run(config: Config) -> anyhow::Result<()> {
    let binary = Path::new(env!("CARGO_BIN_EXE_emco"));
    let shape = Shape::new(config.scale);
    let phases = plan(&shape)?;
    let total: usize = phases.iter().map(|p| p.creates.len()).sum();

    let scratch = tempfile::Builder::new()
        .prefix("emco-hub-bench")
        .tempdir()?;
    let data_dir = scratch.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let client = reqwest::Client::builder()
        // a registry proxy in the environment must not swallow requests to 127.0.0.1
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let mut hub = Hub::start(binary, &data_dir, scratch.path(), &client, &[]).await?;
    let pid = hub_pid(&data_dir)?;
    let base = hub.base_url.clone();

    emit(&format!(
        "hub binary: {}\n\
         scale {} ({} clusters, {} projects), {} requests in flight, {total} resources to create\n\n",
        binary.display(),
        config.scale,
        shape.clusters,
        shape.projects,
        config.concurrency,
    ));

    // 1. Fill the store.
    let cpu_before = usage(pid)?.cpu_seconds;
    emit(&format!(
        "### Create ({total} resources)\n\n| kind                      {STATS_HEADER}"
    ));
    emit(&format!("|---------------------------{STATS_RULE}"));
    let mut items: Vec<String> = Vec::with_capacity(total);
    let mut create_stats: Vec<Stats> = Vec::new();
    for phase in phases {
        items.extend(phase.items);
        let stats = run_creates(&client, &base, phase.creates, config.concurrency)
            .await
            .with_context(|| {
                format!(
                    "creating {} resources; hub stderr:\n{}",
                    phase.kind,
                    hub.stderr()
                )
            })?;
        emit(&format!("| {:<25} | {} |\n", phase.kind, stats.row()));
        create_stats.push(stats);
    }
    let overall = Stats::merged(&create_stats);
    emit(&format!("| {:<25} | {} |\n\n", "**all**", overall.row()));
    let cpu_create = usage(pid)?.cpu_seconds - cpu_before;

    // 2. GET by name.
    let mut rng = XorShift64(config.seed);
    let sample = sample_indices(items.len(), config.get_samples, &mut rng);
    let cpu_before = usage(pid)?.cpu_seconds;
    let started = Instant::now();
    let latencies: Vec<Duration> =
        stream::iter(sample.iter().map(|&i| format!("{base}{}", items[i])))
            .map(|url| {
                let client = &client;
                async move { send_get(client, url).await.map(|(elapsed, _)| elapsed) }
            })
            .buffer_unordered(config.concurrency)
            .try_collect()
            .await?;
    let get_stats = Stats::new(latencies, started.elapsed());
    let cpu_get = usage(pid)?.cpu_seconds - cpu_before;
    emit(&format!(
        "### GET by name ({} random stored resources, seed {:#x})\n\n| request                   {STATS_HEADER}|---------------------------{STATS_RULE}| {:<25} | {} |\n\n",
        sample.len(),
        config.seed,
        "GET item",
        get_stats.row()
    ));

    // 3. Listing clusters, one request at a time.
    let queries = [
        ListQuery {
            label: "all clusters",
            query: "",
            expected: shape.clusters,
            with_labels: false,
        },
        ListQuery {
            label: "?label=edge",
            query: "?label=edge",
            expected: shape.edge_clusters(),
            with_labels: false,
        },
        ListQuery {
            label: "?withLabels=true",
            query: "?withLabels=true",
            expected: shape.clusters,
            with_labels: true,
        },
    ];
    let cpu_before = usage(pid)?.cpu_seconds;
    let mut list_table = format!(
        "### List {} clusters ({} sequential runs each)\n\n| query             |   items | answer KiB |  p50 ms |  p99 ms |  max ms |\n|-------------------|--------:|-----------:|--------:|--------:|--------:|\n",
        shape.clusters, config.list_runs
    );
    for query in &queries {
        let (stats, bytes) = run_list(&client, &base, query, config.list_runs).await?;
        writeln!(
            list_table,
            "| {:<17} | {:>7} | {:>10.0} | {:>7.1} | {:>7.1} | {:>7.1} |",
            query.label,
            query.expected,
            bytes as f64 / 1024.0,
            ms(stats.quantile(0.50)),
            ms(stats.quantile(0.99)),
            ms(stats.max())
        )?;
    }
    list_table.push('\n');
    emit(&list_table);
    let cpu_list = usage(pid)?.cpu_seconds - cpu_before;

    // 4. Footprint.
    let usage = usage(pid)?;
    if let Some(exit) = hub.exit_status() {
        bail!(
            "the hub exited during the run ({exit}); its stderr:\n{}",
            hub.stderr()
        );
    }
    let (allocated, apparent) = disk_usage(&data_dir)?;
    emit(&format!(
        "### Footprint\n\n\
         - store on disk (du of the data dir): {:.1} MiB allocated, {:.1} MiB apparent\n\
         - hub peak RSS (VmHWM): {:.1} MiB (VmRSS at the end: {:.1} MiB)\n\
         - hub CPU time: create {cpu_create:.1} s, GET {cpu_get:.1} s, list {cpu_list:.1} s\n",
        mib(allocated),
        mib(apparent),
        usage.peak_rss_kib as f64 / 1024.0,
        usage.rss_kib as f64 / 1024.0,
    ));
    drop(hub);
    Ok(())
}
