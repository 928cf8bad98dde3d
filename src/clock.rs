//! Wall-clock time for the daemon's decisions, from one place, so that a test can run the
//! whole loop on tokio's paused clock. Decisions take `now` as an argument; only the loop,
//! the watcher and the deliverer ask a [`Clock`] for it.

use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// The system's wall clock.
    #[default]
    System,
    /// Wall time that moves with tokio's clock (which a test may pause and advance):
    /// `start` at the instant `origin`.
    Tokio { start: Timestamp, origin: Instant },
}

impl Clock {
    /// A clock that reads `start` now and then advances with tokio's clock.
    pub fn tokio_at(start: Timestamp) -> Self {
        Self::Tokio {
            start,
            origin: Instant::now(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match self {
            Self::System => Timestamp::now(),
            Self::Tokio { start, origin } => {
                let elapsed = jiff::SignedDuration::try_from(origin.elapsed())
                    .unwrap_or(jiff::SignedDuration::MAX);
                start.checked_add(elapsed).unwrap_or(Timestamp::MAX)
            }
        }
    }

    /// A wall-clock time as a point on tokio's clock, to sleep until it.
    pub fn instant_of(&self, at: Timestamp) -> Instant {
        let ahead = at.duration_since(self.now());
        Instant::now() + Duration::try_from(ahead).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time() {
        let start = Timestamp::from_second(1_764_148_392).unwrap();
        let clock = Clock::tokio_at(start);
        assert_eq!(clock.now(), start);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now(), start + jiff::SignedDuration::from_secs(90));
        let later = start + jiff::SignedDuration::from_secs(100);
        assert_eq!(
            clock.instant_of(later),
            Instant::now() + Duration::from_secs(10)
        );
    }
}
