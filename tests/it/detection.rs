//! Detection: which approvals are announced, resolved, re-announced; what is read from AWS and how
//! often; one broken pipeline does not hold up the others.

use crate::support;

use std::time::Duration;

use support::fixtures::{self, StateBuilder, review_fragment, review_link};
use support::payload::{assert_block_kit, assert_waiting_alert, mentions, mentions_ci, strings};
use support::runner::eventually;
use support::{
    Fixture, GET_PIPELINE, GET_PIPELINE_EXECUTION, GET_PIPELINE_STATE, InjectedError, SOON, World,
};

/// Runs `once` and expects exit 0.
async fn once_ok(w: &World) {
    w.env.once().await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_approval_is_announced_exactly_once_over_many_cycles() {
    let w = World::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);

    for _ in 0..5 {
        once_ok(&w).await;
    }

    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_eq!(w.slack.request_count(), 1);
    assert_waiting_alert(&delivered[0], "web-app", fixtures::FIXTURE_TOKEN);
    assert_eq!(
        w.slack.requests()[0].content_type.as_deref(),
        Some("application/json")
    );
    // Every cycle read every pipeline.
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "web-app"), 5);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "api"), 5);
    // The revision is looked up once for the one new approval, never for a pipeline not waiting.
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app"), 1);
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "api"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_of_run_does_not_announce_again() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);

    let daemon = w.env.spawn_run();
    w.slack.wait_for_delivered(1, SOON).await;
    // A few more cycles of the same process.
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 3, SOON)
            .await
    );
    daemon.terminate().await.assert_code(0);
    assert_eq!(w.slack.request_count(), 1);

    // Started again on the same state file.
    let daemon = w.env.spawn_run();
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 3, SOON)
            .await,
        "the restarted daemon did not poll:\n{}",
        daemon.stderr()
    );
    daemon.terminate().await.assert_code(0);

    once_ok(&w).await;
    assert_eq!(
        w.slack.request_count(),
        1,
        "{:#?}",
        support::fake_slack::summarize(&w.slack.requests())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn each_pipeline_gets_its_own_alert_and_links() {
    let w = World::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_state("api", Fixture::Waiting);
    let api_token = w.aws.token("api");

    once_ok(&w).await;
    once_ok(&w).await;

    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    let web =
        support::payload::mentioning(&delivered, &review_link("web-app", fixtures::FIXTURE_TOKEN));
    let api = support::payload::mentioning(&delivered, &review_link("api", &api_token));
    assert_eq!(web.len(), 1, "{delivered:#?}");
    assert_eq!(api.len(), 1, "{delivered:#?}");
    assert_waiting_alert(web[0], "web-app", fixtures::FIXTURE_TOKEN);
    assert_waiting_alert(api[0], "api", &api_token);
    assert!(!mentions(api[0], &fixtures::pipeline_link("web-app")));
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_is_told_once_with_reviewer_and_comment() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    once_ok(&w).await;
    assert_eq!(w.slack.delivered_count(), 1);

    w.aws.set_state("web-app", Fixture::Approved);
    for _ in 0..3 {
        once_ok(&w).await;
    }

    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    let told = &delivered[1];
    assert_block_kit(told);
    assert!(mentions(told, "web-app"), "{told:#}");
    assert!(mentions_ci(told, "approved"), "{told:#}");
    assert!(mentions(told, fixtures::APPROVED_BY), "{told:#}");
    assert!(mentions(told, fixtures::APPROVED_COMMENT), "{told:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rejection_comment_reaches_slack_escaped_never_as_a_ping() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    once_ok(&w).await;

    w.aws.set_state("web-app", Fixture::Rejected);
    once_ok(&w).await;
    once_ok(&w).await;

    let requests = w.slack.requests();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        for s in strings(r.json()) {
            assert!(!s.contains("<!channel>"), "raw <!channel> sent: {s:?}");
        }
        assert!(!r.body.contains("<!channel>"));
    }
    let told = requests[1].json();
    assert_block_kit(told);
    assert!(mentions_ci(told, "rejected"), "{told:#}");
    assert!(mentions(told, "bob"), "{told:#}");
    assert!(
        mentions(told, "Migration 0042 is not reversible &lt;!channel&gt;"),
        "{told:#}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_is_told_as_expired() {
    let w = World::start(&["web-app"]).await;
    // A 10-minute approval that started waiting 11 minutes ago …
    w.aws.update_definition("web-app", |d| {
        fixtures::set_definition_timeout(d, 10);
    });
    let since = fixtures::now_epoch() - 660.0;
    let token = "7e57e570-0000-4000-8000-00000000e701";
    w.aws.set_waiting_since("web-app", token, since);
    once_ok(&w).await;
    assert_eq!(w.slack.delivered_count(), 1);

    // … and then Failed, with no reviewer, at its expiry.
    let expired = StateBuilder::fixture(Fixture::Expired)
        .named("web-app")
        .token(token)
        .last_status_change(since + 600.0)
        .build();
    w.aws.set_state_json("web-app", expired);
    once_ok(&w).await;
    once_ok(&w).await;

    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    assert!(mentions_ci(&delivered[1], "expired"), "{:#}", delivered[1]);
    assert!(
        !mentions_ci(&delivered[1], "rejected"),
        "{:#}",
        delivered[1]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fixtures_as_stored_alert_then_expire() {
    // The stored fixtures: waiting since Nov 2025 (long past its 7 days), then expired.
    let w = World::start(&["web-app"]).await;
    w.aws.set_state_raw("web-app", Fixture::Waiting);
    once_ok(&w).await;
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 1);
    assert_waiting_alert(&delivered[0], "web-app", fixtures::FIXTURE_TOKEN);

    w.aws.set_state_raw("web-app", Fixture::Expired);
    once_ok(&w).await;
    once_ok(&w).await;
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    assert!(mentions_ci(&delivered[1], "expired"), "{:#}", delivered[1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn new_token_alerts_again_and_the_old_one_is_superseded() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    once_ok(&w).await;
    assert_eq!(w.slack.delivered_count(), 1);

    let new_token = "b0b0b0b0-1111-4222-8333-444455556666";
    w.aws.set_waiting("web-app", new_token);
    once_ok(&w).await;
    once_ok(&w).await;

    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 3, "{delivered:#?}");
    let new = &delivered[1..];
    let alerts: Vec<_> = new
        .iter()
        .filter(|p| mentions(p, &review_fragment(new_token)))
        .collect();
    assert_eq!(alerts.len(), 1, "one alert for the new token: {new:#?}");
    assert_waiting_alert(alerts[0], "web-app", new_token);
    assert!(!mentions(
        alerts[0],
        &review_fragment(fixtures::FIXTURE_TOKEN)
    ));
    let superseded: Vec<_> = new
        .iter()
        .filter(|p| mentions_ci(p, "supersed") && !mentions(p, &review_fragment(new_token)))
        .collect();
    assert_eq!(
        superseded.len(),
        1,
        "the old one told as superseded: {new:#?}"
    );
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app"), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn approval_not_reached_sends_nothing_until_it_waits() {
    let w = World::start(&["web-app"]).await;
    once_ok(&w).await;
    once_ok(&w).await;
    assert_eq!(w.slack.request_count(), 0);
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app"), 0);

    w.aws.set_state("web-app", Fixture::Waiting);
    once_ok(&w).await;
    assert_eq!(w.slack.delivered_count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn access_denied_pipeline_does_not_block_the_others() {
    let w = World::start(&["web-app", "ledger"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_state("ledger", Fixture::Waiting);
    w.aws.set_error(
        "ledger",
        400,
        "AccessDeniedException",
        "User is not authorized to perform: codepipeline:GetPipelineState",
    );

    let out = w.env.once().await;
    out.assert_code(1);
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 1, "{delivered:#?}");
    assert_waiting_alert(&delivered[0], "web-app", fixtures::FIXTURE_TOKEN);
    assert!(
        !out.stderr_lines_with(&["ledger", "AccessDeniedException"])
            .is_empty(),
        "no log line names the pipeline and the AWS error code\n{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_pipeline_is_reported_and_the_others_go_on() {
    let w = World::start(&["web-app", "ghost-pipeline"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let e = InjectedError::not_found();
    w.aws
        .set_error("ghost-pipeline", e.status, &e.error_type, &e.message);

    let out = w.env.once().await;
    out.assert_code(1);
    assert_eq!(w.slack.delivered_count(), 1);
    assert!(
        !out.stderr_lines_with(&["ghost-pipeline", "PipelineNotFoundException"])
            .is_empty(),
        "no log line names the pipeline and the AWS error code\n{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_throttling_is_reported_and_the_others_go_on() {
    let w = World::start(&["web-app", "ledger"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let e = InjectedError::throttling();
    w.aws
        .set_error("ledger", e.status, &e.error_type, &e.message);

    let out = w.env.once().await;
    out.assert_code(1);
    assert_eq!(w.slack.delivered_count(), 1);
    assert!(
        !out.stderr_lines_with(&["ledger", "ThrottlingException"])
            .is_empty(),
        "no log line names the pipeline and the AWS error code\n{}",
        out.describe()
    );
    // Throttling is retried, but not forever.
    let tries = w.aws.calls(GET_PIPELINE_STATE, "ledger");
    assert!((1..=10).contains(&tries), "{tries} tries");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_read_is_never_a_resolution() {
    let w = World::start(&["web-app", "ledger"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_state("ledger", Fixture::Waiting);
    once_ok(&w).await;
    assert_eq!(w.slack.delivered_count(), 2);

    // Access denied, then not found, then throttled on GetPipelineState: nothing is resolved.
    w.aws
        .set_error("ledger", 400, "AccessDeniedException", "not authorized");
    w.env.once().await.assert_code(1);
    w.env.once().await.assert_code(1);
    let e = InjectedError::not_found();
    w.aws
        .set_error("ledger", e.status, &e.error_type, &e.message);
    w.env.once().await.assert_code(1);
    w.aws.clear_error("ledger");
    w.aws.set_operation_error(
        GET_PIPELINE_STATE,
        "ledger",
        InjectedError::new(500, "InternalFailure", "internal error"),
    );
    w.env.once().await.assert_code(1);
    assert_eq!(
        w.slack.request_count(),
        2,
        "{:#?}",
        support::fake_slack::summarize(&w.slack.requests())
    );

    // Readable again, same token still waiting: not announced again.
    w.aws.clear_error("ledger");
    once_ok(&w).await;
    assert_eq!(w.slack.request_count(), 2);

    // Only a real outcome resolves it.
    w.aws.set_state("ledger", Fixture::Approved);
    once_ok(&w).await;
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 3);
    assert!(mentions_ci(&delivered[2], "approved"));
    assert!(mentions(&delivered[2], "ledger"));
}

#[tokio::test(flavor = "multi_thread")]
async fn run_reads_definitions_only_when_the_version_changes() {
    let w = World::start(&["web-app", "api"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);

    let daemon = w.env.spawn_run();
    w.slack.wait_for_delivered(1, SOON).await;
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", 4, SOON)
            .await
    );
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "api", 4, SOON)
            .await
    );
    assert_eq!(w.aws.calls(GET_PIPELINE, "web-app"), 1);
    // api is idle: its definition is read once (its execution mode), not again.
    assert_eq!(w.aws.calls(GET_PIPELINE, "api"), 1);
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app"), 1);
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "api"), 0);

    // The pipeline is edited: its version moves to 8.
    w.aws.set_version("web-app", 8);
    assert!(
        eventually(SOON, || w.aws.calls(GET_PIPELINE, "web-app") >= 2).await,
        "GetPipeline not called again after the version changed"
    );
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 3, SOON)
            .await
    );
    assert_eq!(w.aws.calls(GET_PIPELINE, "web-app"), 2);
    assert_eq!(w.aws.calls(GET_PIPELINE, "api"), 1);
    // Same approval still waiting: no new revision lookup, no new message.
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app"), 1);
    assert_eq!(w.slack.request_count(), 1);

    // A new approval: one more revision lookup, however many cycles see it.
    w.aws
        .set_waiting("web-app", "c0ffee00-1111-4222-8333-444455556666");
    w.slack.wait_for_delivered(3, SOON).await;
    let seen = w.aws.calls(GET_PIPELINE_STATE, "web-app");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "web-app", seen + 3, SOON)
            .await
    );
    assert_eq!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app"), 2);
    assert_eq!(w.aws.calls(GET_PIPELINE, "web-app"), 2);
    assert_eq!(w.slack.request_count(), 3);

    daemon.terminate().await.assert_code(0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pipelines_are_read_concurrently() {
    let names = ["p1", "p2", "p3", "p4"];
    let w = World::start(&names).await;
    w.aws.set_delay(Duration::from_millis(1500));
    // Read one after the other, 4 × (GetPipelineState + GetPipeline) would take 12 s.
    let out = w.env.once().await;
    out.assert_code(0);
    assert!(
        out.elapsed < Duration::from_secs(8),
        "once took {:?} for 4 pipelines answering in 1.5 s each",
        out.elapsed
    );
    for n in names {
        assert_eq!(w.aws.calls(GET_PIPELINE_STATE, n), 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn endpoint_url_from_the_config_file_is_honoured() {
    let mut w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.remove_env("AWS_ENDPOINT_URL");
    w.env.spec.endpoint_url = Some(w.aws.endpoint());
    w.env.write_config();

    once_ok(&w).await;
    assert_eq!(w.slack.delivered_count(), 1);
}
