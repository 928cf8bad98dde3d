//! `status`: the approvals waiting, from the database, with what was sent about them and when
//! the next reminder goes out, and (approving from Slack) the Socket Mode connection's state.
//! Read-only; never shows the webhook. [`audit`] is what the `audit` command prints.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::PathBuf;

use jiff::Timestamp;
use serde::Serialize;

use crate::config::Config;
use crate::config::idle_rhythms;
use crate::store::{FailedRow, PausedRoute, PendingRow, Store, StoreError};
use approval_watch_core::model::{DEFAULT_ACCOUNT, OpenApproval, Target};
use approval_watch_core::poll::IdleRhythm;
use approval_watch_core::remind::ReminderState;
use approval_watch_core::render::humanize;

/// One waiting approval as `status` shows it (the JSON keys are documented in the README).
#[derive(Debug, Serialize)]
pub struct Waiting {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    pub token: String,
    pub waiting_since: Timestamp,
    pub expires_at: Timestamp,
    pub first_seen: Timestamp,
    pub alerts_sent: u32,
    pub reminders_sent: u32,
    pub last_reminder_at: Option<Timestamp>,
    pub expiry_warned: bool,
    pub messages_pending: u32,
    pub messages_failed: u32,
    /// The route its messages take.
    pub route: String,
    /// When the next reminder is expected, working hours included.
    pub next_reminder: Option<Timestamp>,
    /// App mode: where its alert was posted, once it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slack: Option<approval_watch_core::model::SlackMessage>,
}

impl Waiting {
    fn new(config: &Config, open: OpenApproval, now: Timestamp) -> Self {
        let route = config.route_for(&open.approval.key.pipeline);
        let next_reminder = route.reminders.next_at(&ReminderState::of(&open), now);
        let key = open.approval.key;
        Self {
            account: key.account,
            region: key.region,
            pipeline: key.pipeline,
            stage: key.stage,
            action: key.action,
            token: key.token,
            waiting_since: open.approval.waiting_since,
            expires_at: open.approval.expires_at,
            first_seen: open.first_seen,
            alerts_sent: u32::from(open.alert_delivered),
            reminders_sent: open.reminders_sent,
            last_reminder_at: open.last_reminder_at,
            expiry_warned: open.expiry_warned,
            messages_pending: open.messages_pending,
            messages_failed: open.messages_failed,
            slack: open.slack,
            route: route.name.clone(),
            next_reminder,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Status {
    pub state_path: PathBuf,
    /// False when the database does not exist yet.
    pub database: bool,
    /// Oldest first.
    pub waiting: Vec<Waiting>,
    pub failed_messages: Vec<FailedRow>,
    /// Each destination with messages queued, in the order their heads were queued.
    pub queues: Vec<Queue>,
    /// Adaptive polling: how often idle pipelines are read, per (account, region) of the
    /// configured pipelines (discovered ones are known to the daemon only).
    pub idle_reads: Vec<IdleRhythm>,
    /// App mode: routes whose delivery waits for a person to fix the token or the channel.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub slack_paused: Vec<PausedRoute>,
    /// With `[slack.approvals]`: the Socket Mode connection as the daemon last wrote it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalsStatus>,
    /// Pipelines that cannot be watched, as last read (listed only when there are some).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unwatchable: Vec<Unwatchable>,
}

/// A pipeline the daemon cannot watch correctly, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unwatchable {
    pub account: String,
    pub region: String,
    pub pipeline: String,
    pub reason: String,
}

/// The pipelines whose kept definition has an execution mode this version does not know.
pub fn unwatchable(store: &Store) -> Result<Vec<Unwatchable>, StoreError> {
    Ok(store
        .unknown_execution_modes()?
        .into_iter()
        .map(|(t, mode)| Unwatchable {
            account: t.account,
            region: t.region,
            pipeline: t.pipeline,
            reason: format!("execution mode {mode:?} is not one this version knows how to watch"),
        })
        .collect())
}

/// One line per pipeline that cannot be watched (text from AWS escaped).
pub fn unwatchable_lines(out: &mut String, unwatchable: &[Unwatchable]) {
    for u in unwatchable {
        let _ = writeln!(
            out,
            "cannot be watched: {} ({}, {}): {}",
            printable(&u.pipeline),
            printable(&u.account),
            printable(&u.region),
            printable(&u.reason)
        );
    }
}

/// The Socket Mode connection that receives clicks, from the `socket_mode` row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalsStatus {
    /// `connecting`, `connected`, `retrying`, `disabled`, `stopped`; `unknown` before the
    /// daemon has written it (or without a database).
    pub state: String,
    /// When it entered this state.
    pub since: Option<Timestamp>,
    /// Why (the last error while retrying), if anything.
    pub detail: Option<String>,
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
    let (mut open, failed, pending, slack_paused) = match store {
        Some(store) => (
            store.open_approvals()?,
            store.failed(FAILED_SHOWN)?,
            store.pending_rows()?,
            store.paused_routes()?,
        ),
        None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
    };
    let approvals = match (&config.approvals, store) {
        (None, _) => None,
        (Some(_), Some(store)) => Some(store.socket_mode()?),
        (Some(_), None) => Some(None),
    }
    .map(|row| match row {
        Some(row) => ApprovalsStatus {
            state: row.state,
            since: Some(row.since),
            detail: row.detail,
        },
        None => ApprovalsStatus {
            state: "unknown".to_owned(),
            since: None,
            detail: None,
        },
    });
    open.sort_by_key(|o| (o.approval.waiting_since, o.id));
    Ok(Status {
        state_path: config.state_path.clone(),
        database: store.is_some(),
        waiting: open
            .into_iter()
            .map(|o| Waiting::new(config, o, now))
            .collect(),
        failed_messages: failed,
        queues: queues(config, &pending),
        idle_reads: idle_rhythms(config, &configured_targets(config)),
        slack_paused,
        approvals,
        unwatchable: match store {
            Some(store) => unwatchable(store)?,
            None => Vec::new(),
        },
    })
}

/// The configured pipelines whose region the config decides.
fn configured_targets(config: &Config) -> Vec<Target> {
    config
        .pipelines
        .iter()
        .filter_map(|p| {
            Some(Target {
                account: p.account.clone(),
                region: config.region_of(p)?.to_owned(),
                pipeline: p.name.clone(),
            })
        })
        .collect()
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
    unwatchable_lines(&mut out, &status.unwatchable);
    if status.waiting.is_empty() {
        let _ = writeln!(out, "no approvals waiting");
    } else {
        let _ = writeln!(out, "{} approval(s) waiting:", status.waiting.len());
        let _ = writeln!(
            out,
            "{:<24} {:<32} {:<20} {:<20} {:<21} {:>6} {:>9} NOTES",
            "PIPELINE", "STAGE", "ACTION", "REGION", "WAITING SINCE", "ALERTS", "REMINDERS"
        );
        for row in &status.waiting {
            let mut notes = vec![format!(
                "waited {}",
                humanize(now.duration_since(row.waiting_since))
            )];
            notes.push(format!("expires {}", minutes(row.expires_at)));
            match row.next_reminder {
                Some(next) => notes.push(format!("next reminder {}", minutes(next))),
                None => notes.push("no more reminders".to_owned()),
            }
            if row.messages_pending > 0 {
                notes.push(format!("{} undelivered", row.messages_pending));
            }
            if row.messages_failed > 0 {
                notes.push(format!("{} refused by Slack", row.messages_failed));
            }
            if row.route != crate::config::DEFAULT_ROUTE {
                notes.push(format!("route {}", row.route));
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
    for p in &status.slack_paused {
        let next = if p.next_try_at <= now {
            "next try at the next pass".to_owned()
        } else {
            format!(
                "next try in {}",
                humanize(p.next_try_at.duration_since(now))
            )
        };
        let _ = writeln!(
            out,
            "Slack delivery PAUSED for route {} since {}: {} — {} (messages stay queued; {next}, or at once after a reload)",
            printable(&p.route),
            minutes(p.since),
            printable(&p.error),
            printable(&p.fix),
        );
    }
    for r in &status.idle_reads {
        let _ = writeln!(
            out,
            "idle pipelines in {}/{} ({}): read every {} s",
            r.account, r.region, r.pipelines, r.idle_read_every_s
        );
    }
    if let Some(a) = &status.approvals {
        let since = a
            .since
            .map(|t| format!(" since {}", minutes(t)))
            .unwrap_or_default();
        let detail = a
            .detail
            .as_deref()
            .map(|d| format!(" ({})", printable(d)))
            .unwrap_or_default();
        let unknown = if a.since.is_none() {
            " (not written yet: the daemon has not started Socket Mode)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "approving from Slack: Socket Mode {}{since}{detail}{unknown}",
            printable(&a.state)
        );
    }
    if !status.failed_messages.is_empty() {
        let _ = writeln!(out, "messages Slack refused (not retried):");
        for f in &status.failed_messages {
            let at = f
                .created_at
                .map_or_else(|| "an unknown time".to_owned(), minutes);
            let _ = writeln!(
                out,
                "  {} {} / {} / {}: {} (at {at})",
                f.kind,
                f.pipeline,
                f.stage,
                f.action,
                f.error.as_deref().unwrap_or("unknown error"),
            );
        }
    }
    out
}

/// Text from outside (Slack user names, reasons, errors) with control characters and
/// bidirectional overrides escaped, the logs' rule: it must not forge lines or drive the
/// terminal.
pub(crate) fn printable(s: &str) -> Cow<'_, str> {
    crate::logging::escape::escape(s)
}
