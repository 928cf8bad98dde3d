//! Delivery to Slack: retries after 5xx and 429, no retries after a permanent 4xx, timeouts, pacing,
//! shutdown, and the outbox's "may repeat, never lose".

use crate::support;

use std::time::{Duration, Instant};

use support::fake_slack::summarize;
use support::fixtures;
use support::payload::{assert_waiting_alert, mentions};
use support::{
    Fixture, GET_PIPELINE_STATE, Output, SOON, SlackResponse, WEBHOOK_SECRET, WebhookSource, World,
    state_db,
};

/// Runs `once` repeatedly (a short pause between runs) until `done()` or `timeout`; returns the
/// outputs.
async fn once_until(w: &World, timeout: Duration, mut done: impl FnMut() -> bool) -> Vec<Output> {
    let deadline = Instant::now() + timeout;
    let mut outs = Vec::new();
    while !done() {
        assert!(
            Instant::now() < deadline,
            "not done after {timeout:?} of `once` runs; Slack saw {:#?}",
            summarize(&w.slack.requests())
        );
        outs.push(w.env.once().await);
        if !done() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    outs
}

#[tokio::test(flavor = "multi_thread")]
async fn slack_5xx_is_retried_by_later_onces_and_delivered_once() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .push_responses(2, SlackResponse::status(500, "internal_error"));

    let first = w.env.once().await;
    first.assert_code(1);
    assert_eq!(w.slack.request_count(), 1);
    // Exit 1 says why.
    assert!(
        !first
            .stderr_lines_with(&["exit 1: 1 message is still queued", "run `once` again"])
            .is_empty(),
        "{}",
        first.describe()
    );

    let outs = once_until(&w, Duration::from_secs(40), || {
        w.slack.delivered_count() == 1
    })
    .await;
    outs.last().unwrap().assert_code(0);

    // Two more cycles: nothing is sent again.
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    let requests = w.slack.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    for r in &requests {
        assert_waiting_alert(r.json(), "web-app", fixtures::FIXTURE_TOKEN);
    }
    let first_retry = requests[1].at - requests[0].at;
    assert!(
        first_retry < Duration::from_secs(8),
        "first retry after {first_retry:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn run_retries_a_5xx_within_seconds_even_with_a_long_poll_interval() {
    let mut w = World::start(&["web-app"]).await;
    w.env.spec.poll_interval = "60s".into();
    w.env.write_config();
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .push_response(SlackResponse::status(503, "service_unavailable"));

    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    w.slack.wait_for_delivered(1, SOON).await;
    let requests = w.slack.requests();
    assert_eq!(requests.len(), 2, "{:#?}", summarize(&requests));
    let gap = requests[1].at - requests[0].at;
    // "First retry within 5 s", plus scheduling slack on a loaded 2-core machine.
    assert!(gap <= Duration::from_millis(6500), "retried after {gap:?}");

    daemon.terminate().await.assert_code(0);
    assert_eq!(w.slack.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_429_waits_for_retry_after_then_delivers_once() {
    let mut w = World::start(&["web-app"]).await;
    w.env.spec.poll_interval = "60s".into();
    w.env.write_config();
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack.push_response(SlackResponse::rate_limited(2));

    let daemon = w.env.spawn_run();
    w.slack.wait_for_delivered(1, SOON).await;
    let requests = w.slack.requests();
    assert_eq!(requests.len(), 2, "{:#?}", summarize(&requests));
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(1900),
        "retried {gap:?} after a 429 with Retry-After: 2"
    );
    assert!(gap <= Duration::from_secs(7), "retried after {gap:?}");
    daemon.terminate().await.assert_code(0);
    assert_eq!(w.slack.request_count(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn rate_limited_429_with_once_is_delivered_once_after_retry_after() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack.push_response(SlackResponse::rate_limited(1));

    once_until(&w, Duration::from_secs(30), || {
        w.slack.delivered_count() == 1
    })
    .await;
    w.env.once().await.assert_code(0);
    let requests = w.slack.requests();
    assert_eq!(
        requests.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let gap = requests[1].at - requests[0].at;
    assert!(
        gap >= Duration::from_millis(900),
        "retried {gap:?} after a 429 with Retry-After: 1"
    );
}

async fn permanent_failure_is_not_retried(status: u16, body: &str) {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack.set_default(SlackResponse::status(status, body));

    let out = w.env.once().await;
    out.assert_code(1);
    assert!(
        !out.stderr_lines_with(&["exit 1: Slack refused 1 message for good"])
            .is_empty(),
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr_lines_with(&[&status.to_string(), body])
            .is_empty(),
        "no log line shows Slack's status {status} and body {body:?}\n{}",
        out.describe()
    );
    assert_eq!(w.slack.request_count(), 1);

    // Well past the first retry delay, over several cycles: never tried again.
    let daemon = w.env.spawn_run();
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", 8, Duration::from_secs(15))
            .await
    );
    daemon.terminate().await.assert_code(0);
    w.env.once().await;
    assert_eq!(
        w.slack.request_count(),
        1,
        "{:#?}",
        summarize(&w.slack.requests())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_404_no_service_is_tried_once() {
    permanent_failure_is_not_retried(404, "no_service").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn permanent_400_invalid_payload_is_tried_once() {
    permanent_failure_is_not_retried(400, "invalid_payload").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_slack_gives_up_after_ten_seconds_and_retries_later() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .push_response(SlackResponse::ok().with_delay(Duration::from_secs(60)));

    let out = w.env.once().await;
    out.assert_code(1);
    assert!(
        out.elapsed < Duration::from_secs(20),
        "`once` took {:?} against a Slack that never answers",
        out.elapsed
    );
    assert!(
        out.elapsed >= Duration::from_secs(5),
        "gave up after {:?}",
        out.elapsed
    );

    once_until(&w, Duration::from_secs(30), || w.slack.request_count() >= 2).await;
    assert_eq!(w.slack.request_count(), 2);
    let second = &w.slack.requests()[1];
    assert_waiting_alert(second.json(), "web-app", fixtures::FIXTURE_TOKEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_never_delivered_is_dropped_with_its_resolution() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .set_default(SlackResponse::status(500, "internal_error"));
    w.env.once().await.assert_code(1);
    assert_eq!(w.slack.request_count(), 1);

    // Approved before Slack came back: nobody needs to hear about either.
    w.aws.set_state("web-app", Fixture::Approved);
    w.slack.set_default(SlackResponse::ok());
    // Until the outbox holds nothing to send (the alert's retry may not be due yet), then once
    // more: nothing can go out after that.
    once_until(&w, Duration::from_secs(20), || {
        state_db::outbox(&w.env.state_path)
            .iter()
            .all(|r| r.state != "pending")
    })
    .await;
    w.env.once().await;
    let rows = state_db::outbox(&w.env.state_path);
    assert!(
        rows.iter()
            .any(|r| r.kind == "alert" && r.state == "dropped"),
        "{rows:#?}"
    );
    assert_eq!(
        w.slack.delivered_count(),
        0,
        "{:#?}",
        summarize(&w.slack.requests())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_delivery_in_flight() {
    let mut w = World::start(&["web-app"]).await;
    w.env.spec.poll_interval = "60s".into();
    w.env.write_config();
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .push_response(SlackResponse::ok().with_delay(Duration::from_secs(2)));

    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    daemon.terminate().await.assert_code(0);

    // The message was answered 200 and recorded as delivered: not sent again.
    w.env.once().await.assert_code(0);
    assert_eq!(
        w.slack.request_count(),
        1,
        "{:#?}",
        summarize(&w.slack.requests())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigint_stops_run_cleanly() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let daemon = w.env.spawn_run();
    w.slack.wait_for_delivered(1, SOON).await;
    daemon
        .stop("INT", support::runner::SHUTDOWN_TIMEOUT)
        .await
        .assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_mid_delivery_sends_again_rather_than_losing_it() {
    let mut w = World::start(&["web-app"]).await;
    w.env.spec.poll_interval = "60s".into();
    w.env.write_config();
    w.aws.set_state("web-app", Fixture::Waiting);
    w.slack
        .push_response(SlackResponse::ok().with_delay(Duration::from_secs(3)));

    let daemon = w.env.spawn_run();
    w.slack.wait_for_requests(1, SOON).await;
    let out = daemon.stop("KILL", SOON).await;
    assert_eq!(out.code, None, "killed by SIGKILL");

    once_until(&w, Duration::from_secs(20), || w.slack.request_count() >= 2).await;
    let requests = w.slack.requests();
    assert_eq!(requests.len(), 2, "{:#?}", summarize(&requests));
    assert_waiting_alert(requests[1].json(), "web-app", fixtures::FIXTURE_TOKEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_are_paced_to_about_one_per_second() {
    // Six alerts at once. A short burst is tolerated (Slack does), but then about one a second:
    // with a burst of up to 3, the last leaves at least 2.5 s after the first.
    let names = ["p1", "p2", "p3", "p4", "p5", "p6"];
    let w = World::start(&names).await;
    for n in names {
        w.aws.set_state(n, Fixture::Waiting);
    }
    w.env.once().await.assert_code(0);
    let requests = w.slack.requests();
    assert_eq!(requests.len(), 6);
    let span = requests[5].at - requests[0].at;
    assert!(
        span >= Duration::from_millis(2500),
        "6 messages within {span:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn webhook_url_from_a_file_is_used_and_never_shown() {
    let mut w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let path = w.env.path("slack-webhook");
    w.env.spec.webhook = WebhookSource::File {
        path: path.clone(),
        url: Some(w.slack.url()),
    };
    w.env.remove_env("SLACK_WEBHOOK_URL");
    w.env.write_config();
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .contains(WEBHOOK_SECRET)
    );

    let check = w.env.run(&["check-config"]).await;
    check.assert_code(0);
    check.assert_mentions(&path.display().to_string());

    w.env.once().await.assert_code(0);
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 1);
    assert!(mentions(&delivered[0], "web-app"));
}

#[tokio::test(flavor = "multi_thread")]
async fn inline_http_webhook_to_loopback_is_allowed() {
    let mut w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.spec.webhook = WebhookSource::Inline(w.slack.url());
    w.env.remove_env("SLACK_WEBHOOK_URL");
    w.env.write_config();

    w.env.run(&["check-config"]).await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 1);
}
