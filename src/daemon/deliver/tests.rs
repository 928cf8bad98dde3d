//! The deliverer's tests: the retry rhythm, the rate limits, a reload's hand-over, and a
//! Slack that keeps asking for a day's wait (every retry comes within the cap, and the
//! suspicious ask is logged once per destination, not at every retry).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::store::{Changes, NewMessage};
use approval_watch_core::model::{Approval, ApprovalKey};

#[test]
fn backoff_starts_within_5s_doubles_and_caps_at_5min() {
    let waits: Vec<u64> = (0..10).map(|a| backoff(a).as_secs()).collect();
    assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
    assert_eq!(backoff(u32::MAX), Duration::from_secs(300));
}

#[test]
fn a_rate_limit_wait_is_capped_and_an_ask_over_the_cap_is_flagged() {
    assert_eq!(rate_limit_wait(None), (DEFAULT_RATE_LIMIT_WAIT, false));
    assert_eq!(
        rate_limit_wait(Some(Duration::from_secs(30))),
        (Duration::from_secs(30), false)
    );
    assert_eq!(rate_limit_wait(Some(RETRY_CAP)), (RETRY_CAP, false));
    for asked in [86_400, 999_999_999, u64::MAX] {
        assert_eq!(
            rate_limit_wait(Some(Duration::from_secs(asked))),
            (RETRY_CAP, true),
            "{asked}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn rate_limiter_allows_a_burst_then_one_per_second() {
    let shutdown = CancellationToken::new();
    let mut limiter = RateLimiter::new();
    let start = Instant::now();
    for _ in 0..3 {
        assert!(limiter.acquire(&shutdown).await);
    }
    assert!(start.elapsed() < Duration::from_millis(10));
    assert!(limiter.acquire(&shutdown).await);
    assert!(limiter.acquire(&shutdown).await);
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1990) && elapsed < Duration::from_millis(2100),
        "{elapsed:?}"
    );
    shutdown.cancel();
    assert!(!limiter.acquire(&shutdown).await);
}

#[tokio::test(start_paused = true)]
async fn a_new_deliverer_takes_over_unmarked_deliveries_and_rate_limits() {
    let shutdown = CancellationToken::new();
    let config = Config::parse(
        "[slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"\n[[pipeline]]\nname = \"p\"\n",
        std::path::Path::new("test.toml"),
    )
    .expect("config");
    let deliverer = || Deliverer::new(Transport::Capture(Vec::new()), &config, Clock::System);
    let mut old = deliverer();
    old.unmarked.insert(7, Timestamp::UNIX_EPOCH);
    let mut spent = RateLimiter::new();
    for _ in 0..3 {
        assert!(spent.acquire(&shutdown).await);
    }
    old.limiters.insert("default".into(), spent);
    let mut new = deliverer();
    new.take_over(old);
    assert_eq!(new.unmarked.get(&7), Some(&Timestamp::UNIX_EPOCH));
    // The burst was spent before the reload: the next message still waits its turn.
    let limiter = new.limiters.get_mut("default").expect("limiter kept");
    let start = Instant::now();
    assert!(limiter.acquire(&shutdown).await);
    assert!(
        start.elapsed() >= Duration::from_millis(900),
        "{:?}",
        start.elapsed()
    );
}

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
