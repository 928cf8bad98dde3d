//! Slack Socket Mode: the outbound WebSocket over which Slack delivers button clicks, so
//! approving from Slack needs no inbound port (see ARCHITECTURE.md, `socket_mode`).
//!
//! One task ([`spawn`]), on a thread and runtime of its own, keeps one connection open: `apps.connections.open` with the app-level
//! token, connect, wait for `hello`, then for each envelope **acknowledge first** (Slack wants
//! it within 3 s; nothing slow happens before it) and pass `interactive` ones on as
//! [`Interaction`]s. When the queue is full the envelope is left unacknowledged, so Slack
//! delivers it again rather than the click being lost. A `disconnect` asking for a refresh
//! opens the next connection before the old one is dropped. Every way back to
//! `apps.connections.open` (refresh, disconnect, close, error) after a connection that lived
//! less than [`Timing::stable_after`] waits the one capped, jittered backoff, so a server that
//! says `hello` and then at once `disconnect` costs a handful of attempts, not thousands;
//! `too_many_websockets` (another process holds the app's sockets) backs off to minutes;
//! `link_disabled` (Socket Mode turned off for the app) stops all attempts until the daemon
//! builds a new task (a reload). The log says what goes wrong once per change, not once per
//! attempt ([`Pace`]). The state is watched ([`SocketMode::state`]) and mirrored into the
//! metrics and `/healthz`.
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
    #[error("{TOO_MANY_WEBSOCKETS}")]
    TooManyWebsockets,
}

/// What `too_many_websockets` means, for the log and the state.
const TOO_MANY_WEBSOCKETS: &str = "Slack refused the connection: the app already has the most \
    Socket Mode connections Slack allows (too_many_websockets); another process (a second \
    daemon, an old deployment, a developer's app) holds the app's sockets";

/// The clock of the connection. [`Timing::default`] is production; tests shorten it.
#[derive(Debug, Clone)]
pub struct Timing {
    /// The first wait after a failure (halved to doubled by jitter, then doubling)…
    pub backoff_base: Duration,
    /// …up to this.
    pub backoff_cap: Duration,
    /// A connection open this long resets the backoff when it ends; one that ends (or asks
    /// for a refresh) sooner counts as a failure, and the next attempt waits the backoff.
    pub stable_after: Duration,
    /// After `too_many_websockets`, the backoff's first step (doubling like the other)…
    pub crowded_base: Duration,
    /// …up to this.
    pub crowded_cap: Duration,
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
            crowded_base: Duration::from_secs(120),
            crowded_cap: Duration::from_secs(900),
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

/// What the acknowledgement of an interactive envelope answers, read from its payload:
/// `None` for a plain acknowledgement; `Some(answer)` (a modal's `response_action: errors`,
/// which Slack takes only in the acknowledgement) for an envelope that needs nothing more:
/// it is not queued.
pub type AckAnswer = fn(&serde_json::Value) -> Option<serde_json::Value>;

/// Starts the connection task with production timing, on a thread of its own. Fails only
/// when the thread (or its runtime) cannot be made.
pub fn spawn(
    opener: ConnectionOpener,
    interactions: mpsc::Sender<Interaction>,
    answer: AckAnswer,
    shutdown: CancellationToken,
) -> std::io::Result<SocketMode> {
    start(opener, interactions, answer, shutdown, Timing::default())
}

/// [`spawn`] with its own [`Timing`] (tests, the demo), acknowledging every envelope plainly.
pub fn spawn_with(
    opener: ConnectionOpener,
    interactions: mpsc::Sender<Interaction>,
    shutdown: CancellationToken,
    timing: Timing,
) -> std::io::Result<SocketMode> {
    start(opener, interactions, |_| None, shutdown, timing)
}

fn start(
    opener: ConnectionOpener,
    interactions: mpsc::Sender<Interaction>,
    answer: AckAnswer,
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
        answer,
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
    answer: AckAnswer,
    shutdown: CancellationToken,
    state: watch::Sender<ConnectionState>,
    timing: Timing,
}

/// How serving a connection (and the ones that replaced it on refresh) ended.
enum Ended {
    Shutdown,
    Disabled,
    /// `too_many_websockets`.
    Crowded,
    Dropped {
        error: String,
        lasted: Duration,
    },
}

/// What one frame asks of the loop.
enum Next {
    Continue,
    /// Slack will close this connection soon: open the next one now.
    Refresh,
    Disabled,
    Crowded,
    Closed(String),
}

type Opening<'a> = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>> + Send + 'a>>;

/// The backoff, and what the log last said about the connection: a link that keeps failing
/// the same way is reported when that starts, once more when it turns out to repeat, and
/// when it is over; each attempt in between only at debug.
struct Pace {
    streak: Streak,
    /// After `too_many_websockets`: the same streak, longer steps.
    crowded: Backoff,
    stable_after: Duration,
    said: Said,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Said {
    Nothing,
    Up,
    /// A failure of kind `key` was logged; `then_up` once "connected again" followed it;
    /// `repeating` once it was said that it keeps happening.
    Trouble {
        key: String,
        then_up: bool,
        repeating: bool,
    },
}

/// What the log should say about an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Say {
    Quiet,
    Connected,
    ConnectedAgain,
    Trouble,
    Repeating,
    Stable,
}

impl Pace {
    fn new(timing: &Timing) -> Self {
        Self {
            streak: Streak::new(Backoff::new(
                timing.backoff_base,
                timing.backoff_cap,
                Jitter::UpperHalf,
            )),
            crowded: Backoff::new(timing.crowded_base, timing.crowded_cap, Jitter::UpperHalf),
            stable_after: timing.stable_after,
            said: Said::Nothing,
        }
    }

    /// A connection said `hello`.
    fn connected(&mut self) -> Say {
        match &mut self.said {
            Said::Nothing => {
                self.said = Said::Up;
                Say::Connected
            }
            Said::Trouble {
                then_up: then_up @ false,
                repeating: false,
                ..
            } => {
                *then_up = true;
                Say::ConnectedAgain
            }
            Said::Up | Said::Trouble { .. } => Say::Quiet,
        }
    }

    /// A connection ended, or asked for a refresh, after `lasted`: true when that was soon
    /// enough to count as a failure. One that lasted resets the backoff (and ends a trouble).
    fn ended_after(&mut self, lasted: Duration) -> (bool, Say) {
        if lasted < self.stable_after {
            return (true, Say::Quiet);
        }
        self.streak.reset();
        let say = match self.said {
            Said::Trouble {
                repeating: true, ..
            } => Say::Stable,
            _ => Say::Quiet,
        };
        if matches!(self.said, Said::Trouble { .. }) {
            self.said = Said::Up;
        }
        (false, say)
    }

    /// A failure of kind `key` (counted by [`Pace::wait`]).
    fn failed(&mut self, key: &str) -> Say {
        match &mut self.said {
            Said::Trouble {
                key: said,
                then_up,
                repeating,
            } if said == key => {
                if *then_up && !*repeating {
                    *repeating = true;
                    Say::Repeating
                } else {
                    Say::Quiet
                }
            }
            _ => {
                self.said = Said::Trouble {
                    key: key.to_owned(),
                    then_up: false,
                    repeating: false,
                };
                Say::Trouble
            }
        }
    }

    /// Counts a failure; the wait before the next attempt (`crowded` for
    /// `too_many_websockets`), at least `at_least`.
    fn wait(&mut self, crowded: bool, at_least: Duration) -> Duration {
        let before = self.streak.attempt();
        let wait = self.streak.fail();
        let wait = if crowded {
            wait.max(self.crowded.wait(before))
        } else {
            wait
        };
        wait.max(at_least)
    }

    fn attempt(&self) -> u32 {
        self.streak.attempt()
    }
}

/// A failure's kind, for [`Pace::failed`]: the same kind again is not logged again.
fn failure_key(e: &ConnectError) -> String {
    match e {
        ConnectError::Open(ApiError::Permanent { error }) => format!("open:{error}"),
        ConnectError::Open(ApiError::RateLimited { .. }) => "open:rate-limited".to_owned(),
        ConnectError::Open(ApiError::Temporary(_)) => "open:temporary".to_owned(),
        ConnectError::Connect { .. } => "connect".to_owned(),
        ConnectError::Timeout { what, .. } => format!("timeout:{what}"),
        ConnectError::NoHello(_) => "no-hello".to_owned(),
        ConnectError::LinkDisabled => "link_disabled".to_owned(),
        ConnectError::TooManyWebsockets => "too_many_websockets".to_owned(),
    }
}

/// Logs `text` at `level` when `say` asks for it, else at debug.
fn say(say: Say, text: &str, error: bool) {
    match say {
        Say::Quiet => tracing::debug!("Socket Mode: {text}"),
        Say::Repeating => tracing::warn!(
            "Socket Mode: this keeps happening; retrying with backoff, said again when it \
             changes: {text}"
        ),
        _ if error => tracing::error!("Socket Mode: {text}"),
        _ => tracing::warn!("Socket Mode: {text}"),
    }
}

impl Runner {
    async fn run(self) {
        let mut pace = Pace::new(&self.timing);
        let mut connected_before = false;
        loop {
            let opened = tokio::select! {
                biased;
                () = self.shutdown.cancelled() => break,
                opened = connection::open(&self.opener, &self.timing) => opened,
            };
            // Slack's Retry-After, when it gave one, is a floor for the wait.
            let mut at_least = Duration::ZERO;
            let mut crowded = false;
            let error = match opened {
                Ok(conn) => {
                    if connected_before {
                        crate::metrics::socket_reconnect(crate::metrics::ReconnectReason::Dropped);
                    }
                    connected_before = true;
                    self.connected(&mut pace);
                    match self.serve(conn, &mut pace).await {
                        Ended::Shutdown => break,
                        Ended::Disabled => {
                            self.disabled().await;
                            break;
                        }
                        Ended::Crowded => {
                            crowded = true;
                            self.crowded(&mut pace);
                            TOO_MANY_WEBSOCKETS.to_owned()
                        }
                        Ended::Dropped { error, lasted } => {
                            let (_, stable) = pace.ended_after(lasted);
                            say(stable, "the connection was stable again for a while", false);
                            let said = pace.failed("lost");
                            say(
                                said,
                                &format!("connection lost, reconnecting: {error}"),
                                false,
                            );
                            error
                        }
                    }
                }
                Err(ConnectError::LinkDisabled) => {
                    self.disabled().await;
                    break;
                }
                Err(ConnectError::TooManyWebsockets) => {
                    crowded = true;
                    self.crowded(&mut pace);
                    TOO_MANY_WEBSOCKETS.to_owned()
                }
                Err(e) => {
                    self.log_failure(&e, &mut pace);
                    if let ConnectError::Open(ApiError::RateLimited {
                        retry_after: Some(after),
                    }) = &e
                    {
                        at_least = (*after).min(MAX_RETRY_AFTER);
                    }
                    e.to_string()
                }
            };
            let delay = pace.wait(crowded, at_least);
            self.set(ConnectionState::Retrying {
                attempt: pace.attempt(),
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

    fn connected(&self, pace: &mut Pace) {
        match pace.connected() {
            Say::Connected => tracing::info!("Socket Mode connected (approvals from Slack)"),
            Say::ConnectedAgain => tracing::info!(
                failed_attempts = pace.attempt(),
                "Socket Mode connected again (approvals from Slack)"
            ),
            _ => tracing::debug!(failed_attempts = pace.attempt(), "Socket Mode connected"),
        }
        self.set(ConnectionState::Connected);
    }

    /// `too_many_websockets`: an error (a person must stop the other process), said once.
    fn crowded(&self, pace: &mut Pace) {
        let said = pace.failed("too_many_websockets");
        say(
            said,
            &format!("{TOO_MANY_WEBSOCKETS}; stop it, or this daemon retries every few minutes"),
            true,
        );
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

    fn log_failure(&self, e: &ConnectError, pace: &mut Pace) {
        let attempt = pace.attempt() + 1;
        let said = pace.failed(&failure_key(e));
        let advice = match e {
            ConnectError::Open(ApiError::Permanent { error }) => self.opener.advice(error),
            _ => None,
        };
        match (said, advice) {
            (Say::Quiet, _) => tracing::debug!(attempt, "Socket Mode: {e}"),
            (Say::Repeating, _) => say(said, &e.to_string(), false),
            (_, Some(advice)) => tracing::error!(attempt, "Socket Mode: {e}: {advice}"),
            (_, None) => tracing::warn!(attempt, "Socket Mode: {e}"),
        }
    }

    /// The next connection, opened after `delay` (a refresh asked for too soon waits the
    /// backoff like any other way back to `apps.connections.open`).
    fn reopen(&self, delay: Duration) -> Opening<'_> {
        Box::pin(async move {
            sleep(delay).await;
            connection::open(&self.opener, &self.timing).await
        })
    }

    /// Serves `conn` (and whatever replaces it on a refresh) until it is lost, disabled or
    /// shut down.
    async fn serve(&self, mut conn: Connection, pace: &mut Pace) -> Ended {
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
                            self.refreshed(pace);
                            silence.as_mut().reset(Instant::now() + self.timing.silence_limit);
                            ping = ping_interval(self.timing.ping_every);
                        }
                        Err(ConnectError::LinkDisabled) => {
                            conn.close().await;
                            return Ended::Disabled;
                        }
                        Err(ConnectError::TooManyWebsockets) => {
                            conn.close().await;
                            return Ended::Crowded;
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
                    let (soon, stable) = pace.ended_after(conn.opened.elapsed());
                    say(stable, "the connection was stable again for a while", false);
                    let delay = if soon {
                        let said = pace.failed("refresh");
                        say(
                            said,
                            "Slack asked for a new connection soon after this one opened; \
                             the next one opens after a backoff",
                            false,
                        );
                        pace.wait(false, Duration::ZERO)
                    } else {
                        tracing::info!("Slack asked for a new Socket Mode connection; opening it");
                        Duration::ZERO
                    };
                    replacement = Some(self.reopen(delay));
                }
                Next::Disabled => {
                    conn.close().await;
                    return Ended::Disabled;
                }
                Next::Crowded => {
                    conn.close().await;
                    return Ended::Crowded;
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
                            self.refreshed(pace);
                            silence
                                .as_mut()
                                .reset(Instant::now() + self.timing.silence_limit);
                            ping = ping_interval(self.timing.ping_every);
                        }
                        Err(ConnectError::LinkDisabled) => return Ended::Disabled,
                        Err(ConnectError::TooManyWebsockets) => return Ended::Crowded,
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

    /// A refresh's next connection said `hello`.
    fn refreshed(&self, pace: &mut Pace) {
        crate::metrics::socket_reconnect(crate::metrics::ReconnectReason::Refresh);
        match pace.connected() {
            Say::Quiet if pace.said != Said::Up => {
                tracing::debug!("Socket Mode connection refreshed");
            }
            _ => tracing::info!("Socket Mode connection refreshed"),
        }
        self.set(ConnectionState::Connected);
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
            // The library queues the pong itself; one that cannot be written soon means a
            // peer that sends faster than it reads: a dead connection, not a growing buffer.
            Some(Ok(Message::Ping(_))) => match conn.flush().await {
                Ok(()) => Next::Continue,
                Err(e) => Next::Closed(e),
            },
            // Any frame proves the link alive.
            Some(Ok(Message::Pong(_) | Message::Frame(_))) => Next::Continue,
        }
    }

    async fn on_text(&self, conn: &mut Connection, text: &str) -> Next {
        let envelope = match frame::parse(text) {
            Ok(Frame::Envelope(envelope)) => envelope,
            Ok(Frame::Hello) => return Next::Continue,
            Ok(Frame::Disconnect(Disconnect::Refresh)) => return Next::Refresh,
            Ok(Frame::Disconnect(Disconnect::LinkDisabled)) => return Next::Disabled,
            Ok(Frame::Disconnect(Disconnect::TooManyWebsockets)) => return Next::Crowded,
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
        if let Some(answer) = (self.answer)(&envelope.payload) {
            if let Err(e) = conn
                .send_text(frame::ack_with(&envelope.envelope_id, &answer))
                .await
            {
                return Next::Closed(e);
            }
            tracing::debug!(envelope_id = %id, "answered an interaction in its acknowledgement");
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

    #[test]
    fn a_failure_that_repeats_is_said_when_it_starts_repeats_and_ends() {
        let timing = Timing::default();
        let mut pace = Pace::new(&timing);
        let short = Duration::from_secs(1);
        assert_eq!(pace.connected(), Say::Connected);
        let mut said = Vec::new();
        for _ in 0..50 {
            let (failure, _) = pace.ended_after(short);
            assert!(failure);
            said.push(pace.failed("refresh"));
            pace.wait(false, Duration::ZERO);
            said.push(pace.connected());
        }
        said.retain(|s| *s != Say::Quiet);
        assert_eq!(said, [Say::Trouble, Say::ConnectedAgain, Say::Repeating]);
        assert_eq!(pace.attempt(), 50);
        // Another kind is said at once; a connection that lasted ends the trouble.
        assert_eq!(pace.failed("too_many_websockets"), Say::Trouble);
        assert_eq!(pace.failed("too_many_websockets"), Say::Quiet);
        assert_eq!(pace.ended_after(timing.stable_after), (false, Say::Quiet));
        assert_eq!(pace.attempt(), 0);
        assert_eq!(pace.failed("lost"), Say::Trouble);
    }

    #[test]
    fn too_many_websockets_waits_minutes() {
        let mut pace = Pace::new(&Timing::default());
        let wait = pace.wait(true, Duration::ZERO);
        assert!(wait >= Duration::from_secs(60), "{wait:?}");
        let normal = Pace::new(&Timing::default()).wait(false, Duration::ZERO);
        assert!(normal <= Duration::from_secs(1), "{normal:?}");
    }
}
