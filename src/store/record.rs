//! A cycle's decisions and the messages they cause, applied in one transaction across the
//! tables: a crash leaves either all of a cycle or none of it.

use jiff::Timestamp;

use approval_watch_core::model::{Approval, Resolution};
use approval_watch_core::remind::ReminderDue;

use super::digests::DigestDecision;
use super::outbox::{self, NewMessage};
use super::{Store, StoreError, approvals, digests};

/// Everything one cycle records, applied in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    pub new: Vec<(Approval, NewMessage)>,
    /// (approval id, how it resolved, the message to send if any).
    pub resolved: Vec<(i64, Resolution, Option<NewMessage>)>,
    pub reminders: Vec<(i64, ReminderDue, NewMessage)>,
    pub digests: Vec<DigestDecision>,
}

impl Store {
    /// Records a cycle's decisions and the messages they cause, atomically.
    pub fn record(&mut self, changes: &Changes, now: Timestamp) -> Result<(), StoreError> {
        let now_ms = now.as_millisecond();
        let sql = StoreError::sqlite(&self.path);
        let tx = self.conn.transaction().map_err(sql)?;
        for (id, resolution, message) in &changes.resolved {
            approvals::resolve(&tx, *id, resolution).map_err(sql)?;
            outbox::drop_undelivered(&tx, *id).map_err(sql)?;
            if let Some(message) = message {
                outbox::insert_message(&tx, *id, message, now_ms).map_err(sql)?;
            }
        }
        for (id, due, message) in &changes.reminders {
            if approvals::remind(&tx, *id, due, now_ms).map_err(sql)? {
                outbox::insert_message(&tx, *id, message, now_ms).map_err(sql)?;
            }
        }
        for (approval, message) in &changes.new {
            if let Some(id) = approvals::insert(&tx, approval, now_ms).map_err(sql)? {
                outbox::insert_message(&tx, id, message, now_ms).map_err(sql)?;
            }
        }
        for d in &changes.digests {
            let inserted = digests::insert(&tx, d, now_ms).map_err(sql)?;
            if let (true, Some((anchor, message))) = (inserted, &d.message) {
                outbox::insert_message(&tx, *anchor, message, now_ms).map_err(sql)?;
            }
        }
        tx.commit().map_err(sql)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use approval_watch_core::model::{ApprovalKey, MessageKind, Outcome};
    use rusqlite::params;

    use super::*;
    use crate::store::testing::{approval, key, message, now, store_with_alerts, temp_db};

    /// Reads a resolution back.
    fn outcome_of(store: &Store, key: &ApprovalKey) -> Result<Option<Outcome>, StoreError> {
        let Some(id) = approvals::id_of(&store.conn, key).map_err(|e| store.sql(e))? else {
            return Ok(None);
        };
        let outcome: Option<String> = store
            .conn
            .query_row(
                "SELECT outcome FROM approvals WHERE id = ?1",
                params![id],
                |row| row.get(0),
            )
            .map_err(|e| store.sql(e))?;
        Ok(outcome.as_deref().and_then(Outcome::parse))
    }

    #[test]
    fn records_once_and_survives_reopen() {
        let (_dir, path) = temp_db("state.db");
        let mut store = Store::open(&path).unwrap();
        let changes = Changes {
            new: vec![(approval("t1"), message(MessageKind::Alert))],
            resolved: vec![],
            reminders: vec![],
            digests: vec![],
        };
        store.record(&changes, now()).unwrap();
        // The same approval again (a race, a replay): the unique key keeps one row, one message.
        store.record(&changes, now()).unwrap();
        assert_eq!(store.count_pending().unwrap(), 1);
        let open = store.open_approvals().unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].approval, approval("t1"));
        assert!(!open[0].alert_delivered);
        store.close().unwrap();

        let store = Store::open(&path).unwrap();
        let msg = store.pending(1).unwrap().into_iter().next().unwrap();
        assert_eq!(msg.kind, MessageKind::Alert);
        assert_eq!(msg.key, key("t1"));
        store.mark_delivered(msg.id, now()).unwrap();
        assert!(store.pending(1).unwrap().into_iter().next().is_none());
        assert!(store.open_approvals().unwrap()[0].alert_delivered);
        assert_eq!(
            store.known([&key("t1"), &key("t2")]).unwrap(),
            HashSet::from([key("t1")])
        );
        assert_eq!(store.open_approvals().unwrap()[0].messages_pending, 0);
    }

    #[test]
    fn resolving_drops_undelivered_messages() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("s.db")).unwrap();
        store
            .record(
                &Changes {
                    new: vec![(approval("t1"), message(MessageKind::Alert))],
                    resolved: vec![],
                    reminders: vec![],
                    digests: vec![],
                },
                now(),
            )
            .unwrap();
        let id = store.open_approvals().unwrap()[0].id;
        let resolution = Resolution {
            outcome: Outcome::Approved,
            by: Some("arn:aws:iam::1:user/bob".into()),
            comment: None,
            at: now(),
        };
        store
            .record(
                &Changes {
                    new: vec![],
                    resolved: vec![(id, resolution, None)],
                    reminders: vec![],
                    digests: vec![],
                },
                now(),
            )
            .unwrap();
        assert_eq!(store.count_pending().unwrap(), 0);
        assert!(store.open_approvals().unwrap().is_empty());
        assert_eq!(
            outcome_of(&store, &key("t1")).unwrap(),
            Some(Outcome::Approved)
        );
    }

    #[test]
    fn reminders_are_counted_and_the_expiry_warning_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = store_with_alerts(dir.path(), &["t1"], "");
        let id = store.open_approvals().unwrap()[0].id;
        let regular = ReminderDue {
            number: 1,
            counts: true,
            expiry_warning: false,
            escalate: false,
        };
        let warning = ReminderDue {
            number: 1,
            counts: false,
            expiry_warning: true,
            escalate: false,
        };
        let later = now()
            .checked_add(jiff::SignedDuration::from_hours(1))
            .unwrap();
        for (due, at) in [(regular, now()), (warning, later)] {
            let changes = Changes {
                reminders: vec![(id, due, message(MessageKind::Reminder))],
                ..Changes::default()
            };
            store.record(&changes, at).unwrap();
        }
        let open = &store.open_approvals().unwrap()[0];
        assert_eq!(open.reminders_sent, 1);
        assert_eq!(open.last_reminder_at, Some(later));
        assert!(open.expiry_warned);
        assert_eq!(store.open_approvals().unwrap()[0].reminders_sent, 1);
        assert_eq!(store.count_pending().unwrap(), 3);
    }
}
