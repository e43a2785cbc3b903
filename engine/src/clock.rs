//! The wall clock that schedules read, behind a trait so that tests can set the time.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
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
}
