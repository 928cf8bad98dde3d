//! Looking into the state database from a test, read-only: the outbox, the approvals and
//! SQLite's own consistency check. Only columns of the first schema are read, so later
//! migrations do not break these helpers.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;

/// One outbox row with the approval it is about.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub id: i64,
    pub kind: String,
    /// `pending`, `delivered`, `failed` or `dropped`.
    pub state: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub payload: Value,
    pub pipeline: String,
    pub token: String,
    /// Whether its approval is resolved.
    pub resolved: bool,
}

/// One approval row.
#[derive(Debug, Clone)]
pub struct ApprovalRow {
    pub id: i64,
    pub pipeline: String,
    pub token: String,
    pub outcome: Option<String>,
}

fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(Duration::from_secs(5))?;
    Ok(conn)
}

/// Every outbox row in id order; empty if the database or its tables do not exist yet.
pub fn outbox(path: &Path) -> Vec<OutboxRow> {
    let Ok(conn) = open(path) else {
        return Vec::new();
    };
    let Ok(mut stmt) = conn.prepare(
        "SELECT o.id, o.kind, o.state, o.attempts, o.last_error, o.payload, a.pipeline, a.token,
                a.resolved_ms IS NOT NULL
         FROM outbox o JOIN approvals a ON a.id = o.approval_id ORDER BY o.id",
    ) else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        let payload: String = r.get(5)?;
        Ok(OutboxRow {
            id: r.get(0)?,
            kind: r.get(1)?,
            state: r.get(2)?,
            attempts: r.get(3)?,
            last_error: r.get(4)?,
            payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            pipeline: r.get(6)?,
            token: r.get(7)?,
            resolved: r.get(8)?,
        })
    })
    .and_then(|rows| rows.collect())
    .unwrap_or_default()
}

/// Every approval row in id order; empty if there is none yet.
pub fn approvals(path: &Path) -> Vec<ApprovalRow> {
    let Ok(conn) = open(path) else {
        return Vec::new();
    };
    let Ok(mut stmt) =
        conn.prepare("SELECT id, pipeline, token, outcome FROM approvals ORDER BY id")
    else {
        return Vec::new();
    };
    stmt.query_map([], |r| {
        Ok(ApprovalRow {
            id: r.get(0)?,
            pipeline: r.get(1)?,
            token: r.get(2)?,
            outcome: r.get(3)?,
        })
    })
    .and_then(|rows| rows.collect())
    .unwrap_or_default()
}

/// Whether some approval has the channel and `ts` of its app-mode alert recorded.
/// How many approvals have their alert's place in Slack recorded.
pub fn slack_ts_count(path: &Path) -> i64 {
    open(path)
        .and_then(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM approvals WHERE slack_ts IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .unwrap_or(0)
}

pub fn slack_ts_recorded(path: &Path) -> bool {
    open(path)
        .and_then(|conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM approvals WHERE slack_ts IS NOT NULL",
                [],
                |r| r.get::<_, i64>(0),
            )
        })
        .is_ok_and(|n| n > 0)
}

/// `PRAGMA integrity_check` (`"ok"` when consistent), opened read-write so that a WAL left by
/// a killed process is recovered the way the daemon would.
pub fn integrity_check(path: &Path) -> String {
    let conn = Connection::open(path).expect("open the state database");
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    let rows: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .unwrap_or_else(|e| vec![format!("integrity_check failed: {e}")]);
    rows.join("\n")
}
