//! Approving from Slack, the command-line side: `audit [--json] [--since]` on a state database
//! whose clicks were written through `AuditLog` (as the approvals service writes them), and
//! `check-config` on `[slack.approvals]` / `[route.approvals]`: errors exit 2 naming the key,
//! and the app-level token never shows.

use crate::support;

use std::path::Path;

use approval_watch::store::{AppParts, AuditLog, Changes, Claim, NewMessage, Store};
use approval_watch_core::interaction::{ApprovalRef, Click, SlackUser};
use approval_watch_core::model::{Approval, ApprovalKey, MessageKind};
use approval_watch_core::verdict::{ClickResult, Verdict};
use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use support::TestEnv;

/// The app-level token the tests configure: it must never be printed.
pub(crate) const APP_TOKEN: &str = "xapp-1-A0TEST-1234-APPTOKENSECRET";

/// An app-mode config with `[slack.approvals]`; `{approvals}` is replaced by the table's body
/// after its token line, `{routes}` by extra TOML.
pub(crate) fn approvals_config(approvals: &str, routes: &str) -> String {
    format!(
        r#"poll_interval = "1s"
state_path = "{{state_path}}"
[aws]
region = "us-east-1"
[slack]
bot_token = "xoxb-1234-5678-abcdef"
channel = "C0123456789"
[slack.approvals]
{approvals}
{routes}
[[pipeline]]
name = "payments-api"
"#
    )
}

/// A test env (no fakes needed: these commands call neither AWS nor Slack).
pub(crate) fn env() -> TestEnv {
    TestEnv::new(
        "http://127.0.0.1:9",
        "http://127.0.0.1:9/hook",
        &["web-app"],
    )
}

fn approval(pipeline: &str, token: &str) -> Approval {
    Approval {
        key: ApprovalKey {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: pipeline.into(),
            stage: "Release".into(),
            action: "Approve".into(),
            token: token.into(),
        },
        pipeline_execution_id: None,
        waiting_since: Timestamp::now(),
        expires_at: Timestamp::now() + SignedDuration::from_hours(24),
        custom_data: None,
        external_entity_link: None,
        revision: None,
    }
}

fn click(user_id: &str, user_name: &str, click_id: &str, verdict: Verdict) -> Click {
    Click {
        approval: ApprovalRef {
            approval_id: 1,
            fingerprint: "00112233aabbccdd".into(),
        },
        verdict,
        user: SlackUser {
            id: user_id.into(),
            name: user_name.into(),
        },
        channel: None,
        click_id: click_id.into(),
        reason: None,
    }
}

fn ago(days: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * days)
}

/// A state database with two approvals and these clicks, written as the daemon writes them:
/// alice approves (10 days ago, before `--since 7d`), bob's rejection comes too late, mallory
/// (not allowed) clicks with a name and a reason full of control characters, and someone clicks
/// a button naming an approval the database does not know (2 hours ago).
pub(crate) fn seed(path: &Path) -> Store {
    let mut store = Store::open(path).expect("store");
    let new = [approval("payments-api", "t1"), approval("ledger", "t2")]
        .into_iter()
        .map(|a| {
            let message = NewMessage {
                kind: MessageKind::Alert,
                payload: serde_json::json!({"text": "x"}),
                app: AppParts::default(),
            };
            (a, message)
        })
        .collect();
    store
        .record(
            &Changes {
                new,
                ..Changes::default()
            },
            Timestamp::now(),
        )
        .expect("record");
    let log = AuditLog::open(path).expect("audit log");
    let t1 = log.approval(1).expect("read").expect("approval 1");
    let t2 = log.approval(2).expect("read").expect("approval 2");
    let Claim::Go(id) = log
        .claim(
            &click("U0ALICE001", "alice", "a1", Verdict::Approve),
            &t1,
            ago(10),
        )
        .expect("claim")
    else {
        panic!("alice's claim goes");
    };
    log.finish(id, &ClickResult::Approved, Some("req-alice-1"))
        .expect("finish");
    let mut bob = click("U0BOB00001", "bob", "b1", Verdict::Reject);
    bob.reason = Some("tests are red".into());
    assert_eq!(log.claim(&bob, &t1, ago(2)).expect("claim"), Claim::Taken);
    let mut mallory = click(
        "U0MALLORY1",
        "mallory\n2026-01-01T00:00:00Z  U0ADMIN001 (admin)\u{1b}[2J",
        "m1",
        Verdict::Reject,
    );
    mallory.approval.approval_id = 2;
    mallory.reason = Some("line one\nline two \u{202e}".into());
    log.record(&mallory, Some(&t2), &ClickResult::Denied, ago(1))
        .expect("record");
    let mut lost = click("U0ALICE001", "alice", "a2", Verdict::Approve);
    lost.approval.approval_id = 77;
    log.record(
        &lost,
        None,
        &ClickResult::failed(ClickResult::UNKNOWN_APPROVAL),
        Timestamp::now() - SignedDuration::from_hours(2),
    )
    .expect("record");
    store
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_lists_every_click_for_people_and_scripts() {
    let env = env();
    // Held open (with its lock) as the daemon holds it: audit reads beside it.
    let _daemon_store = seed(&env.state_path);

    let out = env.run(&["audit"]).await;
    out.assert_code(0);
    let text = out.stdout.clone();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "a header and four clicks:\n{text}");
    for header in [
        "TIME",
        "USER",
        "PIPELINE",
        "STAGE/ACTION",
        "ACCOUNT/REGION",
        "DECISION",
        "RESULT",
        "REQUEST ID",
        "REASON",
    ] {
        assert!(lines[0].contains(header), "{header} missing:\n{text}");
    }
    let alice = lines[1];
    for needle in [
        "U0ALICE001 (alice)",
        "payments-api",
        "Release/Approve",
        "default/us-east-1",
        "approve",
        "approved",
        "req-alice-1",
    ] {
        assert!(alice.contains(needle), "{needle:?} missing: {alice}");
    }
    // RFC 3339 in UTC, to the second, first on the line.
    let time = &alice[..20];
    assert!(
        time.ends_with('Z') && time.parse::<Timestamp>().is_ok() && !time.contains('.'),
        "{time}"
    );
    assert!(lines[2].contains("already_resolved") && lines[2].contains("tests are red"));
    // Control characters from Slack users are escaped: no forged line, no terminal control.
    assert!(
        lines[3].contains("mallory\\n2026-01-01T00:00:00Z  U0ADMIN001 (admin)\\u{1b}[2J"),
        "{text}"
    );
    assert!(lines[3].contains("line one\\nline two \\u{202e}"), "{text}");
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}'));
    assert!(lines[4].contains("failed: unknown approval") && lines[4].contains(" - "));

    let out = env.run(&["audit", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).expect("one JSON array");
    let rows = json.as_array().expect("an array");
    assert_eq!(rows.len(), 4, "{json:#}");
    assert_eq!(rows[0]["user_id"], "U0ALICE001");
    assert_eq!(rows[0]["decision"], "approve");
    assert_eq!(rows[0]["result"], "approved");
    assert_eq!(rows[0]["request_id"], "req-alice-1");
    assert_eq!(rows[0]["pipeline"], "payments-api");
    assert_eq!(rows[0]["reason"], Value::Null);
    assert_eq!(rows[1]["decision"], "reject");
    assert_eq!(rows[1]["reason"], "tests are red");
    // JSON keeps the text as it was (JSON escapes it).
    assert_eq!(rows[2]["reason"], "line one\nline two \u{202e}");
    assert_eq!(rows[3]["pipeline"], Value::Null);
    assert!(
        rows[0]["time"]
            .as_str()
            .unwrap()
            .parse::<Timestamp>()
            .is_ok()
    );

    // --since: only the recent clicks, in both forms.
    let out = env.run(&["audit", "--since", "7d"]).await;
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), 4, "{}", out.stdout);
    assert!(!out.stdout.contains("U0ALICE001 (alice)  payments-api"));
    let out = env.run(&["audit", "--json", "--since", "36h"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json.as_array().map(Vec::len), Some(2), "{json:#}");
    let out = env.run(&["audit", "--since", "3h"]).await;
    out.assert_code(0);
    assert_eq!(out.stdout.lines().count(), 2, "{}", out.stdout);
    let out = env.run(&["audit", "--since", "30m"]).await;
    out.assert_code(0);
    assert!(
        out.stdout.starts_with("no clicks recorded since "),
        "{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_without_a_state_database_says_so() {
    let env = env();
    let out = env.run(&["audit"]).await;
    out.assert_code(0);
    assert!(
        out.stdout.starts_with(&format!(
            "no state database at {} yet",
            env.state_path.display()
        )),
        "{}",
        out.describe()
    );
    let out = env.run(&["audit", "--json"]).await;
    out.assert_code(0);
    assert_eq!(out.stdout.trim(), "[]");
    assert!(!env.state_path.exists(), "audit created the database");
    // A bad duration is a usage error.
    for args in [&["audit", "--since", "soon"][..], &["audit", "--since"]] {
        env.run(args).await.assert_code(2);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_config_errors_exit_2_naming_the_key_never_the_token() {
    let token_line = format!("app_token = \"{APP_TOKEN}\"");
    let channel_route = "[[route]]\npipelines = [\"payments-*\"]\nchannel = \"C0PAYMENTS1\"\n";
    let webhook_route = "[[route]]\npipelines = [\"payments-*\"]\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/X\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "[slack.approvals] without a bot token",
            approvals_config(&token_line, "").replace(
                "bot_token = \"xoxb-1234-5678-abcdef\"\nchannel = \"C0123456789\"",
                "webhook_url_env = \"SLACK_WEBHOOK_URL\"",
            ),
            "slack.approvals",
        ),
        (
            "no token source",
            approvals_config("allow_users = [\"U0123ABCDE\"]", ""),
            "slack.approvals",
        ),
        (
            "a bot token where the app token goes",
            approvals_config("app_token = \"xoxb-1-A0TEST-1234-APPTOKENSECRET\"", ""),
            "slack.approvals.app_token",
        ),
        (
            "an app token env var that is not set",
            approvals_config("app_token_env = \"NO_SUCH_APP_TOKEN\"", ""),
            "slack.approvals.app_token_env",
        ),
        (
            "a user name instead of a user ID",
            approvals_config(&format!("{token_line}\nallow_users = [\"@alice\"]"), ""),
            "slack.approvals.allow_users[0]",
        ),
        (
            "a user ID among the groups",
            approvals_config(
                &format!("{token_line}\nallow_groups = [\"U0123ABCDE\"]"),
                "",
            ),
            "slack.approvals.allow_groups[0]",
        ),
        (
            "[route.approvals] on a webhook route",
            approvals_config(
                &token_line,
                &format!("{webhook_route}[route.approvals]\nallow_users = [\"U0PAYLEAD\"]\n"),
            ),
            "route[0].approvals",
        ),
        (
            "[route.approvals] without [slack.approvals]",
            approvals_config("", &format!("{channel_route}[route.approvals]\n"))
                .replace("[slack.approvals]\n", ""),
            "route[0].approvals",
        ),
        (
            "an unknown key",
            approvals_config(&format!("{token_line}\nallow_user = [\"U0123ABCDE\"]"), ""),
            "allow_user",
        ),
    ];
    let mut failures = Vec::new();
    for (what, toml, key) in cases {
        let env = env();
        env.write_raw_config(&toml);
        let out = env.run(&["check-config"]).await;
        let all = out.all_output();
        if out.code != Some(2) || !all.contains(key) {
            failures.push(format!(
                "{what}: want exit 2 naming {key}\n{}",
                out.describe()
            ));
        }
        if all.contains("APPTOKENSECRET") {
            failures.push(format!("{what}: the token shows\n{}", out.describe()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn check_config_says_who_may_approve_and_never_shows_the_app_token() {
    let mut env = env();
    env.set_env("SLACK_APP_TOKEN", APP_TOKEN);
    let routes = "[[route]]\nname = \"payments\"\npipelines = [\"payments-*\"]\nchannel = \"C0PAYMENTS1\"\n[route.approvals]\nallow_users = [\"U0PAYLEAD\"]\n\
                  [[route]]\nname = \"locked\"\npipelines = [\"locked-*\"]\nchannel = \"C0LOCKED01\"\n[route.approvals]\n";
    env.write_raw_config(&approvals_config(
        "app_token_env = \"SLACK_APP_TOKEN\"\nallow_users = [\"U0123ABCDE\"]\nallow_groups = [\"S0PLATFORM\"]",
        routes,
    ));
    let out = env.run(&["check-config"]).await;
    out.assert_code(0);
    let text = out.stdout_plain();
    for needle in [
        "approving from Slack: Socket Mode, app-level token from environment variable SLACK_APP_TOKEN (slack.approvals.app_token_env)",
        "may approve from Slack: users U0PAYLEAD; groups none (from [route.approvals])",
        "may approve from Slack: no one (no buttons)",
        "may approve from Slack: users U0123ABCDE; groups S0PLATFORM (from [slack.approvals])",
    ] {
        assert!(
            text.contains(needle),
            "{needle:?} missing\n{}",
            out.describe()
        );
    }
    assert!(
        !out.all_output().contains("APPTOKENSECRET"),
        "{}",
        out.describe()
    );
    // Status and audit never read it either.
    for args in [&["status"][..], &["status", "--json"], &["audit"]] {
        let out = env.run(args).await;
        out.assert_code(0);
        assert!(!out.all_output().contains("APPTOKENSECRET"));
    }

    // Without [slack.approvals], check-config says nothing new.
    env.write_raw_config(&approvals_config("", "").replace("[slack.approvals]\n", ""));
    let out = env.run(&["check-config"]).await;
    out.assert_code(0);
    assert!(
        !out.stdout.contains("may approve") && !out.stdout.contains("Socket Mode"),
        "{}",
        out.describe()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_socket_mode_connection_when_approvals_are_on() {
    let env = env();
    env.write_raw_config(&approvals_config(
        &format!("app_token = \"{APP_TOKEN}\"\nallow_users = [\"U0123ABCDE\"]"),
        "",
    ));
    // Before the daemon has written anything.
    let out = env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["approvals"]["state"], "unknown", "{json:#}");
    assert_eq!(json["approvals"]["since"], Value::Null);

    Store::open(&env.state_path).unwrap().close().unwrap();
    let log = AuditLog::open(&env.state_path).unwrap();
    let since = Timestamp::from_second(1_764_148_400).unwrap();
    log.set_connection(
        "retrying",
        Some("attempt 3: connection refused\n\u{1b}[31m"),
        since,
    )
    .unwrap();
    let out = env.run(&["status", "--json"]).await;
    out.assert_code(0);
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["approvals"]["state"], "retrying", "{json:#}");
    assert_eq!(json["approvals"]["since"], "2025-11-26T09:13:20Z");
    assert_eq!(
        json["approvals"]["detail"],
        "attempt 3: connection refused\n\u{1b}[31m"
    );
    let out = env.run(&["status"]).await;
    out.assert_code(0);
    assert!(
        out.stdout.contains(
            "approving from Slack: Socket Mode retrying since 2025-11-26 09:13 UTC (attempt 3: connection refused\\n\\u{1b}[31m)"
        ),
        "{}",
        out.describe()
    );

    // Approvals off: no key, no line.
    env.write_raw_config(&approvals_config("", "").replace("[slack.approvals]\n", ""));
    let out = env.run(&["status", "--json"]).await;
    let json: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(json.get("approvals").is_none(), "{json:#}");
    let out = env.run(&["status"]).await;
    assert!(!out.stdout.contains("Socket Mode"), "{}", out.describe());
}
