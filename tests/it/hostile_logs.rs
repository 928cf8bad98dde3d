//! Log lines cannot be forged: text from AWS (a stage and an action name, a discovered
//! pipeline's name, an error message) carrying a newline, a fake timestamp and a terminal
//! escape sequence is written escaped by the real binary, in every `--log-format`.

use crate::support;

use jiff::Timestamp;
use serde_json::{Value, json};
use support::fixtures::{APPROVAL_ACTION, APPROVAL_STAGE};
use support::{Fixture, GET_PIPELINE_STATE, InjectedError, Output, World};

/// A fake log line, then red text on a terminal.
const FORGED: &str = "\n2026-01-01T00:00:00Z  INFO forged\u{1b}[31m";

fn rename(pipeline_json: &mut Value, list: &str, name: &str, actions: &str, action: &str) {
    for s in pipeline_json[list].as_array_mut().unwrap() {
        if s[name] == APPROVAL_STAGE {
            s[name] = json!(format!("Stage{FORGED}"));
            for a in s[actions].as_array_mut().unwrap() {
                if a[action] == APPROVAL_ACTION {
                    a[action] = json!(format!("Action{FORGED}"));
                }
            }
        }
    }
}

/// `once` with `format` against an approval whose stage and action names are hostile, a
/// pipeline whose read fails with a hostile message, and a hostile pipeline name discovered.
async fn once_with_hostile_text(format: &str) -> Output {
    let w = World::start(&["web-app", "denied"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    w.aws.update_definition("web-app", |d| {
        rename(&mut d["pipeline"], "stages", "name", "actions", "name")
    });
    w.aws.update_state("web-app", |s| {
        rename(s, "stageStates", "stageName", "actionStates", "actionName")
    });
    w.aws.set_operation_error(
        GET_PIPELINE_STATE,
        "denied",
        InjectedError::new(400, "AccessDeniedException", &format!("Denied{FORGED}")),
    );
    let discovered = format!("discovered{FORGED}");
    w.aws.add_pipeline(&discovered);
    // Its read fails, so a warning names it (an idle pipeline read cleanly logs nothing).
    w.aws.set_operation_error(
        GET_PIPELINE_STATE,
        &discovered,
        InjectedError::new(400, "AccessDeniedException", "denied"),
    );
    let config = w.env.config_text();
    w.env
        .write_raw_config(&format!("{config}\n[[discover]]\ninclude = [\"*\"]\n"));
    let out = w.env.run(&["--log-format", format, "once"]).await;
    assert_eq!(
        w.slack.delivered_count(),
        1,
        "the hostile approval is alerted:\n{}",
        out.describe()
    );
    out
}

/// Nothing raw reached the log, whatever the format: no ESC, no line of the forger's.
#[track_caller]
fn assert_not_forged(out: &Output) {
    assert!(
        !out.stderr.contains('\u{1b}'),
        "a raw ESC reached the log:\n{}",
        out.stderr
    );
    for line in out.stderr.lines() {
        assert!(
            !line.starts_with("2026-01-01T00:00:00Z"),
            "a forged line: {line:?}\n{}",
            out.stderr
        );
    }
}

/// Lines that show the hostile text (escaped); one per place it came in, at least.
fn mentions(out: &Output) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.contains("INFO forged"))
        .collect()
}

#[track_caller]
fn assert_each_source_logged(lines: &[&str], stderr: &str) {
    for source in ["Stage", "Action", "Denied", "discovered"] {
        assert!(
            lines.iter().any(|l| l.contains(source)),
            "no log line shows the hostile {source} text:\n{stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_escape_control_characters_from_aws() {
    let out = once_with_hostile_text("text").await;
    assert_not_forged(&out);
    // Every line is one event: it starts with this run's timestamp.
    let now = Timestamp::now();
    for line in out.stderr.lines() {
        let at: Timestamp = line
            .split_whitespace()
            .next()
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("a line without a timestamp: {line:?}\n{}", out.stderr));
        assert!(
            now.duration_since(at).abs() < jiff::SignedDuration::from_mins(5),
            "{line:?}"
        );
    }
    let lines = mentions(&out);
    assert_each_source_logged(&lines, &out.stderr);
    assert!(
        lines
            .iter()
            .all(|l| l.contains("\\n2026-01-01T00:00:00Z  INFO forged\\u{1b}[31m")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn journal_logs_escape_control_characters_from_aws() {
    let out = once_with_hostile_text("journal").await;
    assert_not_forged(&out);
    // Every line is one journal entry with its priority.
    for line in out.stderr.lines() {
        let priority = line
            .strip_prefix('<')
            .and_then(|l| l.split_once('>'))
            .map(|(p, _)| p);
        assert!(
            matches!(priority, Some("3" | "4" | "6" | "7")),
            "a line without a priority: {line:?}\n{}",
            out.stderr
        );
    }
    let lines = mentions(&out);
    assert_each_source_logged(&lines, &out.stderr);
    assert!(
        lines.iter().all(|l| l.contains("\\u{1b}[31m")),
        "{lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_escape_control_characters_from_aws() {
    let out = once_with_hostile_text("json").await;
    assert_not_forged(&out);
    // Every line is one JSON object, and the hostile text comes back out of it intact.
    let events: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}\n{}", out.stderr))
        })
        .collect();
    let lines = mentions(&out);
    assert_each_source_logged(&lines, &out.stderr);
    let decoded = events
        .iter()
        .flat_map(|e| e.as_object().into_iter().flat_map(|o| o.values()))
        .filter_map(Value::as_str)
        .filter(|v| v.contains(FORGED))
        .count();
    assert!(decoded >= 4, "{}", out.stderr);
}
