//! The outbox seen as per-destination queues: what `status` shows of each, and the cap that
//! keeps any queue's head from being scheduled too far ahead.

use jiff::Timestamp;
use rusqlite::params;

use super::{Store, StoreError, column, time_column};

/// One pending message, as much as a queue summary needs, in outbox order.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingRow {
    pub pipeline: String,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
}

impl Store {
    /// Every pending message in outbox (and so delivery) order, without payloads. A row that
    /// cannot be read is left out: delivery marks it failed, and `status` lists it there.
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
                Ok((|| {
                    Ok::<_, String>(PendingRow {
                        pipeline: column(row, "pipeline")?,
                        attempts: column(row, "attempts")?,
                        next_attempt_at: time_column(row, "next_attempt_ms")?,
                        last_error: column(row, "last_error")?,
                    })
                })())
            })
            .map_err(|e| self.sql(e))?;
        let mut pending = Vec::new();
        for row in rows {
            if let Ok(row) = row.map_err(|e| self.sql(e))? {
                pending.push(row);
            }
        }
        Ok(pending)
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
