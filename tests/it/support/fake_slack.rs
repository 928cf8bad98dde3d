//! An in-process fake Slack incoming webhook on 127.0.0.1:0.
//!
//! Records every request with the time it arrived, and answers from a scripted queue (status, body,
//! optional `Retry-After`, optional delay to simulate a hanging Slack); `200 ok` when the queue is
//! empty (or whatever `set_default` says).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The secret part of the webhook URL. It must never show up in any output of the binary.
pub const WEBHOOK_SECRET: &str = "XSECRETXwebhookXpathX1234";
/// The path the fake accepts.
pub const WEBHOOK_PATH: &str = "/services/T000/B000/XSECRETXwebhookXpathX1234";

/// How the fake answers one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackResponse {
    pub status: u16,
    pub body: String,
    pub retry_after: Option<String>,
    /// Wait this long before answering (the request is recorded on arrival).
    pub delay: Option<Duration>,
    /// Send `body` again and again, without end (a broken or hostile endpoint).
    pub endless: bool,
}

impl SlackResponse {
    pub fn ok() -> Self {
        Self::status(200, "ok")
    }

    pub fn status(status: u16, body: &str) -> Self {
        SlackResponse {
            status,
            body: body.to_owned(),
            retry_after: None,
            delay: None,
            endless: false,
        }
    }

    /// The body repeated without end.
    pub fn endless(mut self) -> Self {
        self.endless = true;
        self
    }

    /// `429 rate_limited` with `Retry-After: seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self::status(429, "rate_limited").with_retry_after(&seconds.to_string())
    }

    pub fn with_retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// One request the fake received. (Its `Debug` shows the path with the secret: print
/// `summarize(..)` instead in assertion messages.)
#[derive(Debug, Clone)]
pub struct SlackRequest {
    pub at: Instant,
    pub path: String,
    pub content_type: Option<String>,
    pub body: String,
    /// The body parsed as JSON, if it is.
    pub payload: Option<Value>,
    /// The status the fake answered (or will answer, after its delay).
    pub status: u16,
}

impl SlackRequest {
    /// Whether it reached the webhook path and was answered `200`.
    pub fn delivered(&self) -> bool {
        self.path == WEBHOOK_PATH && self.status == 200
    }

    /// The parsed payload; panics with the raw body if it is not JSON.
    pub fn json(&self) -> &Value {
        self.payload
            .as_ref()
            .unwrap_or_else(|| panic!("Slack request body is not JSON: {}", self.body))
    }
}

#[derive(Debug)]
struct Inner {
    requests: Vec<SlackRequest>,
    script: VecDeque<SlackResponse>,
    default: SlackResponse,
    /// Bodies longer than this many bytes are answered with the response, as Slack refuses a
    /// message too long for it.
    too_long: Option<(usize, SlackResponse)>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<usize>>,
}

/// The fake Slack webhook. Dropping it stops the server.
pub struct FakeSlack {
    shared: Shared,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlack {
    pub async fn start() -> Self {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                requests: Vec::new(),
                script: VecDeque::new(),
                default: SlackResponse::ok(),
                too_long: None,
            })),
            changed: Arc::new(watch::channel(0).0),
        };
        let app = Router::new()
            .fallback(post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Slack");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeSlack {
            shared,
            addr,
            server,
        }
    }

    /// The full webhook URL (`http://127.0.0.1:PORT/services/T000/B000/<secret>`).
    pub fn url(&self) -> String {
        format!("http://{}{}", self.addr, WEBHOOK_PATH)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Answers the next request with `response` (after those already queued).
    pub fn push_response(&self, response: SlackResponse) {
        self.shared.inner.lock().unwrap().script.push_back(response);
    }

    /// Queues `times` copies of `response`.
    pub fn push_responses(&self, times: usize, response: SlackResponse) {
        for _ in 0..times {
            self.push_response(response.clone());
        }
    }

    /// How requests are answered once the queue is empty (initially `200 ok`).
    pub fn set_default(&self, response: SlackResponse) {
        self.shared.inner.lock().unwrap().default = response;
    }

    /// Answers every body longer than `bytes` with `response` (before the script), as Slack
    /// answers a message too long for it.
    pub fn refuse_longer_than(&self, bytes: usize, response: SlackResponse) {
        self.shared.inner.lock().unwrap().too_long = Some((bytes, response));
    }

    /// Every request received, in order of arrival.
    pub fn requests(&self) -> Vec<SlackRequest> {
        self.shared.inner.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.inner.lock().unwrap().requests.len()
    }

    /// Payloads of the requests answered `200` on the webhook path, in order.
    pub fn delivered(&self) -> Vec<Value> {
        self.requests()
            .iter()
            .filter(|r| r.delivered())
            .map(|r| r.json().clone())
            .collect()
    }

    pub fn delivered_count(&self) -> usize {
        self.requests().iter().filter(|r| r.delivered()).count()
    }

    /// Notified (value = number of requests) each time a request arrives.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.shared.changed.subscribe()
    }

    /// Waits until `cond(requests so far)` holds. Returns the requests, or `Err` with them on
    /// timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&[SlackRequest]) -> bool,
    ) -> Result<Vec<SlackRequest>, Vec<SlackRequest>> {
        let mut rx = self.subscribe();
        let wait = async {
            loop {
                {
                    let inner = self.shared.inner.lock().unwrap();
                    if cond(&inner.requests) {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        let done = tokio::time::timeout(timeout, wait).await.is_ok();
        let requests = self.requests();
        if done { Ok(requests) } else { Err(requests) }
    }

    /// Waits until at least `count` requests arrived; panics on timeout.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<SlackRequest> {
        self.wait_until(timeout, |r| r.len() >= count)
            .await
            .unwrap_or_else(|got| {
                panic!(
                    "waited {timeout:?} for {count} Slack request(s), got {}: {:#?}",
                    got.len(),
                    summarize(&got)
                )
            })
    }

    /// Waits until at least `count` requests were answered `200`; panics on timeout.
    pub async fn wait_for_delivered(&self, count: usize, timeout: Duration) -> Vec<Value> {
        self.wait_until(timeout, |r| {
            r.iter().filter(|r| r.delivered()).count() >= count
        })
        .await
        .unwrap_or_else(|got| {
            panic!(
                "waited {timeout:?} for {count} delivered Slack message(s): {:#?}",
                summarize(&got)
            )
        });
        self.delivered()
    }
}

/// A short description of requests for panic messages.
pub fn summarize(requests: &[SlackRequest]) -> Vec<String> {
    requests
        .iter()
        .map(|r| {
            let text = r
                .payload
                .as_ref()
                .and_then(|p| p.get("text"))
                .and_then(Value::as_str)
                .unwrap_or(&r.body);
            let path = r.path.replace(WEBHOOK_SECRET, "<secret>");
            format!("{} {path} {}", r.status, text)
        })
        .collect()
}

async fn handle(
    State(shared): State<Shared>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = String::from_utf8_lossy(&body).into_owned();
    let path = uri.path().to_owned();
    let response = {
        let mut inner = shared.inner.lock().unwrap();
        let too_long = inner
            .too_long
            .as_ref()
            .filter(|(bytes, _)| body.len() > *bytes)
            .map(|(_, response)| response.clone());
        let response = if let Some(refused) = too_long.filter(|_| path == WEBHOOK_PATH) {
            refused
        } else if path == WEBHOOK_PATH {
            inner
                .script
                .pop_front()
                .unwrap_or_else(|| inner.default.clone())
        } else {
            SlackResponse::status(404, "no_service")
        };
        inner.requests.push(SlackRequest {
            at: Instant::now(),
            path,
            content_type: headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            payload: serde_json::from_str(&body).ok(),
            body,
            status: response.status,
        });
        response
    };
    let count = shared.inner.lock().unwrap().requests.len();
    shared.changed.send_replace(count);
    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::OK);
    let mut resp = if response.endless {
        let chunk = Bytes::from(response.body.clone().repeat(1024));
        let stream = futures_util::stream::repeat_with(move || {
            Ok::<_, std::convert::Infallible>(chunk.clone())
        });
        (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            axum::body::Body::from_stream(stream),
        )
            .into_response()
    } else {
        (
            status,
            [(header::CONTENT_TYPE, "text/html")],
            response.body.clone(),
        )
            .into_response()
    };
    if let Some(retry_after) = &response.retry_after
        && let Ok(v) = retry_after.parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}
