//! An approval decided from Slack reads as decided by the person who clicked, not by the
//! daemon's IAM role that CodePipeline names.

use std::fmt::Display;

use crate::approve;
use approval_watch_core::model::Outcome;
use approval_watch_core::reconcile::Plan;
use approval_watch_core::verdict::Verdict;

/// Credits the Slack decider (`decided_in_slack`: the store's name and user id of whoever
/// decided approval `id` in Slack) on approvals and rejections whose CodePipeline comment is
/// the summary sent for that very outcome. A store that cannot say leaves the role (warned).
pub fn credit_slack_deciders<E: Display>(
    plan: &mut Plan,
    decided_in_slack: impl Fn(i64) -> Result<Option<(String, String)>, E>,
) {
    for r in &mut plan.resolved {
        let verdict = match r.resolution.outcome {
            Outcome::Approved => Verdict::Approve,
            Outcome::Rejected => Verdict::Reject,
            _ => continue,
        };
        match decided_in_slack(r.id) {
            Ok(Some((name, id))) => {
                // Only when CodePipeline's comment is the summary sent for this very
                // outcome: a console decision racing a Slack click keeps its reviewer.
                let ours = approve::result_summary(verdict, &name, &id, None);
                let rest = r
                    .resolution
                    .comment
                    .as_deref()
                    .and_then(|c| c.strip_prefix(ours.as_str()))
                    .map(|rest| rest.strip_prefix(": ").unwrap_or(rest).trim().to_owned());
                if let Some(reason) = rest {
                    r.resolution.by = Some(format!("{name} ({id}) in Slack"));
                    // The headline says who; a rejection's reason stays as the comment.
                    r.resolution.comment = (!reason.is_empty()).then_some(reason);
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(
                pipeline = %r.approval.key.pipeline,
                "cannot read who decided in Slack: {e}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::{approval, at};
    use approval_watch_core::model::Resolution;
    use approval_watch_core::reconcile::Resolved;

    const ROLE: &str = "arn:aws:sts::123456789012:assumed-role/approval-watch/i-0";

    fn plan(outcome: Outcome, comment: Option<&str>) -> Plan {
        Plan {
            resolved: vec![Resolved {
                id: 7,
                approval: approval("web-app", at(0)),
                resolution: Resolution {
                    outcome,
                    by: Some(ROLE.into()),
                    comment: comment.map(str::to_owned),
                    at: at(5),
                },
                notify: true,
            }],
            ..Plan::default()
        }
    }

    fn alice(id: i64) -> Result<Option<(String, String)>, String> {
        assert_eq!(id, 7);
        Ok(Some(("Alice".into(), "U0ALICE".into())))
    }

    fn credited(mut plan: Plan) -> Resolution {
        credit_slack_deciders(&mut plan, alice);
        plan.resolved.remove(0).resolution
    }

    #[test]
    fn a_decision_from_slack_names_the_clicker_and_keeps_a_reason() {
        for (outcome, comment, reason) in [
            (
                Outcome::Approved,
                "Approved in Slack by Alice (U0ALICE)",
                None,
            ),
            (
                Outcome::Rejected,
                "Rejected in Slack by Alice (U0ALICE): not on a Friday",
                Some("not on a Friday"),
            ),
            (
                Outcome::Rejected,
                "Rejected in Slack by Alice (U0ALICE)",
                None,
            ),
        ] {
            let r = credited(plan(outcome, Some(comment)));
            assert_eq!(
                r.by.as_deref(),
                Some("Alice (U0ALICE) in Slack"),
                "{comment}"
            );
            assert_eq!(r.comment.as_deref(), reason, "{comment}");
        }
    }

    #[test]
    fn a_console_decision_racing_a_click_keeps_its_reviewer() {
        for (outcome, comment) in [
            (Outcome::Approved, Some("LGTM")),
            (Outcome::Approved, None),
            // The click said approve; the console rejected first.
            (
                Outcome::Rejected,
                Some("Approved in Slack by Alice (U0ALICE)"),
            ),
        ] {
            let r = credited(plan(outcome, comment));
            assert_eq!(r.by.as_deref(), Some(ROLE), "{outcome:?} {comment:?}");
            assert_eq!(r.comment.as_deref(), comment);
        }
    }

    #[test]
    fn other_outcomes_and_unknown_deciders_are_left_alone() {
        let mut p = plan(Outcome::Expired, None);
        credit_slack_deciders(&mut p, |_| -> Result<_, String> {
            panic!("not asked for an expiry")
        });
        assert_eq!(p.resolved[0].resolution.by.as_deref(), Some(ROLE));
        let comment = Some("Approved in Slack by Alice (U0ALICE)");
        for lookup in [Ok(None), Err("database is locked".to_owned())] {
            let mut p = plan(Outcome::Approved, comment);
            credit_slack_deciders(&mut p, |_| lookup.clone());
            assert_eq!(p.resolved[0].resolution.by.as_deref(), Some(ROLE));
            assert_eq!(p.resolved[0].resolution.comment.as_deref(), comment);
        }
    }
}
