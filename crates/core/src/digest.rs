//! The daily digest: when a destination's list of everything still waiting is due. Pure:
//! takes `now`. A digest is due from its local time on one of its days until the end of that
//! local day, once: a daemon down at 09:30 that starts at 11:00 sends it then; one that starts
//! the next day does not send yesterday's. Local time is the zone's wall clock (jiff), so a
//! DST change moves nothing: "09:30" is 09:30 on the wall, and a time the clocks skip is
//! reached as soon as the wall clock passes it.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// At most this many approvals are listed; the rest are counted ("and N more").
pub const MAX_ENTRIES: usize = 50;

/// One route's digest: `at` (minutes after local midnight) on `days` in `timezone`.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestSchedule {
    pub minute: u16,
    pub timezone_name: String,
    pub timezone: TimeZone,
    /// Monday = index 0.
    pub days: [bool; 7],
}

impl DigestSchedule {
    /// The local day whose digest is due at `now`, if any: today, when today is one of the
    /// days and the wall clock has reached `at`. The caller sends it unless already sent.
    pub fn due_day(&self, now: Timestamp) -> Option<Date> {
        let local = now.to_zoned(self.timezone.clone());
        let day = local.weekday().to_monday_zero_offset() as usize;
        let minute = u16::from(local.hour() as u8) * 60 + u16::from(local.minute() as u8);
        (self.days[day] && minute >= self.minute).then(|| local.date())
    }

    /// "09:30 Europe/London" for summaries.
    pub fn describe(&self) -> String {
        let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
        let days: Vec<&str> = names
            .iter()
            .zip(self.days)
            .filter(|(_, on)| *on)
            .map(|(d, _)| *d)
            .collect();
        format!(
            "{:02}:{:02} {} on {}",
            self.minute / 60,
            self.minute % 60,
            self.timezone_name,
            days.join(",")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn london(at: &str, days: [bool; 7]) -> DigestSchedule {
        DigestSchedule {
            minute: crate::working_hours::parse_clock(at).unwrap(),
            timezone_name: "Europe/London".into(),
            timezone: TimeZone::get("Europe/London").unwrap(),
            days,
        }
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    const WEEKDAYS: [bool; 7] = [true, true, true, true, true, false, false];

    #[test]
    fn due_from_the_local_time_to_the_end_of_that_day_on_its_days_only() {
        let s = london("09:30", WEEKDAYS);
        // Tuesday 2026-12-01, GMT (UTC+0).
        assert_eq!(s.due_day(ts("2026-12-01T09:29:59Z")), None);
        let day = Some("2026-12-01".parse().unwrap());
        assert_eq!(s.due_day(ts("2026-12-01T09:30:00Z")), day);
        // Catch-up later the same day, never the next day for yesterday.
        assert_eq!(s.due_day(ts("2026-12-01T23:59:00Z")), day);
        assert_eq!(s.due_day(ts("2026-12-02T00:10:00Z")), None);
        // Saturday: not a digest day.
        assert_eq!(s.due_day(ts("2026-12-05T10:00:00Z")), None);
    }

    #[test]
    fn local_time_holds_across_daylight_saving_days() {
        let s = london("09:30", [true; 7]);
        // Summer time (BST, UTC+1): 09:30 local is 08:30 UTC.
        assert_eq!(s.due_day(ts("2026-07-01T08:29:00Z")), None);
        assert!(s.due_day(ts("2026-07-01T08:30:00Z")).is_some());
        // Sunday 2026-03-29: clocks go 01:00 → 02:00. 09:30 BST = 08:30 UTC.
        assert_eq!(
            s.due_day(ts("2026-03-29T09:00:00Z")).map(|d| d.day()),
            Some(29)
        );
        assert_eq!(s.due_day(ts("2026-03-29T08:29:00Z")), None);
        // A time the clocks skip (01:30 that Sunday) is due once the wall clock passes it.
        let gap = london("01:30", [true; 7]);
        assert_eq!(gap.due_day(ts("2026-03-29T00:59:00Z")), None);
        assert!(
            gap.due_day(ts("2026-03-29T01:00:00Z")).is_some(),
            "02:00 BST"
        );
        // Sunday 2026-10-25: clocks go 02:00 → 01:00; 01:30 happens twice, one day either way.
        let twice = london("01:30", [true; 7]);
        let first = twice.due_day(ts("2026-10-25T00:30:00Z"));
        let second = twice.due_day(ts("2026-10-25T01:30:00Z"));
        assert_eq!(first, second);
        assert_eq!(first.map(|d| d.day()), Some(25));
    }
}
