//! Who may decide, and what CodePipeline is told. Pure.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use crate::config::Approvers;
use approval_watch_core::verdict::Verdict;

/// CodePipeline refuses a longer summary.
pub const MAX_SUMMARY_CHARS: usize = 512;

/// The members of the user groups named in the allow-lists, as last read from Slack.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Membership {
    /// Per group: its members and when they were read. A group never read successfully is
    /// absent, and then none of its members may decide (never "allow all").
    pub groups: BTreeMap<String, (BTreeSet<String>, Timestamp)>,
    /// Groups whose reading was tried at least once, successfully or not.
    pub attempted: BTreeSet<String>,
}

impl Membership {
    /// Whether `group` is still being read for the first time: a click that only a member
    /// could make is then "try again", not "denied".
    pub fn unread(&self, group: &str) -> bool {
        !self.attempted.contains(group)
    }

    pub fn contains(&self, group: &str, user: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|(members, _)| members.contains(user))
    }
}

/// Whether `user` may approve or reject under `approvers`: listed by id, or a member of a
/// listed group. Empty lists allow no one.
pub fn may_decide(user: &str, approvers: &Approvers, membership: &Membership) -> bool {
    approvers.users.iter().any(|u| u == user)
        || approvers
            .groups
            .iter()
            .any(|g| membership.contains(g, user))
}

/// The `summary` of the `ApprovalResult` CodePipeline records for a verdict from Slack (its
/// reviewer is the daemon's IAM role, so the person must be named here), cut to
/// [`MAX_SUMMARY_CHARS`] on a character boundary.
pub fn result_summary(verdict: Verdict, name: &str, id: &str, reason: Option<&str>) -> String {
    let text = match (verdict, reason) {
        (Verdict::Approve, _) => format!("Approved in Slack by {name} ({id})"),
        (Verdict::Reject, Some(reason)) => format!("Rejected in Slack by {name} ({id}): {reason}"),
        (Verdict::Reject, None) => format!("Rejected in Slack by {name} ({id})"),
    };
    text.chars().take(MAX_SUMMARY_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approvers(users: &[&str], groups: &[&str]) -> Approvers {
        Approvers {
            users: users.iter().map(|s| s.to_string()).collect(),
            groups: groups.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn listed_users_and_group_members_may_decide_nobody_else() {
        let mut m = Membership::default();
        m.groups.insert(
            "S0PLATFORM".into(),
            (
                BTreeSet::from(["U0MEMBER1".to_owned()]),
                Timestamp::UNIX_EPOCH,
            ),
        );
        let a = approvers(&["U0LEAD001"], &["S0PLATFORM", "S0UNREAD1"]);
        assert!(may_decide("U0LEAD001", &a, &m));
        assert!(may_decide("U0MEMBER1", &a, &m));
        assert!(!may_decide("U0STRANGER", &a, &m));
        assert!(
            !may_decide("U0LEAD001", &approvers(&[], &[]), &m),
            "deny by default"
        );
        assert!(!may_decide(
            "U0MEMBER1",
            &approvers(&[], &["S0UNREAD1"]),
            &m
        ));
    }

    #[test]
    fn summaries_name_the_person_and_fit_codepipeline() {
        assert_eq!(
            result_summary(Verdict::Approve, "ana", "U1", None),
            "Approved in Slack by ana (U1)"
        );
        assert_eq!(
            result_summary(Verdict::Reject, "ana", "U1", Some("breaks checkout")),
            "Rejected in Slack by ana (U1): breaks checkout"
        );
        let long = result_summary(Verdict::Reject, "ana", "U1", Some(&"é".repeat(600)));
        assert_eq!(long.chars().count(), MAX_SUMMARY_CHARS);
    }
}
