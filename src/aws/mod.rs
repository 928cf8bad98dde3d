//! The only module that touches the AWS SDK: reads pipelines into [`PipelineSnapshot`]s and
//! lists them for discovery. One client per (account, region), each behind its own request
//! budget; every attempt of every call goes through it.

pub(crate) mod budget;
mod connect;
mod error;
mod executions;
mod guard;
mod parse;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_codepipeline::Client;
use aws_sdk_codepipeline::config::http::HttpResponse;
use aws_sdk_codepipeline::error::{ProvideErrorMetadata, SdkError};

use crate::aws::budget::Budget;
use crate::backoff::{Backoff, Jitter};
use crate::config::Config;
use approval_watch_core::model::{
    ApprovalKey, ExecutionMode, PipelineDefinition, PipelineSnapshot, Revision,
};
pub use approval_watch_core::model::{Definitions, Target};
use approval_watch_core::verdict::Verdict;
pub use error::AwsError;
pub use guard::{MAX_ANSWER_BYTES, MAX_NESTING};
use jiff::Timestamp;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(
        "no AWS region for pipeline {0}: set its region, the account's regions, [aws] region, or AWS_REGION"
    )]
    NoRegion(String),
    #[error(
        "no AWS region for discover[{0}]: set its region, the account's regions, [aws] region, or AWS_REGION"
    )]
    NoDiscoverRegion(usize),
}

/// Definitions by pipeline, with the pipeline version they were read at.
type DefinitionCache = HashMap<Target, (Option<i32>, Arc<PipelineDefinition>)>;

/// The error code of a read that cannot watch its pipeline correctly: an execution mode this
/// version does not know.
pub const UNKNOWN_EXECUTION_MODE: &str = "UnknownExecutionMode";

/// Attempts per call: the first and two retries, for throttling, 5xx and timeouts.
const MAX_ATTEMPTS: u32 = 3;

struct Endpoint {
    client: Client,
    budget: Arc<Budget>,
}

/// Where one `[[discover]]` entry lists pipelines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryScope {
    /// Index into `Config::discover`.
    pub entry: usize,
    pub account: String,
    pub region: String,
}

pub struct CodePipeline {
    endpoints: HashMap<(String, String), Endpoint>,
    definitions: Mutex<DefinitionCache>,
    /// Definitions read with `GetPipeline` and not yet handed to the store.
    fetched: Mutex<Vec<(Target, i32, Arc<PipelineDefinition>)>>,
    scopes: Vec<DiscoveryScope>,
}

impl CodePipeline {
    /// Loads each account's SDK config once (env, profile, instance role, assumed role,
    /// `AWS_ENDPOINT_URL`), resolves every pipeline's region, and builds one client and
    /// budget per (account, region) that is read.
    pub async fn connect(config: &Config) -> Result<(Self, Vec<Target>), SetupError> {
        let mut shared = HashMap::new();
        for account in &config.accounts {
            let sdk = connect::sdk_config(&config.aws, account).await;
            shared.insert(account.name.clone(), sdk);
        }
        let default_region = |account: &str| {
            shared
                .get(account)
                .and_then(|s| s.region())
                .map(|r| r.to_string())
        };

        let mut targets = Vec::with_capacity(config.pipelines.len());
        for p in &config.pipelines {
            let region = config
                .region_of(p)
                .map(str::to_owned)
                .or_else(|| default_region(&p.account))
                .ok_or_else(|| SetupError::NoRegion(p.name.clone()))?;
            targets.push(Target {
                account: p.account.clone(),
                region,
                pipeline: p.name.clone(),
            });
        }
        let mut scopes = Vec::new();
        for (entry, d) in config.discover.iter().enumerate() {
            let account = config.account(&d.account);
            let regions: Vec<String> = match (&d.region, account) {
                (Some(r), _) => vec![r.clone()],
                (None, Some(a)) if !a.regions.is_empty() => a.regions.clone(),
                _ => config
                    .aws
                    .region
                    .clone()
                    .or_else(|| default_region(&d.account))
                    .map(|r| vec![r])
                    .ok_or(SetupError::NoDiscoverRegion(entry))?,
            };
            for region in regions {
                scopes.push(DiscoveryScope {
                    entry,
                    account: d.account.clone(),
                    region,
                });
            }
        }

        let mut endpoints = HashMap::new();
        let wanted = targets
            .iter()
            .map(|t| (t.account.clone(), t.region.clone()))
            .chain(scopes.iter().map(|s| (s.account.clone(), s.region.clone())));
        for (account, region) in wanted {
            if endpoints.contains_key(&(account.clone(), region.clone())) {
                continue;
            }
            let (Some(sdk), Some(acc)) = (shared.get(&account), config.account(&account)) else {
                continue;
            };
            let endpoint = Endpoint {
                client: connect::client(&config.aws, sdk, &region),
                budget: Arc::new(Budget::new(format!("{account}/{region}"), acc.limits)),
            };
            endpoints.insert((account, region), endpoint);
        }
        let this = Self {
            endpoints,
            definitions: Mutex::new(HashMap::new()),
            fetched: Mutex::new(Vec::new()),
            scopes,
        };
        Ok((this, targets))
    }

    pub fn discovery_scopes(&self) -> &[DiscoveryScope] {
        &self.scopes
    }

    pub fn budget_for(&self, account: &str, region: &str) -> Option<&Budget> {
        self.endpoints
            .get(&(account.to_owned(), region.to_owned()))
            .map(|e| e.budget.as_ref())
    }

    /// One operation through the budget, retried on throttling, 5xx and timeouts with
    /// backoff. Throttling also slows the whole (account, region) down.
    async fn call<T, E, F, Fut>(
        &self,
        operation: &'static str,
        target: &Target,
        f: F,
    ) -> Result<T, AwsError>
    where
        F: Fn(&Client) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        self.call_retrying(operation, target, f, AwsError::is_transient)
            .await
    }

    /// [`call`](Self::call), retrying only the failures `retry` allows.
    async fn call_retrying<T, E, F, Fut>(
        &self,
        operation: &'static str,
        target: &Target,
        f: F,
        retry: fn(&AwsError) -> bool,
    ) -> Result<T, AwsError>
    where
        F: Fn(&Client) -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let Some(endpoint) = self
            .endpoints
            .get(&(target.account.clone(), target.region.clone()))
        else {
            return Err(AwsError {
                operation,
                account: target.account.clone(),
                region: target.region.clone(),
                pipeline: target.pipeline.clone(),
                code: "NoClient".into(),
                message: "no client for this account and region".into(),
                status: None,
                request_id: None,
            });
        };
        let mut attempt = 1;
        loop {
            let result = {
                let _permit = endpoint.budget.acquire().await;
                crate::metrics::aws_call(operation);
                f(&endpoint.client).await
            };
            let err = match result {
                Ok(value) => {
                    endpoint.budget.succeeded();
                    return Ok(value);
                }
                Err(e) => AwsError::new(operation, target, e),
            };
            crate::metrics::aws_error(operation, &err.code);
            if err.is_throttling() {
                endpoint.budget.throttled();
            }
            if !retry(&err) || attempt >= MAX_ATTEMPTS {
                return Err(err);
            }
            tracing::debug!(
                pipeline = %target.pipeline,
                operation,
                code = %err.code,
                attempt,
                "retrying"
            );
            tokio::time::sleep(retry_delay(attempt)).await;
            attempt += 1;
        }
    }

    /// `GetPipelineState`, plus `GetPipeline` when the definition of this `pipelineVersion` is
    /// not cached (its execution mode decides how the pipeline is read, and an idle PARALLEL
    /// pipeline looks like an idle SUPERSEDED one in its state). A PARALLEL pipeline is then
    /// read per execution (see `executions`): `recorded` are its runs with an approval recorded
    /// as waiting, whose resolutions are read too. An idle pipeline whose definition is cached
    /// costs one call (PARALLEL: two).
    pub async fn read(
        &self,
        target: &Target,
        recorded: &[String],
        now: Timestamp,
    ) -> Result<PipelineSnapshot, AwsError> {
        let state = self
            .call("GetPipelineState", target, |c| {
                c.get_pipeline_state().name(&target.pipeline).send()
            })
            .await?;
        let version = state.pipeline_version();
        let definition = self.definitions(target, version).await?;
        let snapshot = |active, approvals| PipelineSnapshot {
            account: target.account.clone(),
            region: target.region.clone(),
            pipeline: target.pipeline.clone(),
            version,
            mode: definition.mode.clone(),
            active,
            approvals,
        };
        match &definition.mode {
            ExecutionMode::Superseded | ExecutionMode::Queued => {
                let approvals = parse::observed_approvals(&state, &definition.approvals)
                    .map_err(|message| AwsError::malformed("GetPipelineState", target, message))?;
                let active = parse::heading_for_approval(&state, &definition.approvals);
                Ok(snapshot(active, approvals))
            }
            ExecutionMode::Parallel => {
                let read = self
                    .read_executions(target, &definition, recorded, now)
                    .await?;
                Ok(snapshot(read.active, read.approvals))
            }
            ExecutionMode::Unknown(mode) => Err(AwsError {
                code: UNKNOWN_EXECUTION_MODE.into(),
                message: format!(
                    "execution mode {mode:?} is not one this version knows how to watch"
                ),
                ..AwsError::malformed("GetPipeline", target, String::new())
            }),
        }
    }

    async fn definitions(
        &self,
        target: &Target,
        version: Option<i32>,
    ) -> Result<Arc<PipelineDefinition>, AwsError> {
        if let Some(cached) = self.cached(target, version) {
            return Ok(cached);
        }
        let output = self
            .call("GetPipeline", target, |c| {
                c.get_pipeline().name(&target.pipeline).send()
            })
            .await?;
        let Some(pipeline) = output.pipeline() else {
            return Err(AwsError::malformed(
                "GetPipeline",
                target,
                "the answer holds no pipeline declaration".into(),
            ));
        };
        let definitions = Arc::new(parse::pipeline_definition(pipeline));
        tracing::debug!(
            pipeline = %target.pipeline,
            region = %target.region,
            ?version,
            mode = definitions.mode.as_str(),
            approvals = definitions.approvals.len(),
            "read pipeline definition"
        );
        if let Ok(mut cache) = self.definitions.lock() {
            cache.insert(target.clone(), (version, definitions.clone()));
        }
        if let (Some(v), Ok(mut fetched)) = (version, self.fetched.lock()) {
            fetched.push((target.clone(), v, definitions.clone()));
        }
        Ok(definitions)
    }

    fn cached(&self, target: &Target, version: Option<i32>) -> Option<Arc<PipelineDefinition>> {
        let cache = self.definitions.lock().ok()?;
        // An unknown version is never trusted to match.
        match cache.get(target) {
            Some((Some(v), defs)) if version == Some(*v) => Some(defs.clone()),
            _ => None,
        }
    }

    /// Definitions read before (from the store), trusted for their version.
    pub fn seed_definitions(&self, known: Vec<(Target, i32, PipelineDefinition)>) {
        if let Ok(mut cache) = self.definitions.lock() {
            for (target, version, definitions) in known {
                cache.insert(target, (Some(version), Arc::new(definitions)));
            }
        }
    }

    /// Definitions fetched since the last call, for the store to keep.
    pub fn take_fetched(&self) -> Vec<(Target, i32, Arc<PipelineDefinition>)> {
        self.fetched
            .lock()
            .map(|mut f| std::mem::take(&mut *f))
            .unwrap_or_default()
    }

    /// Forgets cached definitions of pipelines no longer read.
    pub fn forget(&self, target: &Target) {
        if let Ok(mut cache) = self.definitions.lock() {
            cache.remove(target);
        }
    }

    /// `GetPipelineExecution`: the source revision a run is deploying.
    pub async fn revision(
        &self,
        target: &Target,
        execution_id: &str,
    ) -> Result<Revision, AwsError> {
        let output = self
            .call("GetPipelineExecution", target, |c| {
                c.get_pipeline_execution()
                    .pipeline_name(&target.pipeline)
                    .pipeline_execution_id(execution_id)
                    .send()
            })
            .await?;
        let first = output
            .pipeline_execution()
            .and_then(|e| e.artifact_revisions().first());
        Ok(Revision {
            revision_id: first.and_then(|r| r.revision_id()).map(str::to_owned),
            commit_message: first
                .and_then(|r| r.revision_summary())
                .map(parse::commit_message),
            url: first.and_then(|r| r.revision_url()).map(str::to_owned),
        })
    }

    /// `PutApprovalResult`: answers a waiting approval (its stored token) with `verdict` and
    /// `summary` (at most 512 characters; the caller cuts it). Returns AWS's request id.
    /// Retried only when throttled: a timed-out attempt may have been applied, and a retry
    /// would then read as "already completed".
    pub async fn put_approval_result(
        &self,
        key: &ApprovalKey,
        verdict: Verdict,
        summary: &str,
    ) -> Result<Option<String>, AwsError> {
        use aws_sdk_codepipeline::operation::RequestId;
        use aws_sdk_codepipeline::types::{ApprovalResult, ApprovalStatus};
        let target = key.target();
        let status = match verdict {
            Verdict::Approve => ApprovalStatus::Approved,
            Verdict::Reject => ApprovalStatus::Rejected,
        };
        let result = ApprovalResult::builder()
            .status(status)
            .summary(summary)
            .build()
            .map_err(|e| AwsError::malformed("PutApprovalResult", &target, e.to_string()))?;
        let output = self
            .call_retrying(
                "PutApprovalResult",
                &target,
                |c| {
                    c.put_approval_result()
                        .pipeline_name(&key.pipeline)
                        .stage_name(&key.stage)
                        .action_name(&key.action)
                        .token(&key.token)
                        .result(result.clone())
                        .send()
                },
                AwsError::is_throttling,
            )
            .await?;
        Ok(output.request_id().map(str::to_owned))
    }

    /// `ListPipelines`, every page: the names of an account's pipelines in a region.
    pub async fn list_pipelines(
        &self,
        account: &str,
        region: &str,
    ) -> Result<Vec<String>, AwsError> {
        let scope = Target {
            account: account.to_owned(),
            region: region.to_owned(),
            pipeline: "*".to_owned(),
        };
        let mut names = Vec::new();
        let mut next_token: Option<String> = None;
        // A bound on pages, against a misbehaving endpoint that never stops paging.
        for _ in 0..10_000 {
            let token = next_token.clone();
            let page = self
                .call("ListPipelines", &scope, |c| {
                    c.list_pipelines()
                        .set_next_token(token.clone())
                        .max_results(1000)
                        .send()
                })
                .await?;
            names.extend(
                page.pipelines()
                    .iter()
                    .filter_map(|p| p.name().map(str::to_owned)),
            );
            next_token = next_page(page.next_token());
            if next_token.is_none() {
                break;
            }
        }
        Ok(names)
    }
}

/// The token of the next page of a listing; an empty one ends it as an absent one does.
fn next_page(token: Option<&str>) -> Option<String> {
    token.filter(|t| !t.is_empty()).map(str::to_owned)
}

/// 100 ms, 200 ms, … up to 6.4 s, with ±50% jitter so retries of many pipelines do not line up.
fn retry_delay(attempt: u32) -> Duration {
    const RETRY: Backoff = Backoff::new(
        Duration::from_millis(100),
        Duration::from_millis(6400),
        Jitter::Spread,
    );
    RETRY.wait(attempt)
}
