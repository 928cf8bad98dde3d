//! The `run` loop: a cycle every `poll_interval`, outbox retries in between, until shutdown.
//! It also talks to systemd ([`Notifier`]: ready, status, watchdog, stopping), reloads the
//! config when asked (SIGHUP, through the CLI), and keeps the [`metrics`](crate::metrics)
//! gauges current. Time comes from a [`Clock`] and tokio's timers, so a test can run the loop
//! in-process on paused time.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::approve;
use crate::clock::Clock;
use crate::daemon::cycle::{CycleReport, Watcher};
use crate::daemon::heartbeat::Heartbeat;
use crate::daemon::startup::Daemon;
use crate::daemon::systemd::Notifier;
use crate::metrics::{self, CycleOutcome};
use crate::store::StoreError;
use approval_watch_core::model::Target;

pub mod cycle;
pub(crate) mod deliver;
pub(crate) mod heartbeat;
mod last_cycle;
mod reload;
pub mod startup;
pub mod systemd;
pub(crate) mod warn_once;

use last_cycle::LastCycle;
use reload::reload;

/// Never spin: after delivering, wait at least this long before looking at the outbox again.
const MIN_WAKE: Duration = Duration::from_millis(250);

/// While a cycle or a delivery pass runs, the loop keeps pinging the watchdog for at most this
/// long. Every AWS call and Slack request has its own timeout, so a pass this long is stuck;
/// the pings stop and systemd restarts the service. A loop blocked outright (a thread stuck in
/// a system call) stops pinging at once, since the pings come from the loop's own task.
const STALL_LIMIT: Duration = Duration::from_secs(15 * 60);

/// Requests to re-read the config (SIGHUP in the daemon).
pub type Reloads = Pin<Box<dyn Stream<Item = ()> + Send>>;

/// What `run` needs besides the [`Daemon`].
pub struct Options {
    /// systemd notifications; [`Notifier::default`] sends nothing.
    pub notifier: Arc<Notifier>,
    /// Each item re-reads the config at `config_path`.
    pub reloads: Reloads,
    pub config_path: PathBuf,
    pub clock: Clock,
}

/// Runs until `shutdown` is cancelled, then closes the database. A failing cycle (a full disk,
/// a locked file) is logged and retried at the next tick: nothing is recorded half-way.
///
/// systemd hears `READY=1` when the first cycle starts (the config is valid and the database
/// open by then), `WATCHDOG=1` from this loop every half `WATCHDOG_USEC`, `STATUS=` after
/// each cycle, `RELOADING=1`/`READY=1` around a reload, and `STOPPING=1` on shutdown.
pub async fn run(
    daemon: Daemon,
    options: Options,
    shutdown: CancellationToken,
) -> Result<(), StoreError> {
    let Daemon {
        mut watcher,
        mut heartbeat,
        approvals,
    } = daemon;
    let Options {
        notifier,
        mut reloads,
        config_path,
        clock,
    } = options;
    let mut poll_interval = watcher.config().poll_interval;
    // A backlog at one destination's pace goes over several deliveries between polls.
    watcher.limit_pace_wait(crate::daemon::deliver::MAX_PACE_WAIT);
    {
        let notifier = notifier.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            notifier.stopping();
        });
    }
    let metrics = metrics::global();
    metrics.set_poll_interval(poll_interval);
    let ping_every = notifier.watchdog_interval();
    let mut next_ping = ping_every.map(|every| Instant::now() + every);
    let mut last = LastCycle::default();
    let mut ready = false;
    let mut approvals = start_approvals(approvals, None, &shutdown);
    // Approvals services replaced by a reload, finishing their decisions in flight.
    let mut retiring = tokio::task::JoinSet::new();
    let mut next_poll = Instant::now();
    while !shutdown.is_cancelled() {
        // Whether the store failed (a full disk…): then the next try is at the next tick, not
        // after `MIN_WAKE`, so the log gets one error per tick rather than four a second.
        let store_failing = if Instant::now() >= next_poll {
            if !ready {
                notifier.ready(&last.status());
                ready = true;
            }
            // Deleted or replaced under us: put back, or stop rather than record into a
            // file nobody will find (a restart would then announce everything again).
            watcher.store_mut().keep_in_place()?;
            let started = Instant::now();
            let result = pinging(
                watcher.cycle(&shutdown),
                &notifier,
                || last.status(),
                "cycle",
            )
            .await;
            let took = started.elapsed();
            let completed = result.is_ok();
            if !shutdown.is_cancelled() {
                beat(heartbeat.as_mut(), &result, clock);
            }
            match result {
                Ok(report) => {
                    tracing::debug!(?report, elapsed_ms = took.as_millis() as u64, "cycle done");
                    last.report = report;
                    last.error = None;
                }
                Err(e) => {
                    tracing::error!("cycle failed; retrying at the next tick: {e}");
                    last.error = Some(e.to_string());
                }
            }
            if !shutdown.is_cancelled() {
                metrics.cycle(CycleOutcome {
                    duration: took,
                    completed,
                    reads: last.report.reads,
                    unreadable: last.report.read_failures,
                    reads_saved: last.report.pipelines.saturating_sub(last.report.reads),
                });
            }
            last.finished = Some(Instant::now());
            last.took = took;
            refresh_waiting(&watcher, &last.report);
            notifier.status(&last.status());
            // Ticks keep their rhythm; a cycle longer than the interval is followed at once.
            next_poll = (started + poll_interval).max(Instant::now());
            !completed
        } else {
            let delivered = pinging(
                watcher.deliver(&shutdown),
                &notifier,
                || last.status(),
                "delivery",
            )
            .await;
            match delivered {
                Ok(_) => false,
                Err(e) => {
                    tracing::error!("delivery failed; retrying at the next tick: {e}");
                    true
                }
            }
        };
        if let (Some(every), Some(at)) = (ping_every, next_ping)
            && Instant::now() >= at
        {
            notifier.watchdog(&last.status());
            next_ping = Some(Instant::now() + every);
        }
        let mut wake = match watcher.next_due() {
            Ok(_) if store_failing => next_poll,
            Ok(Some(due)) => next_poll.min(clock.instant_of(due).max(Instant::now() + MIN_WAKE)),
            Ok(None) => next_poll,
            Err(e) => {
                tracing::error!("cannot read the outbox: {e}");
                next_poll
            }
        };
        if let Some(at) = next_ping {
            wake = wake.min(at);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = shutdown.cancelled() => {}
            Some(()) = reloads.next() => {
                notifier.reloading();
                // Nothing is swapped until the new parts are complete, so a reload cut short
                // by SIGTERM leaves the running config as it was.
                let applied = tokio::select! {
                    applied = reload(&mut watcher, &config_path, clock) => applied,
                    _ = shutdown.cancelled() => {
                        tracing::info!("config reload abandoned: shutting down");
                        None
                    }
                };
                if let Some(applied) = applied {
                    let mut new = applied.heartbeat;
                    if let (Some(new), Some(old)) = (new.as_mut(), heartbeat.as_ref()) {
                        new.take_over(old);
                    }
                    heartbeat = new;
                    // A new connection with the new lists (and a new try after link_disabled).
                    // The old one closes now; its decisions in flight finish on their own,
                    // so a reload never waits for AWS or a locked database.
                    let membership = match approvals.take() {
                        Some(running) => {
                            let (membership, rest) =
                                pinging(running.retire(), &notifier, || last.status(), "reload")
                                    .await;
                            while retiring.try_join_next().is_some() {}
                            retiring.spawn(rest);
                            Some(membership)
                        }
                        None => None,
                    };
                    approvals = start_approvals(applied.approvals, membership, &shutdown);
                    poll_interval = watcher.config().poll_interval;
                    metrics.set_poll_interval(poll_interval);
                    // Poll at once: new pipelines are read now, not a whole interval later.
                    next_poll = Instant::now();
                }
                refresh_waiting(&watcher, &last.report);
                notifier.ready(&last.status());
            }
        }
    }
    tracing::info!("shutting down");
    notifier.stopping();
    if let Some(running) = approvals.take() {
        running.stop().await;
    }
    // Decisions of services retired by reloads are recorded before the database closes.
    while retiring.join_next().await.is_some() {}
    watcher.close()
}

/// Starts approving from Slack when `[slack.approvals]` is configured. A failure to open
/// the audit log leaves the buttons without a listener (logged), never the watcher down.
fn start_approvals(
    setup: Option<approve::Setup>,
    membership: Option<approve::SharedMembership>,
    shutdown: &CancellationToken,
) -> Option<approve::Running> {
    let Some(setup) = setup else {
        // Approvals turned off (or never on): no connection series in the metrics.
        metrics::socket_state(metrics::SocketState::Off);
        return None;
    };
    match approve::spawn(setup, membership, shutdown) {
        Ok(running) => Some(running),
        Err(e) => {
            tracing::error!("cannot start approving from Slack: {e}");
            None
        }
    }
}

/// After each cycle: the heartbeat (when configured) judges it and pings if due (never
/// waits).
fn beat(
    heartbeat: Option<&mut Heartbeat>,
    outcome: &Result<CycleReport, StoreError>,
    clock: Clock,
) {
    if let Some(heartbeat) = heartbeat {
        heartbeat.after_cycle(outcome, clock.now());
    }
}

/// Awaits `work`, sending watchdog pings meanwhile for up to [`STALL_LIMIT`].
async fn pinging<T>(
    work: impl Future<Output = T>,
    notifier: &Notifier,
    status: impl Fn() -> String,
    what: &str,
) -> T {
    let Some(every) = notifier.watchdog_interval() else {
        return work.await;
    };
    tokio::pin!(work);
    let started = Instant::now();
    let mut tick = tokio::time::interval_at(started + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stalled = false;
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick(), if !stalled => {
                if started.elapsed() < STALL_LIMIT {
                    notifier.watchdog(&status());
                } else {
                    tracing::error!(
                        "the {what} has run for {} minutes; no more watchdog pings, so systemd restarts the service",
                        STALL_LIMIT.as_secs() / 60
                    );
                    stalled = true;
                }
            }
        }
    }
}

/// Sets the metrics' waiting gauges from the approvals the last cycle left waiting.
fn refresh_waiting(watcher: &Watcher, report: &CycleReport) {
    let config = watcher.config();
    let mut by_pipeline: BTreeMap<(String, String), u64> = BTreeMap::new();
    for p in &config.pipelines {
        let region = config.region_of(p).unwrap_or_default().to_owned();
        if !region.is_empty() {
            by_pipeline.insert((p.name.clone(), region), 0);
        }
    }
    for (
        Target {
            pipeline, region, ..
        },
        _,
    ) in &report.waiting
    {
        *by_pipeline
            .entry((pipeline.clone(), region.clone()))
            .or_default() += 1;
    }
    metrics::global().set_waiting(metrics::Waiting {
        by_pipeline,
        oldest_since: report.waiting.iter().map(|(_, since)| *since).min(),
        undelivered: report.undelivered,
    });
}
