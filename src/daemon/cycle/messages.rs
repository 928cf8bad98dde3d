//! Plan → messages: what a cycle's decisions say in Slack, each rendered for its pipeline's
//! route (mentions, threads, broadcasts). Pure; it stays in the daemon crate because it
//! speaks in the config's routes and the store's rows.

use std::collections::HashSet;

use jiff::Timestamp;

use crate::config::Config;
use crate::store::{AppParts, Changes, NewMessage};
use approval_watch_core::model::MessageKind;
use approval_watch_core::reconcile::Plan;
use approval_watch_core::remind::Mention;
use approval_watch_core::render;

/// Renders the messages a plan causes, each for its pipeline's route. `paused`: the routes
/// whose delivery waits for a person to fix the token or the channel.
pub fn changes(config: &Config, plan: &Plan, now: Timestamp, paused: &HashSet<&str>) -> Changes {
    let message = |pipeline: &str, kind, payload, extra: Option<&Mention>, app| {
        let route = config.route_for(pipeline);
        let mentions: Vec<&Mention> = route.mention.iter().chain(extra).collect();
        NewMessage {
            kind,
            payload: render::with_mentions(payload, &mentions),
            app,
        }
    };
    Changes {
        new: plan
            .new
            .iter()
            .map(|a| {
                let payload = render::alert(a, now);
                (
                    a.clone(),
                    message(
                        &a.key.pipeline,
                        MessageKind::Alert,
                        payload,
                        None,
                        AppParts::default(),
                    ),
                )
            })
            .collect(),
        resolved: plan
            .resolved
            .iter()
            .map(|r| {
                let pipeline = &r.approval.key.pipeline;
                let route = config.route_for(pipeline);
                let told = r.notify && route.notify_resolved;
                // In app mode the alert is edited to show the outcome even when the thread
                // is not told (an edit notifies nobody); an alert never seen stays unsaid.
                let edited = r.notify && route.channel().is_some();
                if !r.notify && paused.contains(route.name.as_str()) {
                    // Its alert waits behind a paused route: once the fix is in, one message
                    // (the alert as it reads resolved) tells the whole story, not silence.
                    let app = AppParts {
                        broadcast: false,
                        reply: true,
                        update: None,
                    };
                    let payload = render::resolved_alert(&r.approval, &r.resolution);
                    let msg = message(pipeline, MessageKind::Resolution, payload, None, app);
                    return (r.id, r.resolution.clone(), Some(msg));
                }
                let msg = (told || edited).then(|| {
                    let payload = render::resolution(&r.approval, &r.resolution);
                    let app = AppParts {
                        broadcast: false,
                        reply: told,
                        update: Some(render::resolved_alert(&r.approval, &r.resolution)),
                    };
                    message(pipeline, MessageKind::Resolution, payload, None, app)
                });
                (r.id, r.resolution.clone(), msg)
            })
            .collect(),
        reminders: plan
            .reminders
            .iter()
            .map(|r| {
                let pipeline = &r.approval.key.pipeline;
                let policy = &config.route_for(pipeline).reminders;
                let escalation = policy.escalate_mention.as_ref().filter(|_| r.due.escalate);
                let payload = render::reminder(&r.approval, &r.due, now);
                // Loud reminders show in the channel too, not only in the thread.
                let app = AppParts {
                    broadcast: r.due.escalate || r.due.expiry_warning,
                    ..AppParts::default()
                };
                (
                    r.id,
                    r.due,
                    message(pipeline, MessageKind::Reminder, payload, escalation, app),
                )
            })
            .collect(),
        digests: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::cycle::fixtures::{app_config, approval, at, config};
    use approval_watch_core::model::{Outcome, Resolution};
    use approval_watch_core::reconcile::{Reminder, Resolved};
    use approval_watch_core::remind::ReminderDue;

    /// Nothing paused.
    fn changes(config: &Config, plan: &Plan, now: Timestamp) -> Changes {
        super::changes(config, plan, now, &HashSet::new())
    }

    fn resolved(notify: bool) -> Plan {
        Plan {
            resolved: vec![Resolved {
                id: 7,
                approval: approval("web-app", at(0)),
                resolution: Resolution {
                    outcome: Outcome::Approved,
                    by: None,
                    comment: None,
                    at: at(5),
                },
                notify,
            }],
            ..Plan::default()
        }
    }

    fn reminder(escalate: bool, expiry_warning: bool) -> Plan {
        Plan {
            reminders: vec![Reminder {
                id: 7,
                approval: approval("web-app", at(0)),
                due: ReminderDue {
                    number: 1,
                    counts: true,
                    expiry_warning,
                    escalate,
                },
            }],
            ..Plan::default()
        }
    }

    #[test]
    fn a_new_approval_is_an_alert_with_its_routes_mention() {
        let plan = Plan {
            new: vec![approval("web-app", at(0))],
            ..Plan::default()
        };
        let plain = changes(&config("", ""), &plan, at(1));
        let mentioned = changes(&config("mention = \"<!here>\"", ""), &plan, at(1));
        let (a, message) = &plain.new[0];
        assert_eq!(a, &plan.new[0]);
        assert_eq!(message.kind, MessageKind::Alert);
        assert_eq!(message.payload, render::alert(&plan.new[0], at(1)));
        assert_eq!(message.app, AppParts::default());
        assert_ne!(mentioned.new[0].1.payload, message.payload);
        assert!(plain.resolved.is_empty() && plain.reminders.is_empty());
        assert!(plain.digests.is_empty());
    }

    #[test]
    fn a_resolution_is_told_when_the_route_says_so_and_the_alert_was_seen() {
        let told = changes(&config("", ""), &resolved(true), at(5));
        let (id, resolution, message) = &told.resolved[0];
        assert_eq!((*id, resolution.outcome), (7, Outcome::Approved));
        let message = message.as_ref().expect("told");
        assert_eq!(message.kind, MessageKind::Resolution);
        assert!(message.app.reply);
        assert!(message.app.update.is_some());

        let unseen = changes(&config("", ""), &resolved(false), at(5));
        assert!(
            unseen.resolved[0].2.is_none(),
            "an alert never seen stays unsaid"
        );
        let quiet = changes(
            &config("notify_resolved = false", ""),
            &resolved(true),
            at(5),
        );
        assert!(
            quiet.resolved[0].2.is_none(),
            "a webhook cannot edit: nothing"
        );
    }

    #[test]
    fn in_app_mode_an_untold_resolution_still_edits_the_alert() {
        let quiet = app_config("notify_resolved = false", "");
        let edited = changes(&quiet, &resolved(true), at(5));
        let message = edited.resolved[0].2.as_ref().expect("edited");
        assert!(!message.app.reply, "the thread is not told");
        assert!(message.app.update.is_some());
        let unseen = changes(&quiet, &resolved(false), at(5));
        assert!(unseen.resolved[0].2.is_none());
    }

    #[test]
    fn behind_a_paused_route_an_unannounced_resolution_is_one_message_of_its_own() {
        let config = app_config("", "");
        let paused = HashSet::from(["default"]);
        let behind = super::changes(&config, &resolved(false), at(5), &paused);
        let message = behind.resolved[0].2.as_ref().expect("told once");
        assert_eq!(message.kind, MessageKind::Resolution);
        let r = &resolved(false).resolved[0];
        assert_eq!(
            message.payload,
            render::resolved_alert(&r.approval, &r.resolution)
        );
        assert!(message.app.reply && message.app.update.is_none());
        let other = HashSet::from(["payments"]);
        let elsewhere = super::changes(&config, &resolved(false), at(5), &other);
        assert!(elsewhere.resolved[0].2.is_none());
    }

    #[test]
    fn loud_reminders_broadcast_and_only_escalations_mention() {
        let reminders = "[reminders]\nafter = \"30m\"\nevery = \"1h\"\nmax = 3\n\
                         escalate_after = 1\nescalate_mention = \"<!subteam^S0PLATFORM>\"\n";
        let config = config("", reminders);
        let quiet = changes(&config, &reminder(false, false), at(60));
        let (id, due, message) = &quiet.reminders[0];
        assert_eq!((*id, due.number), (7, 1));
        assert_eq!(message.kind, MessageKind::Reminder);
        assert!(!message.app.broadcast);
        let escalated = changes(&config, &reminder(true, false), at(60));
        assert!(escalated.reminders[0].2.app.broadcast);
        let escalation = render::with_mentions(
            render::reminder(
                &approval("web-app", at(0)),
                &escalated.reminders[0].1,
                at(60),
            ),
            &[config
                .route_for("web-app")
                .reminders
                .escalate_mention
                .as_ref()
                .unwrap()],
        );
        assert_eq!(escalated.reminders[0].2.payload, escalation);
        let warning = changes(&config, &reminder(false, true), at(60));
        assert!(warning.reminders[0].2.app.broadcast);
        assert_ne!(warning.reminders[0].2.payload, escalation);
    }
}
