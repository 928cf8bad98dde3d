//! PARALLEL-mode reads: `GetPipelineState` shows no execution of such a pipeline, so its
//! approvals are read per execution. `ListPipelineExecutions` (newest first, only as far back
//! as a run can still be waiting) finds the runs in progress; `ListActionExecutions` of each (and of
//! each run recorded as waiting, to read how its approval ended) gives the manual approval
//! actions' executions, whose `externalExecutionId` is the token.

use std::collections::BTreeSet;

use aws_sdk_codepipeline::operation::list_action_executions::ListActionExecutionsOutput;
use aws_sdk_codepipeline::operation::list_pipeline_executions::ListPipelineExecutionsOutput;
use aws_sdk_codepipeline::types::{ActionCategory, ActionExecutionDetail, ActionExecutionFilter};
use jiff::{SignedDuration, Timestamp};

use super::{AwsError, CodePipeline, next_page, parse};
use approval_watch_core::model::{
    ActionExecution, ActionStatus, ObservedApproval, PipelineDefinition, Target,
};

/// Executions per `ListPipelineExecutions` page: AWS's maximum, so a busy pipeline's look-back
/// costs as few calls as it can.
const EXECUTIONS_PER_PAGE: i32 = 100;
/// A bound on pages of one listing, against an endpoint that never stops paging.
const MAX_PAGES: usize = 1000;

/// What a per-execution read found.
pub struct ExecutionsRead {
    pub approvals: Vec<ObservedApproval>,
    /// Some run is in progress (so the pipeline is read every `poll_interval`).
    pub active: bool,
}

impl CodePipeline {
    /// Reads a PARALLEL pipeline's approvals: the runs in progress on the pages back to its
    /// look-back ([`PipelineDefinition::lookback_minutes`]) before `now`, plus `recorded` (runs with an approval recorded
    /// as waiting), each through `ListActionExecutions`.
    pub(super) async fn read_executions(
        &self,
        target: &Target,
        definition: &PipelineDefinition,
        recorded: &[String],
        now: Timestamp,
    ) -> Result<ExecutionsRead, AwsError> {
        if definition.approvals.is_empty() && recorded.is_empty() {
            // No manual approval in this version and none recorded waiting: nothing to read.
            return Ok(ExecutionsRead {
                approvals: Vec::new(),
                active: false,
            });
        }
        let horizon = now
            .saturating_sub(SignedDuration::from_mins(definition.lookback_minutes()))
            .unwrap_or(now);
        let in_progress = self.executions_in_progress(target, horizon).await?;
        let active = !in_progress.is_empty();
        let runs: BTreeSet<&str> = in_progress
            .iter()
            .chain(recorded)
            .map(String::as_str)
            .collect();
        let mut approvals = Vec::new();
        for run in runs {
            let details = match self.action_executions(target, run).await {
                Ok(details) => details,
                // A run recorded as waiting that AWS no longer knows (the pipeline deleted and
                // made again under its name): that approval goes unlisted, and the pipeline's
                // other runs are still read, so its new approvals are told.
                Err(e)
                    if e.code == "PipelineExecutionNotFoundException"
                        && !in_progress.iter().any(|id| id == run) =>
                {
                    tracing::warn!(
                        pipeline = %target.pipeline,
                        execution = run,
                        "a run recorded as waiting is unknown to CodePipeline now; its approval is no longer read"
                    );
                    continue;
                }
                Err(e) => return Err(e),
            };
            for detail in details {
                approvals.extend(approval_of(&detail, definition));
            }
        }
        Ok(ExecutionsRead { approvals, active })
    }

    /// `ListPipelineExecutions`, newest first, until a page reaches runs started before
    /// `horizon` (none of those can still be waiting at an approval): the ids in progress.
    async fn executions_in_progress(
        &self,
        target: &Target,
        horizon: Timestamp,
    ) -> Result<Vec<String>, AwsError> {
        let mut ids = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let token = next_token.clone();
            let page = self
                .call("ListPipelineExecutions", target, |c| {
                    c.list_pipeline_executions()
                        .pipeline_name(&target.pipeline)
                        .max_results(EXECUTIONS_PER_PAGE)
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            let reached_horizon = in_progress_of(&page, horizon, &mut ids);
            next_token = next_page(page.next_token());
            if reached_horizon || next_token.is_none() {
                break;
            }
        }
        Ok(ids)
    }

    /// `ListActionExecutions` of one run, every page.
    async fn action_executions(
        &self,
        target: &Target,
        run: &str,
    ) -> Result<Vec<ActionExecutionDetail>, AwsError> {
        let filter = ActionExecutionFilter::builder()
            .pipeline_execution_id(run)
            .build();
        let mut details = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let token = next_token.clone();
            let page: ListActionExecutionsOutput = self
                .call("ListActionExecutions", target, |c| {
                    c.list_action_executions()
                        .pipeline_name(&target.pipeline)
                        .filter(filter.clone())
                        .set_next_token(token.clone())
                        .send()
                })
                .await?;
            // Another run's execution (a filter not applied) would be judged as this one's.
            details.extend(
                page.action_execution_details()
                    .iter()
                    .filter(|d| d.pipeline_execution_id().is_none_or(|id| id == run))
                    .cloned(),
            );
            next_token = next_page(page.next_token());
            if next_token.is_none() {
                break;
            }
        }
        Ok(details)
    }
}

/// Adds the page's runs in progress to `ids`, however long ago they started (a run may build
/// for hours before its approval starts waiting); whether the page reached a run started
/// before `horizon` (the listing is newest first, so later pages are older still), which ends
/// the paging. A run without a start time does not end it.
fn in_progress_of(
    page: &ListPipelineExecutionsOutput,
    horizon: Timestamp,
    ids: &mut Vec<String>,
) -> bool {
    let mut reached = false;
    for run in page.pipeline_execution_summaries() {
        let started = run.start_time().and_then(parse::timestamp);
        if started.is_some_and(|s| s < horizon) {
            reached = true;
        }
        let running = run.status().is_some_and(|s| s.as_str() == "InProgress");
        match run.pipeline_execution_id().filter(|id| !id.is_empty()) {
            Some(id) if running => ids.push(id.to_owned()),
            _ => {}
        }
    }
    reached
}

/// A manual approval action's execution as an observed approval (category `Approval`,
/// provider `Manual`); its token is `output.executionResult.externalExecutionId`.
fn approval_of(
    detail: &ActionExecutionDetail,
    definition: &PipelineDefinition,
) -> Option<ObservedApproval> {
    let type_id = detail.input()?.action_type_id()?;
    if *type_id.category() != ActionCategory::Approval || type_id.provider() != "Manual" {
        return None;
    }
    let stage = detail.stage_name()?.to_owned();
    let action = detail.action_name()?.to_owned();
    let result = detail.output().and_then(|o| o.execution_result());
    let status = detail
        .status()
        .map(|s| ActionStatus::parse(s.as_str()))
        .unwrap_or_else(|| ActionStatus::Unknown(String::new()));
    // Waiting: since it started; ended: when it last changed.
    let changed = match status {
        ActionStatus::InProgress => detail.start_time().or(detail.last_update_time()),
        _ => detail.last_update_time().or(detail.start_time()),
    };
    let definition = definition
        .approvals
        .iter()
        .find(|((s, a), _)| *s == stage && *a == action)
        .map(|(_, d)| d.clone())
        .unwrap_or_default();
    Some(ObservedApproval {
        latest: Some(ActionExecution {
            status,
            token: result
                .and_then(|r| r.external_execution_id())
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            last_status_change: changed.and_then(parse::timestamp),
            last_updated_by: detail.updated_by().map(str::to_owned),
            comment: result
                .and_then(|r| r.external_execution_summary())
                .map(str::to_owned),
        }),
        pipeline_execution_id: detail.pipeline_execution_id().map(str::to_owned),
        stage,
        action,
        definition,
    })
}

#[cfg(test)]
mod tests {
    use aws_sdk_codepipeline::primitives::DateTime;
    use aws_sdk_codepipeline::types::{PipelineExecutionStatus, PipelineExecutionSummary};

    use super::*;

    fn run(id: &str, status: PipelineExecutionStatus, started: i64) -> PipelineExecutionSummary {
        PipelineExecutionSummary::builder()
            .pipeline_execution_id(id)
            .status(status)
            .start_time(DateTime::from_secs(started))
            .build()
    }

    #[test]
    fn a_run_in_progress_is_kept_however_long_ago_it_started_and_old_runs_end_the_paging() {
        let horizon = Timestamp::from_second(1_000_000).unwrap();
        let page = ListPipelineExecutionsOutput::builder()
            .pipeline_execution_summaries(run(
                "new",
                PipelineExecutionStatus::InProgress,
                1_000_500,
            ))
            .pipeline_execution_summaries(run(
                "done",
                PipelineExecutionStatus::Succeeded,
                1_000_100,
            ))
            // A long build before its approval: started before the horizon, still waiting.
            .pipeline_execution_summaries(run("old", PipelineExecutionStatus::InProgress, 900_000))
            .build();
        let mut ids = Vec::new();
        assert!(
            in_progress_of(&page, horizon, &mut ids),
            "the horizon is reached"
        );
        assert_eq!(ids, ["new", "old"]);
        let recent = ListPipelineExecutionsOutput::builder()
            .pipeline_execution_summaries(run("a", PipelineExecutionStatus::InProgress, 1_000_900))
            .build();
        let mut ids = Vec::new();
        assert!(!in_progress_of(&recent, horizon, &mut ids), "page on");
        assert_eq!(ids, ["a"]);
    }
}
