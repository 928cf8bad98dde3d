//! What a cycle did: [`PassReport`] per pass (they add up) and the [`CycleReport`] the loop,
//! `once`, the heartbeat and the status line read.

use std::collections::HashSet;
use std::ops::AddAssign;

use jiff::Timestamp;

use crate::daemon::deliver::DeliveryReport;
use approval_watch_core::model::{OpenApproval, Target};
use approval_watch_core::reconcile::Plan;

/// What one pass of a cycle (the urgent reads, the idle reads, the digests) did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassReport {
    pub read_failures: usize,
    pub new_approvals: usize,
    pub resolved: usize,
    pub reminders: usize,
    pub delivery: DeliveryReport,
}

impl PassReport {
    /// A pass that only delivered (the digests).
    pub fn delivered(delivery: DeliveryReport) -> Self {
        Self {
            delivery,
            ..Self::default()
        }
    }
}

impl AddAssign for PassReport {
    fn add_assign(&mut self, pass: Self) {
        self.read_failures += pass.read_failures;
        self.new_approvals += pass.new_approvals;
        self.resolved += pass.resolved;
        self.reminders += pass.reminders;
        self.delivery += pass.delivery;
    }
}

/// What one cycle did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CycleReport {
    pub pipelines: usize,
    pub read_failures: usize,
    pub new_approvals: usize,
    pub resolved: usize,
    pub reminders: usize,
    /// Pipelines read this cycle (the others were idle and not due).
    pub reads: usize,
    /// `[[discover]]` scopes that could not be listed.
    pub listing_failures: usize,
    pub delivery: DeliveryReport,
    /// Messages still waiting in the outbox after the cycle (retry later, or interrupted).
    pub undelivered: u64,
    /// When the oldest of them was queued.
    pub oldest_undelivered: Option<Timestamp>,
    /// The approvals waiting after the cycle: pipeline and since when.
    pub waiting: Vec<(Target, Timestamp)>,
}

impl CycleReport {
    /// `once` succeeds only when everything was listed and read and everything due was
    /// delivered.
    pub fn is_clean(&self) -> bool {
        self.read_failures == 0
            && self.listing_failures == 0
            && self.delivery.failed == 0
            && self.undelivered == 0
    }

    /// Why the cycle is not clean, one sentence each, for `once` to say before it exits 1.
    pub fn unclean_reasons(&self) -> Vec<String> {
        let mut reasons = Vec::new();
        let count = |n: u64, one: &str, many: &str| {
            if n == 1 {
                format!("1 {one}")
            } else {
                format!("{n} {many}")
            }
        };
        if self.read_failures > 0 {
            reasons.push(format!(
                "{} could not be read (the errors above say why)",
                count(self.read_failures as u64, "pipeline", "pipelines")
            ));
        }
        if self.listing_failures > 0 {
            reasons.push(format!(
                "{} could not be listed (the errors above say why)",
                count(
                    self.listing_failures as u64,
                    "[[discover]] scope",
                    "[[discover]] scopes"
                )
            ));
        }
        if self.delivery.failed > 0 {
            reasons.push(format!(
                "Slack refused {} for good (`approval-watch status` lists them)",
                count(u64::from(self.delivery.failed), "message", "messages")
            ));
        }
        if self.undelivered > 0 {
            reasons.push(format!(
                "{} still queued: a run sends at most {} per pass, and a message Slack deferred \
                 waits for its retry; run `once` again, or let the daemon send them",
                count(self.undelivered, "message is", "messages are"),
                crate::daemon::deliver::MAX_PER_PASS
            ));
        }
        reasons
    }

    /// Takes in what the passes did, added up.
    pub(super) fn passes(&mut self, passes: PassReport) {
        let PassReport {
            read_failures,
            new_approvals,
            resolved,
            reminders,
            delivery,
        } = passes;
        self.read_failures = read_failures;
        self.new_approvals = new_approvals;
        self.resolved = resolved;
        self.reminders = reminders;
        self.delivery = delivery;
    }
}

/// The approvals waiting, kept current pass by pass: starts as the ones recorded (`open`),
/// loses those a pass resolved, gains those it found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct Waiting(pub Vec<(Target, Timestamp)>);

impl Waiting {
    pub fn recorded(open: &[OpenApproval]) -> Self {
        Self(
            open.iter()
                .map(|o| (o.approval.key.target(), o.approval.waiting_since))
                .collect(),
        )
    }

    /// After a pass recorded `plan` (decided from `open`).
    pub fn apply(&mut self, open: &[OpenApproval], plan: &Plan) {
        let resolved: HashSet<i64> = plan.resolved.iter().map(|r| r.id).collect();
        let gone: HashSet<(Target, Timestamp)> = open
            .iter()
            .filter(|o| resolved.contains(&o.id))
            .map(|o| (o.approval.key.target(), o.approval.waiting_since))
            .collect();
        self.0.retain(|w| !gone.contains(w));
        self.0
            .extend(plan.new.iter().map(|a| (a.key.target(), a.waiting_since)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::{approval, at, open};
    use approval_watch_core::model::{Outcome, Resolution};
    use approval_watch_core::reconcile::Resolved;

    #[test]
    fn waiting_loses_what_a_pass_resolved_and_gains_what_it_found() {
        let recorded = vec![
            open(1, approval("web-app", at(0))),
            open(2, approval("api", at(5))),
        ];
        let mut waiting = Waiting::recorded(&recorded);
        let plan = Plan {
            new: vec![approval("pay", at(9))],
            resolved: vec![Resolved {
                id: 1,
                approval: recorded[0].approval.clone(),
                resolution: Resolution {
                    outcome: Outcome::Approved,
                    by: None,
                    comment: None,
                    at: at(10),
                },
                notify: true,
            }],
            reminders: Vec::new(),
        };
        waiting.apply(&recorded, &plan);
        let target = |pipeline: &str| approval(pipeline, at(0)).key.target();
        assert_eq!(waiting.0, [(target("api"), at(5)), (target("pay"), at(9))]);
        // The next pass (the idle one) found nothing: nothing changes.
        waiting.apply(&recorded, &Plan::default());
        assert_eq!(waiting.0.len(), 2);
    }

    fn pass(n: usize, delivered: u32, failed: u32, deferred: u32) -> PassReport {
        PassReport {
            read_failures: n,
            new_approvals: n + 1,
            resolved: n + 2,
            reminders: n + 3,
            delivery: DeliveryReport {
                delivered,
                failed,
                deferred,
            },
        }
    }

    #[test]
    fn passes_add_up_field_by_field() {
        let mut total = PassReport::default();
        total += pass(1, 2, 3, 4);
        total += pass(10, 20, 30, 40);
        total += PassReport::delivered(DeliveryReport {
            delivered: 100,
            failed: 0,
            deferred: 1,
        });
        assert_eq!(
            total,
            PassReport {
                read_failures: 11,
                new_approvals: 13,
                resolved: 15,
                reminders: 17,
                delivery: DeliveryReport {
                    delivered: 122,
                    failed: 33,
                    deferred: 45,
                },
            }
        );
        let mut zero = PassReport::default();
        zero += PassReport::default();
        assert_eq!(zero, PassReport::default());
    }

    #[test]
    fn a_cycle_report_takes_the_passes_and_keeps_its_own_counts() {
        let mut report = CycleReport {
            pipelines: 7,
            reads: 5,
            listing_failures: 1,
            ..CycleReport::default()
        };
        report.passes(pass(1, 2, 3, 4));
        assert_eq!(
            (report.pipelines, report.reads, report.listing_failures),
            (7, 5, 1)
        );
        assert_eq!(report.read_failures, 1);
        assert_eq!(report.new_approvals, 2);
        assert_eq!(report.resolved, 3);
        assert_eq!(report.reminders, 4);
        assert_eq!(report.delivery.failed, 3);
    }

    #[test]
    fn clean_means_listed_read_and_delivered() {
        assert!(CycleReport::default().is_clean());
        for unclean in [
            CycleReport {
                read_failures: 1,
                ..CycleReport::default()
            },
            CycleReport {
                listing_failures: 1,
                ..CycleReport::default()
            },
            CycleReport {
                undelivered: 1,
                ..CycleReport::default()
            },
        ] {
            assert!(!unclean.is_clean(), "{unclean:?}");
        }
        let mut failed = CycleReport::default();
        failed.delivery.failed = 1;
        assert!(!failed.is_clean());
    }

    #[test]
    fn an_unclean_cycle_says_each_reason_and_a_clean_one_none() {
        assert!(CycleReport::default().unclean_reasons().is_empty());
        let report = CycleReport {
            read_failures: 1,
            listing_failures: 2,
            delivery: DeliveryReport {
                failed: 3,
                ..DeliveryReport::default()
            },
            undelivered: 1_200,
            ..CycleReport::default()
        };
        assert!(!report.is_clean());
        let reasons = report.unclean_reasons();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].starts_with("1 pipeline could not be read"));
        assert!(reasons[1].starts_with("2 [[discover]] scopes could not be listed"));
        assert!(reasons[2].starts_with("Slack refused 3 messages for good"));
        assert!(reasons[3].starts_with("1200 messages are still queued: a run sends at most 500"));
    }
}
