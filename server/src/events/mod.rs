//! The event bus: every state change of the engine is one `Event`, broadcast to every
//! subscriber (watch streams, the dashboard feed, tests). Nothing polls.

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use crate::core::{LogLine, Run, TaskRun};

/// What changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// A run was stored and waits for a slot.
    RunQueued,
    RunStarted,
    RunSucceeded,
    RunFailed,
    RunCancelled,
    RunInterrupted,
    TaskStarted,
    TaskSucceeded,
    TaskFailed,
    TaskRetrying,
    TaskSkipped,
    TaskTimedOut,
    TaskCancelled,
    TaskInterrupted,
    LogLine,
    SchedulerPaused,
    SchedulerResumed,
    /// A fire or trigger did not start a run (overlap, unmet dependency).
    JobSkipped,
    /// An attempt to deliver a notification, delivered or not (the message says).
    Notification,
}

/// One state change, with the state it produced.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventKind,
    pub time: DateTime<Utc>,
    /// Empty for scheduler events.
    pub job_id: String,
    /// Run events: the run as it now stands.
    pub run: Option<Run>,
    /// Task events: the task run as it now stands.
    pub task_run: Option<TaskRun>,
    /// Log events.
    pub log: Option<std::sync::Arc<LogLine>>,
    /// Why (skips, errors).
    pub message: Option<String>,
    /// The run an event without a record is about (a notification's).
    pub run_ref: Option<String>,
    /// Skips: the reason as one word (`concurrency`, `dependency`...), for metrics.
    pub reason: Option<&'static str>,
}

impl Event {
    pub fn new(kind: EventKind, job_id: impl Into<String>) -> Event {
        Event {
            kind,
            time: Utc::now(),
            job_id: job_id.into(),
            run: None,
            task_run: None,
            log: None,
            message: None,
            run_ref: None,
            reason: None,
        }
    }

    pub fn with_run(mut self, run: Run) -> Event {
        self.run = Some(run);
        self
    }

    pub fn with_task(mut self, task: TaskRun) -> Event {
        self.task_run = Some(task);
        self
    }

    pub fn with_log(mut self, log: LogLine) -> Event {
        self.log = Some(std::sync::Arc::new(log));
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> Event {
        self.message = Some(message.into());
        self
    }

    /// Names the run of an event that carries no record of it (empty: none).
    pub fn with_run_id(mut self, run_id: &str) -> Event {
        self.run_ref = Some(run_id.to_string()).filter(|r| !r.is_empty());
        self
    }

    pub fn with_reason(mut self, reason: &'static str) -> Event {
        self.reason = Some(reason);
        self
    }

    /// The run this event is about, if any.
    pub fn run_id(&self) -> Option<&str> {
        self.run
            .as_ref()
            .map(|r| r.id.as_str())
            .or_else(|| self.task_run.as_ref().map(|t| t.run_id.as_str()))
            .or_else(|| self.log.as_ref().map(|l| l.run_id.as_str()))
            .or(self.run_ref.as_deref())
    }

    /// Whether this event ends a run.
    pub fn ends_run(&self) -> bool {
        matches!(
            self.kind,
            EventKind::RunSucceeded
                | EventKind::RunFailed
                | EventKind::RunCancelled
                | EventKind::RunInterrupted
        )
    }
}

/// Something that must see every event, in order, without ever lagging (metrics):
/// called synchronously by the publisher, so it must be quick and must not block.
pub trait EventObserver: std::fmt::Debug + Send + Sync + 'static {
    fn observe(&self, event: &Event);
}

/// A broadcast bus of events. Slow subscribers lose the oldest events (and learn it
/// from `RecvError::Lagged`); publishers never wait. Observers see each event before
/// any subscriber.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    observers: std::sync::Arc<[std::sync::Arc<dyn EventObserver>]>,
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        EventBus::with_observers(capacity, Vec::new())
    }

    pub fn with_observers(
        capacity: usize,
        observers: Vec<std::sync::Arc<dyn EventObserver>>,
    ) -> EventBus {
        let (tx, _) = broadcast::channel(capacity);
        EventBus {
            tx,
            observers: observers.into(),
        }
    }

    pub fn publish(&self, event: Event) {
        for observer in self.observers.iter() {
            observer.observe(&event);
        }
        // No subscriber is fine: nobody is watching.
        let _ = self.tx.send(event);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }
}
