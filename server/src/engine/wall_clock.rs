//! A wall-clock alarm: waits until an instant of the system's real-time clock, and
//! wakes early when that clock is set. Schedules are wall-clock times, so a monotonic
//! sleep computed from "now" goes wrong when the clock steps: a Raspberry Pi without a
//! real-time clock boots with a stale time and learns the right one from NTP later.
//! On Linux this is a `timerfd` on CLOCK_REALTIME armed with TFD_TIMER_ABSTIME and
//! TFD_TIMER_CANCEL_ON_SET; elsewhere (or if that fails) a plain tokio sleep.

use std::future::Future;
use std::io;
use std::pin::Pin;

use chrono::{DateTime, Utc};

use crate::core::clock::{Clock, Wake};

/// The daemon's clock: the system's real-time clock, waited on with one alarm (created
/// on first use, inside the runtime).
#[derive(Default)]
pub struct WallClock {
    alarm: std::sync::OnceLock<WallClockAlarm>,
}

impl Clock for WallClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> Pin<Box<dyn Future<Output = Wake> + Send + '_>> {
        Box::pin(self.alarm.get_or_init(WallClockAlarm::new).sleep_until(at))
    }
}

/// One alarm, re-armed by each `sleep_until`.
pub struct WallClockAlarm {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    timer: Option<tokio::io::unix::AsyncFd<Timer>>,
}

/// A timerfd, as tokio's `AsyncFd` wants it.
#[cfg(any(target_os = "linux", target_os = "android"))]
struct Timer(nix::sys::timerfd::TimerFd);

#[cfg(any(target_os = "linux", target_os = "android"))]
impl std::os::fd::AsRawFd for Timer {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsFd;
        self.0.as_fd().as_raw_fd()
    }
}

impl WallClockAlarm {
    pub fn new() -> WallClockAlarm {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use nix::sys::timerfd::{ClockId, TimerFd, TimerFlags};
            let timer = TimerFd::new(
                ClockId::CLOCK_REALTIME,
                TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
            )
            .map_err(io::Error::from)
            .and_then(|t| {
                // SAFETY: `Timer` owns the descriptor (an `OwnedFd` inside `TimerFd`),
                // so it stays open for as long as the `AsyncFd` that wraps it.
                unsafe { tokio::io::unix::AsyncFd::register(Timer(t)) }.map_err(io::Error::from)
            });
            match timer {
                Ok(timer) => WallClockAlarm { timer: Some(timer) },
                Err(e) => {
                    tracing::warn!(
                        "no timerfd ({e}): clock changes are noticed only at the next fire"
                    );
                    WallClockAlarm { timer: None }
                }
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        WallClockAlarm {}
    }

    /// Waits until the real-time clock reads `at` (at once if it already does), or until
    /// the clock is set.
    pub async fn sleep_until(&self, at: DateTime<Utc>) -> Wake {
        let left = (at - Utc::now()).to_std().unwrap_or_default();
        if left.is_zero() {
            return Wake::Due;
        }
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(timer) = &self.timer {
            match wait_timerfd(timer, at).await {
                Ok(wake) => return wake,
                Err(e) => tracing::warn!("timerfd failed ({e}); sleeping instead"),
            }
        }
        tokio::time::sleep(left).await;
        Wake::Due
    }
}

impl Default for WallClockAlarm {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
async fn wait_timerfd(
    timer: &tokio::io::unix::AsyncFd<Timer>,
    at: DateTime<Utc>,
) -> io::Result<Wake> {
    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{Expiration, TimerSetTimeFlags};

    let when = TimeSpec::new(at.timestamp(), i64::from(at.timestamp_subsec_nanos()));
    timer.get_ref().0.set(
        Expiration::OneShot(when),
        TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET,
    )?;
    loop {
        let mut ready = timer.readable().await?;
        let read = ready.try_io(|fd| {
            let mut expirations = [0u8; 8];
            nix::unistd::read(&fd.get_ref().0, &mut expirations).map_err(io::Error::from)
        });
        match read {
            Ok(Ok(_)) => return Ok(Wake::Due),
            Ok(Err(e)) if e.raw_os_error() == Some(nix::libc::ECANCELED) => {
                return Ok(Wake::ClockChanged)
            }
            Ok(Err(e)) => return Err(e),
            // Spurious readiness: wait again.
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wakes_at_the_instant_and_at_once_for_the_past() {
        let alarm = WallClockAlarm::new();
        let at = Utc::now() + chrono::Duration::milliseconds(50);
        assert_eq!(alarm.sleep_until(at).await, Wake::Due);
        assert!(Utc::now() >= at, "woke before the instant");

        let started = std::time::Instant::now();
        let past = Utc::now() - chrono::Duration::seconds(5);
        assert_eq!(alarm.sleep_until(past).await, Wake::Due);
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
