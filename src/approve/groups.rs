//! The user groups named in the allow-lists, read from Slack (`usergroups.users.list`) on a
//! task of its own: every group at start and every [`GROUP_REFRESH`]; a group whose members
//! are not known (never read whole: its read failed, or it is too large) is read again after a
//! short backoff instead, so one failed first read does not lock its members out for
//! minutes. A group that cannot be read keeps its last known members (the log says so).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Ctx;
use super::decide::Unreadable;
use crate::backoff::{Backoff, Jitter, Streak};
use crate::slack::web_api::{ApiError, GroupMembers, MAX_GROUP_MEMBERS};

/// User groups are read again this often.
const GROUP_REFRESH: Duration = Duration::from_secs(5 * 60);
/// A group whose members are not known is read again after this (jittered, doubling up to
/// [`GROUP_REFRESH`]): seconds for a blip, a few reads an hour for a lasting refusal.
const RETRY_FIRST: Duration = Duration::from_secs(2);

/// One group's schedule: when it is read next, and its failures in a row.
struct Schedule {
    next: Instant,
    failures: Streak,
}

/// Reads every named group now, then each when its time comes, until `stop`.
pub(super) async fn refresh(ctx: Arc<Ctx>, stop: CancellationToken) {
    let backoff = Backoff::new(RETRY_FIRST, GROUP_REFRESH, Jitter::UpperHalf);
    let mut schedules: BTreeMap<String, Schedule> = ctx
        .config
        .approval_groups()
        .into_iter()
        .map(|g| {
            let schedule = Schedule {
                next: Instant::now(),
                failures: Streak::new(backoff),
            };
            (g, schedule)
        })
        .collect();
    loop {
        for (group, schedule) in &mut schedules {
            if schedule.next > Instant::now() {
                continue;
            }
            let read = tokio::select! {
                read = ctx.slack.usergroup_members(group) => read,
                _ = stop.cancelled() => return,
            };
            let retry_after = match &read {
                Err(ApiError::RateLimited { retry_after }) => *retry_after,
                _ => None,
            };
            let wait = if remember(&ctx, group, read) {
                schedule.failures.reset();
                GROUP_REFRESH
            } else {
                // Slack's Retry-After, when it gave one, is a floor (bounded like the rest).
                let wait = schedule.failures.fail();
                wait.max(retry_after.unwrap_or_default().min(GROUP_REFRESH))
            };
            schedule.next = Instant::now() + wait;
        }
        let Some(next) = schedules.values().map(|s| s.next).min() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// Records a read of `group`; whether its members are known now (read whole now or before).
fn remember(ctx: &Ctx, group: &str, read: Result<GroupMembers, ApiError>) -> bool {
    let Ok(mut m) = ctx.membership.write() else {
        return false;
    };
    let (why, problem) = match read {
        Ok(GroupMembers::All(members)) => {
            let count = members.len();
            if m.unreadable.remove(group).is_some() {
                tracing::info!(group = %group, members = count, "read the members of the user group again");
            } else {
                tracing::debug!(group = %group, members = count, "read the members of the user group");
            }
            let now = ctx.clock.now();
            m.groups
                .insert(group.to_owned(), (members.into_iter().collect(), now));
            return true;
        }
        Ok(GroupMembers::TooMany) => (
            Unreadable::TooLarge,
            format!("it has more than {MAX_GROUP_MEMBERS} members, more than approval-watch reads"),
        ),
        Err(e) => {
            let advice = match e.slack_error() {
                Some("missing_scope") => " (add the usergroups:read scope and reinstall the app)",
                Some("plan_upgrade_required") => {
                    " (user groups need a paid Slack plan; list users instead)"
                }
                _ => "",
            };
            (Unreadable::Failed, format!("{e}{advice}"))
        }
    };
    let before = m.unreadable.insert(group.to_owned(), why);
    match m.groups.get(group).map(|(_, at)| *at) {
        Some(at) => tracing::warn!(
            group = %group,
            "cannot read the user group: {problem}; using its members as read at {at}"
        ),
        // Retried within seconds: said at WARN when it starts or changes, not on each retry.
        None if before == Some(why) => tracing::debug!(
            group = %group,
            "cannot read the user group: {problem}; still trying"
        ),
        None => tracing::warn!(
            group = %group,
            "cannot read the user group: {problem}; its members cannot approve until it can be read (they are told so), trying again in seconds"
        ),
    }
    m.groups.contains_key(group)
}
