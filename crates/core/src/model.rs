//! Domain types shared by the poller, the decision logic, the store and the renderer.
//! Nothing here does I/O.

use jiff::Timestamp;
use serde::Serialize;

/// The account name used when no `[[account]]` is configured: the SDK's default chain.
pub const DEFAULT_ACCOUNT: &str = "default";

/// A pipeline in an account and region: what is read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Target {
    pub account: String,
    pub region: String,
    pub pipeline: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.account == DEFAULT_ACCOUNT {
            write!(f, "{} ({})", self.pipeline, self.region)
        } else {
            write!(f, "{} ({}, {})", self.pipeline, self.account, self.region)
        }
    }
}

/// Identifies one approval request: a token is issued each time the action starts waiting.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ApprovalKey {
    /// The configured account name (`default` without `[[account]]`s).
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub token: String,
}

impl ApprovalKey {
    /// A short tag of this very request (its token included), carried next to the store's id
    /// in Slack buttons: a button whose id names another approval now (a database recreated
    /// or restored) is refused, never applied to the wrong one. Not a secret (FNV-1a, 64 bits).
    pub fn fingerprint(&self) -> String {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in [
            &self.account,
            &self.region,
            &self.pipeline,
            &self.stage,
            &self.action,
            &self.token,
        ] {
            for byte in part.bytes().chain([0]) {
                hash ^= u64::from(byte);
                hash = hash.wrapping_mul(0x0100_0000_01b3);
            }
        }
        format!("{hash:016x}")
    }

    pub fn target(&self) -> Target {
        Target {
            account: self.account.clone(),
            region: self.region.clone(),
            pipeline: self.pipeline.clone(),
        }
    }
}

/// What the pipeline definition says about one manual approval action.
/// Serialized in the store's definition cache.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, serde::Deserialize)]
pub struct ApprovalDefinition {
    pub custom_data: Option<String>,
    pub external_entity_link: Option<String>,
    /// `timeoutInMinutes` of the action; CodePipeline's default is 7 days.
    pub timeout_minutes: Option<i64>,
}

pub const DEFAULT_APPROVAL_TIMEOUT_MINUTES: i64 = 7 * 24 * 60;

/// Which actions of a pipeline version are manual approvals, keyed by (stage, action).
/// Read from AWS, kept in the store's definition cache.
pub type Definitions = Vec<((String, String), ApprovalDefinition)>;

/// What a pipeline version's definition (`GetPipeline`) tells a read: how it runs its
/// executions and which of its actions are manual approvals. Cached per `pipelineVersion`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PipelineDefinition {
    pub mode: ExecutionMode,
    pub approvals: Definitions,
}

impl PipelineDefinition {
    /// How far back a per-execution read pages for runs that may be waiting: a run reaches an
    /// approval after its other actions (a day's margin for those), and a run with several
    /// approvals may have waited at each of them in turn, so every approval's timeout counts.
    /// Runs in progress on the pages read are kept whenever they started; this only decides
    /// where paging stops.
    pub fn lookback_minutes(&self) -> i64 {
        const OTHER_ACTIONS_MINUTES: i64 = 24 * 60;
        let approvals: i64 = self
            .approvals
            .iter()
            .map(|(_, d)| d.timeout_minutes())
            .sum();
        approvals.max(DEFAULT_APPROVAL_TIMEOUT_MINUTES) + OTHER_ACTIONS_MINUTES
    }
}

impl ApprovalDefinition {
    pub fn timeout_minutes(&self) -> i64 {
        self.timeout_minutes
            .filter(|m| *m > 0)
            .unwrap_or(DEFAULT_APPROVAL_TIMEOUT_MINUTES)
    }
}

/// The status of an action's latest execution as CodePipeline reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionStatus {
    InProgress,
    Succeeded,
    Failed,
    Abandoned,
    /// A value this version does not know; never treated as a resolution.
    Unknown(String),
}

impl ActionStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "InProgress" => Self::InProgress,
            "Succeeded" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Abandoned" => Self::Abandoned,
            other => Self::Unknown(other.to_owned()),
        }
    }
}

/// The latest execution of an approval action, from `GetPipelineState` (or, in PARALLEL mode,
/// one action execution from `ListActionExecutions`: its `externalExecutionId` is the token).
#[derive(Debug, Clone, PartialEq)]
pub struct ActionExecution {
    pub status: ActionStatus,
    pub token: Option<String>,
    pub last_status_change: Option<Timestamp>,
    /// The reviewer's ARN.
    pub last_updated_by: Option<String>,
    /// The reviewer's comment (CodePipeline's `latestExecution.summary`).
    pub comment: Option<String>,
}

/// One manual approval action as seen in one read of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedApproval {
    pub stage: String,
    pub action: String,
    pub definition: ApprovalDefinition,
    /// `None` when the action has not run since the pipeline was created or changed.
    pub latest: Option<ActionExecution>,
    /// The pipeline execution the action's stage is running, used to look up the revision.
    pub pipeline_execution_id: Option<String>,
}

/// How a pipeline runs its executions (`executionMode` of `GetPipeline` and `ListPipelines`;
/// V1 pipelines, which have none, run SUPERSEDED).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ExecutionMode {
    /// A newer run overtakes an older one at a stage: `GetPipelineState` shows each
    /// approval's one latest execution.
    #[default]
    Superseded,
    /// Runs wait their turn; each stage holds one, and `GetPipelineState` shows each stage's own.
    Queued,
    /// Runs are independent and `GetPipelineState` shows none of them: each approval is one
    /// run's, read per execution.
    Parallel,
    /// A mode this version does not know: the pipeline cannot be watched correctly.
    Unknown(String),
}

impl ExecutionMode {
    /// AWS's spelling; an absent mode is SUPERSEDED (V1 pipelines and older answers).
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            None | Some("") | Some("SUPERSEDED") => Self::Superseded,
            Some("QUEUED") => Self::Queued,
            Some("PARALLEL") => Self::Parallel,
            Some(other) => Self::Unknown(other.to_owned()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Superseded => "SUPERSEDED",
            Self::Queued => "QUEUED",
            Self::Parallel => "PARALLEL",
            Self::Unknown(other) => other,
        }
    }

    /// Whether each approval is one execution's, so several of one action wait at once.
    pub fn per_execution(&self) -> bool {
        matches!(self, Self::Parallel)
    }
}

/// One successful read of a pipeline: every approval action it has, and their latest executions.
/// In PARALLEL mode, one entry per approval action execution read (several per action).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSnapshot {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub version: Option<i32>,
    pub mode: ExecutionMode,
    /// A run is in progress at or before an approval stage (so read it often).
    pub active: bool,
    pub approvals: Vec<ObservedApproval>,
}

/// The source revision a pipeline execution is deploying.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Revision {
    pub revision_id: Option<String>,
    /// Commit message (CodePipeline's `revisionSummary`; the message is taken out of
    /// CodeStar's JSON form).
    pub commit_message: Option<String>,
    pub url: Option<String>,
}

/// How an approval stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Approved,
    Rejected,
    Expired,
    /// A newer request replaced it (new token, abandoned execution, not run since an edit).
    Superseded,
    /// A pipeline edit removed its stage or action.
    Removed,
    /// The pipeline itself is gone.
    PipelineDeleted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
            Self::Superseded => "superseded",
            Self::Removed => "removed",
            Self::PipelineDeleted => "pipeline_deleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "expired" => Self::Expired,
            "superseded" => Self::Superseded,
            "removed" => Self::Removed,
            "pipeline_deleted" => Self::PipelineDeleted,
            _ => return None,
        })
    }
}

/// Everything known about an approval that is (or was) waiting; what alerts are rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub key: ApprovalKey,
    pub pipeline_execution_id: Option<String>,
    /// When the action started waiting (`lastStatusChange` of the InProgress execution).
    pub waiting_since: Timestamp,
    pub expires_at: Timestamp,
    pub custom_data: Option<String>,
    pub external_entity_link: Option<String>,
    pub revision: Option<Revision>,
}

/// An approval the store holds as still waiting, with what was sent about it: the one row
/// type a cycle decides from and `status` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenApproval {
    /// The store's row id.
    pub id: i64,
    pub approval: Approval,
    /// When this service first saw it waiting (its alert was queued then).
    pub first_seen: Timestamp,
    /// Regular reminders sent so far.
    pub reminders_sent: u32,
    pub last_reminder_at: Option<Timestamp>,
    pub expiry_warned: bool,
    /// Whether its alert reached Slack; if not, its resolution is not worth telling.
    pub alert_delivered: bool,
    /// Messages about it still queued for Slack.
    pub messages_pending: u32,
    /// Messages about it that Slack refused for good.
    pub messages_failed: u32,
    /// Where its alert was posted in app mode (threads and updates need it).
    pub slack: Option<SlackMessage>,
}

/// A message the bot token posted: what `chat.update` and thread replies need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlackMessage {
    pub channel: String,
    pub ts: String,
}

/// How an approval was resolved; what resolution messages are rendered from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    pub outcome: Outcome,
    /// The reviewer's ARN, as CodePipeline gives it.
    pub by: Option<String>,
    pub comment: Option<String>,
    pub at: Timestamp,
}

/// The kind of a Slack message in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Alert,
    Reminder,
    Resolution,
    /// The daily digest of a destination (see `store` for how it rides in the outbox).
    Digest,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alert => "alert",
            Self::Reminder => "reminder",
            Self::Resolution => "resolution",
            Self::Digest => "digest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "alert" => Self::Alert,
            "reminder" => Self::Reminder,
            "resolution" => Self::Resolution,
            "digest" => Self::Digest,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval(timeout_minutes: Option<i64>) -> ApprovalDefinition {
        ApprovalDefinition {
            timeout_minutes,
            ..ApprovalDefinition::default()
        }
    }

    #[test]
    fn a_per_execution_read_looks_back_over_every_approvals_timeout_and_a_day() {
        let day = 24 * 60;
        let none = PipelineDefinition::default();
        assert_eq!(none.lookback_minutes(), 7 * day + day);
        let two = PipelineDefinition {
            mode: ExecutionMode::Parallel,
            approvals: vec![
                (("Staging".into(), "Approve".into()), approval(Some(60))),
                (("Prod".into(), "Approve".into()), approval(None)),
            ],
        };
        // A run may wait an hour at the first and 7 days at the second.
        assert_eq!(two.lookback_minutes(), 60 + 7 * day + day);
    }
}
