//! Archives written by the system's GNU tar (`tar -czf`), in its gnu, pax and ustar formats, with
//! and without `./` prefixes and with names past the 100-byte ustar field, are read correctly.
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use emco_helm::archive::{ArchiveLimits, read_chart};

const LONG_NAME_LEN: usize = 150;

/// Writes a small chart under `root/demo` and returns path -> contents relative to `root`.
fn write_chart(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let long_name = format!("demo/templates/{}.yaml", "x".repeat(LONG_NAME_LEN));
    let files: BTreeMap<String, Vec<u8>> = [
        (
            "demo/Chart.yaml".to_owned(),
            b"apiVersion: v2\nname: demo\nversion: 1.2.3\n".to_vec(),
        ),
        ("demo/values.yaml".to_owned(), b"replicas: 1\n".to_vec()),
        (
            "demo/templates/deployment.yaml".to_owned(),
            b"kind: Deployment\n".to_vec(),
        ),
        (
            "demo/charts/sub/templates/cm.yaml".to_owned(),
            b"kind: ConfigMap\n".to_vec(),
        ),
        (long_name, b"kind: Service\n".to_vec()),
    ]
    .into_iter()
    .collect();
    for (path, contents) in &files {
        let target = root.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(target, contents).unwrap();
    }
    files
}

fn system_tar(source: &Path, output: &Path, format: &str, member: &str) {
    let status = Command::new("tar")
        .arg("-C")
        .arg(source)
        .arg(format!("--format={format}"))
        .arg("-czf")
        .arg(output)
        .arg(member)
        .status()
        .expect("GNU tar must be installed to run this test");
    assert!(status.success(), "tar --format={format} {member} failed");
}

#[test]
fn charts_packed_by_gnu_tar_are_read_back_exactly() {
    let work = tempfile::tempdir().unwrap();
    let source = work.path().join("src");
    let expected = write_chart(&source);
    // ustar cannot hold the 150-byte file name, so it gets a tree without it.
    let ustar_source = work.path().join("ustar-src");
    let mut ustar_expected = write_chart(&ustar_source);
    let long = ustar_expected
        .keys()
        .find(|path| path.len() > 100)
        .cloned()
        .unwrap();
    std::fs::remove_file(ustar_source.join(&long)).unwrap();
    ustar_expected.remove(&long);

    for (format, source, expected) in [
        ("gnu", &source, &expected),
        ("pax", &source, &expected),
        ("ustar", &ustar_source, &ustar_expected),
    ] {
        for member in [".", "demo"] {
            let output = work
                .path()
                .join(format!("{format}-{}.tgz", member.replace('.', "dot")));
            system_tar(source, &output, format, member);
            let bytes = std::fs::read(&output).unwrap();
            let chart = read_chart(&bytes, &ArchiveLimits::default())
                .unwrap_or_else(|error| panic!("--format={format} {member}: {error}"));
            assert_eq!(
                (chart.name.as_str(), chart.root_dir.as_str()),
                ("demo", "demo")
            );
            assert_eq!(chart.version.as_deref(), Some("1.2.3"));
            let got: BTreeMap<String, Vec<u8>> = chart
                .archive
                .files
                .into_iter()
                .map(|file| (file.path, file.contents))
                .collect();
            assert_eq!(&got, expected, "--format={format} {member}");
        }
    }
}
