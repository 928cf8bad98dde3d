//! The only module that speaks SQL: approvals and the Slack outbox, in one SQLite file. One
//! file per table (`approvals`, `outbox` and its `queues`, `digests`, `definitions`,
//! `liveness`, `audit`, `pauses`), every migration in `schema`; this file opens and closes the
//! connection.
//!
//! Calls are synchronous: each is a few small statements on a local file, far below
//! the cost of the HTTP calls around them, so they run on the caller's task.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

mod approvals;
pub mod audit;
mod columns;
mod copy;
mod definitions;
mod digests;
mod in_place;
mod liveness;
mod lock;
mod outbox;
mod pauses;
mod queues;
mod record;
mod schema;
#[cfg(test)]
mod testing;

pub use audit::{AuditEntry, AuditLog, Claim, ClickTarget, ConnectionRow};
pub use digests::DigestDecision;
pub use outbox::{AppParts, FailedRow, NewMessage, OutboxMessage};
pub use pauses::PausedRoute;
pub use queues::PendingRow;
pub use record::Changes;
pub use schema::SCHEMA_VERSION;

// For the table files, `in_place` and `audit`, which reach them through `super`.
use approvals::{approval_from_row, slack_from_row};
use columns::{column, readable, time, time_column};
use lock::take_lock;
use schema::{check_version, migrate};

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

impl StoreError {
    /// For `map_err`: an SQLite error on the database at `path`.
    fn sqlite(path: &Path) -> impl Fn(rusqlite::Error) -> Self + Copy + '_ {
        move |cause| Self::Sqlite {
            path: path.to_owned(),
            cause,
        }
    }
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
        migrate(&mut conn, path)?;
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

    fn sql(&self, cause: rusqlite::Error) -> StoreError {
        StoreError::sqlite(&self.path)(cause)
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
    let sql = StoreError::sqlite(path);
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
    let sql = StoreError::sqlite(path);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::temp_db;

    #[test]
    fn read_only_open_of_a_missing_file_creates_nothing() {
        let (_dir, path) = temp_db("none.db");
        assert!(Store::open_read_only(&path).unwrap().is_none());
        assert!(!path.exists());
    }
}
