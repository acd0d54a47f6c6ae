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
