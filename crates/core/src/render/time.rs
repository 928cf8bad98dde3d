//! Time as a message says it: durations ("2 h 5 min"), dates Slack shows in the reader's
//! time zone, and their UTC fallback.

use jiff::{SignedDuration, Timestamp, tz::TimeZone};

/// A short duration such as "45 s", "5 min", "2 h 5 min" or "3 d 4 h": the largest unit and at
/// most one more, rounded down. The sign is ignored; callers say "in" or "ago".
pub fn humanize(d: SignedDuration) -> String {
    const MINUTE: u64 = 60;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;

    let secs = d.unsigned_abs().as_secs();
    let (days, hours, mins) = (secs / DAY, secs % DAY / HOUR, secs % HOUR / MINUTE);
    match secs {
        s if s < MINUTE => format!("{s} s"),
        s if s < HOUR => format!("{mins} min"),
        s if s < DAY && mins == 0 => format!("{hours} h"),
        s if s < DAY => format!("{hours} h {mins} min"),
        _ if hours == 0 => format!("{days} d"),
        _ => format!("{days} d {hours} h"),
    }
}

/// Slack renders the date in the reader's time zone; the fallback is UTC.
pub(super) fn slack_date(ts: Timestamp) -> String {
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        ts.as_second(),
        utc_minutes(ts),
    )
}

/// "2025-12-03 09:13 UTC"
pub(super) fn utc_minutes(ts: Timestamp) -> String {
    let dt = TimeZone::UTC.to_datetime(ts);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        dt.year(),
        dt.month(),
        dt.day(),
        dt.hour(),
        dt.minute(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn humanize_cases() {
        let cases = [
            (0, "0 s"),
            (45, "45 s"),
            (59, "59 s"),
            (60, "1 min"),
            (5 * 60, "5 min"),
            (5 * 60 + 59, "5 min"),
            (2 * 3600, "2 h"),
            (2 * 3600 + 5 * 60 + 30, "2 h 5 min"),
            (86400, "1 d"),
            (3 * 86400 + 4 * 3600 + 59 * 60, "3 d 4 h"),
            (7 * 86400 + 12, "7 d"),
            (-90, "1 min"),
        ];
        for (secs, expected) in cases {
            assert_eq!(
                humanize(SignedDuration::from_secs(secs)),
                expected,
                "{secs}"
            );
        }
        assert!(!humanize(SignedDuration::MIN).is_empty());
    }
}
