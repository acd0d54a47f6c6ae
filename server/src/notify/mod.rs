//! Notifications: what the `notify` rules of jobs ask to be told (a failed or
//! succeeded run, a retry, a skipped fire), sent to webhooks and local commands.
//!
//! The engine never waits for a delivery: an observer on the event bus hands each
//! occasion to a bounded queue (dropping, with a warning, what does not fit), and a
//! delivery task builds the message and sends it to each target on tasks of its own,
//! at most [`MAX_IN_FLIGHT`] at once. Each attempt is stored (`GetRun` lists them) and
//! published as an event; failed attempts are retried with backoff, a bounded number
//! of times.

mod payload;
mod send;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::Utc;
use tokio::sync::{mpsc, Semaphore};

use crate::core::notify::{NotifyOn, NotifyTarget};
use crate::engine::Engine;
use crate::events::{Event, EventKind, EventObserver};
use crate::store::NotificationRecord;

pub use payload::Payload;

/// Occasions waiting for the delivery task; past this, new ones are dropped.
const QUEUE: usize = 4096;
/// Deliveries (to one target each) going on at once.
pub const MAX_IN_FLIGHT: usize = 32;

/// One thing to tell: the occasion and the event that made it.
#[derive(Debug)]
struct Occasion {
    on: NotifyOn,
    event: Event,
}

/// The event-bus side: picks the occasions out of the events, without ever waiting.
#[derive(Debug)]
pub struct Notifier {
    queue: mpsc::Sender<Occasion>,
    dropped: AtomicU64,
}

/// The delivery side, started once the engine is.
pub struct Deliveries {
    queue: mpsc::Receiver<Occasion>,
}

/// A notifier for the engine's observers, and the deliveries to start after it.
pub fn channel() -> (Arc<Notifier>, Deliveries) {
    let (queue, rx) = mpsc::channel(QUEUE);
    (
        Arc::new(Notifier {
            queue,
            dropped: AtomicU64::new(0),
        }),
        Deliveries { queue: rx },
    )
}

impl EventObserver for Notifier {
    fn observe(&self, event: &Event) {
        let on = match event.kind() {
            EventKind::RunFailed => NotifyOn::Failure,
            EventKind::RunSucceeded => NotifyOn::Success,
            EventKind::TaskRetrying => NotifyOn::Retry,
            EventKind::JobSkipped => NotifyOn::SkippedFire,
            _ => return,
        };
        let occasion = Occasion {
            on,
            event: event.clone(),
        };
        if self.queue.try_send(occasion).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once, then every 1000th: a flood must not flood the log as well.
            if dropped == 1 || dropped % 1000 == 0 {
                tracing::warn!(dropped, "notification queue full: occasions dropped");
            }
        }
    }
}

impl Deliveries {
    /// Delivers until the engine's notifier goes away. `api_base` is where the runs'
    /// links point (`http://host:8565`).
    pub fn start(self, engine: Engine, api_base: String) {
        let mut queue = self.queue;
        let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        tokio::spawn(async move {
            while let Some(occasion) = queue.recv().await {
                let Some(job) = engine.job(occasion.event.job_id()) else {
                    continue;
                };
                let Some(rule) = &job.notify else { continue };
                if !rule.wants(occasion.on) || rule.targets.is_empty() {
                    continue;
                }
                let payload = Arc::new(
                    Payload::build(&engine, occasion.on, &occasion.event, &api_base).await,
                );
                for target in &rule.targets {
                    let delivery = Delivery {
                        engine: engine.clone(),
                        target: target.clone(),
                        payload: payload.clone(),
                    };
                    let slots = slots.clone();
                    tokio::spawn(async move {
                        let Ok(_slot) = slots.acquire_owned().await else {
                            return;
                        };
                        delivery.run().await;
                    });
                }
            }
        });
    }
}

/// One message to one target, with its retries.
struct Delivery {
    engine: Engine,
    target: NotifyTarget,
    payload: Arc<Payload>,
}

impl Delivery {
    async fn run(self) {
        let attempts = match &self.target {
            NotifyTarget::Webhook { retries, .. } => 1 + *retries,
            NotifyTarget::Command { .. } => 1,
        };
        for attempt in 1..=attempts {
            let result = match &self.target {
                NotifyTarget::Webhook {
                    url,
                    headers,
                    secret,
                    timeout,
                    ..
                } => {
                    send::webhook(
                        url,
                        headers,
                        secret.as_deref(),
                        &self.payload.body,
                        *timeout,
                    )
                    .await
                }
                NotifyTarget::Command { argv, timeout } => {
                    send::command(argv, &self.payload.body, *timeout).await
                }
            };
            let delivered = result.is_ok();
            self.record(attempt, result).await;
            if delivered {
                return;
            }
            if attempt < attempts {
                tokio::time::sleep(send::backoff(attempt)).await;
            }
        }
    }

    async fn record(&self, attempt: u32, result: Result<String, String>) {
        let label = self.target.label();
        let (outcome, message) = match result {
            Ok(what) => ("delivered", what),
            Err(why) => ("failed", why),
        };
        let p = &self.payload;
        if outcome == "failed" {
            tracing::warn!(job = %p.job_id, run = %p.run_id, target = %label, attempt, "notification not delivered: {message}");
        } else {
            tracing::info!(job = %p.job_id, run = %p.run_id, target = %label, attempt, "notification delivered");
        }
        let record = NotificationRecord {
            run_id: p.run_id.clone(),
            job_id: p.job_id.clone(),
            time: Utc::now(),
            event: p.on.as_str().to_string(),
            target: label.clone(),
            attempt,
            outcome: outcome.to_string(),
            message: message.clone(),
        };
        if let Err(e) = self.engine.store().append_notification(record).await {
            tracing::error!("cannot record a notification attempt: {e}");
        }
        self.engine.publish(Event::Notification {
            time: Utc::now(),
            job_id: p.job_id.clone(),
            run_id: p.run_id.clone(),
            message: format!(
                "{} to {label}: {outcome} (attempt {attempt}): {message}",
                p.on
            ),
        });
    }
}
