//! Reading stored values back one column at a time: a value, or why it cannot be read, so a
//! corrupt row is reported and left out rather than guessed at.

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
