//! AWS answers that are true but awkward: a denied `GetPipelineExecution` (warned once per
//! pipeline, not per alert), an approval stage removed by a pipeline edit (said as such, not
//! "superseded"), and a `lastStatusChange` in the future (clamped to when it was first seen).

use crate::support;

use serde_json::Value;
use support::fixtures::{APPROVAL_STAGE, now_epoch};
use support::payload::{all_text, is_alert, review_tokens};
use support::runner::eventually;
use support::{Fixture, GET_PIPELINE_EXECUTION, InjectedError, SOON, World, state_db};

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_get_pipeline_execution_is_warned_once_per_pipeline() {
    let w = World::start(&["web-app", "api"]).await;
    for p in ["web-app", "api"] {
        w.aws
            .set_operation_error(GET_PIPELINE_EXECUTION, p, InjectedError::access_denied());
    }
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_state("api", Fixture::Waiting);
    let daemon = w.env.spawn_run();
    alerted(&w, &w.aws.token("web-app")).await;
    alerted(&w, &w.aws.token("api")).await;
    // Two more runs of web-app wait: each alert goes out without its revision, unwarned.
    for token in ["second-run-token", "third-run-token"] {
        w.aws.set_waiting("web-app", token);
        alerted(&w, token).await;
    }
    assert!(w.aws.calls(GET_PIPELINE_EXECUTION, "web-app") >= 3);
    // Readable again: the next alert has its revision, and a later denial is news again.
    w.aws.clear_error("web-app");
    w.aws.set_waiting("web-app", "fourth-run-token");
    alerted(&w, "fourth-run-token").await;
    w.aws.set_operation_error(
        GET_PIPELINE_EXECUTION,
        "web-app",
        InjectedError::access_denied(),
    );
    w.aws.set_waiting("web-app", "fifth-run-token");
    alerted(&w, "fifth-run-token").await;

    let out = daemon.terminate().await;
    out.assert_code(0);
    let warned = |pipeline: &str| {
        out.stderr_lines_with(&["WARN", "cannot read the revision being deployed"])
            .into_iter()
            .filter(|l| l.contains(&format!("pipeline={pipeline} ")))
            .count()
    };
    assert_eq!(warned("web-app"), 2, "{}", out.describe());
    assert_eq!(warned("api"), 1, "{}", out.describe());
    let line = &out.stderr_lines_with(&["cannot read the revision being deployed"])[0];
    assert!(
        line.contains("AccessDeniedException") && line.contains("GetPipelineExecution"),
        "{line}"
    );
    assert_eq!(
        out.stderr_lines_with(&["the revision being deployed can be read again"])
            .len(),
        1,
        "{}",
        out.describe()
    );
    let alerts = w.slack.delivered().into_iter().filter(is_alert).count();
    assert_eq!(alerts, 6);
}

/// Waits until the alert for `token` reached Slack.
async fn alerted(w: &World, token: &str) {
    let seen = eventually(SOON, || {
        w.slack
            .delivered()
            .iter()
            .filter(|p| is_alert(p))
            .any(|p| review_tokens(p).iter().any(|t| t == token))
    })
    .await;
    assert!(seen, "no alert for {token}");
}

/// Removes the approval stage from a `GetPipeline` or `GetPipelineState` body.
fn without_approval_stage(body: &mut Value, list: &str) {
    let stages = match list {
        "stages" => body["pipeline"]["stages"].as_array_mut(),
        _ => body["stageStates"].as_array_mut(),
    }
    .expect("stages");
    stages.retain(|s| s["name"] != APPROVAL_STAGE && s["stageName"] != APPROVAL_STAGE);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_whose_stage_an_edit_removed_is_resolved_as_removed_from_the_pipeline() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 1);

    // The edit: a new pipeline version without the approval stage.
    w.aws.set_version("web-app", 2);
    w.aws
        .update_definition("web-app", |d| without_approval_stage(d, "stages"));
    w.aws
        .update_state("web-app", |s| without_approval_stage(s, "stageStates"));
    w.env.once().await.assert_code(0);

    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 2);
    let text = all_text(&delivered[1]);
    assert!(text.contains("Removed from the pipeline"), "{text}");
    assert!(!text.contains("Superseded"), "{text}");
    let outcomes: Vec<Option<String>> = state_db::approvals(&w.env.state_path)
        .into_iter()
        .map(|a| a.outcome)
        .collect();
    assert_eq!(outcomes, [Some("removed".to_owned())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_since_in_the_future_is_clamped_to_when_it_was_first_seen() {
    let w = World::start(&["web-app"]).await;
    let three_days = 3.0 * 24.0 * 3600.0;
    w.aws
        .set_waiting_since("web-app", "future-token", now_epoch() + three_days);
    let before = now_epoch();
    w.env.once().await.assert_code(0);
    let after = now_epoch();

    let delivered = w.slack.delivered();
    assert_eq!(review_tokens(&delivered[0]), ["future-token"]);
    let text = all_text(&delivered[0]);
    // `<!date^EPOCH^…>` after "*Waiting:*": the time the alert says it has waited since.
    let since: f64 = text
        .split("*Waiting:*")
        .nth(1)
        .and_then(|rest| rest.split("<!date^").nth(1))
        .and_then(|rest| rest.split('^').next())
        .and_then(|epoch| epoch.parse().ok())
        .unwrap_or_else(|| panic!("no waiting-since date in {text}"));
    assert!(
        since >= before.floor() - 1.0 && since <= after + 1.0,
        "waiting since {since}, first seen between {before} and {after}"
    );

    let out = w.env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    let shown: jiff::Timestamp = json["waiting"][0]["waiting_since"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let shown = shown.as_second() as f64;
    assert!(
        shown <= after + 1.0,
        "status shows waiting since {shown}, after {after}"
    );
}
