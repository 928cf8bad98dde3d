//! The `approvals` table: every approval ever seen, waiting or resolved, with what was sent
//! about it. Its unique key (account, region, pipeline, stage, action, token) is the last word
//! on "announce once".

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use approval_watch_core::model::{
    Approval, ApprovalKey, OpenApproval, Resolution, Revision, SlackMessage,
};
use approval_watch_core::remind::ReminderDue;

use super::{Store, StoreError, column, readable, time, time_column};

impl Store {
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
        let left_out = "it is left out: no reminders, no resolution";
        readable(rows, "approvals", left_out, &self.path).map_err(|e| self.sql(e))
    }

    /// Which of these keys were ever recorded, waiting or resolved.
    pub fn known<'a>(
        &self,
        keys: impl IntoIterator<Item = &'a ApprovalKey>,
    ) -> Result<HashSet<ApprovalKey>, StoreError> {
        let mut known = HashSet::new();
        for key in keys {
            if id_of(&self.conn, key).map_err(|e| self.sql(e))?.is_some() {
                known.insert(key.clone());
            }
        }
        Ok(known)
    }
}

/// The id of the approval recorded under `key`, waiting or resolved.
pub(super) fn id_of(conn: &Connection, key: &ApprovalKey) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(
        "SELECT id FROM approvals WHERE region = ?1 AND pipeline = ?2 AND stage = ?3
         AND action = ?4 AND token = ?5 AND account = ?6",
    )?
    .query_row(
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
}

/// Records a newly seen approval: its id, or `None` when it was recorded before (a race, a
/// replay).
pub(super) fn insert(
    tx: &Transaction<'_>,
    approval: &Approval,
    now_ms: i64,
) -> rusqlite::Result<Option<i64>> {
    let rev = approval.revision.as_ref();
    let inserted = tx.execute(
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
    )?;
    Ok((inserted == 1).then(|| tx.last_insert_rowid()))
}

/// Records how a waiting approval resolved; one already resolved keeps its first resolution.
pub(super) fn resolve(
    tx: &Transaction<'_>,
    id: i64,
    resolution: &Resolution,
) -> rusqlite::Result<()> {
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
    .map(drop)
}

/// Counts a reminder against a waiting approval; false when it is no longer waiting.
pub(super) fn remind(
    tx: &Transaction<'_>,
    id: i64,
    due: &ReminderDue,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let updated = tx.execute(
        "UPDATE approvals SET reminders_sent = reminders_sent + ?2,
             last_reminder_ms = ?3, expiry_warned = MAX(expiry_warned, ?4)
         WHERE id = ?1 AND resolved_ms IS NULL",
        params![id, u32::from(due.counts), now_ms, due.expiry_warning],
    )?;
    Ok(updated == 1)
}

pub(super) fn key_from_row(row: &Row<'_>) -> Result<ApprovalKey, String> {
    Ok(ApprovalKey {
        account: column(row, "account")?,
        region: column(row, "region")?,
        pipeline: column(row, "pipeline")?,
        stage: column(row, "stage")?,
        action: column(row, "action")?,
        token: column(row, "token")?,
    })
}

pub(super) fn approval_from_row(row: &Row<'_>) -> Result<Approval, String> {
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

/// Where the alert was posted, when both halves are stored.
pub(super) fn slack_from_row(row: &Row<'_>) -> Result<Option<SlackMessage>, String> {
    let channel: Option<String> = column(row, "slack_channel")?;
    let ts: Option<String> = column(row, "slack_ts")?;
    Ok(channel
        .zip(ts)
        .map(|(channel, ts)| SlackMessage { channel, ts }))
}

#[cfg(test)]
mod tests {
    use crate::store::testing::{key, store_with_alerts};

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
}
