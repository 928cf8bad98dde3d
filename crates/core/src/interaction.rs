//! What our Slack buttons and the reject modal carry, written (by `render`) and read back (by
//! the daemon's `approve`) in one place: the `action_id`s, the modal's `callback_id` and input
//! ids, and [`ApprovalRef`], the `<store id>.<fingerprint>` that a button's `value` and the
//! modal's `private_metadata` hold. A click is trusted to say nothing else about which
//! approval it means (see ARCHITECTURE.md, "Approving from Slack").

use std::fmt;

use crate::model::ApprovalKey;
use crate::verdict::Verdict;

/// `action_id`s of the two buttons; anything else that arrives over Socket Mode is not ours.
pub const APPROVE_ACTION: &str = "approval_watch.approve";
pub const REJECT_ACTION: &str = "approval_watch.reject";
/// The `block_id` of the buttons' `actions` block.
pub const DECIDE_BLOCK: &str = "approval_watch.decide";
/// `callback_id` of the reject modal.
pub const REJECT_CALLBACK: &str = "approval_watch.reject";
/// The modal's input: `view.state.values[REASON_BLOCK][REASON_ACTION].value`.
pub const REASON_BLOCK: &str = "reason";
pub const REASON_ACTION: &str = "reason";
/// Room for the reason in CodePipeline's 512-character summary after
/// "Rejected in Slack by <name> (<id>): ".
pub const REASON_MAX_CHARS: usize = 400;

/// A fingerprint is [`ApprovalKey::fingerprint`]: 64 bits in hex.
const FINGERPRINT_CHARS: usize = 16;

/// The button's `action_id` for `verdict`.
pub fn action_id(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Approve => APPROVE_ACTION,
        Verdict::Reject => REJECT_ACTION,
    }
}

/// The verdict a button's `action_id` asks for; `None` for a button that is not ours.
pub fn verdict_of_action(action_id: &str) -> Option<Verdict> {
    match action_id {
        APPROVE_ACTION => Some(Verdict::Approve),
        REJECT_ACTION => Some(Verdict::Reject),
        _ => None,
    }
}

/// The approval a button or the reject modal names: the store's id, and the fingerprint of
/// the request it was rendered for (a button whose id names another request now is stale).
/// Written and read as `<id>.<fingerprint>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRef {
    /// The store's id of the approval; positive.
    pub approval_id: i64,
    /// [`ApprovalKey::fingerprint`] of the request: 16 hex digits.
    pub fingerprint: String,
}

impl ApprovalRef {
    pub fn new(approval_id: i64, key: &ApprovalKey) -> Self {
        Self {
            approval_id,
            fingerprint: key.fingerprint(),
        }
    }

    /// `<id>.<fingerprint>` as [`ApprovalRef`]'s `Display` writes it; `None` for anything else
    /// (outside input: a forged value names nothing).
    pub fn parse(s: &str) -> Option<Self> {
        let (id, fingerprint) = s.split_once('.')?;
        // `parse` alone would take a leading `+`.
        if !id.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let approval_id = id.parse::<i64>().ok().filter(|id| *id > 0)?;
        let hex = fingerprint.len() == FINGERPRINT_CHARS
            && fingerprint.bytes().all(|b| b.is_ascii_hexdigit());
        hex.then(|| Self {
            approval_id,
            fingerprint: fingerprint.to_owned(),
        })
    }

    /// Whether this names the request `key` (and not another one stored under the same id).
    pub fn names(&self, key: &ApprovalKey) -> bool {
        self.fingerprint == key.fingerprint()
    }
}

impl fmt::Display for ApprovalRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.approval_id, self.fingerprint)
    }
}

/// The Slack user behind a click.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlackUser {
    /// Checked to look like a Slack user id; the only thing authorised.
    pub id: String,
    /// For display only (the payload's `user.name` or `user.username`), control characters
    /// removed; the id when there is none.
    pub name: String,
}

/// One click on a button (or the reject modal submitted), as read from the payload and as the
/// audit records it. Only [`Click::approval`] says which approval; nothing else in the
/// payload is trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Click {
    pub approval: ApprovalRef,
    pub verdict: Verdict,
    pub user: SlackUser,
    /// Where the click happened, for an ephemeral answer (absent for modal submissions).
    pub channel: Option<String>,
    /// Unique per click for this user (Slack's `action_ts`, or the modal's view id): an
    /// envelope delivered twice carries the same one.
    pub click_id: String,
    /// A rejection's reason (the modal's input).
    pub reason: Option<String>,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A request to render buttons for and read them back (also `render`'s tests).
    pub(crate) fn key() -> ApprovalKey {
        ApprovalKey {
            account: "default".into(),
            region: "eu-west-1".into(),
            pipeline: "payments-api".into(),
            stage: "Production".into(),
            action: "Approve".into(),
            token: "t-1".into(),
        }
    }

    #[test]
    fn a_reference_reads_back_as_written() {
        let written = ApprovalRef::new(42, &key());
        let text = written.to_string();
        assert_eq!(text, format!("42.{}", key().fingerprint()));
        let read = ApprovalRef::parse(&text).expect("reads back");
        assert_eq!(read, written);
        assert!(read.names(&key()));
        let mut other = key();
        other.token = "t-2".into();
        assert!(!read.names(&other));
        let max = ApprovalRef {
            approval_id: i64::MAX,
            fingerprint: "00112233aabbccdd".into(),
        };
        assert_eq!(ApprovalRef::parse(&max.to_string()), Some(max));
    }

    #[test]
    fn anything_else_names_nothing() {
        let fp = "00112233aabbccdd";
        let hostile = [
            String::new(),
            ".".into(),
            "42".into(),
            format!(".{fp}"),
            "42.".into(),
            format!("x.{fp}"),
            format!("0.{fp}"),
            format!("-3.{fp}"),
            format!("+3.{fp}"),
            format!(" 3.{fp}"),
            format!("3 .{fp}"),
            format!("4.2.{fp}"),
            format!("42.{fp}.1"),
            format!("42.{fp}0"),
            "42.00112233aabbccdx".into(),
            "42.0011223３aabbccd".into(),
            format!("{}.{fp}", "9".repeat(500)),
            format!("42.{}", "a".repeat(100_000)),
            "9".repeat(500),
        ];
        for value in hostile {
            assert_eq!(ApprovalRef::parse(&value), None, "{value:?}");
        }
    }

    #[test]
    fn action_ids_name_verdicts_and_nothing_else() {
        for v in [Verdict::Approve, Verdict::Reject] {
            assert_eq!(verdict_of_action(action_id(v)), Some(v));
        }
        assert_eq!(verdict_of_action("someone.else"), None);
        assert_eq!(verdict_of_action(""), None);
        assert_eq!(verdict_of_action(DECIDE_BLOCK), None);
    }
}
