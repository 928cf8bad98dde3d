//! An in-process fake of the CodePipeline API (awsJson1.1 over HTTP on 127.0.0.1:0).
//!
//! `POST /` routed on `X-Amz-Target`; bodies shaped like the fixtures. Per pipeline it serves a
//! current `GetPipelineState`, `GetPipeline` and `GetPipelineExecution` body, or an injected error.
//! A pipeline it does not know answers `PipelineNotFoundException`, as AWS does. A pipeline
//! switched to PARALLEL mode (`set_parallel`) runs executions of its own (`parallel_runs`):
//! its state then shows none of them, as AWS's does not.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::fixtures::{self, Fixture, StateBuilder};
use super::parallel_runs::{self, Run};

pub const TARGET_PREFIX: &str = "CodePipeline_20150709.";
pub const GET_PIPELINE_STATE: &str = "GetPipelineState";
pub const GET_PIPELINE: &str = "GetPipeline";
pub const GET_PIPELINE_EXECUTION: &str = "GetPipelineExecution";
pub const PUT_APPROVAL_RESULT: &str = "PutApprovalResult";
/// The reviewer CodePipeline records for a result put by the daemon (its IAM role).
pub const DAEMON_ROLE_ARN: &str =
    "arn:aws:sts::123456789012:assumed-role/approval-watch/i-0bastion";
pub const LIST_PIPELINES: &str = "ListPipelines";
pub const LIST_PIPELINE_EXECUTIONS: &str = "ListPipelineExecutions";
pub const LIST_ACTION_EXECUTIONS: &str = "ListActionExecutions";

/// An error the fake answers with instead of a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

impl InjectedError {
    pub fn new(status: u16, error_type: &str, message: &str) -> Self {
        InjectedError {
            status,
            error_type: error_type.to_owned(),
            message: message.to_owned(),
        }
    }

    pub fn access_denied() -> Self {
        Self::new(
            400,
            "AccessDeniedException",
            "User: arn:aws:sts::123456789012:assumed-role/approval-watch/i-0abc is not authorized to perform this operation",
        )
    }

    pub fn throttling() -> Self {
        Self::new(400, "ThrottlingException", "Rate exceeded")
    }

    pub fn not_found() -> Self {
        Self::new(
            400,
            "PipelineNotFoundException",
            "Account '123456789012' does not have a pipeline with that name",
        )
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct AwsRequest {
    pub at: Instant,
    pub operation: String,
    /// `name` or `pipelineName` from the body.
    pub pipeline: Option<String>,
    pub body: Value,
    /// The access key id from the SigV4 `Authorization` header.
    pub access_key: Option<String>,
    /// The status the fake answered with.
    pub status: u16,
}

#[derive(Debug, Clone)]
struct PipelineEntry {
    state: Value,
    definition: Value,
    execution: Value,
    version: i64,
    token: String,
    /// When the current token started waiting (epoch seconds).
    waiting_since: f64,
    /// Applies to every operation on the pipeline.
    error: Option<InjectedError>,
    /// Applies to one operation.
    op_errors: HashMap<String, InjectedError>,
    /// One-shot errors per operation, used before `op_errors`/`error`.
    queued: HashMap<String, VecDeque<InjectedError>>,
    /// Raw answers (status, body — not necessarily JSON) per operation: one-shot first, then
    /// the standing one; used before any error or body.
    raw_queued: HashMap<String, VecDeque<(u16, String)>>,
    raw: HashMap<String, (u16, String)>,
    /// Operations whose raw answers go out chunked, without a `Content-Length`.
    streamed: std::collections::HashSet<String>,
    /// One-shot extra delays per operation (a slow or hanging answer for this pipeline only).
    delays: HashMap<String, VecDeque<Duration>>,
    /// `executionMode` of the definition and of `ListPipelines`.
    mode: String,
    /// Its runs, read per execution in PARALLEL mode.
    runs: Vec<Run>,
}

impl PipelineEntry {
    fn new(name: &str) -> Self {
        let version = 7;
        PipelineEntry {
            state: StateBuilder::fixture(Fixture::NeverReached)
                .named(name)
                .version(version)
                .build(),
            definition: fixtures::definition(name, version),
            execution: fixtures::execution(name, version),
            version,
            token: fixtures::default_token(name),
            waiting_since: fixtures::now_epoch() - 600.0,
            error: None,
            op_errors: HashMap::new(),
            queued: HashMap::new(),
            raw_queued: HashMap::new(),
            raw: HashMap::new(),
            streamed: Default::default(),
            delays: HashMap::new(),
            mode: "SUPERSEDED".into(),
            runs: Vec::new(),
        }
    }

    fn parallel(&self) -> bool {
        self.mode == "PARALLEL"
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// `ListPipelines` page size (`None`: one page).
    list_page_size: Option<usize>,
    /// `ListPipelines` answers this error while set.
    list_error: Option<InjectedError>,
    /// `ListPipelines` answers this (status, body) as is while set; before `list_error`.
    list_raw: Option<(u16, String)>,
    pipelines: HashMap<String, PipelineEntry>,
    calls: HashMap<(String, String), usize>,
    requests: Vec<AwsRequest>,
    delay: Duration,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<usize>>,
}

/// The fake CodePipeline endpoint. Dropping it stops the server.
pub struct FakeCodePipeline {
    shared: Shared,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeCodePipeline {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeCodePipeline {
    /// Starts the server on 127.0.0.1 with an ephemeral port. Knows no pipeline yet.
    pub async fn start() -> Self {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner::default())),
            changed: Arc::new(watch::channel(0).0),
        };
        let app = Router::new()
            .route("/", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake CodePipeline");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeCodePipeline {
            shared,
            addr,
            server,
        }
    }

    /// Starts the server knowing `pipelines`, each at the never-reached state.
    pub async fn with_pipelines(pipelines: &[&str]) -> Self {
        let fake = Self::start().await;
        for p in pipelines {
            fake.add_pipeline(p);
        }
        fake
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn with_entry<R>(&self, pipeline: &str, f: impl FnOnce(&mut PipelineEntry) -> R) -> R {
        let mut inner = self.shared.inner.lock().unwrap();
        let entry = inner
            .pipelines
            .entry(pipeline.to_owned())
            .or_insert_with(|| PipelineEntry::new(pipeline));
        f(entry)
    }

    /// Makes the pipeline known (fixture definition and execution renamed; approval never reached).
    pub fn add_pipeline(&self, pipeline: &str) {
        self.with_entry(pipeline, |_| ());
    }

    /// Forgets a pipeline: it answers `PipelineNotFoundException` from now on.
    pub fn remove_pipeline(&self, pipeline: &str) {
        self.shared.inner.lock().unwrap().pipelines.remove(pipeline);
    }

    /// Serves a state fixture for `pipeline`, renamed, at the pipeline's version and current token,
    /// with realistic timestamps:
    /// - `Waiting`: `lastStatusChange` = when the current token started waiting (10 minutes before
    ///   the pipeline was added, or when `set_waiting` gave it a new token), so it has not expired;
    /// - `Approved`, `Rejected`, `Expired`: `lastStatusChange` = now (reviewer and comment as in
    ///   the fixture);
    /// - `NeverReached`: as stored.
    pub fn set_state(&self, pipeline: &str, fixture: Fixture) {
        self.with_entry(pipeline, |e| {
            let mut b = StateBuilder::fixture(fixture)
                .named(pipeline)
                .version(e.version);
            match fixture {
                Fixture::NeverReached => {}
                Fixture::Waiting => {
                    b = b.token(&e.token).last_status_change(e.waiting_since);
                }
                Fixture::Approved | Fixture::Rejected | Fixture::Expired => {
                    b = b.token(&e.token).last_status_change(fixtures::now_epoch());
                }
            }
            e.state = b.build();
        });
    }

    /// Serves a state fixture exactly as stored (its 2025 timestamps and token), only renamed.
    pub fn set_state_raw(&self, pipeline: &str, fixture: Fixture) {
        self.with_entry(pipeline, |e| {
            e.token = fixtures::FIXTURE_TOKEN.to_owned();
            e.version = 7;
            e.definition["pipeline"]["version"] = json!(7);
            e.execution["pipelineExecution"]["pipelineVersion"] = json!(7);
            e.state = StateBuilder::fixture(fixture).named(pipeline).build();
        });
    }

    /// A waiting approval with a new token that started waiting now (same stage and action).
    pub fn set_waiting(&self, pipeline: &str, token: &str) {
        self.set_waiting_since(pipeline, token, fixtures::now_epoch());
    }

    /// A waiting approval with `token`, waiting since `since` (epoch seconds).
    pub fn set_waiting_since(&self, pipeline: &str, token: &str, since: f64) {
        self.with_entry(pipeline, |e| {
            e.token = token.to_owned();
            e.waiting_since = since;
        });
        self.set_state(pipeline, Fixture::Waiting);
    }

    /// The token the pipeline's approval currently carries.
    pub fn token(&self, pipeline: &str) -> String {
        self.with_entry(pipeline, |e| e.token.clone())
    }

    /// When the current token started waiting (epoch seconds).
    pub fn waiting_since(&self, pipeline: &str) -> f64 {
        self.with_entry(pipeline, |e| e.waiting_since)
    }

    /// Serves `body` as the pipeline's `GetPipelineState`.
    pub fn set_state_json(&self, pipeline: &str, body: Value) {
        self.with_entry(pipeline, |e| e.state = body);
    }

    /// Edits the current `GetPipelineState` body.
    pub fn update_state(&self, pipeline: &str, f: impl FnOnce(&mut Value)) {
        self.with_entry(pipeline, |e| f(&mut e.state));
    }

    pub fn state_json(&self, pipeline: &str) -> Value {
        self.with_entry(pipeline, |e| e.state.clone())
    }

    /// Serves `body` as the pipeline's `GetPipeline`.
    pub fn set_definition_json(&self, pipeline: &str, body: Value) {
        self.with_entry(pipeline, |e| e.definition = body);
    }

    /// Edits the current `GetPipeline` body.
    pub fn update_definition(&self, pipeline: &str, f: impl FnOnce(&mut Value)) {
        self.with_entry(pipeline, |e| f(&mut e.definition));
    }

    /// Serves `body` as the pipeline's `GetPipelineExecution` (the requested id is echoed).
    pub fn set_execution_json(&self, pipeline: &str, body: Value) {
        self.with_entry(pipeline, |e| e.execution = body);
    }

    /// Changes `pipelineVersion` in the state, the definition and the execution bodies.
    pub fn set_version(&self, pipeline: &str, version: i64) {
        self.with_entry(pipeline, |e| {
            e.version = version;
            e.state["pipelineVersion"] = json!(version);
            e.definition["pipeline"]["version"] = json!(version);
            e.execution["pipelineExecution"]["pipelineVersion"] = json!(version);
        });
    }

    /// Sets the definition's `executionMode` (and `ListPipelines`'); `PARALLEL` also empties the
    /// state of executions, as AWS shows a PARALLEL pipeline. Bump the version with `set_version`
    /// to model an edit that switches the mode.
    pub fn set_mode(&self, pipeline: &str, mode: &str) {
        self.with_entry(pipeline, |e| {
            e.mode = mode.to_owned();
            e.definition["pipeline"]["executionMode"] = json!(mode);
            if mode == "PARALLEL" {
                e.state = StateBuilder::fixture(Fixture::NeverReached)
                    .named(pipeline)
                    .version(e.version)
                    .build();
            }
        });
    }

    /// Adds a run (see `parallel_runs::Run`).
    pub fn add_run(&self, pipeline: &str, run: Run) {
        self.with_entry(pipeline, |e| e.runs.push(run));
    }

    /// Forgets run `id`, as AWS does for a pipeline deleted and made again under its name:
    /// `ListActionExecutions` for it answers `PipelineExecutionNotFoundException`.
    pub fn forget_run(&self, pipeline: &str, id: &str) {
        self.with_entry(pipeline, |e| e.runs.retain(|r| r.id != id));
    }

    /// Ends the approval of run `id`: `status` as the action reads then (`Succeeded`,
    /// `Failed`, `Abandoned` for a stopped run), with its reviewer and comment.
    pub fn decide_run(
        &self,
        pipeline: &str,
        id: &str,
        status: &str,
        by: Option<&str>,
        summary: Option<&str>,
    ) {
        self.with_entry(pipeline, |e| {
            if let Some(run) = e.runs.iter_mut().find(|r| r.id == id) {
                parallel_runs::decide(run, status, by, summary);
            }
        });
    }

    /// Run `id`'s approval action status (`InProgress`, `Succeeded`…), if it reached it.
    pub fn run_approval_status(&self, pipeline: &str, id: &str) -> Option<String> {
        self.with_entry(pipeline, |e| {
            e.runs
                .iter()
                .find(|r| r.id == id)
                .and_then(|r| r.approval.as_ref())
                .map(|a| a.status.clone())
        })
    }

    /// Every operation on `pipeline` answers this error until `clear_error`.
    pub fn set_error(&self, pipeline: &str, status: u16, error_type: &str, message: &str) {
        let err = InjectedError::new(status, error_type, message);
        self.with_entry(pipeline, |e| e.error = Some(err));
    }

    /// `operation` (e.g. `"GetPipeline"`) on `pipeline` answers this error until `clear_error`.
    pub fn set_operation_error(&self, operation: &str, pipeline: &str, error: InjectedError) {
        self.with_entry(pipeline, |e| {
            e.op_errors.insert(operation.to_owned(), error);
        });
    }

    /// The next `times` calls of `operation` on `pipeline` answer this error, then as before.
    pub fn fail_next(&self, operation: &str, pipeline: &str, times: usize, error: InjectedError) {
        self.with_entry(pipeline, |e| {
            let q = e.queued.entry(operation.to_owned()).or_default();
            for _ in 0..times {
                q.push_back(error.clone());
            }
        });
    }

    /// Removes every injected error of `pipeline`.
    pub fn clear_error(&self, pipeline: &str) {
        self.with_entry(pipeline, |e| {
            e.error = None;
            e.op_errors.clear();
            e.queued.clear();
            e.raw_queued.clear();
            e.raw.clear();
            e.streamed.clear();
        });
    }

    /// `operation` on `pipeline` answers `status` with `body` as is (malformed JSON, an HTML
    /// error page…) until `clear_error`.
    pub fn set_raw_response(&self, operation: &str, pipeline: &str, status: u16, body: &str) {
        self.with_entry(pipeline, |e| {
            e.raw
                .insert(operation.to_owned(), (status, body.to_owned()));
        });
    }

    /// As `set_raw_response`, but the body goes out in chunks of 64 KiB with no
    /// `Content-Length`, so the client learns its size only by reading it.
    pub fn set_raw_streamed(&self, operation: &str, pipeline: &str, status: u16, body: &str) {
        self.set_raw_response(operation, pipeline, status, body);
        self.with_entry(pipeline, |e| {
            e.streamed.insert(operation.to_owned());
        });
    }

    /// The next `times` calls of `operation` on `pipeline` answer `status` with `body` as is.
    pub fn raw_next(&self, operation: &str, pipeline: &str, times: usize, status: u16, body: &str) {
        self.with_entry(pipeline, |e| {
            let q = e.raw_queued.entry(operation.to_owned()).or_default();
            for _ in 0..times {
                q.push_back((status, body.to_owned()));
            }
        });
    }

    /// The next `times` answers to `operation` on `pipeline` are held back `delay` (on top of
    /// `set_delay`), after being recorded.
    pub fn delay_next(&self, operation: &str, pipeline: &str, times: usize, delay: Duration) {
        self.with_entry(pipeline, |e| {
            let q = e.delays.entry(operation.to_owned()).or_default();
            for _ in 0..times {
                q.push_back(delay);
            }
        });
    }

    /// `ListPipelines` answers pages of at most `size` names, with a `nextToken`.
    pub fn set_list_page_size(&self, size: usize) {
        self.shared.inner.lock().unwrap().list_page_size = Some(size);
    }

    /// `ListPipelines` answers `error` (or pages again with `None`).
    pub fn set_list_error(&self, error: Option<InjectedError>) {
        self.shared.inner.lock().unwrap().list_error = error;
    }

    /// `ListPipelines` answers `status` with `body` as is (or pages again with `None`).
    pub fn set_list_raw(&self, raw: Option<(u16, String)>) {
        self.shared.inner.lock().unwrap().list_raw = raw;
    }

    /// Every answer is delayed by `delay` (to see whether pipelines are read concurrently).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.inner.lock().unwrap().delay = delay;
    }

    /// How many times `operation` was called for `pipeline` (answered with an error or not).
    pub fn calls(&self, operation: &str, pipeline: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .calls
            .get(&(operation.to_owned(), pipeline.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// How many times `operation` was called, all pipelines together.
    pub fn total_calls(&self, operation: &str) -> usize {
        let inner = self.shared.inner.lock().unwrap();
        inner
            .requests
            .iter()
            .filter(|r| r.operation == operation)
            .count()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<AwsRequest> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Waits until `operation` has been called at least `count` times for `pipeline`.
    /// Returns false on timeout.
    pub async fn wait_for_calls(
        &self,
        operation: &str,
        pipeline: &str,
        count: usize,
        timeout: Duration,
    ) -> bool {
        let mut rx = self.shared.changed.subscribe();
        let wait = async {
            loop {
                if self.calls(operation, pipeline) >= count {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
            && self.calls(operation, pipeline) >= count
    }
}

fn aws_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [
            (header::CONTENT_TYPE, "application/x-amz-json-1.1"),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                "5f1e2d3c-0000-4000-8000-fa4ecodepipe",
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn access_key_of(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_owned())
}

async fn handle(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let operation = target
        .strip_prefix(TARGET_PREFIX)
        .unwrap_or(&target)
        .to_owned();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let pipeline = body
        .get("name")
        .or_else(|| body.get("pipelineName"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let access_key = access_key_of(&headers);

    let (status, answer, delay, raw, streamed) = {
        let mut inner = shared.inner.lock().unwrap();
        let mut delay = inner.delay;
        let mut raw = None;
        let mut streamed = false;
        if operation == LIST_PIPELINES && headers.get(header::AUTHORIZATION).is_some() {
            raw = inner.list_raw.clone();
        }
        if let Some(entry) = pipeline
            .as_deref()
            .and_then(|p| inner.pipelines.get_mut(p))
            .filter(|_| headers.get(header::AUTHORIZATION).is_some())
        {
            if let Some(extra) = entry
                .delays
                .get_mut(&operation)
                .and_then(VecDeque::pop_front)
            {
                delay += extra;
            }
            raw = entry
                .raw_queued
                .get_mut(&operation)
                .and_then(VecDeque::pop_front)
                .or_else(|| entry.raw.get(&operation).cloned());
            streamed = entry.streamed.contains(&operation);
        }
        let (status, answer) = match &raw {
            Some((status, _)) => (*status, Value::Null),
            None => answer(&mut inner, &operation, pipeline.as_deref(), &body, &headers),
        };
        if let Some(p) = &pipeline {
            *inner
                .calls
                .entry((operation.clone(), p.clone()))
                .or_default() += 1;
        }
        inner.requests.push(AwsRequest {
            at: Instant::now(),
            operation: operation.clone(),
            pipeline: pipeline.clone(),
            body: body.clone(),
            access_key,
            status,
        });
        (status, answer, delay, raw, streamed)
    };
    shared.changed.send_modify(|n| *n += 1);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match raw {
        Some((status, body)) if streamed => streamed_response(status, body),
        Some((status, body)) => raw_response(status, body),
        None => aws_response(status, &answer),
    }
}

fn raw_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}

fn streamed_response(status: u16, body: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let chunks: Vec<Result<Bytes, std::convert::Infallible>> = body
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let body = axum::body::Body::from_stream(futures_util::stream::iter(chunks));
    (
        status,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        body,
    )
        .into_response()
}

fn answer(
    inner: &mut Inner,
    operation: &str,
    pipeline: Option<&str>,
    body: &Value,
    headers: &HeaderMap,
) -> (u16, Value) {
    if headers.get(header::AUTHORIZATION).is_none() {
        return (
            400,
            fixtures::error_body(
                "MissingAuthenticationTokenException",
                "Missing Authentication Token",
            ),
        );
    }
    if operation == LIST_PIPELINES {
        if let Some(err) = &inner.list_error {
            return (
                err.status,
                fixtures::error_body(&err.error_type, &err.message),
            );
        }
        let mut names: Vec<&String> = inner.pipelines.keys().collect();
        names.sort();
        // Pages of `list_page_size`; the token is the index of the next page's first name.
        let start: usize = body
            .get("nextToken")
            .and_then(Value::as_str)
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let size = inner.list_page_size.unwrap_or(usize::MAX);
        let page: Vec<Value> = names
            .iter()
            .skip(start)
            .take(size)
            .map(|n| {
                json!({"name": n, "version": inner.pipelines[*n].version, "pipelineType": "V2",
                       "executionMode": inner.pipelines[*n].mode, "created": 1600871523.204, "updated": 1761923344.5})
            })
            .collect();
        let next = start.saturating_add(size);
        let mut answer = json!({ "pipelines": page });
        if next < names.len() {
            answer["nextToken"] = json!(next.to_string());
        }
        return (200, answer);
    }
    let known = [
        GET_PIPELINE_STATE,
        GET_PIPELINE,
        GET_PIPELINE_EXECUTION,
        PUT_APPROVAL_RESULT,
        LIST_PIPELINE_EXECUTIONS,
        LIST_ACTION_EXECUTIONS,
    ];
    if !known.contains(&operation) {
        return (
            400,
            fixtures::error_body(
                "UnknownOperationException",
                &format!("unknown operation {operation}"),
            ),
        );
    }
    let Some(name) = pipeline else {
        return (
            400,
            fixtures::error_body(
                "ValidationException",
                "1 validation error detected: name must not be null",
            ),
        );
    };
    let Some(entry) = inner.pipelines.get_mut(name) else {
        return (
            400,
            fixtures::error_body(
                "PipelineNotFoundException",
                &format!("Account '123456789012' does not have a pipeline with name '{name}'"),
            ),
        );
    };
    if let Some(err) = entry
        .queued
        .get_mut(operation)
        .and_then(VecDeque::pop_front)
    {
        return (
            err.status,
            fixtures::error_body(&err.error_type, &err.message),
        );
    }
    if let Some(err) = entry.op_errors.get(operation).or(entry.error.as_ref()) {
        return (
            err.status,
            fixtures::error_body(&err.error_type, &err.message),
        );
    }
    match operation {
        GET_PIPELINE_STATE => (200, entry.state.clone()),
        GET_PIPELINE => (200, entry.definition.clone()),
        PUT_APPROVAL_RESULT if entry.parallel() => {
            parallel_runs::put_approval_result(&mut entry.runs, body)
        }
        PUT_APPROVAL_RESULT => put_approval_result(entry, body),
        LIST_PIPELINE_EXECUTIONS => (
            200,
            parallel_runs::list_pipeline_executions(&entry.runs, body),
        ),
        LIST_ACTION_EXECUTIONS => {
            parallel_runs::list_action_executions(&entry.runs, entry.version, body)
        }
        _ => {
            let mut exec = entry.execution.clone();
            if let Some(id) = body.get("pipelineExecutionId") {
                exec["pipelineExecution"]["pipelineExecutionId"] = id.clone();
                // A run of its own (PARALLEL mode) deploys its own revision.
                if let Some(run) = entry
                    .runs
                    .iter()
                    .find(|r| Some(r.id.as_str()) == id.as_str())
                {
                    let revision = &mut exec["pipelineExecution"]["artifactRevisions"][0];
                    revision["revisionId"] = json!(run.revision);
                    revision["revisionUrl"] = json!(format!(
                        "https://github.com/example/web-app/commit/{}",
                        run.revision
                    ));
                    revision["revisionSummary"] = json!(format!("Run {}", run.id));
                }
            }
            (200, exec)
        }
    }
}

/// `PutApprovalResult` as CodePipeline does it: the token must be the waiting execution's;
/// the action then reads Succeeded (approved) or Failed (rejected) with the summary, and the
/// reviewer is the caller's IAM identity.
fn put_approval_result(entry: &mut PipelineEntry, body: &Value) -> (u16, Value) {
    let parallel_runs::ApprovalRequest {
        stage,
        action,
        token,
        status,
        summary,
    } = match parallel_runs::ApprovalRequest::parse(body) {
        Ok(request) => request,
        Err(refused) => return refused,
    };
    let Some(stages) = entry.state["stageStates"].as_array_mut() else {
        return (
            400,
            fixtures::error_body("StageNotFoundException", "no stages"),
        );
    };
    let Some(stage_state) = stages
        .iter_mut()
        .find(|s| s["stageName"].as_str() == Some(stage.as_str()))
    else {
        return (
            400,
            fixtures::error_body(
                "StageNotFoundException",
                &format!("stage {stage} not found"),
            ),
        );
    };
    let Some(action_state) = stage_state["actionStates"].as_array_mut().and_then(|a| {
        a.iter_mut()
            .find(|a| a["actionName"].as_str() == Some(action.as_str()))
    }) else {
        return (
            400,
            fixtures::error_body(
                "ActionNotFoundException",
                &format!("action {action} not found"),
            ),
        );
    };
    let exec = &mut action_state["latestExecution"];
    if exec["token"].as_str() != Some(token.as_str()) {
        return (
            400,
            fixtures::error_body(
                "InvalidApprovalTokenException",
                &format!("Approval token {token} is not valid"),
            ),
        );
    }
    if exec["status"].as_str() != Some("InProgress") {
        return (
            400,
            fixtures::error_body(
                "ApprovalAlreadyCompletedException",
                "The approval request has already been completed",
            ),
        );
    }
    let now = fixtures::now_epoch();
    exec["status"] = json!(if status == "Approved" {
        "Succeeded"
    } else {
        "Failed"
    });
    exec["summary"] = json!(summary);
    exec["lastUpdatedBy"] = json!(DAEMON_ROLE_ARN);
    exec["lastStatusChange"] = json!(now);
    (200, json!({ "approvedAt": now }))
}
