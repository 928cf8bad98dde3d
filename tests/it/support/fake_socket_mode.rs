//! A fake of Slack's Socket Mode server on `ws://127.0.0.1:0` (a real WebSocket server): says
//! `hello` on connect, lets a test push envelopes, `disconnect` messages and raw frames to one
//! connection, drop a connection abruptly, and records every connection (with the path and
//! ticket it was opened with) and every acknowledgement with its arrival time. Hostile
//! behaviours: every new connection ended right after its `hello` (with a `disconnect` of a
//! given reason, as Slack's `too_many_websockets`, or a bare close), and a ping flood that
//! reads nothing back.
//!
//! `FakeSlackApi::set_socket_url(fake.link_url())` makes `apps.connections.open` hand out
//! URLs to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// One WebSocket connection the fake accepted (ids count from 0 in accepting order).
#[derive(Debug, Clone)]
pub struct Connection {
    pub id: usize,
    /// Path and query it was opened with (the query holds the ticket).
    pub path: String,
    /// When the handshake was done (just before the hello was sent).
    pub opened: Instant,
    /// When it ended (the client closed it, or the fake dropped it).
    pub closed: Option<Instant>,
    /// Pings received from the client (each answered, unless muted).
    pub pings: u32,
}

/// One acknowledgement (`{"envelope_id": …}`) received.
#[derive(Debug, Clone)]
pub struct Ack {
    pub envelope_id: String,
    /// The answer carried in the acknowledgement (a modal's `response_action`), if any.
    pub payload: Option<Value>,
    pub connection: usize,
    pub at: Instant,
}

enum Command {
    Send(Message),
    /// Drop the socket without a close frame.
    Drop,
    /// Stop reading (so pings go unanswered) and sending, keeping the socket open.
    Mute,
    /// Send pings as fast as the socket takes them, reading nothing (so no pong is taken).
    FloodPings,
}

#[derive(Default)]
struct Inner {
    connections: Vec<Connection>,
    senders: HashMap<usize, mpsc::UnboundedSender<Command>>,
    acks: Vec<Ack>,
    /// Envelope id → when it was pushed.
    pushed: HashMap<String, Instant>,
    next_envelope: u64,
    /// Text frames from clients that were not acknowledgements.
    other_texts: Vec<String>,
    /// Set: every new connection is ended right after its hello, with a `disconnect` of this
    /// reason first (`Some`) or by a bare close (`None`).
    end_after_hello: Option<Option<String>>,
}

#[derive(Clone, Default)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<watch::Sender<u64>>,
}

impl Shared {
    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }
}

/// The fake server. Dropping it stops accepting (open connections end with the test).
pub struct FakeSocketMode {
    shared: Shared,
    addr: std::net::SocketAddr,
    server: JoinHandle<()>,
}

impl Drop for FakeSocketMode {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSocketMode {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fake Socket Mode");
        let addr = listener.local_addr().expect("local addr");
        let accepting = shared.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, accepting.clone()));
            }
        });
        FakeSocketMode {
            shared,
            addr,
            server,
        }
    }

    /// The URL without a ticket, for `FakeSlackApi::set_socket_url`.
    pub fn link_url(&self) -> String {
        format!("ws://{}/link/", self.addr)
    }

    pub fn connections(&self) -> Vec<Connection> {
        self.shared.inner.lock().unwrap().connections.clone()
    }

    pub fn acks(&self) -> Vec<Ack> {
        self.shared.inner.lock().unwrap().acks.clone()
    }

    /// Text frames from the client that were not acknowledgements.
    pub fn other_texts(&self) -> Vec<String> {
        self.shared.inner.lock().unwrap().other_texts.clone()
    }

    /// When the envelope `id` was pushed.
    pub fn pushed_at(&self, id: &str) -> Option<Instant> {
        self.shared.inner.lock().unwrap().pushed.get(id).copied()
    }

    /// Waits until `cond(connections, acks)` holds; panics with what the fake saw on timeout.
    pub async fn wait_until(
        &self,
        timeout: Duration,
        mut cond: impl FnMut(&[Connection], &[Ack]) -> bool,
    ) {
        let mut rx = self.shared.changed.subscribe();
        let wait = async {
            loop {
                {
                    let inner = self.shared.inner.lock().unwrap();
                    if cond(&inner.connections, &inner.acks) {
                        return;
                    }
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(timeout, wait).await.is_err() {
            panic!(
                "waited {timeout:?} on the fake Socket Mode server; connections {:#?}, acks {:#?}",
                self.connections(),
                self.acks()
            );
        }
    }

    /// Waits until connection `id` (0-based, in accepting order) is open (its hello follows
    /// before any frame a test sends on it); its id.
    pub async fn wait_for_connection(&self, id: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |c, _| c.len() > id).await;
        id
    }

    /// Waits until connection `id` has ended.
    pub async fn wait_for_close(&self, id: usize, timeout: Duration) -> Instant {
        self.wait_until(timeout, |c, _| {
            c.get(id).is_some_and(|c| c.closed.is_some())
        })
        .await;
        self.connections()[id].closed.expect("closed")
    }

    /// Waits for the acknowledgement of envelope `id`.
    pub async fn wait_for_ack(&self, id: &str, timeout: Duration) -> Ack {
        self.wait_until(timeout, |_, acks| acks.iter().any(|a| a.envelope_id == id))
            .await;
        self.acks()
            .into_iter()
            .find(|a| a.envelope_id == id)
            .expect("ack")
    }

    /// Sends an envelope of `kind` with `payload` on connection `conn`; its envelope id.
    pub fn push_envelope(&self, conn: usize, kind: &str, payload: Value) -> String {
        let id = {
            let mut inner = self.shared.inner.lock().unwrap();
            inner.next_envelope += 1;
            let id = format!("env-{}-{}", inner.next_envelope, kind);
            inner.pushed.insert(id.clone(), Instant::now());
            id
        };
        let envelope = json!({
            "envelope_id": id,
            "type": kind,
            "accepts_response_payload": false,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": payload,
        });
        self.send(conn, Message::text(envelope.to_string()));
        id
    }

    /// An `interactive` envelope (a click) on connection `conn`; its envelope id.
    pub fn push_interactive(&self, conn: usize, payload: Value) -> String {
        self.push_envelope(conn, "interactive", payload)
    }

    /// `{"type": "disconnect", "reason": reason}` on connection `conn` (which stays open).
    pub fn disconnect(&self, conn: usize, reason: &str) {
        let text = json!({"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}});
        self.send(conn, Message::text(text.to_string()));
    }

    /// Any frame, as is (hostile input).
    pub fn send(&self, conn: usize, message: Message) {
        let inner = self.shared.inner.lock().unwrap();
        let sender = inner.senders.get(&conn).expect("an open connection");
        let _ = sender.send(Command::Send(message));
    }

    /// Connection `conn` goes silent (a dead link behind a NAT): nothing read, nothing sent,
    /// pings unanswered, the socket left open.
    pub fn mute(&self, conn: usize) {
        let inner = self.shared.inner.lock().unwrap();
        if let Some(sender) = inner.senders.get(&conn) {
            let _ = sender.send(Command::Mute);
        }
    }

    /// From now on every new connection is ended right after its hello: a `disconnect` with
    /// `reason` and a close (Slack's `too_many_websockets`, or a refresh that keeps coming),
    /// or with `None` a close alone.
    pub fn end_after_hello(&self, reason: Option<&str>) {
        self.shared.inner.lock().unwrap().end_after_hello = Some(reason.map(str::to_owned));
    }

    /// Connection `conn` floods pings (125 bytes each, as fast as the client takes them) and
    /// reads nothing, so the client's pongs pile up; until the client goes or it is dropped.
    pub fn flood_pings(&self, conn: usize) {
        let inner = self.shared.inner.lock().unwrap();
        if let Some(sender) = inner.senders.get(&conn) {
            let _ = sender.send(Command::FloodPings);
        }
    }

    /// Drops connection `conn` without a close frame, as a network failure would.
    pub fn drop_connection(&self, conn: usize) {
        let inner = self.shared.inner.lock().unwrap();
        if let Some(sender) = inner.senders.get(&conn) {
            let _ = sender.send(Command::Drop);
        }
    }
}

async fn serve(stream: TcpStream, shared: Shared) {
    let mut path = String::new();
    // The callback's signature (and its large error type) is tungstenite's.
    #[allow(clippy::result_large_err)]
    let record_path = |request: &Request, response: Response| {
        path = request.uri().to_string();
        Ok(response)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record_path).await else {
        return;
    };
    // Recorded as open before the hello, so "opened" precedes anything the client does with it.
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (id, end_after_hello) = {
        let mut inner = shared.inner.lock().unwrap();
        let id = inner.connections.len();
        inner.connections.push(Connection {
            id,
            path,
            opened: Instant::now(),
            closed: None,
            pings: 0,
        });
        inner.senders.insert(id, tx);
        (id, inner.end_after_hello.clone())
    };
    shared.notify();
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "fake", "approximate_connection_time": 18060},
        "connection_info": {"app_id": "A0TEST"}});
    if ws.send(Message::text(hello.to_string())).await.is_ok() {
        match end_after_hello {
            Some(reason) => {
                if let Some(reason) = reason {
                    let text = json!({"type": "disconnect", "reason": reason,
                        "debug_info": {"host": "fake"}});
                    let _ = ws.send(Message::text(text.to_string())).await;
                }
                let _ = ws.close(None).await;
            }
            None => pump(&mut ws, &mut rx, &shared, id).await,
        }
    }
    {
        let mut inner = shared.inner.lock().unwrap();
        inner.senders.remove(&id);
        inner.connections[id].closed = Some(Instant::now());
    }
    drop(ws);
    shared.notify();
}

/// Commands out, frames in, until the connection ends or is dropped.
async fn pump(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    rx: &mut mpsc::UnboundedReceiver<Command>,
    shared: &Shared,
    id: usize,
) {
    loop {
        tokio::select! {
            command = rx.recv() => match command {
                Some(Command::Send(message)) => {
                    if ws.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Command::Mute) => {
                    // Silent but open, until dropped.
                    while let Some(command) = rx.recv().await {
                        if matches!(command, Command::Drop) {
                            break;
                        }
                    }
                    break;
                }
                Some(Command::FloodPings) => {
                    flood(ws, rx).await;
                    break;
                }
                Some(Command::Drop) | None => break,
            },
            message = ws.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str::<Value>(&text).ok();
                    let envelope_id = frame
                        .as_ref()
                        .and_then(|v| v.get("envelope_id")?.as_str().map(str::to_owned));
                    let payload = frame.as_ref().and_then(|v| v.get("payload")).cloned();
                    let mut inner = shared.inner.lock().unwrap();
                    match envelope_id {
                        Some(envelope_id) => inner.acks.push(Ack {
                            envelope_id,
                            payload,
                            connection: id,
                            at: Instant::now(),
                        }),
                        None => inner.other_texts.push(text.to_string()),
                    }
                    drop(inner);
                    shared.notify();
                }
                Some(Ok(Message::Ping(_))) => {
                    shared.inner.lock().unwrap().connections[id].pings += 1;
                    shared.notify();
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Pings out as fast as the socket takes them, nothing read, until a write fails (the client
/// went) or a `Drop` (or the end of the test). Written as ready-made frames straight to the
/// TCP stream (a server's frames are unmasked), so the flood outruns any client.
async fn flood(
    ws: &mut tokio_tungstenite::WebSocketStream<TcpStream>,
    rx: &mut mpsc::UnboundedReceiver<Command>,
) {
    use tokio::io::AsyncWriteExt as _;
    let mut ping = vec![0x89, 125];
    ping.extend_from_slice(&[b'p'; 125]);
    let burst = ping.repeat(8192);
    let stream = ws.get_mut();
    loop {
        tokio::select! {
            command = rx.recv() => {
                if matches!(command, Some(Command::Drop) | None) {
                    return;
                }
            }
            sent = stream.write_all(&burst) => {
                if sent.is_err() {
                    return;
                }
            }
        }
    }
}
