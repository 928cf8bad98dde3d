//! Every CodePipeline fixture, served over HTTP by the fake and read by the real SDK through
//! `approval_watch::aws`, becomes the model the decision logic expects.

use crate::support;

use approval_watch::aws::{CodePipeline, Target};
use approval_watch::config::Config;
use approval_watch_core::model::{ActionStatus, ExecutionMode, PipelineSnapshot};
use jiff::Timestamp;
use support::fixtures::{self, Fixture};
use support::{FakeCodePipeline, InjectedError, LIST_ACTION_EXECUTIONS, LIST_PIPELINE_EXECUTIONS};

fn ts(secs: f64) -> Timestamp {
    Timestamp::from_millisecond((secs * 1000.0).round() as i64).unwrap()
}

/// Within a millisecond: floats lose sub-millisecond precision on the way.
fn assert_near(actual: Option<Timestamp>, expected: f64) {
    let actual = actual.expect("timestamp present");
    let diff = (actual.as_millisecond() - ts(expected).as_millisecond()).abs();
    assert!(diff <= 1, "{actual} is not {expected}");
}

async fn connect(fake: &FakeCodePipeline) -> (CodePipeline, Target) {
    let config = Config::parse(
        &format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n\
             [slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"\n\
             [[pipeline]]\nname = \"web-app\"\n",
            fake.endpoint()
        ),
        "fixtures.toml".as_ref(),
    )
    .expect("config");
    let (client, targets) = support::app::connect(&config).await;
    (client, targets.into_iter().next().unwrap())
}

fn only_approval(s: &PipelineSnapshot) -> &approval_watch_core::model::ObservedApproval {
    assert_eq!(s.approvals.len(), 1, "{s:?}");
    &s.approvals[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fixture_reads_into_the_model() {
    support::static_credentials();
    let fake = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let (aws, target) = connect(&fake).await;

    // get-pipeline.json: the definition says which action is the approval, and the execution
    // mode (read with the state whenever the version's definition is not cached).
    fake.set_state_raw("web-app", Fixture::NeverReached);
    let s = aws
        .read(&target, &[], Timestamp::now())
        .await
        .expect("never-reached");
    assert_eq!(s.version, Some(7));
    assert_eq!(s.mode, ExecutionMode::Superseded);
    let a = only_approval(&s);
    assert_eq!(a.stage, fixtures::APPROVAL_STAGE);
    assert_eq!(a.action, fixtures::APPROVAL_ACTION);
    assert_eq!(
        a.definition.custom_data.as_deref(),
        Some(fixtures::FIXTURE_CUSTOM_DATA)
    );
    assert_eq!(
        a.definition.external_entity_link.as_deref(),
        Some(fixtures::FIXTURE_EXTERNAL_LINK)
    );
    assert_eq!(a.definition.timeout_minutes, Some(10080));
    assert_eq!(a.latest, None);

    fake.set_state_raw("web-app", Fixture::Waiting);
    let s = aws
        .read(&target, &[], Timestamp::now())
        .await
        .expect("waiting");
    let a = only_approval(&s);
    let latest = a.latest.as_ref().unwrap();
    assert_eq!(latest.status, ActionStatus::InProgress);
    assert_eq!(latest.token.as_deref(), Some(fixtures::FIXTURE_TOKEN));
    assert_near(latest.last_status_change, 1764148392.068);
    assert_eq!(
        a.pipeline_execution_id.as_deref(),
        Some(fixtures::FIXTURE_EXECUTION_ID)
    );

    fake.set_state_raw("web-app", Fixture::Approved);
    let s = aws
        .read(&target, &[], Timestamp::now())
        .await
        .expect("approved");
    let latest = only_approval(&s).latest.clone().unwrap();
    assert_eq!(latest.status, ActionStatus::Succeeded);
    assert_eq!(latest.token.as_deref(), Some(fixtures::FIXTURE_TOKEN));
    assert_eq!(latest.comment.as_deref(), Some(fixtures::APPROVED_COMMENT));
    assert_eq!(
        latest.last_updated_by.as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/Deployer/alice@example.com")
    );
    assert_near(latest.last_status_change, 1764151992.731);

    fake.set_state_raw("web-app", Fixture::Rejected);
    let s = aws
        .read(&target, &[], Timestamp::now())
        .await
        .expect("rejected");
    let latest = only_approval(&s).latest.clone().unwrap();
    assert_eq!(latest.status, ActionStatus::Failed);
    assert_eq!(
        latest.comment.as_deref(),
        Some(fixtures::REJECTED_COMMENT_RAW)
    );
    assert_eq!(
        latest.last_updated_by.as_deref(),
        Some("arn:aws:iam::123456789012:user/bob")
    );

    fake.set_state_raw("web-app", Fixture::Expired);
    let s = aws
        .read(&target, &[], Timestamp::now())
        .await
        .expect("expired");
    let latest = only_approval(&s).latest.clone().unwrap();
    assert_eq!(latest.status, ActionStatus::Failed);
    assert_eq!(latest.last_updated_by, None);
    assert_near(latest.last_status_change, 1764753204.568);

    // get-pipeline-execution.json: the revision, with the commit message out of CodeStar's JSON.
    let revision = aws
        .revision(&target, fixtures::FIXTURE_EXECUTION_ID)
        .await
        .expect("revision");
    assert_eq!(
        revision.revision_id.as_deref(),
        Some(fixtures::FIXTURE_REVISION_ID)
    );
    assert_eq!(
        revision.commit_message.as_deref(),
        Some(fixtures::FIXTURE_COMMIT_MESSAGE)
    );
    assert_eq!(
        revision.url.as_deref(),
        Some("https://github.com/example/web-app/commit/8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c")
    );

    // error.*.json: the AWS error code and message reach the error, naming the pipeline.
    for (injected, code) in [
        (InjectedError::access_denied(), "AccessDeniedException"),
        (InjectedError::not_found(), "PipelineNotFoundException"),
    ] {
        fake.set_operation_error("GetPipelineState", "web-app", injected);
        let e = aws
            .read(&target, &[], Timestamp::now())
            .await
            .expect_err("error fixture");
        assert_eq!(e.code, code);
        assert_eq!(e.pipeline, "web-app");
        assert_eq!(e.operation, "GetPipelineState");
        assert!(e.to_string().contains(code), "{e}");
        assert!(!e.message.is_empty());
        fake.clear_error("web-app");
    }
}

/// list-pipeline-executions.json and list-action-executions.json: a PARALLEL pipeline's waiting
/// run read per execution, its token the approval's `externalExecutionId`; the deploy action
/// and the run that is not at an approval give nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_parallel_fixtures_read_into_one_approval_per_waiting_run() {
    support::static_credentials();
    let fake = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let (aws, target) = connect(&fake).await;
    fake.set_mode("web-app", "PARALLEL");
    let executions = fixtures::load("list-pipeline-executions.json").to_string();
    let actions = fixtures::load("list-action-executions.json").to_string();
    fake.raw_next(LIST_PIPELINE_EXECUTIONS, "web-app", 1, 200, &executions);
    // The two runs in progress are read in turn; each gets the fixture's answer.
    fake.raw_next(LIST_ACTION_EXECUTIONS, "web-app", 2, 200, &actions);
    let s = aws
        .read(&target, &[], ts(1764150400.0))
        .await
        .expect("parallel read");
    assert_eq!(s.mode, ExecutionMode::Parallel);
    assert!(s.active);
    let a = only_approval(&s);
    assert_eq!(a.stage, fixtures::APPROVAL_STAGE);
    assert_eq!(a.action, fixtures::APPROVAL_ACTION);
    assert_eq!(
        a.pipeline_execution_id.as_deref(),
        Some(fixtures::FIXTURE_EXECUTION_ID)
    );
    assert_eq!(a.definition.timeout_minutes, Some(10080));
    let latest = a.latest.as_ref().unwrap();
    assert_eq!(latest.status, ActionStatus::InProgress);
    assert_eq!(latest.token.as_deref(), Some(fixtures::FIXTURE_TOKEN));
    assert_near(latest.last_status_change, 1764148392.068);
    // The fixture's page had a nextToken: read on (the fake's own, empty, answer ends it).
    assert_eq!(fake.calls(LIST_PIPELINE_EXECUTIONS, "web-app"), 2);
    assert_eq!(fake.calls(LIST_ACTION_EXECUTIONS, "web-app"), 2);
}
