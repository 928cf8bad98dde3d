//! SDK response types → the model. Pure.

use aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput;
use aws_sdk_codepipeline::types::{ActionCategory, PipelineDeclaration};
use jiff::Timestamp;

use approval_watch_core::model::{
    ActionExecution, ActionStatus, ApprovalDefinition, Definitions, ExecutionMode,
    ObservedApproval, PipelineDefinition,
};

/// The execution mode and the approval actions of a pipeline declaration.
pub fn pipeline_definition(pipeline: &PipelineDeclaration) -> PipelineDefinition {
    PipelineDefinition {
        mode: ExecutionMode::parse(pipeline.execution_mode().map(|m| m.as_str())),
        approvals: approval_definitions(pipeline),
    }
}

fn approval_definitions(pipeline: &PipelineDeclaration) -> Definitions {
    let mut out = Vec::new();
    for stage in pipeline.stages() {
        for action in stage.actions() {
            let is_approval = action
                .action_type_id()
                .is_some_and(|t| *t.category() == ActionCategory::Approval);
            if !is_approval {
                continue;
            }
            let config = action.configuration();
            let get = |k: &str| {
                config
                    .and_then(|c| c.get(k))
                    .filter(|v| !v.trim().is_empty())
                    .cloned()
            };
            out.push((
                (stage.name().to_owned(), action.name().to_owned()),
                ApprovalDefinition {
                    custom_data: get("CustomData"),
                    external_entity_link: get("ExternalEntityLink"),
                    timeout_minutes: action.timeout_in_minutes().map(i64::from),
                },
            ));
        }
    }
    out
}

/// Each approval action of the definitions, with its latest execution from the state.
/// The state lists every stage and action of its pipeline version, run or not; one that
/// is missing makes the answer malformed (`Err` says which), since reading it as "the
/// action is gone" would resolve an approval that is still waiting.
pub fn observed_approvals(
    state: &GetPipelineStateOutput,
    definitions: &Definitions,
) -> Result<Vec<ObservedApproval>, String> {
    definitions
        .iter()
        .map(|((stage, action), definition)| {
            let stage_state = state
                .stage_states()
                .iter()
                .find(|s| s.stage_name() == Some(stage.as_str()))
                .ok_or_else(|| format!("the state has no stage {stage:?}"))?;
            let action_state = stage_state
                .action_states()
                .iter()
                .find(|a| a.action_name() == Some(action.as_str()))
                .ok_or_else(|| format!("stage {stage:?} of the state has no action {action:?}"))?;
            Ok(ObservedApproval {
                stage: stage.clone(),
                action: action.clone(),
                definition: definition.clone(),
                latest: action_state.latest_execution().map(action_execution),
                pipeline_execution_id: stage_state
                    .latest_execution()
                    .map(|e| e.pipeline_execution_id().to_owned())
                    .filter(|id| !id.is_empty()),
            })
        })
        .collect()
}

fn stage_running(stage: &aws_sdk_codepipeline::types::StageState) -> bool {
    stage
        .latest_execution()
        .is_some_and(|e| e.status().as_str() == "InProgress")
        || stage.action_states().iter().any(|a| {
            a.latest_execution()
                .and_then(|e| e.status())
                .is_some_and(|s| s.as_str() == "InProgress")
        })
}

/// Whether a run is heading for (or waiting at) an approval: some stage at or before an
/// approval stage is in progress. Such a pipeline is read every `poll_interval`; the others
/// can wait, since a run takes minutes to reach its approval.
pub fn heading_for_approval(state: &GetPipelineStateOutput, definitions: &Definitions) -> bool {
    let mut in_progress_seen = false;
    for stage in state.stage_states() {
        in_progress_seen |= stage_running(stage);
        let is_approval_stage = definitions
            .iter()
            .any(|((s, _), _)| Some(s.as_str()) == stage.stage_name());
        if in_progress_seen && is_approval_stage {
            return true;
        }
    }
    false
}

pub fn action_execution(e: &aws_sdk_codepipeline::types::ActionExecution) -> ActionExecution {
    ActionExecution {
        status: e
            .status()
            .map(|s| ActionStatus::parse(s.as_str()))
            .unwrap_or_else(|| ActionStatus::Unknown(String::new())),
        token: e.token().filter(|t| !t.is_empty()).map(str::to_owned),
        last_status_change: e.last_status_change().and_then(timestamp),
        last_updated_by: e.last_updated_by().map(str::to_owned),
        comment: e.summary().map(str::to_owned),
    }
}

pub fn timestamp(t: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

/// CodeStar connections put JSON in `revisionSummary`; show its commit message.
pub fn commit_message(summary: &str) -> String {
    serde_json::from_str::<serde_json::Value>(summary)
        .ok()
        .and_then(|v| v.get("CommitMessage")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| summary.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_message_comes_out_of_codestar_json() {
        assert_eq!(
            commit_message(r#"{"ProviderType":"GitHub","CommitMessage":"Fix rounding"}"#),
            "Fix rounding"
        );
        assert_eq!(commit_message("plain summary"), "plain summary");
        assert_eq!(commit_message(r#"{"Other":1}"#), r#"{"Other":1}"#);
    }
}
