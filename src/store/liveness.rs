//! The `liveness` table: one row, the time of the last cycle, written while a heartbeat is
//! configured so "the store is writable" is proven by a write even when a cycle changed nothing.

use jiff::Timestamp;

use super::{Store, StoreError};

impl Store {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::now;

    #[test]
    fn each_cycle_overwrites_the_one_row() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        let later = now()
            .checked_add(jiff::SignedDuration::from_secs(30))
            .unwrap();
        store.record_cycle(now()).unwrap();
        store.record_cycle(later).unwrap();
        let rows: Vec<i64> = store
            .conn
            .prepare("SELECT last_cycle_ms FROM liveness")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, [later.as_millisecond()]);
    }
}
