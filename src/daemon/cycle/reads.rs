//! The AWS reads of a pass and what they decide: every due pipeline read (bounded, each
//! paced by its budget), the revision of each new approval, the plan; then the schedule and
//! the read-failure tracker told how the reads went.

use std::collections::{HashMap, HashSet};

use futures_util::StreamExt;
use jiff::Timestamp;

use crate::aws::{AwsError, CodePipeline};
use crate::config::Config;
use crate::daemon::warn_once::WarnOnce;
use crate::store::{Store, StoreError};
use approval_watch_core::model::{
    ActionStatus, ApprovalKey, OpenApproval, PipelineSnapshot, Revision, Target,
};
use approval_watch_core::poll::Schedule;
use approval_watch_core::read_failures::{Failure, ReadFailures};
use approval_watch_core::reconcile::{self, Plan};

/// Reads started at once; each then waits for its (account, region) budget.
pub const MAX_PENDING_READS: usize = 256;

/// What a pass's reads gave.
pub struct Observation {
    pub plan: Plan,
    pub snapshots: Vec<PipelineSnapshot>,
    pub failures: Vec<AwsError>,
}

/// Reads `targets` and decides, given the approvals recorded as waiting (`open`, read once
/// per cycle). `store` is only asked which waiting keys are already known. `deleted` are
/// pipelines known to be gone.
pub async fn observe(
    config: &Config,
    aws: &CodePipeline,
    targets: &[Target],
    deleted: &[Target],
    open: &[OpenApproval],
    store: &Store,
    now: Timestamp,
) -> Result<Observation, StoreError> {
    // The budgets pace and cap the calls; this only bounds the futures held at once.
    let recorded = recorded_runs(open);
    let none = Vec::new();
    let results: Vec<Result<PipelineSnapshot, AwsError>> = futures_util::stream::iter(targets)
        .map(|t| aws.read(t, recorded.get(t).unwrap_or(&none), now))
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

/// The runs of each pipeline with an approval recorded as waiting: a per-execution read reads
/// them too, to learn how each approval ended.
fn recorded_runs(open: &[OpenApproval]) -> HashMap<Target, Vec<String>> {
    let mut runs: HashMap<Target, Vec<String>> = HashMap::new();
    for o in open {
        if let Some(run) = &o.approval.pipeline_execution_id {
            runs.entry(o.approval.key.target())
                .or_default()
                .push(run.clone());
        }
    }
    runs
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
                    warn(&e, "cannot read the revision being deployed; this pipeline's alerts go without it until it can be read (needs codepipeline:GetPipelineExecution)");
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

/// Tells the schedule which pipelines were read (and whether each is active: a run heading
/// for an approval, or one waiting), and the tracker which failed and which read again. A
/// lasting failure is logged once; the rest of its run at debug.
pub fn record(
    schedule: &mut Schedule,
    failing: &mut ReadFailures,
    observed: &Observation,
    now: Timestamp,
) {
    for e in &observed.failures {
        let failure = failing.failed(&e.target(), &e.code, now);
        // The definition says how the pipeline runs (its execution mode) and which actions
        // are approvals: without it, approvals could be missed without a word.
        let unwatchable = e.operation == "GetPipeline";
        if unwatchable {
            failing.unwatchable(&e.target());
        }
        match failure {
            Failure::New if unwatchable => warn(
                e,
                "cannot read pipeline definition, so the pipeline cannot be watched (the definition says how it runs and which actions are approvals); approvals it starts go untold until this is fixed",
            ),
            Failure::New => warn(e, "cannot read pipeline; its approvals stay as they are"),
            Failure::Lasting => {
                tracing::debug!(pipeline = %e.pipeline, region = %e.region, code = %e.code, "still cannot read pipeline")
            }
        }
    }
    for s in &observed.snapshots {
        let waiting_now = s.approvals.iter().any(|a| {
            a.latest
                .as_ref()
                .is_some_and(|l| l.status == ActionStatus::InProgress)
        });
        let target = Target {
            account: s.account.clone(),
            region: s.region.clone(),
            pipeline: s.pipeline.clone(),
        };
        schedule.read(&target, s.active || waiting_now, now);
        if failing.read(&target) {
            tracing::info!(pipeline = %target.pipeline, region = %target.region, "pipeline readable again");
        }
    }
    crate::metrics::pipelines_unwatchable(failing.unwatchable_targets().len());
}

/// Warns about a failed AWS call: `what`, then AWS's message, with the call's fields.
fn warn(e: &AwsError, what: &str) {
    tracing::warn!(
        pipeline = %e.pipeline,
        account = %e.account,
        region = %e.region,
        operation = e.operation,
        code = %e.code,
        "{what}: {}",
        e.message
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::at;
    use approval_watch_core::read_failures::NOT_FOUND;

    fn snapshot(pipeline: &str, active: bool) -> PipelineSnapshot {
        PipelineSnapshot {
            account: "default".into(),
            region: "eu-west-1".into(),
            pipeline: pipeline.into(),
            version: Some(1),
            mode: Default::default(),
            active,
            approvals: Vec::new(),
        }
    }

    fn failure(pipeline: &str, code: &str) -> AwsError {
        AwsError {
            operation: "GetPipelineState",
            account: "default".into(),
            region: "eu-west-1".into(),
            pipeline: pipeline.into(),
            code: code.into(),
            message: "no".into(),
            status: Some(400),
            request_id: None,
        }
    }

    fn observed(snapshots: Vec<PipelineSnapshot>, failures: Vec<AwsError>) -> Observation {
        Observation {
            plan: Plan::default(),
            snapshots,
            failures,
        }
    }

    #[test]
    fn reads_go_to_the_schedule_and_failures_to_the_tracker() {
        let mut schedule = Schedule::new(std::time::Duration::from_secs(600));
        let mut failing = ReadFailures::default();
        let gone = failure("gone", NOT_FOUND);
        let passes = [
            observed(vec![snapshot("web", true)], vec![gone.clone()]),
            observed(vec![snapshot("api", false)], vec![gone.clone()]),
        ];
        record(&mut schedule, &mut failing, &passes[0], at(0));
        record(&mut schedule, &mut failing, &passes[1], at(0));
        let web = snapshot("web", true);
        let target = |s: &PipelineSnapshot| Target {
            account: s.account.clone(),
            region: s.region.clone(),
            pipeline: s.pipeline.clone(),
        };
        assert_eq!(schedule.last_read_at(&target(&web)), Some(at(0)));
        assert_eq!(schedule.active_count(&[target(&web)]), 1);
        assert_eq!(schedule.active_count(&[target(&snapshot("api", false))]), 0);
        assert_eq!(failing.len(), 1);
        // Still not found 15 minutes on: deleted; found again: not.
        record(
            &mut schedule,
            &mut failing,
            &observed(vec![], vec![gone.clone()]),
            at(15),
        );
        assert_eq!(failing.deleted(at(15)), [gone.target()]);
        record(
            &mut schedule,
            &mut failing,
            &observed(vec![snapshot("gone", false)], vec![]),
            at(16),
        );
        assert!(failing.is_empty());
        assert!(failing.deleted(at(16)).is_empty());
    }
}
