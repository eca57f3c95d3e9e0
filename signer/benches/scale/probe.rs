//! What one step cost its process, from `/proc/self`: the peak resident set (`VmHWM`) and the
//! bytes the process caused to be written to storage (`write_bytes` of `/proc/self/io`, every
//! thread of the process, RocksDB's background flushes and compactions included). The relay's
//! import benchmark includes this file too, so both sides report the same way.

/// The line a step's process prints for the benchmark to read.
pub(crate) const RESULT: &str = "cairn-scale-result ";

fn field(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse().ok()
            })
        })
        .unwrap_or(0)
}

/// Prints the step's result line: its wall time, the process's peak RSS and bytes written, and
/// `extra` (a JSON object of the step's own figures).
pub(crate) fn report(secs: f64, extra: &serde_json::Value) {
    let peak_kib = field("/proc/self/status", "VmHWM");
    let written = field("/proc/self/io", "write_bytes");
    println!(
        "{RESULT}{}",
        serde_json::json!({
            "secs": secs,
            "peak_bytes": peak_kib * 1024,
            "written": written,
            "extra": extra,
        })
    );
}
