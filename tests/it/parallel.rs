//! Execution modes against the real binary: a PARALLEL pipeline is read per execution (its
//! state shows no run), each run waiting at an approval is its own approval; a QUEUED one
//! holds one run per stage; a mode this version does not know is said, never silent.

use crate::support;

use serde_json::{Value, json};
use support::fixtures::{self, APPROVAL_STAGE, Fixture};
use support::parallel_runs::Run;
use support::{
    GET_PIPELINE, GET_PIPELINE_STATE, LIST_ACTION_EXECUTIONS, LIST_PIPELINE_EXECUTIONS, World,
};

const PIPELINE: &str = "web-app";
const DAY: f64 = 24.0 * 3600.0;

/// The token (`externalExecutionId`) of run `n`.
fn token(n: u32) -> String {
    fixtures::token_from_seed(&format!("ext-{n}"))
}

fn run_id(n: u32) -> String {
    fixtures::token_from_seed(&format!("run-{n}"))
}

/// A PARALLEL pipeline with runs 1 and 2 waiting at its approval.
async fn two_waiting() -> World {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    let now = fixtures::now_epoch();
    w.aws
        .add_run(PIPELINE, Run::waiting(&run_id(1), &token(1), now - 900.0));
    w.aws
        .add_run(PIPELINE, Run::waiting(&run_id(2), &token(2), now - 300.0));
    w
}

/// The operations of a read once the definition is known (a second `once`).
async fn warm_read(w: &World) -> Vec<String> {
    w.env.once().await.assert_code(0);
    let before = w.aws.requests().len();
    w.env.once().await.assert_code(0);
    w.aws.requests()[before..]
        .iter()
        .map(|r| r.operation.clone())
        .collect()
}

fn text_of(message: &Value) -> String {
    message.to_string()
}

/// Delivered messages that mention `needle`.
fn mentioning(w: &World, needle: &str) -> Vec<Value> {
    w.slack
        .delivered()
        .into_iter()
        .filter(|m| text_of(m).contains(needle))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_runs_waiting_at_once_are_two_alerts_and_each_resolves_alone() {
    let w = two_waiting().await;
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2, "{:?}", w.slack.delivered());
    for n in [1, 2] {
        let about = mentioning(&w, &fixtures::review_fragment(&token(n)));
        assert_eq!(about.len(), 1, "run {n}: {about:?}");
        // The alert names its run and links the run's page in the console.
        let text = text_of(&about[0]);
        assert!(text.contains(&run_id(n)[..8]), "{text}");
        assert!(
            text.contains(&format!(
                "/pipelines/{PIPELINE}/executions/{}/timeline?region=",
                run_id(n)
            )),
            "{text}"
        );
        // And the revision that run deploys.
        assert!(text.contains(&format!("Run {}", run_id(n))), "{text}");
    }

    // A restart reads them again: nothing new.
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2);

    // Run 2 approved in the console: only its approval is resolved, with who and the comment.
    w.aws.decide_run(
        PIPELINE,
        &run_id(2),
        "Succeeded",
        Some(fixtures::APPROVED_BY),
        Some(fixtures::APPROVED_COMMENT),
    );
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 3);
    let resolution = text_of(&w.slack.delivered()[2]);
    assert!(resolution.contains(&run_id(2)), "{resolution}");
    assert!(
        resolution.contains(fixtures::APPROVED_COMMENT),
        "{resolution}"
    );
    assert!(resolution.contains("alice"), "{resolution}");
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 3, "run 1 still waits");

    // Run 1 stopped: its approval ends too, once.
    w.aws
        .decide_run(PIPELINE, &run_id(1), "Abandoned", None, None);
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 4);
    assert!(text_of(&w.slack.delivered()[3]).contains(&run_id(1)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_switch_from_superseded_to_parallel_while_an_approval_waits_loses_and_repeats_nothing() {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_state(PIPELINE, Fixture::Waiting);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 1);
    let waiting = w.aws.token(PIPELINE);

    // Edited to PARALLEL (a new version); the run waiting goes on, now seen per execution,
    // its externalExecutionId the token it had.
    w.aws.set_version(PIPELINE, 8);
    w.aws.set_mode(PIPELINE, "PARALLEL");
    let since = w.aws.waiting_since(PIPELINE);
    w.aws.add_run(
        PIPELINE,
        Run::waiting(fixtures::FIXTURE_EXECUTION_ID, &waiting, since),
    );
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 1, "{:?}", w.slack.delivered());
    assert_eq!(w.aws.calls(GET_PIPELINE, PIPELINE), 2, "one per version");

    // A second run arrives and the first is rejected: one new alert, one resolution.
    w.aws.add_run(
        PIPELINE,
        Run::waiting(&run_id(2), &token(2), fixtures::now_epoch()),
    );
    w.aws.decide_run(
        PIPELINE,
        fixtures::FIXTURE_EXECUTION_ID,
        "Failed",
        Some("arn:aws:iam::123456789012:user/bob"),
        Some("not today"),
    );
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 3, "{:?}", w.slack.delivered());
    assert_eq!(mentioning(&w, &token(2)).len(), 1);
    assert_eq!(mentioning(&w, "not today").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_history_costs_one_page_and_one_call_per_run_in_progress() {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    let now = fixtures::now_epoch();
    // 50 runs finished 8 to 58 days ago: older than any approval of this pipeline can wait.
    for n in 0..50 {
        w.aws.add_run(
            PIPELINE,
            Run::finished(&run_id(100 + n), now - (8.0 + f64::from(n)) * DAY),
        );
    }
    w.aws
        .add_run(PIPELINE, Run::waiting(&run_id(1), &token(1), now - 600.0));
    w.aws
        .add_run(PIPELINE, Run::waiting(&run_id(2), &token(2), now - 60.0));
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2);
    assert_eq!(w.aws.calls(LIST_PIPELINE_EXECUTIONS, PIPELINE), 1);
    assert_eq!(w.aws.calls(LIST_ACTION_EXECUTIONS, PIPELINE), 2);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, PIPELINE), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_parallel_pipeline_costs_two_calls_a_read_once_its_definition_is_known() {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    w.aws.add_run(
        PIPELINE,
        Run::finished(&run_id(1), fixtures::now_epoch() - 3600.0),
    );
    let ops = warm_read(&w).await;
    assert_eq!(ops, [GET_PIPELINE_STATE, LIST_PIPELINE_EXECUTIONS]);
    assert_eq!(w.slack.delivered_count(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_execution_mode_this_version_does_not_know_is_said_and_once_exits_1() {
    let w = World::start(&[PIPELINE, "api"]).await;
    w.aws.set_mode(PIPELINE, "STAGGERED");
    let out = w.env.once().await;
    out.assert_code(1);
    let stderr = &out.stderr;
    assert!(
        stderr.contains("WARN") && stderr.contains(PIPELINE) && stderr.contains("STAGGERED"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot be watched"), "{stderr}");
    // status and check-config say so too.
    let status = w.env.run(&["status", "--json"]).await;
    status.assert_code(0);
    let json: Value = serde_json::from_str(&status.stdout).expect("status --json");
    assert_eq!(json["unwatchable"][0]["pipeline"], PIPELINE, "{json:#}");
    assert!(
        json["unwatchable"][0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("STAGGERED")),
        "{json:#}"
    );
    for out in [
        w.env.run(&["status"]).await,
        w.env.run(&["check-config"]).await,
    ] {
        out.assert_code(0);
        assert!(
            out.stdout
                .contains(&format!("cannot be watched: {PIPELINE} (")),
            "{}",
            out.stdout
        );
    }
    // Known again after an edit: watched, exit 0.
    w.aws.set_mode(PIPELINE, "SUPERSEDED");
    w.aws.set_version(PIPELINE, 8);
    w.env.once().await.assert_code(0);
    let status = w.env.run(&["status"]).await;
    assert!(
        !status.stdout.contains("cannot be watched"),
        "{}",
        status.stdout
    );
}

/// QUEUED: each approval stage holds its own run, and `GetPipelineState` shows each stage's.
#[tokio::test(flavor = "multi_thread")]
async fn queued_runs_at_two_approval_stages_are_two_approvals_resolved_alone() {
    const CANARY: &str = "Approve_Canary";
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "QUEUED");
    // A second approval stage, a copy of the first, before it.
    w.aws.update_definition(PIPELINE, |d| {
        let stages = d["pipeline"]["stages"].as_array_mut().unwrap();
        let i = stages
            .iter()
            .position(|s| s["name"] == APPROVAL_STAGE)
            .unwrap();
        let mut canary = stages[i].clone();
        canary["name"] = json!(CANARY);
        stages.insert(i, canary);
    });
    w.aws.set_state(PIPELINE, Fixture::Waiting);
    let (older, newer) = (token(1), token(2));
    w.aws.update_state(PIPELINE, |s| {
        let stages = s["stageStates"].as_array_mut().unwrap();
        let i = stages
            .iter()
            .position(|s| s["stageName"] == APPROVAL_STAGE)
            .unwrap();
        let mut canary = stages[i].clone();
        stages[i]["actionStates"][0]["latestExecution"]["token"] = json!(older);
        canary["stageName"] = json!(CANARY);
        canary["latestExecution"]["pipelineExecutionId"] = json!(run_id(2));
        canary["actionStates"][0]["latestExecution"]["token"] = json!(newer);
        stages.insert(i, canary);
    });
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 2, "{:?}", w.slack.delivered());
    assert_eq!(mentioning(&w, &older).len(), 1);
    assert_eq!(mentioning(&w, &newer).len(), 1);

    // The older run approved at the production stage: that one only.
    w.aws.update_state(PIPELINE, |s| {
        let stage = s["stageStates"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|s| s["stageName"] == APPROVAL_STAGE)
            .unwrap();
        let exec = &mut stage["actionStates"][0]["latestExecution"];
        exec["status"] = json!("Succeeded");
        exec["lastUpdatedBy"] = json!(fixtures::APPROVED_BY);
    });
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 3);
    let resolution = text_of(&w.slack.delivered()[2]);
    assert!(resolution.contains(APPROVAL_STAGE), "{resolution}");
    assert!(!resolution.contains(CANARY), "{resolution}");
}

/// A run may build for long before its approval starts waiting: however long ago it started,
/// a run in progress on the pages read is read, and its approval told.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_that_started_long_before_its_approval_is_still_read() {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    let now = fixtures::now_epoch();
    let mut run = Run::waiting(&run_id(1), &token(1), now - 600.0);
    // Started 9 days ago: before the look-back of a 7-day approval plus a day.
    run.started = now - 9.0 * DAY;
    w.aws.add_run(PIPELINE, run);
    w.env.once().await.assert_code(0);
    let about = mentioning(&w, &fixtures::review_fragment(&token(1)));
    assert_eq!(about.len(), 1, "{:?}", w.slack.delivered());
}

/// A run recorded as waiting that CodePipeline no longer knows does not stop the pipeline's
/// other runs from being read: a new one waiting is told.
#[tokio::test(flavor = "multi_thread")]
async fn a_recorded_run_aws_no_longer_knows_does_not_hide_new_ones() {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    let now = fixtures::now_epoch();
    w.aws
        .add_run(PIPELINE, Run::waiting(&run_id(1), &token(1), now - 900.0));
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 1);
    w.aws.forget_run(PIPELINE, &run_id(1));
    w.aws
        .add_run(PIPELINE, Run::waiting(&run_id(2), &token(2), now - 60.0));
    let out = w.env.once().await;
    out.assert_code(0);
    assert_eq!(
        mentioning(&w, &fixtures::review_fragment(&token(2))).len(),
        1,
        "{}",
        out.describe()
    );
    assert!(
        !out.stderr_lines_with(&["no longer read"]).is_empty(),
        "{}",
        out.describe()
    );
}

/// A PARALLEL pipeline without a manual approval has no run to list: one call a read.
#[tokio::test(flavor = "multi_thread")]
async fn a_parallel_pipeline_without_approvals_costs_one_call_a_read() {
    let w = World::start(&[PIPELINE]).await;
    w.aws.set_mode(PIPELINE, "PARALLEL");
    w.aws.update_definition(PIPELINE, |d| {
        for stage in d["pipeline"]["stages"].as_array_mut().expect("stages") {
            for action in stage["actions"].as_array_mut().expect("actions") {
                action["actionTypeId"]["category"] = json!("Build");
            }
        }
    });
    let ops = warm_read(&w).await;
    assert_eq!(ops, [GET_PIPELINE_STATE]);
}
