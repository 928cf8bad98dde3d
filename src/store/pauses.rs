//! The `slack_pauses` table: the routes whose Slack delivery is paused until a person fixes
//! something (a refused bot token, a channel the app cannot post in), as the daemon last wrote
//! them. The daemon decides; the table is for `status` and for the cycle, which tells an
//! approval resolved behind a pause in one message.

use jiff::Timestamp;
use rusqlite::params;

use super::{Store, StoreError, column, readable, time_column};

/// A route whose messages wait for a fix.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PausedRoute {
    pub route: String,
    /// Slack's error word (`invalid_auth`, `not_in_channel`, …).
    pub error: String,
    /// What a person must do, naming the config key or the channel (never the token).
    pub fix: String,
    pub since: Timestamp,
    /// When the daemon tries again by itself (a reload tries at once).
    pub next_try_at: Timestamp,
}

impl Store {
    /// Replaces the paused routes with `routes`, in one transaction.
    pub fn set_paused_routes(&self, routes: &[PausedRoute]) -> Result<(), StoreError> {
        let sql = StoreError::sqlite(&self.path);
        let tx = self.conn.unchecked_transaction().map_err(sql)?;
        tx.execute("DELETE FROM slack_pauses", []).map_err(sql)?;
        for r in routes {
            tx.execute(
                "INSERT INTO slack_pauses (route, error, fix, since_ms, next_try_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    r.route,
                    r.error,
                    r.fix,
                    r.since.as_millisecond(),
                    r.next_try_at.as_millisecond()
                ],
            )
            .map_err(sql)?;
        }
        tx.commit().map_err(sql)
    }

    /// The paused routes as last written, by route name.
    pub fn paused_routes(&self) -> Result<Vec<PausedRoute>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rowid, route, error, fix, since_ms, next_try_ms FROM slack_pauses
                 ORDER BY route",
            )
            .map_err(|e| self.sql(e))?;
        let rows = stmt
            .query_map([], |row| {
                let parsed = (|| {
                    Ok::<_, String>(PausedRoute {
                        route: column(row, "route")?,
                        error: column(row, "error")?,
                        fix: column(row, "fix")?,
                        since: time_column(row, "since_ms")?,
                        next_try_at: time_column(row, "next_try_ms")?,
                    })
                })();
                Ok((row.get::<_, i64>("rowid")?, parsed))
            })
            .map_err(|e| self.sql(e))?;
        readable(rows, "slack_pauses", "it is left out", &self.path).map_err(|e| self.sql(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::now;

    fn paused(route: &str, error: &str) -> PausedRoute {
        PausedRoute {
            route: route.into(),
            error: error.into(),
            fix: format!("fix {error}"),
            since: now(),
            next_try_at: now(),
        }
    }

    #[test]
    fn the_paused_routes_are_replaced_as_a_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.db")).unwrap();
        assert!(store.paused_routes().unwrap().is_empty());
        let both = [paused("a", "invalid_auth"), paused("b", "invalid_auth")];
        store.set_paused_routes(&both).unwrap();
        assert_eq!(store.paused_routes().unwrap(), both);
        store
            .set_paused_routes(&[paused("b", "not_in_channel")])
            .unwrap();
        assert_eq!(
            store.paused_routes().unwrap(),
            [paused("b", "not_in_channel")]
        );
        store.set_paused_routes(&[]).unwrap();
        assert!(store.paused_routes().unwrap().is_empty());
    }
}
