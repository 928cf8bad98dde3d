//! The daily digests: which are due, and what each says. One message per destination listing
//! what still waits for it, oldest first, anchored on the oldest; nothing when nothing waits
//! (the day is recorded all the same, so it is decided once).

use jiff::Timestamp;

use crate::config::Config;
use crate::store::{AppParts, Changes, DigestDecision, NewMessage};
use approval_watch_core::model::{MessageKind, OpenApproval};
use approval_watch_core::render;

/// The digests due at `now` and not yet `decided` (route, local day `YYYY-MM-DD`).
pub fn due<E>(
    config: &Config,
    now: Timestamp,
    decided: impl Fn(&str, &str) -> Result<bool, E>,
) -> Result<Vec<(String, String)>, E> {
    let mut due = Vec::new();
    for (route, schedule) in &config.digests {
        if let Some(day) = schedule.due_day(now) {
            let day = day.to_string();
            if !decided(route, &day)? {
                due.push((route.clone(), day));
            }
        }
    }
    Ok(due)
}

/// The decisions for the `due` digests, given the approvals waiting (`open`, any order).
pub fn changes(
    config: &Config,
    due: Vec<(String, String)>,
    mut open: Vec<OpenApproval>,
    now: Timestamp,
) -> Changes {
    open.sort_by_key(|o| (o.approval.waiting_since, o.id));
    let mut changes = Changes::default();
    for (route, day) in due {
        let waiting: Vec<&OpenApproval> = open
            .iter()
            .filter(|o| config.route_for(&o.approval.key.pipeline).name == route)
            .collect();
        let message = waiting.first().map(|oldest| {
            (
                oldest.id,
                NewMessage {
                    kind: MessageKind::Digest,
                    payload: render::digest(&route, &waiting, now),
                    app: AppParts::default(),
                },
            )
        });
        tracing::info!(route = %route, day = %day, waiting = waiting.len(), "daily digest");
        changes.digests.push(DigestDecision {
            route,
            day,
            approvals: waiting.len(),
            message,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::{approval, at, config, open};

    const DIGEST: &str = "[digest]\nat = \"09:30\"\ntimezone = \"UTC\"\n\
                          [[route]]\nname = \"pay\"\npipelines = [\"pay-*\"]\n\
                          webhook_url = \"https://hooks.slack.com/services/T0/B1/Y\"\n";

    #[test]
    fn a_digest_is_due_once_its_time_has_come_unless_decided() {
        let config = config("", DIGEST);
        // at(0) is a Monday, 16:00 UTC.
        let due = due(&config, at(0), |_, _| Ok::<_, ()>(false)).unwrap();
        let day = "2025-11-24".to_owned();
        assert_eq!(
            due,
            [("default".to_owned(), day.clone()), ("pay".into(), day)]
        );
        let decided = due_of(&config, |route, _| route == "pay");
        assert_eq!(decided, ["default"]);
        let early = super::due(&config, at(-7 * 60), |_, _| Ok::<_, ()>(false)).unwrap();
        assert!(early.is_empty(), "09:00: not yet");
        let failed = super::due(&config, at(0), |_, _| Err("locked"));
        assert_eq!(failed, Err("locked"));
    }

    fn due_of(config: &Config, decided: impl Fn(&str, &str) -> bool) -> Vec<String> {
        due(config, at(0), |r, d| Ok::<_, ()>(decided(r, d)))
            .unwrap()
            .into_iter()
            .map(|(route, _)| route)
            .collect()
    }

    #[test]
    fn each_digest_lists_its_routes_approvals_oldest_first() {
        let config = config("", DIGEST);
        let open = vec![
            open(3, approval("pay-api", at(-30))),
            open(1, approval("web-app", at(-10))),
            open(2, approval("pay-web", at(-60))),
        ];
        let due = vec![
            ("default".to_owned(), "2025-11-24".to_owned()),
            ("pay".to_owned(), "2025-11-24".to_owned()),
        ];
        let changes = changes(&config, due, open.clone(), at(0));
        assert!(changes.new.is_empty() && changes.resolved.is_empty());
        let [default, pay] = &changes.digests[..] else {
            panic!("two digests: {:?}", changes.digests);
        };
        assert_eq!((default.route.as_str(), default.approvals), ("default", 1));
        assert_eq!(default.day, "2025-11-24");
        assert_eq!(default.message.as_ref().map(|(id, _)| *id), Some(1));
        assert_eq!((pay.route.as_str(), pay.approvals), ("pay", 2));
        let (anchor, message) = pay.message.as_ref().expect("a message");
        assert_eq!(*anchor, 2, "anchored on the oldest");
        assert_eq!(message.kind, MessageKind::Digest);
        assert_eq!(
            message.payload,
            render::digest("pay", &[&open[2], &open[0]], at(0))
        );
    }

    #[test]
    fn a_digest_with_nothing_waiting_is_decided_without_a_message() {
        let config = config("", DIGEST);
        let due = vec![("pay".to_owned(), "2025-11-24".to_owned())];
        let changes = changes(
            &config,
            due,
            vec![open(1, approval("web-app", at(0)))],
            at(0),
        );
        assert_eq!(changes.digests.len(), 1);
        assert_eq!(changes.digests[0].approvals, 0);
        assert!(changes.digests[0].message.is_none());
    }
}
