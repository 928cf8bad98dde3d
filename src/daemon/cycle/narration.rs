//! What a cycle says in the log at info: each decision as it is recorded, and a summary of
//! the fleet at most every [`SUMMARY_EVERY`].

use jiff::{SignedDuration, Timestamp};

use crate::daemon::cycle::report::CycleReport;
use approval_watch_core::reconcile::Plan;

/// How often a cycle summary (reads done and saved) is logged at info.
pub const SUMMARY_EVERY: SignedDuration = SignedDuration::from_mins(10);

/// When the last periodic summary was logged.
#[derive(Debug, Default)]
pub struct Summary {
    last: Option<Timestamp>,
}

impl Summary {
    /// Logs the summary of `report` when one is due at `now`.
    pub fn after_cycle(&mut self, report: &CycleReport, reads_saved: u64, now: Timestamp) {
        if !self.due(now) {
            return;
        }
        tracing::info!(
            pipelines = report.pipelines,
            read = report.reads,
            waiting = report.waiting.len(),
            reads_saved,
            undelivered = report.undelivered,
            "watching; idle pipelines have skipped {reads_saved} reads since start"
        );
    }

    /// Whether a summary is due at `now`; if so, the next is [`SUMMARY_EVERY`] on.
    fn due(&mut self, now: Timestamp) -> bool {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < SUMMARY_EVERY)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// A decision's line at info: the approval's pipeline, stage and action, then the rest.
macro_rules! decision {
    ($key:expr, $($rest:tt)+) => {
        tracing::info!(
            pipeline = %$key.pipeline,
            stage = %$key.stage,
            action = %$key.action,
            $($rest)+
        )
    };
}

/// Logs the decisions of a pass.
pub fn log_plan(plan: &Plan) {
    for a in &plan.new {
        decision!(
            a.key,
            region = %a.key.region,
            account = %a.key.account,
            "approval waiting"
        );
    }
    for r in &plan.resolved {
        decision!(
            r.approval.key,
            outcome = r.resolution.outcome.as_str(),
            told = r.notify,
            "approval resolved"
        );
    }
    for r in &plan.reminders {
        decision!(
            r.approval.key,
            number = r.due.number,
            expiry_warning = r.due.expiry_warning,
            escalated = r.due.escalate,
            "reminder due"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::at;

    #[test]
    fn a_summary_at_the_first_cycle_then_at_most_every_ten_minutes() {
        let mut s = Summary::default();
        let due: Vec<i64> = [0, 1, 9, 10, 15, 19, 21]
            .into_iter()
            .filter(|&m| s.due(at(m)))
            .collect();
        assert_eq!(due, [0, 10, 21]);
    }
}
