//! What the benchmark reads about itself and the machine from /proc.

use std::fs;

/// USER_HZ: /proc/self/stat counts CPU time in 1/100 s on Linux.
const CLK_TCK: f64 = 100.0;

/// User + system CPU time of this process so far, ms (10 ms resolution).
pub fn cpu_ms() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name (field 2) may contain spaces; fields after it are plain.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) * 1000.0 / CLK_TCK
}

/// Peak resident set size of this process (VmHWM), KiB.
pub fn peak_rss_kb() -> u64 {
    status_kb("/proc/self/status", "VmHWM:").unwrap_or(0)
}

fn status_kb(path: &str, key: &str) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// "AMD EPYC, 2 CPUs, 23.5 GiB RAM, Linux 6.1.0".
pub fn machine() -> String {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let model = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let memory = status_kb("/proc/meminfo", "MemTotal:")
        .map(|kb| format!("{:.1} GiB RAM", kb as f64 / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown RAM".to_owned());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "Linux".to_owned());
    format!("{model}, {cpus} CPUs (nproc), {memory}, {kernel}")
}
