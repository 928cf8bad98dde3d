//! Working hours in a time zone: when reminders may be sent. Pure; daylight-saving changes
//! are handled by resolving each local day's start and end through the zone's rules.

use jiff::Timestamp;
use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;

/// Weekdays and a daily window, in an IANA time zone.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkingHours {
    pub timezone_name: String,
    pub timezone: TimeZone,
    /// Monday = index 0.
    pub days: [bool; 7],
    /// Minutes after local midnight; `end` may be 1440 (the end of the day).
    pub start_minute: u16,
    pub end_minute: u16,
}

impl WorkingHours {
    /// Whether `t` falls inside working hours.
    pub fn contains(&self, t: Timestamp) -> bool {
        let local = t.to_zoned(self.timezone.clone());
        if !self.days[day_index(local.weekday())] {
            return false;
        }
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        self.start_minute <= minute && minute < self.end_minute
    }

    /// The earliest instant at or after `t` inside working hours.
    /// `None` only when no day is a working day (validation prevents that).
    pub fn next_open(&self, t: Timestamp) -> Option<Timestamp> {
        if self.contains(t) {
            return Some(t);
        }
        let today = t.to_zoned(self.timezone.clone()).date();
        // Eight days cover a full week from any starting point.
        (0..8)
            .filter_map(|offset| today.checked_add(jiff::Span::new().days(offset)).ok())
            .filter(|date| self.days[day_index(date.weekday())])
            .filter_map(|date| {
                let (start, end) = self.window(date)?;
                (t < end).then_some(start.max(t))
            })
            .next()
    }

    /// A local day's window as instants. A start inside a DST gap moves to the gap's end.
    fn window(&self, date: Date) -> Option<(Timestamp, Timestamp)> {
        let at = |minute: u16| -> Option<Timestamp> {
            let dt = if minute >= 24 * 60 {
                date.tomorrow().ok()?.to_datetime(Time::midnight())
            } else {
                date.to_datetime(Time::new((minute / 60) as i8, (minute % 60) as i8, 0, 0).ok()?)
            };
            dt.to_zoned(self.timezone.clone())
                .ok()
                .map(|z| z.timestamp())
        };
        Some((at(self.start_minute)?, at(self.end_minute)?))
    }
}

fn day_index(day: Weekday) -> usize {
    day.to_monday_zero_offset() as usize
}

/// Parses "mon".."sun" (case-insensitive, or full names).
pub fn parse_day(s: &str) -> Option<usize> {
    let s = s.trim().to_ascii_lowercase();
    let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let full = [
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    ];
    names
        .iter()
        .position(|n| *n == s)
        .or_else(|| full.iter().position(|n| *n == s))
}

/// Parses "HH:MM" into minutes after midnight; "24:00" is allowed (the end of the day).
pub fn parse_clock(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Monday to Friday, 09:00 to 18:00 in London (GMT, BST in summer).
    pub(crate) fn london_office() -> WorkingHours {
        WorkingHours {
            timezone_name: "Europe/London".into(),
            timezone: TimeZone::get("Europe/London").unwrap(),
            days: [true, true, true, true, true, false, false],
            start_minute: 9 * 60,
            end_minute: 18 * 60,
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn inside_and_outside() {
        let wh = london_office();
        // Wednesday 26 Nov 2025, GMT (UTC+0).
        assert!(wh.contains(at("2025-11-26T09:00:00Z")));
        assert!(wh.contains(at("2025-11-26T17:59:59Z")));
        assert!(!wh.contains(at("2025-11-26T18:00:00Z")));
        assert!(!wh.contains(at("2025-11-26T08:59:59Z")));
        // Saturday.
        assert!(!wh.contains(at("2025-11-29T12:00:00Z")));
        // Summer (BST, UTC+1): 09:00 local is 08:00 UTC.
        assert!(wh.contains(at("2025-07-02T08:00:00Z")));
        assert!(!wh.contains(at("2025-07-02T17:30:00Z")));
    }

    #[test]
    fn next_open_skips_the_weekend() {
        let wh = london_office();
        for (from, opens, case) in [
            (
                "2025-11-28T19:00:00Z",
                "2025-12-01T09:00:00Z",
                "Friday 28 Nov 2025 19:00 → Monday 1 Dec 09:00 GMT",
            ),
            (
                "2025-11-29T12:00:00Z",
                "2025-12-01T09:00:00Z",
                "Saturday noon → Monday",
            ),
            (
                "2025-11-26T06:00:00Z",
                "2025-11-26T09:00:00Z",
                "early morning → the same day's start",
            ),
            (
                "2025-11-26T10:00:00Z",
                "2025-11-26T10:00:00Z",
                "inside → itself",
            ),
        ] {
            assert_eq!(wh.next_open(at(from)), Some(at(opens)), "{case}");
        }
    }

    #[test]
    fn daylight_saving_transitions() {
        let wh = london_office();
        // Spring forward: Sunday 30 March 2025 01:00 GMT → 02:00 BST. Friday 28 March 18:30 GMT
        // → Monday 31 March 09:00 BST = 08:00 UTC.
        assert_eq!(
            wh.next_open(at("2025-03-28T18:30:00Z")),
            Some(at("2025-03-31T08:00:00Z"))
        );
        assert!(wh.contains(at("2025-03-31T08:00:00Z")));
        assert!(!wh.contains(at("2025-03-31T07:59:00Z")));
        // Fall back: Sunday 26 October 2025 02:00 BST → 01:00 GMT. Friday 24 Oct 18:30 BST
        // (17:30 UTC) → Monday 27 October 09:00 GMT = 09:00 UTC.
        assert!(!wh.contains(at("2025-10-24T17:30:00Z")));
        assert_eq!(
            wh.next_open(at("2025-10-24T17:30:00Z")),
            Some(at("2025-10-27T09:00:00Z"))
        );
        assert!(!wh.contains(at("2025-10-27T08:30:00Z")));
    }

    #[test]
    fn a_window_starting_in_a_dst_gap_opens_at_the_gap_end() {
        // New York springs forward at 02:00 on Sunday 9 March 2025; a 02:30 start does not exist.
        let wh = WorkingHours {
            timezone_name: "America/New_York".into(),
            timezone: TimeZone::get("America/New_York").unwrap(),
            days: [true; 7],
            start_minute: 2 * 60 + 30,
            end_minute: 24 * 60,
        };
        let open = wh.next_open(at("2025-03-09T05:00:00Z")).unwrap(); // 00:00 EST
        assert_eq!(open, at("2025-03-09T07:30:00Z")); // 03:30 EDT, the compatible reading
    }

    #[test]
    fn parsing_days_and_clocks() {
        assert_eq!(parse_day("mon"), Some(0));
        assert_eq!(parse_day("Sunday"), Some(6));
        assert_eq!(parse_day("mo"), None);
        assert_eq!(parse_clock("09:00"), Some(540));
        assert_eq!(parse_clock("9:30"), Some(570));
        assert_eq!(parse_clock("24:00"), Some(1440));
        for bad in ["24:01", "9", "09:0", "ab:cd", "-1:00", "12:60", ""] {
            assert_eq!(parse_clock(bad), None, "{bad}");
        }
    }
}
