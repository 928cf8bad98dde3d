//! An in-process fake of Slack's Web API on 127.0.0.1:0: `auth.test`, `chat.postMessage`
//! (a fresh `ts` per message), `chat.update`, `apps.connections.open` (with the app-level
//! token: a URL to the fake Socket Mode server with a fresh ticket), with the messages it
//! holds (so a test can read the channel and its threads as a person would), scripted error
//! answers per method, and a log of every request with its headers.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The bot token the fake accepts. It must never show up in any output of the binary.
pub const BOT_TOKEN: &str = "xoxb-111-222-XSECRETXbotXtokenX9876";
/// The app-level token the fake accepts for `apps.connections.open`. Never in any output.
pub const APP_TOKEN: &str = "xapp-1-A0TEST-1234-XSECRETXappXtokenX5678";
/// Every ticket in a Socket Mode URL starts with this; it must never show up in any output.
pub const TICKET_MARK: &str = "XTICKETX";

/// Methods whose arguments the fake, like Slack, reads only from a form.
const READ_METHODS: [&str; 1] = ["usergroups.users.list"];

/// A scripted answer for the next call of one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAnswer {
    /// HTTP 200 `{"ok": false, "error": …}`.
    Error(String),
    /// HTTP `status` with an optional `Retry-After`, body `{"ok": false}`.
    Http {
        status: u16,
        retry_after: Option<u64>,
    },
    /// HTTP `status` with exactly this body (hostile answers).
    Raw { status: u16, body: String },
    /// Answer after a delay (the request is logged on arrival), then as usual.
    Delay(Duration),
    /// Held in flight until the test opens the gate: logged on arrival (answer
    /// `{"held": true}`), and only then does it take effect and get its answer — a slow
    /// request, landing when the test says.
    Hold(Gate),
}

/// What a held request waits for; [`Gate::open`] lets it through.
#[derive(Debug, Clone, Default)]
pub struct Gate(
    Arc<tokio::sync::Notify>,
    Arc<std::sync::atomic::AtomicUsize>,
);

impl Gate {
    pub fn open(&self) {
        // A stored permit: opening before the request arrives lets it straight through.
        self.0.notify_one();
    }

    /// Requests held at the gate now: neither let through nor given up by the client.
    pub fn waiting(&self) -> usize {
        self.1.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Counts a request at its gate while it waits there (also when the client gives up and the
/// request is dropped).
struct AtGate(Arc<std::sync::atomic::AtomicUsize>);

impl AtGate {
    fn new(gate: &Gate) -> Self {
        gate.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Self(gate.1.clone())
    }
}

impl Drop for AtGate {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Gate {}

impl ApiAnswer {
    pub fn error(e: &str) -> Self {
        Self::Error(e.to_owned())
    }

    /// HTTP 200 with exactly `body`.
    pub fn raw_200(body: impl Into<String>) -> Self {
        Self::Raw {
            status: 200,
            body: body.into(),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub at: Instant,
    /// `chat.postMessage`, `chat.update`, `auth.test`, …
    pub method: String,
    pub headers: HashMap<String, String>,
    pub body: Value,
    /// What the fake answered.
    pub answer: Value,
    pub status: u16,
}

impl ApiRequest {
    pub fn ok(&self) -> bool {
        self.status == 200 && self.answer["ok"] == true
    }

    /// The token of the `Authorization: Bearer …` header.
    pub fn bearer(&self) -> Option<&str> {
        self.headers.get("authorization")?.strip_prefix("Bearer ")
    }
}

/// A message as the channel holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub reply_broadcast: bool,
    pub text: String,
    pub blocks: Value,
    /// How many times `chat.update` changed it.
    pub edits: u32,
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<ApiRequest>,
    scripts: HashMap<String, VecDeque<ApiAnswer>>,
    messages: Vec<Posted>,
    next_ts: u64,
    /// Every answer waits this long (so a kill can land mid-request).
    delay: Option<Duration>,
    /// Answers of one method wait this long (a slow Slack for that method alone).
    method_delays: HashMap<String, Duration>,
    /// `apps.connections.open` hands out this URL plus a ticket (`FakeSocketMode::link_url`).
    socket_url: Option<String>,
    tickets: u64,
    /// `usergroups.users.list` answers: group id → its members.
    groups: HashMap<String, Vec<String>>,
    /// While set, every call with the bot token is refused with this error (`invalid_auth`,
    /// `token_revoked`, …), `auth.test` included: the app was reinstalled, say.
    token_refusal: Option<String>,
    /// Channels that refuse `chat.postMessage` with an error (`not_in_channel`, …).
    channel_refusals: HashMap<String, String>,
    /// The next `chat.postMessage` whose body contains the text is refused with the error.
    refuse_once: Option<(String, String)>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<usize>>,
}

/// The fake Web API. Dropping it stops the server.
pub struct FakeSlackApi {
    shared: Shared,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeSlackApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlackApi {
    pub async fn start() -> Self {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner::default())),
            changed: Arc::new(watch::channel(0).0),
        };
        let app = Router::new()
            .route("/api/{method}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Slack Web API");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlackApi {
            shared,
            addr,
            server,
        }
    }

    /// The base URL, for `[slack] api_url`.
    pub fn url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    /// `[slack]` lines for app mode posting to `channel`, the token in `$SLACK_BOT_TOKEN`.
    pub fn slack_table_lines(&self, channel: &str) -> String {
        format!(
            "bot_token_env = \"SLACK_BOT_TOKEN\"\nchannel = \"{channel}\"\napi_url = \"{}\"\n",
            self.url()
        )
    }

    /// Every answer from now on waits `delay` (the request is logged on arrival).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.inner.lock().unwrap().delay = Some(delay);
    }

    /// Every answer to `method` from now on waits `delay` (overrides [`Self::set_delay`]).
    pub fn set_method_delay(&self, method: &str, delay: Duration) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .method_delays
            .insert(method.to_owned(), delay);
    }

    /// `apps.connections.open` answers `url?ticket=XTICKETX-n&app_id=A0TEST` from now on.
    pub fn set_socket_url(&self, url: impl Into<String>) {
        self.shared.inner.lock().unwrap().socket_url = Some(url.into());
    }

    /// `usergroups.users.list` for `group` answers `members` from now on.
    pub fn set_group_members(&self, group: &str, members: &[&str]) {
        self.shared.inner.lock().unwrap().groups.insert(
            group.to_owned(),
            members.iter().map(|m| (*m).to_owned()).collect(),
        );
    }

    /// `usergroups.users.list` for `group` answers `count` members from now on: `U000000001`,
    /// `U000000002`, … (see [`group_member`]).
    pub fn set_group_size(&self, group: &str, count: usize) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .groups
            .insert(group.to_owned(), (1..=count).map(group_member).collect());
    }

    /// From now on (until `None`), every bot-token call is refused with `error`.
    pub fn refuse_token(&self, error: Option<&str>) {
        self.shared.inner.lock().unwrap().token_refusal = error.map(str::to_owned);
    }

    /// From now on (until `None`), `chat.postMessage` to `channel` is refused with `error`.
    pub fn refuse_channel(&self, channel: &str, error: Option<&str>) {
        let mut inner = self.shared.inner.lock().unwrap();
        match error {
            Some(e) => inner
                .channel_refusals
                .insert(channel.to_owned(), e.to_owned()),
            None => inner.channel_refusals.remove(channel),
        };
    }

    /// Refuses the next `chat.postMessage` whose body contains `needle` with `error` (Slack's
    /// `msg_too_long` for one message among others, say).
    pub fn refuse_once_containing(&self, needle: &str, error: &str) {
        self.shared.inner.lock().unwrap().refuse_once = Some((needle.to_owned(), error.to_owned()));
    }

    /// Answers the next call of `method` with `answer` (after those already queued).
    pub fn push(&self, method: &str, answer: ApiAnswer) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .scripts
            .entry(method.to_owned())
            .or_default()
            .push_back(answer);
    }

    pub fn requests(&self) -> Vec<ApiRequest> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    /// Requests of one method, in order.
    pub fn calls(&self, method: &str) -> Vec<ApiRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == method)
            .collect()
    }

    /// Every message held, in posting order.
    pub fn messages(&self) -> Vec<Posted> {
        self.shared.inner.lock().unwrap().messages.clone()
    }

    /// The top-level messages (the channel as it reads, without threads).
    pub fn top_level(&self) -> Vec<Posted> {
        self.messages()
            .into_iter()
            .filter(|m| m.thread_ts.is_none())
            .collect()
    }

    /// The replies in the thread of `ts`.
    pub fn thread(&self, ts: &str) -> Vec<Posted> {
        self.messages()
            .into_iter()
            .filter(|m| m.thread_ts.as_deref() == Some(ts))
            .collect()
    }

    /// Deletes a message (as a person could), so updating it fails with `message_not_found`.
    pub fn delete(&self, ts: &str) {
        self.shared
            .inner
            .lock()
            .unwrap()
            .messages
            .retain(|m| m.ts != ts);
    }

    /// Waits until `cond(requests so far)` holds; panics with the log on timeout.
    pub async fn wait_until(&self, timeout: Duration, mut cond: impl FnMut(&[ApiRequest]) -> bool) {
        let mut rx = self.shared.changed.subscribe();
        let wait = async {
            loop {
                if cond(&self.shared.inner.lock().unwrap().requests) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            panic!(
                "waited {timeout:?} on the fake Web API; it saw {:#?}",
                summarize(&self.requests())
            );
        }
    }

    /// Waits until `count` messages were posted.
    pub async fn wait_for_messages(&self, count: usize, timeout: Duration) {
        self.wait_until(timeout, |r| {
            r.iter()
                .filter(|r| r.method == "chat.postMessage" && r.ok())
                .count()
                >= count
        })
        .await
    }
}

/// The `n`th member (from 1) of a group made by [`FakeSlackApi::set_group_size`].
pub fn group_member(n: usize) -> String {
    format!("U{n:09}")
}

/// One line per request, for panic messages.
pub fn summarize(requests: &[ApiRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            format!(
                "{} {} thread_ts={} ts={} → {} {}",
                r.method, r.body["channel"], r.body["thread_ts"], r.body["ts"], r.status, r.answer
            )
        })
        .collect()
}

async fn handle(
    State(shared): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: HashMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    // Read methods take a form, as Slack wants; recorded as a JSON object all the same.
    let form = headers
        .get("content-type")
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    let body: Value = if form {
        Value::Object(
            url::form_urlencoded::parse(&body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    };
    let held = {
        let mut inner = shared.inner.lock().unwrap();
        let front = inner.scripts.get(&method).and_then(VecDeque::front);
        match front {
            Some(ApiAnswer::Hold(gate)) => {
                let gate = gate.clone();
                inner.scripts.get_mut(&method).and_then(VecDeque::pop_front);
                inner.requests.push(ApiRequest {
                    at: Instant::now(),
                    method: method.clone(),
                    headers: headers.clone(),
                    body: body.clone(),
                    answer: json!({"held": true}),
                    status: 0,
                });
                Some((gate, inner.requests.len() - 1))
            }
            _ => None,
        }
    };
    if let Some((gate, index)) = held {
        let count = shared.inner.lock().unwrap().requests.len();
        shared.changed.send_replace(count);
        let at_gate = AtGate::new(&gate);
        gate.0.notified().await;
        drop(at_gate);
        let answer = {
            let mut inner = shared.inner.lock().unwrap();
            let answer = answer_for(&mut inner, &method, &body);
            inner.requests[index].answer = answer.clone();
            inner.requests[index].status = 200;
            answer
        };
        // Waiters count changes, not requests: a held request answering is a change too.
        shared.changed.send_modify(|n| *n += 1);
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            answer.to_string(),
        )
            .into_response();
    }
    let (status, answer, retry_after, delay) = {
        let mut inner = shared.inner.lock().unwrap();
        let mut scripted = inner.scripts.get_mut(&method).and_then(VecDeque::pop_front);
        let delay = match scripted {
            Some(ApiAnswer::Delay(d)) => {
                scripted = None;
                Some(d)
            }
            _ => inner.method_delays.get(&method).copied().or(inner.delay),
        };
        // apps.connections.open takes the app-level token, every other method the bot token.
        let token = if method == "apps.connections.open" {
            APP_TOKEN
        } else {
            BOT_TOKEN
        };
        let authorized =
            headers.get("authorization").map(String::as_str) == Some(&format!("Bearer {token}"));
        let (status, answer, retry_after) = match scripted {
            Some(ApiAnswer::Http {
                status,
                retry_after,
            }) => (status, json!({"ok": false}), retry_after),
            Some(ApiAnswer::Error(e)) => (200, json!({"ok": false, "error": e}), None),
            Some(ApiAnswer::Raw { status, body }) => (status, Value::String(body), None),
            _ if token == BOT_TOKEN && inner.token_refusal.is_some() => {
                let error = inner.token_refusal.clone().unwrap_or_default();
                (200, json!({"ok": false, "error": error}), None)
            }
            _ if !authorized => {
                let error = match headers.get("authorization") {
                    Some(h) if method == "apps.connections.open" && h.contains("xoxb-") => {
                        "not_allowed_token_type"
                    }
                    _ => "invalid_auth",
                };
                (200, json!({"ok": false, "error": error}), None)
            }
            // Slack reads a read method's arguments from the query or a form, not JSON.
            _ if READ_METHODS.contains(&method.as_str()) && !form => (
                200,
                json!({"ok": false, "error": "invalid_arguments"}),
                None,
            ),
            _ => (200, answer_for(&mut inner, &method, &body), None),
        };
        inner.requests.push(ApiRequest {
            at: Instant::now(),
            method: method.clone(),
            headers,
            body,
            answer: answer.clone(),
            status,
        });
        (status, answer, retry_after, delay)
    };
    let count = shared.inner.lock().unwrap().requests.len();
    shared.changed.send_replace(count);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let text = match &answer {
        Value::String(raw) => raw.clone(),
        other => other.to_string(),
    };
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::OK),
        [(header::CONTENT_TYPE, "application/json")],
        text,
    )
        .into_response();
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, s.to_string().parse().unwrap());
    }
    resp
}

/// What Slack does with a well-formed, authorized call.
fn answer_for(inner: &mut Inner, method: &str, body: &Value) -> Value {
    let text = body["text"].as_str().unwrap_or_default().to_owned();
    let channel = body["channel"].as_str().unwrap_or_default().to_owned();
    match method {
        "auth.test" => {
            json!({"ok": true, "team": "Test Team", "user": "approval-watch", "user_id": "U0BOT"})
        }
        "chat.postMessage" => {
            if channel.is_empty() {
                return json!({"ok": false, "error": "channel_not_found"});
            }
            if let Some(error) = inner.channel_refusals.get(&channel) {
                return json!({"ok": false, "error": error});
            }
            if let Some((needle, _)) = &inner.refuse_once
                && body.to_string().contains(needle.as_str())
                && let Some((_, error)) = inner.refuse_once.take()
            {
                return json!({"ok": false, "error": error});
            }
            let thread_ts = body["thread_ts"].as_str().map(str::to_owned);
            if let Some(parent) = &thread_ts
                && !inner.messages.iter().any(|m| &m.ts == parent)
            {
                return json!({"ok": false, "error": "thread_not_found"});
            }
            inner.next_ts += 1;
            let ts = format!("1700000000.{:06}", inner.next_ts);
            inner.messages.push(Posted {
                channel: channel.clone(),
                ts: ts.clone(),
                thread_ts,
                reply_broadcast: body["reply_broadcast"] == true,
                text,
                blocks: body["blocks"].clone(),
                edits: 0,
            });
            json!({"ok": true, "channel": channel, "ts": ts, "message": {"text": body["text"]}})
        }
        "chat.update" => {
            let ts = body["ts"].as_str().unwrap_or_default();
            match inner
                .messages
                .iter_mut()
                .find(|m| m.ts == ts && m.channel == channel)
            {
                Some(m) => {
                    m.text = text;
                    m.blocks = body["blocks"].clone();
                    m.edits += 1;
                    json!({"ok": true, "channel": channel, "ts": ts})
                }
                None => json!({"ok": false, "error": "message_not_found"}),
            }
        }
        "apps.connections.open" => match &inner.socket_url {
            Some(url) => {
                inner.tickets += 1;
                let url = format!(
                    "{url}?ticket={TICKET_MARK}-{}-secret&app_id=A0TEST",
                    inner.tickets
                );
                json!({"ok": true, "url": url})
            }
            None => json!({"ok": false, "error": "socket_mode_not_enabled"}),
        },
        "views.open" => {
            if body["trigger_id"].as_str().unwrap_or_default().is_empty() {
                return json!({"ok": false, "error": "invalid_trigger_id"});
            }
            json!({"ok": true, "view": {"id": "V0OPENED01"}})
        }
        "chat.postEphemeral" => {
            if channel.is_empty() || body["user"].as_str().unwrap_or_default().is_empty() {
                return json!({"ok": false, "error": "channel_not_found"});
            }
            json!({"ok": true, "message_ts": "1700000000.999999"})
        }
        "usergroups.users.list" => {
            let group = body["usergroup"].as_str().unwrap_or_default();
            match inner.groups.get(group) {
                Some(users) => json!({"ok": true, "users": users}),
                None => json!({"ok": false, "error": "no_such_subteam"}),
            }
        }
        _ => json!({"ok": false, "error": "unknown_method"}),
    }
}
