//! Slack Socket Mode: the outbound WebSocket over which Slack delivers button clicks, so
//! approving from Slack needs no inbound port (see ARCHITECTURE.md, `socket_mode`).
//!
//! One task ([`spawn`]), on a thread and runtime of its own, keeps one connection open: `apps.connections.open` with the app-level
//! token, connect, wait for `hello`, then for each envelope **acknowledge first** (Slack wants
//! it within 3 s; nothing slow happens before it) and pass `interactive` ones on as
//! [`Interaction`]s. When the queue is full the envelope is left unacknowledged, so Slack
//! delivers it again rather than the click being lost. A `disconnect` asking for a refresh
//! opens the next connection before the old one is dropped; a lost connection is reopened
//! with capped, jittered backoff; `link_disabled` (Socket Mode turned off for the app) stops
//! all attempts until the daemon builds a new task (a reload). The state is watched
//! ([`SocketMode::state`]) and mirrored into the metrics and `/healthz`.
//!
//! Its own thread because the daemon's runtime has one thread, which waits in SQLite while
//! another writer holds the state database (up to the busy timeout): an acknowledgement due
//! within 3 s must not wait behind it (as the metrics endpoint does not, `metrics/server.rs`).
//! Interactions cross to the daemon's runtime through the bounded channel.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, sleep};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;

mod connection;
mod frame;

use crate::backoff::{Backoff, Jitter, Streak};
use crate::slack::clip::clip;
use connection::Connection;
use frame::{Disconnect, Frame};

pub use crate::slack::web_api::{ApiError, ConnectionOpener};

/// A `Retry-After` longer than this is not believed (ARCHITECTURE.md: every wait is bounded).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// One envelope of type `interactive` (a click, a modal submission), already acknowledged.
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub envelope_id: String,
    /// As Slack sent it: outside input, to be checked by whoever acts on it.
    pub payload: serde_json::Value,
    /// Slack's redelivery count (0 on the first delivery).
    pub retry_attempt: u32,
}

/// Where the connection is, for `/healthz`, the metrics and `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// The first attempt is under way.
    Connecting,
    /// A connection said `hello` and is open.
    Connected,
    /// `attempt` attempts (or connections) failed in a row; `error` is the last reason. The
    /// next attempt follows after a backoff.
    Retrying { attempt: u32, error: String },
    /// Slack said `link_disabled`: Socket Mode is off for the app; no attempts until a reload.
    Disabled,
    /// Shut down.
    Stopped,
}

impl ConnectionState {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Retrying { .. } => "retrying",
            Self::Disabled => "disabled",
            Self::Stopped => "stopped",
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("apps.connections.open: {0}")]
    Open(ApiError),
    #[error("connecting to {host}: {reason}")]
    Connect { host: String, reason: String },
    #[error("{what} at {host}: no answer in {} s", .after.as_secs())]
    Timeout {
        host: String,
        what: &'static str,
        after: Duration,
    },
    #[error("the connection ended before Slack's hello: {0}")]
    NoHello(String),
    #[error("Socket Mode is turned off for the app (link_disabled)")]
    LinkDisabled,
}

/// The clock of the connection. [`Timing::default`] is production; tests shorten it.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The first wait after a failure (halved to doubled by jitter, then doubling)…
    pub backoff_base: Duration,
    /// …up to this.
    pub backoff_cap: Duration,
    /// A connection open this long resets the backoff when it ends.
    pub stable_after: Duration,
    /// A ping this often keeps NATs and proxies from forgetting the link…
    pub ping_every: Duration,
    /// …and no frame at all (pongs included) for this long means it is gone.
    pub silence_limit: Duration,
    /// Bounds the WebSocket handshake, and then the wait for `hello`.
    pub connect_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(120),
            stable_after: Duration::from_secs(60),
            ping_every: Duration::from_secs(30),
            silence_limit: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The running connection task.
pub struct SocketMode {
    pub state: watch::Receiver<ConnectionState>,
    /// Never sent on: it closes when the connection's thread is done.
    done: oneshot::Receiver<()>,
}

impl SocketMode {
    /// Waits for the task to end (after the shutdown token was cancelled): the connection is
    /// closed and the state is [`ConnectionState::Stopped`].
    pub async fn stopped(self) {
        let _ = self.done.await;
    }
}

/// Starts the connection task with production timing, on a thread of its own. Fails only
/// when the thread (or its runtime) cannot be made.
pub fn spawn(
    opener: ConnectionOpener,
    interactions: mpsc::Sender<Interaction>,
    shutdown: CancellationToken,
) -> std::io::Result<SocketMode> {
    spawn_with(opener, interactions, shutdown, Timing::default())
}

/// [`spawn`] with its own [`Timing`] (tests, the demo).
pub fn spawn_with(
    opener: ConnectionOpener,
    interactions: mpsc::Sender<Interaction>,
    shutdown: CancellationToken,
    timing: Timing,
) -> std::io::Result<SocketMode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (state_tx, state) = watch::channel(ConnectionState::Connecting);
    crate::metrics::socket_state(crate::metrics::SocketState::Connecting);
    let runner = Runner {
        opener,
        interactions,
        shutdown,
        state: state_tx,
        timing,
    };
    let (finished, done) = oneshot::channel();
    std::thread::Builder::new()
        .name("socket-mode".into())
        .spawn(move || {
            runtime.block_on(runner.run());
            // The connection is closed by now; dropping the runtime ends nothing of ours.
            drop(runtime);
            drop(finished);
        })?;
    Ok(SocketMode { state, done })
}

struct Runner {
    opener: ConnectionOpener,
    interactions: mpsc::Sender<Interaction>,
    shutdown: CancellationToken,
    state: watch::Sender<ConnectionState>,
    timing: Timing,
}

/// How serving a connection (and the ones that replaced it on refresh) ended.
enum Ended {
    Shutdown,
    Disabled,
    Dropped { error: String, lasted: Duration },
}

/// What one frame asks of the loop.
enum Next {
    Continue,
    /// Slack will close this connection soon: open the next one now.
    Refresh,
    Disabled,
    Closed(String),
}

type Opening<'a> = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>> + Send + 'a>>;

impl Runner {
    async fn run(self) {
        let mut backoff = Streak::new(Backoff::new(
            self.timing.backoff_base,
            self.timing.backoff_cap,
            Jitter::UpperHalf,
        ));
        let mut connected_before = false;
        loop {
            let opened = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                opened = connection::open(&self.opener, &self.timing) => opened,
            };
            // Slack's Retry-After, when it gave one, is a floor for the wait.
            let mut at_least = Duration::ZERO;
            let error = match opened {
                Ok(conn) => {
                    if connected_before {
                        crate::metrics::socket_reconnect(crate::metrics::ReconnectReason::Dropped);
                    }
                    connected_before = true;
                    if backoff.attempt() > 0 {
                        tracing::info!(
                            failed_attempts = backoff.attempt(),
                            "Socket Mode connected again (approvals from Slack)"
                        );
                    } else {
                        tracing::info!("Socket Mode connected (approvals from Slack)");
                    }
                    self.set(ConnectionState::Connected);
                    match self.serve(conn).await {
                        Ended::Shutdown => break,
                        Ended::Disabled => {
                            self.disabled().await;
                            break;
                        }
                        Ended::Dropped { error, lasted } => {
                            if lasted >= self.timing.stable_after {
                                backoff.reset();
                            }
                            tracing::warn!("Socket Mode connection lost, reconnecting: {error}");
                            error
                        }
                    }
                }
                Err(ConnectError::LinkDisabled) => {
                    self.disabled().await;
                    break;
                }
                Err(e) => {
                    self.log_failure(&e, backoff.attempt() + 1);
                    if let ConnectError::Open(ApiError::RateLimited {
                        retry_after: Some(after),
                    }) = &e
                    {
                        at_least = (*after).min(MAX_RETRY_AFTER);
                    }
                    e.to_string()
                }
            };
            let delay = backoff.fail().max(at_least);
            self.set(ConnectionState::Retrying {
                attempt: backoff.attempt(),
                error,
            });
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                () = sleep(delay) => {}
            }
        }
        self.set(ConnectionState::Stopped);
    }

    fn set(&self, state: ConnectionState) {
        crate::metrics::socket_state(match state {
            ConnectionState::Connecting => crate::metrics::SocketState::Connecting,
            ConnectionState::Connected => crate::metrics::SocketState::Connected,
            ConnectionState::Retrying { .. } => crate::metrics::SocketState::Retrying,
            ConnectionState::Disabled => crate::metrics::SocketState::Disabled,
            ConnectionState::Stopped => crate::metrics::SocketState::Stopped,
        });
        self.state.send_replace(state);
    }

    /// `link_disabled`: said once, then nothing until shutdown (a reload builds a new task).
    async fn disabled(&self) {
        tracing::error!(
            "Socket Mode was turned off for the app (link_disabled); no more connections until a reload \
             (turn Socket Mode on in the app's settings, then reload)"
        );
        self.set(ConnectionState::Disabled);
        self.shutdown.cancelled().await;
    }

    fn log_failure(&self, e: &ConnectError, attempt: u32) {
        let advice = match e {
            ConnectError::Open(ApiError::Permanent { error }) => self.opener.advice(error),
            _ => None,
        };
        match advice {
            Some(advice) => tracing::error!(attempt, "Socket Mode: {e}: {advice}"),
            None => tracing::warn!(attempt, "Socket Mode: {e}"),
        }
    }

    /// Serves `conn` (and whatever replaces it on a refresh) until it is lost, disabled or
    /// shut down.
    async fn serve(&self, mut conn: Connection) -> Ended {
        let mut replacement: Option<Opening<'_>> = None;
        let silence = sleep(self.timing.silence_limit);
        tokio::pin!(silence);
        let mut ping = ping_interval(self.timing.ping_every);
        loop {
            let next = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => {
                    conn.close().await;
                    return Ended::Shutdown;
                }
                opened = pending_or(&mut replacement) => {
                    replacement = None;
                    match opened {
                        Ok(new) => {
                            std::mem::replace(&mut conn, new).close().await;
                            crate::metrics::socket_reconnect(crate::metrics::ReconnectReason::Refresh);
                            tracing::info!("Socket Mode connection refreshed");
                            silence.as_mut().reset(Instant::now() + self.timing.silence_limit);
                            ping = ping_interval(self.timing.ping_every);
                        }
                        Err(ConnectError::LinkDisabled) => {
                            conn.close().await;
                            return Ended::Disabled;
                        }
                        Err(e) => tracing::warn!(
                            "Socket Mode: could not open the next connection; the current one \
                             stays until it closes: {e}"
                        ),
                    }
                    Next::Continue
                }
                message = conn.ws.next() => {
                    silence.as_mut().reset(Instant::now() + self.timing.silence_limit);
                    self.on_message(&mut conn, message).await
                }
                _ = ping.tick() => match conn.ping().await {
                    Ok(()) => Next::Continue,
                    Err(e) => Next::Closed(e),
                },
                () = &mut silence => Next::Closed(format!(
                    "no frame from Slack for {}",
                    humantime::format_duration(self.timing.silence_limit)
                )),
            };
            match next {
                Next::Continue => {}
                Next::Refresh if replacement.is_some() => {}
                Next::Refresh => {
                    tracing::info!("Slack asked for a new Socket Mode connection; opening it");
                    replacement = Some(Box::pin(connection::open(&self.opener, &self.timing)));
                }
                Next::Disabled => {
                    conn.close().await;
                    return Ended::Disabled;
                }
                Next::Closed(error) => {
                    let lasted = conn.opened.elapsed();
                    drop(conn);
                    // A refresh under way becomes the next connection.
                    let Some(opening) = replacement.take() else {
                        return Ended::Dropped { error, lasted };
                    };
                    let opened = tokio::select! {
                        biased;
                        () = self.shutdown.cancelled() => return Ended::Shutdown,
                        opened = opening => opened,
                    };
                    match opened {
                        Ok(new) => {
                            conn = new;
                            crate::metrics::socket_reconnect(
                                crate::metrics::ReconnectReason::Refresh,
                            );
                            tracing::info!("Socket Mode connection refreshed");
                            silence
                                .as_mut()
                                .reset(Instant::now() + self.timing.silence_limit);
                            ping = ping_interval(self.timing.ping_every);
                        }
                        Err(ConnectError::LinkDisabled) => return Ended::Disabled,
                        Err(e) => {
                            return Ended::Dropped {
                                error: format!("{error}; the next connection failed too: {e}"),
                                lasted,
                            };
                        }
                    }
                }
            }
        }
    }

    async fn on_message(
        &self,
        conn: &mut Connection,
        message: Option<Result<Message, tungstenite::Error>>,
    ) -> Next {
        match message {
            None => Next::Closed("the connection ended".to_owned()),
            Some(Err(e)) => Next::Closed(clip(&e.to_string(), connection::MAX_ERROR_CHARS)),
            Some(Ok(Message::Text(text))) => self.on_text(conn, &text).await,
            Some(Ok(Message::Close(close))) => Next::Closed(match close {
                Some(close) => format!(
                    "Slack closed the connection (code {})",
                    u16::from(close.code)
                ),
                None => "Slack closed the connection".to_owned(),
            }),
            Some(Ok(Message::Binary(bytes))) => {
                tracing::debug!(bytes = bytes.len(), "ignored a binary Socket Mode frame");
                Next::Continue
            }
            // The library answers pings itself; any frame proves the link alive.
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Next::Continue,
        }
    }

    async fn on_text(&self, conn: &mut Connection, text: &str) -> Next {
        let envelope = match frame::parse(text) {
            Ok(Frame::Envelope(envelope)) => envelope,
            Ok(Frame::Hello) => return Next::Continue,
            Ok(Frame::Disconnect(Disconnect::Refresh)) => return Next::Refresh,
            Ok(Frame::Disconnect(Disconnect::LinkDisabled)) => return Next::Disabled,
            Ok(Frame::Other(kind)) => {
                tracing::debug!(kind = %kind, "ignored a Socket Mode message");
                return Next::Continue;
            }
            Err(e) => {
                tracing::warn!(
                    bytes = text.len(),
                    host = %conn.host,
                    "ignored a Socket Mode frame: {e}"
                );
                return Next::Continue;
            }
        };
        let id = clip(&envelope.envelope_id, frame::MAX_WORD_CHARS);
        if envelope.kind != "interactive" {
            if let Err(e) = conn.send_text(frame::ack(&envelope.envelope_id)).await {
                return Next::Closed(e);
            }
            tracing::debug!(kind = %envelope.kind, envelope_id = %id, "acknowledged and ignored a Socket Mode envelope");
            return Next::Continue;
        }
        // A place in the queue first: an envelope acknowledged but dropped would be a lost
        // click, one left unacknowledged is delivered again.
        let permit = match self.interactions.try_reserve() {
            Ok(permit) => permit,
            Err(mpsc::error::TrySendError::Full(())) => {
                tracing::warn!(
                    envelope_id = %id,
                    "the queue of clicks is full; left unacknowledged so Slack delivers it again"
                );
                return Next::Continue;
            }
            Err(mpsc::error::TrySendError::Closed(())) => {
                tracing::warn!(
                    envelope_id = %id,
                    "nothing takes clicks any more; left unacknowledged"
                );
                return Next::Continue;
            }
        };
        if let Err(e) = conn.send_text(frame::ack(&envelope.envelope_id)).await {
            return Next::Closed(e);
        }
        tracing::debug!(envelope_id = %id, retry_attempt = envelope.retry_attempt, "acknowledged an interaction");
        permit.send(Interaction {
            envelope_id: envelope.envelope_id,
            payload: envelope.payload,
            retry_attempt: envelope.retry_attempt,
        });
        Next::Continue
    }
}

fn ping_interval(every: Duration) -> tokio::time::Interval {
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping
}

/// The future's output, or never when there is none.
async fn pending_or<F: Future + Unpin>(future: &mut Option<F>) -> F::Output {
    match future {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_have_stable_names() {
        let names: Vec<&str> = [
            ConnectionState::Connecting,
            ConnectionState::Connected,
            ConnectionState::Retrying {
                attempt: 1,
                error: "x".into(),
            },
            ConnectionState::Disabled,
            ConnectionState::Stopped,
        ]
        .iter()
        .map(ConnectionState::as_str)
        .collect();
        assert_eq!(
            names,
            ["connecting", "connected", "retrying", "disabled", "stopped"]
        );
    }
}
