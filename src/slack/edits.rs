//! One writer at a time per Slack message. Two parts of the daemon edit an alert: a click
//! (the interim "waiting for CodePipeline to confirm") and the deliverer (the resolution).
//! Slack applies edits in the order they arrive, so a slow interim edit could land after the
//! resolution and leave the alert "waiting" for good. Each writer holds the message's lock
//! while its `chat.update` is in flight; the click, under the lock, first checks that the
//! resolution is not recorded yet.
//!
//! Shared by every clone of one [`super::web_api::SlackApi`], across runtimes (a std mutex,
//! never held over an await; waiters wake on a watch channel).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use approval_watch_core::model::SlackMessage;
use tokio::sync::watch;

/// The messages being edited now, by (channel, ts).
#[derive(Clone, Default)]
pub struct EditLocks {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    held: Mutex<HashSet<(String, String)>>,
    /// Bumped on every release, so a waiter knows to try again.
    released: watch::Sender<u64>,
}

/// The right to edit one message; released when dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct EditGuard {
    inner: Arc<Inner>,
    key: (String, String),
}

impl Drop for EditGuard {
    fn drop(&mut self) {
        self.inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.key);
        self.inner.released.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl EditLocks {
    /// The lock on `message` if nobody holds it.
    pub fn try_lock(&self, message: &SlackMessage) -> Option<EditGuard> {
        let key = (message.channel.clone(), message.ts.clone());
        let fresh = self
            .inner
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        fresh.then(|| EditGuard {
            inner: self.inner.clone(),
            key,
        })
    }

    /// The lock on `message`, waiting for its holder to finish.
    pub async fn lock(&self, message: &SlackMessage) -> EditGuard {
        loop {
            // Subscribed before trying: a release between the try and the wait is not missed.
            let mut released = self.inner.released.subscribe();
            if let Some(guard) = self.try_lock(message) {
                return guard;
            }
            // The sender lives as long as `self`, so this only returns on a release.
            let _ = released.changed().await;
        }
    }

    /// Changes whenever a lock is released (for a waiter that has other work meanwhile).
    pub fn releases(&self) -> watch::Receiver<u64> {
        self.inner.released.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn alert() -> SlackMessage {
        SlackMessage {
            channel: "C1".into(),
            ts: "1.000100".into(),
        }
    }

    #[tokio::test]
    async fn one_writer_per_message_and_a_waiter_goes_on_when_it_is_released() {
        let locks = EditLocks::default();
        let held = locks.try_lock(&alert()).expect("free");
        assert!(locks.try_lock(&alert()).is_none(), "held");
        let other = SlackMessage {
            channel: "C1".into(),
            ts: "1.000200".into(),
        };
        assert!(locks.try_lock(&other).is_some(), "another message is free");
        let releases = locks.releases();
        let waiter = tokio::spawn({
            let locks = locks.clone();
            async move { drop(locks.lock(&alert()).await) }
        });
        // The waiter cannot finish while the lock is held.
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiter got the lock")
            .expect("no panic");
        assert!(releases.has_changed().unwrap_or(false));
        assert!(locks.try_lock(&alert()).is_some(), "free again");
    }
}
