//! What the benchmark's processes tell each other: a case and a fake are described as JSON on
//! the command line; a case answers with one JSON line on stdout; the fake answers `GET /stats`.

use serde::{Deserialize, Serialize};

/// The fake CodePipeline + Slack (one child process, one port).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FakeSpec {
    /// Pipelines `pipe-00000` … `pipe-{N-1}`.
    pub pipelines: usize,
    /// Every answer (throttled or not) takes this long.
    pub latency_ms: u64,
    /// More than this many calls in any sliding second → `ThrottlingException`; 0 = never.
    pub throttle_per_sec: usize,
    /// How many pipelines are active (scattered over the names); 0 = all idle.
    pub active: usize,
    /// An active pipeline runs one execution every `period_ms`: a run heading for the
    /// approval, then the approval waiting (fresh token) for the last `wait_ms`, then approved.
    pub period_ms: u64,
    pub wait_ms: u64,
    /// The active pipelines show no run before their approval: between approvals they read
    /// as idle (last run approved and deployed), then an approval is suddenly waiting.
    pub approvals_on_idle: bool,
}

/// How a case measures after its first (cold) cycle.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum Measure {
    /// This many cycles back to back (cycle time, calls and CPU per full cycle).
    Cycles(usize),
    /// Cycles every `poll_interval`, as the daemon does, for `window_ms` (calls per
    /// poll_interval, CPU); then `grace_ms` more so approvals that started waiting near the end
    /// of the window are detected too.
    Window { window_ms: u64, grace_ms: u64 },
}

/// One row of the table: a scenario at one N, run in its own process.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseSpec {
    pub scenario: u8,
    pub pipelines: usize,
    pub max_requests_per_second: f64,
    pub max_concurrency: usize,
    pub poll_ms: u64,
    pub idle_ms: u64,
    pub measure: Measure,
    pub fake: FakeSpec,
}

/// Calls the fake answered, by operation (throttled ones included).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Calls {
    pub get_pipeline_state: u64,
    pub get_pipeline: u64,
    pub get_pipeline_execution: u64,
    pub other: u64,
}

impl Calls {
    pub fn total(&self) -> u64 {
        self.get_pipeline_state + self.get_pipeline + self.get_pipeline_execution + self.other
    }
}

/// `GET /stats?from=MS&to=MS`: counters since the last `POST /reset`; detections of the
/// approvals that started waiting in [from, to) (epoch milliseconds).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FakeStats {
    pub now_ms: i64,
    pub calls: Calls,
    pub throttled: u64,
    pub slack_posts: u64,
    /// Slack receive time − the time the approval started waiting, per approval, ms.
    pub latencies_ms: Vec<i64>,
    /// Approvals that started waiting in [from, to): detected or not.
    pub expected: u64,
    /// `GetPipelineState` calls on the pipeline `POST /bump` changed, since the last reset.
    pub bumped_reads: u64,
}

/// The first cycle: nothing known; definitions fetched for the active pipelines only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Cold {
    pub cycle_ms: f64,
    pub calls: u64,
    pub throttled: u64,
}

/// After the measured span: the watcher closed and a second one built on the same state file,
/// as a restart would; then one idle pipeline's `pipelineVersion` bumped (a run starting).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Restart {
    /// The restarted watcher's first cycle.
    pub calls: Calls,
    pub cycle_ms: f64,
    /// The cycles after the version bump, every poll_interval until the pipeline was read.
    pub version_calls: Calls,
    pub version_cycles: usize,
}

/// What a case measured (the poller process only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CaseResult {
    pub cold: Cold,
    /// Duration of each measured cycle, ms.
    pub cycles_ms: Vec<f64>,
    /// Pipelines read per measured cycle (the others were idle and not due).
    pub reads: Vec<usize>,
    pub read_failures: usize,
    pub reads_saved: u64,
    /// The measured span: the cycles back to back, or the window.
    pub elapsed_ms: f64,
    pub calls: Calls,
    pub throttled: u64,
    /// utime + stime over the measured span.
    pub cpu_ms: f64,
    /// VmHWM at the end.
    pub peak_rss_kb: u64,
    pub latencies_ms: Vec<i64>,
    pub expected_approvals: u64,
    pub restart: Restart,
}
