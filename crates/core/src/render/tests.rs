//! The messages' tests, and the fixtures and payload checks the other files' tests share.

use proptest::prelude::*;

use super::blocks::HEADER_MAX_CHARS;
use super::text::tests::assert_safe_mrkdwn;
use super::*;

#[test]
fn overrides_are_added_to_the_payload() {
    let overrides = MessageOverrides {
        username: Some("CodePipeline".into()),
        icon_emoji: None,
        channel: Some("#deployments".into()),
    };
    assert_eq!(
        with_overrides(&serde_json::json!({"text": "hi"}), &overrides),
        serde_json::json!({"text": "hi", "username": "CodePipeline", "channel": "#deployments"})
    );
}

pub(super) const TOKEN: &str = "0c35520a-b7e6-403d-ba3f-e02120b524c3";
pub(super) const COMMIT: &str = "8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
pub(super) const COMMIT_URL: &str =
    "https://github.com/example/web-app/commit/8f2b1e4c9d0a7b6c5d4e3f2a1b0c9d8e7f6a5b4c";
/// From sns-approval-message.json.
pub(super) const CONSOLE_LINK: &str =
    "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/web-app/view?region=us-east-1";
pub(super) const REVIEW_LINK: &str = "https://console.aws.amazon.com/codesuite/codepipeline/pipelines/web-app/view?region=us-east-1#/Approve_Deployment_to_Production/Approve/approve/0c35520a-b7e6-403d-ba3f-e02120b524c3";

/// The waiting approval of the codepipeline fixtures.
pub(super) fn fixture_approval() -> Approval {
    let waiting_since = Timestamp::from_millisecond(1_764_148_392_068).unwrap();
    Approval {
        key: ApprovalKey {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: "web-app".into(),
            stage: "Approve_Deployment_to_Production".into(),
            action: "Approve".into(),
            token: TOKEN.into(),
        },
        pipeline_execution_id: Some("896c834b-07aa-468c-9d3a-7fef9934e976".into()),
        waiting_since,
        expires_at: waiting_since + SignedDuration::from_mins(10080),
        custom_data: Some("Approval needed for production deployment".into()),
        external_entity_link: Some("https://staging.example.com/release-notes".into()),
        revision: Some(Revision {
            revision_id: Some(COMMIT.into()),
            commit_message: Some("Fix rounding in checkout totals".into()),
            url: Some(COMMIT_URL.into()),
        }),
    }
}

pub(super) fn ts(second: i64) -> Timestamp {
    Timestamp::from_second(second).unwrap()
}

/// All mrkdwn texts of a payload (top-level `text` first), joined by newlines.
pub(super) fn all_mrkdwn(payload: &Value) -> String {
    mrkdwn_texts(payload).join("\n")
}

pub(super) fn mrkdwn_texts(payload: &Value) -> Vec<String> {
    let mut out = vec![payload["text"].as_str().unwrap().to_owned()];
    for block in payload["blocks"].as_array().unwrap() {
        match block["type"].as_str().unwrap() {
            "section" => out.push(block["text"]["text"].as_str().unwrap().to_owned()),
            "context" => {
                for element in block["elements"].as_array().unwrap() {
                    out.push(element["text"].as_str().unwrap().to_owned());
                }
            }
            _ => {}
        }
    }
    out
}

pub(super) fn all_strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|i| all_strings(i, out)),
        Value::Object(map) => map.values().for_each(|i| all_strings(i, out)),
        _ => {}
    }
}

/// Everything the safety rules and Slack's limits demand of a payload.
pub(super) fn assert_payload_ok(payload: &Value) {
    let serialized = serde_json::to_string(payload).unwrap();
    let reparsed: Value = serde_json::from_str(&serialized).unwrap();
    assert_eq!(&reparsed, payload);

    let blocks = payload["blocks"].as_array().unwrap();
    assert!(!blocks.is_empty() && blocks.len() <= MAX_BLOCKS);
    for block in blocks {
        if block["type"] == "header" {
            assert_eq!(block["text"]["type"], "plain_text");
            let text = block["text"]["text"].as_str().unwrap();
            assert!(text.chars().count() <= HEADER_MAX_CHARS);
            assert!(!text.contains(['<', '>']), "header {text:?}");
        }
    }
    for text in mrkdwn_texts(payload) {
        assert!(text.chars().count() <= TEXT_MAX_CHARS);
        assert_safe_mrkdwn(&text);
    }

    let mut strings = Vec::new();
    all_strings(payload, &mut strings);
    for s in strings {
        assert!(!s.contains("<@") && !s.contains("<#"), "mention in {s:?}");
        for (i, _) in s.match_indices("<!") {
            assert!(s[i..].starts_with("<!date^"), "special mention in {s:?}");
        }
    }
}

#[test]
fn alert_from_the_fixture_carries_everything() {
    let approval = fixture_approval();
    let now = approval.waiting_since + SignedDuration::from_mins(5);
    let payload = alert(&approval, now);
    assert_payload_ok(&payload);

    assert_eq!(
        payload["text"],
        "Approval waiting: web-app / Approve_Deployment_to_Production / Approve (us-east-1), \
         expires 2025-12-03 09:13 UTC"
    );
    assert_eq!(payload["blocks"][0]["type"], "header");
    assert_eq!(
        payload["blocks"][0]["text"]["text"],
        "Approval waiting: web-app"
    );
    let text = all_mrkdwn(&payload);
    for expected in [
        &format!("*Pipeline:* <{CONSOLE_LINK}|web-app>"),
        "*Stage:* Approve_Deployment_to_Production",
        "*Action:* Approve",
        "*Region:* us-east-1",
        "*Waiting:* 5 min (since <!date^1764148392^{date_short_pretty} {time}|2025-11-26 09:13 UTC>)",
        "*Expires:* <!date^1764753192^{date_short_pretty} {time}|2025-12-03 09:13 UTC> (in 6 d 23 h)",
        ">Approval needed for production deployment",
        "<https://staging.example.com/release-notes|https://staging.example.com/release-notes>",
        "*Execution:* <https://console.aws.amazon.com/codesuite/codepipeline/pipelines/web-app/executions/896c834b-07aa-468c-9d3a-7fef9934e976/timeline?region=us-east-1|896c834b>",
        &format!("*Revision:* <{COMMIT_URL}|8f2b1e4> Fix rounding in checkout totals"),
        &format!("<{REVIEW_LINK}|Review>"),
        &format!("<{CONSOLE_LINK}|Open pipeline>"),
    ] {
        assert!(text.contains(expected), "{expected:?} missing from {text}");
    }
}

#[test]
fn alert_says_when_an_approval_has_expired() {
    let approval = fixture_approval();
    let now = approval.expires_at + SignedDuration::from_hours(3);
    let payload = alert(&approval, now);
    assert_payload_ok(&payload);
    assert!(
        payload["text"]
            .as_str()
            .unwrap()
            .ends_with(", expired 2025-12-03 09:13 UTC")
    );
    assert!(all_mrkdwn(&payload).contains("*Expired:* <!date^1764753192^"));
    assert!(all_mrkdwn(&payload).contains("(3 h ago)"));
}

#[test]
fn alert_without_optional_details_has_no_empty_sections() {
    let approval = Approval {
        custom_data: None,
        external_entity_link: Some("   ".into()),
        revision: Some(Revision::default()),
        pipeline_execution_id: None,
        ..fixture_approval()
    };
    let payload = alert(&approval, approval.waiting_since);
    assert_payload_ok(&payload);
    // header, facts, links
    assert_eq!(payload["blocks"].as_array().unwrap().len(), 3);
    assert!(!all_mrkdwn(&payload).contains("*Revision:*"));
}

#[test]
fn unusable_links_are_shown_as_escaped_text() {
    let approval = Approval {
        external_entity_link: Some("javascript:alert(1)//<!channel>|x".into()),
        revision: Some(Revision {
            revision_id: Some("<@U1>|abcdef".into()),
            commit_message: None,
            url: Some("ftp://example.com/x".into()),
        }),
        ..fixture_approval()
    };
    let payload = alert(&approval, approval.waiting_since);
    assert_payload_ok(&payload);
    let text = all_mrkdwn(&payload);
    assert!(text.contains("*Link:* javascript:alert(1)//&lt;!channel&gt;¦x"));
    assert!(text.contains("*Revision:* &lt;@U1&gt;¦a"));
}

#[test]
fn rejected_fixture_comment_reaches_slack_escaped() {
    let approval = fixture_approval();
    let payload = resolution(
        &approval,
        &Resolution {
            outcome: Outcome::Rejected,
            by: Some("arn:aws:iam::123456789012:user/bob".into()),
            comment: Some("Migration 0042 is not reversible <!channel>".into()),
            at: ts(1_764_150_000),
        },
    );
    assert_payload_ok(&payload);
    assert_eq!(
        payload["text"],
        "Rejected by bob: web-app / Approve_Deployment_to_Production / Approve (us-east-1) \
         — \"Migration 0042 is not reversible &lt;!channel&gt;\""
    );
    let text = all_mrkdwn(&payload);
    assert!(text.contains("❌ *Rejected by bob*"));
    assert!(
        text.contains("*Comment from bob:*\n>Migration 0042 is not reversible &lt;!channel&gt;")
    );
    assert!(text.contains(&format!("<{CONSOLE_LINK}|Open pipeline>")));
    assert!(
        !serde_json::to_string(&payload)
            .unwrap()
            .contains("<!channel>")
    );
}

#[test]
fn approved_fixture_names_the_reviewer() {
    let approval = fixture_approval();
    let payload = resolution(
        &approval,
        &Resolution {
            outcome: Outcome::Approved,
            by: Some("arn:aws:sts::123456789012:assumed-role/Deployer/alice@example.com".into()),
            comment: Some("Staging smoke tests green, go ahead".into()),
            at: ts(1_764_151_992),
        },
    );
    assert_payload_ok(&payload);
    assert_eq!(
        payload["text"],
        "Approved by alice@example.com: web-app / Approve_Deployment_to_Production / Approve \
         (us-east-1) — \"Staging smoke tests green, go ahead\""
    );
    let text = all_mrkdwn(&payload);
    assert!(text.contains("✅ *Approved by alice@example.com*"));
    assert!(text.contains(">Staging smoke tests green, go ahead"));
    assert!(text.contains("*Region:* us-east-1"));
}

#[test]
fn expired_and_superseded_resolutions() {
    let approval = fixture_approval();
    for (outcome, headline, line) in [
        (
            Outcome::Expired,
            "Expired after 7 d without a decision: web-app / ",
            "⌛ *Expired after 7 d without a decision*",
        ),
        (
            Outcome::Superseded,
            "Superseded by a newer run: web-app / ",
            "↪️ *Superseded by a newer run*",
        ),
        (
            Outcome::Removed,
            "Removed from the pipeline: web-app / ",
            "✂️ *Removed from the pipeline*",
        ),
    ] {
        let payload = resolution(
            &approval,
            &Resolution {
                outcome,
                by: None,
                comment: None,
                at: ts(1_764_753_204),
            },
        );
        assert_payload_ok(&payload);
        assert!(payload_text(&payload).starts_with(headline), "{outcome:?}");
        assert!(all_mrkdwn(&payload).contains(line), "{outcome:?}");
    }
}

pub(super) fn payload_text(payload: &Value) -> &str {
    payload["text"].as_str().unwrap()
}

#[test]
fn oversized_aws_values_stay_within_limits() {
    let long = "&<é|".repeat(3000);
    let approval = Approval {
        key: ApprovalKey {
            account: "default".into(),
            region: long.clone(),
            pipeline: long.clone(),
            stage: long.clone(),
            action: long.clone(),
            token: long.clone(),
        },
        custom_data: Some(long.clone()),
        external_entity_link: Some(format!("https://example.com/{long}")),
        revision: Some(Revision {
            revision_id: Some(long.clone()),
            commit_message: Some(long.clone()),
            url: Some(format!("https://example.com/{long}")),
        }),
        ..fixture_approval()
    };
    assert_payload_ok(&alert(&approval, approval.waiting_since));
    assert_payload_ok(&resolution(
        &approval,
        &Resolution {
            outcome: Outcome::Rejected,
            by: Some(long.clone()),
            comment: Some(long),
            at: approval.waiting_since,
        },
    ));
}

const NASTY: &[&str] = &[
    "<",
    ">",
    "&",
    "|",
    "!",
    "@",
    "^",
    "*",
    "_",
    "~",
    "`",
    ";",
    "#",
    "?",
    "%",
    "/",
    ":",
    " ",
    "\n",
    "\r",
    "\t",
    "\u{0}",
    "\u{7f}",
    "\u{202e}",
    "a",
    "Z",
    "7",
    "é",
    "日本",
    "🎉",
    "amp",
    "&amp;",
    "&lt",
    "<!channel>",
    "<!here>",
    "<@U123>",
    "<#C1>",
    "<!subteam^S1>",
    "<http://evil|x>",
    "https://",
    "http://evil.test/",
];

/// Pieces of [`NASTY`], mostly a few, sometimes thousands (up to about 10 000 chars).
fn nasty_string() -> impl Strategy<Value = String> {
    let pieces = |n: std::ops::Range<usize>| {
        prop::collection::vec(prop::sample::select(NASTY), n).prop_map(|p| p.concat())
    };
    prop_oneof![pieces(0..3), pieces(0..40), pieces(0..400), pieces(0..5000)]
}

/// Sometimes a URL that parses (with nasty path, query and fragment), sometimes not.
fn nasty_url() -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(
        &[
            "https://example.com/",
            "http://x.test/?q=",
            "javascript:",
            "",
        ][..],
    );
    (prefix, nasty_string()).prop_map(|(prefix, rest)| format!("{prefix}{rest}"))
}

/// Present four times in five.
fn nasty_option<S: Strategy<Value = String>>(s: S) -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(0.8, s)
}

fn nasty_timestamp() -> impl Strategy<Value = Timestamp> {
    prop_oneof![
        1 => Just(Timestamp::MIN),
        1 => Just(Timestamp::MAX),
        18 => (1_700_000_000i64..1_900_000_000).prop_map(ts),
    ]
}

prop_compose! {
    fn nasty_key()(
        region in nasty_string(),
        pipeline in nasty_string(),
        stage in nasty_string(),
        action in nasty_string(),
        token in nasty_string(),
    ) -> ApprovalKey {
        ApprovalKey { account: "default".into(), region, pipeline, stage, action, token }
    }
}

prop_compose! {
    fn nasty_revision()(
        revision_id in nasty_option(nasty_string()),
        commit_message in nasty_option(nasty_string()),
        url in nasty_option(nasty_url()),
    ) -> Revision {
        Revision { revision_id, commit_message, url }
    }
}

prop_compose! {
    fn nasty_approval()(
        key in nasty_key(),
        pipeline_execution_id in nasty_option(nasty_string()),
        waiting_since in nasty_timestamp(),
        expires_at in nasty_timestamp(),
        custom_data in nasty_option(nasty_string()),
        external_entity_link in nasty_option(nasty_url()),
        revision in prop::option::weighted(0.75, nasty_revision()),
    ) -> Approval {
        Approval {
            key,
            pipeline_execution_id,
            waiting_since,
            expires_at,
            custom_data,
            external_entity_link,
            revision,
        }
    }
}

fn nasty_reviewer() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        nasty_string().prop_map(|s| Some(format!("arn:aws:sts::1:assumed-role/R/{s}"))),
        nasty_string().prop_map(Some),
    ]
}

prop_compose! {
    fn any_reminder_due()(
        number in 0u32..20,
        counts in any::<bool>(),
        expiry_warning in any::<bool>(),
        escalate in any::<bool>(),
    ) -> ReminderDue {
        ReminderDue { number, counts, expiry_warning, escalate }
    }
}

fn any_outcome() -> impl Strategy<Value = Outcome> {
    prop::sample::select(
        &[
            Outcome::Approved,
            Outcome::Rejected,
            Outcome::Expired,
            Outcome::Superseded,
            Outcome::PipelineDeleted,
            Outcome::Removed,
        ][..],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn nasty_input_never_escapes_or_exceeds_limits(
        approval in nasty_approval(),
        alerted in nasty_timestamp(),
        due in any_reminder_due(),
        reminded in nasty_timestamp(),
        outcome in any_outcome(),
        by in nasty_reviewer(),
        comment in nasty_option(nasty_string()),
        at in nasty_timestamp(),
    ) {
        assert_payload_ok(&alert(&approval, alerted));
        assert_payload_ok(&reminder(&approval, &due, reminded));
        let resolved = Resolution { outcome, by, comment, at };
        assert_payload_ok(&resolution(&approval, &resolved));
    }
}

#[test]
fn reminders_say_how_long_and_repeat_the_review_link() {
    let approval = fixture_approval();
    let now = approval.waiting_since + SignedDuration::from_mins(90);
    let due = ReminderDue {
        number: 2,
        counts: true,
        expiry_warning: false,
        escalate: false,
    };
    let payload = reminder(&approval, &due, now);
    assert_payload_ok(&payload);
    let text = all_mrkdwn(&payload);
    assert!(text.contains("1 h 30 min"), "{text}");
    assert!(text.contains(&review_url(&approval.key)), "{text}");
    assert!(text.contains("Reminder 2"), "{text}");
    assert!(!text.contains(":warning:"), "{text}");
    assert!(payload_text(&payload).starts_with("Still waiting for approval after 1 h 30 min"));

    let last = ReminderDue {
        expiry_warning: true,
        ..due
    };
    let now = approval.expires_at - SignedDuration::from_mins(119);
    let payload = reminder(&approval, &last, now);
    assert_payload_ok(&payload);
    let text = all_mrkdwn(&payload);
    assert!(
        text.contains(":warning: *This approval expires in 1 h 59 min*"),
        "{text}"
    );
    assert!(payload_text(&payload).starts_with("Expires in 1 h 59 min"));
    assert_eq!(
        payload["blocks"][0]["text"]["text"],
        "Expires in 1 h 59 min: web-app"
    );
}

#[test]
fn mentions_go_first_where_they_notify() {
    let approval = fixture_approval();
    let team = Mention::parse("<!subteam^S0PAYMENTS>").unwrap();
    let lead = Mention::parse("<@U0LEAD>").unwrap();
    let payload = with_mentions(alert(&approval, approval.waiting_since), &[&team, &lead]);
    assert!(payload_text(&payload).starts_with("<!subteam^S0PAYMENTS> <@U0LEAD> Approval waiting"));
    assert_eq!(payload["blocks"][0]["type"], "header");
    assert_eq!(
        payload["blocks"][1]["text"]["text"],
        "<!subteam^S0PAYMENTS> <@U0LEAD>"
    );
    // Without a header, the mention is the first block.
    let resolved = Resolution {
        outcome: Outcome::Approved,
        by: None,
        comment: None,
        at: approval.waiting_since,
    };
    let payload = with_mentions(resolution(&approval, &resolved), &[&team]);
    assert_eq!(
        payload["blocks"][0]["text"]["text"],
        "<!subteam^S0PAYMENTS>"
    );
    // No mentions, no change.
    let plain = alert(&approval, approval.waiting_since);
    assert_eq!(with_mentions(plain.clone(), &[]), plain);
}

/// Two runs of one pipeline waiting at the same action (PARALLEL mode) are told apart by their
/// execution, each linked to its own page; an id that is not a plain word stays a label.
#[test]
fn alerts_of_two_runs_name_their_executions() {
    let run = |id: &str| Approval {
        pipeline_execution_id: Some(id.into()),
        ..fixture_approval()
    };
    let first = all_mrkdwn(&alert(
        &run("aaaa1111-2222"),
        fixture_approval().waiting_since,
    ));
    let second = all_mrkdwn(&alert(
        &run("bbbb3333-4444"),
        fixture_approval().waiting_since,
    ));
    assert!(
        first.contains("/executions/aaaa1111-2222/timeline?region=us-east-1|aaaa1111>"),
        "{first}"
    );
    assert!(
        second.contains("/executions/bbbb3333-4444/timeline?region=us-east-1|bbbb3333>"),
        "{second}"
    );
    let hostile = all_mrkdwn(&alert(
        &run("<!channel>|x"),
        fixture_approval().waiting_since,
    ));
    assert!(!hostile.contains("<!channel>"), "{hostile}");
}
