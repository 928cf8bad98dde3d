//! The fake CodePipeline's executions of a PARALLEL-mode pipeline, as AWS shows them:
//! `ListPipelineExecutions` (newest first, paged), `ListActionExecutions` filtered by
//! `pipelineExecutionId` (the approval's token in `output.executionResult.externalExecutionId`),
//! and `PutApprovalResult` that accepts only a waiting run's `externalExecutionId`.
//! Shaped as `list-pipeline-executions.json` and `list-action-executions.json`.

use serde_json::{Value, json};

use super::fake_codepipeline::DAEMON_ROLE_ARN;
use super::fixtures::{self, APPROVAL_ACTION, APPROVAL_STAGE, error_body};

/// One run of the pipeline.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Stopped`…
    pub status: String,
    pub started: f64,
    pub revision: String,
    /// Its execution of the approval action, once it reached it.
    pub approval: Option<RunApproval>,
}

#[derive(Debug, Clone)]
pub struct RunApproval {
    pub stage: String,
    pub action: String,
    pub external_id: String,
    /// `InProgress`, `Succeeded`, `Failed`, `Abandoned`.
    pub status: String,
    pub started: f64,
    pub updated: f64,
    pub updated_by: Option<String>,
    pub summary: Option<String>,
}

impl Run {
    /// A run that finished long ago without waiting anywhere (history).
    pub fn finished(id: &str, started: f64) -> Self {
        Run {
            id: id.to_owned(),
            status: "Succeeded".into(),
            started,
            revision: fixtures::token_from_seed(id).replace('-', ""),
            approval: None,
        }
    }

    /// A run waiting at the fixture's approval action since `since`.
    pub fn waiting(id: &str, external_id: &str, since: f64) -> Self {
        Self::waiting_at(id, APPROVAL_STAGE, external_id, since)
    }

    /// A run waiting at the approval action of `stage` since `since`.
    pub fn waiting_at(id: &str, stage: &str, external_id: &str, since: f64) -> Self {
        Run {
            status: "InProgress".into(),
            started: since - 300.0,
            approval: Some(RunApproval {
                stage: stage.to_owned(),
                action: APPROVAL_ACTION.to_owned(),
                external_id: external_id.to_owned(),
                status: "InProgress".into(),
                started: since,
                updated: since,
                updated_by: None,
                summary: None,
            }),
            ..Self::finished(id, since)
        }
    }
}

/// `ListPipelineExecutions`: newest first, `maxResults` a page (100 by default), the
/// `nextToken` the index of the next page's first run.
pub fn list_pipeline_executions(runs: &[Run], body: &Value) -> Value {
    let size = body
        .get("maxResults")
        .and_then(Value::as_u64)
        .map_or(100, |n| n as usize);
    let start: usize = body
        .get("nextToken")
        .and_then(Value::as_str)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let mut newest_first: Vec<&Run> = runs.iter().collect();
    newest_first.sort_by(|a, b| b.started.total_cmp(&a.started));
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(size)
        .map(|r| {
            json!({
                "pipelineExecutionId": r.id,
                "status": r.status,
                "startTime": r.started,
                "lastUpdateTime": r.approval.as_ref().map_or(r.started, |a| a.updated),
                "sourceRevisions": [{"actionName": "Source", "revisionId": r.revision,
                    "revisionUrl": format!("https://github.com/example/web-app/commit/{}", r.revision)}],
                "trigger": {"triggerType": "CodeStarSourceConnection",
                    "triggerDetail": "arn:aws:codeconnections:us-east-1:123456789012:connection/0b1c2d3e"},
                "executionMode": "PARALLEL",
                "executionType": "STANDARD"
            })
        })
        .collect();
    let mut answer = json!({ "pipelineExecutionSummaries": page });
    if start + size < newest_first.len() {
        answer["nextToken"] = json!((start + size).to_string());
    }
    answer
}

/// `ListActionExecutions` filtered by `pipelineExecutionId`: a deploy action's execution (not
/// an approval) and, once the run reached it, the approval action's.
pub fn list_action_executions(runs: &[Run], version: i64, body: &Value) -> (u16, Value) {
    let Some(id) = body["filter"]["pipelineExecutionId"].as_str() else {
        return (
            400,
            error_body(
                "ValidationException",
                "a pipelineExecutionId filter is needed",
            ),
        );
    };
    let Some(run) = runs.iter().find(|r| r.id == id) else {
        return (
            400,
            error_body(
                "PipelineExecutionNotFoundException",
                &format!("Pipeline execution {id} not found"),
            ),
        );
    };
    let mut details = vec![json!({
        "pipelineExecutionId": run.id,
        "actionExecutionId": fixtures::token_from_seed(&format!("deploy-{}", run.id)),
        "pipelineVersion": version,
        "stageName": "Staging",
        "actionName": "DeployStaging",
        "startTime": run.started + 60.0,
        "lastUpdateTime": run.started + 240.0,
        "status": "Succeeded",
        "input": {"actionTypeId": {"category": "Deploy", "owner": "AWS", "provider": "ECS", "version": "1"},
                  "configuration": {"ClusterName": "staging"}, "region": "us-east-1", "inputArtifacts": []},
        "output": {"outputArtifacts": [], "executionResult": {"externalExecutionId": "ecs-deploy"}, "outputVariables": {}}
    })];
    if let Some(a) = &run.approval {
        let mut result = json!({ "externalExecutionId": a.external_id });
        if let Some(summary) = &a.summary {
            result["externalExecutionSummary"] = json!(summary);
        }
        let mut detail = json!({
            "pipelineExecutionId": run.id,
            "actionExecutionId": fixtures::token_from_seed(&format!("approve-{}", run.id)),
            "pipelineVersion": version,
            "stageName": a.stage,
            "actionName": a.action,
            "startTime": a.started,
            "lastUpdateTime": a.updated,
            "status": a.status,
            "input": {"actionTypeId": {"category": "Approval", "owner": "AWS", "provider": "Manual", "version": "1"},
                      "configuration": {"CustomData": fixtures::FIXTURE_CUSTOM_DATA},
                      "region": "us-east-1", "inputArtifacts": []},
            "output": {"outputArtifacts": [], "executionResult": result, "outputVariables": {}}
        });
        if let Some(by) = &a.updated_by {
            detail["updatedBy"] = json!(by);
        }
        // Newest first, as AWS lists them.
        details.insert(0, detail);
    }
    (200, json!({ "actionExecutionDetails": details }))
}

/// Ends `run`'s approval: `status` is the action's (`Succeeded`, `Failed`, `Abandoned`).
pub fn decide(run: &mut Run, status: &str, by: Option<&str>, summary: Option<&str>) {
    let now = fixtures::now_epoch();
    if let Some(a) = run.approval.as_mut() {
        a.status = status.to_owned();
        a.updated = now;
        a.updated_by = by.map(str::to_owned);
        a.summary = summary.map(str::to_owned);
    }
    run.status = match status {
        "Succeeded" => "InProgress",
        "Abandoned" => "Stopped",
        _ => "Failed",
    }
    .into();
}

/// A `PutApprovalResult` request's fields, checked as CodePipeline checks them.
pub struct ApprovalRequest {
    pub stage: String,
    pub action: String,
    pub token: String,
    /// `Approved` or `Rejected`.
    pub status: String,
    pub summary: String,
}

impl ApprovalRequest {
    /// The request, or the `ValidationException` answer it gets.
    pub fn parse(body: &Value) -> Result<Self, (u16, Value)> {
        let field = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        let status = body["result"]["status"].as_str().unwrap_or("").to_owned();
        let summary = body["result"]["summary"].as_str().unwrap_or("").to_owned();
        if !matches!(status.as_str(), "Approved" | "Rejected") || summary.chars().count() > 512 {
            return Err((
                400,
                error_body("ValidationException", "1 validation error detected: result"),
            ));
        }
        Ok(Self {
            stage: field("stageName"),
            action: field("actionName"),
            token: field("token"),
            status,
            summary,
        })
    }
}

/// `PutApprovalResult` on a PARALLEL pipeline: the token must be a waiting run's
/// `externalExecutionId` at that stage and action.
pub fn put_approval_result(runs: &mut [Run], body: &Value) -> (u16, Value) {
    let ApprovalRequest {
        stage,
        action,
        token,
        status,
        summary,
    } = match ApprovalRequest::parse(body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let Some(run) = runs.iter_mut().find(|r| {
        r.approval
            .as_ref()
            .is_some_and(|a| a.stage == stage && a.action == action && a.external_id == token)
    }) else {
        return (
            400,
            error_body(
                "InvalidApprovalTokenException",
                &format!("Approval token {token} is not valid"),
            ),
        );
    };
    if run.approval.as_ref().map(|a| a.status.as_str()) != Some("InProgress") {
        return (
            400,
            error_body(
                "ApprovalAlreadyCompletedException",
                "The approval request has already been completed",
            ),
        );
    }
    let outcome = if status == "Approved" {
        "Succeeded"
    } else {
        "Failed"
    };
    decide(run, outcome, Some(DAEMON_ROLE_ARN), Some(&summary));
    (200, json!({ "approvedAt": fixtures::now_epoch() }))
}
