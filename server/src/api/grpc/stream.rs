//! Server-streaming plumbing: each stream is fed by a forwarding task that ends when
//! the client goes away, when its RPC says it is done, or when the server stops.

use std::future::Future;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

/// What a streaming RPC returns to tonic.
pub type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

/// Messages a forwarding task may queue before it waits for the client. A client that
/// reads slower than events arrive makes its forwarder lag on the event bus, which the
/// RPCs answer with a fresh snapshot rather than by buffering without bound.
const QUEUE: usize = 64;

/// The client has gone away: the forwarding task should stop.
#[derive(Debug)]
pub struct ClientGone;

/// The sending half of a stream, as a forwarding task sees it.
pub struct Outbox<T> {
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T> Outbox<T> {
    pub async fn send(&self, item: T) -> Result<(), ClientGone> {
        self.tx.send(Ok(item)).await.map_err(|_| ClientGone)
    }

    /// Ends the stream with an error status.
    pub async fn fail(&self, status: Status) -> Result<(), ClientGone> {
        self.tx.send(Err(status)).await.map_err(|_| ClientGone)
    }
}

/// Spawns `forward`, which feeds the returned stream; the stream ends when `forward`
/// returns. The task is dropped as soon as the client goes away, even while it waits for
/// an event that may never come, and when `shutdown` is cancelled (at server stop: a
/// long-lived stream such as a dashboard's `WatchEvents` would otherwise hold its
/// connection open and the graceful stop would wait for it forever). Then the stream
/// ends with UNAVAILABLE ("petitd is shutting down"), so that the client knows to
/// reconnect later.
pub fn spawn<T, F, Fut>(shutdown: &CancellationToken, forward: F) -> ResponseStream<T>
where
    T: Send + 'static,
    F: FnOnce(Outbox<T>) -> Fut,
    Fut: Future<Output = Result<(), ClientGone>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let watcher = tx.clone();
    let stopping = shutdown.clone();
    let forwarding = forward(Outbox { tx });
    tokio::spawn(async move {
        tokio::select! {
            _ = forwarding => {}
            _ = watcher.closed() => {}
            _ = stopping.cancelled() => {
                let _ = watcher
                    .send(Err(Status::unavailable("petitd is shutting down")))
                    .await;
            }
        }
    });
    ReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::StreamExt;

    #[tokio::test]
    async fn stream_ends_when_forwarder_returns() {
        let shutdown = CancellationToken::new();
        let mut stream = spawn(&shutdown, |out| async move {
            out.send(1).await?;
            out.send(2).await
        });
        let items: Vec<i32> = (&mut stream).map(|r| r.unwrap_or(-1)).collect().await;
        assert_eq!(items, [1, 2]);
    }

    #[tokio::test]
    async fn shutdown_ends_a_waiting_stream_with_unavailable() {
        let shutdown = CancellationToken::new();
        let mut stream = spawn(&shutdown, |out: Outbox<i32>| async move {
            out.send(1).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
        assert_eq!(stream.next().await.map(|r| r.ok()), Some(Some(1)));
        shutdown.cancel();
        let status = stream.next().await.and_then(|r| r.err());
        assert_eq!(status.map(|s| s.code()), Some(tonic::Code::Unavailable));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn forwarder_stops_when_client_goes_away() {
        let shutdown = CancellationToken::new();
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let stream = spawn(&shutdown, |_out: Outbox<i32>| async move {
            // Dropped with the task: the oneshot's sender closes.
            let _guard = dropped_tx;
            std::future::pending::<()>().await;
            Ok(())
        });
        drop(stream);
        // Resolves (with an error) once the forwarding task, and so the guard, is gone.
        assert!(dropped_rx.await.is_err());
    }
}
