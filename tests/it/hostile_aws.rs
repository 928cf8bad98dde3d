//! Hostile answers from AWS against the real binary: bodies nested 100,000 levels deep (a
//! success, an error, a listing) and bodies larger than the bound. Each is a failed read of
//! that one pipeline (`MalformedResponse`), never a crash, and the other pipelines carry on.

use crate::support;

use serde_json::json;
use support::fixtures::error_body;
use support::payload::is_alert;
use support::{
    Fixture, GET_PIPELINE, GET_PIPELINE_EXECUTION, GET_PIPELINE_STATE, LIST_PIPELINES, Output,
    World,
};

/// What the log says of each kind of hostile answer.
const NESTED: &str = "nested more than";
const LARGE: &str = "larger than";

/// Deeper than any stack: the SDK's JSON skipper recurses once per level.
const DEPTH: usize = 100_000;

/// `{"pipelineName": …, <field>: [[[…]]]}`: valid JSON, nested `DEPTH` levels deep.
fn nested(head: &str) -> String {
    format!(
        "{{{head},\"junk\":{}{}}}",
        "[".repeat(DEPTH),
        "]".repeat(DEPTH)
    )
}

/// Valid JSON of more than `bytes` bytes: an unknown field holding a long string.
fn oversized(head: &str, bytes: usize) -> String {
    format!("{{{head},\"padding\":\"{}\"}}", "a".repeat(bytes))
}

#[track_caller]
fn assert_no_crash(out: &Output) {
    let stderr = out.stderr_plain();
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack overflow"),
        "approval-watch crashed:\n{}",
        out.describe()
    );
    assert!(
        out.code.is_some(),
        "approval-watch was killed by a signal:\n{}",
        out.describe()
    );
}

/// The one WARN line naming `pipeline` as unreadable with `MalformedResponse` from
/// `operation`, for `reason`.
#[track_caller]
fn assert_malformed(out: &Output, pipeline: &str, operation: &str, reason: &str) {
    let lines = out.stderr_lines_with(&[
        "cannot read pipeline",
        reason,
        &format!("pipeline={pipeline}"),
        "code=MalformedResponse",
        &format!("operation=\"{operation}\""),
    ]);
    assert_eq!(
        lines.len(),
        1,
        "expected one MalformedResponse line for {pipeline} ({operation}):\n{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_answers_fail_that_read_only() {
    let pipelines = [
        "web-app",
        "deep-state",
        "deep-error",
        "deep-definition",
        "deep-execution",
    ];
    let w = World::start(&pipelines).await;
    // A legitimate answer with brackets and escaped quotes inside strings: not nesting.
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.update_state("web-app", |s| {
        s["padding"] = json!(format!("\\\"{}", "[{".repeat(DEPTH)));
    });
    w.aws.raw_next(
        GET_PIPELINE_STATE,
        "deep-state",
        1,
        200,
        &nested("\"pipelineName\":\"deep-state\""),
    );
    w.aws.raw_next(
        GET_PIPELINE_STATE,
        "deep-error",
        1,
        400,
        &nested("\"__type\":\"ValidationException\",\"message\":\"no\""),
    );
    w.aws.raw_next(
        GET_PIPELINE,
        "deep-definition",
        1,
        200,
        &nested("\"metadata\":{}"),
    );
    w.aws.set_state("deep-definition", Fixture::Waiting);
    w.aws.set_state("deep-execution", Fixture::Waiting);
    w.aws.raw_next(
        GET_PIPELINE_EXECUTION,
        "deep-execution",
        1,
        200,
        &nested("\"pipelineExecution\":{}"),
    );

    let out = w.env.once().await;
    assert_no_crash(&out);
    out.assert_code(1);
    assert_malformed(&out, "deep-state", GET_PIPELINE_STATE, NESTED);
    assert_malformed(&out, "deep-error", GET_PIPELINE_STATE, NESTED);
    assert_malformed(&out, "deep-definition", GET_PIPELINE, NESTED);
    assert!(
        out.stderr_lines_with(&[
            "cannot read the revision",
            "pipeline=deep-execution",
            "code=MalformedResponse",
            NESTED,
        ])
        .len()
            == 1,
        "{}",
        out.describe()
    );
    // A hostile answer is not retried: the same answer would come back.
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "deep-state"), 1);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "deep-error"), 1);

    // web-app and deep-execution (alerted without its revision) were announced.
    let alerts: Vec<String> = w
        .slack
        .delivered()
        .iter()
        .filter(|p| is_alert(p))
        .map(|p| p.to_string())
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:#?}");
    assert!(alerts.iter().any(|a| a.contains("web-app")));
    assert!(alerts.iter().any(|a| a.contains("deep-execution")));

    // The next cycle reads the hostile pipelines normally again.
    let out = w.env.once().await;
    assert_no_crash(&out);
    out.assert_code(0);
    assert_eq!(
        w.slack.delivered().iter().filter(|p| is_alert(p)).count(),
        3,
        "deep-definition is announced once its definition reads"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_answers_fail_that_read_only() {
    let limit = approval_watch::aws::MAX_ANSWER_BYTES;
    let w = World::start(&["web-app", "huge-state", "huge-error"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    // A real waiting state, padded past the bound: it would parse, and be alerted.
    w.aws.set_state("huge-state", Fixture::Waiting);
    let mut state = w.aws.state_json("huge-state");
    state["padding"] = json!("a".repeat(limit));
    w.aws
        .set_raw_response(GET_PIPELINE_STATE, "huge-state", 200, &state.to_string());
    // Chunked: no Content-Length to refuse it by, the bound holds while reading.
    w.aws.set_raw_streamed(
        GET_PIPELINE_STATE,
        "huge-error",
        400,
        &oversized(
            "\"__type\":\"ValidationException\",\"message\":\"no\"",
            limit,
        ),
    );

    let out = w.env.once().await;
    assert_no_crash(&out);
    out.assert_code(1);
    assert_malformed(&out, "huge-state", GET_PIPELINE_STATE, LARGE);
    assert_malformed(&out, "huge-error", GET_PIPELINE_STATE, LARGE);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "huge-state"), 1);
    let alerts = w.slack.delivered();
    assert_eq!(alerts.iter().filter(|p| is_alert(p)).count(), 1);
    assert!(alerts[0].to_string().contains("web-app"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deeply_nested_listing_leaves_the_configured_pipelines_alone() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws
        .set_list_raw(Some((200, nested("\"nextToken\":\"x\""))));
    let config = w.env.config_text();
    w.env
        .write_raw_config(&format!("{config}\n[[discover]]\ninclude = [\"*\"]\n"));

    let out = w.env.once().await;
    assert_no_crash(&out);
    let listing =
        out.stderr_lines_with(&["cannot list pipelines", NESTED, "code=MalformedResponse"]);
    assert_eq!(listing.len(), 1, "{}", out.describe());
    assert_eq!(w.aws.total_calls(LIST_PIPELINES), 1);
    let alerts = w.slack.delivered();
    assert_eq!(alerts.iter().filter(|p| is_alert(p)).count(), 1);

    // An error body nested as deep: the same.
    w.aws.set_list_raw(Some((
        400,
        serde_json::to_string(&error_body("ThrottlingException", "slow"))
            .unwrap()
            .replacen(
                '}',
                &format!(",\"junk\":{}{}}}", "[".repeat(DEPTH), "]".repeat(DEPTH)),
                1,
            ),
    )));
    let out = w.env.once().await;
    assert_no_crash(&out);
    assert_eq!(
        out.stderr_lines_with(&["cannot list pipelines", NESTED, "code=MalformedResponse"])
            .len(),
        1,
        "{}",
        out.describe()
    );
}
