//! The words for approving from Slack: what a person decided ([`Verdict`]) and what became of
//! the click ([`ClickResult`]). One vocabulary for CodePipeline's `PutApprovalResult`, the
//! audit, the metrics, the logs and the messages (see ARCHITECTURE.md, "Approving from Slack").
//!
//! Not to be confused with [`crate::model::Outcome`]: that is how an approval stopped waiting
//! (approved, rejected, expired, superseded…), whoever ended it.

use std::fmt;

use serde::{Serialize, Serializer};

/// What a person in Slack decided about an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Reject,
}

impl Verdict {
    /// The audit's `decision` (and `audit --json`'s).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Reject => "reject",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approve" => Some(Self::Approve),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// What became of one click (or modal submission): the audit's `result`, the
/// `slack_decisions` metric's `result` label (every `failed: …` counts as `failed`), and the
/// logs' `result` field. The text ([`ClickResult::as_str`], `Display`) is stored and printed
/// by `audit --json`, so it never changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickResult {
    /// Claimed; CodePipeline has not answered yet.
    Pending,
    Approved,
    Rejected,
    /// The user may not decide this pipeline.
    Denied,
    /// Decided before (in Slack, in the console, or it expired): nothing changed.
    AlreadyResolved,
    /// The same click delivered again: counted, never recorded.
    Ignored,
    /// Nothing was decided, or it is unknown whether it was; the reason as the audit words it.
    Failed(String),
    /// Stored text this version does not know (another version's word, or a row edited by
    /// hand): kept and shown as it is, so `audit` never drops a row it cannot name.
    Unrecognised(String),
}

impl ClickResult {
    pub const UNKNOWN_APPROVAL: &str = "unknown approval";
    pub const STALE_BUTTON: &str = "stale button";
    pub const GROUPS_UNREAD: &str = "group membership not read yet";
    /// A group that might hold the clicker could not be read (failed, or too large).
    pub const GROUPS_UNREADABLE: &str = "group membership could not be read";
    /// What a claim still pending at start becomes (written by SQL, so a constant).
    pub const INTERRUPTED: &str = "failed: interrupted by a restart before AWS answered";

    pub fn failed(reason: impl Into<String>) -> Self {
        Self::Failed(reason.into())
    }

    /// The result CodePipeline's acceptance of `verdict` gives.
    pub fn decided(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Approve => Self::Approved,
            Verdict::Reject => Self::Rejected,
        }
    }

    /// A result that holds the approval's one decision (the audit's partial unique index).
    pub fn claims(&self) -> bool {
        matches!(self, Self::Pending | Self::Approved | Self::Rejected)
    }

    /// The text: `pending`, `approved`, `rejected`, `denied`, `already_resolved`, `ignored`,
    /// `failed: <reason>`.
    pub fn as_str(&self) -> std::borrow::Cow<'static, str> {
        let word = match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Denied => "denied",
            Self::AlreadyResolved => "already_resolved",
            Self::Ignored => "ignored",
            Self::Failed(reason) => return format!("failed: {reason}").into(),
            Self::Unrecognised(text) => return text.clone().into(),
        };
        word.into()
    }

    /// The result as stored: what [`ClickResult::parse`] reads, else kept as
    /// [`ClickResult::Unrecognised`].
    pub fn from_stored(s: &str) -> Self {
        Self::parse(s).unwrap_or_else(|| Self::Unrecognised(s.to_owned()))
    }

    /// The result as [`ClickResult::as_str`] wrote it; `None` for any other text.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            "denied" => Self::Denied,
            "already_resolved" => Self::AlreadyResolved,
            "ignored" => Self::Ignored,
            _ => Self::Failed(s.strip_prefix("failed: ")?.to_owned()),
        })
    }
}

impl fmt::Display for ClickResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_str())
    }
}

impl Serialize for ClickResult {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_read_back() {
        for v in [Verdict::Approve, Verdict::Reject] {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(Verdict::parse("Approve"), None);
    }

    #[test]
    fn unknown_stored_text_is_kept_as_it_is() {
        for text in ["failed", "approved_later", "", "Failed: x"] {
            let result = ClickResult::from_stored(text);
            assert_eq!(result, ClickResult::Unrecognised(text.to_owned()));
            assert_eq!(result.as_str(), text);
            assert!(!result.claims());
        }
        assert_eq!(ClickResult::from_stored("denied"), ClickResult::Denied);
        assert_eq!(
            ClickResult::from_stored("failed: stale button"),
            ClickResult::failed("stale button")
        );
    }

    #[test]
    fn results_keep_their_stored_text_and_read_back() {
        let all = [
            (ClickResult::Pending, "pending"),
            (ClickResult::Approved, "approved"),
            (ClickResult::Rejected, "rejected"),
            (ClickResult::Denied, "denied"),
            (ClickResult::AlreadyResolved, "already_resolved"),
            (ClickResult::Ignored, "ignored"),
            (
                ClickResult::failed(ClickResult::STALE_BUTTON),
                "failed: stale button",
            ),
            (
                ClickResult::failed("ThrottlingException: Rate exceeded"),
                "failed: ThrottlingException: Rate exceeded",
            ),
            (ClickResult::failed(""), "failed: "),
        ];
        for (result, text) in all {
            assert_eq!(result.as_str(), text);
            assert_eq!(result.to_string(), text);
            assert_eq!(serde_json::to_value(&result).unwrap(), text);
            assert_eq!(ClickResult::parse(text), Some(result));
        }
        assert_eq!(
            ClickResult::parse(ClickResult::INTERRUPTED),
            Some(ClickResult::failed(
                "interrupted by a restart before AWS answered"
            ))
        );
        for other in ["", "failed", "Approved", "failed:x", " denied"] {
            assert_eq!(ClickResult::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn only_pending_approved_and_rejected_claim() {
        assert!(ClickResult::Pending.claims());
        assert!(ClickResult::decided(Verdict::Approve).claims());
        assert!(ClickResult::decided(Verdict::Reject).claims());
        assert!(!ClickResult::AlreadyResolved.claims());
        assert!(!ClickResult::failed("x").claims());
    }
}
