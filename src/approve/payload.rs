//! What a Socket Mode `interactive` payload asks for, read without trusting it: only our own
//! `action_id`s and `callback_id`, the approval id we put in the button's `value` (or the
//! modal's `private_metadata`), and the clicking user's id. Everything else in the payload
//! could say anything and is used for nothing but display. Pure.

use serde_json::Value;

use crate::config::is_user_id;
use approval_watch_core::interaction::{
    ApprovalRef, Click, REASON_ACTION, REASON_BLOCK, REASON_MAX_CHARS, REJECT_CALLBACK, SlackUser,
    verdict_of_action,
};
use approval_watch_core::verdict::Verdict;

/// Names shown in messages and the audit are cut to this many characters.
const MAX_NAME_CHARS: usize = 80;
/// Slack's ids and timestamps are short; longer ones are not Slack's.
const MAX_ID_CHARS: usize = 100;

/// What an interaction asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Approve clicked (after its confirm dialog): decide now.
    Approve(Click),
    /// Reject clicked: open the reason modal with `trigger_id`.
    OpenReject { click: Click, trigger_id: String },
    /// The reason modal submitted (the click carries the reason): decide now.
    Reject(Click),
    /// Not ours, or not something we act on; the reason is for a debug log.
    Ignored(&'static str),
}

pub fn parse(payload: &Value) -> Request {
    let Some(user) = user(payload) else {
        return Request::Ignored("no valid user id");
    };
    match payload.get("type").and_then(Value::as_str) {
        Some("block_actions") => block_actions(payload, user),
        Some("view_submission") => view_submission(payload, user),
        _ => Request::Ignored("not a block action or a view submission"),
    }
}

fn block_actions(payload: &Value, user: SlackUser) -> Request {
    let Some(action) = payload
        .get("actions")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
    else {
        return Request::Ignored("no action");
    };
    let action_id = text(action, "action_id");
    let Some(verdict) = action_id.as_deref().and_then(verdict_of_action) else {
        return Request::Ignored("not our button");
    };
    let Some(approval) = text(action, "value").and_then(|v| ApprovalRef::parse(&v)) else {
        return Request::Ignored("the button's value is not an approval id");
    };
    let Some(action_ts) = text(action, "action_ts") else {
        return Request::Ignored("no action_ts");
    };
    let channel = payload
        .get("channel")
        .and_then(|c| text(c, "id"))
        .filter(|c| is_channel_id(c));
    let click = Click {
        approval,
        verdict,
        user,
        channel,
        click_id: format!("{}:{action_ts}", action_id.unwrap_or_default()),
        reason: None,
    };
    match verdict {
        Verdict::Approve => Request::Approve(click),
        Verdict::Reject => match text(payload, "trigger_id") {
            Some(trigger_id) => Request::OpenReject { click, trigger_id },
            None => Request::Ignored("a Reject click without trigger_id"),
        },
    }
}

fn view_submission(payload: &Value, user: SlackUser) -> Request {
    let Some(view) = payload.get("view") else {
        return Request::Ignored("no view");
    };
    if text(view, "callback_id").as_deref() != Some(REJECT_CALLBACK) {
        return Request::Ignored("not our modal");
    }
    let Some(approval) = text(view, "private_metadata").and_then(|v| ApprovalRef::parse(&v)) else {
        return Request::Ignored("the modal's private_metadata is not an approval id");
    };
    let Some(view_id) = text(view, "id") else {
        return Request::Ignored("a view without id");
    };
    let reason = reason(view);
    if reason.trim().is_empty() {
        // Answered in the acknowledgement already (see `ack_answer`).
        return Request::Ignored("a rejection without a reason");
    }
    Request::Reject(Click {
        approval,
        verdict: Verdict::Reject,
        user,
        channel: None,
        click_id: format!("view:{view_id}"),
        reason: Some(reason.trim().to_owned()),
    })
}

/// The reason typed into our modal, cleaned; empty when none.
fn reason(view: &Value) -> String {
    view.get("state")
        .and_then(|s| s.get("values"))
        .and_then(|v| v.get(REASON_BLOCK))
        .and_then(|b| b.get(REASON_ACTION))
        .and_then(|a| a.get("value"))
        .and_then(Value::as_str)
        .map(|r| clean(r, REASON_MAX_CHARS, true))
        .unwrap_or_default()
}

/// The answer an interaction gets in its acknowledgement: for our reject modal submitted
/// with a blank reason (spaces only, say), the modal's own error under the field, so the
/// person sees why it did not close; Slack's required field does not catch whitespace.
pub fn ack_answer(payload: &Value) -> Option<Value> {
    if payload.get("type").and_then(Value::as_str) != Some("view_submission") {
        return None;
    }
    let view = payload.get("view")?;
    if text(view, "callback_id").as_deref() != Some(REJECT_CALLBACK)
        || !reason(view).trim().is_empty()
    {
        return None;
    }
    Some(serde_json::json!({
        "response_action": "errors",
        "errors": {
            REASON_BLOCK: "Say why you reject: the reason is recorded with the rejection in CodePipeline.",
        },
    }))
}

fn user(payload: &Value) -> Option<SlackUser> {
    let user = payload.get("user")?;
    let id = text(user, "id").filter(|id| is_user_id(id))?;
    let name = ["name", "username"]
        .iter()
        .filter_map(|k| user.get(*k).and_then(Value::as_str))
        .map(|n| clean(n, MAX_NAME_CHARS, false))
        .find(|n| !n.trim().is_empty())
        .unwrap_or_else(|| id.clone());
    Some(SlackUser { id, name })
}

/// A short string field, `None` when absent, empty or too long to be Slack's.
fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && s.chars().count() <= MAX_ID_CHARS)
        .map(str::to_owned)
}

fn is_channel_id(s: &str) -> bool {
    s.starts_with(['C', 'G', 'D']) && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// At most `max` characters; control characters dropped (newlines kept when `multiline`).
fn clean(s: &str, max: usize, multiline: bool) -> String {
    s.chars()
        .filter(|c| !c.is_control() || (multiline && *c == '\n'))
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use approval_watch_core::interaction::{APPROVE_ACTION, REJECT_ACTION};

    fn click(action_id: &str, value: &str) -> Value {
        json!({
            "type": "block_actions",
            "user": { "id": "U0PAYLEAD", "username": "ana", "name": "ana\u{1b}[31m" },
            "channel": { "id": "C0PAYMENTS1" },
            "trigger_id": "1234.5678.abcd",
            "message": { "ts": "1.2", "blocks": [{"type": "forged"}] },
            "actions": [ { "action_id": action_id, "value": value, "action_ts": "1700000000.123456" } ],
        })
    }

    #[test]
    fn an_approve_click_names_our_approval_and_the_user() {
        let Request::Approve(c) = parse(&click(APPROVE_ACTION, "42.00112233aabbccdd")) else {
            panic!("not an approve");
        };
        assert_eq!(c.approval.approval_id, 42);
        assert_eq!(c.approval.fingerprint, "00112233aabbccdd");
        assert_eq!(c.verdict, Verdict::Approve);
        assert_eq!(c.user.id, "U0PAYLEAD");
        assert_eq!(c.user.name, "ana[31m", "control characters dropped");
        assert_eq!(c.channel.as_deref(), Some("C0PAYMENTS1"));
        assert_eq!(c.click_id, "approval_watch.approve:1700000000.123456");
    }

    #[test]
    fn a_reject_click_opens_the_modal_with_its_trigger() {
        let Request::OpenReject { click, trigger_id } =
            parse(&click(REJECT_ACTION, "7.00112233aabbccdd"))
        else {
            panic!("not a reject");
        };
        assert_eq!(click.approval.approval_id, 7);
        assert_eq!(click.verdict, Verdict::Reject);
        assert_eq!(trigger_id, "1234.5678.abcd");
    }

    #[test]
    fn anything_not_ours_is_ignored() {
        assert!(matches!(
            parse(&click("someone.else", "1")),
            Request::Ignored(_)
        ));
        assert!(matches!(
            parse(&click(APPROVE_ACTION, "x")),
            Request::Ignored(_)
        ));
        assert!(matches!(
            parse(&click(APPROVE_ACTION, "-3")),
            Request::Ignored(_)
        ));
        assert!(matches!(
            parse(&click(APPROVE_ACTION, &"9".repeat(500))),
            Request::Ignored(_)
        ));
        let mut forged = click(APPROVE_ACTION, "1.00112233aabbccdd");
        forged["user"]["id"] = json!("<!channel>");
        assert!(matches!(parse(&forged), Request::Ignored(_)));
        assert!(matches!(
            parse(&json!({"type": "shortcut"})),
            Request::Ignored(_)
        ));
        assert!(matches!(parse(&json!(null)), Request::Ignored(_)));
    }

    fn submission(reason: Option<&str>) -> Value {
        let mut values = json!({});
        if let Some(r) = reason {
            values = json!({ REASON_BLOCK: { REASON_ACTION: { "type": "plain_text_input", "value": r } } });
        }
        json!({
            "type": "view_submission",
            "user": { "id": "U0PAYLEAD", "name": "ana" },
            "view": {
                "id": "V0MODAL1",
                "callback_id": REJECT_CALLBACK,
                "private_metadata": "42.00112233aabbccdd",
                "state": { "values": values },
            },
        })
    }

    #[test]
    fn a_submitted_reason_rejects() {
        let Request::Reject(click) = parse(&submission(Some(" breaks checkout\n"))) else {
            panic!("not a reject");
        };
        assert_eq!(click.approval.approval_id, 42);
        assert_eq!(click.verdict, Verdict::Reject);
        assert_eq!(click.click_id, "view:V0MODAL1");
        assert_eq!(click.reason.as_deref(), Some("breaks checkout"));
    }

    #[test]
    fn a_submission_without_reason_is_ignored() {
        assert!(matches!(parse(&submission(None)), Request::Ignored(_)));
        assert!(matches!(
            parse(&submission(Some("  "))),
            Request::Ignored(_)
        ));
    }

    #[test]
    fn a_blank_reason_is_answered_with_the_modals_own_error() {
        for blank in [None, Some(""), Some("  \n\t ")] {
            let answer = ack_answer(&submission(blank)).expect("an answer");
            assert_eq!(answer["response_action"], "errors");
            assert!(
                answer["errors"][REASON_BLOCK]
                    .as_str()
                    .is_some_and(|e| e.starts_with("Say why you reject"))
            );
        }
        assert_eq!(ack_answer(&submission(Some("breaks checkout"))), None);
        let mut other = submission(None);
        other["view"]["callback_id"] = json!("someone.else");
        assert_eq!(ack_answer(&other), None, "not our modal");
        assert_eq!(ack_answer(&json!({"type": "block_actions"})), None);
    }
}
