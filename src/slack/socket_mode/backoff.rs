//! Capped exponential backoff with jitter between connection attempts, so many daemons (or one
//! daemon after Slack's outage) do not reconnect in lockstep. Pure but for [`jitter`].

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

#[derive(Debug, Clone)]
pub(super) struct Backoff {
    base: Duration,
    cap: Duration,
    /// Failed attempts since the last reset.
    attempt: u32,
}

impl Backoff {
    pub(super) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            attempt: 0,
        }
    }

    /// Counts a failed attempt and says how long to wait before the next: the doubling step
    /// (`base`, `2·base`, … up to `cap`), of which the upper half is jitter (`jitter` in 0..1).
    pub(super) fn fail(&mut self, jitter: f64) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        let exponent = self.attempt.saturating_sub(1).min(30);
        let step = self.base.saturating_mul(1 << exponent).min(self.cap);
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.5
        };
        step / 2 + (step / 2).mul_f64(jitter)
    }

    /// Failed attempts since the last reset.
    pub(super) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// A connection lasted: the next failure starts from `base` again.
    pub(super) fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A number in 0..1 that differs between calls and processes (std's hasher keys are random).
pub(super) fn jitter() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(120));
        let lows: Vec<u64> = (0..10).map(|_| b.fail(0.0).as_millis() as u64).collect();
        assert_eq!(
            lows,
            [
                500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
            ]
        );
        assert_eq!(b.attempt(), 10);
        assert_eq!(b.fail(1.0), Duration::from_secs(120));
        for _ in 0..100 {
            assert_eq!(b.fail(f64::NAN), Duration::from_secs(90));
        }
        assert_eq!(b.attempt(), 111);
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.fail(1.0), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..50).map(|_| jitter()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.iter().any(|v| *v != values[0]));
    }
}
