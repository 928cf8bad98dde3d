//! One cycle: read every pipeline, decide, record, deliver. Used by `run` on a timer and by
//! `once`; `observe` alone serves `once --dry-run`.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;
use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use crate::aws::{AwsError, CodePipeline, Target};
use crate::config::Config;
use crate::deliver::{Deliverer, DeliveryReport};
use crate::model::{ApprovalKey, MessageKind, PipelineSnapshot, Revision};
use crate::reconcile::{self, Plan};
use crate::remind::Mention;
use crate::render;
use crate::store::{Changes, NewMessage, Store, StoreError};

/// Pipelines read at once; keeps a cycle quick without bursting into throttling.
const MAX_CONCURRENT_READS: usize = 8;

/// What a cycle's reads gave.
pub struct Observation {
    pub plan: Plan,
    pub failures: Vec<AwsError>,
}

/// What one cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub pipelines: usize,
    pub read_failures: usize,
    pub new_approvals: usize,
    pub resolved: usize,
    pub reminders: usize,
    pub delivery: DeliveryReport,
    /// Messages still waiting in the outbox after the cycle (retry later, or interrupted).
    pub undelivered: u64,
}

impl CycleReport {
    /// `once` succeeds only when everything was read and everything due was delivered.
    pub fn is_clean(&self) -> bool {
        self.read_failures == 0 && self.delivery.failed == 0 && self.undelivered == 0
    }
}

/// Reads the pipelines and decides. `store` is read, never written; `None` = nothing recorded.
/// `deleted` are pipelines known to be gone.
pub async fn observe(
    config: &Config,
    aws: &CodePipeline,
    targets: &[Target],
    deleted: &[Target],
    store: Option<&Store>,
    now: Timestamp,
) -> Result<Observation, StoreError> {
    let results: Vec<Result<PipelineSnapshot, AwsError>> = futures_util::stream::iter(targets)
        .map(|t| aws.read(t))
        .buffer_unordered(MAX_CONCURRENT_READS)
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
    let known = match store {
        Some(store) => store.known(waiting.iter().map(|(k, _)| k))?,
        None => HashSet::new(),
    };
    let revisions = revisions(aws, &waiting, &known).await;
    let open = match store {
        Some(store) => store.open_approvals()?,
        None => Vec::new(),
    };
    let policy = |pipeline: &str| &config.route_for(pipeline).reminders;
    let plan = reconcile::reconcile(&reconcile::Inputs {
        open: &open,
        snapshots: &snapshots,
        deleted,
        known: &known,
        revisions: &revisions,
        policy: &policy,
        now,
    });
    Ok(Observation { plan, failures })
}

/// `GetPipelineExecution` once per new approval. A failure only costs the alert its revision.
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
            let target = Target {
                region: key.region.clone(),
                pipeline: key.pipeline.clone(),
            };
            match aws.revision(&target, execution).await {
                Ok(revision) => Some((key.clone(), revision)),
                Err(e) => {
                    tracing::warn!(
                        pipeline = %e.pipeline,
                        code = %e.code,
                        "cannot read the revision being deployed; alerting without it: {}",
                        e.message
                    );
                    None
                }
            }
        })
        .buffer_unordered(MAX_CONCURRENT_READS)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// Renders the messages a plan causes, each for its pipeline's route.
pub fn changes(config: &Config, plan: &Plan, now: Timestamp) -> Changes {
    let message = |pipeline: &str, kind, payload, extra: Option<&Mention>| {
        let route = config.route_for(pipeline);
        let mentions: Vec<&Mention> = route.mention.iter().chain(extra).collect();
        NewMessage {
            kind,
            destination: route.name.clone(),
            payload: render::with_mentions(payload, &mentions),
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
                    message(&a.key.pipeline, MessageKind::Alert, payload, None),
                )
            })
            .collect(),
        resolved: plan
            .resolved
            .iter()
            .map(|r| {
                let pipeline = &r.approval.key.pipeline;
                let told = r.notify && config.route_for(pipeline).notify_resolved;
                let msg = told.then(|| {
                    let payload = render::resolution(&r.approval, &r.resolution);
                    message(pipeline, MessageKind::Resolution, payload, None)
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
                (
                    r.id,
                    r.due,
                    message(pipeline, MessageKind::Reminder, payload, escalation),
                )
            })
            .collect(),
    }
}

/// The daemon's moving parts, owned together.
pub struct Watcher {
    config: Config,
    aws: CodePipeline,
    targets: Vec<Target>,
    store: Store,
    deliverer: Deliverer,
    /// Per failing pipeline: its error code and since when, so a lasting failure is logged
    /// once, and a pipeline not found for long enough is taken as deleted.
    failing: HashMap<Target, (String, Timestamp)>,
}

/// A pipeline answering "not found" this long is deleted: a single answer could be an
/// eventually-consistent blip or a typo being fixed, and a false resolution is worse than a late one.
const DELETED_AFTER: jiff::SignedDuration = jiff::SignedDuration::from_mins(15);
const NOT_FOUND: &str = "PipelineNotFoundException";

impl Watcher {
    pub fn new(
        config: Config,
        aws: CodePipeline,
        targets: Vec<Target>,
        store: Store,
        deliverer: Deliverer,
    ) -> Self {
        Self {
            config,
            aws,
            targets,
            store,
            deliverer,
            failing: HashMap::new(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A full cycle at the current time.
    pub async fn cycle(&mut self, shutdown: &CancellationToken) -> Result<CycleReport, StoreError> {
        self.cycle_at(Timestamp::now(), shutdown).await
    }

    /// A full cycle, deciding as of `now` (tests drive time through here). Shutdown abandons
    /// the reads (nothing recorded) or stops delivery between messages (the rest stay queued).
    pub async fn cycle_at(
        &mut self,
        now: Timestamp,
        shutdown: &CancellationToken,
    ) -> Result<CycleReport, StoreError> {
        let deleted = self.deleted(now);
        let observed = tokio::select! {
            o = observe(&self.config, &self.aws, &self.targets, &deleted, Some(&self.store), now) => o?,
            _ = shutdown.cancelled() => return Ok(CycleReport::default()),
        };
        self.log_read_failures(&observed.failures, now);
        let changes = changes(&self.config, &observed.plan, now);
        self.store.record(&changes, now)?;
        for a in &observed.plan.new {
            tracing::info!(
                pipeline = %a.key.pipeline,
                stage = %a.key.stage,
                action = %a.key.action,
                region = %a.key.region,
                "approval waiting"
            );
        }
        for r in &observed.plan.resolved {
            tracing::info!(
                pipeline = %r.approval.key.pipeline,
                stage = %r.approval.key.stage,
                action = %r.approval.key.action,
                outcome = r.resolution.outcome.as_str(),
                told = r.notify,
                "approval resolved"
            );
        }
        for r in &observed.plan.reminders {
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
        let delivery = self.deliver(shutdown).await?;
        Ok(CycleReport {
            pipelines: self.targets.len(),
            read_failures: observed.failures.len(),
            new_approvals: observed.plan.new.len(),
            resolved: observed.plan.resolved.len(),
            reminders: observed.plan.reminders.len(),
            delivery,
            undelivered: self.store.count_pending()?,
        })
    }

    /// Sends what is due in the outbox (retries between cycles).
    pub async fn deliver(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<DeliveryReport, StoreError> {
        self.deliverer.deliver_due(&self.store, shutdown).await
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
            let target = Target {
                region: e.region.clone(),
                pipeline: e.pipeline.clone(),
            };
            let since = match self.failing.get(&target) {
                Some((code, since)) if *code == e.code => {
                    tracing::debug!(pipeline = %e.pipeline, region = %e.region, code = %e.code, "still cannot read pipeline");
                    *since
                }
                _ => {
                    tracing::warn!(
                        pipeline = %e.pipeline,
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
        for target in self.failing.keys() {
            if !still_failing.contains_key(target) {
                tracing::info!(pipeline = %target.pipeline, region = %target.region, "pipeline readable again");
            }
        }
        self.failing = still_failing;
    }
}
