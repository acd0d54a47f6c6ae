//! The scheduler: one task owns the timers of every scheduled job. It sleeps until the
//! next fire instant (no polling tick), fires the jobs that are due, and takes pause,
//! resume and stop commands over a channel. It starts runs through a callback; it
//! never runs tasks itself.

mod alarm;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};

use crate::core::JobDef;
pub use alarm::{Wake, WallClockAlarm};

/// What the scheduler task is told to do.
#[derive(Debug)]
pub enum SchedulerCommand {
    /// Stop firing until resumed.
    Pause(oneshot::Sender<()>),
    /// Fire again from now on; what was due while paused is not made up.
    Resume(oneshot::Sender<()>),
    /// End the scheduler task.
    Stop,
}

/// Called for each due fire with the job and its scheduled instant.
pub type Fire = Box<dyn Fn(Arc<JobDef>, DateTime<Utc>) + Send + Sync>;

struct Entry {
    job: Arc<JobDef>,
    next: Option<DateTime<Utc>>,
}

/// The timer table. Create with `new`, then `run` it on its own task.
pub struct Scheduler {
    entries: Vec<Entry>,
    paused: bool,
    fire: Fire,
}

impl Scheduler {
    /// A scheduler over the enabled jobs that have a schedule.
    pub fn new(jobs: impl IntoIterator<Item = Arc<JobDef>>, paused: bool, fire: Fire) -> Scheduler {
        let now = Utc::now();
        let entries = jobs
            .into_iter()
            .filter(|j| j.enabled && j.schedule.is_some())
            .map(|job| {
                let next = job.schedule.as_ref().and_then(|s| s.next_after(now));
                Entry { job, next }
            })
            .collect();
        Scheduler {
            entries,
            paused,
            fire,
        }
    }

    /// Runs until `Stop` or until the command channel closes.
    pub async fn run(mut self, mut commands: mpsc::UnboundedReceiver<SchedulerCommand>) {
        let alarm = WallClockAlarm::new();
        loop {
            let next = if self.paused {
                None
            } else {
                self.entries.iter().filter_map(|e| e.next).min()
            };
            let sleep = async {
                match next {
                    Some(at) => alarm.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    None | Some(SchedulerCommand::Stop) => return,
                    Some(SchedulerCommand::Pause(ack)) => {
                        self.paused = true;
                        let _ = ack.send(());
                    }
                    Some(SchedulerCommand::Resume(ack)) => {
                        self.paused = false;
                        self.reset(Utc::now());
                        let _ = ack.send(());
                    }
                },
                wake = sleep => {
                    let now = Utc::now();
                    self.fire_due(now);
                    if wake == Wake::ClockChanged {
                        tracing::info!("the system clock was set; fire times recomputed from {now}");
                        self.reset(now);
                    }
                }
            }
        }
    }

    /// Recomputes every next fire from `now`.
    fn reset(&mut self, now: DateTime<Utc>) {
        for e in &mut self.entries {
            e.next = e.job.schedule.as_ref().and_then(|s| s.next_after(now));
        }
    }

    /// Fires every entry due at `now`, once each, and moves it to its next instant. An
    /// entry more than one period late (a suspended machine) fires once and skips the
    /// instants it missed.
    fn fire_due(&mut self, now: DateTime<Utc>) {
        for e in &mut self.entries {
            let Some(at) = e.next else { continue };
            if at > now {
                continue;
            }
            (self.fire)(e.job.clone(), at);
            let schedule = e.job.schedule.as_ref().expect("entries have schedules");
            let mut next = schedule.next_after(at);
            if matches!(next, Some(n) if n <= now) {
                tracing::warn!(job = %e.job.id, "missed fires between {at} and {now}; skipping to the next one");
                next = schedule.next_after(now);
            }
            e.next = next;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Mutex;

    use chrono::TimeZone;

    use super::*;
    use crate::config::{parse_job, GlobalConfig};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, s)
            .single()
            .expect("valid time")
    }

    /// A scheduler over one job, recording what it fires.
    fn scheduler(
        schedule: &str,
        now: DateTime<Utc>,
    ) -> (Scheduler, Arc<Mutex<Vec<DateTime<Utc>>>>) {
        let yaml =
            format!("id: j\nschedule: '{schedule}'\ntasks:\n  - {{id: t, command: 'true'}}\n");
        let job =
            Arc::new(parse_job(&yaml, Path::new("j.yaml"), &GlobalConfig::default()).expect("job"));
        let fired = Arc::new(Mutex::new(Vec::new()));
        let log = fired.clone();
        let mut scheduler = Scheduler::new(
            [job],
            false,
            Box::new(move |_, at| log.lock().unwrap().push(at)),
        );
        scheduler.reset(now);
        (scheduler, fired)
    }

    #[test]
    fn fires_what_is_due_once_and_moves_on() {
        // (schedule, armed at, woken at, fired instants, next fire)
        let cases = [
            // On time.
            (
                "0 */5 * * * *",
                at(10, 0, 1),
                at(10, 5, 0),
                vec![at(10, 5, 0)],
                at(10, 10, 0),
            ),
            // Woken early (nothing is due yet).
            (
                "0 */5 * * * *",
                at(10, 0, 1),
                at(10, 4, 59),
                vec![],
                at(10, 5, 0),
            ),
            // Three periods late (a suspended machine, a clock stepped forward): the due
            // fire happens once and the missed ones are skipped.
            (
                "0 */5 * * * *",
                at(10, 0, 1),
                at(10, 17, 0),
                vec![at(10, 5, 0)],
                at(10, 20, 0),
            ),
            (
                "@every 30s",
                at(10, 0, 1),
                at(10, 0, 30),
                vec![at(10, 0, 30)],
                at(10, 1, 0),
            ),
        ];
        for (schedule, armed, woken, want_fired, want_next) in cases {
            let (mut scheduler, fired) = scheduler(schedule, armed);
            scheduler.fire_due(woken);
            assert_eq!(
                *fired.lock().unwrap(),
                want_fired,
                "{schedule} woken at {woken}"
            );
            assert_eq!(
                scheduler.entries[0].next,
                Some(want_next),
                "{schedule} woken at {woken}"
            );
        }
    }

    #[test]
    fn a_clock_set_back_recomputes_the_next_fire() {
        // Armed for 02:00 while the clock read 01:59; the clock is then set back a day
        // and a half (a Pi that booted with a time from the future learns the real one).
        let (mut scheduler, fired) = scheduler("0 0 2 * * *", at(1, 59, 0));
        assert_eq!(scheduler.entries[0].next, Some(at(2, 0, 0)));
        let now = at(14, 0, 0) - chrono::Duration::days(2);
        scheduler.fire_due(now);
        scheduler.reset(now);
        assert!(fired.lock().unwrap().is_empty());
        assert_eq!(
            scheduler.entries[0].next,
            Some(at(2, 0, 0) - chrono::Duration::days(1))
        );
    }
}
