//! A task's output on its way to the store and the bus: chunks of lines read from both
//! streams (`capture.rs`) are gathered into batches, each batch is written in one store
//! append, then published as one event.

use super::*;
use crate::core::{LogBatch, LogChunk};

/// Chunks (each at most one read of a pipe) buffered between a task and the store
/// before the task is slowed down.
pub(super) const LOG_CHANNEL: usize = 8;
/// Text one batch gathers before it is stored (a single chunk may be larger): what the
/// queue holds while the last batch was being stored, so a flood costs one store
/// transaction per half MiB (the store writes it in rows of its own size); the bus's
/// log rings are bounded in bytes, so a stalled subscriber holds no more for it.
pub(super) const BATCH_BYTES: usize = 512 * 1024;
/// Output after which a task's pump, at its end, has the allocator's free memory
/// returned to the system (see `alloc.rs`).
const FLOOD_BYTES: usize = 4 * 1024 * 1024;

/// Moves a task's log lines to the store in batches, then onto the bus (stored before
/// published, so a follower that reads the store after subscribing misses nothing).
/// A batch takes what is queued when the last one was stored: under a flood batches
/// grow to [`BATCH_BYTES`], a quiet task's lines go on at once. Returns the last
/// sequence number used.
pub(super) async fn pump_logs(
    env: Arc<ExecEnv>,
    job_id: String,
    (run_id, task_id, attempt): (String, String, u32),
    mut seq: u64,
    mut rx: mpsc::Receiver<LogChunk>,
    mut finish: oneshot::Receiver<()>,
) -> u64 {
    let mut finishing = false;
    // A chunk that did not fit in the last batch: the next one starts with it.
    let mut carried: Option<LogChunk> = None;
    let mut moved = 0usize;
    loop {
        let first = if let Some(chunk) = carried.take() {
            Some(chunk)
        } else if finishing {
            rx.recv().await
        } else {
            tokio::select! {
                chunk = rx.recv() => chunk,
                _ = &mut finish => {
                    // The attempt is over: take what is buffered, then stop.
                    finishing = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else {
            if moved >= FLOOD_BYTES {
                // The batches' memory is free again: the allocator gives it back soon.
                crate::alloc::memory_freed();
            }
            return seq;
        };
        let mut bytes = first.text().len();
        let mut chunks = vec![first];
        while bytes < BATCH_BYTES {
            match rx.try_recv() {
                Ok(chunk) if bytes + chunk.text().len() > BATCH_BYTES => {
                    carried = Some(chunk);
                    break;
                }
                Ok(chunk) => {
                    bytes += chunk.text().len();
                    chunks.push(chunk);
                }
                Err(_) => break,
            }
        }
        let batch = LogBatch::new(
            (run_id.clone(), task_id.clone(), attempt),
            Utc::now(),
            seq + 1,
            chunks,
        );
        if batch.is_empty() {
            continue;
        }
        seq += batch.len() as u64;
        moved += bytes;
        let batch = Arc::new(batch);
        if let Err(e) = env.store.append_log_batch(batch.clone()).await {
            tracing::error!(run = %run_id, task = %task_id, "cannot store log lines: {e}");
        }
        env.bus.publish(Event::Log {
            job_id: job_id.clone(),
            batch,
        });
    }
}
