//! Approving from Slack, durably: every click is an audit row written before AWS is called,
//! and the schema (migration 9 in `store/schema.rs`) makes "exactly one decision per
//! approval" a constraint rather than a check: a partial unique index allows one row per
//! approval that is pending, approved or rejected, whichever connection writes it. A click
//! delivered twice (the same user and click id) is recorded once. See ARCHITECTURE.md.
//!
//! [`AuditLog`] is a second connection to the state database, for the approvals service of the
//! process that holds the store's lock: it takes no lock and runs no migrations (it is opened
//! after `Store::open` migrated), and waits up to 5 s for the other connection's writes.
//! [`Store::audit`] and [`Store::decided_in_slack`] read it back (also read-only, for the CLI).

use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, TransactionBehavior, params};
use serde::Serialize;

use super::{
    SCHEMA_VERSION, Store, StoreError, approval_from_row, check_version, column, readable,
    slack_from_row, time_column,
};
use approval_watch_core::interaction::Click;
use approval_watch_core::model::{Approval, SlackMessage};
use approval_watch_core::verdict::{ClickResult, Verdict};

/// Audit rows are kept at least 90 days (the promise); older than this they are
/// purged when the log is opened.
const KEEP_DAYS: i64 = 400;
/// How long [`AuditLog::open`] waits for another connection's write lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The answer to [`AuditLog::claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The click may go to AWS: the audit row's id, for [`AuditLog::finish`].
    Go(i64),
    /// A decision on this approval is in flight or done: a row with result `already_resolved`
    /// was written for this click. No AWS call.
    Taken,
    /// The same click (user id and click id) was seen before: nothing written, no AWS call.
    Replay,
}

/// The approval a click names, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ClickTarget {
    pub approval: Approval,
    /// The approval's id (the button's value).
    pub id: i64,
    /// Recorded as resolved (approved, rejected, expired…): a click on it changes nothing.
    pub resolved: bool,
    /// Where its alert was posted, once it was.
    pub slack: Option<SlackMessage>,
}

/// One audit row, as `audit` prints it (the JSON keys are documented in the README).
/// `account` … `action` are `None` for a click on an approval the store does not know.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub time: Timestamp,
    pub user_id: String,
    pub user_name: String,
    pub account: Option<String>,
    pub region: Option<String>,
    pub pipeline: Option<String>,
    pub stage: Option<String>,
    pub action: Option<String>,
    pub decision: Verdict,
    /// `pending`, `approved`, `rejected`, `denied`, `already_resolved`, `failed: …`.
    pub result: ClickResult,
    /// AWS's request id of the `PutApprovalResult` call, when one was made.
    pub request_id: Option<String>,
    /// A rejection's reason.
    pub reason: Option<String>,
}

/// The Socket Mode connection's state as last written (for `status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionRow {
    /// `connecting`, `connected`, `retrying`, `disabled`, `stopped`.
    pub state: String,
    /// When it entered this state.
    pub since: Timestamp,
    /// Why (the last error while retrying), if anything.
    pub detail: Option<String>,
}

/// A second connection to the state database, for the approvals service (see the module doc).
pub struct AuditLog {
    conn: Connection,
    path: PathBuf,
}

impl AuditLog {
    /// Opens the existing, migrated database at `path`. A database not yet migrated to this
    /// build's schema is refused, saying so. Cheap: the approvals service opens it per use.
    /// Waits up to 5 s for another connection's write lock.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_waiting(path, BUSY_TIMEOUT)
    }

    /// [`AuditLog::open`], waiting up to `busy` for another connection's write lock (a click
    /// on a blocking thread may wait out a long lock rather than fail).
    pub fn open_waiting(path: &Path, busy: std::time::Duration) -> Result<Self, StoreError> {
        let sql = StoreError::sqlite(path);
        // No CREATE: the store made the file; a missing one is an error, not a new database.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        conn.busy_timeout(busy).map_err(sql)?;
        let found = check_version(&conn, path)?;
        if found < SCHEMA_VERSION {
            return Err(StoreError::TooOld {
                path: path.to_owned(),
                found,
                needed: SCHEMA_VERSION,
            });
        }
        // A click recorded must survive power loss before AWS is called.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql)?;
        Ok(Self {
            conn,
            path: path.to_owned(),
        })
    }

    /// Deletes audit rows older than 400 days (so at least 90 are always kept); once when
    /// the approvals service starts, not on every open, since it takes the write lock.
    pub fn purge(&self, now: Timestamp) -> Result<usize, StoreError> {
        let log = self;
        let cutoff = now
            .checked_sub(SignedDuration::from_hours(24 * KEEP_DAYS))
            .unwrap_or(Timestamp::MIN);
        let purged = log
            .conn
            .execute(
                "DELETE FROM audit WHERE at_ms < ?1",
                [cutoff.as_millisecond()],
            )
            .map_err(|e| log.sql(e))?;
        if purged > 0 {
            tracing::info!(purged, "audit rows older than {KEEP_DAYS} days purged");
        }
        Ok(purged)
    }

    fn sql(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path)(cause)
    }

    /// The approval with this id, if the store knows it. A row that cannot be read is
    /// treated as unknown (and logged), never guessed at.
    pub fn approval(&self, id: i64) -> Result<Option<ClickTarget>, StoreError> {
        let row = self
            .conn
            .query_row("SELECT * FROM approvals WHERE id = ?1", [id], |row| {
                Ok(target_from_row(row))
            })
            .optional()
            .map_err(|e| self.sql(e))?;
        match row {
            None => Ok(None),
            Some(Ok(target)) => Ok(Some(target)),
            Some(Err(why)) => {
                tracing::error!(
                    state = %self.path.display(),
                    "approvals row {id} is unreadable ({why}); a click on it is refused"
                );
                Ok(None)
            }
        }
    }

    /// Atomically: unless a row for this approval is pending, approved or rejected, inserts
    /// a row with result `pending` ([`Claim::Go`]); if one is, a row `already_resolved`
    /// ([`Claim::Taken`]); if this very click was recorded before, nothing ([`Claim::Replay`]).
    /// The partial unique index decides, so two connections can never both get `Go`.
    /// (A target recorded as resolved is the caller's business: it calls [`AuditLog::record`].)
    pub fn claim(
        &self,
        click: &Click,
        target: &ClickTarget,
        at: Timestamp,
    ) -> Result<Claim, StoreError> {
        let sql = |e| self.sql(e);
        // IMMEDIATE: the write lock first, so the checks below see every committed claim.
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(sql)?;
        if insert(&tx, click, Some(target), &ClickResult::Pending, at).map_err(sql)? {
            let id = tx.last_insert_rowid();
            tx.commit().map_err(sql)?;
            return Ok(Claim::Go(id));
        }
        if seen(&tx, click).map_err(sql)? {
            return Ok(Claim::Replay);
        }
        insert(&tx, click, Some(target), &ClickResult::AlreadyResolved, at).map_err(sql)?;
        tx.commit().map_err(sql)?;
        Ok(Claim::Taken)
    }

    /// A row with a final result and no AWS call (`denied`, `already_resolved`,
    /// `failed: unknown approval`…); `target` is `None` when the click names no known approval. A
    /// click recorded before (same user id and click id) writes nothing. Not for `pending`,
    /// `approved` or `rejected`, which only [`AuditLog::claim`] and [`AuditLog::finish`] write.
    pub fn record(
        &self,
        click: &Click,
        target: Option<&ClickTarget>,
        result: &ClickResult,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let unclaimed;
        let result = if result.claims() {
            // Recording it here would bypass the claim; keep the click, say what happened.
            unclaimed = ClickResult::failed(format!("{result} recorded without a claim"));
            &unclaimed
        } else {
            result
        };
        insert(&self.conn, click, target, result, at)
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// The answer for a claimed row: `approved`, `rejected`, `already_resolved` or
    /// `failed: …`, with AWS's request id when there was one. Only a pending row changes; any
    /// result but `approved` and `rejected` frees the approval for a new claim.
    pub fn finish(
        &self,
        audit_id: i64,
        result: &ClickResult,
        request_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE audit SET result = ?2, request_id = COALESCE(?3, request_id)
                 WHERE id = ?1 AND result = 'pending'",
                params![audit_id, result.as_str(), request_id],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }

    /// At start: rows a previous process left `pending` (it stopped between the row and AWS's
    /// answer) become `failed: interrupted by a restart before AWS answered`, so a new click
    /// may try again and nothing calls AWS without one. Returns how many.
    pub fn interrupted(&self) -> Result<u64, StoreError> {
        self.conn
            .execute(
                "UPDATE audit SET result = ?1 WHERE result = ?2",
                params![ClickResult::INTERRUPTED, ClickResult::Pending.as_str()],
            )
            .map(|n| n as u64)
            .map_err(|e| self.sql(e))
    }

    /// The Socket Mode connection's state, for `status`; `since` moves only when the state
    /// changes (a retry's new error updates the detail, not the time).
    pub fn set_connection(
        &self,
        state: &str,
        detail: Option<&str>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO socket_mode (id, state, since_ms, detail, updated_ms)
                 VALUES (1, ?1, ?3, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET
                     since_ms = CASE WHEN state = excluded.state THEN since_ms
                                     ELSE excluded.since_ms END,
                     state = excluded.state,
                     detail = excluded.detail,
                     updated_ms = excluded.updated_ms",
                params![state, detail, at.as_millisecond()],
            )
            .map(drop)
            .map_err(|e| self.sql(e))
    }
}

/// Inserts an audit row unless a unique index refuses it; whether it was inserted.
fn insert(
    conn: &Connection,
    click: &Click,
    target: Option<&ClickTarget>,
    result: &ClickResult,
    at: Timestamp,
) -> rusqlite::Result<bool> {
    let key = target.map(|t| &t.approval.key);
    let inserted = conn.execute(
        "INSERT INTO audit (at_ms, user_id, user_name, approval_id, account, region, pipeline,
             stage, action, decision, result, reason, click_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT DO NOTHING",
        params![
            at.as_millisecond(),
            click.user.id,
            click.user.name,
            target.map_or(click.approval.approval_id, |t| t.id),
            key.map(|k| &k.account),
            key.map(|k| &k.region),
            key.map(|k| &k.pipeline),
            key.map(|k| &k.stage),
            key.map(|k| &k.action),
            click.verdict.as_str(),
            result.as_str(),
            click.reason,
            click.click_id,
        ],
    )?;
    Ok(inserted == 1)
}

/// Whether this click (user id and click id) was recorded before.
fn seen(conn: &Connection, click: &Click) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM audit WHERE user_id = ?1 AND click_id = ?2)",
        params![click.user.id, click.click_id],
        |row| row.get(0),
    )
}

fn target_from_row(row: &Row<'_>) -> Result<ClickTarget, String> {
    Ok(ClickTarget {
        approval: approval_from_row(row)?,
        id: column(row, "id")?,
        resolved: column::<Option<i64>>(row, "resolved_ms")?.is_some(),
        slack: slack_from_row(row)?,
    })
}

fn entry_from_row(row: &Row<'_>) -> Result<AuditEntry, String> {
    let decision: String = column(row, "decision")?;
    let result: String = column(row, "result")?;
    Ok(AuditEntry {
        time: time_column(row, "at_ms")?,
        user_id: column(row, "user_id")?,
        user_name: column(row, "user_name")?,
        account: column(row, "account")?,
        region: column(row, "region")?,
        pipeline: column(row, "pipeline")?,
        stage: column(row, "stage")?,
        action: column(row, "action")?,
        decision: Verdict::parse(&decision)
            .ok_or_else(|| format!("decision: {decision:?} is no decision"))?,
        result: ClickResult::from_stored(&result),
        request_id: column(row, "request_id")?,
        reason: column(row, "reason")?,
    })
}

impl Store {
    /// The Slack user who decided an approval from Slack (name, user id), for the resolution
    /// message: "Approved in Slack by <name> (<id>)" rather than the daemon's IAM role. A claim
    /// still pending counts: the poll may see AWS's answer before the click's task records it.
    pub fn decided_in_slack(
        &self,
        approval_id: i64,
    ) -> Result<Option<(String, String)>, StoreError> {
        self.conn
            .query_row(
                "SELECT user_name, user_id FROM audit
                 WHERE approval_id = ?1 AND result IN ('pending', 'approved', 'rejected')
                 ORDER BY id DESC LIMIT 1",
                [approval_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(|e| self.sql(e))
    }

    /// Every audit row at or after `since`, oldest first. A row that cannot be read is logged
    /// and left out, never guessed at.
    pub fn audit(&self, since: Timestamp) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT * FROM audit WHERE at_ms >= ?1 ORDER BY at_ms, id")
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([since.as_millisecond()], |row| {
                Ok((row.get::<_, i64>("id")?, entry_from_row(row)))
            })
            .map_err(|e| self.sql(e))?;
        readable(rows, "audit", "it is left out", &self.path).map_err(|e| self.sql(e))
    }

    /// The Socket Mode connection's state as last written, if ever.
    pub fn socket_mode(&self) -> Result<Option<ConnectionRow>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT state, since_ms, detail FROM socket_mode WHERE id = 1",
                [],
                |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| self.sql(e))?;
        Ok(row.map(|(state, since, detail)| ConnectionRow {
            state,
            // An impossible time is a corrupt row: shown as the epoch, not hidden.
            since: super::time(since).unwrap_or(Timestamp::UNIX_EPOCH),
            detail,
        }))
    }
}

#[cfg(test)]
mod tests;
