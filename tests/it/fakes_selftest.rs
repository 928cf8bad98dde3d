//! The fakes themselves, driven by the real AWS SDK client and a plain HTTP client, so that the
//! other tests can trust what they serve.

use crate::support;

use std::time::Duration;

use aws_sdk_codepipeline::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_codepipeline::error::ProvideErrorMetadata;
use serde_json::json;
use support::fixtures::{self, APPROVAL_ACTION, APPROVAL_STAGE, FIXTURE_TOKEN, StateBuilder};
use support::{
    FakeCodePipeline, FakeSlack, Fixture, GET_PIPELINE, GET_PIPELINE_EXECUTION, GET_PIPELINE_STATE,
    InjectedError, SlackResponse, WEBHOOK_PATH, WEBHOOK_SECRET,
};

fn client(endpoint: &str) -> aws_sdk_codepipeline::Client {
    let conf = aws_sdk_codepipeline::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .build();
    aws_sdk_codepipeline::Client::from_conf(conf)
}

fn approval_latest(
    out: &aws_sdk_codepipeline::operation::get_pipeline_state::GetPipelineStateOutput,
) -> Option<aws_sdk_codepipeline::types::ActionExecution> {
    out.stage_states()
        .iter()
        .find(|s| s.stage_name() == Some(APPROVAL_STAGE))?
        .action_states()
        .iter()
        .find(|a| a.action_name() == Some(APPROVAL_ACTION))?
        .latest_execution()
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_reads_every_state_fixture() {
    let fake = FakeCodePipeline::with_pipelines(&["web-app"]).await;
    let client = client(&fake.endpoint());

    for (fixture, status) in [
        (Fixture::Waiting, Some("InProgress")),
        (Fixture::Approved, Some("Succeeded")),
        (Fixture::Rejected, Some("Failed")),
        (Fixture::Expired, Some("Failed")),
        (Fixture::NeverReached, None),
    ] {
        fake.set_state_raw("web-app", fixture);
        let out = client
            .get_pipeline_state()
            .name("web-app")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{fixture:?}: {e:?}"));
        assert_eq!(out.pipeline_name(), Some("web-app"));
        assert_eq!(out.pipeline_version(), Some(7));
        assert_eq!(out.stage_states().len(), 4);
        let latest = approval_latest(&out);
        assert_eq!(
            latest.as_ref().and_then(|l| l.status()).map(|s| s.as_str()),
            status,
            "{fixture:?}"
        );
        if let Some(latest) = latest {
            assert_eq!(latest.token(), Some(FIXTURE_TOKEN));
            assert!(latest.last_status_change().is_some());
        }
    }

    let approved = fake.state_json("web-app");
    fake.set_state_raw("web-app", Fixture::Approved);
    let out = client
        .get_pipeline_state()
        .name("web-app")
        .send()
        .await
        .unwrap();
    let latest = approval_latest(&out).unwrap();
    assert_eq!(latest.summary(), Some(fixtures::APPROVED_COMMENT));
    assert!(
        latest
            .last_updated_by()
            .unwrap()
            .ends_with(fixtures::APPROVED_BY)
    );
    drop(approved);
    assert_eq!(fake.calls(GET_PIPELINE_STATE, "web-app"), 6);
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_reads_definition_and_execution() {
    let fake = FakeCodePipeline::with_pipelines(&["api"]).await;
    let client = client(&fake.endpoint());

    let def = client.get_pipeline().name("api").send().await.unwrap();
    let pipeline = def.pipeline().unwrap();
    assert_eq!(pipeline.name(), "api");
    assert_eq!(pipeline.version(), Some(7));
    let approval = pipeline
        .stages()
        .iter()
        .find(|s| s.name() == APPROVAL_STAGE)
        .unwrap()
        .actions()
        .iter()
        .find(|a| a.name() == APPROVAL_ACTION)
        .unwrap();
    assert_eq!(
        approval.action_type_id().unwrap().category().as_str(),
        "Approval"
    );
    assert_eq!(approval.timeout_in_minutes(), Some(10080));
    assert_eq!(
        approval
            .configuration()
            .unwrap()
            .get("CustomData")
            .map(String::as_str),
        Some(fixtures::FIXTURE_CUSTOM_DATA)
    );
    assert!(
        def.metadata()
            .unwrap()
            .pipeline_arn()
            .unwrap()
            .ends_with(":api")
    );

    let exec = client
        .get_pipeline_execution()
        .pipeline_name("api")
        .pipeline_execution_id("some-execution-id")
        .send()
        .await
        .unwrap();
    let exec = exec.pipeline_execution().unwrap();
    assert_eq!(exec.pipeline_name(), Some("api"));
    assert_eq!(exec.pipeline_execution_id(), Some("some-execution-id"));
    let rev = &exec.artifact_revisions()[0];
    assert_eq!(rev.revision_id(), Some(fixtures::FIXTURE_REVISION_ID));
    assert!(
        rev.revision_summary()
            .unwrap()
            .contains(fixtures::FIXTURE_COMMIT_MESSAGE)
    );

    fake.set_version("api", 8);
    let def = client.get_pipeline().name("api").send().await.unwrap();
    assert_eq!(def.pipeline().unwrap().version(), Some(8));
    let state = client
        .get_pipeline_state()
        .name("api")
        .send()
        .await
        .unwrap();
    assert_eq!(state.pipeline_version(), Some(8));

    let list = client.list_pipelines().send().await.unwrap();
    let names: Vec<&str> = list.pipelines().iter().filter_map(|p| p.name()).collect();
    assert_eq!(names, ["api"]);
    assert!(list.next_token().is_none());

    assert_eq!(fake.calls(GET_PIPELINE, "api"), 2);
    assert_eq!(fake.calls(GET_PIPELINE_EXECUTION, "api"), 1);
    assert_eq!(fake.calls(GET_PIPELINE_STATE, "api"), 1);
    let reqs = fake.requests();
    assert!(
        reqs.iter()
            .all(|r| r.access_key.as_deref() == Some("AKIDTEST"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn derived_states_carry_name_token_and_fresh_timestamps() {
    let fake = FakeCodePipeline::with_pipelines(&["web-app", "api"]).await;
    let client = client(&fake.endpoint());
    fake.set_state("api", Fixture::Waiting);
    let token = fake.token("api");
    assert_ne!(token, FIXTURE_TOKEN);

    let out = client
        .get_pipeline_state()
        .name("api")
        .send()
        .await
        .unwrap();
    assert_eq!(out.pipeline_name(), Some("api"));
    let latest = approval_latest(&out).unwrap();
    assert_eq!(latest.token(), Some(token.as_str()));
    let since = latest.last_status_change().unwrap().secs() as f64;
    let now = fixtures::now_epoch();
    assert!(
        now - since > 60.0 && now - since < 3600.0,
        "{since} vs {now}"
    );

    fake.set_waiting("api", "11111111-2222-4333-8444-555555555555");
    fake.set_state("api", Fixture::Approved);
    let out = client
        .get_pipeline_state()
        .name("api")
        .send()
        .await
        .unwrap();
    let latest = approval_latest(&out).unwrap();
    assert_eq!(latest.status().unwrap().as_str(), "Succeeded");
    assert_eq!(latest.token(), Some("11111111-2222-4333-8444-555555555555"));

    // The builder on its own.
    let body = StateBuilder::fixture(Fixture::NeverReached)
        .named("x")
        .token("t")
        .status("InProgress")
        .last_status_change(1.5)
        .version(9)
        .build();
    assert_eq!(body["pipelineName"], "x");
    assert_eq!(body["pipelineVersion"], 9);
    let text = body.to_string();
    assert!(text.contains("\"token\":\"t\""), "{text}");
    assert_eq!(
        fixtures::review_link("web-app", FIXTURE_TOKEN),
        fixtures::load("sns-approval-message.json")["approval"]["approvalReviewLink"]
    );
    assert_eq!(
        fixtures::pipeline_link("web-app"),
        fixtures::load("sns-approval-message.json")["consoleLink"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_surfaces_injected_errors_by_code() {
    let fake = FakeCodePipeline::with_pipelines(&["web-app", "api"]).await;
    let client = client(&fake.endpoint());

    fake.set_error(
        "api",
        400,
        "AccessDeniedException",
        "not authorized to perform: codepipeline:GetPipelineState",
    );
    let err = client
        .get_pipeline_state()
        .name("api")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("AccessDeniedException"));
    assert!(err.message().unwrap().contains("not authorized"));

    // The other pipeline is unaffected.
    client
        .get_pipeline_state()
        .name("web-app")
        .send()
        .await
        .unwrap();

    let err = client
        .get_pipeline_state()
        .name("ghost")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PipelineNotFoundException"));
    assert!(err.into_service_error().is_pipeline_not_found_exception());

    fake.clear_error("api");
    client
        .get_pipeline_state()
        .name("api")
        .send()
        .await
        .unwrap();

    // One throttle: the SDK retries it by itself.
    fake.fail_next(GET_PIPELINE, "api", 1, InjectedError::throttling());
    client.get_pipeline().name("api").send().await.unwrap();
    assert_eq!(fake.calls(GET_PIPELINE, "api"), 2);

    fake.set_operation_error(
        GET_PIPELINE_EXECUTION,
        "api",
        InjectedError::new(
            400,
            "PipelineExecutionNotFoundException",
            "no such execution",
        ),
    );
    let err = client
        .get_pipeline_execution()
        .pipeline_name("api")
        .pipeline_execution_id("x")
        .send()
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("PipelineExecutionNotFoundException"));
    client
        .get_pipeline_state()
        .name("api")
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn fake_slack_records_and_answers_from_its_script() {
    let slack = FakeSlack::start().await;
    assert!(slack.url().ends_with(WEBHOOK_PATH));
    assert!(slack.url().contains(WEBHOOK_SECRET));
    let http = reqwest::Client::new();

    slack.push_response(SlackResponse::status(500, "internal_error"));
    slack.push_response(SlackResponse::rate_limited(1));
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..3 {
        let resp = http
            .post(slack.url())
            .json(&json!({"text": format!("message {i}")}))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status().as_u16() == 429 {
            retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
        if i == 2 {
            assert_eq!(resp.text().await.unwrap(), "ok");
        }
    }
    assert_eq!(statuses, [500, 429, 200]);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(slack.request_count(), 3);
    let delivered = slack.delivered();
    assert_eq!(delivered, [json!({"text": "message 2"})]);

    // A wrong path is not the webhook.
    let wrong = format!("{}/other", slack.url().rsplit_once('/').unwrap().0);
    let resp = http
        .post(&wrong)
        .json(&json!({"text": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(slack.delivered_count(), 1);

    // Waiting is driven by arrivals, not by sleeping.
    let waiter = {
        let url = slack.url();
        let http = http.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            http.post(url)
                .json(&json!({"text": "late"}))
                .send()
                .await
                .unwrap();
        })
    };
    let got = slack.wait_for_delivered(2, Duration::from_secs(5)).await;
    assert_eq!(got[1]["text"], "late");
    waiter.await.unwrap();

    // A delayed answer: the client gives up, the request is still recorded.
    slack.push_response(SlackResponse::ok().with_delay(Duration::from_secs(5)));
    let res = http
        .post(slack.url())
        .timeout(Duration::from_millis(300))
        .json(&json!({"text": "slow"}))
        .send()
        .await;
    assert!(res.is_err());
    assert_eq!(slack.request_count(), 6);
    assert!(
        slack
            .wait_until(Duration::from_millis(200), |r| r.len() >= 7)
            .await
            .is_err()
    );
}
