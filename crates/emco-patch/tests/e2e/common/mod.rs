//! Runs the real kubectl offline (`kubectl patch --local`) as the oracle for the patch tests.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The kubectl binary: `$KUBECTL`, else the first `kubectl` on `PATH`, else `/usr/bin/kubectl`.
/// Panics with an explanation when there is none: these tests need it.
pub fn kubectl() -> PathBuf {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("kubectl"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/kubectl")])
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "kubectl not found (set KUBECTL or put kubectl on PATH): the emco-patch oracle tests \
                 compare against `kubectl patch --local`"
            )
        })
}

/// `kubectl patch --local -f <object> --type <patch_type> --patch-file <patch> -o json`, offline.
/// `Ok` with the patched object, or `Err` with kubectl's error output.
pub fn kubectl_patch(object: &Value, patch: &Value, patch_type: &str) -> Result<Value, String> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let object_file = dir.path().join("object.json");
    let patch_file = dir.path().join("patch.json");
    std::fs::write(&object_file, object.to_string()).expect("write object");
    std::fs::write(&patch_file, patch.to_string()).expect("write patch");
    let output = Command::new(kubectl())
        .env("KUBECONFIG", "/dev/null")
        .args(["patch", "--local", "-o", "json", "--type", patch_type, "-f"])
        .arg(&object_file)
        .arg("--patch-file")
        .arg(&patch_file)
        .output()
        .unwrap_or_else(|error| panic!("running kubectl: {error}"));
    if output.status.success() {
        serde_json::from_slice(&output.stdout)
            .map_err(|error| format!("kubectl printed something that is not JSON: {error}"))
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// Runs `job` over `items` on a few threads (kubectl start-up dominates; the machine is small).
pub fn parallel_map<T: Sync, R: Send>(items: &[T], job: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = 4.min(items.len().max(1));
    let chunk = items.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(|| part.iter().map(&job).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("oracle worker thread"))
            .collect()
    })
}
