//! Remembers what was warned about, so a lasting problem is logged once, not every cycle.

use std::collections::BTreeSet;
use std::sync::Mutex;

pub struct WarnOnce<K>(Mutex<BTreeSet<K>>);

impl<K: Ord> WarnOnce<K> {
    pub const fn new() -> Self {
        Self(Mutex::new(BTreeSet::new()))
    }

    /// True the first time `key` is seen (since it was last cleared): warn then.
    pub fn first(&self, key: K) -> bool {
        // A poisoned lock only costs a repeated warning.
        self.0.lock().map_or(true, |mut set| set.insert(key))
    }

    /// The problem is over: the next one is warned about again. True if it was remembered.
    pub fn clear(&self, key: &K) -> bool {
        self.0.lock().is_ok_and(|mut set| set.remove(key))
    }
}

impl<K: Ord> Default for WarnOnce<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_once_per_key_until_cleared() {
        let once = WarnOnce::new();
        assert!(once.first("web-app"));
        assert!(!once.first("web-app"));
        assert!(once.first("api"));
        assert!(once.clear(&"web-app"));
        assert!(!once.clear(&"web-app"));
        assert!(once.first("web-app"));
    }
}
