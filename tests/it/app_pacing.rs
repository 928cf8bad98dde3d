//! App mode's pace is per channel and one channel's pace holds up no other (issue 20, defect 5):
//! with twenty channels resolving together, a new alert in a twenty-first is posted at once,
//! while each channel still gets at most one call a second. Against the real binary.

use crate::support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use support::fake_slack_api::{BOT_TOKEN, FakeSlackApi, summarize};
use support::{FakeCodePipeline, Fixture, GET_PIPELINE_STATE, TestEnv, WebhookSource};

const RESOLVING: usize = 20;
/// Setting the scene (twenty alerts out, twenty resolutions through) is no measurement: room
/// for a machine busy with the rest of the suite.
const SETUP: Duration = Duration::from_secs(60);

fn pipeline(i: usize) -> String {
    format!("team-{i:02}")
}

fn channel(i: usize) -> String {
    format!("C0TEAM{i:05}")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_alert_never_waits_behind_other_channels_resolutions() {
    let names: Vec<String> = (1..=RESOLVING + 1).map(pipeline).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let aws = FakeCodePipeline::with_pipelines(&names).await;
    let api = FakeSlackApi::start().await;
    let mut env = TestEnv::new(&aws.endpoint(), "http://127.0.0.1:9/unused", &names);
    env.spec.webhook = WebhookSource::Nothing;
    env.spec.extra_slack = api.slack_table_lines("C0DEFAULT01");
    env.set_env("SLACK_BOT_TOKEN", BOT_TOKEN);
    env.write_config();
    // One route, and so one channel, per pipeline.
    let mut text = env.config_text();
    for i in 1..=RESOLVING + 1 {
        text.push_str(&format!(
            "\n[[route]]\nname = \"{}\"\npipelines = [\"{}\"]\nchannel = \"{}\"\n",
            pipeline(i),
            pipeline(i),
            channel(i)
        ));
    }
    std::fs::write(&env.config_path, text).expect("config");
    let poll_interval = Duration::from_secs(1);
    assert_eq!(env.spec.poll_interval, "1s");

    for name in &names[..RESOLVING] {
        aws.set_state(name, Fixture::Waiting);
    }
    let daemon = env.spawn_run();
    api.wait_for_messages(RESOLVING, SETUP).await;
    // Every alert's place recorded, so each resolution edits its alert and replies.
    let posted = support::runner::eventually(SETUP, || {
        let rows = support::state_db::outbox(&env.state_path);
        rows.iter().filter(|r| r.state == "delivered").count() == RESOLVING
    })
    .await;
    assert!(posted, "{:#?}", summarize(&api.requests()));

    // Twenty approvals resolve and a new one appears in the twenty-first channel.
    for name in &names[..RESOLVING] {
        aws.set_state(name, Fixture::Approved);
    }
    let newcomer = names[RESOLVING];
    let reads = aws.calls(GET_PIPELINE_STATE, newcomer);
    aws.set_state(newcomer, Fixture::Waiting);
    // Measured from the first read that sees it, so a machine busy with the rest of the suite
    // (which delays the read itself) does not count against delivery.
    assert!(
        aws.wait_for_calls(GET_PIPELINE_STATE, newcomer, reads + 1, SETUP)
            .await
    );
    let appeared = Instant::now();

    let new_channel = channel(RESOLVING + 1);
    let new_alert = |r: &support::fake_slack_api::ApiRequest| {
        r.method == "chat.postMessage" && r.body["channel"] == new_channel.as_str() && r.ok()
    };
    api.wait_until(SETUP, |r| r.iter().any(new_alert)).await;
    let took = api
        .requests()
        .iter()
        .find(|r| new_alert(r))
        .map(|r| r.at.duration_since(appeared))
        .expect("the new alert");
    assert!(
        took <= poll_interval + Duration::from_secs(2),
        "the new alert took {took:?} after its approval was read: {:#?}",
        timeline(&api.requests(), appeared)
    );

    // Every resolution still goes out (edit and reply), each channel paced at one call a
    // second.
    api.wait_until(SETUP, |r| {
        let updates = r.iter().filter(|r| r.method == "chat.update" && r.ok());
        let replies = r
            .iter()
            .filter(|r| r.method == "chat.postMessage" && r.body["thread_ts"].is_string());
        updates.count() == RESOLVING && replies.count() == RESOLVING
    })
    .await;
    let mut per_channel: HashMap<String, Vec<Instant>> = HashMap::new();
    for r in api.requests() {
        if let Some(c) = r.body["channel"].as_str() {
            per_channel.entry(c.to_owned()).or_default().push(r.at);
        }
    }
    for (c, times) in &per_channel {
        for pair in times.windows(2) {
            let gap = pair[1].duration_since(pair[0]);
            // Request arrival times: a little under the sender's second is slack in transit.
            assert!(
                gap >= Duration::from_millis(900),
                "{c}: two calls {gap:?} apart: {:#?}",
                summarize(&api.requests())
            );
        }
    }
    daemon.terminate().await;
}

/// Each request's time after `from`, method and channel, for failure messages.
fn timeline(requests: &[support::fake_slack_api::ApiRequest], from: Instant) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.at >= from)
        .map(|r| {
            format!(
                "+{:?} {} {} thread_ts={}",
                r.at.duration_since(from),
                r.method,
                r.body["channel"],
                r.body["thread_ts"]
            )
        })
        .collect()
}
