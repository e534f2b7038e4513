//! Memory and CPU of a process from `/proc/PID/status` and `/proc/PID/stat`, shared by the
//! benchmarks (included with `#[path]`).

use anyhow::Context;

#[derive(Debug, Clone, Copy, Default)]
pub struct Usage {
    /// `VmHWM`: the peak resident set.
    pub peak_rss_kib: u64,
    /// `VmRSS` now.
    pub rss_kib: u64,
    /// User + system CPU time so far.
    pub cpu_seconds: f64,
}

/// The fields of `/proc/PID/stat` after the command name (which may contain spaces).
pub fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

pub fn usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .with_context(|| format!("no {field} in /proc/{pid}/status"))?;
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("unreadable {line:?}"))
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields = stat_fields(&stat).context("unreadable /proc/PID/stat")?;
    // utime and stime are fields 14 and 15 of stat(5): indices 11 and 12 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i)?.parse::<u64>().ok())
        .sum();
    Ok(Usage {
        peak_rss_kib: kib("VmHWM:")?,
        rss_kib: kib("VmRSS:")?,
        // USER_HZ is 100 on every Linux ABI that Rust targets.
        cpu_seconds: ticks as f64 / 100.0,
    })
}
