//! The only module that speaks SQL: approvals and the Slack outbox, in one SQLite file.
//!
//! Calls are synchronous: each is a few small statements on a local file, far below
//! the cost of the HTTP calls around them, so they run on the caller's task.

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use rusqlite::{Connection, OpenFlags, Row, params};
use rusqlite_migration::{M, Migrations};

use approval_watch_core::model::{
    Approval, ApprovalKey, MessageKind, OpenApproval, Resolution, Revision, SlackMessage, Target,
};
use approval_watch_core::remind::ReminderDue;

pub mod audit;
mod in_place;
mod queues;

pub use audit::{AuditEntry, AuditLog, Claim, ClickTarget, ConnectionRow};
pub use queues::PendingRow;

/// The cause is part of each message (logs print only the top error), so none is also
/// a `source()`: chained reports would repeat it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database {path}: {cause}")]
    Sqlite {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error(
        "state database {path} was written by a newer approval-watch (schema version {found}; this version knows up to {known}); refusing to touch it"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error(
        "state database {path} has schema version {found}; approving from Slack needs version {needed}: the state database must be opened (and migrated) by this approval-watch first"
    )]
    TooOld {
        path: PathBuf,
        found: i64,
        needed: i64,
    },
    #[error("state database {path}: migration failed: {cause}")]
    Migration {
        path: PathBuf,
        cause: rusqlite_migration::Error,
    },
    #[error(
        "state database {path} is in use by another approval-watch (lock {lock} is held); stop it first"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error(
        "state database {path} was deleted or replaced while open and could not be put back: {cause}"
    )]
    Restore { path: PathBuf, cause: String },
    #[error("state database {path}: cannot open lock file {lock}: {cause}")]
    Lock {
        path: PathBuf,
        lock: PathBuf,
        cause: std::io::Error,
    },
}

const SCHEMA_V1: &str = "
CREATE TABLE approvals (
    id INTEGER PRIMARY KEY,
    region TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    stage TEXT NOT NULL,
    action TEXT NOT NULL,
    token TEXT NOT NULL,
    pipeline_execution_id TEXT,
    waiting_since_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    custom_data TEXT,
    external_entity_link TEXT,
    revision_id TEXT,
    revision_summary TEXT,
    revision_url TEXT,
    first_seen_ms INTEGER NOT NULL,
    reminders_sent INTEGER NOT NULL DEFAULT 0,
    last_reminder_ms INTEGER,
    resolved_ms INTEGER,
    outcome TEXT,
    resolved_by TEXT,
    comment TEXT,
    UNIQUE (region, pipeline, stage, action, token)
);
CREATE INDEX approvals_open ON approvals (region, pipeline) WHERE resolved_ms IS NULL;

-- Slack messages, written in the same transaction as the change that makes them due.
-- `response` keeps what a delivery returned, for a later Slack app mode (channel, ts).
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY,
    approval_id INTEGER NOT NULL REFERENCES approvals (id),
    kind TEXT NOT NULL,
    destination TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error TEXT,
    delivered_ms INTEGER,
    response TEXT
);
CREATE INDEX outbox_pending ON outbox (destination, id) WHERE state = 'pending';
CREATE INDEX outbox_by_approval ON outbox (approval_id);
";

/// Reminders: whether the loud one before expiry went out.
const SCHEMA_V2: &str = "
ALTER TABLE approvals ADD COLUMN expiry_warned INTEGER NOT NULL DEFAULT 0;
";

/// Several AWS accounts: which one an approval belongs to. (Tokens are UUIDs, so the
/// original unique key stays unique across accounts.)
const SCHEMA_V3: &str = "
ALTER TABLE approvals ADD COLUMN account TEXT NOT NULL DEFAULT 'default';
";

/// Messages are routed when they are sent (the config says where), so the outbox no longer
/// records a destination at queue time; order is outbox order within each route.
const SCHEMA_V4: &str = "
DROP INDEX outbox_pending;
ALTER TABLE outbox DROP COLUMN destination;
CREATE INDEX outbox_pending ON outbox (id) WHERE state = 'pending';
";

/// The heartbeat: one row written at the end of every cycle while a heartbeat is configured,
/// so "the store is writable" is proven by a write even when a cycle changed nothing.
const SCHEMA_V5: &str = "
CREATE TABLE liveness (id INTEGER PRIMARY KEY CHECK (id = 1), last_cycle_ms INTEGER NOT NULL);
";

/// Slack app mode: where an approval's alert was posted (for thread replies and the update
/// on resolution), and per message whether a reply also shows in the channel, whether a
/// resolution is told in the thread, and how the resolved alert should read.
const SCHEMA_V6: &str = "
ALTER TABLE approvals ADD COLUMN slack_channel TEXT;
ALTER TABLE approvals ADD COLUMN slack_ts TEXT;
ALTER TABLE outbox ADD COLUMN broadcast INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN reply INTEGER NOT NULL DEFAULT 1;
ALTER TABLE outbox ADD COLUMN update_payload TEXT;
";

/// The daily digest: which destination had its digest for which local day. A digest is not
/// about one approval, yet outbox rows reference one; it rides on the row of the oldest
/// approval it lists (which routes it to the same destination at send time) with kind
/// `digest`, and is not dropped when that approval resolves.
const SCHEMA_V7: &str = "
CREATE TABLE digests (
    route TEXT NOT NULL,
    day TEXT NOT NULL,
    decided_ms INTEGER NOT NULL,
    approvals INTEGER NOT NULL,
    PRIMARY KEY (route, day)
);
";

/// Pipeline definitions (their approval actions) per version, so a restart reads them only
/// when a pipeline's version changed. Only the newest version per pipeline is kept.
const SCHEMA_V8: &str = "
CREATE TABLE definitions (
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    version INTEGER NOT NULL,
    approvals TEXT NOT NULL,
    read_ms INTEGER NOT NULL,
    PRIMARY KEY (account, region, pipeline, version)
);
";

/// Approving from Slack: every click (who, when, what, which approval, the outcome), and the
/// Socket Mode connection's state for `status`. The partial unique index is the last word on
/// "exactly one decision per approval": at most one row per approval is pending, approved or
/// rejected, whichever connection writes it. `(user_id, click_id)` is unique, so a click
/// delivered twice is recorded once. No foreign key: a click may name an approval that does not
/// exist, and that is recorded too.
const SCHEMA_V9: &str = "
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    approval_id INTEGER,
    account TEXT,
    region TEXT,
    pipeline TEXT,
    stage TEXT,
    action TEXT,
    decision TEXT NOT NULL CHECK (decision IN ('approve', 'reject')),
    result TEXT NOT NULL,
    request_id TEXT,
    reason TEXT,
    click_id TEXT NOT NULL
);
CREATE UNIQUE INDEX audit_one_decision ON audit (approval_id)
    WHERE result IN ('pending', 'approved', 'rejected');
CREATE UNIQUE INDEX audit_click ON audit (user_id, click_id);
CREATE INDEX audit_time ON audit (at_ms);
CREATE TABLE socket_mode (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    detail TEXT,
    updated_ms INTEGER NOT NULL
);
";

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(SCHEMA_V1),
        M::up(SCHEMA_V2),
        M::up(SCHEMA_V3),
        M::up(SCHEMA_V4),
        M::up(SCHEMA_V5),
        M::up(SCHEMA_V6),
        M::up(SCHEMA_V7),
        M::up(SCHEMA_V8),
        M::up(SCHEMA_V9),
    ])
}

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 9;

/// A message waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    pub id: i64,
    pub kind: MessageKind,
    pub payload: serde_json::Value,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    /// Which approval it is about, for logs.
    pub key: ApprovalKey,
    pub approval_id: i64,
    pub app: AppParts,
    /// Where the approval's alert was posted (app mode), when it was.
    pub thread: Option<SlackMessage>,
}

/// A message to queue, rendered by the caller.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub kind: MessageKind,
    pub payload: serde_json::Value,
    pub app: AppParts,
}

/// What app mode needs beyond the payload (webhooks ignore it).
#[derive(Debug, Clone, PartialEq)]
pub struct AppParts {
    /// A thread reply that also shows in the channel (escalations, the expiry warning).
    pub broadcast: bool,
    /// A resolution told in the thread; false: only the alert is updated.
    pub reply: bool,
    /// For a resolution: the alert as it should read now (`chat.update`).
    pub update: Option<serde_json::Value>,
}

impl Default for AppParts {
    fn default() -> Self {
        Self {
            broadcast: false,
            reply: true,
            update: None,
        }
    }
}

/// Everything one cycle records, applied in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    pub new: Vec<(Approval, NewMessage)>,
    /// (approval id, how it resolved, the message to send if any).
    pub resolved: Vec<(i64, Resolution, Option<NewMessage>)>,
    pub reminders: Vec<(i64, ReminderDue, NewMessage)>,
    pub digests: Vec<DigestDecision>,
}

/// A destination's digest for a local day: recorded once, with its message (anchored on the
/// oldest approval it lists) when anything waits.
#[derive(Debug)]
pub struct DigestDecision {
    pub route: String,
    /// The local day, `YYYY-MM-DD`.
    pub day: String,
    pub approvals: usize,
    /// (the oldest listed approval's id, the message).
    pub message: Option<(i64, NewMessage)>,
}

/// A message Slack refused for good, as `status` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FailedRow {
    pub pipeline: String,
    pub stage: String,
    pub action: String,
    /// As stored: a corrupt row's kind may be no [`MessageKind`].
    pub kind: String,
    pub attempts: u32,
    pub error: Option<String>,
    /// `None` when the stored time is unreadable.
    pub created_at: Option<Timestamp>,
}

pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// Held for the life of a writing store, so two daemons never share one database.
    _lock: Option<File>,
    /// The files a writing store opened, to notice them deleted or replaced under it.
    opened: Option<in_place::Opened>,
}

impl Store {
    /// Opens (creating if needed) and migrates the database, holding its lock file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let lock = take_lock(path)?;
        let mut conn = connect(path)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|cause| StoreError::Migration {
                path: path.to_owned(),
                cause,
            })?;
        let opened = in_place::Opened::now(path, &lock);
        Ok(Self {
            conn,
            path: path.to_owned(),
            _lock: Some(lock),
            opened: Some(opened),
        })
    }

    /// Opens an existing database without writing to it (`status`). `Ok(None)` when the file
    /// does not exist yet, or has an older schema the daemon will migrate.
    pub fn open_read_only(path: &Path) -> Result<Option<Self>, StoreError> {
        match connect_read_only(path)? {
            Some((conn, version)) if version >= SCHEMA_VERSION => Ok(Some(Self {
                conn,
                path: path.to_owned(),
                _lock: None,
                opened: None,
            })),
            _ => Ok(None),
        }
    }

    /// A private in-memory copy of the database at `path` (empty when there is none yet),
    /// migrated to this build's schema: `once --dry-run` runs a real cycle on it, so it
    /// decides exactly as `once` would, and the file is never written.
    pub fn open_copy(path: &Path) -> Result<Self, StoreError> {
        let sql = |cause| StoreError::Sqlite {
            path: path.to_owned(),
            cause,
        };
        let mut conn = Connection::open_in_memory().map_err(sql)?;
        if let Some((file, _)) = connect_read_only(path)? {
            let backup = rusqlite::backup::Backup::new(&file, &mut conn).map_err(sql)?;
            backup
                .run_to_completion(1024, std::time::Duration::from_millis(5), None)
                .map_err(sql)?;
        }
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrations()
            .to_latest(&mut conn)
            .map_err(|cause| StoreError::Migration {
                path: path.to_owned(),
                cause,
            })?;
        Ok(Self {
            conn,
            path: path.to_owned(),
            _lock: None,
            opened: None,
        })
    }

    fn sql(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            cause,
        }
    }

    /// Approvals recorded as waiting, in the order they were found, with what was sent about
    /// them. A row that cannot be read is logged and left out, never guessed at.
    pub fn open_approvals(&self) -> Result<Vec<OpenApproval>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT a.*,
                    EXISTS (SELECT 1 FROM outbox o WHERE o.approval_id = a.id
                        AND o.kind = 'alert' AND o.state = 'delivered') AS alert_delivered,
                    (SELECT COUNT(*) FROM outbox o WHERE o.approval_id = a.id
                        AND o.state = 'pending') AS messages_pending,
                    (SELECT COUNT(*) FROM outbox o WHERE o.approval_id = a.id
                        AND o.state = 'failed') AS messages_failed
                 FROM approvals a WHERE a.resolved_ms IS NULL ORDER BY a.id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| Ok((row.get::<_, i64>("id")?, open_from_row(row))))
            .map_err(|e| self.sql(e))?;
        let mut open = Vec::new();
        for row in rows {
            let (id, parsed) = row.map_err(|e| self.sql(e))?;
            match parsed {
                Ok(o) => open.push(o),
                Err(why) => tracing::error!(
                    state = %self.path.display(),
                    "approvals row {id} is unreadable ({why}); it is left out: no reminders, no resolution"
                ),
            }
        }
        Ok(open)
    }

    /// Which of these keys were ever recorded, waiting or resolved.
    pub fn known<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a ApprovalKey>,
    ) -> Result<HashSet<ApprovalKey>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM approvals WHERE region = ?1 AND pipeline = ?2 AND stage = ?3
                 AND action = ?4 AND token = ?5 AND account = ?6",
            )
            .map_err(|e| self.sql(e))?;
        let mut known = HashSet::new();
        for key in keys {
            let found = stmt
                .exists(params![
                    key.region,
                    key.pipeline,
                    key.stage,
                    key.action,
                    key.token,
                    key.account
                ])
                .map_err(|e| self.sql(e))?;
            if found {
                known.insert(key.clone());
            }
        }
        Ok(known)
    }

    /// Records a cycle's decisions and the messages they cause, atomically.
    pub fn record(&mut self, changes: &Changes, now: Timestamp) -> Result<(), StoreError> {
        let now_ms = now.as_millisecond();
        let path = self.path.clone();
        let sql = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        for (id, resolution, message) in &changes.resolved {
            tx.execute(
                "UPDATE approvals SET resolved_ms = ?2, outcome = ?3, resolved_by = ?4, comment = ?5
                 WHERE id = ?1 AND resolved_ms IS NULL",
                params![
                    id,
                    resolution.at.as_millisecond(),
                    resolution.outcome.as_str(),
                    resolution.by,
                    resolution.comment
                ],
            )
            .map_err(sql)?;
            // Whatever was still queued about it is moot now (an alert nobody saw).
            // A digest anchored on it still goes: it lists the others too.
            tx.execute(
                "UPDATE outbox SET state = 'dropped', last_error = 'resolved before delivery'
                 WHERE approval_id = ?1 AND state = 'pending' AND kind != 'digest'",
                [id],
            )
            .map_err(sql)?;
            if let Some(message) = message {
                insert_message(&tx, *id, message, now_ms).map_err(sql)?;
            }
        }
        for (id, due, message) in &changes.reminders {
            let updated = tx
                .execute(
                    "UPDATE approvals SET reminders_sent = reminders_sent + ?2,
                         last_reminder_ms = ?3, expiry_warned = MAX(expiry_warned, ?4)
                     WHERE id = ?1 AND resolved_ms IS NULL",
                    params![id, u32::from(due.counts), now_ms, due.expiry_warning],
                )
                .map_err(sql)?;
            if updated == 1 {
                insert_message(&tx, *id, message, now_ms).map_err(sql)?;
            }
        }
        for (approval, message) in &changes.new {
            let rev = approval.revision.as_ref();
            let inserted = tx
                .execute(
                    "INSERT INTO approvals (region, pipeline, stage, action, token,
                        pipeline_execution_id, waiting_since_ms, expires_at_ms, custom_data,
                        external_entity_link, revision_id, revision_summary, revision_url,
                        first_seen_ms, account)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                     ON CONFLICT DO NOTHING",
                    params![
                        approval.key.region,
                        approval.key.pipeline,
                        approval.key.stage,
                        approval.key.action,
                        approval.key.token,
                        approval.pipeline_execution_id,
                        approval.waiting_since.as_millisecond(),
                        approval.expires_at.as_millisecond(),
                        approval.custom_data,
                        approval.external_entity_link,
                        rev.and_then(|r| r.revision_id.as_deref()),
                        rev.and_then(|r| r.commit_message.as_deref()),
                        rev.and_then(|r| r.url.as_deref()),
                        now_ms,
                        approval.key.account,
                    ],
                )
                .map_err(sql)?;
            // The unique key is the last word on "announce once".
            if inserted == 1 {
                let id = tx.last_insert_rowid();
                insert_message(&tx, id, message, now_ms).map_err(sql)?;
            }
        }
        for d in &changes.digests {
            // The primary key is the last word on "one digest per destination per day".
            let inserted = tx
                .execute(
                    "INSERT INTO digests (route, day, decided_ms, approvals) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![d.route, d.day, now_ms, d.approvals as i64],
                )
                .map_err(sql)?;
            if let (1, Some((anchor, message))) = (inserted, &d.message) {
                insert_message(&tx, *anchor, message, now_ms).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }

    /// Keeps definitions read from AWS, replacing older versions of the same pipelines.
    pub fn save_definitions(
        &mut self,
        fetched: &[(Target, i32, std::sync::Arc<crate::aws::Definitions>)],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if fetched.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let sql = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        for (t, version, definitions) in fetched {
            // Serializing plain strings and numbers cannot fail; skip rather than guess.
            let Ok(json) = serde_json::to_string(definitions.as_ref()) else {
                continue;
            };
            tx.execute(
                "DELETE FROM definitions WHERE account = ?1 AND region = ?2 AND pipeline = ?3",
                params![t.account, t.region, t.pipeline],
            )
            .map_err(sql)?;
            tx.execute(
                "INSERT INTO definitions (account, region, pipeline, version, approvals, read_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.account,
                    t.region,
                    t.pipeline,
                    version,
                    json,
                    now.as_millisecond()
                ],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// The definitions kept; a row that cannot be read is left out (read again from AWS).
    pub fn load_definitions(
        &self,
    ) -> Result<Vec<(Target, i32, crate::aws::Definitions)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT account, region, pipeline, version, approvals FROM definitions")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    Target {
                        account: row.get(0)?,
                        region: row.get(1)?,
                        pipeline: row.get(2)?,
                    },
                    row.get::<_, i32>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })
            .map_err(|e| self.sql(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (target, version, json) = row.map_err(|e| self.sql(e))?;
            match serde_json::from_str(&json) {
                Ok(definitions) => out.push((target, version, definitions)),
                Err(e) => tracing::warn!(
                    pipeline = %target.pipeline,
                    "cached definition is corrupt ({e}); reading it from AWS when needed"
                ),
            }
        }
        Ok(out)
    }

    /// Whether `route`'s digest for the local `day` was already decided (sent or empty).
    pub fn digest_decided(&self, route: &str, day: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM digests WHERE route = ?1 AND day = ?2)",
                params![route, day],
                |row| row.get::<_, bool>(0),
            )
            .map_err(|e| self.sql(e))
    }

    /// Pending messages in order, due or not, at most `limit`. Delivery keeps order per
    /// route, so a message waiting for its retry holds back the ones behind it. A row that
    /// cannot be read (unknown kind, a payload that is no JSON object, an impossible time) is
    /// marked failed with the reason and never posted.
    pub fn pending(&self, limit: u32) -> Result<Vec<OutboxMessage>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT o.id, o.kind, o.payload, o.attempts, o.next_attempt_ms, a.account,
                        a.region, a.pipeline, a.stage, a.action, a.token, o.approval_id,
                        o.broadcast, o.reply, o.update_payload, a.slack_channel, a.slack_ts
                 FROM outbox o JOIN approvals a ON a.id = o.approval_id
                 WHERE o.state = 'pending' ORDER BY o.id LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map(params![limit], |row| {
                Ok((row.get::<_, i64>("id")?, message_from_row(row)))
            })
            .map_err(|e| self.sql(e))?;
        let mut messages = Vec::new();
        let mut corrupt = Vec::new();
        for row in rows {
            let (id, parsed) = row.map_err(|e| self.sql(e))?;
            match parsed {
                Ok(m) => messages.push(m),
                Err(why) => corrupt.push((id, why)),
            }
        }
        for (id, why) in corrupt {
            let error = format!("outbox row {id} is corrupt ({why}); not sent");
            tracing::error!(state = %self.path.display(), "{error}");
            self.mark_failed(id, &error)?;
        }
        Ok(messages)
    }

    /// When the next pending message becomes due, over all destinations.
    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(next_attempt_ms) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get::<_, Option<i64>>(0),
            )
            // An impossible time is a corrupt row, which `pending` marks failed: due now.
            .map(|v| v.map(|millis| time(millis).unwrap_or(Timestamp::UNIX_EPOCH)))
            .map_err(|e| self.sql(e))
    }

    /// The highest outbox id so far (0 for none).
    pub fn last_message_id(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COALESCE(MAX(id), 0) FROM outbox", [], |r| r.get(0))
            .map_err(|e| self.sql(e))
    }

    pub fn count_pending(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM outbox WHERE state = 'pending'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.max(0) as u64)
            .map_err(|e| self.sql(e))
    }

    /// An alert posted with the bot token: delivered, and where it is (for its thread and
    /// its update), in one transaction.
    pub fn mark_posted(
        &self,
        id: i64,
        now: Timestamp,
        posted: &SlackMessage,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let sql = |cause| StoreError::Sqlite {
            path: path.clone(),
            cause,
        };
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute(
            "UPDATE approvals SET slack_channel = ?2, slack_ts = ?3
             WHERE id = (SELECT approval_id FROM outbox WHERE id = ?1)",
            params![id, posted.channel, posted.ts],
        )
        .map_err(sql)?;
        tx.execute(
            "UPDATE outbox SET state = 'delivered', delivered_ms = ?2,
                 attempts = attempts + 1, last_error = NULL WHERE id = ?1",
            params![id, now.as_millisecond()],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)
    }

    /// Nothing to send after all (an update-only resolution whose alert has no message to
    /// update): never tried again.
    pub fn mark_dropped(&self, id: i64, why: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'dropped', last_error = ?2 WHERE id = ?1",
                params![id, why],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// When the oldest message still waiting to be delivered was queued.
    pub fn oldest_pending_since(&self) -> Result<Option<Timestamp>, StoreError> {
        self.conn
            .query_row(
                "SELECT MIN(created_ms) FROM outbox WHERE state = 'pending'",
                [],
                |row| row.get::<_, Option<i64>>(0),
            )
            // An impossible time is a corrupt row: as old as can be, so it is not hidden.
            .map(|v| v.map(|millis| time(millis).unwrap_or(Timestamp::UNIX_EPOCH)))
            .map_err(|e| self.sql(e))
    }

    /// Writes the time of a cycle: proof that the store takes writes (the heartbeat's
    /// "store writable"), even when the cycle had nothing to record.
    pub fn record_cycle(&self, now: Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO liveness (id, last_cycle_ms) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET last_cycle_ms = excluded.last_cycle_ms",
                [now.as_millisecond()],
            )
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    pub fn mark_delivered(&self, id: i64, now: Timestamp) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'delivered', delivered_ms = ?2,
                     attempts = attempts + 1, last_error = NULL WHERE id = ?1",
                params![id, now.as_millisecond()],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// A temporary failure: try again at `next_at`.
    pub fn mark_retry(&self, id: i64, next_at: Timestamp, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_ms = ?2, last_error = ?3
                 WHERE id = ?1",
                params![id, next_at.as_millisecond(), error],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Slack refused for good (e.g. 404 `no_service`): never tried again.
    pub fn mark_failed(&self, id: i64, error: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'failed', attempts = attempts + 1, last_error = ?2
                 WHERE id = ?1",
                params![id, error],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// Messages Slack refused for good, newest first.
    pub fn failed(&self, limit: u32) -> Result<Vec<FailedRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.region, a.pipeline, a.stage, a.action, a.token, o.kind, o.attempts,
                        o.last_error, o.created_ms
                 FROM outbox o JOIN approvals a ON a.id = o.approval_id
                 WHERE o.state = 'failed' ORDER BY o.id DESC LIMIT ?1",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([limit], |row| {
                Ok(FailedRow {
                    pipeline: row.get("pipeline")?,
                    stage: row.get("stage")?,
                    action: row.get("action")?,
                    kind: row.get("kind")?,
                    attempts: row.get("attempts")?,
                    error: row.get("last_error")?,
                    created_at: row
                        .get::<_, i64>("created_ms")
                        .ok()
                        .and_then(|millis| time(millis).ok()),
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Flushes the WAL into the main file and closes, reporting any error.
    pub fn close(self) -> Result<(), StoreError> {
        let path = self.path.clone();
        if self._lock.is_some() {
            // Best effort: a checkpoint that cannot run now runs at the next open.
            let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
        }
        self.conn
            .close()
            .map_err(|(_, cause)| StoreError::Sqlite { path, cause })
    }
}

/// A read-only connection to an existing file and its schema version, refusing a newer one.
fn connect_read_only(path: &Path) -> Result<Option<(Connection, i64)>, StoreError> {
    if !path.exists() {
        return Ok(None);
    }
    let sql = |cause| StoreError::Sqlite {
        path: path.to_owned(),
        cause,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    let version = check_version(&conn, path)?;
    Ok(Some((conn, version)))
}

/// A writing connection to `path`, set up (after a version check) as the daemon writes.
fn connect(path: &Path) -> Result<Connection, StoreError> {
    let sql = |cause| StoreError::Sqlite {
        path: path.to_owned(),
        cause,
    };
    let conn = Connection::open(path).map_err(sql)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(sql)?;
    check_version(&conn, path)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(sql)?;
    // FULL: a delivered mark that survives power loss is worth the fsync at this rate.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql)?;
    Ok(conn)
}

fn take_lock(path: &Path) -> Result<File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock_path = PathBuf::from(lock_path);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|cause| StoreError::Lock {
            path: path.to_owned(),
            lock: lock_path.clone(),
            cause,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_owned(),
            lock: lock_path,
        }),
        Err(std::fs::TryLockError::Error(cause)) => Err(StoreError::Lock {
            path: path.to_owned(),
            lock: lock_path,
            cause,
        }),
    }
}

/// Refuses a database from a newer build before anything touches it.
fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|cause| StoreError::Sqlite {
            path: path.to_owned(),
            cause,
        })?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

fn insert_message(
    tx: &rusqlite::Transaction<'_>,
    approval_id: i64,
    message: &NewMessage,
    now_ms: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO outbox (approval_id, kind, payload, created_ms, next_attempt_ms,
             broadcast, reply, update_payload)
         VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7)",
        params![
            approval_id,
            message.kind.as_str(),
            message.payload.to_string(),
            now_ms,
            message.app.broadcast,
            message.app.reply,
            message.app.update.as_ref().map(|u| u.to_string()),
        ],
    )
    .map(drop)
}

/// A stored time (milliseconds since the epoch), or why it is no time.
fn time(millis: i64) -> Result<Timestamp, String> {
    Timestamp::from_millisecond(millis).map_err(|_| format!("{millis} is not a time"))
}

/// A column's value, or why it cannot be read, for rows read one by one.
fn column<T: rusqlite::types::FromSql>(row: &Row<'_>, name: &str) -> Result<T, String> {
    row.get(name).map_err(|e| format!("{name}: {e}"))
}

fn time_column(row: &Row<'_>, name: &str) -> Result<Timestamp, String> {
    time(column(row, name)?).map_err(|e| format!("{name}: {e}"))
}

fn key_from_row(row: &Row<'_>) -> Result<ApprovalKey, String> {
    Ok(ApprovalKey {
        account: column(row, "account")?,
        region: column(row, "region")?,
        pipeline: column(row, "pipeline")?,
        stage: column(row, "stage")?,
        action: column(row, "action")?,
        token: column(row, "token")?,
    })
}

fn approval_from_row(row: &Row<'_>) -> Result<Approval, String> {
    let revision_id: Option<String> = column(row, "revision_id")?;
    let summary: Option<String> = column(row, "revision_summary")?;
    let url: Option<String> = column(row, "revision_url")?;
    let revision =
        (revision_id.is_some() || summary.is_some() || url.is_some()).then_some(Revision {
            revision_id,
            commit_message: summary,
            url,
        });
    Ok(Approval {
        key: key_from_row(row)?,
        pipeline_execution_id: column(row, "pipeline_execution_id")?,
        waiting_since: time_column(row, "waiting_since_ms")?,
        expires_at: time_column(row, "expires_at_ms")?,
        custom_data: column(row, "custom_data")?,
        external_entity_link: column(row, "external_entity_link")?,
        revision,
    })
}

fn open_from_row(row: &Row<'_>) -> Result<OpenApproval, String> {
    Ok(OpenApproval {
        id: column(row, "id")?,
        approval: approval_from_row(row)?,
        first_seen: time_column(row, "first_seen_ms")?,
        reminders_sent: column(row, "reminders_sent")?,
        last_reminder_at: column::<Option<i64>>(row, "last_reminder_ms")?
            .map(time)
            .transpose()
            .map_err(|e| format!("last_reminder_ms: {e}"))?,
        expiry_warned: column(row, "expiry_warned")?,
        alert_delivered: column(row, "alert_delivered")?,
        messages_pending: column(row, "messages_pending")?,
        messages_failed: column(row, "messages_failed")?,
        slack: slack_from_row(row)?,
    })
}

fn message_from_row(row: &Row<'_>) -> Result<OutboxMessage, String> {
    let kind: String = column(row, "kind")?;
    let kind =
        MessageKind::parse(&kind).ok_or_else(|| format!("kind: {kind:?} is no message kind"))?;
    let payload: String = column(row, "payload")?;
    let payload = match serde_json::from_str::<serde_json::Value>(&payload) {
        Ok(value) if value.is_object() => value,
        Ok(_) => return Err("payload: not a JSON object".to_owned()),
        Err(e) => return Err(format!("payload: not JSON ({e})")),
    };
    let update = match column::<Option<String>>(row, "update_payload")? {
        None => None,
        Some(text) => match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) if value.is_object() => Some(value),
            _ => return Err("update_payload: not a JSON object".to_owned()),
        },
    };
    Ok(OutboxMessage {
        id: column(row, "id")?,
        kind,
        payload,
        attempts: column(row, "attempts")?,
        next_attempt_at: time_column(row, "next_attempt_ms")?,
        key: key_from_row(row)?,
        approval_id: column(row, "approval_id")?,
        app: AppParts {
            broadcast: column(row, "broadcast")?,
            reply: column(row, "reply")?,
            update,
        },
        thread: slack_from_row(row)?,
    })
}

/// Where the alert was posted, when both halves are stored.
fn slack_from_row(row: &Row<'_>) -> Result<Option<SlackMessage>, String> {
    let channel: Option<String> = column(row, "slack_channel")?;
    let ts: Option<String> = column(row, "slack_ts")?;
    Ok(channel
        .zip(ts)
        .map(|(channel, ts)| SlackMessage { channel, ts }))
}

/// Reads a resolution back.
#[cfg(test)]
fn outcome_of(
    store: &Store,
    key: &ApprovalKey,
) -> Result<Option<approval_watch_core::model::Outcome>, StoreError> {
    use approval_watch_core::model::Outcome;
    use rusqlite::OptionalExtension;
    let outcome: Option<Option<String>> = store
        .conn
        .query_row(
            "SELECT outcome FROM approvals WHERE region = ?1 AND pipeline = ?2 AND stage = ?3
             AND action = ?4 AND token = ?5 AND account = ?6",
            params![
                key.region,
                key.pipeline,
                key.stage,
                key.action,
                key.token,
                key.account
            ],
            |row| row.get(0),
        )
        .optional()
        .map_err(|e| store.sql(e))?;
    Ok(outcome.flatten().as_deref().and_then(Outcome::parse))
}

#[cfg(test)]
mod tests {
    use super::*;
    use approval_watch_core::model::Outcome;

    /// One queued alert per token, then `corrupt` (SQL, may be empty) applied to the file.
    fn store_with_alerts(dir: &Path, tokens: &[&str], corrupt: &str) -> Store {
        let path = dir.join("s.db");
        let mut store = Store::open(&path).unwrap();
        let new = tokens
            .iter()
            .map(|t| (approval(t), message(MessageKind::Alert)))
            .collect();
        store
            .record(
                &Changes {
                    new,
                    ..Changes::default()
                },
                now(),
            )
            .unwrap();
        store.conn.execute_batch(corrupt).unwrap();
        store
    }

    #[test]
    fn a_corrupt_outbox_row_is_failed_with_its_reason_never_sent() {
        for (corrupt, reason) in [
            ("UPDATE outbox SET kind = 'alarm' WHERE id = 1", "kind"),
            (
                "UPDATE outbox SET payload = '{not json' WHERE id = 1",
                "payload",
            ),
            ("UPDATE outbox SET payload = 'null' WHERE id = 1", "payload"),
            (
                "UPDATE outbox SET next_attempt_ms = 9223372036854775807 WHERE id = 1",
                "next_attempt_ms",
            ),
            (
                "UPDATE outbox SET next_attempt_ms = 'soon' WHERE id = 1",
                "next_attempt_ms",
            ),
            ("UPDATE outbox SET attempts = -1 WHERE id = 1", "attempts"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_alerts(dir.path(), &["t1", "t2"], corrupt);
            let pending = store.pending(10).unwrap();
            assert_eq!(
                pending
                    .iter()
                    .map(|m| m.key.token.as_str())
                    .collect::<Vec<_>>(),
                ["t2"],
                "{corrupt}"
            );
            let failed = store.failed(10).unwrap();
            assert_eq!(failed.len(), 1, "{corrupt}");
            let error = failed[0].error.as_deref().unwrap_or_default();
            assert!(
                error.contains("outbox row 1 is corrupt") && error.contains(reason),
                "{corrupt}: {error}"
            );
            // Failed for good: not pending any more, and counted against its approval.
            assert_eq!(store.pending(10).unwrap().len(), 1);
            assert_eq!(store.open_approvals().unwrap()[0].messages_failed, 1);
        }
    }

    #[test]
    fn a_corrupt_approval_row_is_left_out_not_guessed() {
        for corrupt in [
            "UPDATE approvals SET waiting_since_ms = 9223372036854775807 WHERE id = 1",
            "UPDATE approvals SET expires_at_ms = 'later' WHERE id = 1",
            "UPDATE approvals SET first_seen_ms = 'yesterday' WHERE id = 1",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let store = store_with_alerts(dir.path(), &["t1", "t2"], corrupt);
            let open = store.open_approvals().unwrap();
            assert_eq!(
                open.iter()
                    .map(|o| o.approval.key.token.as_str())
                    .collect::<Vec<_>>(),
                ["t2"],
                "{corrupt}"
            );
            // Still known: it is never announced again as new.
            assert!(store.known([&key("t1")]).unwrap().contains(&key("t1")));
        }
    }

    fn key(token: &str) -> ApprovalKey {
        ApprovalKey {
            account: "default".into(),
            region: "us-east-1".into(),
            pipeline: "web-app".into(),
            stage: "Approve".into(),
            action: "Approve".into(),
            token: token.into(),
        }
    }

    fn approval(token: &str) -> Approval {
        Approval {
            key: key(token),
            pipeline_execution_id: Some("exec".into()),
            waiting_since: Timestamp::from_second(1_764_148_392).unwrap(),
            expires_at: Timestamp::from_second(1_764_753_192).unwrap(),
            custom_data: Some("needed".into()),
            external_entity_link: None,
            revision: Some(Revision {
                revision_id: Some("8f2b".into()),
                commit_message: Some("Fix".into()),
                url: None,
            }),
        }
    }

    fn message(kind: MessageKind) -> NewMessage {
        NewMessage {
            app: AppParts::default(),
            kind,
            payload: serde_json::json!({"text": kind.as_str()}),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_764_148_400).unwrap()
    }

    #[test]
    fn a_digest_is_recorded_once_per_route_and_day_and_outlives_its_anchor() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_alerts(dir.path(), &["t1"], "");
        let id = store.open_approvals().unwrap()[0].id;
        let decision = || DigestDecision {
            route: "default".into(),
            day: "2026-12-01".into(),
            approvals: 1,
            message: Some((id, message(MessageKind::Digest))),
        };
        assert!(!store.digest_decided("default", "2026-12-01").unwrap());
        for _ in 0..2 {
            let changes = Changes {
                digests: vec![decision()],
                ..Changes::default()
            };
            store.record(&changes, now()).unwrap();
        }
        assert!(store.digest_decided("default", "2026-12-01").unwrap());
        assert!(!store.digest_decided("default", "2026-12-02").unwrap());
        assert!(!store.digest_decided("payments", "2026-12-01").unwrap());
        assert_eq!(
            store.count_pending().unwrap(),
            2,
            "the alert and one digest"
        );
        // The approval it is anchored on resolves: its alert is dropped, the digest stays.
        let resolution = Resolution {
            outcome: Outcome::Approved,
            by: None,
            comment: None,
            at: now(),
        };
        let changes = Changes {
            resolved: vec![(id, resolution, None)],
            ..Changes::default()
        };
        store.record(&changes, now()).unwrap();
        let pending = store.pending(10).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].kind, MessageKind::Digest);
    }

    #[test]
    fn records_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let mut store = Store::open(&path).unwrap();
        let changes = Changes {
            new: vec![(approval("t1"), message(MessageKind::Alert))],
            resolved: vec![],
            reminders: vec![],
            digests: vec![],
        };
        store.record(&changes, now()).unwrap();
        // The same approval again (a race, a replay): the unique key keeps one row, one message.
        store.record(&changes, now()).unwrap();
        assert_eq!(store.count_pending().unwrap(), 1);
        let open = store.open_approvals().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].approval, approval("t1"));
        assert!(!open[0].alert_delivered);
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let msg = store.pending(1).unwrap().into_iter().next().unwrap();
        assert_eq!(msg.kind, MessageKind::Alert);
        assert_eq!(msg.key, key("t1"));
        store.mark_delivered(msg.id, now()).unwrap();
        assert!(store.pending(1).unwrap().into_iter().next().is_none());
        assert!(store.open_approvals().unwrap()[0].alert_delivered);
        assert_eq!(
            store.known([&key("t1"), &key("t2")]).unwrap(),
            HashSet::from([key("t1")])
        );
        assert_eq!(store.open_approvals().unwrap()[0].messages_pending, 0);
    }

    #[test]
    fn resolving_drops_undelivered_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .record(
                &Changes {
                    new: vec![(approval("t1"), message(MessageKind::Alert))],
                    resolved: vec![],
                    reminders: vec![],
                    digests: vec![],
                },
                now(),
            )
            .unwrap();
        let id = store.open_approvals().unwrap()[0].id;
        let resolution = Resolution {
            outcome: Outcome::Approved,
            by: Some("arn:aws:iam::1:user/bob".into()),
            comment: None,
            at: now(),
        };
        store
            .record(
                &Changes {
                    new: vec![],
                    resolved: vec![(id, resolution, None)],
                    reminders: vec![],
                    digests: vec![],
                },
                now(),
            )
            .unwrap();
        assert_eq!(store.count_pending().unwrap(), 0);
        assert!(store.open_approvals().unwrap().is_empty());
        assert_eq!(
            outcome_of(&store, &key("t1")).unwrap(),
            Some(Outcome::Approved)
        );
    }

    #[test]
    fn retry_and_failure_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .record(
                &Changes {
                    new: vec![
                        (approval("t1"), message(MessageKind::Alert)),
                        (approval("t2"), message(MessageKind::Alert)),
                    ],
                    resolved: vec![],
                    reminders: vec![],
                    digests: vec![],
                },
                now(),
            )
            .unwrap();
        let first = store.pending(1).unwrap().into_iter().next().unwrap();
        let later = now()
            .checked_add(jiff::SignedDuration::from_secs(5))
            .unwrap();
        store.mark_retry(first.id, later, "HTTP 500").unwrap();
        let again = store.pending(1).unwrap().into_iter().next().unwrap();
        assert_eq!(
            (again.id, again.attempts, again.next_attempt_at),
            (first.id, 1, later)
        );
        assert_eq!(store.next_due().unwrap(), Some(now()));
        store.mark_failed(first.id, "HTTP 404: no_service").unwrap();
        let failed = store.failed(10).unwrap();
        assert_eq!(failed[0].error.as_deref(), Some("HTTP 404: no_service"));
        assert_eq!(failed[0].attempts, 2);
        assert_eq!(store.count_pending().unwrap(), 1);
    }

    #[test]
    fn a_second_writer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let _first = Store::open(&path).unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(matches!(e, StoreError::Locked { .. }), "{e}");
        assert!(e.to_string().contains("in use by another approval-watch"));
        // Readers are welcome.
        assert!(Store::open_read_only(&path).unwrap().is_some());
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 999;")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = Store::open(&path).err().unwrap();
        assert!(e.to_string().contains("schema version 999"), "{e}");
        assert!(Store::open_read_only(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn read_only_open_of_a_missing_file_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.db");
        assert!(Store::open_read_only(&path).unwrap().is_none());
        assert!(!path.exists());
    }

    #[test]
    fn reminders_are_counted_and_the_expiry_warning_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_alerts(dir.path(), &["t1"], "");
        let id = store.open_approvals().unwrap()[0].id;
        let regular = ReminderDue {
            number: 1,
            counts: true,
            expiry_warning: false,
            escalate: false,
        };
        let warning = ReminderDue {
            number: 1,
            counts: false,
            expiry_warning: true,
            escalate: false,
        };
        let later = now()
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap();
        for (due, at) in [(regular, now()), (warning, later)] {
            let changes = Changes {
                reminders: vec![(id, due, message(MessageKind::Reminder))],
                ..Changes::default()
            };
            store.record(&changes, at).unwrap();
        }
        let open = &store.open_approvals().unwrap()[0];
        assert_eq!(open.reminders_sent, 1);
        assert_eq!(open.last_reminder_at, Some(later));
        assert!(open.expiry_warned);
        assert_eq!(store.open_approvals().unwrap()[0].reminders_sent, 1);
        assert_eq!(store.count_pending().unwrap(), 3);
    }
}
