//! The metrics endpoint's connections: at most a fixed number at once. A connection past the
//! cap sheds the oldest one still waiting for its request (an idle or slow client), so such
//! clients cannot starve the endpoint; only when every connection is busy answering is the new
//! one refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio_util::sync::CancellationToken;

/// The open connections, oldest first.
pub struct Slots {
    cap: usize,
    next_id: AtomicU64,
    open: Mutex<Vec<Entry>>,
}

struct Entry {
    id: u64,
    busy: Arc<AtomicBool>,
    shed: CancellationToken,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    id: u64,
    slots: Arc<Slots>,
    /// Set once the request has been read: from then on the connection is not shed.
    pub busy: Arc<AtomicBool>,
    /// Cancelled when a newer connection needs the place.
    pub shed: CancellationToken,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.lock().retain(|e| e.id != self.id);
    }
}

impl Slots {
    pub fn new(cap: usize) -> Arc<Self> {
        Arc::new(Self {
            cap,
            next_id: AtomicU64::new(0),
            open: Mutex::new(Vec::with_capacity(cap)),
        })
    }

    /// Held for a scan of at most `cap` entries, never across an await.
    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a new connection, shedding the oldest idle one at the cap; `None` when
    /// every open connection is busy answering.
    pub fn admit(self: &Arc<Self>) -> Option<Slot> {
        let mut open = self.lock();
        if open.len() >= self.cap {
            let oldest_idle = open.iter().position(|e| !e.busy.load(Ordering::Acquire))?;
            open.remove(oldest_idle).shed.cancel();
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicBool::new(false));
        let shed = CancellationToken::new();
        open.push(Entry {
            id,
            busy: busy.clone(),
            shed: shed.clone(),
        });
        Some(Slot {
            id,
            slots: self.clone(),
            busy,
            shed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_the_cap_the_oldest_idle_connection_is_shed() {
        let slots = Slots::new(3);
        let a = slots.admit().unwrap();
        let b = slots.admit().unwrap();
        let c = slots.admit().unwrap();
        a.busy.store(true, Ordering::Release);
        let d = slots.admit().unwrap();
        assert!(!a.shed.is_cancelled(), "a busy connection is kept");
        assert!(b.shed.is_cancelled(), "the oldest idle one goes");
        assert!(!c.shed.is_cancelled());
        drop(b);
        c.busy.store(true, Ordering::Release);
        d.busy.store(true, Ordering::Release);
        assert!(slots.admit().is_none(), "all busy: refused");
        drop(a);
        assert!(
            slots.admit().is_some(),
            "a closed connection frees its place"
        );
    }
}
