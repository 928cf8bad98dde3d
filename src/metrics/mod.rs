//! Counters and gauges for the Prometheus endpoint (`[metrics] listen`), and the tiny HTTP
//! server that serves them: `GET /metrics` (text exposition format 0.0.4) and `GET /healthz`.
//!
//! Modules record with one-line calls on the process-wide registry, e.g.
//! `crate::metrics::aws_call("GetPipelineState")`; recording costs a mutex and a map lookup,
//! and is done whether or not the endpoint is on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jiff::Timestamp;

mod server;
mod slots;
pub use server::start;

/// Cycle duration buckets, in seconds: a healthy cycle takes well under a second per few
/// pipelines; the top buckets catch timeouts (30 s per AWS call) and long delivery passes.
const CYCLE_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// Message kinds and Slack failure kinds, exported at 0 before the first one happens so a
/// rate() over them works from the start.
const MESSAGE_KINDS: [&str; 4] = ["alert", "reminder", "resolution", "digest"];
const SLACK_FAILURE_KINDS: [&str; 3] = ["rate_limited", "temporary", "permanent"];

/// The Socket Mode connection's states (`socket_mode::ConnectionState::as_str`), stored as
/// their position + 1 so `/healthz` reads them from an atomic; 0 = no connection task.
const SOCKET_STATES: [&str; 5] = ["connecting", "connected", "retrying", "disabled", "stopped"];
/// Why a new Socket Mode connection replaced the last one.
const SOCKET_RECONNECT_REASONS: [&str; 2] = ["refresh", "dropped"];

/// `/healthz` turns unhealthy after this many poll intervals without a successful cycle.
const UNHEALTHY_AFTER_INTERVALS: u32 = 3;

/// Where every module records.
pub fn global() -> &'static Metrics {
    static GLOBAL: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &GLOBAL
}

/// A message of `kind` (`alert`, `reminder`, `resolution`) was delivered to Slack.
pub fn message_sent(kind: &str) {
    global()
        .lock()
        .sent
        .entry(kind.to_owned())
        .or_default()
        .add(1);
}

/// Slack did not take a message: `rate_limited` (429), `temporary` (5xx, timeout,
/// connection) or `permanent` (any other 4xx; not retried).
pub fn slack_failure(kind: &str) {
    global()
        .lock()
        .slack_failures
        .entry(kind.to_owned())
        .or_default()
        .add(1);
}

/// The Web API refused a message for good with `error`, one a person must act on
/// (`invalid_auth`, `not_in_channel`, …): a `permanent` failure labelled with it.
pub fn slack_error(error: &str) {
    global()
        .lock()
        .slack_errors
        .entry(error.to_owned())
        .or_default()
        .add(1);
}

/// The Socket Mode connection is now in `state` (`connecting`, `connected`, …); any other
/// word (`off`) takes it out of `/metrics` and `/healthz`, for when approvals are turned off.
pub fn socket_state(state: &str) {
    let code = SOCKET_STATES
        .iter()
        .position(|s| *s == state)
        .and_then(|i| u8::try_from(i + 1).ok())
        .unwrap_or(0);
    global().socket_state.store(code, Ordering::Relaxed);
}

/// A new Socket Mode connection replaced the last one: `refresh` (Slack asked) or `dropped`.
pub fn socket_reconnect(reason: &str) {
    global()
        .lock()
        .socket_reconnects
        .entry(reason.to_owned())
        .or_default()
        .add(1);
}

/// The results a click from Slack is counted under (a `failed: …` result is `failed`).
const DECISION_RESULTS: [&str; 6] = [
    "approved",
    "rejected",
    "denied",
    "already_resolved",
    "failed",
    "ignored",
];

/// A click from Slack was answered with `result` (the audit's word; `failed: …` → `failed`).
pub fn slack_decision(result: &str) {
    let label = DECISION_RESULTS
        .iter()
        .find(|r| result == **r)
        .copied()
        .unwrap_or("failed");
    global()
        .lock()
        .slack_decisions
        .entry(label)
        .or_default()
        .add(1);
}

/// One AWS API call was made (`GetPipelineState`, …), successful or not.
pub fn aws_call(operation: &str) {
    global()
        .lock()
        .aws_calls
        .entry(operation.to_owned())
        .or_default()
        .add(1);
}

/// An AWS call failed with `code` (`ThrottlingException`, `Timeout`, …).
pub fn aws_error(operation: &str, code: &str) {
    global()
        .lock()
        .aws_errors
        .entry((operation.to_owned(), code.to_owned()))
        .or_default()
        .add(1);
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter(u64);

impl Counter {
    fn add(&mut self, n: u64) {
        self.0 = self.0.saturating_add(n);
    }
}

#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative), plus the +Inf overflow at the end.
    buckets: [u64; CYCLE_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = CYCLE_BUCKETS
            .iter()
            .position(|le| seconds <= *le)
            .unwrap_or(CYCLE_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// What the daemon knows about the approvals waiting, refreshed after each cycle.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Waiting {
    /// Open approvals by (pipeline, region); configured pipelines with none are listed at 0.
    pub by_pipeline: BTreeMap<(String, String), u64>,
    pub oldest_since: Option<Timestamp>,
    /// Outbox messages not yet delivered.
    pub undelivered: u64,
}

#[derive(Debug, Default)]
struct Inner {
    waiting: Waiting,
    sent: BTreeMap<String, Counter>,
    slack_failures: BTreeMap<String, Counter>,
    /// App mode: permanent failures by Slack's error (`invalid_auth`, `not_in_channel`, …).
    slack_errors: BTreeMap<String, Counter>,
    aws_calls: BTreeMap<String, Counter>,
    aws_errors: BTreeMap<(String, String), Counter>,
    cycles_ok: Counter,
    cycles_failed: Counter,
    reads_saved: Counter,
    cycle_duration: Histogram,
    pipelines_unreadable: u64,
    last_success: Option<Timestamp>,
    reloads_ok: Counter,
    reloads_failed: Counter,
    /// Seconds between reads of an idle pipeline, per (account, region).
    idle_rhythms: BTreeMap<(String, String), u64>,
    /// New Socket Mode connections after the first, by reason.
    socket_reconnects: BTreeMap<String, Counter>,
    /// Clicks on Approve / Reject (and reject dialogs submitted), by result.
    slack_decisions: BTreeMap<&'static str, Counter>,
}

/// The registry. One per process ([`global`]); tests make their own.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Held only to bump or read numbers, never across I/O.
    inner: Mutex<Inner>,
    /// What `/healthz` reads, without a lock: the poll interval in milliseconds, and the time
    /// of the last successful cycle in nanoseconds after `started`, plus one (0: none yet).
    poll_interval_ms: AtomicU64,
    last_success_ns: AtomicU64,
    /// The Socket Mode connection's state ([`SOCKET_STATES`] position + 1; 0 = none).
    socket_state: AtomicU8,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// How a cycle went, for the metrics.
#[derive(Debug, Clone, Copy)]
pub struct CycleOutcome {
    pub duration: Duration,
    /// The cycle ran to the end: state recorded and delivery attempted.
    pub completed: bool,
    /// Pipelines read in the cycle (idle ones are skipped between their slower reads).
    pub reads: usize,
    pub unreadable: usize,
    /// Reads adaptive polling skipped: idle pipelines not due this cycle.
    pub reads_saved: usize,
}

impl CycleOutcome {
    /// Successful = completed, and not every read failed (a cycle with nothing due to read
    /// is fine). A lasting error on some pipelines is for alerts on
    /// `approval_watch_pipelines_unreadable`, not a reason to call the daemon unhealthy.
    pub fn succeeded(&self) -> bool {
        self.completed && (self.reads == 0 || self.unreadable < self.reads)
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut inner = Inner::default();
        for kind in MESSAGE_KINDS {
            inner.sent.insert(kind.to_owned(), Counter::default());
        }
        for kind in SLACK_FAILURE_KINDS {
            inner
                .slack_failures
                .insert(kind.to_owned(), Counter::default());
        }
        Self {
            started: Instant::now(),
            inner: Mutex::new(inner),
            poll_interval_ms: AtomicU64::new(30_000),
            last_success_ns: AtomicU64::new(0),
            socket_state: AtomicU8::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers behind: still good to read.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_poll_interval(&self, interval: Duration) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.poll_interval_ms.store(ms, Ordering::Relaxed);
    }

    /// Pre-registers operations so their counters read 0 before the first call.
    #[cfg(test)]
    fn register_aws_operations(&self, operations: &[&str]) {
        let mut inner = self.lock();
        for op in operations {
            inner.aws_calls.entry((*op).to_owned()).or_default();
        }
    }

    /// The effective idle rhythms (adaptive polling), replacing the previous set.
    pub fn set_idle_rhythms(&self, rhythms: BTreeMap<(String, String), u64>) {
        self.lock().idle_rhythms = rhythms;
    }

    pub fn set_waiting(&self, waiting: Waiting) {
        self.lock().waiting = waiting;
    }

    pub fn cycle(&self, outcome: CycleOutcome) {
        let mut inner = self.lock();
        inner.cycle_duration.observe(outcome.duration.as_secs_f64());
        if outcome.completed {
            inner.cycles_ok.add(1);
            inner.reads_saved.add(outcome.reads_saved as u64);
            inner.pipelines_unreadable = outcome.unreadable as u64;
        } else {
            inner.cycles_failed.add(1);
        }
        if outcome.succeeded() {
            let now = Instant::now();
            inner.last_success = Some(Timestamp::now());
            let ns = u64::try_from(now.duration_since(self.started).as_nanos()).unwrap_or(u64::MAX);
            self.last_success_ns
                .store(ns.saturating_add(1), Ordering::Relaxed);
        }
    }

    pub fn reload(&self, ok: bool) {
        let mut inner = self.lock();
        if ok {
            inner.reloads_ok.add(1);
        } else {
            inner.reloads_failed.add(1);
        }
    }

    /// `Ok(reason)` when healthy, `Err(reason)` when no cycle succeeded for 3 poll intervals
    /// (counted from the start until the first success). Lock-free: it answers whatever the
    /// loop is doing.
    pub fn health(&self) -> Result<String, String> {
        let interval = Duration::from_millis(self.poll_interval_ms.load(Ordering::Relaxed));
        let limit = interval.saturating_mul(UNHEALTHY_AFTER_INTERVALS);
        let (since, what) = match self.last_success_ns.load(Ordering::Relaxed) {
            0 => (self.started, "started, no successful cycle yet"),
            ns => (
                self.started + Duration::from_nanos(ns - 1),
                "last successful cycle",
            ),
        };
        let ago = since.elapsed();
        let mut text = format!(
            "{what} {:.1} s ago (unhealthy after {} s)",
            ago.as_secs_f64(),
            limit.as_secs()
        );
        // Approvals from Slack are an extra: their connection is told, never judged here.
        if let Some(state) = self.socket_state_name() {
            let _ = write!(text, "; Slack Socket Mode: {state}");
        }
        if ago <= limit { Ok(text) } else { Err(text) }
    }

    fn socket_state_name(&self) -> Option<&'static str> {
        let code = usize::from(self.socket_state.load(Ordering::Relaxed));
        SOCKET_STATES.get(code.checked_sub(1)?).copied()
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let now = Timestamp::now();
        let mut out = String::with_capacity(4096);
        header(
            &mut out,
            "build_info",
            "gauge",
            "Always 1; the version is in the label.",
        );
        let _ = writeln!(
            out,
            "approval_watch_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );

        header(
            &mut out,
            "approvals_waiting",
            "gauge",
            "Manual approvals waiting now, by pipeline (as of the last cycle).",
        );
        for ((pipeline, region), n) in &inner.waiting.by_pipeline {
            let _ = writeln!(
                out,
                "approval_watch_approvals_waiting{{pipeline=\"{}\",region=\"{}\"}} {n}",
                label(pipeline),
                label(region)
            );
        }

        header(
            &mut out,
            "oldest_approval_wait_seconds",
            "gauge",
            "How long the longest-waiting approval has waited; 0 when none waits.",
        );
        let oldest = inner
            .waiting
            .oldest_since
            .map(|since| now.duration_since(since).as_secs_f64().max(0.0))
            .unwrap_or(0.0);
        let _ = writeln!(
            out,
            "approval_watch_oldest_approval_wait_seconds {oldest:.3}"
        );

        header(
            &mut out,
            "messages_undelivered",
            "gauge",
            "Outbox messages not yet delivered to Slack (as of the last cycle).",
        );
        let _ = writeln!(
            out,
            "approval_watch_messages_undelivered {}",
            inner.waiting.undelivered
        );

        header(
            &mut out,
            "messages_sent_total",
            "counter",
            "Messages delivered to Slack, by kind.",
        );
        for (kind, c) in &inner.sent {
            let _ = writeln!(
                out,
                "approval_watch_messages_sent_total{{kind=\"{}\"}} {}",
                label(kind),
                c.0
            );
        }

        header(
            &mut out,
            "slack_delivery_failures_total",
            "counter",
            "Slack deliveries that failed, by kind: rate_limited (429), temporary (5xx, timeout, connection; retried), permanent (other 4xx; not retried); in app mode permanent ones a person must fix also carry Slack's error.",
        );
        for (kind, c) in &inner.slack_failures {
            let _ = writeln!(
                out,
                "approval_watch_slack_delivery_failures_total{{kind=\"{}\"}} {}",
                label(kind),
                c.0
            );
        }
        for (error, c) in &inner.slack_errors {
            let _ = writeln!(
                out,
                "approval_watch_slack_delivery_failures_total{{kind=\"permanent\",error=\"{}\"}} {}",
                label(error),
                c.0
            );
        }

        header(
            &mut out,
            "aws_calls_total",
            "counter",
            "CodePipeline API calls, by operation.",
        );
        for (op, c) in &inner.aws_calls {
            let _ = writeln!(
                out,
                "approval_watch_aws_calls_total{{operation=\"{}\"}} {}",
                label(op),
                c.0
            );
        }

        header(
            &mut out,
            "aws_errors_total",
            "counter",
            "CodePipeline API calls that failed, by operation and AWS error code.",
        );
        for ((op, code), c) in &inner.aws_errors {
            let _ = writeln!(
                out,
                "approval_watch_aws_errors_total{{operation=\"{}\",code=\"{}\"}} {}",
                label(op),
                label(code),
                c.0
            );
        }

        header(
            &mut out,
            "pipelines_unreadable",
            "gauge",
            "Pipelines the last completed cycle could not read.",
        );
        let _ = writeln!(
            out,
            "approval_watch_pipelines_unreadable {}",
            inner.pipelines_unreadable
        );

        header(
            &mut out,
            "reads_saved_total",
            "counter",
            "GetPipelineState reads skipped because the pipeline was idle and not yet due (idle_poll_interval).",
        );
        let _ = writeln!(
            out,
            "approval_watch_reads_saved_total {}",
            inner.reads_saved.0
        );

        header(
            &mut out,
            "cycles_total",
            "counter",
            "Poll cycles, by result: ok (ran to the end) or failed (the state database refused).",
        );
        let _ = writeln!(
            out,
            "approval_watch_cycles_total{{result=\"ok\"}} {}",
            inner.cycles_ok.0
        );
        let _ = writeln!(
            out,
            "approval_watch_cycles_total{{result=\"failed\"}} {}",
            inner.cycles_failed.0
        );

        header(
            &mut out,
            "cycle_duration_seconds",
            "histogram",
            "How long a poll cycle took: reads, decisions, recording and delivery.",
        );
        let h = &inner.cycle_duration;
        let mut cumulative = 0;
        for (le, n) in CYCLE_BUCKETS.iter().zip(h.buckets) {
            cumulative += n;
            let _ = writeln!(
                out,
                "approval_watch_cycle_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "approval_watch_cycle_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            h.count
        );
        let _ = writeln!(
            out,
            "approval_watch_cycle_duration_seconds_sum {:.6}",
            h.sum
        );
        let _ = writeln!(
            out,
            "approval_watch_cycle_duration_seconds_count {}",
            h.count
        );

        header(
            &mut out,
            "last_successful_cycle_timestamp_seconds",
            "gauge",
            "Unix time of the last successful cycle (completed, and not every read failed); 0 before the first.",
        );
        let last = inner
            .last_success
            .map(|t| t.as_millisecond() as f64 / 1000.0)
            .unwrap_or(0.0);
        let _ = writeln!(
            out,
            "approval_watch_last_successful_cycle_timestamp_seconds {last:.3}"
        );

        header(
            &mut out,
            "config_reloads_total",
            "counter",
            "Config reloads (SIGHUP), by result: ok, or failed (the old config was kept).",
        );
        let _ = writeln!(
            out,
            "approval_watch_config_reloads_total{{result=\"ok\"}} {}",
            inner.reloads_ok.0
        );
        let _ = writeln!(
            out,
            "approval_watch_config_reloads_total{{result=\"failed\"}} {}",
            inner.reloads_failed.0
        );

        header(
            &mut out,
            "idle_read_interval_seconds",
            "gauge",
            "Seconds between two reads of an idle pipeline, per account and region (adaptive polling).",
        );
        for ((account, region), seconds) in &inner.idle_rhythms {
            let _ = writeln!(
                out,
                "approval_watch_idle_read_interval_seconds{{account=\"{}\",region=\"{}\"}} {seconds}",
                label(account),
                label(region)
            );
        }

        // Only once a Socket Mode task ran: a 0 would page people who never turned it on.
        if let Some(state) = self.socket_state_name() {
            header(
                &mut out,
                "slack_socket_connected",
                "gauge",
                "1 while the Socket Mode connection (approvals from Slack) is open, else 0.",
            );
            let _ = writeln!(
                out,
                "approval_watch_slack_socket_connected {}",
                u8::from(state == "connected")
            );
            header(
                &mut out,
                "slack_socket_reconnects_total",
                "counter",
                "New Socket Mode connections after the first, by reason: refresh (Slack asked) or dropped (the last one was lost).",
            );
            for reason in SOCKET_RECONNECT_REASONS {
                let n = inner.socket_reconnects.get(reason).map_or(0, |c| c.0);
                let _ = writeln!(
                    out,
                    "approval_watch_slack_socket_reconnects_total{{reason=\"{reason}\"}} {n}"
                );
            }
            header(
                &mut out,
                "slack_decisions_total",
                "counter",
                "Clicks from Slack by result: approved, rejected (PutApprovalResult taken), denied (not on the allow-lists), already_resolved, failed, ignored (a replay).",
            );
            for result in DECISION_RESULTS {
                let n = inner.slack_decisions.get(result).map_or(0, |c| c.0);
                let _ = writeln!(
                    out,
                    "approval_watch_slack_decisions_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        out
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP approval_watch_{name} {help}");
    let _ = writeln!(out, "# TYPE approval_watch_{name} {kind}");
}

/// A label value, escaped as the exposition format wants.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_idle_rhythm_per_account_and_region_is_a_gauge() {
        let m = Metrics::new();
        m.set_idle_rhythms(BTreeMap::from([
            (("default".to_owned(), "us-east-1".to_owned()), 30),
            (("prod".to_owned(), "eu-west-1".to_owned()), 75),
        ]));
        let text = m.render();
        assert!(text.contains(
            "approval_watch_idle_read_interval_seconds{account=\"default\",region=\"us-east-1\"} 30\n"
        ));
        assert!(text.contains(
            "approval_watch_idle_read_interval_seconds{account=\"prod\",region=\"eu-west-1\"} 75\n"
        ));
    }

    #[test]
    fn every_line_is_a_comment_or_a_sample() {
        let m = Metrics::new();
        m.register_aws_operations(&["GetPipelineState"]);
        m.cycle(CycleOutcome {
            duration: Duration::from_millis(300),
            completed: true,
            reads: 2,
            unreadable: 1,
            reads_saved: 3,
        });
        m.cycle(CycleOutcome {
            duration: Duration::from_secs(500),
            completed: false,
            reads: 2,
            unreadable: 0,
            reads_saved: 5,
        });
        let mut by = BTreeMap::new();
        by.insert(("we\"ird\\name".to_owned(), "eu-west-1".to_owned()), 2);
        m.set_waiting(Waiting {
            by_pipeline: by,
            oldest_since: Some(Timestamp::now() - jiff::SignedDuration::from_secs(90)),
            undelivered: 1,
        });
        let text = m.render();
        for line in text.lines() {
            if line.starts_with('#') {
                assert!(
                    line.starts_with("# HELP approval_watch_")
                        || line.starts_with("# TYPE approval_watch_"),
                    "{line}"
                );
                continue;
            }
            let (_, value) = line.rsplit_once(' ').expect(line);
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
        assert!(text.contains(
            "approval_watch_approvals_waiting{pipeline=\"we\\\"ird\\\\name\",region=\"eu-west-1\"} 2"
        ));
        assert!(text.contains("approval_watch_cycle_duration_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("approval_watch_cycle_duration_seconds_bucket{le=\"300\"} 1\n"));
        assert!(text.contains("approval_watch_cycle_duration_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.contains("approval_watch_cycle_duration_seconds_count 2\n"));
        assert!(text.contains("approval_watch_cycles_total{result=\"failed\"} 1\n"));
        assert!(text.contains("approval_watch_pipelines_unreadable 1\n"));
        // Only the completed cycle's skipped reads count.
        assert!(text.contains("approval_watch_reads_saved_total 3\n"));
        assert!(
            text.contains("approval_watch_aws_calls_total{operation=\"GetPipelineState\"} 0\n")
        );
        assert!(text.contains("approval_watch_messages_sent_total{kind=\"reminder\"} 0\n"));
        let oldest: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("approval_watch_oldest_approval_wait_seconds "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((89.0..200.0).contains(&oldest), "{oldest}");
    }

    #[test]
    fn success_needs_a_completed_cycle_that_read_something() {
        let outcome = |completed, reads, unreadable| CycleOutcome {
            duration: Duration::ZERO,
            completed,
            reads,
            unreadable,
            reads_saved: 0,
        };
        assert!(outcome(true, 3, 2).succeeded());
        assert!(outcome(true, 0, 0).succeeded());
        assert!(!outcome(true, 3, 3).succeeded());
        assert!(!outcome(false, 3, 0).succeeded());
    }

    #[test]
    fn healthy_within_three_intervals_of_start_or_success() {
        let m = Metrics::new();
        m.set_poll_interval(Duration::from_secs(60));
        assert!(m.health().is_ok());
        m.set_poll_interval(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(m.health().is_err());
        m.set_poll_interval(Duration::from_secs(60));
        m.cycle(CycleOutcome {
            duration: Duration::ZERO,
            completed: true,
            reads: 1,
            unreadable: 0,
            reads_saved: 0,
        });
        assert!(m.health().unwrap().contains("last successful cycle"));
    }

    #[test]
    fn the_socket_connection_is_shown_once_a_task_ran() {
        let m = Metrics::new();
        m.set_poll_interval(Duration::from_secs(60));
        assert!(!m.render().contains("slack_socket"));
        assert!(!m.health().unwrap().contains("Socket Mode"));
        m.socket_state.store(2, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains("approval_watch_slack_socket_connected 1\n"),
            "{text}"
        );
        assert!(
            text.contains("approval_watch_slack_socket_reconnects_total{reason=\"refresh\"} 0\n")
        );
        assert!(
            m.health()
                .unwrap()
                .ends_with("; Slack Socket Mode: connected")
        );
        m.socket_state.store(4, Ordering::Relaxed);
        assert!(
            m.render()
                .contains("approval_watch_slack_socket_connected 0\n")
        );
        assert!(m.health().unwrap().ends_with("Slack Socket Mode: disabled"));
    }
}
