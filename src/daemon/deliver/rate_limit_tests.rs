//! A Slack that keeps asking for a day's wait: every retry comes within the cap, and the
//! suspicious ask is logged once per destination, not at every retry.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::SecretUrl;
use crate::store::{Changes, NewMessage, Store};
use approval_watch_core::model::{Approval, ApprovalKey, MessageKind};

/// A webhook that answers every request `429` with `Retry-After: 86400`; counts requests.
async fn always_rate_limited() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            // The client's request fits one read; its content does not matter.
            let mut buf = vec![0u8; 64 * 1024];
            let _ = socket.read(&mut buf).await;
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = socket
                .write_all(
                    b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 86400\r\n\
                      Content-Length: 12\r\nConnection: close\r\n\r\nrate_limited",
                )
                .await;
        }
    });
    (port, count)
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn approval() -> Approval {
    let at = Timestamp::now();
    Approval {
        key: ApprovalKey {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: "web-app".into(),
            stage: "Approve".into(),
            action: "Approve".into(),
            token: "t1".into(),
        },
        pipeline_execution_id: None,
        waiting_since: at,
        expires_at: at,
        custom_data: None,
        external_entity_link: None,
        revision: None,
    }
}

#[tokio::test]
async fn a_day_long_retry_after_is_capped_at_every_retry_and_warned_about_once() {
    let logs = Captured::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    let (port, requests) = always_rate_limited().await;
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("state.db")).unwrap();
    let message = NewMessage {
        kind: MessageKind::Alert,
        payload: serde_json::json!({"text": "hello"}),
        app: Default::default(),
    };
    let changes = Changes {
        new: vec![(approval(), message)],
        ..Changes::default()
    };
    store.record(&changes, Timestamp::now()).unwrap();
    let webhook = SecretUrl::parse("test", &format!("http://127.0.0.1:{port}/hook")).unwrap();
    let config = Config::parse(
        "[slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"\n[[pipeline]]\nname = \"web-app\"\n",
        std::path::Path::new("test.toml"),
    )
    .unwrap();
    let transport = Transport::Slack {
        client: SlackClient::new().unwrap(),
        webhooks: vec![Some(webhook)],
        api: None,
    };
    let mut deliverer = Deliverer::new(transport, &config, Clock::System);
    let shutdown = CancellationToken::new();

    let mut now = Timestamp::now();
    for pass in 1..=3 {
        let report = deliverer.deliver_due(&store, now, &shutdown).await.unwrap();
        assert_eq!(report.deferred, 1, "pass {pass}");
        assert_eq!(requests.load(Ordering::SeqCst), pass);
        let next = store.pending(1).unwrap()[0].next_attempt_at;
        assert!(
            next.duration_since(Timestamp::now()) <= SignedDuration::from_secs(301),
            "pass {pass}: next try {next}"
        );
        // The cap has passed: the message is due again.
        now = next + SignedDuration::from_secs(1);
    }
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let warnings = text.matches("suspicious Retry-After").count();
    assert_eq!(warnings, 1, "{text}");
    assert_eq!(
        text.matches("Slack rate limit (HTTP 429)").count(),
        3,
        "{text}"
    );
}
