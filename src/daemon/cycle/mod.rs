//! One cycle: read every pipeline, decide, record, deliver. Used by `run` on a timer, by
//! `once`, and by `once --dry-run` (on an in-memory copy of the store, capturing instead of
//! posting, so the dry run decides exactly as `once` would).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsError, CodePipeline, DiscoveryScope, Target};
use crate::clock::Clock;
use crate::config::Config;
use crate::daemon::deliver::{Captured, Deliverer, DeliveryReport};
use crate::daemon::heartbeat::Heartbeat;
use crate::daemon::warn_once::WarnOnce;
use crate::store::{AppParts, Changes, NewMessage, Store, StoreError};
use approval_watch_core::model::{
    ApprovalKey, MessageKind, OpenApproval, Outcome, PipelineSnapshot, Revision,
};
use approval_watch_core::poll::{Discovered, Schedule};
use approval_watch_core::reconcile::{self, Plan};
use approval_watch_core::remind::Mention;
use approval_watch_core::render;

/// Reads started at once; each then waits for its (account, region) budget.
const MAX_PENDING_READS: usize = 256;

/// What a cycle's reads gave.
struct Observation {
    plan: Plan,
    snapshots: Vec<PipelineSnapshot>,
    failures: Vec<AwsError>,
}

/// What one cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub pipelines: usize,
    pub read_failures: usize,
    pub new_approvals: usize,
    pub resolved: usize,
    pub reminders: usize,
    /// Pipelines read this cycle (the others were idle and not due).
    pub reads: usize,
    /// `[[discover]]` scopes that could not be listed.
    pub listing_failures: usize,
    pub delivery: DeliveryReport,
    /// Messages still waiting in the outbox after the cycle (retry later, or interrupted).
    pub undelivered: u64,
    /// When the oldest of them was queued.
    pub oldest_undelivered: Option<Timestamp>,
    /// The approvals waiting after the cycle: pipeline and since when.
    pub waiting: Vec<(Target, Timestamp)>,
}

impl CycleReport {
    /// Adds what a pass of the cycle did.
    fn add(&mut self, pass: &CycleReport) {
        self.read_failures += pass.read_failures;
        self.new_approvals += pass.new_approvals;
        self.resolved += pass.resolved;
        self.reminders += pass.reminders;
        self.delivery.delivered += pass.delivery.delivered;
        self.delivery.failed += pass.delivery.failed;
        self.delivery.deferred += pass.delivery.deferred;
    }

    /// `once` succeeds only when everything was listed and read and everything due was
    /// delivered.
    pub fn is_clean(&self) -> bool {
        self.read_failures == 0
            && self.listing_failures == 0
            && self.delivery.failed == 0
            && self.undelivered == 0
    }
}

/// Reads `targets` and decides, given the approvals recorded as waiting (`open`, read once
/// per cycle). `store` is only asked which waiting keys are already known. `deleted` are
/// pipelines known to be gone.
async fn observe(
    config: &Config,
    aws: &CodePipeline,
    targets: &[Target],
    deleted: &[Target],
    open: &[OpenApproval],
    store: &Store,
    now: Timestamp,
) -> Result<Observation, StoreError> {
    // The budgets pace and cap the calls; this only bounds the futures held at once.
    let recorded: HashSet<Target> = open.iter().map(|o| o.approval.key.target()).collect();
    let results: Vec<Result<PipelineSnapshot, AwsError>> = futures_util::stream::iter(targets)
        .map(|t| aws.read(t, recorded.contains(t)))
        .buffer_unordered(MAX_PENDING_READS)
        .collect()
        .await;
    let mut snapshots = Vec::with_capacity(results.len());
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(s) => snapshots.push(s),
            Err(e) => failures.push(e),
        }
    }

    let waiting = reconcile::waiting_keys(&snapshots);
    let known = store.known(waiting.iter().map(|(k, _)| k))?;
    let revisions = revisions(aws, &waiting, &known).await;
    let policy = |pipeline: &str| &config.route_for(pipeline).reminders;
    let plan = reconcile::reconcile(&reconcile::Inputs {
        open,
        snapshots: &snapshots,
        deleted,
        known: &known,
        revisions: &revisions,
        policy: &policy,
        now,
    });
    Ok(Observation {
        plan,
        snapshots,
        failures,
    })
}

/// Pipelines whose revision could not be read, warned about once while it lasts.
static REVISION_UNREADABLE: WarnOnce<Target> = WarnOnce::new();

/// `GetPipelineExecution` once per new approval. A failure only costs the alert its revision,
/// and is warned about once per pipeline until a revision of it can be read again.
async fn revisions(
    aws: &CodePipeline,
    waiting: &[(ApprovalKey, Option<String>)],
    known: &HashSet<ApprovalKey>,
) -> HashMap<ApprovalKey, Revision> {
    let lookups = waiting
        .iter()
        .filter(|(key, _)| !known.contains(key))
        .filter_map(|(key, execution)| Some((key, execution.as_deref()?)));
    futures_util::stream::iter(lookups)
        .map(|(key, execution)| async move {
            let target = key.target();
            match aws.revision(&target, execution).await {
                Ok(revision) => {
                    if REVISION_UNREADABLE.clear(&target) {
                        tracing::info!(pipeline = %target.pipeline, region = %target.region, "the revision being deployed can be read again");
                    }
                    Some((key.clone(), revision))
                }
                Err(e) if REVISION_UNREADABLE.first(target) => {
                    tracing::warn!(
                        pipeline = %e.pipeline,
                        account = %e.account,
                        region = %e.region,
                        operation = e.operation,
                        code = %e.code,
                        "cannot read the revision being deployed; this pipeline's alerts go without it until it can be read (needs codepipeline:GetPipelineExecution): {}",
                        e.message
                    );
                    None
                }
                Err(e) => {
                    tracing::debug!(pipeline = %e.pipeline, code = %e.code, "still cannot read the revision being deployed");
                    None
                }
            }
        })
        .buffer_unordered(MAX_PENDING_READS)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// One listing of every `[[discover]]` scope, filtered by its globs: each scope's names,
/// or why it could not be listed.
async fn list_scopes(
    config: &Config,
    aws: &CodePipeline,
) -> Vec<(DiscoveryScope, Result<Vec<String>, AwsError>)> {
    futures_util::stream::iter(aws.discovery_scopes().to_vec())
        .map(|scope| async move {
            let listing = aws.list_pipelines(&scope.account, &scope.region).await;
            let selected = listing.map(|names| match config.discover.get(scope.entry) {
                Some(entry) => names.into_iter().filter(|n| entry.selects(n)).collect(),
                None => Vec::new(),
            });
            (scope, selected)
        })
        .buffer_unordered(MAX_PENDING_READS)
        .collect()
        .await
}

/// Renders the messages a plan causes, each for its pipeline's route.
fn changes(config: &Config, plan: &Plan, now: Timestamp) -> Changes {
    let message = |pipeline: &str, kind, payload, extra: Option<&Mention>, app| {
        let route = config.route_for(pipeline);
        let mentions: Vec<&Mention> = route.mention.iter().chain(extra).collect();
        NewMessage {
            kind,
            payload: render::with_mentions(payload, &mentions),
            app,
        }
    };
    Changes {
        new: plan
            .new
            .iter()
            .map(|a| {
                let payload = render::alert(a, now);
                (
                    a.clone(),
                    message(
                        &a.key.pipeline,
                        MessageKind::Alert,
                        payload,
                        None,
                        AppParts::default(),
                    ),
                )
            })
            .collect(),
        resolved: plan
            .resolved
            .iter()
            .map(|r| {
                let pipeline = &r.approval.key.pipeline;
                let route = config.route_for(pipeline);
                let told = r.notify && route.notify_resolved;
                // In app mode the alert is edited to show the outcome even when the thread
                // is not told (an edit notifies nobody); an alert never seen stays unsaid.
                let edited = r.notify && route.channel().is_some();
                let msg = (told || edited).then(|| {
                    let payload = render::resolution(&r.approval, &r.resolution);
                    let app = AppParts {
                        broadcast: false,
                        reply: told,
                        update: Some(render::resolved_alert(&r.approval, &r.resolution)),
                    };
                    message(pipeline, MessageKind::Resolution, payload, None, app)
                });
                (r.id, r.resolution.clone(), msg)
            })
            .collect(),
        reminders: plan
            .reminders
            .iter()
            .map(|r| {
                let pipeline = &r.approval.key.pipeline;
                let policy = &config.route_for(pipeline).reminders;
                let escalation = policy.escalate_mention.as_ref().filter(|_| r.due.escalate);
                let payload = render::reminder(&r.approval, &r.due, now);
                // Loud reminders show in the channel too, not only in the thread.
                let app = AppParts {
                    broadcast: r.due.escalate || r.due.expiry_warning,
                    ..AppParts::default()
                };
                (
                    r.id,
                    r.due,
                    message(pipeline, MessageKind::Reminder, payload, escalation, app),
                )
            })
            .collect(),
        digests: Vec::new(),
    }
}

/// What a config builds (see `startup`): its AWS clients, the pipelines it names and the
/// deliverer. A reload swaps them in whole.
pub struct Parts {
    pub config: Config,
    pub aws: CodePipeline,
    pub targets: Vec<Target>,
    pub deliverer: Deliverer,
    /// `[heartbeat]`, with its URLs read; `None` when not configured (and in the dry run).
    pub heartbeat: Option<Heartbeat>,
    /// `[slack.approvals]`'s Slack clients; `None` when not configured (and in the dry run).
    pub approvals: Option<ApprovalsParts>,
}

/// What approving from Slack needs besides the watcher's own parts.
pub struct ApprovalsParts {
    pub slack: crate::slack::web_api::SlackApi,
    pub opener: crate::slack::web_api::ConnectionOpener,
}

/// The daemon's moving parts, owned together.
pub struct Watcher {
    config: Config,
    /// Shared with the approvals service, whose `PutApprovalResult` calls go through the same
    /// request budgets.
    aws: Arc<CodePipeline>,
    approvals: Option<ApprovalsParts>,
    /// `[[pipeline]]`s.
    configured: Vec<Target>,
    discovered: Discovered,
    next_discovery: Option<Timestamp>,
    schedule: Schedule,
    store: Store,
    deliverer: Deliverer,
    /// Per failing pipeline: its error code and since when, so a lasting failure is logged
    /// once, and a pipeline not found for long enough is taken as deleted.
    failing: HashMap<Target, (String, Timestamp)>,
    /// Discovered pipelines that vanished; resolved as deleted at the next cycle.
    gone: Vec<Target>,
    /// Budgets that cannot fit a cycle into `poll_interval`, warned about once.
    over_budget: HashSet<(String, String)>,
    /// When the last periodic summary was logged.
    last_summary: Option<Timestamp>,
    heartbeat: Option<Heartbeat>,
    clock: Clock,
    /// Whether decisions are logged as they are recorded (not in a dry run, which records
    /// nothing: its output is the messages it prints).
    narrate: bool,
}

/// How often a cycle summary (reads done and saved) is logged at info.
const SUMMARY_EVERY: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

/// A pipeline answering "not found" this long is deleted: a single answer could be an
/// eventually-consistent blip or a typo being fixed, and a false resolution is worse than a late one.
const DELETED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);
const NOT_FOUND: &str = "PipelineNotFoundException";

impl Watcher {
    pub fn new(parts: Parts, store: Store, clock: Clock) -> Self {
        seed_definitions(&parts.aws, &store);
        let Parts {
            config,
            aws,
            targets,
            deliverer,
            heartbeat,
            approvals,
        } = parts;
        Self {
            heartbeat,
            approvals,
            aws: Arc::new(aws),
            schedule: Schedule::new(config.idle_poll_interval),
            config,
            configured: targets,
            discovered: Discovered::default(),
            next_discovery: None,
            store,
            deliverer,
            failing: HashMap::new(),
            gone: Vec::new(),
            over_budget: HashSet::new(),
            last_summary: None,
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

    /// What the approvals service needs (its Slack clients, this config and AWS clients),
    /// once per start or reload; `None` when `[slack.approvals]` is not configured.
    pub fn take_approvals(
        &mut self,
        state_path: &std::path::Path,
    ) -> Option<crate::approve::Setup> {
        let parts = self.approvals.take()?;
        Some(crate::approve::Setup {
            config: Arc::new(self.config.clone()),
            aws: self.aws.clone(),
            slack: parts.slack,
            opener: parts.opener,
            state_path: state_path.to_owned(),
            clock: self.clock,
        })
    }

    /// An approval decided from Slack reads as decided by the person who clicked, not by the
    /// daemon's IAM role that CodePipeline names. (A store that cannot say leaves the role.)
    fn credit_slack_deciders(&self, plan: &mut reconcile::Plan) {
        for r in &mut plan.resolved {
            if !matches!(r.resolution.outcome, Outcome::Approved | Outcome::Rejected) {
                continue;
            }
            match self.store.decided_in_slack(r.id) {
                Ok(Some((name, id))) => {
                    // Only when CodePipeline's comment is the summary sent for this very
                    // outcome: a console decision racing a Slack click keeps its reviewer.
                    let verdict = match r.resolution.outcome {
                        Outcome::Approved => crate::aws::Verdict::Approve,
                        _ => crate::aws::Verdict::Reject,
                    };
                    let ours = crate::approve::summary(verdict, &name, &id, None);
                    let rest = r
                        .resolution
                        .comment
                        .as_deref()
                        .and_then(|c| c.strip_prefix(ours.as_str()))
                        .map(|rest| rest.strip_prefix(": ").unwrap_or(rest).trim().to_owned());
                    if let Some(reason) = rest {
                        r.resolution.by = Some(format!("{name} ({id}) in Slack"));
                        // The headline says who; a rejection's reason stays as the comment.
                        r.resolution.comment = (!reason.is_empty()).then_some(reason);
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(
                    pipeline = %r.approval.key.pipeline,
                    "cannot read who decided in Slack: {e}"
                ),
            }
        }
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
            .chain(self.discovered.targets())
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
            failures = self.discover(now) => failures,
            _ = shutdown.cancelled() => return Ok(CycleReport::default()),
        };
        let targets = self.targets();
        // The one read of the approvals recorded as waiting; the passes decide from it.
        let open = self.store.open_approvals()?;
        let waiting: HashSet<Target> = open.iter().map(|o| o.approval.key.target()).collect();
        self.update_rhythms(&targets);
        let due = self.schedule.due(&targets, &waiting, now);
        let mut deleted = self.deleted(now);
        deleted.extend(self.gone.iter().cloned());
        let mut report = CycleReport {
            pipelines: targets.len(),
            reads: due.reads(),
            listing_failures,
            ..CycleReport::default()
        };
        let mut still_open: Vec<(Target, Timestamp)> = open
            .iter()
            .map(|o| (o.approval.key.target(), o.approval.waiting_since))
            .collect();
        // The pipelines that may have an approval waiting are read, recorded and delivered
        // before the idle ones are read: a fleet's idle reads never delay an alert.
        let Some((urgent, plan)) = self
            .pass(&due.urgent, &deleted, &open, now, shutdown)
            .await?
        else {
            return Ok(report);
        };
        // Recorded: the vanished pipelines' approvals are resolved now.
        self.gone.clear();
        report.add(&urgent);
        apply_plan(&mut still_open, &open, &plan);
        if !due.idle.is_empty() {
            // An idle pipeline has no approval recorded as waiting (else it would be urgent).
            let Some((idle, plan)) = self.pass(&due.idle, &[], &[], now, shutdown).await? else {
                return Ok(report);
            };
            report.add(&idle);
            apply_plan(&mut still_open, &open, &plan);
        }
        self.digests(now, shutdown, &mut report).await?;
        self.check_budget_fits(&targets);
        report.undelivered = self.store.count_pending()?;
        report.oldest_undelivered = self.store.oldest_pending_since()?;
        if self.heartbeat.is_some() {
            // The heartbeat's "store writable" is this write, not a cycle that wrote nothing.
            self.store.record_cycle(now)?;
        }
        report.waiting = still_open;
        if self.narrate
            && self
                .last_summary
                .is_none_or(|last| now.duration_since(last) >= SUMMARY_EVERY)
        {
            self.last_summary = Some(now);
            tracing::info!(
                pipelines = report.pipelines,
                read = report.reads,
                waiting = report.waiting.len(),
                reads_saved = self.schedule.reads_saved,
                undelivered = report.undelivered,
                "watching; idle pipelines have skipped {} reads since start",
                self.schedule.reads_saved
            );
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
    ) -> Result<Option<(CycleReport, Plan)>, StoreError> {
        let observed = tokio::select! {
            o = observe(&self.config, &self.aws, due, deleted, open, &self.store, now) => o?,
            _ = shutdown.cancelled() => return Ok(None),
        };
        for s in &observed.snapshots {
            let waiting_now = s.approvals.iter().any(|a| {
                a.latest.as_ref().is_some_and(|l| {
                    l.status == approval_watch_core::model::ActionStatus::InProgress
                })
            });
            let target = Target {
                account: s.account.clone(),
                region: s.region.clone(),
                pipeline: s.pipeline.clone(),
            };
            self.schedule.read(&target, s.active || waiting_now, now);
        }
        self.log_read_failures(&observed.failures, now);
        let mut plan = observed.plan;
        self.credit_slack_deciders(&mut plan);
        let changes = changes(&self.config, &plan, now);
        self.store.record(&changes, now)?;
        // Definitions read this pass, kept so a restart (or `once`) need not read them again.
        self.store.save_definitions(&self.aws.take_fetched(), now)?;
        if self.narrate {
            log_plan(&plan);
        }
        let delivery = self
            .deliverer
            .deliver_due(&self.store, now, shutdown)
            .await?;
        let report = CycleReport {
            read_failures: observed.failures.len(),
            new_approvals: plan.new.len(),
            resolved: plan.resolved.len(),
            reminders: plan.reminders.len(),
            delivery,
            ..CycleReport::default()
        };
        Ok(Some((report, plan)))
    }

    /// The daily digests due at `now` and not yet decided: one message per destination
    /// listing what still waits for it, oldest first (nothing when nothing waits), recorded
    /// with its day in one transaction, then delivered. Reads the open approvals again, but
    /// only when a digest is due: about once a day per destination.
    async fn digests(
        &mut self,
        now: Timestamp,
        shutdown: &CancellationToken,
        report: &mut CycleReport,
    ) -> Result<(), StoreError> {
        let mut due = Vec::new();
        for (route, schedule) in &self.config.digests {
            if let Some(day) = schedule.due_day(now) {
                let day = day.to_string();
                if !self.store.digest_decided(route, &day)? {
                    due.push((route.clone(), day));
                }
            }
        }
        if due.is_empty() {
            return Ok(());
        }
        let mut open = self.store.open_approvals()?;
        open.sort_by_key(|o| (o.approval.waiting_since, o.id));
        let mut changes = Changes::default();
        for (route, day) in due {
            let waiting: Vec<&OpenApproval> = open
                .iter()
                .filter(|o| self.config.route_for(&o.approval.key.pipeline).name == route)
                .collect();
            let message = waiting.first().map(|oldest| {
                (
                    oldest.id,
                    NewMessage {
                        kind: MessageKind::Digest,
                        payload: render::digest(&route, &waiting, now),
                        app: crate::store::AppParts::default(),
                    },
                )
            });
            tracing::info!(route = %route, day = %day, waiting = waiting.len(), "daily digest");
            changes.digests.push(crate::store::DigestDecision {
                route,
                day,
                approvals: waiting.len(),
                message,
            });
        }
        self.store.record(&changes, now)?;
        let delivery = self
            .deliverer
            .deliver_due(&self.store, now, shutdown)
            .await?;
        report.delivery.delivered += delivery.delivered;
        report.delivery.failed += delivery.failed;
        report.delivery.deferred += delivery.deferred;
        Ok(())
    }

    /// Lists pipelines for `[[discover]]` when due. A failed listing changes nothing;
    /// returns how many scopes could not be listed.
    async fn discover(&mut self, now: Timestamp) -> usize {
        if self.aws.discovery_scopes().is_empty()
            || self.next_discovery.is_some_and(|next| now < next)
        {
            return 0;
        }
        let mut failures = 0;
        let interval = jiff::SignedDuration::try_from(self.config.discover_interval)
            .unwrap_or(jiff::SignedDuration::from_mins(5));
        self.next_discovery = now.checked_add(interval).ok();
        for (scope, listing) in list_scopes(&self.config, &self.aws).await {
            let selected = match listing {
                Ok(names) => names,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(
                        account = %scope.account,
                        region = %scope.region,
                        code = %e.code,
                        "cannot list pipelines; keeping the ones found before: {}",
                        e.message
                    );
                    continue;
                }
            };
            let change = self.discovered.listed(
                (scope.entry, scope.account.clone(), scope.region.clone()),
                &selected,
            );
            let target = |pipeline: &String| Target {
                account: scope.account.clone(),
                region: scope.region.clone(),
                pipeline: pipeline.clone(),
            };
            if !change.added.is_empty() {
                tracing::info!(
                    account = %scope.account,
                    region = %scope.region,
                    added = change.added.len(),
                    watching = selected.len(),
                    "discovered pipelines"
                );
            }
            for name in &change.gone {
                tracing::info!(pipeline = %name, account = %scope.account, region = %scope.region, "pipeline gone from the listing; handling it as deleted");
                let t = target(name);
                self.aws.forget(&t);
                self.gone.push(t);
            }
        }
        let targets = self.targets();
        self.schedule.retain(&targets);
        failures
    }

    /// Adaptive polling: sets each (account, region)'s idle rhythm from its fleet and budget,
    /// logging it when it changes (so the start log shows it) and exporting it as a metric.
    fn update_rhythms(&mut self, targets: &[Target]) {
        let rhythms = crate::config::idle_rhythms(&self.config, targets);
        let mut gauge = std::collections::BTreeMap::new();
        for r in &rhythms {
            let every = std::time::Duration::from_secs(r.idle_read_every_s);
            if self.schedule.set_rhythm(&r.account, &r.region, every) && self.narrate {
                tracing::info!(
                    account = %r.account,
                    region = %r.region,
                    pipelines = r.pipelines,
                    idle_read_every_s = r.idle_read_every_s,
                    "idle pipelines are read every {}",
                    humantime::format_duration(every)
                );
            }
            gauge.insert((r.account.clone(), r.region.clone()), r.idle_read_every_s);
        }
        crate::metrics::global().set_idle_rhythms(gauge);
    }

    /// Warns (once, until it fits again) when a budget cannot read its pipelines within
    /// `poll_interval`, saying how long a cycle takes and what interval would fit.
    fn check_budget_fits(&mut self, targets: &[Target]) {
        let poll = self.config.poll_interval.as_secs_f64();
        let mut per_budget: HashMap<(String, String), Vec<Target>> = HashMap::new();
        for t in targets {
            per_budget
                .entry((t.account.clone(), t.region.clone()))
                .or_default()
                .push(t.clone());
        }
        for (key, ts) in per_budget {
            let Some(budget) = self.aws.budget_for(&key.0, &key.1) else {
                continue;
            };
            let idle = self.schedule.rhythm_of(&key.0, &key.1).as_secs_f64();
            let active = self.schedule.active_count(&ts) as f64;
            let idle_count = ts.len() as f64 - active;
            // Reads per poll interval: every active pipeline, and idle ones in turn.
            let reads = active + idle_count * (poll / idle);
            let rate = budget.limits().requests_per_second;
            let needed = reads / rate;
            if needed > poll {
                if self.over_budget.insert(key.clone()) {
                    tracing::warn!(
                        account = %key.0,
                        region = %key.1,
                        pipelines = ts.len(),
                        cycle_s = format!("{needed:.0}"),
                        "a cycle takes about {needed:.0} s at {rate} requests/s, longer than poll_interval ({poll:.0} s); set poll_interval to at least {:.0}s or raise max_requests_per_second",
                        needed.ceil()
                    );
                }
            } else {
                self.over_budget.remove(&key);
            }
        }
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

    /// The daemon, after each cycle: the heartbeat judges it and pings if due (never waits).
    pub fn beat(&mut self, outcome: &Result<CycleReport, StoreError>) {
        let now = self.clock.now();
        if let Some(heartbeat) = self.heartbeat.as_mut() {
            heartbeat.after_cycle(outcome, now);
        }
    }

    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.store.next_due()
    }

    pub fn close(self) -> Result<(), StoreError> {
        self.store.close()
    }

    fn deleted(&self, now: Timestamp) -> Vec<Target> {
        self.failing
            .iter()
            .filter(|(_, (code, since))| {
                code == NOT_FOUND && now.duration_since(*since) >= DELETED_AFTER
            })
            .map(|(target, _)| target.clone())
            .collect()
    }

    fn log_read_failures(&mut self, failures: &[AwsError], now: Timestamp) {
        let mut still_failing = HashMap::new();
        for e in failures {
            let target = e.target();
            let since = match self.failing.get(&target) {
                Some((code, since)) if *code == e.code => {
                    tracing::debug!(pipeline = %e.pipeline, region = %e.region, code = %e.code, "still cannot read pipeline");
                    *since
                }
                _ => {
                    tracing::warn!(
                        pipeline = %e.pipeline,
                        account = %e.account,
                        region = %e.region,
                        operation = e.operation,
                        code = %e.code,
                        "cannot read pipeline; its approvals stay as they are: {}",
                        e.message
                    );
                    now
                }
            };
            still_failing.insert(target, (e.code.clone(), since));
        }
        // Pipelines not read this cycle keep their failure record.
        for (target, record) in &self.failing {
            if still_failing.contains_key(target) {
                continue;
            }
            if self.schedule.last_read_at(target) == Some(now) {
                tracing::info!(pipeline = %target.pipeline, region = %target.region, "pipeline readable again");
            } else {
                still_failing.insert(target.clone(), record.clone());
            }
        }
        self.failing = still_failing;
    }

    /// SIGHUP: swaps in a new config with its AWS clients, configured targets and deliverer.
    /// The store (and its lock) stays open. Pipelines no longer configured (or discovered) are
    /// no longer read, and forgotten here, so their open approvals stay as they are: never
    /// resolved, never reminded. Discovery lists afresh at the next cycle.
    pub fn reconfigure(&mut self, parts: Parts) {
        let Parts {
            config,
            aws,
            targets,
            deliverer,
            mut heartbeat,
            approvals,
        } = parts;
        self.approvals = approvals;
        if let (Some(new), Some(old)) = (heartbeat.as_mut(), self.heartbeat.as_ref()) {
            new.take_over(old);
        }
        self.heartbeat = heartbeat;
        seed_definitions(&aws, &self.store);
        if config.idle_poll_interval != self.config.idle_poll_interval {
            self.schedule = Schedule::new(config.idle_poll_interval);
        }
        self.schedule.retain(&targets);
        self.failing.retain(|target, _| targets.contains(target));
        self.discovered = Discovered::default();
        self.next_discovery = None;
        self.over_budget.clear();
        self.config = config;
        self.aws = Arc::new(aws);
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

/// Keeps the list of waiting approvals current after a pass recorded `plan`.
fn apply_plan(waiting: &mut Vec<(Target, Timestamp)>, open: &[OpenApproval], plan: &Plan) {
    let resolved: HashSet<i64> = plan.resolved.iter().map(|r| r.id).collect();
    let gone: HashSet<(Target, Timestamp)> = open
        .iter()
        .filter(|o| resolved.contains(&o.id))
        .map(|o| (o.approval.key.target(), o.approval.waiting_since))
        .collect();
    waiting.retain(|w| !gone.contains(w));
    waiting.extend(plan.new.iter().map(|a| (a.key.target(), a.waiting_since)));
}

fn log_plan(plan: &Plan) {
    for a in &plan.new {
        tracing::info!(
            pipeline = %a.key.pipeline,
            stage = %a.key.stage,
            action = %a.key.action,
            region = %a.key.region,
            account = %a.key.account,
            "approval waiting"
        );
    }
    for r in &plan.resolved {
        tracing::info!(
            pipeline = %r.approval.key.pipeline,
            stage = %r.approval.key.stage,
            action = %r.approval.key.action,
            outcome = r.resolution.outcome.as_str(),
            told = r.notify,
            "approval resolved"
        );
    }
    for r in &plan.reminders {
        tracing::info!(
            pipeline = %r.approval.key.pipeline,
            stage = %r.approval.key.stage,
            action = %r.approval.key.action,
            number = r.due.number,
            expiry_warning = r.due.expiry_warning,
            escalated = r.due.escalate,
            "reminder due"
        );
    }
}
