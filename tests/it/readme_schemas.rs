//! The README documents the JSON that `status --json`, `audit --json` and `once --dry-run`
//! print; scripts are written against it. Every key printed is documented, and every key
//! documented is printed.

use crate::support;

use std::collections::BTreeSet;

use serde_json::Value;
use support::{Fixture, SlackResponse, World};

/// The `"key"`s of the first inline code span after `marker` in the README.
fn documented_keys(marker: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let at = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &readme[at + marker.len()..];
    let start = rest.find('`').expect("a code span") + 1;
    let span = &rest[start..start + rest[start..].find('`').expect("its end")];
    span.split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every object key in `value`, at any depth, except inside Slack payloads (Slack's schema).
pub(crate) fn printed_keys(value: &Value, keys: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                keys.insert(k.clone());
                if k != "payload" {
                    printed_keys(v, keys);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| printed_keys(v, keys)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_prints_exactly_the_documented_keys() {
    let w = World::start(&["web-app", "api", "db"]).await;
    // One alert delivered (a waiting approval), one refused for good (a failed message), one
    // rate-limited (a queue).
    w.aws.set_state("web-app", Fixture::Waiting);
    w.env.once().await.assert_code(0);
    w.slack
        .set_default(SlackResponse::status(404, "no_service"));
    w.aws.set_state("api", Fixture::Waiting);
    w.env.once().await.assert_code(1);
    w.slack.set_default(SlackResponse::ok());
    w.slack.push_response(SlackResponse::rate_limited(60));
    w.aws.set_state("db", Fixture::Waiting);
    w.env.once().await.assert_code(1);

    let out = w.env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).expect("status --json is one object");
    assert_eq!(
        json["waiting"].as_array().map(Vec::len),
        Some(3),
        "{json:#}"
    );
    assert_eq!(json["queues"].as_array().map(Vec::len), Some(1), "{json:#}");
    assert_eq!(
        json["failed_messages"].as_array().map(Vec::len),
        Some(1),
        "{json:#}"
    );
    let mut printed = BTreeSet::new();
    printed_keys(&json, &mut printed);
    assert_eq!(
        printed,
        documented_keys("`status --json` prints one object:"),
        "README's status --json schema"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_prints_exactly_the_documented_keys() {
    let w = World::start(&["web-app"]).await;
    w.aws.set_state("web-app", Fixture::Waiting);
    let out = w.env.dry_run().await;
    out.assert_code(0);
    let mut printed = BTreeSet::new();
    let mut lines = 0;
    for line in out.stdout.lines().filter(|l| !l.trim().is_empty()) {
        let value: Value = serde_json::from_str(line).expect("a JSON line");
        printed_keys(&value, &mut printed);
        lines += 1;
    }
    assert_eq!(lines, 1, "{}", out.describe());
    assert_eq!(
        printed,
        documented_keys("as JSON lines on stdout ("),
        "README's once --dry-run schema"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_json_prints_exactly_the_documented_keys() {
    let env = crate::audit::env();
    let _store = crate::audit::seed(&env.state_path);
    let out = env.run(&["audit", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).expect("audit --json is one array");
    assert!(
        json.as_array().is_some_and(|rows| rows.len() > 1),
        "{json:#}"
    );
    let mut printed = BTreeSet::new();
    printed_keys(&json, &mut printed);
    assert_eq!(
        printed,
        documented_keys("one object per click:"),
        "README's audit --json schema"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_json_with_approvals_prints_exactly_the_documented_keys() {
    let env = crate::audit::env();
    env.write_raw_config(&crate::audit::approvals_config(
        &format!(
            "app_token = \"{}\"\nallow_users = [\"U0123ABCDE\"]",
            crate::audit::APP_TOKEN
        ),
        "",
    ));
    let _store = crate::audit::seed(&env.state_path);
    approval_watch::store::AuditLog::open(&env.state_path)
        .expect("audit log")
        .set_connection(
            "retrying",
            Some("attempt 2: refused"),
            jiff::Timestamp::now(),
        )
        .expect("set");
    let out = env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).expect("status --json is one object");
    let mut printed = BTreeSet::new();
    printed_keys(&json["approvals"], &mut printed);
    let mut documented = documented_keys("the object also has");
    documented.remove("approvals");
    assert_eq!(
        printed, documented,
        "README's status --json approvals schema"
    );
    // And nothing else new: every key printed is documented (in app mode, "slack" appears
    // once an alert is posted).
    let mut all = BTreeSet::new();
    printed_keys(&json, &mut all);
    let mut expected = documented_keys("`status --json` prints one object:");
    expected.extend(documented_keys("the object also has"));
    expected.extend(documented_keys(
        "In app mode each waiting approval also has",
    ));
    let extra: Vec<_> = all.difference(&expected).collect();
    assert!(extra.is_empty(), "undocumented keys {extra:?}");
}
