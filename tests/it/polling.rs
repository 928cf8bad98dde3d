//! Adaptive polling spends the budget: a small fleet has its idle pipelines read every
//! `poll_interval` (an approval on one is alerted within it); a fleet past `idle_budget_share`
//! has its idle reads stretched just enough, while running pipelines are still read every
//! `poll_interval`. The loop runs in-process on tokio's paused clock, with the real SDK,
//! SQLite and HTTP to the fakes; `check-config` and `status` run as the real binary.

use crate::support;

use std::path::Path;
use std::time::Duration;

use approval_watch::clock::Clock;
use approval_watch::config::Config;
use approval_watch::daemon::startup;
use approval_watch::daemon::{self, Options};
use jiff::Timestamp;
use support::{FakeCodePipeline, FakeSlack, GET_PIPELINE_STATE, World};
use tokio_util::sync::CancellationToken;

fn config_text(
    aws: &FakeCodePipeline,
    slack: &FakeSlack,
    state: &Path,
    aws_extra: &str,
    pipelines: &[String],
) -> String {
    let mut text = format!(
        "poll_interval = \"30s\"\nidle_poll_interval = \"2m\"\nstate_path = \"{}\"\n\
         [aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n{aws_extra}\n\
         [slack]\nwebhook_url = \"{}\"\n[reminders]\nmax = 0\n",
        state.display(),
        aws.endpoint(),
        slack.url(),
    );
    for p in pipelines {
        text.push_str(&format!("[[pipeline]]\nname = \"{p}\"\n"));
    }
    text
}

/// The daemon loop on paused time beside `steps`, which ends by cancelling `shutdown`.
async fn run_loop(
    text: &str,
    dir: &Path,
    steps: impl std::future::Future<Output = ()>,
    shutdown: CancellationToken,
) {
    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, text).expect("config");
    let config = Config::load(&config_path).expect("valid config");
    let clock = Clock::tokio_at(Timestamp::now());
    let daemon = startup::daemon(config, clock).await.expect("daemon");
    let options = Options {
        notifier: Default::default(),
        reloads: Box::pin(futures_util::stream::pending()),
        config_path,
        clock,
    };
    let (result, ()) = tokio::join!(daemon::run(daemon, options, shutdown), steps);
    result.expect("the loop ends and closes the database");
}

fn names(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("p{i}")).collect()
}

#[tokio::test(start_paused = true)]
async fn a_small_fleet_alerts_an_approval_on_an_idle_pipeline_within_poll_interval() {
    support::static_credentials();
    let pipelines = names(5);
    let refs: Vec<&str> = pipelines.iter().map(String::as_str).collect();
    let aws = FakeCodePipeline::with_pipelines(&refs).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // 5 reads per 30 s is 0.17 requests/s, within 20% of 10/s: idle pipelines every 30 s.
    let text = config_text(&aws, &slack, &dir.path().join("state.db"), "", &pipelines);
    let shutdown = CancellationToken::new();
    let steps = async {
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert_eq!(aws.calls(GET_PIPELINE_STATE, "p3"), 2, "read at 0 and 30 s");
        assert_eq!(slack.delivered_count(), 0);
        // An approval appears on idle p3 at 45 s; the cycle at 60 s finds it (with a 2-minute
        // idle rhythm it would wait until 120 s).
        aws.set_state("p3", support::Fixture::Waiting);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(slack.delivered_count(), 1, "alerted within poll_interval");
        for p in ["p1", "p2", "p4", "p5"] {
            assert_eq!(aws.calls(GET_PIPELINE_STATE, p), 3, "{p} read every cycle");
        }
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
}

#[tokio::test(start_paused = true)]
async fn a_fleet_past_the_share_stretches_idle_reads_just_enough_and_reads_waiting_ones_every_cycle()
 {
    support::static_credentials();
    let pipelines = names(12);
    let refs: Vec<&str> = pipelines.iter().map(String::as_str).collect();
    let aws = FakeCodePipeline::with_pipelines(&refs).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // 1 request/s, 20% for idle reads: 12 pipelines fit once a minute, not every 30 s.
    let text = config_text(
        &aws,
        &slack,
        &dir.path().join("state.db"),
        "max_requests_per_second = 1",
        &pipelines,
    );
    aws.set_state("p1", support::Fixture::Waiting);
    let shutdown = CancellationToken::new();
    let steps = async {
        // Cycles at 0, 30, …, 570 s: twenty.
        tokio::time::sleep(Duration::from_secs(9 * 60 + 45)).await;
        assert_eq!(
            aws.calls(GET_PIPELINE_STATE, "p1"),
            20,
            "a pipeline with an approval waiting is read every cycle"
        );
        for p in &pipelines[1..] {
            let reads = aws.calls(GET_PIPELINE_STATE, p);
            // Every minute: ten reads in ten minutes (the 30 s rhythm would make twenty,
            // idle_poll_interval five).
            assert!((9..=11).contains(&reads), "{p} read {reads} times");
        }
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
}

#[tokio::test(start_paused = true)]
async fn past_even_the_slowest_rhythm_idle_reads_keep_idle_poll_interval() {
    support::static_credentials();
    let pipelines = names(4);
    let refs: Vec<&str> = pipelines.iter().map(String::as_str).collect();
    let aws = FakeCodePipeline::with_pipelines(&refs).await;
    let slack = FakeSlack::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    // 0.1 × 0.1 = 0.01 requests/s would need 400 s; idle_poll_interval (2 m) is the slowest.
    let text = config_text(
        &aws,
        &slack,
        &dir.path().join("state.db"),
        "max_requests_per_second = 0.1\nidle_budget_share = 0.1",
        &pipelines,
    );
    let shutdown = CancellationToken::new();
    let steps = async {
        tokio::time::sleep(Duration::from_secs(9 * 60 + 45)).await;
        for p in &pipelines {
            assert_eq!(
                aws.calls(GET_PIPELINE_STATE, p),
                5,
                "{p}: 0, 2, 4, 6, 8 min"
            );
        }
        shutdown.cancel();
    };
    run_loop(&text, dir.path(), steps, shutdown.clone()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_and_status_show_the_idle_rhythm() {
    let mut w = World::start(&["web-app", "api"]).await;
    w.env.spec.poll_interval = "30s".into();
    w.env.spec.idle_poll_interval = Some("2m".into());
    w.env.write_config();
    let check = w.env.run(&["check-config"]).await;
    check.assert_code(0);
    assert!(
        check
            .stdout
            .contains("idle pipelines in default/us-east-1 (2): read every 30 s"),
        "{}",
        check.describe()
    );
    let text = w
        .env
        .config_text()
        .replace("[aws]\n", "[aws]\nidle_budget_share = 0.001\n");
    w.env.write_raw_config(&text);
    let status = w.env.run(&["status", "--json"]).await;
    status.assert_code(0);
    let json: serde_json::Value = serde_json::from_str(&status.stdout).expect("JSON");
    assert_eq!(
        json["idle_reads"],
        serde_json::json!([{"account": "default", "region": "us-east-1", "pipelines": 2,
            "idle_read_every_s": 120}]),
        "{}",
        status.describe()
    );
    let bad = w
        .env
        .config_text()
        .replace("idle_budget_share = 0.001", "idle_budget_share = 1.5");
    w.env.write_raw_config(&bad);
    let out = w.env.run(&["check-config"]).await;
    out.assert_code(2);
    assert!(
        out.stderr
            .contains("aws.idle_budget_share: 1.5 is out of range"),
        "{}",
        out.describe()
    );
}
