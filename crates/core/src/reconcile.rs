//! The decision logic: what stored approvals and fresh observations mean, given `now`.
//! Pure: no I/O, no clock. Every rule here is a unit test.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

use crate::model::{
    ActionStatus, Approval, ApprovalKey, ObservedApproval, OpenApproval, Outcome, PipelineSnapshot,
    Resolution, Revision, Target,
};
use crate::remind::{ReminderDue, ReminderPolicy, ReminderState};

/// What a cycle decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Approvals that started waiting: record and announce.
    pub new: Vec<Approval>,
    /// Recorded approvals that stopped waiting.
    pub resolved: Vec<Resolved>,
    /// Recorded approvals still waiting that are due a reminder.
    pub reminders: Vec<Reminder>,
}

#[derive(Debug, PartialEq)]
pub struct Reminder {
    pub id: i64,
    pub approval: Approval,
    pub due: ReminderDue,
}

/// What one cycle knows, for [`reconcile`].
pub struct Inputs<'a> {
    pub open: &'a [OpenApproval],
    /// Successful reads only: a pipeline that could not be read is absent.
    pub snapshots: &'a [PipelineSnapshot],
    /// Pipelines known to be gone (not found for long enough).
    pub deleted: &'a [Target],
    /// Which waiting keys were ever recorded.
    pub known: &'a HashSet<ApprovalKey>,
    pub revisions: &'a HashMap<ApprovalKey, Revision>,
    /// The reminder policy of a pipeline's route.
    pub policy: &'a dyn Fn(&str) -> &'a ReminderPolicy,
    pub now: Timestamp,
}

#[derive(Debug, PartialEq)]
pub struct Resolved {
    pub id: i64,
    pub approval: Approval,
    pub resolution: Resolution,
    /// False when the alert was never delivered: the alert is dropped and nothing is said.
    pub notify: bool,
}

/// A `Failed` approval without a reviewer this close to its expiry is taken as timed out.
const EXPIRY_TOLERANCE: SignedDuration = SignedDuration::from_mins(10);

/// The approval keys in the snapshots that are waiting now; the caller looks up which of
/// them are already recorded, and fetches revisions for the rest.
pub fn waiting_keys(snapshots: &[PipelineSnapshot]) -> Vec<(ApprovalKey, Option<String>)> {
    snapshots
        .iter()
        .flat_map(|s| s.approvals.iter().map(move |a| (s, a)))
        .filter_map(|(s, a)| {
            let latest = a.latest.as_ref()?;
            if latest.status != ActionStatus::InProgress {
                return None;
            }
            let key = ApprovalKey {
                account: s.account.clone(),
                region: s.region.clone(),
                pipeline: s.pipeline.clone(),
                stage: a.stage.clone(),
                action: a.action.clone(),
                token: latest.token.clone()?,
            };
            Some((key, a.pipeline_execution_id.clone()))
        })
        .collect()
}

/// Decides what changed. Only pipelines with a snapshot (or known deleted) are judged: a
/// pipeline that could not be read is absent here, and its open approvals stay as they are.
pub fn reconcile(input: &Inputs<'_>) -> Plan {
    let now = input.now;
    let mut plan = Plan::default();
    for target in input.deleted {
        for o in input
            .open
            .iter()
            .filter(|o| o.approval.key.target() == *target)
        {
            plan.resolved.push(Resolved {
                id: o.id,
                approval: o.approval.clone(),
                resolution: Resolution {
                    outcome: Outcome::PipelineDeleted,
                    by: None,
                    comment: None,
                    at: now,
                },
                notify: o.alert_delivered,
            });
        }
    }
    for snapshot in input.snapshots {
        for o in input.open.iter().filter(|o| belongs(o, snapshot)) {
            let key = &o.approval.key;
            let judgement = match observed(snapshot, key) {
                Seen::Action(observed) => judge(&o.approval, observed, now),
                Seen::NotListed => unlisted(&o.approval, now),
            };
            match judgement {
                Judgement::Resolved(resolution) => plan.resolved.push(Resolved {
                    id: o.id,
                    approval: o.approval.clone(),
                    resolution,
                    notify: o.alert_delivered,
                }),
                // Nobody is reminded of an approval they were never told about.
                Judgement::StillWaiting if o.alert_delivered => {
                    let policy = (input.policy)(&key.pipeline);
                    if let Some(due) = policy.due(&ReminderState::of(o), now) {
                        plan.reminders.push(Reminder {
                            id: o.id,
                            approval: o.approval.clone(),
                            due,
                        });
                    }
                }
                Judgement::StillWaiting | Judgement::Unsure => {}
            }
        }
        for a in &snapshot.approvals {
            let Some(approval) = new_waiting(snapshot, a, now) else {
                continue;
            };
            if input.known.contains(&approval.key) {
                continue;
            }
            let revision = input.revisions.get(&approval.key).cloned();
            plan.new.push(Approval {
                revision,
                ..approval
            });
        }
    }
    plan
}

/// What a read says about one recorded approval's action.
enum Seen<'a> {
    /// The action as read (`None`: the definition has no such stage or action any more).
    Action(Option<&'a ObservedApproval>),
    /// A per-execution read that did not list this approval's execution of the action.
    NotListed,
}

/// The observed action a recorded approval is judged by: the execution with its token where
/// one was read (in PARALLEL mode several executions of one action wait at once, each its own
/// approval), else the action's one latest execution. A per-execution read never judges one
/// run by another's execution.
fn observed<'a>(snapshot: &'a PipelineSnapshot, key: &ApprovalKey) -> Seen<'a> {
    let mut same_action = snapshot
        .approvals
        .iter()
        .filter(|a| a.stage == key.stage && a.action == key.action);
    let own = same_action.clone().find(|a| {
        a.latest
            .as_ref()
            .is_some_and(|l| l.token.as_deref() == Some(key.token.as_str()))
    });
    match own {
        Some(a) => Seen::Action(Some(a)),
        None if snapshot.mode.per_execution() => Seen::NotListed,
        None => Seen::Action(same_action.next()),
    }
}

/// A recorded approval whose execution a per-execution read did not list (its history gone,
/// or recorded without its execution id): it cannot wait past its expiry, so it is taken as
/// expired then; before, nothing is known.
fn unlisted(stored: &Approval, now: Timestamp) -> Judgement {
    if now < stored.expires_at {
        return Judgement::Unsure;
    }
    Judgement::Resolved(Resolution {
        outcome: Outcome::Expired,
        by: None,
        comment: None,
        at: stored.expires_at,
    })
}

fn belongs(o: &OpenApproval, snapshot: &PipelineSnapshot) -> bool {
    let key = &o.approval.key;
    key.account == snapshot.account
        && key.region == snapshot.region
        && key.pipeline == snapshot.pipeline
}

/// The approval an observed action is waiting on, if it is waiting.
fn new_waiting(
    snapshot: &PipelineSnapshot,
    a: &ObservedApproval,
    now: Timestamp,
) -> Option<Approval> {
    let latest = a.latest.as_ref()?;
    if latest.status != ActionStatus::InProgress {
        return None;
    }
    // A time in the future (a skewed clock, a hostile answer) would read "waited 0 s since
    // <tomorrow>": it has waited at least since now, when it is first seen.
    let waiting_since = latest.last_status_change.unwrap_or(now).min(now);
    let timeout = SignedDuration::from_mins(a.definition.timeout_minutes());
    Some(Approval {
        key: ApprovalKey {
            account: snapshot.account.clone(),
            region: snapshot.region.clone(),
            pipeline: snapshot.pipeline.clone(),
            stage: a.stage.clone(),
            action: a.action.clone(),
            token: latest.token.clone()?,
        },
        pipeline_execution_id: a.pipeline_execution_id.clone(),
        waiting_since,
        expires_at: waiting_since
            .saturating_add(timeout)
            .unwrap_or(waiting_since),
        custom_data: a.definition.custom_data.clone(),
        external_entity_link: a.definition.external_entity_link.clone(),
        revision: None,
    })
}

enum Judgement {
    Resolved(Resolution),
    /// Seen waiting, same token.
    StillWaiting,
    /// The answer does not say (unknown status, malformed): change nothing.
    Unsure,
}

/// Whether a recorded waiting approval has stopped waiting, judged from a successful read.
fn judge(stored: &Approval, observed: Option<&ObservedApproval>, now: Timestamp) -> Judgement {
    let superseded = || {
        Judgement::Resolved(Resolution {
            outcome: Outcome::Superseded,
            by: None,
            comment: None,
            at: now,
        })
    };
    // The read succeeded and the pipeline's definition has no such stage or action any more:
    // an edit removed it. (A definition that has it but a state without it is a malformed
    // answer, rejected before this.)
    let Some(observed) = observed else {
        return Judgement::Resolved(Resolution {
            outcome: Outcome::Removed,
            by: None,
            comment: None,
            at: now,
        });
    };
    // The action has not run since the pipeline changed.
    let Some(latest) = observed.latest.as_ref() else {
        return superseded();
    };
    if latest.token.as_deref() != Some(stored.key.token.as_str()) {
        // A token-less InProgress is a malformed answer, not evidence of a new run.
        if latest.token.is_none() && latest.status == ActionStatus::InProgress {
            return Judgement::Unsure;
        }
        return superseded();
    }
    let at = latest.last_status_change.unwrap_or(now);
    let outcome = match &latest.status {
        ActionStatus::InProgress => return Judgement::StillWaiting,
        ActionStatus::Unknown(_) => return Judgement::Unsure,
        ActionStatus::Succeeded => Outcome::Approved,
        ActionStatus::Abandoned => Outcome::Superseded,
        ActionStatus::Failed => {
            let near_expiry = at
                >= stored
                    .expires_at
                    .saturating_sub(EXPIRY_TOLERANCE)
                    .unwrap_or(at);
            if latest.last_updated_by.is_none() && near_expiry {
                Outcome::Expired
            } else {
                Outcome::Rejected
            }
        }
    };
    Judgement::Resolved(Resolution {
        outcome,
        by: latest.last_updated_by.clone(),
        comment: latest.comment.clone().filter(|s| !s.trim().is_empty()),
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionExecution, ApprovalDefinition};

    fn run(
        open: &[OpenApproval],
        snapshots: &[PipelineSnapshot],
        known: &HashSet<ApprovalKey>,
        revisions: &HashMap<ApprovalKey, Revision>,
        now: Timestamp,
    ) -> Plan {
        let policy = ReminderPolicy::default();
        let policy_of = |_: &str| &policy;
        reconcile(&Inputs {
            open,
            snapshots,
            deleted: &[],
            known,
            revisions,
            policy: &policy_of,
            now,
        })
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    const T0: i64 = 1_764_148_392;
    const WEEK: i64 = 7 * 24 * 3600;

    fn observed(status: ActionStatus, token: Option<&str>) -> ObservedApproval {
        ObservedApproval {
            stage: "Approve_Deployment_to_Production".into(),
            action: "Approve".into(),
            definition: ApprovalDefinition {
                custom_data: Some("Approval needed".into()),
                external_entity_link: None,
                timeout_minutes: Some(10080),
            },
            latest: Some(ActionExecution {
                status,
                token: token.map(str::to_owned),
                last_status_change: Some(ts(T0)),
                last_updated_by: None,
                comment: None,
            }),
            pipeline_execution_id: Some("exec-1".into()),
        }
    }

    fn snapshot(approvals: Vec<ObservedApproval>) -> PipelineSnapshot {
        PipelineSnapshot {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: "web-app".into(),
            version: Some(7),
            mode: crate::model::ExecutionMode::Superseded,
            active: true,
            approvals,
        }
    }

    fn waiting(token: &str) -> Vec<PipelineSnapshot> {
        vec![snapshot(vec![observed(
            ActionStatus::InProgress,
            Some(token),
        )])]
    }

    fn open_from(snapshots: &[PipelineSnapshot], delivered: bool) -> Vec<OpenApproval> {
        let plan = run(&[], snapshots, &HashSet::new(), &HashMap::new(), ts(T0 + 5));
        plan.new
            .into_iter()
            .enumerate()
            .map(|(i, approval)| OpenApproval {
                id: i as i64 + 1,
                first_seen: approval.waiting_since,
                approval,
                alert_delivered: delivered,
                reminders_sent: 0,
                last_reminder_at: None,
                expiry_warned: false,
                messages_pending: 0,
                messages_failed: 0,
                slack: None,
            })
            .collect()
    }

    fn resolve_with(exec: ActionExecution, delivered: bool) -> Plan {
        let open = open_from(&waiting("tok-1"), delivered);
        let mut o = observed(exec.status.clone(), exec.token.as_deref());
        o.latest = Some(exec);
        run(
            &open,
            &[snapshot(vec![o])],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 600),
        )
    }

    fn exec(
        status: ActionStatus,
        at: i64,
        by: Option<&str>,
        comment: Option<&str>,
    ) -> ActionExecution {
        ActionExecution {
            status,
            token: Some("tok-1".into()),
            last_status_change: Some(ts(at)),
            last_updated_by: by.map(str::to_owned),
            comment: comment.map(str::to_owned),
        }
    }

    #[test]
    fn a_waiting_approval_is_new_once() {
        let snaps = waiting("tok-1");
        let plan = run(&[], &snaps, &HashSet::new(), &HashMap::new(), ts(T0 + 5));
        assert_eq!(plan.new.len(), 1);
        let a = &plan.new[0];
        assert_eq!(a.key.token, "tok-1");
        assert_eq!(a.waiting_since, ts(T0));
        assert_eq!(a.expires_at, ts(T0 + WEEK));
        assert_eq!(a.custom_data.as_deref(), Some("Approval needed"));

        // Recorded (open, and known): nothing new, nothing resolved.
        let open = open_from(&snaps, true);
        let known = HashSet::from([a.key.clone()]);
        let plan = run(&open, &snaps, &known, &HashMap::new(), ts(T0 + 60));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_known_but_resolved_token_is_not_announced_again() {
        let snaps = waiting("tok-1");
        let key = waiting_keys(&snaps)[0].0.clone();
        let plan = run(&[], &snaps, &HashSet::from([key]), &HashMap::new(), ts(T0));
        assert!(plan.new.is_empty());
    }

    #[test]
    fn revisions_are_attached_to_new_approvals() {
        let snaps = waiting("tok-1");
        let key = waiting_keys(&snaps)[0].0.clone();
        let rev = Revision {
            revision_id: Some("8f2b1e4".into()),
            commit_message: Some("Fix".into()),
            url: None,
        };
        let plan = run(
            &[],
            &snaps,
            &HashSet::new(),
            &HashMap::from([(key, rev.clone())]),
            ts(T0),
        );
        assert_eq!(plan.new[0].revision, Some(rev));
    }

    #[test]
    fn approved_rejected_expired() {
        let arn = "arn:aws:sts::1:assumed-role/Deployer/alice@example.com";
        let plan = resolve_with(
            exec(ActionStatus::Succeeded, T0 + 300, Some(arn), Some("go")),
            true,
        );
        let r = &plan.resolved[0];
        assert_eq!(r.resolution.outcome, Outcome::Approved);
        assert_eq!(r.resolution.by.as_deref(), Some(arn));
        assert_eq!(r.resolution.comment.as_deref(), Some("go"));
        assert_eq!(r.resolution.at, ts(T0 + 300));
        assert!(r.notify);
        assert!(plan.new.is_empty());

        let plan = resolve_with(
            exec(
                ActionStatus::Failed,
                T0 + 300,
                Some("arn:aws:iam::1:user/bob"),
                None,
            ),
            true,
        );
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Rejected);

        let plan = resolve_with(exec(ActionStatus::Failed, T0 + WEEK + 12, None, None), true);
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Expired);

        // Failed long before expiry with nobody named: not an expiry.
        let plan = resolve_with(exec(ActionStatus::Failed, T0 + 300, None, None), true);
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Rejected);

        let plan = resolve_with(exec(ActionStatus::Abandoned, T0 + 300, None, None), true);
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Superseded);
    }

    #[test]
    fn unknown_status_and_malformed_answers_resolve_nothing() {
        let plan = resolve_with(
            exec(ActionStatus::Unknown("Paused".into()), T0, None, None),
            true,
        );
        assert!(plan.resolved.is_empty());
        let mut e = exec(ActionStatus::InProgress, T0, None, None);
        e.token = None;
        let plan = resolve_with(e, true);
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_failed_read_is_never_a_resolution() {
        let open = open_from(&waiting("tok-1"), true);
        // The pipeline's snapshot is missing because its read failed.
        let plan = run(
            &open,
            &[],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + WEEK * 2),
        );
        assert_eq!(plan, Plan::default());
        // Another pipeline's snapshot does not judge this one either.
        let mut other = snapshot(vec![]);
        other.pipeline = "api".into();
        let plan = run(
            &open,
            &[other],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_new_token_supersedes_and_alerts_again() {
        let open = open_from(&waiting("tok-1"), true);
        let known = HashSet::from([open[0].approval.key.clone()]);
        let plan = run(
            &open,
            &waiting("tok-2"),
            &known,
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan.resolved.len(), 1);
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Superseded);
        assert_eq!(plan.resolved[0].approval.key.token, "tok-1");
        assert_eq!(plan.new.len(), 1);
        assert_eq!(plan.new[0].key.token, "tok-2");
    }

    #[test]
    fn an_action_an_edit_removed_is_resolved_as_removed() {
        let open = open_from(&waiting("tok-1"), true);
        let plan = run(
            &open,
            &[snapshot(vec![])],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Removed);
        assert!(plan.resolved[0].notify);
        assert_eq!(
            Outcome::parse(Outcome::Removed.as_str()),
            Some(Outcome::Removed)
        );
        assert_eq!(Outcome::Removed.as_str(), "removed");
    }

    #[test]
    fn an_action_that_has_not_run_since_an_edit_is_superseded() {
        let open = open_from(&waiting("tok-1"), true);
        let mut never_ran = observed(ActionStatus::InProgress, None);
        never_ran.latest = None;
        let plan = run(
            &open,
            &[snapshot(vec![never_ran])],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Superseded);
    }

    #[test]
    fn a_waiting_since_in_the_future_is_clamped_to_when_it_was_first_seen() {
        let now = ts(T0);
        let mut future = observed(ActionStatus::InProgress, Some("tok-1"));
        if let Some(latest) = future.latest.as_mut() {
            latest.last_status_change = Some(ts(T0 + 3 * 24 * 3600));
        }
        let plan = run(
            &[],
            &[snapshot(vec![future])],
            &HashSet::new(),
            &HashMap::new(),
            now,
        );
        assert_eq!(plan.new[0].waiting_since, now);
        assert_eq!(plan.new[0].expires_at, ts(T0 + WEEK));
        // A past time is kept as AWS gave it.
        let plan = run(
            &[],
            &waiting("tok-1"),
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan.new[0].waiting_since, ts(T0));
    }

    #[test]
    fn an_undelivered_alert_is_resolved_silently() {
        let plan = resolve_with(exec(ActionStatus::Succeeded, T0 + 300, None, None), false);
        assert_eq!(plan.resolved.len(), 1);
        assert!(!plan.resolved[0].notify);
    }

    #[test]
    fn never_reached_and_finished_actions_are_not_waiting() {
        let mut never = observed(ActionStatus::InProgress, Some("t"));
        never.latest = None;
        let done = observed(ActionStatus::Succeeded, Some("t"));
        let snaps = vec![snapshot(vec![never, done])];
        assert!(waiting_keys(&snaps).is_empty());
        let plan = run(&[], &snaps, &HashSet::new(), &HashMap::new(), ts(T0));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn missing_timestamps_fall_back_to_now_and_default_timeout() {
        let mut o = observed(ActionStatus::InProgress, Some("t"));
        o.definition.timeout_minutes = None;
        if let Some(l) = o.latest.as_mut() {
            l.last_status_change = None;
        }
        let plan = run(
            &[],
            &[snapshot(vec![o])],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 7),
        );
        assert_eq!(plan.new[0].waiting_since, ts(T0 + 7));
        assert_eq!(plan.new[0].expires_at, ts(T0 + 7 + WEEK));
    }

    #[test]
    fn a_still_waiting_announced_approval_gets_its_reminder() {
        let snaps = waiting("tok-1");
        let open = open_from(&snaps, true);
        let known = HashSet::from([open[0].approval.key.clone()]);
        // Default policy: first reminder after 30 minutes of waiting.
        let plan = run(&open, &snaps, &known, &HashMap::new(), ts(T0 + 29 * 60));
        assert!(plan.reminders.is_empty());
        let plan = run(&open, &snaps, &known, &HashMap::new(), ts(T0 + 30 * 60));
        assert_eq!(plan.reminders.len(), 1);
        assert_eq!(plan.reminders[0].due.number, 1);
        assert_eq!(plan.reminders[0].id, open[0].id);
        // Not while its alert is undelivered, and not while its pipeline cannot be read.
        let undelivered = open_from(&snaps, false);
        assert!(
            run(&undelivered, &snaps, &known, &HashMap::new(), ts(T0 + 3600))
                .reminders
                .is_empty()
        );
        assert!(
            run(&open, &[], &known, &HashMap::new(), ts(T0 + 3600))
                .reminders
                .is_empty()
        );
    }

    #[test]
    fn a_deleted_pipeline_resolves_its_open_approvals() {
        let open = open_from(&waiting("tok-1"), true);
        let policy = ReminderPolicy::default();
        let policy_of = |_: &str| &policy;
        let deleted = [Target {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: "web-app".into(),
        }];
        let plan = reconcile(&Inputs {
            open: &open,
            snapshots: &[],
            deleted: &deleted,
            known: &HashSet::new(),
            revisions: &HashMap::new(),
            policy: &policy_of,
            now: ts(T0 + 60),
        });
        assert_eq!(plan.resolved.len(), 1);
        assert_eq!(
            plan.resolved[0].resolution.outcome,
            Outcome::PipelineDeleted
        );
    }

    /// One run's execution of the approval action, in a per-execution (PARALLEL) read.
    fn run_of(execution: &str, status: ActionStatus, by: Option<&str>) -> ObservedApproval {
        let mut o = observed(status, Some(&format!("ext-{execution}")));
        o.pipeline_execution_id = Some(execution.into());
        if let Some(latest) = o.latest.as_mut() {
            latest.last_updated_by = by.map(str::to_owned);
        }
        o
    }

    fn parallel(approvals: Vec<ObservedApproval>) -> PipelineSnapshot {
        PipelineSnapshot {
            mode: crate::model::ExecutionMode::Parallel,
            ..snapshot(approvals)
        }
    }

    #[test]
    fn two_runs_waiting_at_one_action_are_two_approvals_each_resolved_alone() {
        let both = [parallel(vec![
            run_of("e1", ActionStatus::InProgress, None),
            run_of("e2", ActionStatus::InProgress, None),
        ])];
        let open = open_from(&both, true);
        assert_eq!(open.len(), 2);
        let tokens: Vec<&str> = open.iter().map(|o| o.approval.key.token.as_str()).collect();
        assert_eq!(tokens, ["ext-e1", "ext-e2"]);
        assert_eq!(
            open[1].approval.pipeline_execution_id.as_deref(),
            Some("e2")
        );
        // Read again, both still waiting: nothing new, nothing resolved (listed in either order).
        let known: HashSet<ApprovalKey> = open.iter().map(|o| o.approval.key.clone()).collect();
        let again = [parallel(vec![
            run_of("e2", ActionStatus::InProgress, None),
            run_of("e1", ActionStatus::InProgress, None),
        ])];
        let plan = run(&open, &again, &known, &HashMap::new(), ts(T0 + 60));
        assert!(plan.new.is_empty() && plan.resolved.is_empty(), "{plan:?}");
        // e2 approved: only e2 is resolved, with its reviewer.
        let one_done = [parallel(vec![
            run_of("e1", ActionStatus::InProgress, None),
            run_of("e2", ActionStatus::Succeeded, Some("arn:alice")),
        ])];
        let plan = run(&open, &one_done, &known, &HashMap::new(), ts(T0 + 120));
        assert_eq!(plan.resolved.len(), 1, "{plan:?}");
        assert_eq!(plan.resolved[0].approval.key.token, "ext-e2");
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Approved);
        assert_eq!(plan.resolved[0].resolution.by.as_deref(), Some("arn:alice"));
        // A stopped run's approval is abandoned: superseded, the other one untouched.
        let stopped = [parallel(vec![
            run_of("e1", ActionStatus::Abandoned, None),
            run_of("e2", ActionStatus::InProgress, None),
        ])];
        let plan = run(&open, &stopped, &known, &HashMap::new(), ts(T0 + 120));
        assert_eq!(plan.resolved.len(), 1, "{plan:?}");
        assert_eq!(plan.resolved[0].approval.key.token, "ext-e1");
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Superseded);
    }

    #[test]
    fn a_run_a_parallel_read_does_not_list_stays_open_until_its_expiry() {
        let open = open_from(
            &[parallel(vec![run_of("e1", ActionStatus::InProgress, None)])],
            true,
        );
        let known: HashSet<ApprovalKey> = open.iter().map(|o| o.approval.key.clone()).collect();
        let others = [parallel(vec![run_of("e9", ActionStatus::InProgress, None)])];
        let plan = run(&open, &others, &known, &HashMap::new(), ts(T0 + 60));
        assert!(plan.resolved.is_empty(), "{plan:?}");
        assert_eq!(plan.new.len(), 1, "e9 is new");
        let plan = run(&open, &others, &known, &HashMap::new(), ts(T0 + WEEK + 1));
        assert_eq!(plan.resolved.len(), 1);
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Expired);
    }

    #[test]
    fn queued_runs_at_two_approval_stages_are_two_approvals() {
        let mut second = run_of("e2", ActionStatus::InProgress, None);
        second.stage = "Approve_Canary".into();
        let first = run_of("e1", ActionStatus::InProgress, None);
        let queued = |a: Vec<ObservedApproval>| PipelineSnapshot {
            mode: crate::model::ExecutionMode::Queued,
            ..snapshot(a)
        };
        let open = open_from(&[queued(vec![first.clone(), second.clone()])], true);
        assert_eq!(open.len(), 2);
        let known: HashSet<ApprovalKey> = open.iter().map(|o| o.approval.key.clone()).collect();
        let mut approved = first.clone();
        if let Some(l) = approved.latest.as_mut() {
            l.status = ActionStatus::Succeeded;
        }
        let plan = run(
            &open,
            &[queued(vec![approved, second])],
            &known,
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan.resolved.len(), 1, "{plan:?}");
        assert_eq!(plan.resolved[0].approval.key.stage, first.stage);
    }
}
