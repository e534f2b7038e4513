//! Every chart and profile tarball shipped with upstream EMCO's examples must be accepted by the
//! archive reader with the default limits, and read back with the names and layout upstream uses.
use std::path::PathBuf;

use emco_helm::archive::{ArchiveLimits, read_chart, read_profile, read_tar_gz};

/// The shared reference material sits beside the repository checkout; it is read in place,
/// never copied into the repository.
fn tarball_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/emco-reference/generated-from-jacobtrvl-emco/tarballs")
}

fn is_profile(name: &str) -> bool {
    name == "profile.tar.gz"
        || name.ends_with("_profile.tar.gz")
        || name.ends_with("-profile.tar.gz")
}

fn tarballs() -> Vec<(String, Vec<u8>)> {
    let dir = tarball_dir();
    let mut found: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("reading {}: {error}", dir.display()))
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .filter(|(name, _)| name.ends_with(".tar.gz") || name.ends_with(".tgz"))
        .collect();
    found.sort();
    found
}

#[test]
fn all_upstream_charts_are_accepted() {
    let limits = ArchiveLimits::default();
    let mut charts = Vec::new();
    for (name, bytes) in tarballs().iter().filter(|(name, _)| !is_profile(name)) {
        let chart = read_chart(bytes, &limits).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert!(
            chart
                .archive
                .get(&format!("{}/Chart.yaml", chart.root_dir))
                .is_some(),
            "{name}"
        );
        assert!(
            chart
                .archive
                .files
                .iter()
                .all(|file| file.path.starts_with(&format!("{}/", chart.root_dir))),
            "{name}"
        );
        assert!(!chart.name.is_empty(), "{name}");
        assert!(chart.version.is_some(), "{name}");
        charts.push(name.clone());
    }
    assert!(
        charts.len() >= 14,
        "expected the upstream chart examples, found {charts:?}"
    );
}

#[test]
fn all_upstream_profiles_are_accepted() {
    let limits = ArchiveLimits::default();
    let mut profiles = Vec::new();
    for (name, bytes) in tarballs().iter().filter(|(name, _)| is_profile(name)) {
        let profile =
            read_profile(bytes, &limits).unwrap_or_else(|error| panic!("{name}: {error}"));
        assert_eq!(profile.manifest.version.as_deref(), Some("v1"), "{name}");
        assert_eq!(
            profile.manifest.values_path, "override_values.yaml",
            "{name}"
        );
        assert!(profile.manifest.config_resources.is_empty(), "{name}");
        assert!(profile.values().is_some(), "{name}");
        profiles.push(name.clone());
    }
    assert!(
        profiles.len() >= 12,
        "expected the upstream profile examples, found {profiles:?}"
    );
}

#[test]
fn known_charts_read_back_with_their_metadata() {
    let limits = ArchiveLimits::default();
    let dir = tarball_dir();
    let read = |file: &str| read_chart(&std::fs::read(dir.join(file)).unwrap(), &limits).unwrap();

    // `tar -czf` of `.` with `./` prefixes, a Chart.yaml with a licence comment block.
    let collectd = read("collectd.tar.gz");
    assert_eq!(
        (
            collectd.name.as_str(),
            collectd.version.as_deref(),
            collectd.root_dir.as_str()
        ),
        ("collectd", Some("0.2.0"), "collectd")
    );
    assert_eq!(collectd.archive.files.len(), 8);

    // `helm package` style: no `./` prefix.
    let firewall = read("firewall.tar.gz");
    assert_eq!(
        (firewall.name.as_str(), firewall.version.as_deref()),
        ("firewall", Some("0.1.0"))
    );

    // A chart with subcharts: only the top-level Chart.yaml names it.
    let stack = read("kube-prometheus-stack.tar.gz");
    assert_eq!(stack.name, "kube-prometheus-stack");
    assert_eq!(stack.archive.files.len(), 226);
    assert!(
        stack
            .archive
            .get("kube-prometheus-stack/charts/grafana/Chart.yaml")
            .is_some()
    );
    assert!(stack.archive.total_size() > 3_000_000);

    // Upstream renders `<extracted>/<app name>`, so the directory, not Chart.yaml's name, is what
    // an app's name has to match: this example's chart is named differently from its directory.
    let operator = read("operator.tar.gz");
    assert_eq!(
        (operator.name.as_str(), operator.root_dir.as_str()),
        ("m3db-operator", "operator")
    );

    let nginx = read("nginx.tar.gz");
    assert_eq!(nginx.version.as_deref(), Some("9.5.16"));

    // The .tgz copies are the same archives as the .tar.gz ones.
    assert_eq!(read("http-client.tgz"), read("http-client.tar.gz"));
    assert_eq!(read("http-server.tgz"), read("http-server.tar.gz"));
}

#[test]
fn profile_archives_are_not_charts_and_charts_are_not_profiles() {
    let limits = ArchiveLimits::default();
    let dir = tarball_dir();
    let profile = std::fs::read(dir.join("collectd_profile.tar.gz")).unwrap();
    let chart = std::fs::read(dir.join("collectd.tar.gz")).unwrap();
    assert!(read_chart(&profile, &limits).is_err());
    assert!(read_profile(&chart, &limits).is_err());
    // Both are still well-formed archives.
    assert_eq!(read_tar_gz(&profile, &limits).unwrap().files.len(), 2);
}
