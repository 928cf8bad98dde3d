//! Shutdown: SIGTERM while a Slack request is slow, while Slack hangs, while a 429 or the rate
//! limit is being waited out, while AWS is slow. Each time `run` exits 0 within a bound, the
//! database passes `PRAGMA integrity_check`, and what was not sent is still queued (and later
//! sent once).

use crate::support;

use std::time::{Duration, Instant};

use support::fake_slack::summarize;
use support::payload::review_tokens;
use support::{Daemon, Fixture, GET_PIPELINE_STATE, SOON, SlackResponse, World, state_db};

/// Sends SIGTERM and waits for the exit; returns the output and how long the exit took.
async fn term(daemon: Daemon, bound: Duration) -> (support::Output, Duration) {
    let sent = Instant::now();
    // The runner's own limit is wider; the bound is checked here.
    let out = daemon.stop("TERM", bound + Duration::from_secs(5)).await;
    let took = sent.elapsed();
    assert!(
        took <= bound,
        "exit took {took:?} after SIGTERM (bound {bound:?})\n{}",
        out.describe()
    );
    out.assert_code(0);
    assert!(
        !out.stderr_plain().contains("panicked"),
        "{}",
        out.describe()
    );
    (out, took)
}

#[track_caller]
fn assert_consistent(w: &World) {
    assert_eq!(state_db::integrity_check(&w.env.state_path), "ok");
}

/// Runs `once` until nothing is pending; panics after `timeout`.
async fn drain(w: &World, timeout: Duration) {
    let started = Instant::now();
    loop {
        let rows = state_db::outbox(&w.env.state_path);
        if rows.iter().all(|r| r.state != "pending") {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "still pending: {:?}",
            rows.iter()
                .filter(|r| r.state == "pending")
                .map(|r| (&r.pipeline, &r.kind, r.attempts))
                .collect::<Vec<_>>()
        );
        w.env.once().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Each of `pipelines`' current token announced exactly once, nothing else.
#[track_caller]
fn assert_announced_once(w: &World, pipelines: &[&str]) {
    let delivered = w.slack.delivered();
    let mut tokens: Vec<String> = delivered.iter().flat_map(review_tokens).collect();
    tokens.sort();
    let mut want: Vec<String> = pipelines.iter().map(|p| w.aws.token(p)).collect();
    want.sort();
    assert_eq!(tokens, want, "{:#?}", summarize(&w.slack.requests()));
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_a_slow_delivery_finishes_it_and_keeps_the_rest_queued() {
    let names = ["web-app", "api", "worker"];
    let w = World::start(&names).await;
    for p in names {
        w.aws.set_state(p, Fixture::Waiting);
    }
    w.slack
        .set_default(SlackResponse::ok().with_delay(Duration::from_secs(3)));
    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    let (out, took) = term(daemon, Duration::from_secs(12)).await;
    assert!(
        took >= Duration::from_millis(2000),
        "did not wait for the request in flight ({took:?})\n{}",
        out.describe()
    );
    assert_consistent(&w);
    let rows = state_db::outbox(&w.env.state_path);
    let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["delivered", "pending", "pending"], "{rows:#?}");
    assert_eq!(w.slack.request_count(), 1);

    w.slack.set_default(SlackResponse::ok());
    drain(&w, Duration::from_secs(20)).await;
    assert_announced_once(&w, &names);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_slack_hangs_gives_up_at_the_client_timeout_and_keeps_the_message() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack.push_response(
        SlackResponse::status(504, "gateway_timeout").with_delay(Duration::from_secs(60)),
    );
    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    term(daemon, Duration::from_secs(12)).await;
    assert_consistent(&w);
    let rows = state_db::outbox(&w.env.state_path);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].state.as_str(), rows[0].attempts),
        ("pending", 1),
        "{rows:#?}"
    );
    drain(&w, Duration::from_secs(20)).await;
    assert_announced_once(&w, &["web-app"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_while_waiting_out_a_429_or_the_rate_limit_exits_at_once() {
    // A 429 asking for 8 s, waited inline: SIGTERM cuts the wait short.
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack.push_response(SlackResponse::rate_limited(8));
    let mut daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    assert!(daemon.wait_for_stderr("HTTP 429", SOON).await);
    term(daemon, Duration::from_secs(3)).await;
    assert_consistent(&w);
    let rows = state_db::outbox(&w.env.state_path);
    assert_eq!(rows[0].state, "pending", "{rows:#?}");

    // Eight alerts at once: after a burst of three, SIGTERM while the limiter waits.
    let names = ["p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8"];
    let w = World::start(&names).await;
    for p in names {
        w.aws.set_state(p, Fixture::Waiting);
    }
    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(4, SOON).await;
    term(daemon, Duration::from_secs(3)).await;
    assert_consistent(&w);
    let sent = w.slack.request_count();
    assert!(sent < names.len(), "all {sent} sent despite SIGTERM");
    let rows = state_db::outbox(&w.env.state_path);
    assert_eq!(rows.len(), names.len());
    assert_eq!(
        rows.iter().filter(|r| r.state == "delivered").count(),
        sent,
        "{rows:#?}"
    );
    drain(&w, Duration::from_secs(30)).await;
    assert_announced_once(&w, &names);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_slow_aws_reads_abandons_the_cycle() {
    let w = World::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_delay(Duration::from_secs(8));
    let daemon = w.env.spawn_run();
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", 1, SOON)
            .await
    );
    term(daemon, Duration::from_secs(3)).await;
    assert_consistent(&w);
    assert!(
        state_db::approvals(&w.env.state_path).is_empty(),
        "a half-read cycle recorded something"
    );
    assert_eq!(w.slack.request_count(), 0);

    w.aws.set_delay(Duration::ZERO);
    w.env.once().await.assert_code(0);
    assert_announced_once(&w, &["web-app"]);
}
