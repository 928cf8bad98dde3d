//! A fake heartbeat monitor (healthchecks-style) on 127.0.0.1:0: counts GETs to its success
//! and failure URLs, answers a settable status, and can hang to play a dead monitor.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The secret part of the heartbeat URLs. It must never show up in any output of the binary.
pub const HEARTBEAT_SECRET: &str = "XSECRETXheartbeatXcheckX5678";
const PING_PATH: &str = "/ping/XSECRETXheartbeatXcheckX5678";
const FAIL_PATH: &str = "/ping/XSECRETXheartbeatXcheckX5678/fail";

#[derive(Debug, Default)]
struct Inner {
    pings: usize,
    fails: usize,
    other: usize,
    status: u16,
    delay: Option<Duration>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    /// Bumped on every request, so a test can wait for one without sleeping.
    changed: Arc<watch::Sender<usize>>,
}

pub struct FakeHeartbeat {
    shared: Shared,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeHeartbeat {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeHeartbeat {
    pub async fn start() -> Self {
        let shared = Shared {
            inner: Arc::new(Mutex::new(Inner {
                status: 200,
                ..Inner::default()
            })),
            changed: Arc::new(watch::channel(0).0),
        };
        let app = Router::new()
            .fallback(get(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake heartbeat");
        let addr = listener.local_addr().expect("local addr");
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHeartbeat {
            shared,
            addr,
            server,
        }
    }

    /// The success URL (holds [`HEARTBEAT_SECRET`]).
    pub fn url(&self) -> String {
        format!("http://{}{PING_PATH}", self.addr)
    }

    /// The failure URL (holds [`HEARTBEAT_SECRET`]).
    pub fn fail_url(&self) -> String {
        format!("http://{}{FAIL_PATH}", self.addr)
    }

    /// GETs to the success URL so far.
    pub fn pings(&self) -> usize {
        self.shared.inner.lock().unwrap().pings
    }

    /// GETs to the failure URL so far.
    pub fn fails(&self) -> usize {
        self.shared.inner.lock().unwrap().fails
    }

    /// Requests to any other path or with another method.
    pub fn other(&self) -> usize {
        self.shared.inner.lock().unwrap().other
    }

    /// How later requests are answered (initially 200).
    pub fn set_status(&self, status: u16) {
        self.shared.inner.lock().unwrap().status = status;
    }

    /// Answer later requests only after `delay` (a hanging monitor).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.inner.lock().unwrap().delay = delay;
    }

    /// Notified (value = number of requests) each time a request arrives.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.shared.changed.subscribe()
    }
}

async fn handle(State(shared): State<Shared>, uri: Uri) -> StatusCode {
    let (status, delay) = {
        let mut inner = shared.inner.lock().unwrap();
        match uri.path() {
            PING_PATH => inner.pings += 1,
            FAIL_PATH => inner.fails += 1,
            _ => inner.other += 1,
        }
        (inner.status, inner.delay)
    };
    shared.changed.send_modify(|n| *n += 1);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
