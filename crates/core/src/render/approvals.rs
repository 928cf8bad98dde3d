//! Approving from Slack: the buttons on an alert, the reject modal, and the alert as it reads
//! once someone decided in Slack. Pure, like the rest of `render`.

use jiff::Timestamp;
use serde_json::{Value, json};

use super::blocks::{context, section};
use super::subject;
use super::text::{mrkdwn_field, plain_text};
use crate::interaction::{
    APPROVE_ACTION, ApprovalRef, DECIDE_BLOCK, REASON_ACTION, REASON_BLOCK, REASON_MAX_CHARS,
    REJECT_ACTION, REJECT_CALLBACK,
};
use crate::model::{Approval, ApprovalKey};
use crate::verdict::Verdict;

/// Block Kit limits: a confirm dialog's title and text, a modal's title.
const CONFIRM_TITLE_MAX_CHARS: usize = 100;
const CONFIRM_TEXT_MAX_CHARS: usize = 300;

/// `message` (an alert) with Approve and Reject buttons naming the approval by its
/// [`ApprovalRef`].
pub fn with_buttons(mut message: Value, approval_id: i64, key: &ApprovalKey) -> Value {
    let value = ApprovalRef::new(approval_id, key).to_string();
    let confirm_text = format!(
        "Approve {} at stage {} ({})? CodePipeline continues the run at once.",
        key.pipeline, key.stage, key.action
    );
    let buttons = json!({
        "type": "actions",
        "block_id": DECIDE_BLOCK,
        "elements": [
            {
                "type": "button",
                "action_id": APPROVE_ACTION,
                "text": { "type": "plain_text", "text": "Approve" },
                "style": "primary",
                "value": value,
                "confirm": {
                    "title": { "type": "plain_text", "text": plain_text(&format!("Approve {}?", key.pipeline), CONFIRM_TITLE_MAX_CHARS) },
                    "text": { "type": "plain_text", "text": plain_text(&confirm_text, CONFIRM_TEXT_MAX_CHARS) },
                    "confirm": { "type": "plain_text", "text": "Approve" },
                    "deny": { "type": "plain_text", "text": "Cancel" },
                    "style": "primary",
                },
            },
            {
                "type": "button",
                "action_id": REJECT_ACTION,
                "text": { "type": "plain_text", "text": "Reject" },
                "style": "danger",
                "value": value,
            },
        ],
    });
    if let Some(blocks) = message.get_mut("blocks").and_then(Value::as_array_mut) {
        blocks.push(buttons);
    }
    message
}

/// The modal a Reject click opens: one required multi-line reason.
pub fn reject_modal(approval_id: i64, key: &ApprovalKey) -> Value {
    json!({
        "type": "modal",
        "callback_id": REJECT_CALLBACK,
        "private_metadata": ApprovalRef::new(approval_id, key).to_string(),
        "title": { "type": "plain_text", "text": "Reject deployment" },
        "submit": { "type": "plain_text", "text": "Reject" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [
            section(&format!("Reject *{}*?", subject(key))),
            {
                "type": "input",
                "block_id": REASON_BLOCK,
                "label": { "type": "plain_text", "text": "Reason (recorded in CodePipeline)" },
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION,
                    "multiline": true,
                    "max_length": REASON_MAX_CHARS,
                },
            },
        ],
    })
}

/// The alert as it reads right after a decision in Slack, before CodePipeline's state shows
/// it: the alert without buttons and a line saying who decided. The poll's resolution later
/// replaces it as usual.
pub fn decided_alert(
    approval: &Approval,
    verdict: Verdict,
    user_name: &str,
    user_id: &str,
    now: Timestamp,
) -> Value {
    let mut message = super::alert(approval, now);
    let (emoji, word) = match verdict {
        Verdict::Approve => (":white_check_mark:", "Approved"),
        Verdict::Reject => (":no_entry:", "Rejected"),
    };
    let line = format!(
        "{emoji} *{word} in Slack by {} (<@{user_id}>)* · waiting for CodePipeline to confirm",
        mrkdwn_field(user_name, 80)
    );
    if let Some(blocks) = message.get_mut("blocks").and_then(Value::as_array_mut) {
        blocks.push(context(&line));
    }
    message["text"] = json!(format!(
        "{word} in Slack by {}: {}",
        mrkdwn_field(user_name, 80),
        subject(&approval.key)
    ));
    message
}

/// Who may decide, for the ephemeral a refused click gets: mentions that Slack renders as
/// names (`<@U…>`, `<!subteam^S…>`).
pub fn who_may(users: &[String], groups: &[String]) -> String {
    let mut names: Vec<String> = users.iter().map(|u| format!("<@{u}>")).collect();
    names.extend(groups.iter().map(|g| format!("<!subteam^{g}>")));
    if names.is_empty() {
        "no one: approvals from Slack are off for this pipeline".to_owned()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::interaction::tests::key;

    #[test]
    fn buttons_carry_only_the_approval_id_and_approve_asks_first() {
        let message = json!({ "text": "x", "blocks": [ { "type": "section" } ] });
        let out = with_buttons(message, 42, &key());
        let actions = &out["blocks"][1];
        assert_eq!(actions["type"], "actions");
        let approve = &actions["elements"][0];
        assert_eq!(approve["action_id"], APPROVE_ACTION);
        assert_eq!(approve["value"], format!("42.{}", key().fingerprint()));
        assert_eq!(approve["style"], "primary");
        let confirm = approve["confirm"]["text"]["text"].as_str().unwrap();
        assert!(
            confirm.contains("payments-api") && confirm.contains("Production"),
            "{confirm}"
        );
        let reject = &actions["elements"][1];
        assert_eq!(reject["action_id"], REJECT_ACTION);
        assert_eq!(reject["style"], "danger");
        assert_eq!(reject["value"], approve["value"]);
    }

    #[test]
    fn the_confirm_dialog_stays_within_block_kit_limits() {
        let mut k = key();
        k.pipeline = "p".repeat(100);
        k.stage = "s".repeat(100);
        let out = with_buttons(json!({ "blocks": [] }), 1, &k);
        let confirm = &out["blocks"][0]["elements"][0]["confirm"];
        assert!(confirm["title"]["text"].as_str().unwrap().chars().count() <= 100);
        assert!(confirm["text"]["text"].as_str().unwrap().chars().count() <= 300);
    }

    #[test]
    fn the_modal_asks_for_a_required_reason() {
        let view = reject_modal(7, &key());
        assert_eq!(view["callback_id"], REJECT_CALLBACK);
        assert_eq!(
            view["private_metadata"],
            ApprovalRef::new(7, &key()).to_string()
        );
        let input = &view["blocks"][1];
        assert_eq!(input["block_id"], REASON_BLOCK);
        assert_eq!(input["element"]["action_id"], REASON_ACTION);
        assert_eq!(input["element"]["multiline"], true);
        assert!(input.get("optional").is_none());
    }

    #[test]
    fn who_may_names_users_and_groups_or_says_no_one() {
        assert_eq!(
            who_may(&["U1".into()], &["S1".into()]),
            "<@U1>, <!subteam^S1>"
        );
        assert!(who_may(&[], &[]).starts_with("no one"));
    }
}
