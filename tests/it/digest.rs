//! The daily digest with injected time: the loop runs in-process on tokio's paused clock
//! started at a chosen instant, with the real SDK, SQLite files and HTTP to the fakes. Once a
//! day per destination, catch-up the same day only, nothing when nothing waits, per-route
//! overrides and `digest = false`, a DST day; `once --dry-run` (the real binary) shows a
//! digest that is due.

use crate::support;

use std::path::Path;
use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch::daemon::startup;
use approval_watch::daemon::{self, Options};
use jiff::Timestamp;
use serde_json::Value;
use support::payload::{all_text, assert_block_kit};
use support::{FakeCodePipeline, FakeSlack, Fixture, SlackResponse, World};
use tokio_util::sync::CancellationToken;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn is_digest(p: &Value) -> bool {
    all_text(p).contains("Daily digest")
}

fn digests(slack: &FakeSlack) -> Vec<Value> {
    slack.delivered().into_iter().filter(is_digest).collect()
}

/// Runs the loop from `start` for `run_for` (paused time), over the config `text`.
async fn run_from(text: &str, dir: &Path, start: Timestamp, run_for: Duration) {
    support::static_credentials();
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, text).expect("config");
    let config = Config::load(&config_path).expect("valid config");
    let clock = Clock::tokio_at(start);
    let daemon = startup::daemon(config, clock).await.expect("daemon");
    let shutdown = CancellationToken::new();
    let options = Options {
        notifier: Default::default(),
        reloads: Box::pin(futures_util::stream::pending()),
        config_path,
        clock,
    };
    let stop = async {
        tokio::time::sleep(run_for).await;
        shutdown.cancel();
    };
    let (result, ()) = tokio::join!(daemon::run(daemon, options, shutdown.clone()), stop);
    result.expect("the loop ends and closes the database");
}

fn base(aws: &FakeCodePipeline, slack: &FakeSlack, dir: &Path, pipelines: &[&str]) -> String {
    let mut text = format!(
        "poll_interval = \"30s\"\nidle_poll_interval = \"30s\"\nstate_path = \"{}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n[slack]\nwebhook_url = \"{}\"\n\
         [reminders]\nmax = 0\n\
         [digest]\nat = \"09:30\"\ntimezone = \"Europe/London\"\n\
         days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]\n",
        dir.join("state.db").display(),
        aws.endpoint(),
        slack.url()
    );
    for p in pipelines {
        text.push_str(&format!("[[pipeline]]\nname = \"{p}\"\n"));
    }
    text
}

#[tokio::test(start_paused = true)]
async fn the_days_digest_goes_once_listing_everything_waiting_oldest_first() {
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "api", "quiet"]).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // Tuesday 1 December 2026, GMT: api has waited since 07:00, web-app since 08:00.
    aws.set_waiting_since(
        "api",
        "tok-api",
        ts("2026-12-01T07:00:00Z").as_second() as f64,
    );
    aws.set_waiting_since(
        "web-app",
        "tok-web",
        ts("2026-12-01T08:00:00Z").as_second() as f64,
    );
    let text = base(&aws, &slack, dir.path(), &["web-app", "api", "quiet"]);
    // 09:00 to 11:00: the digest at the first cycle from 09:30, and no other.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-01T09:00:00Z"),
        Duration::from_secs(2 * 3600),
    )
    .await;
    let sent = digests(&slack);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    let digest = &sent[0];
    assert_block_kit(digest);
    let body = all_text(digest);
    assert!(body.contains("2 approvals waiting"), "{body}");
    let api = body.find("api / ").expect("api listed");
    let web = body.find("web-app / ").expect("web-app listed");
    assert!(api < web, "oldest first: {body}");
    assert!(
        body.contains("waited 2 h 30 min") || body.contains("waited 2h"),
        "{body}"
    );
    assert!(
        body.contains("0 reminders sent") && body.contains("|Review>"),
        "{body}"
    );
    assert!(!body.contains("quiet"), "{body}");
    // Alerts first (at 09:00), the digest at 09:30.
    assert_eq!(slack.delivered_count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_missed_digest_is_caught_up_the_same_day_only() {
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    aws.set_waiting_since(
        "web-app",
        "tok-1",
        ts("2026-12-01T08:00:00Z").as_second() as f64,
    );
    let text = base(&aws, &slack, dir.path(), &["web-app"]);
    // Down all Tuesday morning; started at 08:00 on Wednesday: Tuesday's is not sent, and
    // Wednesday's not before 09:30.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-02T08:00:00Z"),
        Duration::from_secs(3600),
    )
    .await;
    assert_eq!(digests(&slack).len(), 0);
    // Down from 09:00; started at 11:00: the day's digest at once.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-02T11:00:00Z"),
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(digests(&slack).len(), 1);
    // Restarted the same afternoon: not again.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-02T15:00:00Z"),
        Duration::from_secs(600),
    )
    .await;
    assert_eq!(digests(&slack).len(), 1);
    // Thursday morning: Thursday's.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-03T09:29:00Z"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(digests(&slack).len(), 2);
}

/// Slack has refused digests far below its documented 40,000 characters: a digest refused
/// as too long goes again once, with half its lines, and says so; the alerts are untouched.
#[tokio::test(start_paused = true)]
async fn a_digest_slack_refuses_as_too_long_goes_again_shorter() {
    let names: Vec<String> = (0..30).map(|i| format!("service-{i:02}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let aws = FakeCodePipeline::with_pipelines(&names).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, p) in names.iter().enumerate() {
        let since = ts("2026-12-01T07:00:00Z").as_second() + 60 * i as i64;
        aws.set_waiting_since(p, &format!("tok-{p}"), since as f64);
    }
    slack.refuse_longer_than(8_000, SlackResponse::status(400, "msg_too_long"));
    let text = base(&aws, &slack, dir.path(), &names);
    // The alerts first (at about one a second), the digest from 09:30.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-01T09:29:00Z"),
        Duration::from_secs(300),
    )
    .await;
    let refused: Vec<_> = slack
        .requests()
        .into_iter()
        .filter(|r| r.status == 400)
        .collect();
    assert_eq!(refused.len(), 1, "only the full digest is refused");
    assert!(refused[0].body.contains("Daily digest"));
    let sent = digests(&slack);
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_block_kit(&sent[0]);
    let body = all_text(&sent[0]);
    assert!(body.contains("30 approvals waiting"), "{body}");
    assert!(body.contains("shortened"), "{body}");
    let shown = body.matches("|Review>").count();
    assert!(shown > 0 && shown < 30, "{shown} lines shown: {body}");
    assert!(
        body.contains(&format!("and {} more", 30 - shown)),
        "the rest counted: {body}"
    );
    assert_eq!(slack.delivered_count(), 31, "30 alerts and the digest");
}

#[tokio::test(start_paused = true)]
async fn nothing_is_sent_when_nothing_waits() {
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = base(&aws, &slack, dir.path(), &["web-app"]);
    run_from(
        &text,
        dir.path(),
        ts("2026-12-01T09:00:00Z"),
        Duration::from_secs(3600),
    )
    .await;
    assert_eq!(slack.request_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn routes_override_the_digest_key_by_key_or_turn_it_off() {
    let aws = FakeCodePipeline::with_pipelines(&["web-app", "payments-api", "ops-tool"]).await;
    let default = FakeSlack::start().await;
    let payments = FakeSlack::start().await;
    let ops = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let since = ts("2026-12-01T06:00:00Z").as_second() as f64;
    for p in ["web-app", "payments-api", "ops-tool"] {
        aws.set_waiting_since(p, &format!("tok-{p}"), since);
    }
    let mut text = base(
        &aws,
        &default,
        dir.path(),
        &["web-app", "payments-api", "ops-tool"],
    );
    text.push_str(&format!(
        "[[route]]\nname = \"payments\"\npipelines = [\"payments-*\"]\nwebhook_url = \"{}\"\n\
         [route.digest]\nat = \"11:00\"\n\
         [[route]]\nname = \"ops\"\npipelines = [\"ops-*\"]\nwebhook_url = \"{}\"\ndigest = false\n",
        payments.url(),
        ops.url()
    ));
    // Tuesday 09:00 to 10:00: the default route's digest; payments' waits for 11:00.
    run_from(
        &text,
        dir.path(),
        ts("2026-12-01T09:00:00Z"),
        Duration::from_secs(3600),
    )
    .await;
    assert_eq!(digests(&default).len(), 1);
    assert!(all_text(&digests(&default)[0]).contains("1 approval waiting"));
    assert_eq!(digests(&payments).len(), 0);
    run_from(
        &text,
        dir.path(),
        ts("2026-12-01T10:59:00Z"),
        Duration::from_secs(120),
    )
    .await;
    let sent = digests(&payments);
    assert_eq!(sent.len(), 1);
    assert!(all_text(&sent[0]).contains("payments-api"));
    assert_eq!(digests(&ops).len(), 0, "digest = false");
    assert_eq!(digests(&default).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn on_the_day_clocks_go_forward_the_digest_keeps_local_time() {
    let aws = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    aws.set_waiting_since(
        "web-app",
        "tok-1",
        ts("2026-03-29T06:00:00Z").as_second() as f64,
    );
    let text = base(&aws, &slack, dir.path(), &["web-app"]).replace(
        "days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
        "days = [\"sun\"]",
    );
    // Sunday 29 March 2026: BST from 01:00 UTC, so 09:30 local is 08:30 UTC.
    run_from(
        &text,
        dir.path(),
        ts("2026-03-29T08:00:00Z"),
        Duration::from_secs(29 * 60),
    )
    .await;
    assert_eq!(digests(&slack).len(), 0, "09:29 BST");
    run_from(
        &text,
        dir.path(),
        ts("2026-03-29T08:29:00Z"),
        Duration::from_secs(120),
    )
    .await;
    assert_eq!(digests(&slack).len(), 1, "09:30 BST");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_shows_a_due_digest_and_sends_nothing() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    // Due all day, every day: "00:00" UTC.
    let text = w
        .env
        .config_text()
        .replace("\n[aws]\n", "\n[digest]\nat = \"00:00\"\n\n[aws]\n");
    w.env.write_raw_config(&text);
    let out = w.env.dry_run().await;
    out.assert_code(0);
    let kinds: Vec<String> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line")["kind"].to_string())
        .collect();
    assert_eq!(kinds, ["\"alert\"", "\"digest\""], "{}", out.describe());
    assert_eq!(w.slack.request_count(), 0);
    // The real cycle sends what the dry run showed, and only once a day.
    w.env.once().await.assert_code(0);
    assert_eq!(digests(&w.slack).len(), 1);
    w.env.once().await.assert_code(0);
    assert_eq!(digests(&w.slack).len(), 1);
}
