//! `[reminders]` (and a route's overrides, already merged) with its working hours.

use std::time::Duration;

use super::{ConfigError, invalid, raw};
use approval_watch_core::remind::{Mention, ReminderPolicy};
use approval_watch_core::working_hours::{self, WorkingHours};

/// `[reminders]` (or a route's, already merged) → a policy. `table` prefixes the keys named.
pub(super) fn reminder_policy(
    table: &str,
    raw: &raw::Reminders,
) -> Result<ReminderPolicy, ConfigError> {
    let key = |k: &str| format!("{table}.{k}");
    let defaults = ReminderPolicy::default();
    let policy = ReminderPolicy {
        after: raw.after.unwrap_or(defaults.after),
        every: raw.every.unwrap_or(defaults.every),
        max: raw.max.unwrap_or(defaults.max),
        expire_warning: raw.expire_warning,
        escalate_after: raw.escalate_after,
        escalate_mention: raw
            .escalate_mention
            .as_deref()
            .map(|m| Mention::parse(m).map_err(|p| invalid(key("escalate_mention"), p)))
            .transpose()?,
        working_hours: raw
            .working_hours
            .as_ref()
            .map(|w| parse_working_hours(&key("working_hours"), w))
            .transpose()?,
    };
    if policy.max > 0 {
        for (k, value) in [("after", policy.after), ("every", policy.every)] {
            if value < Duration::from_secs(60) {
                return Err(invalid(
                    key(k),
                    format!(
                        "{} is too short; expected at least 1m (or max = 0 for no reminders)",
                        humantime::format_duration(value)
                    ),
                ));
            }
        }
    }
    if let Some(w) = policy.expire_warning
        && w < Duration::from_secs(60)
    {
        return Err(invalid(key("expire_warning"), "expected at least 1m"));
    }
    if policy.escalate_after.is_some() && policy.escalate_mention.is_none() {
        return Err(invalid(
            key("escalate_mention"),
            "missing; escalate_after needs a mention such as \"<!subteam^S0123ABC>\"",
        ));
    }
    if policy.escalate_mention.is_some() && policy.escalate_after.is_none() {
        return Err(invalid(
            key("escalate_after"),
            "missing; escalate_mention needs the number of reminders after which to add it",
        ));
    }
    Ok(policy)
}

fn parse_working_hours(table: &str, raw: &raw::WorkingHours) -> Result<WorkingHours, ConfigError> {
    let key = |k: &str| format!("{table}.{k}");
    let timezone = jiff::tz::TimeZone::get(raw.timezone.trim()).map_err(|_| {
        invalid(
            key("timezone"),
            format!(
                "{:?} is not an IANA time zone; expected a name such as \"Europe/London\"",
                raw.timezone
            ),
        )
    })?;
    if raw.days.is_empty() {
        return Err(invalid(
            key("days"),
            "is empty; expected days such as [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"]",
        ));
    }
    let mut days = [false; 7];
    for d in &raw.days {
        let i = working_hours::parse_day(d).ok_or_else(|| {
            invalid(
                key("days"),
                format!("{d:?} is not a day; expected mon, tue, wed, thu, fri, sat or sun"),
            )
        })?;
        days[i] = true;
    }
    let clock = |k: &str, v: &str| {
        working_hours::parse_clock(v).ok_or_else(|| {
            invalid(
                key(k),
                format!("{v:?} is not a time of day; expected HH:MM such as \"09:00\""),
            )
        })
    };
    let start_minute = clock("start", &raw.start)?;
    let end_minute = clock("end", &raw.end)?;
    if start_minute >= end_minute {
        return Err(invalid(
            key("end"),
            format!(
                "{} is not after start {}; expected a window within one day",
                raw.end, raw.start
            ),
        ));
    }
    Ok(WorkingHours {
        timezone_name: raw.timezone.trim().to_owned(),
        timezone,
        days,
        start_minute,
        end_minute,
    })
}
