//! The CodePipeline response bodies in `tests/fixtures/codepipeline/` (shaped exactly as AWS
//! sends them), and builders that derive variants from them (another pipeline name, another
//! token, timestamps close to now…).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// The approval action every fixture has.
pub const APPROVAL_STAGE: &str = "Approve_Deployment_to_Production";
pub const APPROVAL_ACTION: &str = "Approve";
/// The token in the fixtures (pipeline `web-app`).
pub const FIXTURE_TOKEN: &str = "0c35520a-b7e6-403d-ba3f-e02120b524c3";
pub const FIXTURE_EXECUTION_ID: &str = "896c834b-07aa-468c-9d3a-7fef9934e976";
pub const FIXTURE_REVISION_ID: &str = "8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
pub const FIXTURE_COMMIT_MESSAGE: &str = "Fix rounding in checkout totals";
pub const FIXTURE_CUSTOM_DATA: &str = "Approval needed for production deployment";
pub const FIXTURE_EXTERNAL_LINK: &str = "https://staging.example.com/release-notes";
pub const APPROVED_BY: &str = "alice@example.com";
pub const APPROVED_COMMENT: &str = "Staging smoke tests green, go ahead";
pub const REJECTED_COMMENT_RAW: &str = "Migration 0042 is not reversible <!channel>";
pub const REGION: &str = "us-east-1";

/// Where the fixture files live: the crate's own copy, so a clone tests alone.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/codepipeline/"
    ))
}

/// Parses one fixture file, e.g. `load("get-pipeline.json")`.
pub fn load(file: &str) -> Value {
    let path = fixtures_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {file} is not JSON: {e}"))
}

/// The `GetPipelineState` fixtures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    Waiting,
    Approved,
    Rejected,
    Expired,
    NeverReached,
}

impl Fixture {
    pub fn file(self) -> &'static str {
        match self {
            Fixture::Waiting => "get-pipeline-state.waiting.json",
            Fixture::Approved => "get-pipeline-state.approved.json",
            Fixture::Rejected => "get-pipeline-state.rejected.json",
            Fixture::Expired => "get-pipeline-state.expired.json",
            Fixture::NeverReached => "get-pipeline-state.never-reached.json",
        }
    }

    pub fn load(self) -> Value {
        load(self.file())
    }
}

/// Seconds since the epoch, as CodePipeline writes timestamps.
pub fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs_f64()
}

/// A token that is stable for a pipeline name: the fixture's own for `web-app`, a derived UUID-shaped
/// one for the others (so links can be told apart).
pub fn default_token(pipeline: &str) -> String {
    if pipeline == "web-app" {
        return FIXTURE_TOKEN.to_owned();
    }
    token_from_seed(pipeline)
}

/// A UUID-shaped token derived from any seed string.
pub fn token_from_seed(seed: &str) -> String {
    // FNV-1a, twice with different offsets, so each seed gives its own 128 bits.
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in seed.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(byte).rotate_left(3)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        (b >> 48) & 0xfff,
        b & 0xffff_ffff_ffff
    )
}

/// The console's pipeline page, as the alert is expected to link it.
pub fn pipeline_link(pipeline: &str) -> String {
    format!(
        "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/{pipeline}/view?region={REGION}"
    )
}

/// The tail of the approval review link, which carries the token.
pub fn review_fragment(token: &str) -> String {
    format!("#/{APPROVAL_STAGE}/{APPROVAL_ACTION}/approve/{token}")
}

/// The full approval review link.
pub fn review_link(pipeline: &str, token: &str) -> String {
    format!("{}{}", pipeline_link(pipeline), review_fragment(token))
}

/// Builds a `GetPipelineState` body from a fixture.
#[derive(Debug, Clone)]
pub struct StateBuilder {
    body: Value,
}

impl StateBuilder {
    /// Starts from a fixture exactly as stored.
    pub fn fixture(fixture: Fixture) -> Self {
        StateBuilder {
            body: fixture.load(),
        }
    }

    pub fn from_value(body: Value) -> Self {
        StateBuilder { body }
    }

    pub fn named(mut self, pipeline: &str) -> Self {
        self.body["pipelineName"] = json!(pipeline);
        self
    }

    pub fn version(mut self, version: i64) -> Self {
        self.body["pipelineVersion"] = json!(version);
        self
    }

    /// Sets the approval's token (adds a `latestExecution` if the fixture has none).
    pub fn token(mut self, token: &str) -> Self {
        self.approval_execution()["token"] = json!(token);
        self
    }

    pub fn status(mut self, status: &str) -> Self {
        self.approval_execution()["status"] = json!(status);
        self
    }

    pub fn last_status_change(mut self, epoch_seconds: f64) -> Self {
        self.approval_execution()["lastStatusChange"] = json!(epoch_seconds);
        self
    }

    pub fn reviewer(mut self, arn: Option<&str>) -> Self {
        let exec = self.approval_execution();
        match arn {
            Some(arn) => exec["lastUpdatedBy"] = json!(arn),
            None => {
                exec.as_object_mut().unwrap().remove("lastUpdatedBy");
            }
        }
        self
    }

    pub fn summary(mut self, summary: Option<&str>) -> Self {
        let exec = self.approval_execution();
        match summary {
            Some(s) => exec["summary"] = json!(s),
            None => {
                exec.as_object_mut().unwrap().remove("summary");
            }
        }
        self
    }

    /// The `pipelineExecutionId` of the approval stage's latest execution.
    pub fn execution_id(mut self, id: &str) -> Self {
        let stage = self.approval_stage();
        stage["latestExecution"]["pipelineExecutionId"] = json!(id);
        self
    }

    pub fn build(self) -> Value {
        self.body
    }

    /// The approval action's `latestExecution` object, created if missing.
    fn approval_execution(&mut self) -> &mut Value {
        let stage = self.approval_stage();
        let action = stage["actionStates"]
            .as_array_mut()
            .expect("actionStates")
            .iter_mut()
            .find(|a| a["actionName"] == APPROVAL_ACTION)
            .expect("approval action in fixture");
        if action.get("latestExecution").is_none() {
            action["latestExecution"] = json!({
                "actionExecutionId": "00000000-0000-4000-8000-000000000000",
                "status": "InProgress",
            });
        }
        action.get_mut("latestExecution").unwrap()
    }

    fn approval_stage(&mut self) -> &mut Value {
        self.body["stageStates"]
            .as_array_mut()
            .expect("stageStates")
            .iter_mut()
            .find(|s| s["stageName"] == APPROVAL_STAGE)
            .expect("approval stage in fixture")
    }
}

/// The `GetPipeline` fixture renamed to `pipeline`, at `version`.
pub fn definition(pipeline: &str, version: i64) -> Value {
    let mut body = load("get-pipeline.json");
    body["pipeline"]["name"] = json!(pipeline);
    body["pipeline"]["version"] = json!(version);
    body["metadata"]["pipelineArn"] = json!(format!(
        "arn:aws:codepipeline:{REGION}:123456789012:{pipeline}"
    ));
    body
}

/// Changes `timeoutInMinutes` of the approval action in a `GetPipeline` body.
pub fn set_definition_timeout(body: &mut Value, minutes: i64) {
    approval_definition_action(body)["timeoutInMinutes"] = json!(minutes);
}

/// Changes the approval action's `configuration` (CustomData, ExternalEntityLink) in a
/// `GetPipeline` body.
pub fn set_definition_configuration(body: &mut Value, key: &str, value: Option<&str>) {
    let config = approval_definition_action(body)
        .get_mut("configuration")
        .expect("configuration");
    match value {
        Some(v) => config[key] = json!(v),
        None => {
            config.as_object_mut().unwrap().remove(key);
        }
    }
}

fn approval_definition_action(body: &mut Value) -> &mut Value {
    body["pipeline"]["stages"]
        .as_array_mut()
        .expect("stages")
        .iter_mut()
        .find(|s| s["name"] == APPROVAL_STAGE)
        .expect("approval stage")["actions"]
        .as_array_mut()
        .expect("actions")
        .iter_mut()
        .find(|a| a["name"] == APPROVAL_ACTION)
        .expect("approval action")
}

/// The `GetPipelineExecution` fixture renamed to `pipeline`, at `version`.
pub fn execution(pipeline: &str, version: i64) -> Value {
    let mut body = load("get-pipeline-execution.json");
    body["pipelineExecution"]["pipelineName"] = json!(pipeline);
    body["pipelineExecution"]["pipelineVersion"] = json!(version);
    body
}

/// An error body as AWS sends it.
pub fn error_body(error_type: &str, message: &str) -> Value {
    json!({"__type": error_type, "message": message})
}
