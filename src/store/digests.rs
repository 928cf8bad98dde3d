//! The `digests` table: which destination had its daily digest for which local day. The
//! digest's message rides in the outbox on the row of the oldest approval it lists.

use rusqlite::{Transaction, params};

use super::outbox::NewMessage;
use super::{Store, StoreError};

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

impl Store {
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
}

/// Records a destination's digest for a day; false when it was decided before. The primary
/// key is the last word on "one digest per destination per day".
pub(super) fn insert(
    tx: &Transaction<'_>,
    digest: &DigestDecision,
    now_ms: i64,
) -> rusqlite::Result<bool> {
    let inserted = tx.execute(
        "INSERT INTO digests (route, day, decided_ms, approvals) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO NOTHING",
        params![digest.route, digest.day, now_ms, digest.approvals as i64],
    )?;
    Ok(inserted == 1)
}

#[cfg(test)]
mod tests {
    use approval_watch_core::model::{MessageKind, Outcome, Resolution};

    use super::*;
    use crate::store::Changes;
    use crate::store::testing::{message, now, store_with_alerts};

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
}
