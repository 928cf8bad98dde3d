//! The `outbox` table: Slack messages, queued in the same transaction as the change that makes
//! them due, then delivered, retried, failed or dropped. Delivery reads it in order; `queues`
//! shows it per destination.

use jiff::Timestamp;
use rusqlite::{Row, Transaction, params};

use approval_watch_core::model::{ApprovalKey, MessageKind, SlackMessage};

use super::approvals::{key_from_row, slack_from_row};
use super::{Store, StoreError, column, time, time_column};

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

impl Store {
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

    /// The earliest time in `column` over the pending messages; an impossible one (a corrupt
    /// row) reads as the epoch.
    fn earliest_pending(&self, column: &str) -> Result<Option<Timestamp>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT MIN({column}) FROM outbox WHERE state = 'pending'"),
                [],
                |row| row.get::<_, Option<i64>>(0),
            )
            .map(|v| v.map(|millis| time(millis).unwrap_or(Timestamp::UNIX_EPOCH)))
            .map_err(|e| self.sql(e))
    }

    /// When the next pending message becomes due, over all destinations.
    pub fn next_due(&self) -> Result<Option<Timestamp>, StoreError> {
        // An impossible time is a corrupt row, which `pending` marks failed: due now.
        self.earliest_pending("next_attempt_ms")
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
        let sql = StoreError::sqlite(&self.path);
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
        // An impossible time is a corrupt row: as old as can be, so it is not hidden.
        self.earliest_pending("created_ms")
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

    /// Slack refused a message for its size: it goes again at once as `payload`, a shorter
    /// version of itself (the digest), keeping its place in the queue.
    pub fn retry_shorter(
        &self,
        id: i64,
        payload: &serde_json::Value,
        error: &str,
    ) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET payload = ?2, attempts = attempts + 1, last_error = ?3
                 WHERE id = ?1",
                params![id, payload.to_string(), error],
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
}

/// Queues a message about an approval, due now.
pub(super) fn insert_message(
    tx: &Transaction<'_>,
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

/// Whatever was still queued about a resolved approval is moot now (an alert nobody saw). A
/// digest anchored on it still goes: it lists the others too.
pub(super) fn drop_undelivered(tx: &Transaction<'_>, approval_id: i64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE outbox SET state = 'dropped', last_error = 'resolved before delivery'
         WHERE approval_id = ?1 AND state = 'pending' AND kind != 'digest'",
        [approval_id],
    )
    .map(drop)
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

#[cfg(test)]
mod tests {
    use crate::store::Changes;
    use crate::store::testing::{approval, message, now, store_with_alerts};

    use super::*;

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
}
