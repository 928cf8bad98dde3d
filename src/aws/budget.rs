//! A request budget per (account, region): a token bucket shared by every operation, a cap on
//! calls in flight, and AIMD on throttling — halve the rate when AWS says "Rate exceeded",
//! win it back slowly on success. Staying under a budget beats discovering the limit, and
//! the deploy tooling sharing the account is spared.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use crate::config::Limits;

/// Never slower than this, however hard AWS throttles.
const MIN_RATE: f64 = 0.5;
/// Each success wins back this share of the configured rate: from half to full takes
/// about 50 successful calls.
const RECOVERY_STEP: f64 = 0.01;
/// On throttling the rate is multiplied by this.
const DECREASE: f64 = 0.5;
/// Throttling answers within this long of a decrease are the same episode (the calls that
/// were already in flight): one decrease for them all, as TCP does once per round trip.
const DECREASE_HOLD: Duration = Duration::from_secs(1);

/// A token bucket `max_concurrency` deep (at most the rate): `tokens` as of `at`, the start
/// of the last call reserved. Each caller reserves its start under the lock and sleeps until
/// then, so waiters queue in order instead of all waking for the same token. After an idle
/// period a burst of up to the depth starts at once (a small fleet's first cycle is not
/// paced one call per 1/rate); then calls are paced at the rate. `recent` holds every start
/// of the last second, so no one-second window ever holds more calls than the rate.
#[derive(Debug)]
struct Bucket {
    /// The rate in force now (≤ the configured one).
    rate: f64,
    tokens: f64,
    at: Instant,
    /// Starts reserved within the last second, oldest first.
    recent: std::collections::VecDeque<Instant>,
    last_decrease: Option<Instant>,
    /// In a throttling episode: logged once when it starts and once when it ends.
    throttled: bool,
}

/// Counters for logs, metrics and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStats {
    pub calls: u64,
    pub throttled: u64,
}

#[derive(Debug)]
pub struct Budget {
    name: String,
    limits: Limits,
    bucket: Mutex<Bucket>,
    in_flight: Semaphore,
    stats: Mutex<BudgetStats>,
}

/// Held while a call is in flight.
pub struct Permit<'a> {
    _slot: Option<SemaphorePermit<'a>>,
}

impl Budget {
    pub fn new(name: impl Into<String>, limits: Limits) -> Self {
        let rate = limits.requests_per_second.max(MIN_RATE);
        Self {
            name: name.into(),
            limits: Limits {
                requests_per_second: rate,
                max_concurrency: limits.max_concurrency.max(1),
            },
            bucket: Mutex::new(Bucket {
                rate,
                // Full: the first calls start at once.
                tokens: f64::INFINITY,
                at: Instant::now(),
                recent: std::collections::VecDeque::new(),
                last_decrease: None,
                throttled: false,
            }),
            in_flight: Semaphore::new(limits.max_concurrency.max(1)),
            stats: Mutex::new(BudgetStats::default()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The rate in force now.
    pub fn current_rate(&self) -> f64 {
        self.bucket
            .lock()
            .map(|b| b.rate)
            .unwrap_or(self.limits.requests_per_second)
    }

    pub fn stats(&self) -> BudgetStats {
        self.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Waits for a slot and a token.
    pub async fn acquire(&self) -> Permit<'_> {
        // The semaphore is never closed, so this only fails if it were; then go unlimited.
        let slot = self.in_flight.acquire().await.ok();
        let depth = self.burst_depth();
        let start = self
            .bucket
            .lock()
            .ok()
            .map(|mut b| b.reserve(Instant::now(), depth));
        if let Some(start) = start {
            tokio::time::sleep_until(start).await;
        }
        if let Ok(mut s) = self.stats.lock() {
            s.calls += 1;
        }
        Permit { _slot: slot }
    }

    /// AWS answered `ThrottlingException`: halve the rate, once for all the calls that were
    /// in flight together.
    pub fn throttled(&self) {
        if let Ok(mut s) = self.stats.lock() {
            s.throttled += 1;
        }
        let Ok(mut b) = self.bucket.lock() else {
            return;
        };
        let now = Instant::now();
        if b.last_decrease
            .is_some_and(|at| now.duration_since(at) < DECREASE_HOLD)
        {
            return;
        }
        b.last_decrease = Some(now);
        b.rate = (b.rate * DECREASE).max(MIN_RATE);
        // No call before a full interval at the new rate (those already reserved keep theirs).
        let gap = now + Duration::from_secs_f64(1.0 / b.rate);
        if gap > b.at {
            b.at = gap;
            b.tokens = 0.0;
        }
        if !b.throttled {
            b.throttled = true;
            tracing::warn!(
                budget = %self.name,
                rate = format!("{:.1}", b.rate),
                configured = self.limits.requests_per_second,
                "AWS is throttling; slowing down (requests per second) and recovering slowly"
            );
        }
    }

    /// A call went through: win back a little of the rate.
    pub fn succeeded(&self) {
        let Ok(mut b) = self.bucket.lock() else {
            return;
        };
        let max = self.limits.requests_per_second;
        if b.rate < max {
            b.rate = (b.rate + max * RECOVERY_STEP).min(max);
        }
        if b.throttled && b.rate >= max {
            b.throttled = false;
            tracing::info!(budget = %self.name, rate = max, "AWS throttling over; back to the configured rate");
        }
    }

    /// How many calls may start at once after an idle period: `max_concurrency`, but never
    /// more than the rate allows in one second.
    fn burst_depth(&self) -> usize {
        let per_second = self.limits.requests_per_second.floor().max(1.0) as usize;
        self.limits.max_concurrency.min(per_second).max(1)
    }

    /// How long `calls` take at the configured rate.
    pub fn time_for(&self, calls: usize) -> Duration {
        Duration::from_secs_f64(calls as f64 / self.limits.requests_per_second)
    }
}

impl Bucket {
    /// Reserves the start of one call at or after `now` and returns it.
    fn reserve(&mut self, now: Instant, depth: usize) -> Instant {
        let depth = depth as f64;
        let from = self.at.max(now);
        let refilled =
            (self.tokens + from.duration_since(self.at).as_secs_f64() * self.rate).min(depth);
        let mut start = if refilled >= 1.0 {
            self.tokens = refilled - 1.0;
            from
        } else {
            self.tokens = 0.0;
            from + Duration::from_secs_f64((1.0 - refilled) / self.rate)
        };
        // No one-second window may hold more starts than the rate in force.
        let cap = (self.rate.floor() as usize).max(1);
        while self
            .recent
            .front()
            .is_some_and(|t| start.duration_since(*t) >= Duration::from_secs(1))
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= cap
            && let Some(t) = self.recent.get(self.recent.len() - cap)
            && *t + Duration::from_secs(1) > start
        {
            // Held back: the bucket is empty at the new start, not refilled meanwhile, so
            // the calls behind do not pile up into a burst.
            start = *t + Duration::from_secs(1);
            self.tokens = 0.0;
        }
        self.at = start;
        self.recent.push_back(start);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget of `rate` calls a second, `concurrency` deep.
    fn budget(rate: f64, concurrency: usize) -> Budget {
        Budget::new(
            "t",
            Limits {
                requests_per_second: rate,
                max_concurrency: concurrency,
            },
        )
    }

    /// The most calls that started within any one second.
    fn most_in_one_second(times: &[Instant]) -> usize {
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|u| u.duration_since(times[i]) < Duration::from_secs(1))
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    #[tokio::test(start_paused = true)]
    async fn after_an_idle_period_a_burst_of_max_concurrency_starts_at_once() {
        let budget = budget(10.0, 4);
        let start = Instant::now();
        for _ in 0..4 {
            drop(budget.acquire().await);
        }
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst of 4");
        drop(budget.acquire().await);
        assert_eq!(start.elapsed(), Duration::from_millis(100), "then paced");
        // Idle for a while: the bucket fills again, to 4 and no more.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let again = Instant::now();
        for _ in 0..4 {
            drop(budget.acquire().await);
        }
        assert_eq!(again.elapsed(), Duration::ZERO);
        drop(budget.acquire().await);
        assert_eq!(again.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_never_put_more_than_the_rate_in_any_second() {
        let budget = budget(10.0, 8);
        let mut times = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            drop(budget.acquire().await);
            times.push(Instant::now());
            // Pauses now and then let the bucket refill between bursts.
            if times.len() % 13 == 0 {
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        let most = most_in_one_second(&times);
        assert!(most <= 10, "{most} calls in one second");
        // Not slower than needed either: 3 s of the 5 are not pauses, at 10 a second.
        assert!(times.len() >= 30, "{} calls in 5 s", times.len());
    }

    #[tokio::test(start_paused = true)]
    async fn paces_evenly_at_the_rate() {
        let budget = budget(20.0, 8);
        let start = Instant::now();
        for _ in 0..41 {
            drop(budget.acquire().await);
        }
        // The first 8 at once, then paced; no second holds more than 20: the 41st call
        // starts 2 s after the first.
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(1990) && elapsed <= Duration::from_millis(2010),
            "{elapsed:?}"
        );
        assert_eq!(budget.stats().calls, 41);
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_of_one_second_exceeds_rate_plus_one() {
        let budget = budget(20.0, 8);
        let mut times = Vec::new();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(3) {
            drop(budget.acquire().await);
            times.push(Instant::now());
        }
        let most = most_in_one_second(&times);
        assert!(most <= 21, "{most} calls in one second");
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_halves_and_success_recovers_slowly() {
        let budget = budget(10.0, 8);
        budget.throttled();
        assert_eq!(budget.current_rate(), 5.0);
        // The other calls of the same burst: no further decrease.
        budget.throttled();
        budget.throttled();
        assert_eq!(budget.current_rate(), 5.0);
        tokio::time::advance(DECREASE_HOLD).await;
        budget.throttled();
        assert_eq!(budget.current_rate(), 2.5);
        for _ in 0..10 {
            budget.succeeded();
        }
        assert!((budget.current_rate() - 3.5).abs() < 1e-9);
        for _ in 0..100 {
            budget.succeeded();
        }
        assert_eq!(budget.current_rate(), 10.0);
        for _ in 0..20 {
            tokio::time::advance(DECREASE_HOLD).await;
            budget.throttled();
        }
        assert_eq!(budget.current_rate(), MIN_RATE);
        assert_eq!(budget.stats().throttled, 24);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_is_capped() {
        let budget = std::sync::Arc::new(budget(1000.0, 2));
        let a = budget.acquire().await;
        let b = budget.acquire().await;
        let third = {
            let budget = budget.clone();
            tokio::spawn(async move {
                let _p = budget.acquire().await;
            })
        };
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!third.is_finished());
        drop(a);
        third.await.unwrap();
        drop(b);
    }
}
