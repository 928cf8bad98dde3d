//! The registry: the numbers the daemon records, behind one mutex, and the atomics
//! `/healthz` reads without it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use approval_watch_core::model::MessageKind;
use jiff::Timestamp;

use super::labels::{DecisionLabel, Outcome, ReconnectReason, SlackFailure, SocketState, Tally};
use super::{exposition, families};

/// Cycle duration buckets, in seconds: a healthy cycle takes well under a second per few
/// pipelines; the top buckets catch timeouts (30 s per AWS call) and long delivery passes.
pub(super) const CYCLE_BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// `/healthz` turns unhealthy after this many poll intervals without a successful cycle.
const UNHEALTHY_AFTER_INTERVALS: u32 = 3;

#[derive(Debug, Default)]
pub(super) struct Histogram {
    /// Per bucket (not cumulative), plus the +Inf overflow at the end.
    pub(super) buckets: [u64; CYCLE_BUCKETS.len() + 1],
    pub(super) sum: f64,
    pub(super) count: u64,
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

/// The numbers behind the lock; `families` reads them for the exposition.
#[derive(Debug, Default)]
pub(super) struct Inner {
    pub(super) waiting: Waiting,
    pub(super) sent: Tally<MessageKind>,
    pub(super) slack_failures: Tally<SlackFailure>,
    /// App mode: permanent failures by Slack's error (`invalid_auth`, `not_in_channel`, …).
    pub(super) slack_errors: BTreeMap<String, u64>,
    pub(super) aws_calls: BTreeMap<String, u64>,
    pub(super) aws_errors: BTreeMap<(String, String), u64>,
    pub(super) cycles: Tally<Outcome>,
    pub(super) reads_saved: u64,
    pub(super) cycle_duration: Histogram,
    pub(super) pipelines_unreadable: u64,
    /// Pipelines that cannot be watched correctly (an unknown execution mode, a definition
    /// that cannot be read).
    pub(super) pipelines_unwatchable: u64,
    pub(super) last_success: Option<Timestamp>,
    pub(super) reloads: Tally<Outcome>,
    /// Seconds between reads of an idle pipeline, per (account, region).
    pub(super) idle_rhythms: BTreeMap<(String, String), u64>,
    /// New Socket Mode connections after the first, by reason.
    pub(super) socket_reconnects: Tally<ReconnectReason>,
    /// Clicks on Approve / Reject (and reject dialogs submitted), by result.
    pub(super) slack_decisions: Tally<DecisionLabel>,
    /// App-mode routes: whether delivery is paused for a person to fix something.
    pub(super) routes_paused: BTreeMap<String, bool>,
}

fn bump<K: Ord>(map: &mut BTreeMap<K, u64>, key: K) {
    let n = map.entry(key).or_default();
    *n = n.saturating_add(1);
}

/// The registry. One per process ([`super::global`]); tests make their own.
#[derive(Debug)]
pub struct Metrics {
    started: Instant,
    /// Held only to bump or read numbers, never across I/O.
    inner: Mutex<Inner>,
    /// What `/healthz` reads, without a lock: the poll interval in milliseconds, and the time
    /// of the last successful cycle in nanoseconds after `started`, plus one (0: none yet).
    poll_interval_ms: AtomicU64,
    last_success_ns: AtomicU64,
    /// The Socket Mode connection's state ([`SocketState::code`]).
    socket_state: AtomicU8,
    /// `/healthz`'s words for the paused routes (empty: none). A lock of its own, held only to
    /// copy a short string, so `/healthz` never waits behind the numbers.
    paused: Mutex<String>,
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

#[cfg(test)]
impl CycleOutcome {
    /// A cycle that took no time and skipped nothing.
    pub(super) fn instant(completed: bool, reads: usize, unreadable: usize) -> Self {
        Self {
            duration: Duration::ZERO,
            completed,
            reads,
            unreadable,
            reads_saved: 0,
        }
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            inner: Mutex::new(Inner::default()),
            poll_interval_ms: AtomicU64::new(30_000),
            last_success_ns: AtomicU64::new(0),
            socket_state: AtomicU8::new(SocketState::Off.code()),
            paused: Mutex::new(String::new()),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain numbers behind: still good to read.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A message of `kind` was delivered to Slack.
    pub fn message_sent(&self, kind: MessageKind) {
        self.lock().sent.add(kind);
    }

    pub fn slack_failure(&self, kind: SlackFailure) {
        self.lock().slack_failures.add(kind);
    }

    pub fn slack_error(&self, error: &str) {
        bump(&mut self.lock().slack_errors, error.to_owned());
    }

    pub fn slack_routes_paused(&self, routes: BTreeMap<String, Option<String>>) {
        let words: Vec<String> = routes
            .iter()
            .filter_map(|(route, error)| Some(format!("{route} ({})", error.as_ref()?)))
            .collect();
        *self.paused.lock().unwrap_or_else(|e| e.into_inner()) = words.join(", ");
        self.lock().routes_paused = routes
            .into_iter()
            .map(|(route, error)| (route, error.is_some()))
            .collect();
    }

    pub fn socket_state(&self, state: SocketState) {
        self.socket_state.store(state.code(), Ordering::Relaxed);
    }

    fn current_socket_state(&self) -> SocketState {
        SocketState::from_code(self.socket_state.load(Ordering::Relaxed))
    }

    pub fn socket_reconnect(&self, reason: ReconnectReason) {
        self.lock().socket_reconnects.add(reason);
    }

    pub fn slack_decision(&self, decision: DecisionLabel) {
        self.lock().slack_decisions.add(decision);
    }

    pub fn aws_call(&self, operation: &str) {
        bump(&mut self.lock().aws_calls, operation.to_owned());
    }

    pub fn aws_error(&self, operation: &str, code: &str) {
        bump(
            &mut self.lock().aws_errors,
            (operation.to_owned(), code.to_owned()),
        );
    }

    pub fn set_poll_interval(&self, interval: Duration) {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        self.poll_interval_ms.store(ms, Ordering::Relaxed);
    }

    /// Pre-registers operations so their counters read 0 before the first call.
    #[cfg(test)]
    pub(super) fn register_aws_operations(&self, operations: &[&str]) {
        let mut inner = self.lock();
        for op in operations {
            inner.aws_calls.entry((*op).to_owned()).or_default();
        }
    }

    /// The effective idle rhythms (adaptive polling), replacing the previous set.
    pub fn set_idle_rhythms(&self, rhythms: BTreeMap<(String, String), u64>) {
        self.lock().idle_rhythms = rhythms;
    }

    pub fn set_unwatchable(&self, pipelines: usize) {
        self.lock().pipelines_unwatchable = pipelines as u64;
    }

    pub fn set_waiting(&self, waiting: Waiting) {
        self.lock().waiting = waiting;
    }

    pub fn cycle(&self, outcome: CycleOutcome) {
        let mut inner = self.lock();
        inner.cycle_duration.observe(outcome.duration.as_secs_f64());
        if outcome.completed {
            inner.cycles.add(Outcome::Ok);
            inner.reads_saved = inner.reads_saved.saturating_add(outcome.reads_saved as u64);
            inner.pipelines_unreadable = outcome.unreadable as u64;
        } else {
            inner.cycles.add(Outcome::Failed);
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
        let outcome = if ok { Outcome::Ok } else { Outcome::Failed };
        self.lock().reloads.add(outcome);
    }

    /// `Ok(reason)` when healthy, `Err(reason)` when no cycle succeeded for 3 poll intervals
    /// (counted from the start until the first success), or while Slack delivery is paused
    /// for a person to fix the token or a channel. It never waits on the loop.
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
        let paused = self
            .paused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !paused.is_empty() {
            let _ = write!(
                text,
                "; Slack delivery paused until fixed (see the log or status): {paused}"
            );
        }
        // Approvals from Slack are an extra: their connection is told, never judged here.
        if let Some(state) = self.current_socket_state().name() {
            let _ = write!(text, "; Slack Socket Mode: {state}");
        }
        if ago <= limit && paused.is_empty() {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let inner = self.lock();
        let view = families::View {
            inner: &inner,
            socket: self.current_socket_state(),
            now: Timestamp::now(),
        };
        exposition::render(families::PREFIX, &families::table(), &view)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_needs_a_completed_cycle_that_read_something() {
        let outcome = CycleOutcome::instant;
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
        m.cycle(CycleOutcome::instant(true, 1, 0));
        assert!(m.health().unwrap().contains("last successful cycle"));
    }

    #[test]
    fn a_paused_route_is_unhealthy_until_it_resumes() {
        let m = Metrics::new();
        m.set_poll_interval(Duration::from_secs(60));
        let routes = |error: Option<&str>| {
            BTreeMap::from([
                ("default".to_owned(), error.map(str::to_owned)),
                ("payments".to_owned(), None),
            ])
        };
        m.slack_routes_paused(routes(Some("invalid_auth")));
        let e = m.health().unwrap_err();
        assert!(
            e.contains("paused") && e.contains("default (invalid_auth)"),
            "{e}"
        );
        assert!(!e.contains("payments"), "{e}");
        let text = m.render();
        assert!(text.contains("approval_watch_slack_route_paused{route=\"default\"} 1"));
        assert!(text.contains("approval_watch_slack_route_paused{route=\"payments\"} 0"));
        m.slack_routes_paused(routes(None));
        assert!(!m.health().unwrap().contains("paused"));
    }

    #[test]
    fn health_tells_the_socket_state_until_it_is_off() {
        let m = Metrics::new();
        m.set_poll_interval(Duration::from_secs(60));
        assert!(!m.health().unwrap().contains("Socket Mode"));
        m.socket_state(SocketState::Connected);
        assert!(
            m.health()
                .unwrap()
                .ends_with("; Slack Socket Mode: connected")
        );
        m.socket_state(SocketState::Disabled);
        assert!(m.health().unwrap().ends_with("Slack Socket Mode: disabled"));
        m.socket_state(SocketState::Off);
        assert!(!m.health().unwrap().contains("Socket Mode"));
    }
}
