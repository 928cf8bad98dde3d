//! The only module that touches the AWS SDK: reads pipelines into [`PipelineSnapshot`]s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::config::Region;
use aws_sdk_codepipeline::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_codepipeline::types::ActionCategory;
use aws_smithy_types::error::display::DisplayErrorContext;
use jiff::Timestamp;

use crate::config::AwsConfig;
pub use crate::model::Target;
use crate::model::{
    ActionExecution, ActionStatus, ApprovalDefinition, ObservedApproval, PipelineSnapshot, Revision,
};

/// A failed AWS call, naming the operation, the pipeline and AWS's error code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} for pipeline {pipeline} in {region} failed: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub pipeline: String,
    pub region: String,
    /// AWS's error code (`AccessDeniedException`, …) or the kind of transport failure.
    pub code: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "no AWS region for pipeline {0}: set [aws] region, the pipeline's region, or AWS_REGION"
    )]
    NoRegion(String),
}

/// Which actions of a pipeline version are manual approvals, keyed by (stage, action).
type Definitions = Vec<((String, String), ApprovalDefinition)>;
/// Definitions by pipeline, with the pipeline version they were read at.
type DefinitionCache = HashMap<Target, (Option<i32>, Arc<Definitions>)>;

/// CodePipeline clients, one per region, and the approval definitions cached by pipeline version.
pub struct CodePipeline {
    clients: HashMap<String, Client>,
    definitions: Mutex<DefinitionCache>,
}

/// How long one call may take in all, and one attempt of it, so a hung endpoint cannot stall a cycle.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

impl CodePipeline {
    /// Loads the SDK's default chain once (env, profile, instance role, `AWS_ENDPOINT_URL`)
    /// and resolves each configured pipeline's region.
    pub async fn connect(
        aws: &AwsConfig,
        pipelines: &[(String, Option<String>)],
    ) -> Result<(Self, Vec<Target>), SetupError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(OPERATION_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .build(),
        );
        if let Some(profile) = &aws.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &aws.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &aws.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let default_region = shared.region().map(|r| r.to_string());

        let mut targets = Vec::with_capacity(pipelines.len());
        let mut clients = HashMap::new();
        for (name, region) in pipelines {
            let region = region
                .clone()
                .or_else(|| default_region.clone())
                .ok_or_else(|| SetupError::NoRegion(name.clone()))?;
            clients.entry(region.clone()).or_insert_with(|| {
                let conf = aws_sdk_codepipeline::config::Builder::from(&shared)
                    .region(Region::new(region.clone()))
                    .build();
                Client::from_conf(conf)
            });
            targets.push(Target {
                region,
                pipeline: name.clone(),
            });
        }
        let this = Self {
            clients,
            definitions: Mutex::new(HashMap::new()),
        };
        Ok((this, targets))
    }

    fn client(&self, target: &Target) -> &Client {
        // `connect` made a client for every target's region; targets come only from there.
        &self.clients[&target.region]
    }

    /// `GetPipelineState`, plus `GetPipeline` when the pipeline's version changed.
    pub async fn read(&self, target: &Target) -> Result<PipelineSnapshot, AwsError> {
        let state = self
            .client(target)
            .get_pipeline_state()
            .name(&target.pipeline)
            .send()
            .await
            .map_err(|e| aws_error("GetPipelineState", target, e))?;
        let version = state.pipeline_version();
        let definitions = self.definitions(target, version).await?;

        let approvals = definitions
            .iter()
            .map(|((stage, action), definition)| {
                let stage_state = state
                    .stage_states()
                    .iter()
                    .find(|s| s.stage_name() == Some(stage.as_str()));
                let action_state = stage_state.and_then(|s| {
                    s.action_states()
                        .iter()
                        .find(|a| a.action_name() == Some(action.as_str()))
                });
                ObservedApproval {
                    stage: stage.clone(),
                    action: action.clone(),
                    definition: definition.clone(),
                    latest: action_state
                        .and_then(|a| a.latest_execution())
                        .map(action_execution),
                    pipeline_execution_id: stage_state
                        .and_then(|s| s.latest_execution())
                        .map(|e| e.pipeline_execution_id().to_owned())
                        .filter(|id| !id.is_empty()),
                }
            })
            .collect();
        Ok(PipelineSnapshot {
            region: target.region.clone(),
            pipeline: target.pipeline.clone(),
            version,
            approvals,
        })
    }

    async fn definitions(
        &self,
        target: &Target,
        version: Option<i32>,
    ) -> Result<Arc<Definitions>, AwsError> {
        if let Some(cached) = self.cached(target, version) {
            return Ok(cached);
        }
        let output = self
            .client(target)
            .get_pipeline()
            .name(&target.pipeline)
            .send()
            .await
            .map_err(|e| aws_error("GetPipeline", target, e))?;
        let definitions = Arc::new(
            output
                .pipeline()
                .map(approval_definitions)
                .unwrap_or_default(),
        );
        tracing::debug!(
            pipeline = %target.pipeline,
            region = %target.region,
            ?version,
            approvals = definitions.len(),
            "read pipeline definition"
        );
        if let Ok(mut cache) = self.definitions.lock() {
            cache.insert(target.clone(), (version, definitions.clone()));
        }
        Ok(definitions)
    }

    fn cached(&self, target: &Target, version: Option<i32>) -> Option<Arc<Definitions>> {
        let cache = self.definitions.lock().ok()?;
        // An unknown version is never trusted to match.
        match cache.get(target) {
            Some((Some(v), defs)) if version == Some(*v) => Some(defs.clone()),
            _ => None,
        }
    }

    /// `GetPipelineExecution`: the source revision a run is deploying.
    pub async fn revision(
        &self,
        target: &Target,
        execution_id: &str,
    ) -> Result<Revision, AwsError> {
        let output = self
            .client(target)
            .get_pipeline_execution()
            .pipeline_name(&target.pipeline)
            .pipeline_execution_id(execution_id)
            .send()
            .await
            .map_err(|e| aws_error("GetPipelineExecution", target, e))?;
        let first = output
            .pipeline_execution()
            .and_then(|e| e.artifact_revisions().first());
        Ok(Revision {
            revision_id: first.and_then(|r| r.revision_id()).map(str::to_owned),
            summary: first.and_then(|r| r.revision_summary()).map(commit_message),
            url: first.and_then(|r| r.revision_url()).map(str::to_owned),
        })
    }
}

fn approval_definitions(
    pipeline: &aws_sdk_codepipeline::types::PipelineDeclaration,
) -> Definitions {
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

fn action_execution(e: &aws_sdk_codepipeline::types::ActionExecution) -> ActionExecution {
    ActionExecution {
        status: e
            .status()
            .map(|s| ActionStatus::parse(s.as_str()))
            .unwrap_or_else(|| ActionStatus::Unknown(String::new())),
        token: e.token().filter(|t| !t.is_empty()).map(str::to_owned),
        last_status_change: e.last_status_change().and_then(timestamp),
        last_updated_by: e.last_updated_by().map(str::to_owned),
        summary: e.summary().map(str::to_owned),
    }
}

fn timestamp(t: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).ok()
}

/// CodeStar connections put JSON in `revisionSummary`; show its commit message.
fn commit_message(summary: &str) -> String {
    serde_json::from_str::<serde_json::Value>(summary)
        .ok()
        .and_then(|v| v.get("CommitMessage")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| summary.to_owned())
}

fn aws_error<E, R>(operation: &'static str, target: &Target, err: SdkError<E, R>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            (
                e.code().unwrap_or("UnknownError").to_owned(),
                e.message().unwrap_or("no message").to_owned(),
            )
        }
        SdkError::TimeoutError(_) => ("Timeout".to_owned(), DisplayErrorContext(&err).to_string()),
        SdkError::DispatchFailure(_) => (
            "DispatchFailure".to_owned(),
            DisplayErrorContext(&err).to_string(),
        ),
        SdkError::ResponseError(_) => (
            "ResponseError".to_owned(),
            DisplayErrorContext(&err).to_string(),
        ),
        _ => ("SdkError".to_owned(), DisplayErrorContext(&err).to_string()),
    };
    AwsError {
        operation,
        pipeline: target.pipeline.clone(),
        region: target.region.clone(),
        code,
        message,
    }
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
