//! The outbox seen as per-destination queues: what `status` shows of each, and the cap that
//! keeps any queue's head from being scheduled too far ahead.

use jiff::Timestamp;
use rusqlite::params;

use super::{Store, StoreError, ms};

/// One pending message, as much as a queue summary needs, in outbox order.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    pub pipeline: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
}

impl Store {
    /// Every pending message in outbox (and so delivery) order, without payloads.
    pub fn pending_rows(&self) -> Result<Vec<PendingRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT a.pipeline, o.attempts, o.next_attempt_ms, o.last_error
                 FROM outbox o JOIN approvals a ON a.id = o.approval_id
                 WHERE o.state = 'pending' ORDER BY o.id",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(PendingRow {
                    pipeline: row.get(0)?,
                    attempts: row.get(1)?,
                    next_attempt_at: ms(row.get(2)?),
                    last_error: row.get(3)?,
                })
            })
            .map_err(|e| self.sql(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sql(e))
    }

    /// Brings every pending message scheduled after `latest` forward to `latest`; returns how
    /// many moved. Writes nothing when none is that far ahead.
    pub fn cap_next_attempts(&self, latest: Timestamp) -> Result<usize, StoreError> {
        let latest = latest.as_millisecond();
        let any: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE state = 'pending' AND next_attempt_ms > ?1)",
                [latest],
                |row| row.get(0),
            )
            .map_err(|e| self.sql(e))?;
        if !any {
            return Ok(0);
        }
        self.conn
            .execute(
                "UPDATE outbox SET next_attempt_ms = ?1 WHERE state = 'pending' AND next_attempt_ms > ?1",
                params![latest],
            )
            .map_err(|e| self.sql(e))
    }
}
