//! A task's output on its way to the store and the bus: read concurrently from both
//! streams, written in batches, then published.

use super::*;

/// Log lines buffered between a task and the store before the task is slowed down.
pub(super) const LOG_CHANNEL: usize = 1024;
/// Log lines written in one store call at most.
pub(super) const LOG_BATCH: usize = 512;

/// Moves a task's log lines to the store in batches, then onto the bus (stored before
/// published, so a follower that reads the store after subscribing misses nothing).
/// Returns the last sequence number used.
pub(super) async fn pump_logs(
    env: Arc<ExecEnv>,
    job_id: String,
    (run_id, task_id, attempt): (String, String, u32),
    mut seq: u64,
    mut rx: mpsc::Receiver<(LogStream, String)>,
    mut finish: oneshot::Receiver<()>,
) -> u64 {
    let mut finishing = false;
    loop {
        let first = if finishing {
            rx.recv().await
        } else {
            tokio::select! {
                line = rx.recv() => line,
                _ = &mut finish => {
                    // The attempt is over: take what is buffered, then stop.
                    finishing = true;
                    rx.close();
                    continue;
                }
            }
        };
        let Some(first) = first else { return seq };
        let mut batch = Vec::with_capacity(16);
        batch.push(first);
        while batch.len() < LOG_BATCH {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        let now = Utc::now();
        let records: Vec<LogLine> = batch
            .into_iter()
            .map(|(stream, line)| {
                seq += 1;
                LogLine {
                    run_id: run_id.clone(),
                    seq,
                    task_id: task_id.clone(),
                    attempt,
                    stream,
                    line,
                    time: now,
                }
            })
            .collect();
        if let Err(e) = env.store.append_logs(records.clone()).await {
            tracing::error!(run = %run_id, task = %task_id, "cannot store log lines: {e}");
        }
        for record in records {
            env.bus.publish(Event::Log {
                job_id: job_id.clone(),
                line: record,
            });
        }
    }
}
