//! End to end: the real `emcoctl` applies upstream's `examples/single-cluster` files, unchanged,
//! to the real hub (values from upstream's generated `values.yaml`, its placeholder paths
//! replaced by real files), up to but not including approve/instantiate; then deletes them all
//! again in reverse, leaving the hub empty.

use crate::support::hub;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

const SHARED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/emco-reference"
);

/// Upstream deployment files of the single-cluster example (each has an `-instantiate.yaml`
/// sibling holding approve/instantiate, which we do not apply yet).
const DEPLOYMENTS: &[&str] = &[
    "monitor-deployment.yaml",
    "test-prometheus-collectd-deployment.yaml",
    "test-dtc-deployment.yaml",
    "test-vfw-deployment.yaml",
];

/// `emcoctl` lives next to `emco` in the target directory; build it if this test ran alone.
fn emcoctl_binary() -> anyhow::Result<PathBuf> {
    let emco = Path::new(env!("CARGO_BIN_EXE_emco"));
    let candidate = emco.with_file_name(format!("emcoctl{}", std::env::consts::EXE_SUFFIX));
    if !candidate.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "emcoctl"])
            .status()?;
        if !status.success() {
            bail!("building emcoctl failed");
        }
    }
    Ok(candidate)
}

/// Upstream's generated values with `output/X` and `/path/to/...` placeholders made real.
fn values_file(dir: &Path) -> anyhow::Result<PathBuf> {
    let source =
        format!("{SHARED}/generated-from-jacobtrvl-emco/examples/single-cluster/values.yaml");
    let text = std::fs::read_to_string(&source).with_context(|| format!("reading {source}"))?;
    let kubeconfig = dir.join("cluster1.kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:1/clusters/c'}\n\
         contexts:\n- name: c\n  context: {cluster: c, user: u}\ncurrent-context: c\nusers:\n- name: u\n  user: {token: t}\n",
    )?;
    let tarballs = format!("{SHARED}/generated-from-jacobtrvl-emco/tarballs");
    let mut out = String::new();
    for line in text.lines() {
        let line = line.replace("output/", &format!("{tarballs}/"));
        let line = match line.find("/path/to/") {
            Some(_) => {
                let (key, _) = line.split_once(':').unwrap_or((&line, ""));
                format!("{key}: {}", kubeconfig.display())
            }
            None => line,
        };
        out.push_str(&line);
        out.push('\n');
    }
    let path = dir.join("values.yaml");
    std::fs::write(&path, out)?;
    Ok(path)
}

/// Calls allowed to fail, with why: applying networks to a cluster (ncm) is not built yet.
const KNOWN_UNSUPPORTED: &[&str] = &[
    "POST /v2/cluster-providers/provider1/clusters/cluster1/apply --> 501",
    "POST /v2/cluster-providers/provider1/clusters/cluster1/terminate --> 501",
];

fn run(
    emcoctl: &Path,
    config: &Path,
    values: &Path,
    verb: &str,
    file: &Path,
) -> anyhow::Result<String> {
    let output = Command::new(emcoctl)
        .arg("--config")
        .arg(config)
        .arg(verb)
        .arg("-f")
        .arg(file)
        .arg("-v")
        .arg(values)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let failed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" --> 4") || l.contains(" --> 5"))
        .filter(|l| !KNOWN_UNSUPPORTED.iter().any(|k| l.starts_with(k)))
        .collect();
    let only_known = output.status.code() == Some(1) && failed.is_empty();
    if !output.status.success() && !only_known {
        bail!(
            "emcoctl {verb} -f {} failed ({}):\n{stdout}\n{}",
            file.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(stdout)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_cluster_example_applies_and_deletes_through_emcoctl() -> anyhow::Result<()> {
    let scratch = tempfile::tempdir()?;
    let data = scratch.path().join("data");
    std::fs::create_dir_all(&data)?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let hub = hub::Hub::start(
        Path::new(env!("CARGO_BIN_EXE_emco")),
        &data,
        scratch.path(),
        &client,
        &[],
    )
    .await?;
    let address = hub.base_url.trim_start_matches("http://").to_owned();
    let (host, port) = address.rsplit_once(':').context("hub address")?;
    let mut config = String::new();
    for service in [
        "orchestrator",
        "clm",
        "ncm",
        "ovnaction",
        "dcm",
        "gac",
        "dtc",
        "hpaplacement",
        "sfc",
        "sfcclient",
    ] {
        config.push_str(&format!("{service}:\n  host: {host}\n  port: {port}\n"));
    }
    let config_path = scratch.path().join("emco-cfg.yaml");
    std::fs::write(&config_path, config)?;
    let values = values_file(scratch.path())?;
    let emcoctl = emcoctl_binary()?;

    let prerequisites = PathBuf::from(format!(
        "{SHARED}/generated-from-jacobtrvl-emco/examples/single-cluster/prerequisites.yaml"
    ));
    let deployments: Vec<PathBuf> = DEPLOYMENTS
        .iter()
        .map(|f| {
            PathBuf::from(format!(
                "{SHARED}/jacobtrvl-emco/examples/single-cluster/{f}"
            ))
        })
        .collect();

    let out = run(&emcoctl, &config_path, &values, "apply", &prerequisites)?;
    assert!(out.contains("POST /v2/projects --> 201"), "{out}");
    let mut created = 0;
    for file in &deployments {
        let out = run(&emcoctl, &config_path, &values, "apply", file)?;
        created += out.matches("--> 201").count();
        assert!(
            !out.contains("approve") && !out.contains("instantiate"),
            "{out}"
        );
    }
    assert!(created >= 50, "only {created} resources created");

    // What was applied reads back through the hub exactly as written.
    let apps: serde_json::Value = client
        .get(format!("{}/v2/projects/proj1/composite-apps", hub.base_url))
        .send()
        .await?
        .json()
        .await?;
    assert!(apps.as_array().is_some_and(|a| a.len() >= 4), "{apps}");
    let out = run(&emcoctl, &config_path, &values, "get", &prerequisites)?;
    assert!(out.contains("GET /v2/projects/proj1 --> 200"), "{out}");

    // Delete in reverse: every deployment file, then the prerequisites.
    for file in deployments.iter().rev() {
        run(&emcoctl, &config_path, &values, "delete", file)?;
    }
    run(&emcoctl, &config_path, &values, "delete", &prerequisites)?;
    let projects: serde_json::Value = client
        .get(format!("{}/v2/projects", hub.base_url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(projects, serde_json::json!([]), "everything was deleted");
    let providers: serde_json::Value = client
        .get(format!("{}/v2/cluster-providers", hub.base_url))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(providers, serde_json::json!([]));
    Ok(())
}
