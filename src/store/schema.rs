//! Every migration, in order: the schema of the state database and how it got there. The SQL
//! of a released migration never changes (databases written by earlier builds must keep
//! opening); a change to the schema is a new migration at the end, and `SCHEMA_VERSION` with it.

use std::path::Path;

use rusqlite::Connection;
use rusqlite_migration::{M, Migrations};

use super::StoreError;

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

/// Slack delivery paused until a person fixes something (a refused bot token, a channel the app
/// cannot post in): per route, what Slack said, what to fix, since when and the next try, as the
/// daemon last wrote it, for `status`. The messages themselves stay pending in `outbox`.
const SCHEMA_V10: &str = "
CREATE TABLE slack_pauses (
    route TEXT PRIMARY KEY,
    error TEXT NOT NULL,
    fix TEXT NOT NULL,
    since_ms INTEGER NOT NULL,
    next_try_ms INTEGER NOT NULL
);
";

/// Each cached definition's execution mode (`executionMode`): a PARALLEL pipeline is read per
/// execution. Rows from before have none and are read from AWS again.
const SCHEMA_V11: &str = "
ALTER TABLE definitions ADD COLUMN execution_mode TEXT;
";

pub(super) fn migrations() -> Migrations<'static> {
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
        M::up(SCHEMA_V10),
        M::up(SCHEMA_V11),
    ])
}

/// Brings the database at `path` (open as `conn`) to this build's schema.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    migrations()
        .to_latest(conn)
        .map_err(|cause| StoreError::Migration {
            path: path.to_owned(),
            cause,
        })
}

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 11;

/// Refuses a database from a newer build before anything touches it.
pub(super) fn check_version(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(StoreError::sqlite(path))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use crate::store::testing::temp_db;

    #[test]
    fn a_new_database_migrates_to_this_builds_version() {
        assert!(migrations().validate().is_ok());
        let mut conn = Connection::open_in_memory().unwrap();
        migrations().to_latest(&mut conn).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let (_dir, path) = temp_db("s.db");
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
}
