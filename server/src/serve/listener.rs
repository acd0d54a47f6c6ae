//! The accept loop: takes TCP connections up to the limit (one more is closed at
//! once), does the TLS handshake when TLS is on, and serves each connection with
//! hyper (HTTP/1.1 and HTTP/2, detected from the first bytes) under the connection's
//! time limits. Closing on idle counts the requests in flight, so a stream that is
//! silent for minutes keeps its connection while an unused one goes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::limits::{ConnectionLimits, RefusalLog};
use crate::api::rest::RestService;

/// How often a burst of refused connections (or of failed accepts) is logged.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// After `accept` fails for want of descriptors (EMFILE), how long to wait before
/// trying again: the error repeats at once while the limit is reached, and the pause
/// lets finished runs and closing connections give some back.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `services` on `listener` until `stop` is cancelled, then asks every connection
/// to close (HTTP/2 GOAWAY, HTTP/1 after the response in progress) and waits for them.
/// `services`: the REST shim, for the paths it claims, and the router for the rest.
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: ConnectionLimits,
    services: (RestService, Router),
    stop: CancellationToken,
) {
    let (rest, app) = services;
    let limits = Arc::new(limits);
    let builder = Arc::new(http_builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let mut refusals = RefusalLog::new(REFUSAL_LOG_EVERY);
    let mut out_of_files = RefusalLog::new(REFUSAL_LOG_EVERY);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_failed(&e, &mut out_of_files, &stop).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Closed before a byte is read: the client sees the connection end at
            // once and may retry, and no descriptor stays taken.
            drop(tcp);
            if let Some(count) = refusals.refused(Instant::now()) {
                tracing::warn!(
                    refused = count,
                    limit = limits.max_connections,
                    "refusing new connections: the connection limit is reached"
                );
            }
            continue;
        };
        let connection = Connection {
            peer,
            limits: limits.clone(),
            builder: builder.clone(),
            rest: rest.clone(),
            app: app.clone(),
            stop: stop.clone(),
        };
        let tls = tls.clone();
        connections.spawn(async move {
            connection.run(tcp, tls).await;
            drop(permit);
            // A connection's buffers (and its streams') are freed now: give them back
            // once a burst of clients has gone.
            crate::alloc::memory_freed();
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

async fn accept_failed(e: &std::io::Error, failures: &mut RefusalLog, stop: &CancellationToken) {
    use nix::libc::{EMFILE, ENFILE};
    // Out of descriptors; anything else (a connection reset before it was accepted)
    // concerns one connection only.
    let out_of_files = matches!(e.raw_os_error(), Some(code) if code == EMFILE || code == ENFILE);
    if out_of_files {
        if let Some(count) = failures.refused(Instant::now()) {
            tracing::warn!(times = count, "cannot accept connections: {e}; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
            () = stop.cancelled() => {}
        }
    } else {
        tracing::debug!("accept failed: {e}");
    }
}

fn http_builder(limits: &ConnectionLimits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams_per_connection)
        .keep_alive_interval(limits.keepalive_interval)
        .keep_alive_timeout(limits.keepalive_timeout);
    builder
}

/// How long a connection whose handshake failed may take to read the alert petitd
/// sent and close its side.
const ALERT_LINGER: Duration = Duration::from_secs(1);

/// Closes a connection whose TLS handshake failed without losing the alert rustls has
/// just written (why it failed: "certificate required", "unknown CA"). Closing a socket
/// that still holds unread input makes the kernel send a reset, and a client that gets
/// the reset first reports a bare "connection closed"; so: end our side, then read
/// what the client still sends until it closes, for a moment at most.
async fn close_after_alert(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let mut scratch = [0u8; 4096];
    let drain = async { while matches!(tcp.read(&mut scratch).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(ALERT_LINGER, drain).await;
}

/// One accepted connection and what serving it needs.
struct Connection {
    peer: SocketAddr,
    limits: Arc<ConnectionLimits>,
    builder: Arc<auto::Builder<TokioExecutor>>,
    rest: RestService,
    app: Router,
    stop: CancellationToken,
}

impl Connection {
    async fn run(self, tcp: TcpStream, tls: Option<TlsAcceptor>) {
        // gRPC sends small frames: without this, Nagle's algorithm delays them.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
        let Some(acceptor) = tls else {
            return self.serve(tcp).await;
        };
        let handshake = tokio::time::timeout(
            self.limits.header_timeout,
            acceptor.accept(tcp).into_fallible(),
        );
        let stream = tokio::select! {
            done = handshake => done,
            () = self.stop.cancelled() => return,
        };
        match stream {
            Ok(Ok(stream)) => self.serve(stream).await,
            // Plain HTTP to this port, an untrusted client certificate, a scanner: the
            // client learns it from its TLS stack; petitd notes it at debug level.
            Ok(Err((e, tcp))) => {
                tracing::debug!(peer = %self.peer, "TLS handshake failed: {e}");
                close_after_alert(tcp).await;
            }
            Err(_) => tracing::debug!(peer = %self.peer, "TLS handshake timed out"),
        }
    }

    async fn serve<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Activity::new();
        let service = {
            let activity = activity.clone();
            let app = self.app.clone();
            let rest = self.rest.clone();
            hyper::service::service_fn(move |request: http::Request<Incoming>| {
                let in_flight = activity.begin();
                let app = app.clone();
                let rest = rest.clone();
                async move {
                    // No extension is added: nothing reads one, and the first would
                    // allocate the request's extension map.
                    let request = request.map(Body::new);
                    let response = match rest.claims(request.uri().path()) {
                        true => rest.call(request).await,
                        false => app.oneshot(request).await?,
                    };
                    // The request counts as in flight until its response body is
                    // done (or dropped): a stream keeps the connection busy.
                    Ok::<_, Infallible>(response.map(|body| {
                        Body::new(body.map_frame(move |frame| {
                            let _ = &in_flight;
                            frame
                        }))
                    }))
                }
            })
        };
        let connection = self.builder.serve_connection(TokioIo::new(io), service);
        tokio::pin!(connection);
        let idle = activity.idle(self.limits.header_timeout, self.limits.idle_timeout);
        let why = tokio::select! {
            ended = connection.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(peer = %self.peer, "connection ended: {e}");
                }
                return;
            }
            () = idle => "idle",
            () = self.stop.cancelled() => "shutdown",
        };
        tracing::debug!(peer = %self.peer, "closing connection ({why})");
        connection.as_mut().graceful_shutdown();
        if why == "shutdown" {
            // The server bounds the whole drain.
            let _ = connection.await;
        } else if tokio::time::timeout(self.limits.header_timeout, connection)
            .await
            .is_err()
        {
            tracing::debug!(peer = %self.peer, "connection did not close in time; dropped");
        }
    }
}

/// The requests in flight on one connection, and when the last one ended: counters a
/// request updates without waking anyone (the idle watch reads them when its own timer
/// fires, so a request costs no wake-up and no timer change).
#[derive(Clone)]
struct Activity {
    state: Arc<ActivityState>,
}

struct ActivityState {
    /// When the connection began; `last_end` counts from it.
    base: tokio::time::Instant,
    in_flight: AtomicUsize,
    started_any: AtomicBool,
    /// Nanoseconds from `base` to the end of the last request.
    last_end: AtomicU64,
}

/// One request in flight, until dropped.
struct InFlight {
    state: Arc<ActivityState>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let state = &self.state;
        let since = u64::try_from(state.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        state.last_end.fetch_max(since, Ordering::Relaxed);
        // Release: a watch that sees the count drop sees this end's time too.
        state.in_flight.fetch_sub(1, Ordering::Release);
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            state: Arc::new(ActivityState {
                base: tokio::time::Instant::now(),
                in_flight: AtomicUsize::new(0),
                started_any: AtomicBool::new(false),
                last_end: AtomicU64::new(0),
            }),
        }
    }

    fn begin(&self) -> InFlight {
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        self.state.started_any.store(true, Ordering::Relaxed);
        InFlight {
            state: self.state.clone(),
        }
    }

    /// Resolves once no request has been in flight for `idle` (or, before the first
    /// request, for `first` from the connection's start: a connection that never asks
    /// anything goes sooner). It looks when a period could have run out: while
    /// requests are in flight, once every `idle`; otherwise at the last end + `idle`.
    async fn idle(&self, first: Duration, idle: Duration) {
        let state = &self.state;
        loop {
            let now = tokio::time::Instant::now();
            let in_flight = state.in_flight.load(Ordering::Acquire);
            let deadline = if in_flight > 0 {
                now + idle
            } else if state.started_any.load(Ordering::Relaxed) {
                let last_end = Duration::from_nanos(state.last_end.load(Ordering::Relaxed));
                state.base + last_end + idle
            } else {
                state.base + first
            };
            if in_flight == 0 && deadline <= now {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The idle watch running on its own task, as it does beside a connection.
    fn watch(activity: &Activity, first: u64, idle: u64) -> tokio::task::JoinHandle<()> {
        let activity = activity.clone();
        tokio::spawn(async move {
            activity
                .idle(Duration::from_secs(first), Duration::from_secs(idle))
                .await
        })
    }

    async fn after(secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn idle_counts_from_the_last_request_in_flight() {
        let activity = Activity::new();
        let watch = watch(&activity, 2, 10);

        // A request in flight holds the connection however long it lasts.
        after(1).await;
        let request = activity.begin();
        let second = activity.begin();
        after(3600).await;
        assert!(!watch.is_finished(), "closed under a request");
        drop(request);
        after(3600).await;
        assert!(!watch.is_finished(), "closed under the second request");
        drop(second);

        // Then the idle period counts from its end.
        after(9).await;
        assert!(!watch.is_finished(), "closed early");
        after(2).await;
        assert!(watch.is_finished(), "not closed when idle");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_ends_while_the_watch_sleeps_starts_the_period_again() {
        let activity = Activity::new();
        let watch = watch(&activity, 2, 10);
        after(1).await;
        drop(activity.begin());
        // The watch sleeps until 1 + 10; a request ending at 8 moves that to 18.
        after(7).await;
        drop(activity.begin());
        after(9).await;
        assert!(!watch.is_finished(), "closed 9 s after a request");
        after(2).await;
        assert!(
            watch.is_finished(),
            "not closed 11 s after the last request"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_asks_nothing_goes_after_the_first_period() {
        let activity = Activity::new();
        let watch = watch(&activity, 2, 10);
        after(1).await;
        assert!(!watch.is_finished());
        after(2).await;
        assert!(watch.is_finished());
    }
}
