//! Server-streaming plumbing: each stream is fed by a forwarding task that ends when
//! the client goes away, when its RPC says it is done, or when the server stops.

use std::future::Future;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// What a streaming RPC returns to tonic.
pub type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

/// Messages a forwarding task may queue before it waits for the client. A client that
/// reads slower than events arrive makes its forwarder lag on the event bus, which the
/// RPCs answer with a fresh snapshot rather than by buffering without bound.
const QUEUE: usize = 64;

/// Ends every open stream, at server shutdown. Without it a long-lived stream (a
/// dashboard's `WatchEvents`) would hold its connection open and the server's graceful
/// stop would wait for it forever.
#[derive(Clone, Debug)]
pub struct StreamShutdown {
    tx: watch::Sender<bool>,
}

impl StreamShutdown {
    pub fn new() -> StreamShutdown {
        StreamShutdown {
            tx: watch::Sender::new(false),
        }
    }

    /// Ends every open stream with UNAVAILABLE ("petitd is shutting down"), so that
    /// clients know to reconnect later; streams opened afterwards end the same way.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    async fn triggered(mut rx: watch::Receiver<bool>) {
        // An error means every sender is gone, which only happens when the server is.
        let _ = rx.wait_for(|stopping| *stopping).await;
    }
}

impl Default for StreamShutdown {
    fn default() -> Self {
        Self::new()
    }
}

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
/// an event that may never come, and when `shutdown` triggers.
pub fn spawn<T, F, Fut>(shutdown: &StreamShutdown, forward: F) -> ResponseStream<T>
where
    T: Send + 'static,
    F: FnOnce(Outbox<T>) -> Fut,
    Fut: Future<Output = Result<(), ClientGone>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let watcher = tx.clone();
    let stopping = shutdown.tx.subscribe();
    let forwarding = forward(Outbox { tx });
    tokio::spawn(async move {
        tokio::select! {
            _ = forwarding => {}
            _ = watcher.closed() => {}
            _ = StreamShutdown::triggered(stopping) => {
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
        let shutdown = StreamShutdown::new();
        let mut stream = spawn(&shutdown, |out| async move {
            out.send(1).await?;
            out.send(2).await
        });
        let items: Vec<i32> = (&mut stream).map(|r| r.unwrap_or(-1)).collect().await;
        assert_eq!(items, [1, 2]);
    }

    #[tokio::test]
    async fn shutdown_ends_a_waiting_stream_with_unavailable() {
        let shutdown = StreamShutdown::new();
        let mut stream = spawn(&shutdown, |out: Outbox<i32>| async move {
            out.send(1).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
        assert_eq!(stream.next().await.map(|r| r.ok()), Some(Some(1)));
        shutdown.trigger();
        let status = stream.next().await.and_then(|r| r.err());
        assert_eq!(status.map(|s| s.code()), Some(tonic::Code::Unavailable));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn forwarder_stops_when_client_goes_away() {
        let shutdown = StreamShutdown::new();
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
