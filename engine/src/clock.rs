//! The wall clock that schedules, durable timers and wait timeouts read, behind a trait so
//! that tests can set the time instead of sleeping through it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;

    /// Completes once [`Clock::now`] has reached `deadline`. Callers read the time again
    /// afterwards, because a clock may also wake them early.
    fn sleep_until(&self, deadline: DateTime<Utc>)
    -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        // A negative span means the deadline has passed.
        let wait = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// A clock that moves only when a test sets or advances it, so that tests step through
/// ticks without waiting for them. Sleepers wake as soon as the time reaches their deadline.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: watch::Sender::new(start),
        }
    }

    /// Sets the time. Setting it backwards is allowed, as a wall clock may jump back.
    pub fn set(&self, now: DateTime<Utc>) {
        self.now.send_replace(now);
    }

    /// Moves the time forward by `step`.
    pub fn advance(&self, step: Duration) {
        let step = chrono::Duration::from_std(step).unwrap_or(chrono::Duration::MAX);
        self.now.send_modify(|now| *now += step);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut changes = self.now.subscribe();
        Box::pin(async move {
            // `wait_for` checks the current value first, then each change. Its error means
            // the sender was dropped, which cannot happen while `self` is borrowed.
            let _ = changes.wait_for(|now| *now >= deadline).await;
        })
    }
}

/// The system clock plus an offset that tests move forward. Unlike [`ManualClock`] it keeps
/// running, so work that the database stamps with its own `now()` stays due.
#[derive(Debug, Clone, Default)]
pub struct OffsetClock {
    offset_ms: Arc<AtomicI64>,
}

impl OffsetClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves this clock, and every clone of it, forward.
    pub fn advance(&self, by: Duration) {
        let ms = by.as_millis().min(i64::MAX as u128) as i64;
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed));
        Utc::now()
            .checked_add_signed(offset)
            .unwrap_or_else(far_future)
    }

    fn sleep_until(
        &self,
        deadline: DateTime<Utc>,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let wait = (deadline - self.now()).to_std().unwrap_or(Duration::ZERO);
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Returns the time `duration` after the clock's now; durations past the year 9999 end
/// there.
pub(crate) fn after(clock: &dyn Clock, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|duration| clock.now().checked_add_signed(duration))
        .map_or_else(far_future, |at| at.min(far_future()))
}

/// Returns the latest time a wait may end: the last day of the year 9999.
pub(crate) fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_214_400, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_advanced() {
        let start = DateTime::<Utc>::from_timestamp(1_000_000, 0).expect("valid timestamp");
        let clock = ManualClock::new(start);
        let deadline = start + chrono::Duration::seconds(5);

        let mut sleep = clock.sleep_until(deadline);
        assert!(
            futures::poll!(&mut sleep).is_pending(),
            "a sleeper waits while the clock is before its deadline"
        );
        clock.advance(Duration::from_secs(4));
        assert!(futures::poll!(&mut sleep).is_pending());
        clock.advance(Duration::from_secs(1));
        assert!(
            futures::poll!(&mut sleep).is_ready(),
            "a sleeper wakes once the clock reaches its deadline"
        );
        assert_eq!(clock.now(), deadline);
    }

    #[test]
    fn offset_clock_moves_every_clone() {
        let clock = OffsetClock::new();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(Duration::from_secs(3600));
        let moved = clone.now() - before;
        assert!(moved >= chrono::Duration::seconds(3600));
        assert!(moved < chrono::Duration::seconds(3660));
    }

    #[test]
    fn huge_durations_end_in_the_year_9999() {
        assert_eq!(after(&SystemClock, Duration::MAX), far_future());
        assert_eq!(far_future().to_rfc3339(), "9999-12-31T00:00:00+00:00");
    }
}
