//! The fake CodePipeline and the fake Slack webhook, in one child process on one port, so the
//! parent's CPU time and peak RSS are the poller's alone.
//!
//! - `POST /` — awsJson1.1 routed on `X-Amz-Target` (`CodePipeline_20150709.GetPipelineState`,
//!   `GetPipeline`, `GetPipelineExecution`), bodies shaped like
//!   `tests/fixtures/codepipeline/*.json`. Every answer takes `latency_ms`. More than
//!   `throttle_per_sec` accepted calls in any sliding second → HTTP 400 `ThrottlingException`.
//! - `POST /hook/{route}` — the Slack webhook: takes the token out of each review link
//!   (`#/<stage>/<action>/approve/<token>`) and records when it first arrived.
//! - `GET /stats?from=MS&to=MS`, `POST /reset` — counters and detection latencies for the parent.
//! - `POST /bump` — one idle pipeline's `pipelineVersion` goes up and a run starts on it (for
//!   the version-change figure); answers its name.
//!
//! Idle pipelines answer a pre-rendered body (last run approved and deployed). Active pipelines
//! follow a clock: run k of pipeline i heads for its approval, then waits with token
//! `{i:08x}-0000-4000-8000-{k:012x}` from a known instant, then is approved and run k+1 starts.
//! With `approvals_on_idle`, no run is visible before the approval: the pipeline reads as idle
//! (run k−1 approved and deployed), then run k's approval is suddenly waiting.
//! The token alone tells the Slack side when its approval started waiting.

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use tokio::time::Instant;

use crate::spec::{Calls, FakeSpec, FakeStats};

const TARGET_PREFIX: &str = "CodePipeline_20150709.";
const VERSION: i32 = 7;
/// A bumped pipeline's version (`POST /bump`).
const BUMPED_VERSION: i32 = 8;
/// The run that idle pipelines show as their last one, approved and deployed long ago.
const IDLE_RUN: i64 = 0xfff_ffff;
const REVISION: &str = "8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
const REVIEWER: &str = "arn:aws:sts::123456789012:assumed-role/Deployer/alice@example.com";

pub fn pipeline_name(i: usize) -> String {
    format!("pipe-{i:05}")
}

fn pipeline_index(name: &str) -> Option<usize> {
    name.strip_prefix("pipe-")?.parse().ok()
}

fn token(i: usize, k: i64) -> String {
    format!("{i:08x}-0000-4000-8000-{k:012x}")
}

fn execution_id(i: usize, k: i64) -> String {
    format!("{i:08x}-e000-4000-8000-{k:012x}")
}

/// (pipeline, run) from a token this fake made.
fn parse_token(token: &str) -> Option<(usize, i64)> {
    let parts: Vec<&str> = token.split('-').collect();
    if parts.len() != 5 || parts[1] != "0000" {
        return None;
    }
    let i = usize::from_str_radix(parts[0], 16).ok()?;
    let k = i64::from_str_radix(parts[4], 16).ok()?;
    Some((i, k))
}

pub fn epoch_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn secs(ms: i64) -> String {
    format!("{:.3}", ms as f64 / 1000.0)
}

/// Where a pipeline's latest run is.
#[derive(Clone, Copy)]
enum Phase {
    /// Nothing in progress: the last run was approved and deployed long ago.
    Idle,
    /// Nothing in progress: run `k` was approved at `since_ms` and deployed.
    Deployed { k: i64, since_ms: i64 },
    /// Run `k` is deploying to staging (heading for the approval) since `since_ms`; run
    /// `k - 1`'s approval, if any, was approved.
    Running { k: i64, since_ms: i64 },
    /// Run `k`'s approval has been waiting since `since_ms`.
    Waiting { k: i64, since_ms: i64 },
}

fn state_body(i: usize, phase: &Phase, now_ms: i64, version: i32) -> String {
    let name = pipeline_name(i);
    let long_ago = now_ms - 86_400_000;
    let deployed = |k: i64, at: i64| {
        let exec = execution_id(i, k);
        let action = approval_json(&token(i, k), "Succeeded", at, true);
        let stage = stage_latest(&exec, "Succeeded");
        (exec, "Succeeded", at, stage, action)
    };
    let (exec, staging, staging_at, approval_stage, approval_action) = match *phase {
        Phase::Idle => deployed(IDLE_RUN, long_ago),
        Phase::Deployed { k, since_ms } => deployed(k, since_ms),
        Phase::Running { k, since_ms } => {
            let (stage, action) = if k > 0 {
                let previous = execution_id(i, k - 1);
                (
                    stage_latest(&previous, "Succeeded"),
                    approval_json(&token(i, k - 1), "Succeeded", since_ms, true),
                )
            } else {
                (String::new(), String::new())
            };
            (execution_id(i, k), "InProgress", since_ms, stage, action)
        }
        Phase::Waiting { k, since_ms } => {
            let exec = execution_id(i, k);
            let stage = stage_latest(&exec, "InProgress");
            let action = approval_json(&token(i, k), "InProgress", since_ms, false);
            (exec, "Succeeded", since_ms, stage, action)
        }
    };
    let started = secs(staging_at - 60_000);
    let staged = secs(staging_at);
    format!(
        concat!(
            r#"{{"pipelineName":"{name}","pipelineVersion":{version},"stageStates":["#,
            r#"{{"stageName":"Source","inboundExecutions":[],"inboundTransitionState":{{"enabled":true}},"actionStates":[{{"actionName":"Source","currentRevision":{{"revisionId":"{rev}"}},"latestExecution":{{"actionExecutionId":"4b1e6f2a-1c3d-4e5f-8a9b-0c1d2e3f4a5b","status":"Succeeded","summary":"{{\"ProviderType\":\"GitHub\",\"CommitMessage\":\"Fix rounding in checkout totals\"}}","lastStatusChange":{started},"externalExecutionId":"{rev}"}},"entityUrl":"https://us-east-1.console.aws.amazon.com/codesuite/settings/connections","revisionUrl":"https://github.com/example/{name}/commit/{rev}"}}],"latestExecution":{{"pipelineExecutionId":"{exec}","status":"Succeeded"}}}},"#,
            r#"{{"stageName":"Staging","inboundExecutions":[],"inboundTransitionState":{{"enabled":true}},"actionStates":[{{"actionName":"DeployStaging","latestExecution":{{"actionExecutionId":"9a8b7c6d-5e4f-4a3b-2c1d-0e9f8a7b6c5d","status":"{staging}","lastStatusChange":{staged},"externalExecutionId":"ecs-deploy-staging"}},"entityUrl":"https://console.aws.amazon.com/ecs/home?region=us-east-1"}}],"latestExecution":{{"pipelineExecutionId":"{exec}","status":"{staging}"}}}},"#,
            r#"{{"stageName":"Approve_Deployment_to_Production","inboundExecutions":[],"inboundTransitionState":{{"enabled":true}},"actionStates":[{{"actionName":"Approve"{approval_action}}}]{approval_stage}}},"#,
            r#"{{"stageName":"Production","inboundExecutions":[],"inboundTransitionState":{{"enabled":true}},"actionStates":[{{"actionName":"DeployProduction","entityUrl":"https://console.aws.amazon.com/ecs/home?region=us-east-1"}}]}}"#,
            r#"],"created":1600871523.204,"updated":1761923344.5}}"#
        ),
        name = name,
        version = version,
        rev = REVISION,
        exec = exec,
        started = started,
        staging = staging,
        staged = staged,
        approval_action = approval_action,
        approval_stage = approval_stage,
    )
}

fn stage_latest(exec: &str, status: &str) -> String {
    format!(r#","latestExecution":{{"pipelineExecutionId":"{exec}","status":"{status}"}}"#)
}

fn approval_json(token: &str, status: &str, at_ms: i64, reviewed: bool) -> String {
    let review = if reviewed {
        format!(r#","summary":"Staging smoke tests green, go ahead","lastUpdatedBy":"{REVIEWER}""#)
    } else {
        String::new()
    };
    format!(
        r#","latestExecution":{{"actionExecutionId":"0f5b2c9e-6d1a-4c1e-9a77-3b2f0c6d8e41","status":"{status}","lastStatusChange":{},"token":"{token}"{review}}}"#,
        secs(at_ms)
    )
}

fn definition_body(i: usize, version: i32) -> String {
    let name = pipeline_name(i);
    format!(
        concat!(
            r#"{{"pipeline":{{"name":"{name}","roleArn":"arn:aws:iam::123456789012:role/service-role/{name}-pipeline","artifactStore":{{"type":"S3","location":"codepipeline-us-east-1-123456789012"}},"stages":["#,
            r#"{{"name":"Source","actions":[{{"name":"Source","actionTypeId":{{"category":"Source","owner":"AWS","provider":"CodeStarSourceConnection","version":"1"}},"runOrder":1,"configuration":{{"ConnectionArn":"arn:aws:codeconnections:us-east-1:123456789012:connection/0b1c2d3e","FullRepositoryId":"example/{name}","BranchName":"main"}},"outputArtifacts":[{{"name":"SourceArtifact"}}]}}]}},"#,
            r#"{{"name":"Staging","actions":[{{"name":"DeployStaging","actionTypeId":{{"category":"Deploy","owner":"AWS","provider":"ECS","version":"1"}},"runOrder":1,"configuration":{{"ClusterName":"staging","ServiceName":"{name}"}},"inputArtifacts":[{{"name":"SourceArtifact"}}]}}]}},"#,
            r#"{{"name":"Approve_Deployment_to_Production","actions":[{{"name":"Approve","actionTypeId":{{"category":"Approval","owner":"AWS","provider":"Manual","version":"1"}},"runOrder":1,"configuration":{{"CustomData":"Approval needed for production deployment","ExternalEntityLink":"https://staging.example.com/release-notes"}},"timeoutInMinutes":10080}}]}},"#,
            r#"{{"name":"Production","actions":[{{"name":"DeployProduction","actionTypeId":{{"category":"Deploy","owner":"AWS","provider":"ECS","version":"1"}},"runOrder":1,"configuration":{{"ClusterName":"production","ServiceName":"{name}"}},"inputArtifacts":[{{"name":"SourceArtifact"}}]}}]}}"#,
            r#"],"version":{version},"executionMode":"SUPERSEDED","pipelineType":"V2"}},"metadata":{{"pipelineArn":"arn:aws:codepipeline:us-east-1:123456789012:{name}","created":1600871523.204,"updated":1761923344.5}}}}"#
        ),
        name = name,
        version = version,
    )
}

fn execution_body(name: &str, execution: &str, now_ms: i64) -> String {
    format!(
        concat!(
            r#"{{"pipelineExecution":{{"pipelineName":"{name}","pipelineVersion":{version},"pipelineExecutionId":"{execution}","status":"InProgress","artifactRevisions":[{{"name":"SourceArtifact","revisionId":"{rev}","revisionSummary":"{{\"ProviderType\":\"GitHub\",\"CommitMessage\":\"Fix rounding in checkout totals\"}}","revisionUrl":"https://github.com/example/{name}/commit/{rev}","created":{created}}}],"#,
            r#""trigger":{{"triggerType":"CodeStarSourceConnection","triggerDetail":"arn:aws:codeconnections:us-east-1:123456789012:connection/0b1c2d3e"}},"executionMode":"SUPERSEDED","executionType":"STANDARD"}}}}"#
        ),
        name = name,
        version = VERSION,
        execution = execution,
        rev = REVISION,
        created = secs(now_ms - 600_000),
    )
}

struct Fake {
    spec: FakeSpec,
    latency: Duration,
    /// When the clock of the active pipelines started, epoch ms.
    base_ms: i64,
    /// Per pipeline: its phase offset (ms) when active.
    offsets: Vec<Option<i64>>,
    idle_state: Vec<Bytes>,
    definitions: Vec<Bytes>,
    /// Accepted calls in the last second.
    window: Mutex<VecDeque<Instant>>,
    state_calls: AtomicU64,
    pipeline_calls: AtomicU64,
    execution_calls: AtomicU64,
    other_calls: AtomicU64,
    throttled: AtomicU64,
    slack_posts: AtomicU64,
    /// (pipeline, run) → when its review link first reached Slack, epoch ms.
    detected: Mutex<HashMap<(usize, i64), i64>>,
    /// The pipeline `POST /bump` changed and the phase it shows since (a run in progress).
    bumped: Mutex<Option<(usize, Phase)>>,
    bumped_reads: AtomicU64,
}

impl Fake {
    fn new(spec: FakeSpec) -> Self {
        let n = spec.pipelines;
        let period = spec.period_ms.max(1) as i64;
        let mut offsets = vec![None; n];
        let mut ordinal = 0u64;
        let stride = if n.is_multiple_of(7919) { 7907 } else { 7919 };
        for (i, offset) in offsets.iter_mut().enumerate() {
            // Scattered over the names (so over the Slack routes, which go by the last digit):
            // i · stride mod n is a permutation of 0..n (the stride is a prime not dividing n).
            if (i * stride) % n < spec.active {
                // A fixed pseudo-random phase each, so approvals arrive unevenly, as in life.
                let h = (ordinal + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
                *offset = Some((h % period as u64) as i64);
                ordinal += 1;
            }
        }
        let now = epoch_ms();
        Fake {
            latency: Duration::from_millis(spec.latency_ms),
            base_ms: now,
            idle_state: (0..n)
                .map(|i| Bytes::from(state_body(i, &Phase::Idle, now, VERSION)))
                .collect(),
            definitions: (0..n)
                .map(|i| Bytes::from(definition_body(i, VERSION)))
                .collect(),
            offsets,
            spec,
            window: Mutex::new(VecDeque::new()),
            state_calls: AtomicU64::new(0),
            pipeline_calls: AtomicU64::new(0),
            execution_calls: AtomicU64::new(0),
            other_calls: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            slack_posts: AtomicU64::new(0),
            detected: Mutex::new(HashMap::new()),
            bumped: Mutex::new(None),
            bumped_reads: AtomicU64::new(0),
        }
    }

    fn period(&self) -> i64 {
        self.spec.period_ms.max(1) as i64
    }

    fn wait(&self) -> i64 {
        (self.spec.wait_ms as i64).clamp(1, self.period())
    }

    /// When run `k` of active pipeline `i` starts waiting for approval, epoch ms.
    fn wait_start(&self, offset: i64, k: i64) -> i64 {
        self.base_ms - offset + k * self.period() + (self.period() - self.wait())
    }

    fn phase(&self, i: usize, now_ms: i64) -> Phase {
        let Some(offset) = self.offsets.get(i).copied().flatten() else {
            return Phase::Idle;
        };
        let u = (now_ms - self.base_ms + offset).max(0);
        let (k, within) = (u / self.period(), u % self.period());
        let heading = self.period() - self.wait();
        if within < heading && self.spec.approvals_on_idle {
            // Between approvals: the last one approved and deployed, no run visible.
            if k == 0 {
                Phase::Idle
            } else {
                Phase::Deployed {
                    k: k - 1,
                    since_ms: now_ms - within,
                }
            }
        } else if within < heading {
            Phase::Running {
                k,
                since_ms: now_ms - within,
            }
        } else {
            Phase::Waiting {
                k,
                since_ms: now_ms - (within - heading),
            }
        }
    }

    /// A bumped pipeline's phase and version; else its own.
    fn current(&self, i: usize, now_ms: i64) -> (Phase, i32) {
        match self.bumped.lock().ok().and_then(|b| *b) {
            Some((b, phase)) if b == i => (phase, BUMPED_VERSION),
            _ => (self.phase(i, now_ms), VERSION),
        }
    }

    /// Bumps the version of the first pipeline that is idle now and starts a run on it (the
    /// run after the last one it showed). Returns its index.
    fn bump(&self) -> Option<usize> {
        let now = epoch_ms();
        let (i, last) = (0..self.spec.pipelines).find_map(|i| match self.phase(i, now) {
            Phase::Idle => Some((i, IDLE_RUN)),
            Phase::Deployed { k, .. } => Some((i, k)),
            _ => None,
        })?;
        let running = Phase::Running {
            k: last + 1,
            since_ms: now,
        };
        *self.bumped.lock().ok()? = Some((i, running));
        self.bumped_reads.store(0, Ordering::Relaxed);
        Some(i)
    }

    /// Whether a call arriving now is over the rate.
    fn over_rate(&self, at: Instant) -> bool {
        let limit = self.spec.throttle_per_sec;
        if limit == 0 {
            return false;
        }
        let Ok(mut window) = self.window.lock() else {
            return false;
        };
        while window
            .front()
            .is_some_and(|t| at.duration_since(*t) >= Duration::from_secs(1))
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return true;
        }
        window.push_back(at);
        false
    }

    fn reset(&self) {
        for c in [
            &self.state_calls,
            &self.pipeline_calls,
            &self.execution_calls,
            &self.other_calls,
            &self.throttled,
            &self.slack_posts,
            &self.bumped_reads,
        ] {
            c.store(0, Ordering::Relaxed);
        }
        if let Ok(mut d) = self.detected.lock() {
            d.clear();
        }
    }

    fn stats(&self, from: i64, to: i64) -> FakeStats {
        let mut latencies = Vec::new();
        if let Ok(detected) = self.detected.lock() {
            for (&(i, k), &received) in detected.iter() {
                let Some(offset) = self.offsets.get(i).copied().flatten() else {
                    continue;
                };
                let start = self.wait_start(offset, k);
                if (from..to).contains(&start) {
                    latencies.push(received - start);
                }
            }
        }
        latencies.sort_unstable();
        let mut expected = 0;
        for offset in self.offsets.iter().flatten() {
            let mut k = 0;
            loop {
                let start = self.wait_start(*offset, k);
                if start >= to {
                    break;
                }
                if start >= from {
                    expected += 1;
                }
                k += 1;
            }
        }
        FakeStats {
            now_ms: epoch_ms(),
            calls: Calls {
                get_pipeline_state: self.state_calls.load(Ordering::Relaxed),
                get_pipeline: self.pipeline_calls.load(Ordering::Relaxed),
                get_pipeline_execution: self.execution_calls.load(Ordering::Relaxed),
                other: self.other_calls.load(Ordering::Relaxed),
            },
            throttled: self.throttled.load(Ordering::Relaxed),
            slack_posts: self.slack_posts.load(Ordering::Relaxed),
            latencies_ms: latencies,
            expected,
            bumped_reads: self.bumped_reads.load(Ordering::Relaxed),
        }
    }
}

fn json(status: StatusCode, body: impl Into<axum::body::Body>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body.into(),
    )
        .into_response()
}

fn aws_error(kind: &str, message: &str) -> Response {
    json(
        StatusCode::BAD_REQUEST,
        format!(r#"{{"__type":"{kind}","message":"{message}"}}"#),
    )
}

#[derive(Deserialize)]
struct AwsRequest {
    #[serde(alias = "pipelineName")]
    name: Option<String>,
    #[serde(rename = "pipelineExecutionId")]
    execution: Option<String>,
}

async fn aws(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: Bytes) -> Response {
    let arrived = Instant::now();
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or("")
        .to_owned();
    let counter = match operation.as_str() {
        "GetPipelineState" => &fake.state_calls,
        "GetPipeline" => &fake.pipeline_calls,
        "GetPipelineExecution" => &fake.execution_calls,
        _ => &fake.other_calls,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let throttled = fake.over_rate(arrived);
    tokio::time::sleep_until(arrived + fake.latency).await;
    if throttled {
        fake.throttled.fetch_add(1, Ordering::Relaxed);
        return aws_error("ThrottlingException", "Rate exceeded");
    }
    let request: AwsRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(_) => return aws_error("ValidationException", "malformed request"),
    };
    let name = request.name.unwrap_or_default();
    let Some(i) = pipeline_index(&name).filter(|i| *i < fake.spec.pipelines) else {
        return aws_error(
            "PipelineNotFoundException",
            "Account '123456789012' does not have a pipeline with that name",
        );
    };
    let now = epoch_ms();
    let (phase, version) = fake.current(i, now);
    match operation.as_str() {
        "GetPipelineState" => {
            if version == BUMPED_VERSION {
                fake.bumped_reads.fetch_add(1, Ordering::Relaxed);
            }
            match phase {
                Phase::Idle => json(StatusCode::OK, fake.idle_state[i].clone()),
                phase => json(StatusCode::OK, state_body(i, &phase, now, version)),
            }
        }
        "GetPipeline" if version == VERSION => json(StatusCode::OK, fake.definitions[i].clone()),
        "GetPipeline" => json(StatusCode::OK, definition_body(i, version)),
        "GetPipelineExecution" => {
            let execution = request.execution.unwrap_or_default();
            json(
                StatusCode::OK,
                execution_body(&name, &execution, epoch_ms()),
            )
        }
        _ => aws_error("UnknownOperationException", "unknown operation"),
    }
}

async fn slack(State(fake): State<Arc<Fake>>, body: Bytes) -> Response {
    let received = epoch_ms();
    fake.slack_posts.fetch_add(1, Ordering::Relaxed);
    let text = String::from_utf8_lossy(&body);
    if let Ok(mut detected) = fake.detected.lock() {
        for (at, _) in text.match_indices("/approve/") {
            let rest = &text[at + "/approve/".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_hexdigit() || c == '-'))
                .unwrap_or(rest.len());
            if let Some(key) = parse_token(&rest[..end]) {
                detected.entry(key).or_insert(received);
            }
        }
    }
    (StatusCode::OK, "ok").into_response()
}

async fn stats(State(fake): State<Arc<Fake>>, uri: Uri) -> Response {
    let mut from = i64::MIN;
    let mut to = i64::MIN;
    for pair in uri.query().unwrap_or("").split('&') {
        match pair.split_once('=') {
            Some(("from", v)) => from = v.parse().unwrap_or(from),
            Some(("to", v)) => to = v.parse().unwrap_or(to),
            _ => {}
        }
    }
    let body = serde_json::to_vec(&fake.stats(from, to)).unwrap_or_default();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

async fn reset(State(fake): State<Arc<Fake>>) -> Response {
    fake.reset();
    StatusCode::NO_CONTENT.into_response()
}

async fn bump(State(fake): State<Arc<Fake>>) -> Response {
    match fake.bump() {
        Some(i) => (StatusCode::OK, pipeline_name(i)).into_response(),
        None => (StatusCode::CONFLICT, "no idle pipeline to bump").into_response(),
    }
}

/// Serves until the parent closes our stdin (it is done, or it died). Prints the port first.
pub fn serve(spec: FakeSpec) -> anyhow::Result<()> {
    std::thread::spawn(|| {
        let mut sink = [0u8; 64];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let fake = Arc::new(Fake::new(spec));
        let app = Router::new()
            .route("/", post(aws))
            .route("/hook/{route}", post(slack))
            .route("/stats", get(stats))
            .route("/reset", post(reset))
            .route("/bump", post(bump))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{port}")?;
        out.flush()?;
        drop(out);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
