//! A Slack that asks for absurd waits: `Retry-After: 999999999` must not hold a webhook's
//! queue for decades. Any wait is capped at the retry cap (5 minutes), an ask above it is
//! logged once as suspicious, and `status` shows when each queue's head is next tried.

use crate::support;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use support::runner::eventually;
use support::{Fixture, GET_PIPELINE_STATE, SOON, SlackResponse, World};

/// The retry cap, as the README states it.
const CAP_MS: i64 = 5 * 60 * 1000;

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// (state, attempts, next_attempt_ms) of every outbox row, in order.
fn schedule(path: &Path) -> Vec<(String, i64, i64)> {
    let Ok(conn) =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return Vec::new();
    };
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let Ok(mut stmt) =
        conn.prepare("SELECT state, attempts, next_attempt_ms FROM outbox ORDER BY id")
    else {
        return Vec::new();
    };
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .and_then(|rows| rows.collect())
        .unwrap_or_default()
}

fn status_json(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("status --json: {e}\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_of_decades_is_capped_warned_once_and_shown_by_status() {
    let w = World::start(&["web-app", "api"]).await;
    w.slack
        .push_response(SlackResponse::rate_limited(999_999_999));
    w.aws.set_state("web-app", Fixture::Waiting);
    let mut daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    let asked_at = now_ms();
    assert!(
        eventually(SOON, || schedule(&w.env.state_path)
            .first()
            .is_some_and(|r| r.1 == 1))
        .await,
        "the 429 was not recorded"
    );
    let (state, _, next) = schedule(&w.env.state_path)[0].clone();
    assert_eq!(state, "pending");
    assert!(
        next <= asked_at + CAP_MS + 1_000 && next >= asked_at + CAP_MS - 10_000,
        "next try in {} s, expected the 300 s cap",
        (next - asked_at) / 1000
    );
    assert!(
        daemon.wait_for_stderr("suspicious Retry-After", SOON).await,
        "no warning about the Retry-After\n{}",
        daemon.stderr()
    );

    // A second approval queues behind the held head: nothing more reaches Slack meanwhile.
    w.aws.set_state("api", Fixture::Waiting);
    assert!(
        eventually(SOON, || schedule(&w.env.state_path).len() == 2).await,
        "the api alert was not queued"
    );
    let seen = w.aws.calls(GET_PIPELINE_STATE, "api");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "api", seen + 2, SOON)
            .await
    );
    assert_eq!(w.slack.request_count(), 1, "the queue's head was overtaken");

    let out = w.env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json = status_json(&out.stdout);
    let queues = json["queues"].as_array().expect("status --json has queues");
    assert_eq!(queues.len(), 1, "{json:#}");
    let q = &queues[0];
    assert_eq!(q["destination"], "default", "{json:#}");
    assert_eq!(q["pending"], 2, "{json:#}");
    assert_eq!(q["attempts"], 1, "{json:#}");
    assert_eq!(q["last_error"], "HTTP 429", "{json:#}");
    let shown: jiff::Timestamp = q["next_attempt_at"]
        .as_str()
        .expect("next_attempt_at")
        .parse()
        .expect("an RFC 3339 time");
    assert!(
        (shown.as_millisecond() - next).abs() < 1_000,
        "status shows {shown}, stored {next}"
    );

    let human = w.env.run(&["status"]).await;
    human.assert_code(0);
    let text = human.stdout_plain();
    let line = text
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with("default: 2 queued, next try in ")
        })
        .unwrap_or_else(|| panic!("no queue line\n{}", human.describe()));
    assert!(line.contains("last: HTTP 429"), "{line}");

    let out = daemon.terminate().await;
    out.assert_code(0);
    assert_eq!(
        out.stderr_lines_with(&["suspicious Retry-After"]).len(),
        1,
        "{}",
        out.describe()
    );
    let warning = &out.stderr_lines_with(&["suspicious Retry-After"])[0];
    assert!(
        warning.contains("WARN") && warning.contains("default"),
        "{warning}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_message_already_scheduled_decades_ahead_is_brought_within_the_cap() {
    let w = World::start(&["web-app"]).await;
    w.slack.set_default(SlackResponse::status(500, "down"));
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.once().await.assert_code(1);
    // As an older version left it after `Retry-After: 999999999`.
    let decades = now_ms() + 999_999_999 * 1000;
    {
        let conn = rusqlite::Connection::open(&w.env.state_path).unwrap();
        conn.execute("UPDATE outbox SET next_attempt_ms = ?1", [decades])
            .unwrap();
    }
    let before = now_ms();
    let out = w.env.once().await;
    out.assert_code(1);
    let rows = schedule(&w.env.state_path);
    assert_eq!(rows.len(), 1);
    assert!(
        rows[0].2 <= before + CAP_MS + 60_000,
        "still scheduled {} s ahead\n{}",
        (rows[0].2 - before) / 1000,
        out.describe()
    );
    assert!(
        !out.stderr_lines_with(&["further ahead than the retry cap"])
            .is_empty(),
        "{}",
        out.describe()
    );
    assert_eq!(w.slack.request_count(), 1, "only the first once posted");
}
