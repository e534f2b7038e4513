//! Fuzz target: any bytes given to the archive readers must be rejected or accepted without a
//! panic, and anything accepted must respect the limits it was read with.
#![no_main]

use emco_helm::archive::{ArchiveLimits, read_chart, read_profile, read_tar_gz};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits so the fuzzer reaches every limit check quickly.
    let limits = ArchiveLimits {
        max_compressed: 1 << 20,
        max_uncompressed: 4 << 20,
        max_entries: 64,
        max_path_len: 256,
        max_depth: 8,
    };
    if let Ok(archive) = read_tar_gz(data, &limits) {
        assert!(!archive.files.is_empty());
        assert!(archive.files.len() <= limits.max_entries);
        assert!(archive.total_size() <= limits.max_uncompressed);
        for file in &archive.files {
            assert!(file.path.len() <= limits.max_path_len);
            assert!(file.path.split('/').count() <= limits.max_depth);
            assert!(!file.path.starts_with('/'));
            assert!(
                file.path
                    .split('/')
                    .all(|part| !matches!(part, "" | "." | ".."))
            );
        }
    }
    let _ = read_chart(data, &limits);
    let _ = read_profile(data, &limits);
});
