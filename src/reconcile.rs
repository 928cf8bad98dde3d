//! The decision logic: what stored approvals and fresh observations mean, given `now`.
//! Pure: no I/O, no clock. Every rule here is a unit test.

use std::collections::{HashMap, HashSet};

use jiff::{SignedDuration, Timestamp};

use crate::model::{
    ActionStatus, Approval, ApprovalKey, ObservedApproval, Outcome, PipelineSnapshot, Resolution,
    Revision,
};

/// An approval the store holds as still waiting.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenApproval {
    pub id: i64,
    pub approval: Approval,
    /// Whether its waiting alert reached Slack; if not, its resolution is not worth telling.
    pub alert_delivered: bool,
}

/// What a cycle decided.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Approvals that started waiting: record and announce.
    pub new: Vec<Approval>,
    /// Recorded approvals that stopped waiting.
    pub resolved: Vec<Resolved>,
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

/// Decides what changed. Only pipelines with a snapshot are judged: a pipeline that could
/// not be read is absent here, and its open approvals stay exactly as they are.
pub fn reconcile(
    open: &[OpenApproval],
    snapshots: &[PipelineSnapshot],
    known: &HashSet<ApprovalKey>,
    revisions: &HashMap<ApprovalKey, Revision>,
    now: Timestamp,
) -> Plan {
    let mut plan = Plan::default();
    for snapshot in snapshots {
        let observed = |stage: &str, action: &str| {
            snapshot
                .approvals
                .iter()
                .find(|a| a.stage == stage && a.action == action)
        };
        for o in open.iter().filter(|o| {
            o.approval.key.region == snapshot.region && o.approval.key.pipeline == snapshot.pipeline
        }) {
            let key = &o.approval.key;
            if let Some(resolution) = judge(&o.approval, observed(&key.stage, &key.action), now) {
                plan.resolved.push(Resolved {
                    id: o.id,
                    approval: o.approval.clone(),
                    resolution,
                    notify: o.alert_delivered,
                });
            }
        }
        for a in &snapshot.approvals {
            let Some(approval) = new_waiting(snapshot, a, now) else {
                continue;
            };
            if known.contains(&approval.key) {
                continue;
            }
            let revision = revisions.get(&approval.key).cloned();
            plan.new.push(Approval {
                revision,
                ..approval
            });
        }
    }
    plan
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
    let waiting_since = latest.last_status_change.unwrap_or(now);
    let timeout = SignedDuration::from_mins(a.definition.timeout_minutes());
    Some(Approval {
        key: ApprovalKey {
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

/// Whether a recorded waiting approval has stopped waiting, judged from a successful read.
fn judge(
    stored: &Approval,
    observed: Option<&ObservedApproval>,
    now: Timestamp,
) -> Option<Resolution> {
    let superseded = || Resolution {
        outcome: Outcome::Superseded,
        by: None,
        comment: None,
        at: now,
    };
    // The action is gone from the pipeline, or has not run since it changed.
    let Some(latest) = observed.and_then(|o| o.latest.as_ref()) else {
        return Some(superseded());
    };
    if latest.token.as_deref() != Some(stored.key.token.as_str()) {
        // A token-less InProgress is a malformed answer, not evidence of a new run.
        if latest.token.is_none() && latest.status == ActionStatus::InProgress {
            return None;
        }
        return Some(superseded());
    }
    let at = latest.last_status_change.unwrap_or(now);
    let outcome = match &latest.status {
        ActionStatus::InProgress | ActionStatus::Unknown(_) => return None,
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
    Some(Resolution {
        outcome,
        by: latest.last_updated_by.clone(),
        comment: latest.summary.clone().filter(|s| !s.trim().is_empty()),
        at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ActionExecution, ApprovalDefinition};

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
                summary: None,
            }),
            pipeline_execution_id: Some("exec-1".into()),
        }
    }

    fn snapshot(approvals: Vec<ObservedApproval>) -> PipelineSnapshot {
        PipelineSnapshot {
            region: "us-east-1".into(),
            pipeline: "web-app".into(),
            version: Some(7),
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
        let plan = reconcile(&[], snapshots, &HashSet::new(), &HashMap::new(), ts(T0 + 5));
        plan.new
            .into_iter()
            .enumerate()
            .map(|(i, approval)| OpenApproval {
                id: i as i64 + 1,
                approval,
                alert_delivered: delivered,
            })
            .collect()
    }

    fn resolve_with(exec: ActionExecution, delivered: bool) -> Plan {
        let open = open_from(&waiting("tok-1"), delivered);
        let mut o = observed(exec.status.clone(), exec.token.as_deref());
        o.latest = Some(exec);
        reconcile(
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
        summary: Option<&str>,
    ) -> ActionExecution {
        ActionExecution {
            status,
            token: Some("tok-1".into()),
            last_status_change: Some(ts(at)),
            last_updated_by: by.map(str::to_owned),
            summary: summary.map(str::to_owned),
        }
    }

    #[test]
    fn a_waiting_approval_is_new_once() {
        let snaps = waiting("tok-1");
        let plan = reconcile(&[], &snaps, &HashSet::new(), &HashMap::new(), ts(T0 + 5));
        assert_eq!(plan.new.len(), 1);
        let a = &plan.new[0];
        assert_eq!(a.key.token, "tok-1");
        assert_eq!(a.waiting_since, ts(T0));
        assert_eq!(a.expires_at, ts(T0 + WEEK));
        assert_eq!(a.custom_data.as_deref(), Some("Approval needed"));

        // Recorded (open, and known): nothing new, nothing resolved.
        let open = open_from(&snaps, true);
        let known = HashSet::from([a.key.clone()]);
        let plan = reconcile(&open, &snaps, &known, &HashMap::new(), ts(T0 + 60));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_known_but_resolved_token_is_not_announced_again() {
        let snaps = waiting("tok-1");
        let key = waiting_keys(&snaps)[0].0.clone();
        let plan = reconcile(&[], &snaps, &HashSet::from([key]), &HashMap::new(), ts(T0));
        assert!(plan.new.is_empty());
    }

    #[test]
    fn revisions_are_attached_to_new_approvals() {
        let snaps = waiting("tok-1");
        let key = waiting_keys(&snaps)[0].0.clone();
        let rev = Revision {
            revision_id: Some("8f2b1e4".into()),
            summary: Some("Fix".into()),
            url: None,
        };
        let plan = reconcile(
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
        let plan = reconcile(
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
        let plan = reconcile(
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
        let plan = reconcile(
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
    fn an_action_that_vanished_is_superseded() {
        let open = open_from(&waiting("tok-1"), true);
        let plan = reconcile(
            &open,
            &[snapshot(vec![])],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 60),
        );
        assert_eq!(plan.resolved[0].resolution.outcome, Outcome::Superseded);
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
        let plan = reconcile(&[], &snaps, &HashSet::new(), &HashMap::new(), ts(T0));
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn missing_timestamps_fall_back_to_now_and_default_timeout() {
        let mut o = observed(ActionStatus::InProgress, Some("t"));
        o.definition.timeout_minutes = None;
        if let Some(l) = o.latest.as_mut() {
            l.last_status_change = None;
        }
        let plan = reconcile(
            &[],
            &[snapshot(vec![o])],
            &HashSet::new(),
            &HashMap::new(),
            ts(T0 + 7),
        );
        assert_eq!(plan.new[0].waiting_since, ts(T0 + 7));
        assert_eq!(plan.new[0].expires_at, ts(T0 + 7 + WEEK));
    }
}
