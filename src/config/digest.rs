//! `[digest]` and a route's `[route.digest]` (key by key) or `digest = false`: when each
//! destination gets its daily list of everything still waiting.

use super::{ConfigError, invalid, raw};
use approval_watch_core::digest::DigestSchedule;
use approval_watch_core::working_hours;

/// The schedule for one route: its `[route.digest]` over `[digest]`; `None` when neither is
/// given or the route says `digest = false`. `zone` is the route's working-hours zone (the
/// default time zone), `table` names the route for messages.
pub(super) fn schedule(
    table: &str,
    global: Option<&raw::Digest>,
    route: Option<&raw::RouteDigest>,
    zone: Option<(&str, &jiff::tz::TimeZone)>,
) -> Result<Option<DigestSchedule>, ConfigError> {
    let over = match route {
        Some(raw::RouteDigest::Enabled(false)) => return Ok(None),
        Some(raw::RouteDigest::Enabled(true)) | None => None,
        Some(raw::RouteDigest::Table(t)) => Some(t),
    };
    let (at, at_key) = match (
        over.and_then(|o| o.at.as_ref()),
        global.and_then(|g| g.at.as_ref()),
    ) {
        (Some(at), _) => (at, format!("{table}.digest.at")),
        (None, Some(at)) => (at, "digest.at".to_owned()),
        (None, None) if over.is_none() && global.is_none() => return Ok(None),
        (None, None) => {
            return Err(invalid(
                if over.is_some() {
                    format!("{table}.digest.at")
                } else {
                    "digest.at".to_owned()
                },
                "missing; expected the local time of the digest, such as \"09:30\"",
            ));
        }
    };
    let minute = working_hours::parse_clock(at)
        .filter(|m| *m < 24 * 60)
        .ok_or_else(|| {
            invalid(
                &at_key,
                format!("{at:?} is not a time of day; expected HH:MM such as \"09:30\""),
            )
        })?;
    let (timezone_name, timezone) = match (
        over.and_then(|o| o.timezone.as_ref())
            .map(|z| (z, format!("{table}.digest.timezone"))),
        global
            .and_then(|g| g.timezone.as_ref())
            .map(|z| (z, "digest.timezone".to_owned())),
        zone,
    ) {
        (Some((name, key)), _, _) | (None, Some((name, key)), _) => {
            let tz = jiff::tz::TimeZone::get(name.trim()).map_err(|_| {
                invalid(
                    key,
                    format!(
                        "{name:?} is not an IANA time zone; expected a name such as \"Europe/London\""
                    ),
                )
            })?;
            (name.trim().to_owned(), tz)
        }
        (None, None, Some((name, tz))) => (name.to_owned(), tz.clone()),
        (None, None, None) => ("UTC".to_owned(), jiff::tz::TimeZone::UTC),
    };
    let (days_raw, days_key) = match (
        over.and_then(|o| o.days.as_ref()),
        global.and_then(|g| g.days.as_ref()),
    ) {
        (Some(d), _) => (Some(d), format!("{table}.digest.days")),
        (None, Some(d)) => (Some(d), "digest.days".to_owned()),
        (None, None) => (None, String::new()),
    };
    let days = match days_raw {
        None => [true; 7],
        Some(list) if list.is_empty() => {
            return Err(invalid(
                days_key,
                "is empty; expected days such as [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\"] (or digest = false on a route)",
            ));
        }
        Some(list) => {
            let mut days = [false; 7];
            for d in list {
                let i = working_hours::parse_day(d).ok_or_else(|| {
                    invalid(
                        &days_key,
                        format!("{d:?} is not a day; expected mon, tue, wed, thu, fri, sat or sun"),
                    )
                })?;
                days[i] = true;
            }
            days
        }
    };
    Ok(Some(DigestSchedule {
        minute,
        timezone_name,
        timezone,
        days,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Config;
    use super::*;

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        let text = format!(
            "[slack]\nwebhook_url = \"https://hooks.slack.com/services/T0/B0/X\"\n\
             [[pipeline]]\nname = \"web-app\"\n{extra}"
        );
        Config::parse(&text, Path::new("t.toml"))
    }

    const ROUTES: &str = "[[route]]\nname = \"pay\"\npipelines = [\"pay-*\"]\n\
                          webhook_url = \"https://hooks.slack.com/services/T0/B1/Y\"\n";

    #[test]
    fn routes_override_the_digest_key_by_key_or_turn_it_off() {
        let config = parse(&format!(
            "[digest]\nat = \"09:30\"\ntimezone = \"Europe/London\"\ndays = [\"mon\"]\n\
             {ROUTES}[route.digest]\nat = \"11:00\"\n\
             [[route]]\nname = \"ops\"\npipelines = [\"ops-*\"]\n\
             webhook_url = \"https://hooks.slack.com/services/T0/B2/Z\"\ndigest = false\n"
        ))
        .expect("valid");
        let default = &config.digests["default"];
        assert_eq!(default.describe(), "09:30 Europe/London on mon");
        assert_eq!(
            config.digests["pay"].describe(),
            "11:00 Europe/London on mon"
        );
        assert!(!config.digests.contains_key("ops"));
        // No [digest]: no digests, unless a route asks for one.
        let none = parse(ROUTES).expect("valid");
        assert!(none.digests.is_empty());
        let one = parse(&format!("{ROUTES}[route.digest]\nat = \"08:00\"\n")).expect("valid");
        assert_eq!(
            one.digests.keys().collect::<Vec<_>>(),
            ["pay"],
            "{:?}",
            one.digests
        );
        assert_eq!(
            one.digests["pay"].describe(),
            "08:00 UTC on mon,tue,wed,thu,fri,sat,sun"
        );
    }

    #[test]
    fn the_time_zone_defaults_to_the_working_hours_zone() {
        let config = parse(
            "[reminders.working_hours]\ntimezone = \"America/New_York\"\n\
             days = [\"mon\"]\nstart = \"09:00\"\nend = \"17:00\"\n[digest]\nat = \"09:30\"\n",
        )
        .expect("valid");
        assert_eq!(config.digests["default"].timezone_name, "America/New_York");
    }

    #[test]
    fn digest_errors_name_the_key() {
        let e = |extra: &str| parse(extra).unwrap_err().to_string();
        assert!(e("[digest]\nat = \"25:00\"\n").starts_with("digest.at: \"25:00\" is not"));
        assert!(
            e("[digest]\nat = \"09:30\"\ntimezone = \"Mars/Base\"\n")
                .starts_with("digest.timezone: \"Mars/Base\" is not an IANA time zone")
        );
        assert!(e("[digest]\nat = \"09:30\"\ndays = [\"someday\"]\n").starts_with("digest.days:"));
        assert!(e("[digest]\ntimezone = \"UTC\"\n").starts_with("digest.at: missing"));
        assert!(
            e(&format!("{ROUTES}[route.digest]\nat = \"9\"\n")).starts_with("route[0].digest.at:")
        );
        assert!(e("[digest]\nat = \"09:30\"\nwhen = 1\n").contains("when"));
    }
}
