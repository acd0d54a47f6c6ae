//! Time as an input. The engine reads "now" and waits for fire instants through a
//! [`Clock`]: the daemon backs it with the wall clock (a timerfd that also notices the
//! clock being set), tests with a [`ManualClock`] they move by hand, so that they can
//! assert exact fire instants, pauses and skips without sleeping.

use std::future::Future;
use std::pin::Pin;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Why a wait on a clock returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// The instant has come.
    Due,
    /// The clock was set (stepped); instants computed before may be wrong.
    ClockChanged,
}

/// Where the engine gets the time and waits for instants.
pub trait Clock: Send + Sync + 'static {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;

    /// Waits until the clock reads `at` (at once if it already does), or until the clock
    /// is set. Only one wait at a time is outstanding per clock (the engine's).
    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = Wake> + Send + '_>>;
}

impl std::fmt::Debug for dyn Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clock({})", self.now())
    }
}

/// A clock that moves only when told: [`ManualClock::advance`] and [`ManualClock::set`].
/// Waits return as soon as the clock reaches their instant; setting the clock back
/// wakes them with [`Wake::ClockChanged`], as a stepped system clock does.
pub struct ManualClock {
    /// The time, and how many times it was set back.
    state: watch::Sender<(DateTime<Utc>, u64)>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            state: watch::channel((start, 0)).0,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.state.send_modify(|(now, _)| *now += by);
    }

    /// Sets the clock to `to`: forward like `advance`, backward as a clock step.
    pub fn set(&self, to: DateTime<Utc>) {
        self.state.send_modify(|(now, steps)| {
            if to < *now {
                *steps += 1;
            }
            *now = to;
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.borrow().0
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = Wake> + Send + '_>> {
        let mut state = self.state.subscribe();
        Box::pin(async move {
            let steps = state.borrow_and_update().1;
            loop {
                let (now, now_steps) = *state.borrow_and_update();
                if now_steps != steps {
                    return Wake::ClockChanged;
                }
                if now >= at {
                    return Wake::Due;
                }
                if state.changed().await.is_err() {
                    // The clock is gone: time stands still for good.
                    return std::future::pending().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, s).unwrap()
    }

    #[tokio::test]
    async fn a_wait_returns_when_the_clock_reaches_its_instant() {
        let clock = ManualClock::new(at(0));
        let mut wait = clock.sleep_until(at(10));
        assert!(futures::poll!(&mut wait).is_pending());
        clock.advance(chrono::Duration::seconds(9));
        assert!(futures::poll!(&mut wait).is_pending());
        clock.advance(chrono::Duration::seconds(1));
        assert_eq!(wait.await, Wake::Due);
        assert_eq!(clock.sleep_until(at(3)).await, Wake::Due, "a past instant");
        assert_eq!(clock.now(), at(10));
    }

    #[tokio::test]
    async fn setting_the_clock_back_wakes_a_wait() {
        let clock = ManualClock::new(at(30));
        let mut wait = clock.sleep_until(at(40));
        assert!(futures::poll!(&mut wait).is_pending());
        clock.set(at(5));
        assert_eq!(wait.await, Wake::ClockChanged);
    }
}
