//! Wall-clock time derived from tokio's clock.
//!
//! Billing needs wall time (timestamps stored in the database, shown on the wire) and
//! timers (the next minute boundary). Deriving the former from the latter keeps both on
//! one clock, so tests that pause tokio time move the wall clock too.

use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::{Duration, Instant};

/// A wall clock in unix milliseconds that advances with tokio's (pausable) clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_instant: Instant,
    base_ms: i64,
}

impl Clock {
    /// The system clock, as of now.
    pub fn system() -> Self {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        Self::starting_at(ms)
    }

    /// A clock that reads `ms` now (tests pin the wall time this way).
    pub fn starting_at(ms: i64) -> Self {
        Self {
            base_instant: Instant::now(),
            base_ms: ms,
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        self.base_ms + Instant::now().duration_since(self.base_instant).as_millis() as i64
    }

    /// The tokio instant at which this clock will read `ms` (now, if `ms` is past).
    pub fn instant_at(&self, ms: i64) -> Instant {
        let now = self.now_ms();
        Instant::now() + Duration::from_millis(ms.saturating_sub(now).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advances_with_paused_tokio_time() {
        let c = Clock::starting_at(1_000);
        assert_eq!(c.now_ms(), 1_000);
        tokio::time::sleep(Duration::from_secs(90)).await;
        assert_eq!(c.now_ms(), 91_000);
        assert!(c.instant_at(91_500) > Instant::now());
    }
}
