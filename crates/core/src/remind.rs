//! When an approval that keeps waiting is due a reminder. Pure: computed from stored times
//! and `now`, so timing survives restarts and a long downtime costs one catch-up, not a burst.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use crate::model::OpenApproval;
use crate::working_hours::WorkingHours;

/// A Slack mention that pings: `<!subteam^ID>`, `<@U…>`, `<!here>`… (several, space-separated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mention(String);

impl Mention {
    /// Checks the form, because `@team` as text pings nobody.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("is empty".into());
        }
        for part in s.split_whitespace() {
            if !is_mention(part) {
                return Err(format!(
                    "{part:?} is not a Slack mention; expected <!subteam^S0123ABC>, <@U0123ABC>, <!here> or <!channel> (plain @name text pings nobody)"
                ));
            }
        }
        Ok(Self(s.split_whitespace().collect::<Vec<_>>().join(" ")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_mention(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('<').and_then(|s| s.strip_suffix('>')) else {
        return false;
    };
    let id = |id: &str| {
        !id.is_empty()
            && id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    // `<!subteam^ID|@handle>` and `<@U123|name>` carry an optional label.
    let (target, label) = inner.split_once('|').unwrap_or((inner, ""));
    let label_ok = !label.contains(['<', '>']);
    let target_ok = match target {
        "!here" | "!channel" | "!everyone" => label.is_empty(),
        t if t.starts_with("!subteam^") => id(&t["!subteam^".len()..]),
        t if t.starts_with('@') => {
            let user = &t[1..];
            (user.starts_with('U') || user.starts_with('W')) && id(user)
        }
        _ => false,
    };
    target_ok && label_ok
}

/// How an approval that keeps waiting is nagged.
#[derive(Debug, Clone, PartialEq)]
pub struct ReminderPolicy {
    /// The first reminder once an approval has waited this long.
    pub after: Duration,
    /// Then this often.
    pub every: Duration,
    /// At most this many regular reminders; 0 = none.
    pub max: u32,
    /// This long before expiry, one loud warning (even when `max` is reached).
    pub expire_warning: Option<Duration>,
    /// From reminder number `escalate_after + 1` on, add `escalate_mention`.
    pub escalate_after: Option<u32>,
    pub escalate_mention: Option<Mention>,
    /// Reminders outside these hours wait for the next opening.
    pub working_hours: Option<WorkingHours>,
}

impl Default for ReminderPolicy {
    fn default() -> Self {
        Self {
            after: Duration::from_secs(30 * 60),
            every: Duration::from_secs(60 * 60),
            max: 8,
            expire_warning: None,
            escalate_after: None,
            escalate_mention: None,
            working_hours: None,
        }
    }
}

/// What the store knows about an open approval's reminders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderState {
    pub waiting_since: Timestamp,
    /// When this service first saw it waiting (its alert).
    pub first_seen: Timestamp,
    pub expires_at: Timestamp,
    /// Regular reminders sent so far.
    pub sent: u32,
    pub last_at: Option<Timestamp>,
    pub expiry_warned: bool,
}

impl ReminderState {
    pub fn of(open: &OpenApproval) -> Self {
        Self {
            waiting_since: open.approval.waiting_since,
            first_seen: open.first_seen,
            expires_at: open.approval.expires_at,
            sent: open.reminders_sent,
            last_at: open.last_reminder_at,
            expiry_warned: open.expiry_warned,
        }
    }
}

/// A reminder to send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReminderDue {
    /// The regular reminder's number (1-based); for a warning-only message, the count so far.
    pub number: u32,
    /// Whether this is a regular reminder (counts towards `max`).
    pub counts: bool,
    /// The loud one before expiry.
    pub expiry_warning: bool,
    /// Add the escalation mention.
    pub escalate: bool,
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN)
}

impl ReminderPolicy {
    /// When the next regular reminder falls due (before any working-hours hold), if any.
    pub fn next_regular_at(&self, s: &ReminderState) -> Option<Timestamp> {
        if s.sent >= self.max {
            return None;
        }
        Some(match s.last_at {
            // From the last one sent: a day of downtime gives one catch-up, then the rhythm.
            Some(last) => add(last, self.every),
            // Not before `after` of waiting, nor right on the heels of the alert.
            None => add(s.waiting_since, self.after).max(add(s.first_seen, self.after)),
        })
    }

    /// When the next reminder (regular or the expiry warning) is expected to go out, as of
    /// `now`, working hours included; `None` when no more are coming.
    pub fn next_at(&self, s: &ReminderState, now: Timestamp) -> Option<Timestamp> {
        let warning = self
            .expire_warning
            .filter(|_| !s.expiry_warned)
            .map(|w| sub(s.expires_at, w));
        let regular = self.next_regular_at(s).map(|at| {
            let at = at.max(now);
            self.working_hours
                .as_ref()
                .and_then(|w| w.next_open(at))
                .unwrap_or(at)
        });
        let next = match (regular, warning) {
            (Some(r), Some(w)) => r.min(w.max(now)),
            (r, w) => r.or(w.map(|w| w.max(now)))?,
        };
        (next < s.expires_at).then_some(next)
    }

    /// Whether a reminder is due at `now`.
    pub fn due(&self, s: &ReminderState, now: Timestamp) -> Option<ReminderDue> {
        if now >= s.expires_at {
            // CodePipeline is about to say it expired; a reminder now would be noise.
            return None;
        }
        let in_hours = self.working_hours.as_ref().is_none_or(|w| w.contains(now));
        let regular_due = self.next_regular_at(s).is_some_and(|at| now >= at);
        let warning_due = !s.expiry_warned
            && self
                .expire_warning
                .is_some_and(|w| now >= sub(s.expires_at, w));
        let escalate = |number: u32| self.escalate_after.is_some_and(|k| number > k);

        if warning_due {
            // Held for working hours only if they open again before it expires.
            let too_late_to_hold = self
                .working_hours
                .as_ref()
                .and_then(|w| w.next_open(now))
                .is_none_or(|open| open >= s.expires_at);
            if in_hours || too_late_to_hold {
                let number = if regular_due { s.sent + 1 } else { s.sent };
                return Some(ReminderDue {
                    number,
                    counts: regular_due,
                    expiry_warning: true,
                    escalate: escalate(number.max(1)) && number > 0,
                });
            }
            return None;
        }
        if regular_due && in_hours {
            let number = s.sent + 1;
            return Some(ReminderDue {
                number,
                counts: true,
                expiry_warning: false,
                escalate: escalate(number),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::working_hours::tests::london_office;

    const MIN: u64 = 60;
    const HOUR: u64 = 3600;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn plus(t: Timestamp, secs: u64) -> Timestamp {
        add(t, Duration::from_secs(secs))
    }

    fn policy() -> ReminderPolicy {
        ReminderPolicy {
            after: Duration::from_secs(30 * MIN),
            every: Duration::from_secs(HOUR),
            max: 3,
            ..ReminderPolicy::default()
        }
    }

    fn fresh(start: Timestamp) -> ReminderState {
        ReminderState {
            waiting_since: start,
            first_seen: start,
            expires_at: plus(start, 7 * 24 * HOUR),
            sent: 0,
            last_at: None,
            expiry_warned: false,
        }
    }

    /// Runs a daemon that checks every `step` from `start` to `end`, applying what it sends.
    fn simulate(
        p: &ReminderPolicy,
        mut s: ReminderState,
        start: Timestamp,
        end: Timestamp,
        step: u64,
    ) -> Vec<(Timestamp, ReminderDue)> {
        let mut sent = Vec::new();
        let mut now = start;
        while now <= end {
            if let Some(due) = p.due(&s, now) {
                sent.push((now, due));
                if due.counts {
                    s.sent += 1;
                }
                s.last_at = Some(now);
                s.expiry_warned |= due.expiry_warning;
            }
            now = plus(now, step);
        }
        sent
    }

    #[test]
    fn after_then_every_up_to_max() {
        let t0 = at("2025-11-26T10:00:00Z");
        let sent = simulate(&policy(), fresh(t0), t0, plus(t0, 24 * HOUR), MIN);
        let times: Vec<Timestamp> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            [plus(t0, 30 * MIN), plus(t0, 90 * MIN), plus(t0, 150 * MIN)]
        );
        assert_eq!(
            sent.iter().map(|(_, d)| d.number).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        assert!(
            sent.iter()
                .all(|(_, d)| d.counts && !d.expiry_warning && !d.escalate)
        );
    }

    #[test]
    fn max_zero_sends_nothing() {
        let t0 = at("2025-11-26T10:00:00Z");
        let p = ReminderPolicy { max: 0, ..policy() };
        assert!(simulate(&p, fresh(t0), t0, plus(t0, 48 * HOUR), MIN).is_empty());
    }

    #[test]
    fn downtime_gives_one_catch_up_not_a_burst() {
        let t0 = at("2025-11-26T10:00:00Z");
        let p = ReminderPolicy { max: 8, ..policy() };
        let mut s = fresh(t0);
        s.sent = 1;
        s.last_at = Some(plus(t0, 30 * MIN));
        // The daemon was down for a day and comes back.
        let back = plus(t0, 26 * HOUR);
        let sent = simulate(&p, s, back, plus(back, 2 * HOUR), MIN);
        let times: Vec<Timestamp> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(times, [back, plus(back, HOUR), plus(back, 2 * HOUR)]);
        assert_eq!(sent[0].1.number, 2);
    }

    #[test]
    fn an_approval_first_seen_late_is_not_reminded_right_after_its_alert() {
        let t0 = at("2025-11-26T10:00:00Z");
        let mut s = fresh(t0);
        s.first_seen = plus(t0, 5 * HOUR);
        assert_eq!(
            policy().next_regular_at(&s),
            Some(plus(t0, 5 * HOUR + 30 * MIN))
        );
        assert_eq!(policy().due(&s, plus(t0, 5 * HOUR + MIN)), None);
    }

    #[test]
    fn escalation_from_the_fourth_reminder_on() {
        let t0 = at("2025-11-26T10:00:00Z");
        let p = ReminderPolicy {
            max: 6,
            escalate_after: Some(3),
            escalate_mention: Some(Mention::parse("<!subteam^S0PLATFORM>").unwrap()),
            ..policy()
        };
        let sent = simulate(&p, fresh(t0), t0, plus(t0, 24 * HOUR), MIN);
        let flags: Vec<(u32, bool)> = sent.iter().map(|(_, d)| (d.number, d.escalate)).collect();
        assert_eq!(
            flags,
            [
                (1, false),
                (2, false),
                (3, false),
                (4, true),
                (5, true),
                (6, true)
            ]
        );
    }

    #[test]
    fn expiry_warning_is_sent_once_even_after_max() {
        let t0 = at("2025-11-26T10:00:00Z");
        let p = ReminderPolicy {
            expire_warning: Some(Duration::from_secs(2 * HOUR)),
            escalate_after: Some(2),
            ..policy()
        };
        let s = fresh(t0);
        let sent = simulate(&p, s, t0, s.expires_at, MIN);
        assert_eq!(sent.len(), 4, "{sent:?}");
        let (when, warning) = sent[3];
        assert_eq!(when, plus(t0, 7 * 24 * HOUR - 2 * HOUR));
        assert!(warning.expiry_warning && !warning.counts && warning.escalate);
        assert_eq!(warning.number, 3);
        // Nothing at or after expiry.
        assert_eq!(p.due(&s, s.expires_at), None);
    }

    #[test]
    fn a_regular_reminder_inside_the_warning_window_becomes_the_warning() {
        let t0 = at("2025-11-26T10:00:00Z");
        let p = ReminderPolicy {
            after: Duration::from_secs(30 * MIN),
            every: Duration::from_secs(HOUR),
            max: 8,
            expire_warning: Some(Duration::from_secs(2 * HOUR)),
            ..ReminderPolicy::default()
        };
        let mut s = fresh(t0);
        s.expires_at = plus(t0, 3 * HOUR);
        let sent = simulate(&p, s, t0, s.expires_at, MIN);
        // 10:30 regular; 11:00 the warning window opens (warning only); 12:00 regular.
        let summary: Vec<(Timestamp, bool, bool)> = sent
            .iter()
            .map(|(t, d)| (*t, d.counts, d.expiry_warning))
            .collect();
        assert_eq!(
            summary,
            [
                (plus(t0, 30 * MIN), true, false),
                (plus(t0, HOUR), false, true),
                (plus(t0, 2 * HOUR), true, false),
            ]
        );
    }

    /// [`policy`] with up to 8 reminders, held to London office hours.
    fn office_policy() -> ReminderPolicy {
        ReminderPolicy {
            max: 8,
            working_hours: Some(london_office()),
            ..policy()
        }
    }

    #[test]
    fn working_hours_hold_reminders_over_a_weekend_and_release_one() {
        // Waiting since Friday 28 Nov 2025 17:00 GMT; first reminder due 17:30, then 18:30 (held).
        let t0 = at("2025-11-28T17:00:00Z");
        let p = office_policy();
        let sent = simulate(&p, fresh(t0), t0, at("2025-12-01T10:30:00Z"), MIN);
        let times: Vec<Timestamp> = sent.iter().map(|(t, _)| *t).collect();
        assert_eq!(
            times,
            [
                at("2025-11-28T17:30:00Z"),
                // Held all weekend; one reminder at Monday's opening, not a burst.
                at("2025-12-01T09:00:00Z"),
                at("2025-12-01T10:00:00Z"),
            ]
        );
    }

    #[test]
    fn working_hours_across_both_dst_changes() {
        let p = office_policy();
        // Spring: waiting since Friday 28 March 2025 18:00 GMT → Monday 31 March 09:00 BST (08:00Z).
        let t0 = at("2025-03-28T18:00:00Z");
        let sent = simulate(&p, fresh(t0), t0, at("2025-03-31T08:30:00Z"), MIN);
        assert_eq!(sent.first().map(|s| s.0), Some(at("2025-03-31T08:00:00Z")));
        assert_eq!(sent.len(), 1);
        // Autumn: Friday 24 Oct 2025 17:30 BST (16:30Z) waiting; 17:00Z first reminder due at
        // 18:00 BST → held → Monday 27 Oct 09:00 GMT (09:00Z).
        let t0 = at("2025-10-24T16:45:00Z");
        let sent = simulate(&p, fresh(t0), t0, at("2025-10-27T09:30:00Z"), MIN);
        assert_eq!(sent.first().map(|s| s.0), Some(at("2025-10-27T09:00:00Z")));
        assert_eq!(sent.len(), 1);
    }

    #[test]
    fn an_expiry_warning_is_not_held_past_expiry() {
        // Expires Saturday 29 Nov 2025 12:00Z; warning window opens 10:00Z on a Saturday:
        // working hours never open before expiry, so it is sent at once.
        let p = ReminderPolicy {
            max: 0,
            expire_warning: Some(Duration::from_secs(2 * HOUR)),
            working_hours: Some(london_office()),
            ..policy()
        };
        let mut s = fresh(at("2025-11-22T12:00:00Z"));
        s.expires_at = at("2025-11-29T12:00:00Z");
        let due = p.due(&s, at("2025-11-29T10:00:00Z")).unwrap();
        assert!(due.expiry_warning && !due.counts);
        // On a weekday evening with the office opening before expiry, it waits for the office.
        s.expires_at = at("2025-11-27T10:00:00Z"); // Thursday 10:00
        assert_eq!(p.due(&s, at("2025-11-27T07:00:00Z")), None);
        assert!(
            p.due(&s, at("2025-11-27T09:00:00Z"))
                .unwrap()
                .expiry_warning
        );
    }

    #[test]
    fn mentions_are_validated() {
        for ok in [
            "<!subteam^S0123ABC>",
            "<!subteam^S0123ABC|@platform>",
            "<@U0123ABC>",
            "<@W0123ABC>",
            "<!here>",
            "<!channel>",
            "<@U1> <!subteam^S2>",
        ] {
            assert!(Mention::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "@platform",
            "<@platform>",
            "<!subteam^>",
            "<!here",
            "",
            "<!subteam^s0abc>",
            "<#C123>",
            "<@U1><@U2>",
        ] {
            assert!(Mention::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn next_at_tells_status_when_the_next_reminder_goes_out() {
        // Waiting since Friday 28 Nov 2025 17:00 GMT, one reminder sent at 17:30.
        let t0 = at("2025-11-28T17:00:00Z");
        let p = office_policy();
        let mut s = fresh(t0);
        assert_eq!(p.next_at(&s, t0), Some(at("2025-11-28T17:30:00Z")));
        s.sent = 1;
        s.last_at = Some(at("2025-11-28T17:30:00Z"));
        // 18:30 falls after hours: Monday's opening.
        assert_eq!(
            p.next_at(&s, at("2025-11-28T17:31:00Z")),
            Some(at("2025-12-01T09:00:00Z"))
        );
        // The expiry warning comes first when it is sooner.
        let warn = ReminderPolicy {
            expire_warning: Some(Duration::from_secs(2 * HOUR)),
            ..p.clone()
        };
        s.expires_at = at("2025-11-28T20:00:00Z");
        assert_eq!(
            warn.next_at(&s, at("2025-11-28T17:31:00Z")),
            Some(at("2025-11-28T18:00:00Z"))
        );
        // Nothing after expiry, nothing past max.
        assert_eq!(p.next_at(&s, at("2025-11-28T17:31:00Z")), None);
        s.expires_at = plus(t0, 7 * 24 * HOUR);
        s.sent = 8;
        assert_eq!(p.next_at(&s, at("2025-11-28T17:31:00Z")), None);
    }
}
