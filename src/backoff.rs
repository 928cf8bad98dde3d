//! The one retry rhythm: capped exponential backoff with jitter. The step is `base`, `2·base`,
//! `4·base`, … up to `cap`, so a short blip costs seconds and a long outage costs the other side
//! little; the jitter keeps many retries (or many daemons) from lining up. Slack deliveries,
//! Socket Mode reconnects and AWS call retries each pick a base, a cap and a [`Jitter`].

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How much of each step is left to chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exactly the step.
    None,
    /// Between half the step and the step.
    UpperHalf,
    /// Between half and one and a half steps.
    Spread,
}

/// A capped, jittered exponential backoff (a rule; [`Streak`] counts the failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    jitter: Jitter,
}

impl Backoff {
    /// A `cap` below `base` counts as `base`.
    pub const fn new(base: Duration, cap: Duration, jitter: Jitter) -> Self {
        Self { base, cap, jitter }
    }

    /// The wait before the next try, after `failures_before` failures in a row before the one
    /// just seen (0 on the first failure).
    pub fn wait(&self, failures_before: u32) -> Duration {
        let chance = match self.jitter {
            Jitter::None => 0.0,
            Jitter::UpperHalf | Jitter::Spread => random(),
        };
        self.wait_with(failures_before, chance)
    }

    /// [`Backoff::wait`] with the chance given: `chance` in 0..1 picks where in the jitter's
    /// range the wait falls (anything else counts as the middle).
    pub fn wait_with(&self, failures_before: u32, chance: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1 << failures_before.min(30))
            .min(self.cap.max(self.base));
        let chance = if chance.is_finite() {
            chance.clamp(0.0, 1.0)
        } else {
            0.5
        };
        match self.jitter {
            Jitter::None => step,
            Jitter::UpperHalf => step / 2 + (step / 2).mul_f64(chance),
            Jitter::Spread => step / 2 + step.mul_f64(chance),
        }
    }
}

/// Failures in a row under one [`Backoff`]; a success resets it.
#[derive(Debug, Clone)]
pub struct Streak {
    backoff: Backoff,
    failures: u32,
}

impl Streak {
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failures: 0,
        }
    }

    /// Counts a failure and says how long to wait before the next try.
    pub fn fail(&mut self) -> Duration {
        let chance = random();
        self.fail_with(chance)
    }

    /// [`Streak::fail`] with the chance given (see [`Backoff::wait_with`]).
    pub fn fail_with(&mut self, chance: f64) -> Duration {
        let wait = self.backoff.wait_with(self.failures, chance);
        self.failures = self.failures.saturating_add(1);
        wait
    }

    /// Failed attempts since the last reset.
    pub fn attempt(&self) -> u32 {
        self.failures
    }

    /// It worked: the next failure starts from `base` again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// A number in 0..1 that differs between calls and processes (std's hasher keys are random).
fn random() -> f64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(0);
    (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn without_jitter_the_step_doubles_up_to_the_cap() {
        let b = Backoff::new(secs(5), secs(300), Jitter::None);
        let waits: Vec<u64> = (0..10).map(|n| b.wait(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        assert_eq!(b.wait(u32::MAX), secs(300));
        assert_eq!(
            b.wait_with(3, 1.0),
            secs(40),
            "no jitter, whatever the chance"
        );
        // A cap below the base is the base.
        assert_eq!(
            Backoff::new(secs(5), secs(1), Jitter::None).wait(4),
            secs(5)
        );
    }

    #[test]
    fn upper_half_jitter_waits_between_half_the_step_and_the_step() {
        let mut s = Streak::new(Backoff::new(secs(1), secs(120), Jitter::UpperHalf));
        let lows: Vec<u64> = (0..10)
            .map(|_| s.fail_with(0.0).as_millis() as u64)
            .collect();
        assert_eq!(
            lows,
            [
                500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000
            ]
        );
        assert_eq!(s.attempt(), 10);
        assert_eq!(s.fail_with(1.0), secs(120));
        for _ in 0..100 {
            assert_eq!(s.fail_with(f64::NAN), secs(90));
        }
        assert_eq!(s.attempt(), 111);
        s.reset();
        assert_eq!(s.attempt(), 0);
        assert_eq!(s.fail_with(1.0), secs(1));
        let wait = s.fail();
        assert!((secs(1)..=secs(2)).contains(&wait), "{wait:?}");
    }

    #[test]
    fn spread_jitter_waits_half_to_one_and_a_half_steps() {
        let b = Backoff::new(
            Duration::from_millis(100),
            Duration::from_millis(6400),
            Jitter::Spread,
        );
        assert_eq!(b.wait_with(0, 0.0), Duration::from_millis(50));
        assert_eq!(b.wait_with(0, 1.0), Duration::from_millis(150));
        assert_eq!(b.wait_with(2, 0.5), Duration::from_millis(400));
        assert_eq!(b.wait_with(9, 0.0), Duration::from_millis(3200));
        assert_eq!(b.wait_with(9, 1.0), Duration::from_millis(9600));
        for n in 0..8 {
            let wait = b.wait(n);
            let step = Duration::from_millis(100 << n.min(6));
            assert!(wait >= step / 2 && wait <= step * 3 / 2, "{n}: {wait:?}");
        }
    }

    #[test]
    fn the_chance_stays_in_range_and_varies() {
        let values: Vec<f64> = (0..50).map(|_| random()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        assert!(values.iter().any(|v| *v != values[0]));
    }
}
