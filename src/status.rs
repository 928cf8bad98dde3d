//! `status`: the approvals waiting, from the database, with what was sent about them and when
//! the next reminder goes out. Read-only; never shows the webhook.

use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::model::DEFAULT_ACCOUNT;
use crate::remind::ReminderState;
use crate::render::humanize;
use crate::store::{FailedRow, PendingRow, Store, StoreError, WaitingRow};

#[derive(Debug, Serialize)]
pub struct Waiting {
    #[serde(flatten)]
    pub row: WaitingRow,
    /// The route its messages take.
    pub route: String,
    /// When the next reminder is expected, working hours included.
    pub next_reminder: Option<Timestamp>,
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub state_path: PathBuf,
    /// False when the database does not exist yet.
    pub database: bool,
    pub waiting: Vec<Waiting>,
    pub failed_messages: Vec<FailedRow>,
    /// Each destination with messages queued, in the order their heads were queued.
    pub queues: Vec<Queue>,
}

/// A destination's outbox queue: its head holds back the messages behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Queue {
    /// The route its messages take now (`default` for `[slack]`).
    pub destination: String,
    pub pending: u32,
    /// When the head of the queue is next tried (a past time: at the next pass).
    pub next_attempt_at: Timestamp,
    /// Tries of the head so far, and why the last one failed.
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// Groups pending messages (in outbox order) by the destination they are routed to now.
pub fn queues(config: &Config, pending: &[PendingRow]) -> Vec<Queue> {
    let mut queues: Vec<Queue> = Vec::new();
    for row in pending {
        let destination = &config.route_for(&row.pipeline).name;
        match queues.iter_mut().find(|q| q.destination == *destination) {
            Some(queue) => queue.pending += 1,
            None => queues.push(Queue {
                destination: destination.clone(),
                pending: 1,
                next_attempt_at: row.next_attempt_at,
                attempts: row.attempts,
                last_error: row.last_error.clone(),
            }),
        }
    }
    queues
}

/// Messages Slack refused that `status` lists.
const FAILED_SHOWN: u32 = 20;

pub fn collect(
    config: &Config,
    store: Option<&Store>,
    now: Timestamp,
) -> Result<Status, StoreError> {
    let (rows, failed, pending) = match store {
        Some(store) => (
            store.waiting()?,
            store.failed(FAILED_SHOWN)?,
            store.pending_rows()?,
        ),
        None => (Vec::new(), Vec::new(), Vec::new()),
    };
    let waiting = rows
        .into_iter()
        .map(|row| {
            let route = config.route_for(&row.pipeline);
            let state = ReminderState {
                waiting_since: row.waiting_since,
                first_seen: row.first_seen,
                expires_at: row.expires_at,
                sent: row.reminders_sent,
                last_at: row.last_reminder_at,
                expiry_warned: row.expiry_warned,
            };
            Waiting {
                next_reminder: route.reminders.next_at(&state, now),
                route: route.name.clone(),
                row,
            }
        })
        .collect();
    Ok(Status {
        state_path: config.state_path.clone(),
        database: store.is_some(),
        waiting,
        failed_messages: failed,
        queues: queues(config, &pending),
    })
}

fn minutes(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M UTC").to_string()
}

/// The table a person reads.
pub fn text(status: &Status, now: Timestamp) -> String {
    let mut out = String::new();
    if !status.database {
        let _ = writeln!(
            out,
            "no state database at {} yet",
            status.state_path.display()
        );
    }
    if status.waiting.is_empty() {
        let _ = writeln!(out, "no approvals waiting");
    } else {
        let _ = writeln!(out, "{} approval(s) waiting:", status.waiting.len());
        let _ = writeln!(
            out,
            "{:<24} {:<32} {:<20} {:<20} {:<21} {:>6} {:>9} NOTES",
            "PIPELINE", "STAGE", "ACTION", "REGION", "WAITING SINCE", "ALERTS", "REMINDERS"
        );
        for w in &status.waiting {
            let row = &w.row;
            let mut notes = vec![format!(
                "waited {}",
                humanize(now.duration_since(row.waiting_since))
            )];
            notes.push(format!("expires {}", minutes(row.expires_at)));
            match w.next_reminder {
                Some(next) => notes.push(format!("next reminder {}", minutes(next))),
                None => notes.push("no more reminders".to_owned()),
            }
            if row.messages_pending > 0 {
                notes.push(format!("{} undelivered", row.messages_pending));
            }
            if row.messages_failed > 0 {
                notes.push(format!("{} refused by Slack", row.messages_failed));
            }
            if w.route != crate::config::DEFAULT_ROUTE {
                notes.push(format!("route {}", w.route));
            }
            let region = if row.account == DEFAULT_ACCOUNT {
                row.region.clone()
            } else {
                format!("{}/{}", row.account, row.region)
            };
            let _ = writeln!(
                out,
                "{:<24} {:<32} {:<20} {:<20} {:<21} {:>6} {:>9} {}",
                row.pipeline,
                row.stage,
                row.action,
                region,
                minutes(row.waiting_since),
                row.alerts_sent,
                row.reminders_sent,
                notes.join(", ")
            );
        }
    }
    if !status.queues.is_empty() {
        let _ = writeln!(out, "messages queued for Slack:");
        for q in &status.queues {
            let next = if q.next_attempt_at <= now {
                "next try now".to_owned()
            } else {
                format!(
                    "next try in {} ({})",
                    humanize(q.next_attempt_at.duration_since(now)),
                    q.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S UTC")
                )
            };
            let last = match (&q.last_error, q.attempts) {
                (Some(error), n) if n > 0 => format!(", {n} tries so far, last: {error}"),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  {}: {} queued, {next}{last}",
                q.destination, q.pending
            );
        }
    }
    if !status.failed_messages.is_empty() {
        let _ = writeln!(out, "messages Slack refused (not retried):");
        for f in &status.failed_messages {
            let _ = writeln!(
                out,
                "  {} {} / {} / {}: {} (at {})",
                f.kind.as_str(),
                f.pipeline,
                f.stage,
                f.action,
                f.error.as_deref().unwrap_or("unknown error"),
                minutes(f.created_at),
            );
        }
    }
    out
}
