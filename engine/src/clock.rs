//! The clock that decides when timers fire and waits time out.
//!
//! Workers read time through a [`Clock`] so that tests can move time forward instead of
//! sleeping through it. Every clone shares one offset.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Wall-clock time plus an adjustable offset.
#[derive(Debug, Clone, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self::default()
    }

    pub fn now(&self) -> DateTime<Utc> {
        let offset = chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed));
        Utc::now()
            .checked_add_signed(offset)
            .unwrap_or_else(far_future)
    }

    /// The time `duration` from now; durations past the year 9999 end there.
    pub fn after(&self, duration: Duration) -> DateTime<Utc> {
        chrono::Duration::from_std(duration)
            .ok()
            .and_then(|duration| self.now().checked_add_signed(duration))
            .map_or_else(far_future, |at| at.min(far_future()))
    }

    /// Moves this clock, and every clone of it, forward.
    pub fn advance(&self, by: Duration) {
        let ms = by.as_millis().min(i64::MAX as u128) as i64;
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

/// The latest time a wait may end: the last day of the year 9999.
pub(crate) fn far_future() -> DateTime<Utc> {
    DateTime::from_timestamp(253_402_214_400, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = Clock::system();
        let clone = clock.clone();
        let before = clone.now();
        clock.advance(Duration::from_secs(3600));
        let moved = clone.now() - before;
        assert!(moved >= chrono::Duration::seconds(3600));
        assert!(moved < chrono::Duration::seconds(3660));
    }

    #[test]
    fn huge_durations_end_in_the_year_9999() {
        let clock = Clock::system();
        assert_eq!(clock.after(Duration::MAX), far_future());
        assert_eq!(far_future().to_rfc3339(), "9999-12-31T00:00:00+00:00");
    }
}
