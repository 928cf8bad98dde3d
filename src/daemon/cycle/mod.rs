//! One cycle: read every pipeline, decide, record, deliver. Used by `run` on a timer, by
//! `once`, and by `once --dry-run` (on an in-memory copy of the store, capturing instead of
//! posting, so the dry run decides exactly as `once` would).
//!
//! The [`Watcher`] owns the cycle's state and runs its steps in order; each step lives in its
//! own module: `discovery`, `reads` (the AWS reads of a pass), `messages` (plan → messages),
//! `deciders` (who decided in Slack), `digests`, `pacing` (idle rhythms, budget fit),
//! `narration` (logs) and [`report`] (what a cycle did). Which pipelines are unreadable or
//! deleted is the core's [`ReadFailures`].

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::aws::CodePipeline;
use crate::clock::Clock;
use crate::config::Config;
use crate::daemon::deliver::{Captured, Deliverer, DeliveryReport};
use crate::store::{Store, StoreError};
use approval_watch_core::model::{OpenApproval, Target};
use approval_watch_core::poll::Schedule;
use approval_watch_core::read_failures::ReadFailures;
use approval_watch_core::reconcile::Plan;

mod deciders;
mod digests;
mod discovery;
#[cfg(test)]
mod fixtures;
mod messages;
mod narration;
mod pacing;
mod reads;
pub mod report;

use discovery::Discovery;
use narration::Summary;
use pacing::BudgetFit;
pub use report::CycleReport;
use report::{PassReport, Waiting};

/// What a config builds for the watcher (see `startup`): its AWS clients, the pipelines it
/// names and the deliverer. A reload swaps them in whole.
pub struct Parts {
    pub config: Config,
    /// Shared with the approvals service, whose `PutApprovalResult` calls go through the same
    /// request budgets.
    pub aws: Arc<CodePipeline>,
    pub targets: Vec<Target>,
    pub deliverer: Deliverer,
    /// Whether each cycle writes its time to the store: the heartbeat's proof that the store
    /// takes writes (live mode with `[heartbeat]`).
    pub records_cycles: bool,
}

/// The daemon's moving parts, owned together.
pub struct Watcher {
    config: Config,
    aws: Arc<CodePipeline>,
    /// `[[pipeline]]`s.
    configured: Vec<Target>,
    discovery: Discovery,
    schedule: Schedule,
    store: Store,
    deliverer: Deliverer,
    /// Which pipelines cannot be read, and which are deleted.
    failing: ReadFailures,
    budget_fit: BudgetFit,
    summary: Summary,
    records_cycles: bool,
    clock: Clock,
    /// Whether decisions are logged as they are recorded (not in a dry run, which records
    /// nothing: its output is the messages it prints).
    narrate: bool,
}

impl Watcher {
    pub fn new(parts: Parts, store: Store, clock: Clock) -> Self {
        seed_definitions(&parts.aws, &store);
        Self {
            schedule: Schedule::new(parts.config.idle_poll_interval),
            config: parts.config,
            aws: parts.aws,
            configured: parts.targets,
            deliverer: parts.deliverer,
            records_cycles: parts.records_cycles,
            discovery: Discovery::default(),
            store,
            failing: ReadFailures::default(),
            budget_fit: BudgetFit::default(),
            summary: Summary::default(),
            clock,
            narrate: true,
        }
    }

    /// Decides and captures without saying so in the logs (the dry run); warnings still show.
    pub fn quiet(mut self) -> Self {
        self.narrate = false;
        self
    }

    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn aws(&self) -> &CodePipeline {
        &self.aws
    }

    /// Reads skipped because pipelines were idle, since start.
    pub fn reads_saved(&self) -> u64 {
        self.schedule.reads_saved
    }

    /// What the dry run's deliverer captured instead of posting.
    pub fn take_captured(&mut self) -> Vec<Captured> {
        self.deliverer.take_captured()
    }

    /// The highest outbox id so far: messages above it were queued after this call.
    pub fn last_message_id(&self) -> Result<i64, StoreError> {
        self.store.last_message_id()
    }

    /// Every pipeline watched: configured, then discovered (without duplicates).
    pub fn targets(&self) -> Vec<Target> {
        let mut seen: HashSet<Target> = HashSet::new();
        self.configured
            .iter()
            .cloned()
            .chain(self.discovery.targets())
            .filter(|t| seen.insert(t.clone()))
            .collect()
    }

    /// A full cycle at the clock's time.
    pub async fn cycle(&mut self, shutdown: &CancellationToken) -> Result<CycleReport, StoreError> {
        self.cycle_at(self.clock.now(), shutdown).await
    }

    /// A full cycle, deciding as of `now`. Shutdown abandons the reads (nothing recorded) or
    /// stops delivery between messages (the rest stay queued).
    pub async fn cycle_at(
        &mut self,
        now: Timestamp,
        shutdown: &CancellationToken,
    ) -> Result<CycleReport, StoreError> {
        let listing_failures = tokio::select! {
            listed = self.discover(now) => listed,
            _ = shutdown.cancelled() => return Ok(CycleReport::default()),
        };
        let targets = self.targets();
        // The one read of the approvals recorded as waiting; the passes decide from it.
        let open = self.store.open_approvals()?;
        let recorded: HashSet<Target> = open.iter().map(|o| o.approval.key.target()).collect();
        pacing::update_rhythms(&self.config, &mut self.schedule, &targets, self.narrate);
        let due = self.schedule.due(&targets, &recorded, now);
        let deleted = self.failing.deleted(now);
        let mut report = CycleReport {
            pipelines: targets.len(),
            reads: due.reads(),
            listing_failures,
            ..CycleReport::default()
        };
        let mut waiting = Waiting::recorded(&open);
        let mut passes = PassReport::default();
        // The pipelines that may have an approval waiting are read, recorded and delivered
        // before the idle ones are read: a fleet's idle reads never delay an alert.
        let Some((urgent, plan)) = self
            .pass(&due.urgent, &deleted, &open, now, shutdown)
            .await?
        else {
            return Ok(report);
        };
        self.failing.recorded(&deleted);
        passes += urgent;
        waiting.apply(&open, &plan);
        if !due.idle.is_empty() {
            // An idle pipeline has no approval recorded as waiting (else it would be urgent).
            let Some((idle, plan)) = self.pass(&due.idle, &[], &[], now, shutdown).await? else {
                report.passes(passes);
                return Ok(report);
            };
            passes += idle;
            waiting.apply(&open, &plan);
        }
        passes += PassReport::delivered(self.digests(now, shutdown).await?);
        // The passes sent what could go at once; what a channel's pace held back goes now.
        passes += PassReport::delivered(
            self.deliverer
                .deliver_due(&self.store, now, shutdown)
                .await?,
        );
        report.passes(passes);
        let rate_of = |account: &str, region: &str| {
            let budget = self.aws.budget_for(account, region)?;
            Some(budget.limits().requests_per_second)
        };
        let poll_interval = self.config.poll_interval;
        self.budget_fit
            .check(poll_interval, &self.schedule, &targets, rate_of);
        report.undelivered = self.store.count_pending()?;
        report.paused = self
            .store
            .paused_routes()?
            .into_iter()
            .map(|p| p.route)
            .collect();
        report.oldest_undelivered = self.store.oldest_pending_since()?;
        if self.records_cycles {
            // The heartbeat's "store writable" is this write, not a cycle that wrote nothing.
            self.store.record_cycle(now)?;
        }
        report.waiting = waiting.0;
        if self.narrate {
            self.summary
                .after_cycle(&report, self.schedule.reads_saved, now);
        }
        Ok(report)
    }

    /// Reads `due`, records what changed and delivers what is due. `None`: shutdown came
    /// during the reads, and nothing was recorded.
    async fn pass(
        &mut self,
        due: &[Target],
        deleted: &[Target],
        open: &[OpenApproval],
        now: Timestamp,
        shutdown: &CancellationToken,
    ) -> Result<Option<(PassReport, Plan)>, StoreError> {
        let observed = tokio::select! {
            o = reads::observe(&self.config, &self.aws, due, deleted, open, &self.store, now) => o?,
            _ = shutdown.cancelled() => return Ok(None),
        };
        reads::record(&mut self.schedule, &mut self.failing, &observed, now);
        let mut plan = observed.plan;
        deciders::credit_slack_deciders(&mut plan, |id| self.store.decided_in_slack(id));
        // From the store, so that a restart (and the dry run) knows them before delivering.
        let paused = self.store.paused_routes()?;
        let paused = paused.iter().map(|p| p.route.as_str()).collect();
        let changes = messages::changes(&self.config, &plan, now, &paused);
        self.store.record(&changes, now)?;
        // Definitions read this pass, kept so a restart (or `once`) need not read them again.
        self.store.save_definitions(&self.aws.take_fetched(), now)?;
        if self.narrate {
            narration::log_plan(&plan);
        }
        let delivery = self
            .deliverer
            .deliver_ready(&self.store, now, shutdown)
            .await?;
        let report = PassReport {
            read_failures: observed.failures.len(),
            new_approvals: plan.new.len(),
            resolved: plan.resolved.len(),
            reminders: plan.reminders.len(),
            delivery,
        };
        Ok(Some((report, plan)))
    }

    /// The daily digests due at `now` and not yet decided, recorded with their day in one
    /// transaction, then delivered. Reads the open approvals again, but only when a digest
    /// is due: about once a day per destination.
    async fn digests(
        &mut self,
        now: Timestamp,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryReport, StoreError> {
        let store = &self.store;
        let due = digests::due(&self.config, now, |route, day| {
            store.digest_decided(route, day)
        })?;
        if due.is_empty() {
            return Ok(DeliveryReport::default());
        }
        let changes = digests::changes(&self.config, due, self.store.open_approvals()?, now);
        self.store.record(&changes, now)?;
        self.deliverer.deliver_due(&self.store, now, shutdown).await
    }

    /// Lists pipelines for `[[discover]]` when due; pipelines gone from a listing are
    /// resolved as deleted at the next pass. Returns how many scopes could not be listed.
    async fn discover(&mut self, now: Timestamp) -> usize {
        let Some(listed) = self.discovery.run(&self.config, &self.aws, now).await else {
            return 0;
        };
        for t in listed.vanished {
            self.failing.vanished(t);
        }
        let targets = self.targets();
        self.schedule.retain(&targets);
        listed.failures
    }

    /// Sends what is due in the outbox (retries between cycles).
    pub async fn deliver(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryReport, StoreError> {
        self.deliverer
            .deliver_due(&self.store, self.clock.now(), shutdown)
            .await
    }

    /// When the next message may go (a paused route's wait for their next try).
    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.deliverer.next_due(&self.store)
    }

    pub fn close(self) -> Result<(), StoreError> {
        self.store.close()
    }

    /// SIGHUP: swaps in a new config with its AWS clients, configured targets and deliverer.
    /// The store (and its lock) stays open. Pipelines no longer configured (or discovered) are
    /// no longer read, and forgotten here, so their open approvals stay as they are: never
    /// resolved, never reminded. Discovery lists afresh at the next cycle.
    /// Deliveries wait at most `max` for the pace (the daemon's loop; `once` waits it out).
    pub fn limit_pace_wait(&mut self, max: std::time::Duration) {
        self.deliverer.limit_pace_wait(max);
    }

    /// The Web API client the deliverer posts with (app mode).
    pub fn slack_api(&self) -> Option<&crate::slack::web_api::SlackApi> {
        self.deliverer.slack_api()
    }

    pub fn reconfigure(&mut self, parts: Parts) {
        let Parts {
            config,
            aws,
            targets,
            deliverer,
            records_cycles,
        } = parts;
        seed_definitions(&aws, &self.store);
        if config.idle_poll_interval != self.config.idle_poll_interval {
            self.schedule = Schedule::new(config.idle_poll_interval);
        }
        self.schedule.retain(&targets);
        self.failing.retain(&targets);
        self.discovery = Discovery::default();
        self.budget_fit.clear();
        self.records_cycles = records_cycles;
        self.config = config;
        self.aws = aws;
        self.configured = targets;
        let old = std::mem::replace(&mut self.deliverer, deliverer);
        self.deliverer.take_over(old);
    }
}

/// The definitions kept in the store, for a new set of AWS clients. Unreadable ones are
/// skipped (read again when needed); a store that cannot be read costs only `GetPipeline`s.
fn seed_definitions(aws: &CodePipeline, store: &Store) {
    match store.load_definitions() {
        Ok(known) => aws.seed_definitions(known),
        Err(e) => tracing::warn!(
            "cannot read the cached pipeline definitions; reading them from AWS: {e}"
        ),
    }
}
