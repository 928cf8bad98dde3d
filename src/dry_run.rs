//! `once --dry-run`: the Slack messages a cycle would send, as JSON lines, changing nothing.

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::model::ApprovalKey;
use crate::reconcile::Plan;
use crate::store::{NewMessage, Store, StoreError};
use crate::watcher;

/// One line of output.
#[derive(Serialize)]
struct Line<'a> {
    kind: &'a str,
    /// "queued" for what the outbox already holds and is due, "new" for what this cycle adds.
    source: &'a str,
    destination: &'a str,
    pipeline: &'a str,
    stage: &'a str,
    action: &'a str,
    region: &'a str,
    /// The body that would be posted, destination overrides included.
    payload: serde_json::Value,
}

/// Due outbox messages first (they go first), then what the plan would queue.
pub fn lines(
    config: &Config,
    store: Option<&Store>,
    plan: &Plan,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut push = |source: &str, key: &ApprovalKey, kind: &str, payload: &serde_json::Value| {
        let route = config.route_for(&key.pipeline);
        let line = Line {
            kind,
            source,
            destination: &route.name,
            pipeline: &key.pipeline,
            stage: &key.stage,
            action: &key.action,
            region: &key.region,
            payload: route.overrides.apply(payload),
        };
        // Serializing plain strings and JSON values cannot fail.
        if let Ok(text) = serde_json::to_string(&line) {
            out.push(text);
        }
    };
    if let Some(store) = store {
        for m in store.pending(u32::MAX)? {
            if m.next_attempt_at <= now {
                push("queued", &m.key, m.kind.as_str(), &m.payload);
            }
        }
    }
    let changes = watcher::changes(config, plan, now);
    let mut new: Vec<(&ApprovalKey, &NewMessage)> = Vec::new();
    for (r, (_, _, m)) in plan.resolved.iter().zip(&changes.resolved) {
        if let Some(m) = m {
            new.push((&r.approval.key, m));
        }
    }
    for (r, (_, _, m)) in plan.reminders.iter().zip(&changes.reminders) {
        new.push((&r.approval.key, m));
    }
    for (a, m) in &changes.new {
        new.push((&a.key, m));
    }
    for (key, m) in new {
        push("new", key, m.kind.as_str(), &m.payload);
    }
    Ok(out)
}
