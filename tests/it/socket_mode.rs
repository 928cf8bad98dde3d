//! The Socket Mode connection (`socket_mode::spawn_with`) in-process against the fake Web API
//! (`apps.connections.open`) and the fake Socket Mode server: envelopes acknowledged before
//! anyone reads them, clicks passed on, a full queue leaves a click unacknowledged, refresh
//! opens the next connection before the old one closes, a lost connection is reopened,
//! `link_disabled` stops for good, errors back off, hostile frames cost at most a reconnect,
//! and neither the app token nor the ticket reaches a log at debug.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use approval_watch::config::{AppLevelToken, Token};
use approval_watch::slack::socket_mode::{
    self, ConnectionOpener, ConnectionState, Interaction, SocketMode, Timing,
};
use serde_json::{Value, json};
use support::SOON;
use support::fake_slack_api::{APP_TOKEN, ApiAnswer, FakeSlackApi, TICKET_MARK};
use support::fake_socket_mode::FakeSocketMode;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

const OPEN: &str = "apps.connections.open";

/// Production timing but for a short backoff, so a reconnect takes milliseconds.
fn timing(backoff_base: Duration) -> Timing {
    Timing {
        backoff_base,
        backoff_cap: backoff_base * 8,
        ..Timing::default()
    }
}

struct Rig {
    api: FakeSlackApi,
    socket: FakeSocketMode,
    mode: SocketMode,
    clicks: mpsc::Receiver<Interaction>,
    shutdown: CancellationToken,
}

impl Rig {
    async fn start(queue: usize, backoff_base: Duration) -> Self {
        Self::start_with(queue, backoff_base, |_| {}).await
    }

    /// `script` runs on the fake Web API before the task starts (errors to answer first).
    async fn start_with(
        queue: usize,
        backoff_base: Duration,
        script: impl FnOnce(&FakeSlackApi),
    ) -> Self {
        Self::start_timed(queue, timing(backoff_base), script).await
    }

    async fn start_timed(queue: usize, timing: Timing, script: impl FnOnce(&FakeSlackApi)) -> Self {
        let api = FakeSlackApi::start().await;
        let socket = FakeSocketMode::start().await;
        api.set_socket_url(socket.link_url());
        script(&api);
        let base = url::Url::parse(&format!("{}/", api.url())).expect("api url");
        let token =
            AppLevelToken::parse("slack.approvals.app_token_env", APP_TOKEN).expect("token");
        let opener = ConnectionOpener::new(base, token)
            .expect("client")
            .with_token_key("slack.approvals.app_token_env");
        let (tx, clicks) = mpsc::channel(queue);
        let shutdown = CancellationToken::new();
        let mode = socket_mode::spawn_with(opener, tx, shutdown.clone(), timing).expect("spawn");
        Rig {
            api,
            socket,
            mode,
            clicks,
            shutdown,
        }
    }

    async fn wait_state(&mut self, what: &str, cond: impl FnMut(&ConnectionState) -> bool) {
        let waited = tokio::time::timeout(SOON, self.mode.state.wait_for(cond))
            .await
            .map(|r| r.is_ok());
        match waited {
            Ok(true) => {}
            Ok(false) => panic!("the task ended before the state was {what}"),
            Err(_) => panic!("the state is {:?}, not {what}", *self.mode.state.borrow()),
        }
    }

    async fn connected(&mut self) {
        self.wait_state("connected", |s| *s == ConnectionState::Connected)
            .await;
    }

    async fn next_click(&mut self) -> Interaction {
        tokio::time::timeout(SOON, self.clicks.recv())
            .await
            .expect("a click within SOON")
            .expect("the channel is open")
    }

    /// Shuts down; the task ends with the state `Stopped`.
    async fn stop(self) -> FakeHandles {
        self.shutdown.cancel();
        let state = self.mode.state.clone();
        tokio::time::timeout(SOON, self.mode.stopped())
            .await
            .expect("the task stops promptly");
        assert_eq!(*state.borrow(), ConnectionState::Stopped);
        FakeHandles {
            api: self.api,
            socket: self.socket,
        }
    }
}

struct FakeHandles {
    api: FakeSlackApi,
    socket: FakeSocketMode,
}

fn click(user: &str) -> Value {
    json!({
        "type": "block_actions",
        "user": {"id": user, "name": "someone"},
        "trigger_id": "123.456.abc",
        "actions": [{"action_id": "approve", "value": "42", "action_ts": "1700000000.1"}],
    })
}

#[tokio::test]
async fn an_envelope_is_acked_within_3s_before_anyone_reads_it_then_passed_on() {
    let mut rig = Rig::start(8, Duration::from_millis(50)).await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    let path = &rig.socket.connections()[conn].path;
    assert!(path.starts_with("/link/?ticket=XTICKETX-1"), "{path}");

    // Nobody reads the channel: the ack must come anyway, and quickly.
    let id = rig.socket.push_interactive(conn, click("U0ALLOWED"));
    let ack = rig.socket.wait_for_ack(&id, SOON).await;
    let pushed = rig.socket.pushed_at(&id).expect("pushed");
    assert!(
        ack.at.duration_since(pushed) < Duration::from_secs(3),
        "acked after {:?}",
        ack.at.duration_since(pushed)
    );
    assert_eq!(ack.connection, conn);

    let got = rig.next_click().await;
    assert_eq!(got.envelope_id, id);
    assert_eq!(got.payload, click("U0ALLOWED"));
    assert_eq!(got.retry_attempt, 0);

    // Other envelope types are acknowledged and not passed on.
    let event = rig
        .socket
        .push_envelope(conn, "events_api", json!({"type": "event_callback"}));
    rig.socket.wait_for_ack(&event, SOON).await;
    let second = rig.socket.push_interactive(conn, click("U0SECOND"));
    assert_eq!(rig.next_click().await.envelope_id, second);
    assert!(rig.socket.other_texts().is_empty());

    let fakes = rig.stop().await;
    fakes.socket.wait_for_close(conn, SOON).await;
    let calls = fakes.api.calls(OPEN);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].bearer(), Some(APP_TOKEN));
}

#[tokio::test]
async fn a_full_queue_leaves_the_click_unacked_so_slack_delivers_it_again() {
    let mut rig = Rig::start(1, Duration::from_millis(50)).await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    let first = rig.socket.push_interactive(conn, click("U1"));
    rig.socket.wait_for_ack(&first, SOON).await;
    // The queue (one place) is full now: the next click must not be acknowledged…
    let second = rig.socket.push_interactive(conn, click("U2"));
    // …which is known once an envelope sent after it was acknowledged (frames are in order).
    let later = rig.socket.push_envelope(conn, "events_api", json!({}));
    rig.socket.wait_for_ack(&later, SOON).await;
    assert!(
        rig.socket.acks().iter().all(|a| a.envelope_id != second),
        "a click that could not be queued was acknowledged: {:?}",
        rig.socket.acks()
    );
    // Slack delivers it again; with room in the queue it is taken.
    assert_eq!(rig.next_click().await.envelope_id, first);
    let again = rig.socket.push_interactive(conn, click("U2"));
    rig.socket.wait_for_ack(&again, SOON).await;
    assert_eq!(rig.next_click().await.payload, click("U2"));
    rig.stop().await;
}

#[tokio::test]
async fn refresh_requested_opens_the_next_connection_before_closing_the_old() {
    let mut rig = Rig::start(8, Duration::from_millis(50)).await;
    rig.connected().await;
    let old = rig.socket.wait_for_connection(0, SOON).await;
    rig.socket.disconnect(old, "refresh_requested");
    let new = rig.socket.wait_for_connection(1, SOON).await;
    let closed = rig.socket.wait_for_close(old, SOON).await;
    let opened = rig.socket.connections()[new].opened;
    assert!(
        opened < closed,
        "the new connection opened {:?} after the old one closed",
        opened.duration_since(closed)
    );
    assert_eq!(*rig.mode.state.borrow(), ConnectionState::Connected);
    let id = rig.socket.push_interactive(new, click("U0AFTER"));
    assert_eq!(rig.next_click().await.envelope_id, id);
    assert_eq!(rig.socket.wait_for_ack(&id, SOON).await.connection, new);

    // `warning` is a refresh too.
    rig.socket.disconnect(new, "warning");
    let third = rig.socket.wait_for_connection(2, SOON).await;
    rig.socket.wait_for_close(new, SOON).await;
    let id = rig.socket.push_interactive(third, click("U0THIRD"));
    assert_eq!(rig.next_click().await.envelope_id, id);
    let fakes = rig.stop().await;
    assert_eq!(fakes.api.calls(OPEN).len(), 3);
}

#[tokio::test]
async fn a_dropped_connection_is_reopened_and_the_next_click_arrives() {
    let mut rig = Rig::start(8, Duration::from_millis(50)).await;
    rig.connected().await;
    let first = rig.socket.wait_for_connection(0, SOON).await;
    rig.socket.drop_connection(first);
    rig.wait_state("retrying after the drop", |s| {
        matches!(s, ConnectionState::Retrying { attempt: 1, .. })
    })
    .await;
    let second = rig.socket.wait_for_connection(1, SOON).await;
    rig.connected().await;
    let id = rig.socket.push_interactive(second, click("U0AGAIN"));
    assert_eq!(rig.next_click().await.envelope_id, id);
    let fakes = rig.stop().await;
    assert_eq!(fakes.api.calls(OPEN).len(), 2);
}

#[tokio::test]
async fn link_disabled_stops_all_attempts_until_a_reload() {
    let mut rig = Rig::start(8, Duration::from_millis(10)).await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    rig.socket.disconnect(conn, "link_disabled");
    rig.wait_state("disabled", |s| *s == ConnectionState::Disabled)
        .await;
    rig.socket.wait_for_close(conn, SOON).await;
    // The task is idle until shutdown; once it has ended nothing can call again.
    let fakes = rig.stop().await;
    assert_eq!(fakes.api.calls(OPEN).len(), 1);
    assert_eq!(fakes.socket.connections().len(), 1);
}

#[tokio::test]
async fn open_errors_are_retried_with_backoff_and_always_the_app_token() {
    let base = Duration::from_millis(300);
    let mut rig = Rig::start_with(8, base, |api| {
        api.push(OPEN, ApiAnswer::error("invalid_auth"));
        api.push(
            OPEN,
            ApiAnswer::Http {
                status: 503,
                retry_after: None,
            },
        );
        api.push(
            OPEN,
            ApiAnswer::Http {
                status: 429,
                retry_after: Some(1),
            },
        );
    })
    .await;
    rig.wait_state("retrying on invalid_auth", |s| {
        matches!(s, ConnectionState::Retrying { attempt: 1, error } if error.contains("invalid_auth"))
    })
    .await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    let id = rig.socket.push_interactive(conn, click("U0LATE"));
    assert_eq!(rig.next_click().await.envelope_id, id);

    let calls = rig.api.calls(OPEN);
    assert_eq!(
        calls.len(),
        4,
        "{:?}",
        support::fake_slack_api::summarize(&calls)
    );
    assert!(calls.iter().all(|c| c.bearer() == Some(APP_TOKEN)));
    // Waits of at least half the doubling step: base/2, then base; then Slack's Retry-After.
    let gaps: Vec<Duration> = calls.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= base / 2, "{gaps:?}");
    assert!(gaps[1] >= base, "{gaps:?}");
    assert!(gaps[2] >= Duration::from_secs(1), "{gaps:?}");
    rig.stop().await;
}

#[tokio::test]
async fn a_ws_url_to_another_host_is_refused_without_connecting() {
    let mut rig = Rig::start_with(8, Duration::from_millis(50), |api| {
        api.push(
            OPEN,
            ApiAnswer::Raw {
                status: 200,
                body: r#"{"ok":true,"url":"ws://192.0.2.1/link/?ticket=XTICKETX-remote"}"#.into(),
            },
        );
    })
    .await;
    rig.wait_state("retrying on the plain-text URL", |s| {
        matches!(s, ConnectionState::Retrying { error, .. }
            if error.contains("ws://") && !error.contains(TICKET_MARK))
    })
    .await;
    rig.connected().await;
    rig.stop().await;
}

#[tokio::test]
async fn hostile_frames_are_ignored_and_a_huge_one_costs_only_a_reconnect() {
    let mut rig = Rig::start(8, Duration::from_millis(50)).await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    let deep = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let deep_object = format!(
        "{{\"envelope_id\":\"x\",\"payload\":{}1{}}}",
        "[".repeat(50_000),
        "]".repeat(50_000)
    );
    for text in [
        "not json at all".to_owned(),
        "\u{1b}[31m{\"type\":\"hello\"\u{7}\r\n".to_owned(),
        deep,
        deep_object,
        "[]".to_owned(),
        r#"{"type":"interactive","envelope_id":12}"#.to_owned(),
        r#"{"type":"interactive"}"#.to_owned(),
        json!({"type": "mystery\u{1b}[2J", "x": 1}).to_string(),
    ] {
        rig.socket.send(conn, Message::text(text));
    }
    rig.socket
        .send(conn, Message::binary(vec![0u8, 159, 146, 150]));
    let id = rig.socket.push_interactive(conn, click("U0STILL"));
    assert_eq!(rig.next_click().await.envelope_id, id);
    assert_eq!(rig.socket.connections().len(), 1, "no reconnect for junk");

    // 2 MiB is above the 1 MiB bound: that connection ends, the next one works.
    rig.socket
        .send(conn, Message::text("x".repeat(2 * 1024 * 1024)));
    rig.socket.wait_for_close(conn, SOON).await;
    let next = rig.socket.wait_for_connection(1, SOON).await;
    rig.connected().await;
    let id = rig.socket.push_interactive(next, click("U0AFTERHUGE"));
    assert_eq!(rig.next_click().await.envelope_id, id);
    rig.stop().await;
}

#[tokio::test]
async fn pings_keep_a_quiet_link_and_a_silent_one_is_replaced() {
    let timing = Timing {
        ping_every: Duration::from_millis(50),
        silence_limit: Duration::from_millis(400),
        ..timing(Duration::from_millis(50))
    };
    let mut rig = Rig::start_timed(8, timing, |_| {}).await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    // Pings answered for well over the silence limit: the link stays.
    rig.socket
        .wait_until(SOON, |c, _| c[conn].pings >= 20)
        .await;
    assert_eq!(rig.socket.connections().len(), 1);
    assert!(rig.socket.connections()[conn].closed.is_none());
    // No answer at all: after the silence limit it counts as lost, and a new one opens.
    rig.socket.mute(conn);
    rig.wait_state(
        "retrying after the silence",
        |s| matches!(s, ConnectionState::Retrying { error, .. } if error.contains("no frame")),
    )
    .await;
    let next = rig.socket.wait_for_connection(1, SOON).await;
    rig.connected().await;
    let id = rig.socket.push_interactive(next, click("U0PINGED"));
    assert_eq!(rig.next_click().await.envelope_id, id);
    rig.socket.drop_connection(conn);
    rig.stop().await;
}

/// A server that ends every connection right after its `hello` (Slack's
/// `too_many_websockets`, a refresh that keeps coming, a bare close) must not make the task
/// open connection after connection: with production timing, a handful in 10 s, each reason
/// in its own rig, all at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_disconnects_right_after_hello_gets_a_handful_of_connections() {
    const WINDOW: Duration = Duration::from_secs(10);
    let reasons = [
        Some("too_many_websockets"),
        Some("refresh_requested"),
        Some("warning"),
        Some("something_new"),
        None,
    ];
    let rigs = reasons.map(|reason| async move {
        let rig = Rig::start_timed(8, Timing::default(), |_| {}).await;
        rig.socket.end_after_hello(reason);
        rig.socket.wait_for_connection(0, SOON).await;
        // The measure is what happens in the window, so it is waited out.
        tokio::time::sleep(WINDOW).await;
        let state = rig.mode.state.borrow().clone();
        let fakes = rig.stop().await;
        (
            reason,
            fakes.socket.connections().len(),
            fakes.api.calls(OPEN).len(),
            state,
        )
    });
    let seen = futures_util::future::join_all(rigs).await;
    for (reason, connections, opens, state) in &seen {
        // 1 s base, upper-half jitter: waits of at least 0.5, 1, 2, 4 s fit 5 attempts in 10 s.
        assert!(
            *connections <= 5 && *opens <= 5,
            "{reason:?}: {connections} connections, {opens} opens in {WINDOW:?}: {seen:?}"
        );
        if *reason == Some("too_many_websockets") {
            assert_eq!(
                *connections, 1,
                "minutes after too_many_websockets: {seen:?}"
            );
            assert!(
                matches!(state, ConnectionState::Retrying { error, .. }
                    if error.contains("another process")),
                "{state:?}"
            );
        }
    }
}

/// Every log line of the process (tracing, and the `log` records of the WebSocket library).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// The process-wide subscriber at debug (so this test runs in a process of its own).
    fn install(&self) {
        let logs = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || logs.clone())
            .try_init()
            .expect("the only subscriber in this process");
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

const ALONE: &str = "socket_mode::the_app_token_and_the_ticket_never_reach_the_logs";

/// In a process of its own: a global subscriber sees every thread, and other tests' events
/// cannot race this one's.
#[test]
fn the_app_token_and_the_ticket_never_reach_the_logs() {
    if !support::isolated::is_alone(ALONE) {
        return support::isolated::run_alone(ALONE);
    }
    let logs = Logs::default();
    logs.install();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(connect_refresh_drop_and_fail());

    let text = logs.text();
    assert!(text.contains("Socket Mode connected"), "{text}");
    assert!(
        text.contains("xapp-") && text.contains("connections:write"),
        "advice: {text}"
    );
    assert!(text.contains("slack.approvals.app_token_env"), "{text}");
    assert!(text.contains("refreshed"), "{text}");
    assert!(text.contains("ignored a Socket Mode frame"), "{text}");
    assert!(
        !text.contains(APP_TOKEN),
        "the app token is in the logs:\n{text}"
    );
    assert!(
        !text.contains(TICKET_MARK),
        "a ticket is in the logs:\n{text}"
    );
}

async fn connect_refresh_drop_and_fail() {
    let mut rig = Rig::start_with(8, Duration::from_millis(20), |api| {
        api.push(OPEN, ApiAnswer::error("not_allowed_token_type"));
        api.push(
            OPEN,
            ApiAnswer::Raw {
                status: 200,
                body: format!(r#"{{"ok":false,"error":"{APP_TOKEN}"}}"#),
            },
        );
    })
    .await;
    rig.connected().await;
    let conn = rig.socket.wait_for_connection(0, SOON).await;
    rig.socket.send(conn, Message::text("junk"));
    let id = rig.socket.push_interactive(conn, click("U0LOG"));
    rig.next_click().await;
    rig.socket.wait_for_ack(&id, SOON).await;
    rig.socket.disconnect(conn, "refresh_requested");
    let next = rig.socket.wait_for_connection(1, SOON).await;
    rig.socket.wait_for_close(conn, SOON).await;
    rig.socket.drop_connection(next);
    rig.socket.wait_for_connection(2, SOON).await;
    rig.connected().await;
    rig.stop().await;
}
