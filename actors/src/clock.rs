//! Wall-clock time derived from tokio's clock.
//!
//! Billing needs wall time (timestamps stored in the database, shown on the wire) and
//! timers (the next minute boundary). Deriving the former from the latter keeps both on
//! one clock, so tests that pause tokio time move the wall clock too.
//!
//! Whole-app tests cannot pause tokio time (SQLite runs on a worker thread, so the
//! runtime looks idle during a query and paused time jumps). They run on a
//! [`Clock::manual`] clock instead and [`Clock::advance`] it past a rule's limit (a
//! captcha's lifetime, a token's ttl, an order's expiry) rather than sleeping through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::time::{Duration, Instant};

/// A wall clock in unix milliseconds that advances with tokio's (pausable) clock, plus
/// whatever a test moved it forward by hand.
#[derive(Debug, Clone)]
pub struct Clock {
    base_instant: Instant,
    base_ms: i64,
    /// Milliseconds added by [`Clock::advance`] (shared by every copy of a manual clock;
    /// none on the system clock).
    skipped: Option<Arc<AtomicI64>>,
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
            skipped: None,
        }
    }

    /// A clock that reads `ms` now, runs on from there and can be moved forward by hand
    /// ([`Clock::advance`]); every clone moves with it. For tests.
    pub fn manual(ms: i64) -> Self {
        Self {
            skipped: Some(Arc::new(AtomicI64::new(0))),
            ..Self::starting_at(ms)
        }
    }

    /// Moves a [`Clock::manual`] clock (and every clone of it) forward by `by`: what is
    /// read from it afterwards is that much later. Timers already set on tokio's clock
    /// are not woken early; anything that reads the time when asked (captcha lifetimes,
    /// token ttls, order expiry, a session's end) sees the jump at once, and billing at
    /// its next wake. Does nothing on other clocks.
    pub fn advance(&self, by: Duration) {
        if let Some(s) = &self.skipped {
            s.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    /// Unix milliseconds now.
    pub fn now_ms(&self) -> i64 {
        let skipped = self
            .skipped
            .as_ref()
            .map_or(0, |s| s.load(Ordering::SeqCst));
        self.base_ms + Instant::now().duration_since(self.base_instant).as_millis() as i64 + skipped
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

    #[tokio::test(start_paused = true)]
    async fn a_manual_clock_moves_forward_by_hand_with_all_its_clones() {
        let c = Clock::manual(1_000);
        let copy = c.clone();
        c.advance(Duration::from_millis(2_500));
        assert_eq!(copy.now_ms(), 3_500, "a clone sees the jump");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(c.now_ms(), 4_500, "and still runs with tokio's clock");
        assert_eq!(c.instant_at(4_000), Instant::now(), "a past time is now");
        let system = Clock::starting_at(1_000);
        system.advance(Duration::from_secs(60));
        assert_eq!(system.now_ms(), 1_000, "other clocks are not moved");
    }
}
