//! AWS faults, through the real binary and SDK: bursts of throttling and 5xx retried within a
//! cycle; a slow answer past the SDK's attempt timeout; answers that are malformed, cut off,
//! of the wrong type or carry values this version does not know. None of them panics, none
//! resolves an approval falsely or announces one twice, and the other pipelines go on.

use crate::support;

use std::time::Duration;

use serde_json::{Value, json};
use support::fake_slack::summarize;
use support::fixtures::{APPROVAL_ACTION, APPROVAL_STAGE, token_from_seed};
use support::payload::{is_alert, mentions_ci, review_tokens};
use support::{
    Fixture, GET_PIPELINE, GET_PIPELINE_EXECUTION, GET_PIPELINE_STATE, InjectedError, Output,
    World, state_db,
};

/// The approval action's `latestExecution` in a `GetPipelineState` body.
fn approval_latest(state: &mut Value) -> &mut Value {
    let stage = state["stageStates"]
        .as_array_mut()
        .expect("stageStates")
        .iter_mut()
        .find(|s| s["stageName"] == APPROVAL_STAGE)
        .expect("approval stage");
    stage["actionStates"]
        .as_array_mut()
        .expect("actionStates")
        .iter_mut()
        .find(|a| a["actionName"] == APPROVAL_ACTION)
        .expect("approval action")
        .get_mut("latestExecution")
        .expect("latestExecution")
}

#[track_caller]
fn assert_no_panic(out: &Output) {
    assert!(
        !out.stderr_plain().contains("panicked"),
        "approval-watch panicked:\n{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn throttling_and_5xx_bursts_are_retried_within_the_cycle() {
    let w = World::start(&["throttled", "erroring", "gateway", "definition", "norev"]).await;
    for p in ["throttled", "erroring", "gateway", "definition", "norev"] {
        w.aws.set_state(p, Fixture::Waiting);
    }
    w.aws.fail_next(
        GET_PIPELINE_STATE,
        "throttled",
        2,
        InjectedError::throttling(),
    );
    w.aws.fail_next(
        GET_PIPELINE_STATE,
        "erroring",
        2,
        InjectedError::new(500, "InternalFailure", "We encountered an internal error."),
    );
    w.aws.raw_next(
        GET_PIPELINE_STATE,
        "gateway",
        1,
        502,
        "<html><body><h1>502 Bad Gateway</h1></body></html>",
    );
    w.aws
        .fail_next(GET_PIPELINE, "definition", 1, InjectedError::throttling());
    // The revision lookup is refused for good: the alert goes out without it.
    w.aws.set_operation_error(
        GET_PIPELINE_EXECUTION,
        "norev",
        InjectedError::access_denied(),
    );

    let out = w.env.once().await;
    assert_no_panic(&out);
    out.assert_code(0);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "throttled"), 3);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "erroring"), 3);
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "gateway"), 2);
    assert_eq!(w.aws.calls(GET_PIPELINE, "definition"), 2);
    let delivered = w.slack.delivered();
    assert_eq!(delivered.len(), 5, "{:#?}", summarize(&w.slack.requests()));
    for p in ["throttled", "erroring", "gateway", "definition", "norev"] {
        let token = w.aws.token(p);
        let alerts = delivered
            .iter()
            .filter(|d| review_tokens(d).contains(&token))
            .count();
        assert_eq!(alerts, 1, "{p}");
    }
    let norev = delivered
        .iter()
        .find(|d| review_tokens(d).contains(&w.aws.token("norev")))
        .unwrap();
    assert!(
        !mentions_ci(norev, "Revision:"),
        "a revision it could not read: {norev:#}"
    );
    assert!(
        !out.stderr_lines_with(&["norev", "AccessDeniedException"])
            .is_empty(),
        "{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_slower_than_the_attempt_timeout_is_retried_and_the_others_go_on() {
    // The SDK gives one attempt 10 s; the first answer for `slow` takes 12 s.
    let w = World::start(&["slow", "quick"]).await;
    w.aws.set_state("slow", Fixture::Waiting);
    w.aws.set_state("quick", Fixture::Waiting);
    w.aws
        .delay_next(GET_PIPELINE_STATE, "slow", 1, Duration::from_secs(12));
    let out = w.env.once().await;
    assert_no_panic(&out);
    out.assert_code(0);
    assert!(
        out.elapsed >= Duration::from_secs(9) && out.elapsed < Duration::from_secs(25),
        "{:?}",
        out.elapsed
    );
    assert_eq!(w.aws.calls(GET_PIPELINE_STATE, "slow"), 2);
    assert_eq!(w.slack.delivered_count(), 2);
}

/// One way an answer can be wrong, applied to a pipeline whose approval is recorded waiting.
struct Fault {
    pipeline: &'static str,
    /// Whether the read counts as failed (exit 1, logged with the pipeline's name).
    read_fails: bool,
    inject: fn(&World, &str),
}

fn edit_state(w: &World, p: &str, f: impl FnOnce(&mut Value)) {
    w.aws.update_state(p, f);
}

fn faults() -> Vec<Fault> {
    vec![
        Fault {
            pipeline: "paused",
            read_fails: false,
            inject: |w, p| edit_state(w, p, |s| approval_latest(s)["status"] = json!("Paused")),
        },
        Fault {
            pipeline: "no-token",
            read_fails: false,
            inject: |w, p| {
                edit_state(w, p, |s| {
                    approval_latest(s).as_object_mut().unwrap().remove("token");
                })
            },
        },
        Fault {
            pipeline: "no-status",
            read_fails: false,
            inject: |w, p| {
                edit_state(w, p, |s| {
                    approval_latest(s).as_object_mut().unwrap().remove("status");
                })
            },
        },
        Fault {
            pipeline: "no-time",
            read_fails: false,
            inject: |w, p| {
                edit_state(w, p, |s| {
                    approval_latest(s)
                        .as_object_mut()
                        .unwrap()
                        .remove("lastStatusChange");
                })
            },
        },
        Fault {
            pipeline: "extra-fields",
            read_fails: false,
            inject: |w, p| {
                edit_state(w, p, |s| {
                    s["newTopLevelThing"] = json!({"nested": [1, 2, 3]});
                    approval_latest(s)["newField"] = json!("something new");
                })
            },
        },
        Fault {
            pipeline: "not-json",
            read_fails: true,
            inject: |w, p| {
                w.aws
                    .set_raw_response(GET_PIPELINE_STATE, p, 200, "not json at all")
            },
        },
        Fault {
            pipeline: "cut-off",
            read_fails: true,
            inject: |w, p| {
                let body = w.aws.state_json(p).to_string();
                let half = &body[..body.len() / 2];
                w.aws.set_raw_response(GET_PIPELINE_STATE, p, 200, half);
            },
        },
        Fault {
            pipeline: "wrong-type",
            read_fails: true,
            inject: |w, p| edit_state(w, p, |s| approval_latest(s)["status"] = json!(42)),
        },
        Fault {
            pipeline: "html-502",
            read_fails: true,
            inject: |w, p| {
                w.aws.set_raw_response(
                    GET_PIPELINE_STATE,
                    p,
                    502,
                    "<html><body>502 Bad Gateway</body></html>",
                )
            },
        },
        Fault {
            pipeline: "denied",
            read_fails: true,
            inject: |w, p| {
                let e = InjectedError::access_denied();
                w.aws.set_error(p, e.status, &e.error_type, &e.message);
            },
        },
        Fault {
            pipeline: "not-found",
            read_fails: true,
            inject: |w, p| {
                let e = InjectedError::not_found();
                w.aws.set_error(p, e.status, &e.error_type, &e.message);
            },
        },
        // (Throttling past the retries slows the whole account's budget down, as it should;
        // `detection.rs` covers it on its own.)
        Fault {
            pipeline: "definition-gone",
            read_fails: true,
            inject: |w, p| {
                // A new pipeline version whose definition cannot be read.
                w.aws.set_version(p, 8);
                w.aws
                    .set_raw_response(GET_PIPELINE, p, 200, "{\"pipeline\": \"oops\"}");
            },
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_failed_reads_never_resolve_nor_announce_twice() {
    let faults = faults();
    let mut names: Vec<&str> = faults.iter().map(|f| f.pipeline).collect();
    names.push("healthy");
    let w = World::start(&names).await;
    // Three pipelines per route, all to the same webhook: each route is paced on its own, so
    // a dozen messages at once do not take a dozen seconds.
    let mut config = w.env.config_text();
    for (i, chunk) in names.chunks(3).enumerate() {
        let globs: Vec<String> = chunk.iter().map(|p| format!("\"{p}\"")).collect();
        config.push_str(&format!(
            "\n[[route]]\nname = \"r{i}\"\npipelines = [{}]\nwebhook_url_env = \"SLACK_WEBHOOK_URL\"\n",
            globs.join(", ")
        ));
    }
    w.env.write_raw_config(&config);
    for p in &names {
        w.aws.set_state(p, Fixture::Waiting);
    }
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), names.len());

    for f in &faults {
        (f.inject)(&w, f.pipeline);
    }
    // The healthy pipeline moves on meanwhile: a new run waits.
    let new_token = token_from_seed("healthy-2");
    w.aws.set_waiting("healthy", &new_token);
    let mut outs = Vec::new();
    for _ in 0..3 {
        let out = w.env.once().await;
        assert_no_panic(&out);
        out.assert_code(1);
        outs.push(out);
    }
    let after_faults = w.slack.requests();
    let new: Vec<&Value> = after_faults[names.len()..]
        .iter()
        .map(|r| r.json())
        .collect();
    // Only the healthy pipeline's news: its new alert and the old one superseded.
    assert_eq!(
        new.len(),
        2,
        "{:#?}",
        summarize(&after_faults[names.len()..])
    );
    assert!(new.iter().any(|p| review_tokens(p) == [new_token.clone()]));
    assert!(new.iter().any(|p| mentions_ci(p, "supersed")));
    let rows = state_db::approvals(&w.env.state_path);
    for f in &faults {
        let row = rows.iter().find(|r| r.pipeline == f.pipeline).unwrap();
        assert_eq!(
            row.outcome, None,
            "{}: resolved as {:?} from a bad answer",
            f.pipeline, row.outcome
        );
        let logged = outs[0].stderr_lines_with(&[f.pipeline]);
        if f.read_fails {
            assert!(
                !logged.is_empty(),
                "{}: the failed read is not logged with the pipeline's name:\n{}",
                f.pipeline,
                outs[0].describe()
            );
        }
    }

    // Healthy again, the same approvals still waiting: nothing is announced twice …
    for f in &faults {
        w.aws.clear_error(f.pipeline);
        w.aws.set_state(f.pipeline, Fixture::Waiting);
    }
    let out = w.env.once().await;
    assert_no_panic(&out);
    out.assert_code(0);
    assert_eq!(w.slack.request_count(), after_faults.len());
    // … and each outcome is told once.
    for f in &faults {
        w.aws.set_state(f.pipeline, Fixture::Approved);
    }
    w.env.once().await.assert_code(0);
    w.env.once().await.assert_code(0);
    let requests = w.slack.requests();
    let told: Vec<&Value> = requests[after_faults.len()..]
        .iter()
        .map(|r| r.json())
        .collect();
    assert_eq!(told.len(), faults.len(), "{:#?}", summarize(&requests));
    for f in &faults {
        let n = told
            .iter()
            .filter(|p| {
                mentions_ci(p, "approved")
                    && support::payload::mentions(p, f.pipeline)
                    && !is_alert(p)
            })
            .count();
        assert_eq!(n, 1, "{}: {n} approvals told", f.pipeline);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_state_without_its_stages_is_not_a_resolution() {
    // A `GetPipelineState` answer that lacks `stageStates` (or lists none) says nothing about
    // the approval; a pipeline always has stages. Taking it as "the action is gone" would tell
    // the channel "superseded" about an approval that is still waiting.
    let names = [
        "no-stages",
        "empty-stages",
        "stage-missing",
        "no-definition",
    ];
    let w = World::start(&names).await;
    for p in names {
        w.aws.set_state(p, Fixture::Waiting);
    }
    w.env.once().await.assert_code(0);
    assert_eq!(w.slack.delivered_count(), 4);
    w.aws.update_state("no-stages", |s| {
        s.as_object_mut().unwrap().remove("stageStates");
    });
    w.aws
        .update_state("empty-stages", |s| s["stageStates"] = json!([]));
    w.aws.update_state("stage-missing", |s| {
        s["stageStates"]
            .as_array_mut()
            .unwrap()
            .retain(|st| st["stageName"] != APPROVAL_STAGE);
    });
    // A new version whose GetPipeline answer holds no pipeline at all.
    w.aws.set_version("no-definition", 8);
    w.aws.set_definition_json("no-definition", json!({}));
    for _ in 0..2 {
        let out = w.env.once().await;
        assert_no_panic(&out);
    }
    let rows = state_db::approvals(&w.env.state_path);
    let resolved: Vec<String> = rows
        .iter()
        .filter(|r| r.outcome.is_some())
        .map(|r| format!("{} → {}", r.pipeline, r.outcome.as_deref().unwrap()))
        .collect();
    assert!(
        resolved.is_empty(),
        "resolved from answers without the approval's stage: {resolved:?}; Slack heard {:#?}",
        summarize(&w.slack.requests()[4..])
    );
    assert_eq!(w.slack.request_count(), 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lasting_failure_is_logged_once_and_its_recovery_once() {
    let w = World::start(&["web-app", "ledger"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.set_state("ledger", Fixture::Waiting);
    let daemon = w.env.spawn_run();
    w.slack.wait_for_delivered(2, support::SOON).await;
    w.aws
        .set_error("ledger", 400, "AccessDeniedException", "not authorized");
    let seen = w.aws.calls(GET_PIPELINE_STATE, "ledger");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "ledger", seen + 5, support::SOON)
            .await
    );
    w.aws.clear_error("ledger");
    let seen = w.aws.calls(GET_PIPELINE_STATE, "ledger");
    assert!(
        w.aws
            .wait_for_calls(GET_PIPELINE_STATE, "ledger", seen + 3, support::SOON)
            .await
    );
    let out = daemon.terminate().await;
    out.assert_code(0);
    assert_no_panic(&out);
    let warnings: Vec<String> = out
        .stderr_lines_with(&["ledger", "AccessDeniedException"])
        .into_iter()
        .filter(|l| l.contains("WARN"))
        .collect();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert_eq!(
        out.stderr_lines_with(&["ledger", "readable again"]).len(),
        1,
        "{}",
        out.describe()
    );
    assert_eq!(
        w.slack.request_count(),
        2,
        "nothing resolved by the failure"
    );
}
