//! The one vocabulary of both clients: the word each value of the contract's enums is
//! shown as, the tone it is shown in, and whether a status is final.
//!
//! Every table below is an exhaustive `match` over the generated enum, so a value
//! added to the contract does not compile until it is given its word and tone here.
//! A number this build does not know (from a newer server) comes out of the generated
//! accessors (`run.status()`, `event.r#type()`) as the `_UNSPECIFIED` value, which
//! reads "unknown".
//!
//! ```
//! use petit_client::proto::{Run, RunStatus};
//! use petit_client::vocab::{Lifecycle, Tone, Vocabulary};
//!
//! let run = Run { status: RunStatus::Queued as i32, ..Default::default() };
//! assert_eq!(run.status().label(), "queued");
//! assert_eq!(run.status().tone(), Tone::Warn);
//! assert!(!run.status().is_terminal());
//! let newer = Run { status: 99, ..Default::default() };
//! assert_eq!(newer.status().label(), "unknown");
//! ```

use petit_proto::v1::{EventType, RunStatus, SchedulerStatus, TaskStatus, TriggerReason};

/// How a value stands out, whatever the screen: petitctl maps a tone to ANSI colours
/// (`render::paint`), the TUI to ratatui styles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tone {
    /// Went well: succeeded, delivered, running scheduler.
    Good,
    /// Went wrong: failed, timed out, interrupted.
    Bad,
    /// Worth a look without being a failure: queued, cancelled, retrying, paused.
    Warn,
    /// Under way: running, started.
    Active,
    /// Of little interest: pending, skipped, unknown.
    Dim,
    /// No emphasis at all.
    Plain,
}

/// A value of one of the contract's enums as people read it.
pub trait Vocabulary: Copy {
    /// The word (or words) shown for the value: "succeeded", "timed out", "run
    /// started"; "unknown" for `_UNSPECIFIED` and numbers this build does not know.
    fn label(self) -> &'static str;
    /// How the word stands out.
    fn tone(self) -> Tone;
}

/// A status that ends: once terminal, it changes no more (and cancelling makes no
/// sense).
pub trait Lifecycle: Copy {
    fn is_terminal(self) -> bool;
}

macro_rules! vocabulary {
    ($($enum:ty),*) => {$(
        impl Vocabulary for $enum {
            fn label(self) -> &'static str {
                self.word().0
            }

            fn tone(self) -> Tone {
                self.word().1
            }
        }
    )*};
}

vocabulary!(
    RunStatus,
    TaskStatus,
    TriggerReason,
    SchedulerStatus,
    EventType
);

/// The word and the tone of each value, in one table per enum.
trait Word {
    fn word(self) -> (&'static str, Tone);
}

impl Word for RunStatus {
    fn word(self) -> (&'static str, Tone) {
        match self {
            RunStatus::Unspecified => ("unknown", Tone::Dim),
            #[allow(deprecated)] // an old server's word for queued
            RunStatus::Pending => ("queued", Tone::Warn),
            RunStatus::Queued => ("queued", Tone::Warn),
            RunStatus::Running => ("running", Tone::Active),
            RunStatus::Succeeded => ("succeeded", Tone::Good),
            RunStatus::Failed => ("failed", Tone::Bad),
            RunStatus::Cancelled => ("cancelled", Tone::Warn),
            RunStatus::Interrupted => ("interrupted", Tone::Bad),
        }
    }
}

impl Word for TaskStatus {
    fn word(self) -> (&'static str, Tone) {
        match self {
            TaskStatus::Unspecified => ("unknown", Tone::Dim),
            TaskStatus::Pending => ("pending", Tone::Dim),
            TaskStatus::Running => ("running", Tone::Active),
            TaskStatus::Succeeded => ("succeeded", Tone::Good),
            TaskStatus::Failed => ("failed", Tone::Bad),
            TaskStatus::Skipped => ("skipped", Tone::Dim),
            TaskStatus::Retrying => ("retrying", Tone::Warn),
            TaskStatus::TimedOut => ("timed out", Tone::Bad),
            TaskStatus::Cancelled => ("cancelled", Tone::Warn),
            TaskStatus::Interrupted => ("interrupted", Tone::Bad),
        }
    }
}

impl Word for TriggerReason {
    fn word(self) -> (&'static str, Tone) {
        match self {
            TriggerReason::Unspecified => ("unknown", Tone::Dim),
            TriggerReason::Schedule => ("schedule", Tone::Plain),
            TriggerReason::Manual => ("manual", Tone::Plain),
            TriggerReason::Backfill => ("backfill", Tone::Plain),
            TriggerReason::Catchup => ("catch-up", Tone::Plain),
            TriggerReason::Retry => ("retry", Tone::Plain),
        }
    }
}

impl Word for SchedulerStatus {
    fn word(self) -> (&'static str, Tone) {
        match self {
            SchedulerStatus::Unspecified => ("unknown", Tone::Dim),
            SchedulerStatus::Running => ("running", Tone::Good),
            SchedulerStatus::Paused => ("paused", Tone::Warn),
            SchedulerStatus::Stopping => ("stopping", Tone::Warn),
        }
    }
}

/// An event takes the tone of the status it reports.
impl Word for EventType {
    fn word(self) -> (&'static str, Tone) {
        match self {
            EventType::Unspecified => ("unknown", Tone::Dim),
            EventType::RunStarted => ("run started", Tone::Active),
            EventType::RunSucceeded => ("run succeeded", Tone::Good),
            EventType::RunFailed => ("run failed", Tone::Bad),
            EventType::RunCancelled => ("run cancelled", Tone::Warn),
            EventType::RunInterrupted => ("run interrupted", Tone::Bad),
            EventType::TaskStarted => ("task started", Tone::Active),
            EventType::TaskSucceeded => ("task succeeded", Tone::Good),
            EventType::TaskFailed => ("task failed", Tone::Bad),
            EventType::TaskRetrying => ("task retrying", Tone::Warn),
            EventType::TaskSkipped => ("task skipped", Tone::Dim),
            EventType::TaskTimedOut => ("task timed out", Tone::Bad),
            EventType::TaskCancelled => ("task cancelled", Tone::Warn),
            EventType::TaskInterrupted => ("task interrupted", Tone::Bad),
            EventType::LogLine => ("log line", Tone::Plain),
            EventType::SchedulerPaused => ("scheduler paused", Tone::Warn),
            EventType::SchedulerResumed => ("scheduler resumed", Tone::Plain),
            EventType::JobSkipped => ("job skipped", Tone::Warn),
            EventType::Notification => ("notification", Tone::Plain),
            EventType::RunQueued => ("run queued", Tone::Warn),
            EventType::JobPaused => ("job paused", Tone::Warn),
            EventType::JobResumed => ("job resumed", Tone::Plain),
        }
    }
}

impl Lifecycle for RunStatus {
    fn is_terminal(self) -> bool {
        match self {
            RunStatus::Succeeded
            | RunStatus::Failed
            | RunStatus::Cancelled
            | RunStatus::Interrupted => true,
            #[allow(deprecated)] // an old server's word for queued
            RunStatus::Unspecified
            | RunStatus::Pending
            | RunStatus::Queued
            | RunStatus::Running => false,
        }
    }
}

impl Lifecycle for TaskStatus {
    fn is_terminal(self) -> bool {
        match self {
            TaskStatus::Succeeded
            | TaskStatus::Failed
            | TaskStatus::Skipped
            | TaskStatus::TimedOut
            | TaskStatus::Cancelled
            | TaskStatus::Interrupted => true,
            TaskStatus::Unspecified
            | TaskStatus::Pending
            | TaskStatus::Running
            | TaskStatus::Retrying => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every value a wire number can name, and the numbers around them.
    fn all<E: TryFrom<i32>>() -> impl Iterator<Item = E> {
        (0..64).filter_map(|n| E::try_from(n).ok())
    }

    #[test]
    fn run_statuses() {
        #[allow(deprecated)]
        let cases = [
            (RunStatus::Unspecified, "unknown", Tone::Dim, false),
            (RunStatus::Pending, "queued", Tone::Warn, false),
            (RunStatus::Queued, "queued", Tone::Warn, false),
            (RunStatus::Running, "running", Tone::Active, false),
            (RunStatus::Succeeded, "succeeded", Tone::Good, true),
            (RunStatus::Failed, "failed", Tone::Bad, true),
            (RunStatus::Cancelled, "cancelled", Tone::Warn, true),
            (RunStatus::Interrupted, "interrupted", Tone::Bad, true),
        ];
        for (status, label, tone, terminal) in cases {
            assert_eq!(
                (status.label(), status.tone(), status.is_terminal()),
                (label, tone, terminal),
                "{status:?}"
            );
        }
    }

    #[test]
    fn task_statuses() {
        let cases = [
            (TaskStatus::Pending, "pending", Tone::Dim, false),
            (TaskStatus::Retrying, "retrying", Tone::Warn, false),
            (TaskStatus::TimedOut, "timed out", Tone::Bad, true),
            (TaskStatus::Skipped, "skipped", Tone::Dim, true),
        ];
        for (status, label, tone, terminal) in cases {
            assert_eq!(
                (status.label(), status.tone(), status.is_terminal()),
                (label, tone, terminal),
                "{status:?}"
            );
        }
    }

    #[test]
    fn unknown_numbers_read_unknown() {
        use petit_proto::v1::{Event, Run, SchedulerState, TaskRun};
        let run = Run {
            status: 99,
            trigger: 42,
            ..Default::default()
        };
        let task = TaskRun {
            status: -1,
            ..Default::default()
        };
        let event = Event {
            r#type: 1000,
            ..Default::default()
        };
        let state = SchedulerState {
            status: 7,
            ..Default::default()
        };
        let labels = [
            run.status().label(),
            run.trigger().label(),
            task.status().label(),
            event.r#type().label(),
            state.status().label(),
        ];
        assert_eq!(labels, ["unknown"; 5]);
        assert!(!run.status().is_terminal(), "an unknown run may still end");
    }

    #[test]
    fn words_are_distinct_within_an_enum() {
        fn distinct<E: Vocabulary + TryFrom<i32>>(skip: &[&str]) {
            let mut seen = std::collections::HashSet::new();
            for value in all::<E>() {
                let label = value.label();
                assert!(!label.is_empty());
                assert!(
                    skip.contains(&label) || seen.insert(label),
                    "two values read '{label}'"
                );
            }
        }
        // Pending is the deprecated word for queued: one label for both.
        distinct::<RunStatus>(&["queued"]);
        distinct::<TaskStatus>(&[]);
        distinct::<TriggerReason>(&[]);
        distinct::<SchedulerStatus>(&[]);
        distinct::<EventType>(&[]);
    }
}
