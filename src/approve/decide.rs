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
    /// Per group: its members and when they were last read whole. A group never read whole
    /// is absent, and then none of its members may decide (never "allow all").
    pub groups: BTreeMap<String, (BTreeSet<String>, Timestamp)>,
    /// Groups whose last read gave no members, and why; a read that does removes them.
    pub unreadable: BTreeMap<String, Unreadable>,
}

/// Why a group's last read gave no members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// Slack could not be asked or refused (the log says which); read again soon.
    Failed,
    /// More members than approval-watch reads.
    TooLarge,
}

impl Membership {
    pub fn contains(&self, group: &str, user: &str) -> bool {
        self.groups
            .get(group)
            .is_some_and(|(members, _)| members.contains(user))
    }
}

/// What the allow-lists and the groups as read say about one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// Listed by id, or a member of a listed group.
    Allowed,
    /// Neither, and every listed group is known: this user may not.
    Denied,
    /// Neither, but a listed group is still being read for the first time.
    NotYet,
    /// Neither, but these listed groups could not be read: whether the user is in one is
    /// unknown (`too_large`: one of them is larger than approval-watch reads).
    Unknown {
        groups: Vec<String>,
        too_large: bool,
    },
}

/// Whether `user` may approve or reject under `approvers`: listed by id, or a member of a
/// listed group. Empty lists allow no one; a group whose members are not known never
/// allows, but then the answer is "unknown", not "denied".
pub fn authority(user: &str, approvers: &Approvers, membership: &Membership) -> Authority {
    if approvers.users.iter().any(|u| u == user)
        || approvers
            .groups
            .iter()
            .any(|g| membership.contains(g, user))
    {
        return Authority::Allowed;
    }
    let unknown: Vec<&String> = approvers
        .groups
        .iter()
        .filter(|g| !membership.groups.contains_key(*g))
        .collect();
    if unknown.is_empty() {
        return Authority::Denied;
    }
    let why: Vec<Option<Unreadable>> = unknown
        .iter()
        .map(|g| membership.unreadable.get(*g).copied())
        .collect();
    if why.contains(&None) {
        return Authority::NotYet;
    }
    Authority::Unknown {
        groups: unknown.into_iter().cloned().collect(),
        too_large: why.contains(&Some(Unreadable::TooLarge)),
    }
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

    /// S0PLATFORM read, holding U0MEMBER1.
    fn platform_read() -> Membership {
        let mut m = Membership::default();
        m.groups.insert(
            "S0PLATFORM".into(),
            (
                BTreeSet::from(["U0MEMBER1".to_owned()]),
                Timestamp::UNIX_EPOCH,
            ),
        );
        m
    }

    #[test]
    fn listed_users_and_group_members_may_decide_nobody_else() {
        let m = platform_read();
        let a = approvers(&["U0LEAD001"], &["S0PLATFORM"]);
        assert_eq!(authority("U0LEAD001", &a, &m), Authority::Allowed);
        assert_eq!(authority("U0MEMBER1", &a, &m), Authority::Allowed);
        assert_eq!(authority("U0STRANGER", &a, &m), Authority::Denied);
        assert_eq!(
            authority("U0LEAD001", &approvers(&[], &[]), &m),
            Authority::Denied,
            "deny by default"
        );
    }

    #[test]
    fn a_group_not_known_never_allows_and_says_why() {
        let mut m = platform_read();
        let a = approvers(&["U0LEAD001"], &["S0PLATFORM", "S0UNREAD1"]);
        // Listed, or in a known group: the unknown group does not matter.
        assert_eq!(authority("U0LEAD001", &a, &m), Authority::Allowed);
        assert_eq!(authority("U0MEMBER1", &a, &m), Authority::Allowed);
        assert_eq!(authority("U0OTHER01", &a, &m), Authority::NotYet);
        m.unreadable.insert("S0UNREAD1".into(), Unreadable::Failed);
        let failed = Authority::Unknown {
            groups: vec!["S0UNREAD1".into()],
            too_large: false,
        };
        assert_eq!(authority("U0OTHER01", &a, &m), failed);
        m.unreadable
            .insert("S0UNREAD1".into(), Unreadable::TooLarge);
        assert_eq!(
            authority("U0OTHER01", &a, &m),
            Authority::Unknown {
                groups: vec!["S0UNREAD1".into()],
                too_large: true,
            }
        );
        // A group read before keeps its members when a later read fails.
        m.unreadable.insert("S0PLATFORM".into(), Unreadable::Failed);
        assert_eq!(authority("U0MEMBER1", &a, &m), Authority::Allowed);
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
