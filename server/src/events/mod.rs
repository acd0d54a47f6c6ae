//! The event bus: every state change of the engine is one [`Event`], published once as
//! an `Arc<Event>` to every subscriber that wants it (watch streams, the dashboard
//! feed, tests). Nothing polls.
//!
//! Log lines, by far the most frequent events, travel apart from the others: a
//! subscriber says whether it wants every run's lines, one run's, or none, and one that
//! wants one run's lines never sees another run's. They travel in batches (one event
//! per store append, up to `exec`'s batch size of text), on rings bounded in bytes as
//! well as in number (`log_ring.rs`): a subscriber stalled on them holds at most
//! [`LOG_BYTES_PER_EVENT`] times the capacity, whatever the batches' sizes.

mod log_ring;

use log_ring::{LogReceiver, LogRing};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
pub use tokio::sync::broadcast::error::RecvError;

pub use crate::core::event::{Event, EventKind};

/// Something that must see every event, in order, without ever lagging (metrics):
/// called synchronously by the publisher, so it must be quick and must not block.
pub trait EventObserver: std::fmt::Debug + Send + Sync + 'static {
    fn observe(&self, event: &Event);
}

/// Which log lines a subscription receives (it receives every other event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Logs {
    None,
    All,
    OfRun(String),
}

/// A broadcast bus of events. Slow subscribers lose the oldest events (and learn it
/// from `RecvError::Lagged`); publishers never wait. Observers see each event before
/// any subscriber.
#[derive(Debug, Clone)]
pub struct EventBus {
    inner: Arc<Channels>,
}

/// The bytes of log batches a log ring keeps per event of capacity (1 MiB for the
/// default 4,096: a few hundred thousand short lines, or 16 pieces of 64 KiB).
pub const LOG_BYTES_PER_EVENT: usize = 256;

#[derive(Debug)]
struct Channels {
    capacity: usize,
    /// Every event but log lines.
    state: broadcast::Sender<Arc<Event>>,
    /// Every log line, for subscribers of all of them.
    logs: Arc<LogRing>,
    /// Log lines by run, for the runs someone follows.
    run_logs: Mutex<HashMap<String, Arc<LogRing>>>,
    observers: Vec<Arc<dyn EventObserver>>,
}

impl EventBus {
    pub fn new(capacity: usize) -> EventBus {
        EventBus::with_observers(capacity, Vec::new())
    }

    pub fn with_observers(capacity: usize, observers: Vec<Arc<dyn EventObserver>>) -> EventBus {
        EventBus {
            inner: Arc::new(Channels {
                capacity,
                state: broadcast::channel(capacity).0,
                logs: log_ring(capacity),
                run_logs: Mutex::new(HashMap::new()),
                observers,
            }),
        }
    }

    pub fn publish(&self, event: Event) {
        let channels = &*self.inner;
        for observer in &channels.observers {
            observer.observe(&event);
        }
        self.send(Arc::new(event));
    }

    /// Sends an event to the subscribers that want it.
    fn send(&self, event: Arc<Event>) {
        let channels = &*self.inner;
        // No subscriber is fine: nobody is watching.
        if let Event::Log { batch, .. } = &*event {
            let bytes = batch.heap_bytes();
            channels.logs.send(event.clone(), bytes);
            let run_logs = channels.run_logs.lock().expect("bus lock");
            if let Some(ring) = run_logs.get(&batch.run_id) {
                ring.send(event, bytes);
            }
            return;
        }
        let ended = event.ends_run().then(|| event.run_id().map(str::to_string));
        let _ = channels.state.send(event);
        if let Some(Some(run_id)) = ended {
            // The run's followers have its end; their log channel closes after it.
            if let Some(ring) = channels.run_logs.lock().expect("bus lock").remove(&run_id) {
                ring.close();
            }
        }
    }

    /// Publishes an event relayed from another node of a cluster: to subscribers only.
    /// Observers (metrics, notifications) see only this node's own events, so that a
    /// cluster counts and notifies each change once.
    pub fn publish_relayed(&self, event: Event) {
        self.send(Arc::new(event));
    }

    /// Whether anyone here receives events at all (a watch stream, the dashboard feed).
    pub fn has_subscribers(&self) -> bool {
        self.inner.state.receiver_count() > 0
    }

    /// Whether anyone here receives `run_id`'s log lines (all lines, or that run's).
    pub fn wants_logs(&self, run_id: &str) -> bool {
        let channels = &*self.inner;
        channels.logs.receiver_count() > 0
            || channels
                .run_logs
                .lock()
                .expect("bus lock")
                .get(run_id)
                .is_some_and(|tx| tx.receiver_count() > 0)
    }

    /// Every event from now on, with the log lines `logs` asks for.
    pub fn subscribe(&self, logs: Logs) -> Subscription {
        let channels = &*self.inner;
        let state = channels.state.subscribe();
        let logs = match logs {
            Logs::None => None,
            Logs::All => Some(channels.logs.subscribe()),
            Logs::OfRun(run_id) => {
                let mut run_logs = channels.run_logs.lock().expect("bus lock");
                // Drop the channels nobody follows any more (runs whose end was missed).
                run_logs.retain(|_, tx| tx.receiver_count() > 0);
                Some(
                    run_logs
                        .entry(run_id)
                        .or_insert_with(|| log_ring(channels.capacity))
                        .subscribe(),
                )
            }
        };
        Subscription { state, logs }
    }
}

/// One subscriber's events: state changes, and the log lines it asked for. A log line
/// published before a state change is received before it.
pub struct Subscription {
    state: broadcast::Receiver<Arc<Event>>,
    logs: Option<LogReceiver>,
}

fn log_ring(capacity: usize) -> Arc<LogRing> {
    LogRing::new(capacity, capacity.saturating_mul(LOG_BYTES_PER_EVENT))
}

impl Subscription {
    /// The next event; `Lagged` when this subscriber fell behind and lost some.
    pub async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        loop {
            let Some(logs) = &mut self.logs else {
                return self.state.recv().await;
            };
            // Log lines first: those published before a state change come before it.
            let got = tokio::select! {
                biased;
                line = logs.recv() => match line {
                    Err(RecvError::Closed) => None,
                    other => Some(other),
                },
                event = self.state.recv() => Some(event),
            };
            match got {
                Some(got) => return got,
                // The followed run ended: state changes only from now on.
                None => self.logs = None,
            }
        }
    }
}
