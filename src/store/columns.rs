//! Reading stored values back one column at a time: a value, or why it cannot be read, so a
//! corrupt row is reported and left out rather than guessed at.

use std::path::Path;

use jiff::Timestamp;
use rusqlite::Row;

/// A stored time (milliseconds since the epoch), or why it is no time.
pub(super) fn time(millis: i64) -> Result<Timestamp, String> {
    Timestamp::from_millisecond(millis).map_err(|_| format!("{millis} is not a time"))
}

/// A column's value, or why it cannot be read, for rows read one by one.
pub(super) fn column<T: rusqlite::types::FromSql>(row: &Row<'_>, name: &str) -> Result<T, String> {
    row.get(name).map_err(|e| format!("{name}: {e}"))
}

pub(super) fn time_column(row: &Row<'_>, name: &str) -> Result<Timestamp, String> {
    time(column(row, name)?).map_err(|e| format!("{name}: {e}"))
}

/// The rows of the database at `path` that could be read, in order. Each one that could not
/// is logged, naming its `table`, its id, why, and what leaving it out means (`left_out`).
pub(super) fn readable<T>(
    rows: impl Iterator<Item = rusqlite::Result<(i64, Result<T, String>)>>,
    table: &str,
    left_out: &str,
    path: &Path,
) -> rusqlite::Result<Vec<T>> {
    let mut kept = Vec::new();
    for row in rows {
        let (id, parsed) = row?;
        match parsed {
            Ok(value) => kept.push(value),
            Err(why) => tracing::error!(
                state = %path.display(),
                "{table} row {id} is unreadable ({why}); {left_out}"
            ),
        }
    }
    Ok(kept)
}
