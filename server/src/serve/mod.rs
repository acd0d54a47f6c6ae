//! One listener for everything petitd answers: the `petit.v1` gRPC services, server
//! reflection (v1 and v1alpha), `grpc.health.v1`, and the REST shim under `/api`.
//! HTTP/1.1 and HTTP/2 share the port, over TLS (ALPN `h2`, `http/1.1`) or without (h2c,
//! as gRPC clients speak it): each connection's protocol is detected from its first
//! bytes. This module assembles the services and runs the orderly stop; `listener`
//! owns connections and their limits, `tls` the certificates, `grpc_request` what a
//! gRPC request must look like.

mod grpc_request;
mod health;
mod lazy;
mod limits;
mod listener;
mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

pub use grpc_request::MAX_REQUEST_MESSAGE_BYTES;
pub use limits::{
    connection_budget, descriptors_for_runs, raise_open_file_limit, ConnectionLimits, OpenFiles,
    DEFAULT_HEADER_TIMEOUT, DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_STREAMS,
};
pub use tls::{acceptor as tls_acceptor, TlsError, TlsFiles};

use crate::api::grpc::{Exposure, PetitApi};
use crate::api::rest;
use crate::auth::{self, Authenticator};
use crate::engine::Engine;
use crate::metrics::Metrics;
use lazy::Lazy;

/// How long connections may take to close once the engine has stopped and every
/// stream has been ended; past it the server stops anyway.
const DRAIN: Duration = Duration::from_secs(5);

/// How the API is served, beyond the address.
#[derive(Clone, Default)]
pub struct ServeOptions {
    /// On shutdown, how long running tasks may take to finish.
    pub grace: Duration,
    /// TLS on every connection, when set.
    pub tls: Option<TlsAcceptor>,
    pub limits: ConnectionLimits,
    /// Who may call what (no tokens: everyone, everything).
    pub auth: Authenticator,
    /// How the daemon is exposed, as the scheduler state reports it.
    pub exposure: Exposure,
    /// What `GET /metrics` serves.
    pub metrics: Arc<Metrics>,
}

/// Serves the API on `listener` until the first message on `shutdown`, then stops in
/// order: health says NOT_SERVING, the engine stops (running tasks get the grace
/// period, then are killed and their runs marked interrupted), open streams end,
/// connections close. A second message during the grace period interrupts the runs at
/// once (an operator pressing Ctrl-C twice); the stop stays orderly, so nothing is lost.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    mut shutdown: mpsc::Receiver<()>,
    options: ServeOptions,
) -> anyhow::Result<()> {
    let ServeOptions {
        grace,
        tls,
        limits,
        auth,
        exposure,
        metrics,
    } = options;
    // The standard health service follows the store: NOT_SERVING while writes fail.
    let health = health::HealthService::new(engine.clone());
    let streams = CancellationToken::new();

    let scrape = crate::metrics::router(metrics, engine.clone(), auth.clone());
    let api = PetitApi::new(engine.clone(), streams.clone()).with_exposure(exposure);
    let grpc = api
        .clone()
        .routes()
        .add_service(health.clone().server())
        .add_service(reflection_v1())
        .add_service(reflection_v1alpha())
        .prepare()
        .into_axum_router()
        // The two hottest reads, from the job cache's encoded bytes.
        .merge(api.clone().direct_routes())
        // Every gRPC method passes the token check (the REST shim makes the same check
        // of the RPC a route calls, see `rest::router`).
        .layer(axum::middleware::from_fn_with_state(
            auth.clone(),
            auth::middleware,
        ))
        .fallback(unknown_path);
    // The checks of gRPC requests apply to the services' own routes only (not the
    // fallback). REST paths are all under `/api` and gRPC paths
    // (`/package.Service/Method`) never are: the listener hands the REST shim its own
    // paths before the router (`rest::RestService`). Paths neither answers reach
    // `unknown_path`.
    let app = grpc
        .route_layer(axum::middleware::from_fn(grpc_request::check))
        .merge(scrape);
    let rest = rest::RestService::new(api, auth);
    // Start-up is done: what loading the jobs and building the routes freed (parse
    // trees, the descriptor set's decoding) goes back to the system.
    crate::alloc::memory_freed();

    let close = CancellationToken::new();
    // The server runs on its own task, so that it keeps answering (health says
    // NOT_SERVING, runs show as interrupted) while the engine stops below.
    let mut server = tokio::spawn(listener::serve(
        listener,
        tls,
        limits,
        (rest, app),
        close.clone(),
    ));
    tokio::select! {
        ended = &mut server => {
            ended?;
            anyhow::bail!("the server stopped by itself");
        }
        // A closed channel (no signal handler) is never a request to stop.
        Some(()) = shutdown.recv() => {}
    }

    tracing::info!(grace = ?grace, "shutting down: running tasks get the grace period (signal again to stop them now)");
    // Load balancers and `grpc_health_probe` stop sending work first.
    health.stop();
    let stopping = engine.shutdown(grace);
    tokio::pin!(stopping);
    tokio::select! {
        () = &mut stopping => {}
        Some(()) = shutdown.recv() => {
            tracing::warn!("asked again to stop: not waiting for the grace period");
            engine.interrupt_runs();
            stopping.await;
        }
    }
    streams.cancel();
    close.cancel();
    match tokio::time::timeout(DRAIN, &mut server).await {
        Ok(ended) => ended?,
        Err(_) => {
            tracing::warn!("connections still open {DRAIN:?} after shutdown; closing them");
            server.abort();
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Both reflection versions list everything this port answers: the Petit services,
/// health, and both reflection versions (each builder would list only itself). The
/// full descriptor set, with the protos' comments, so that `grpcurl describe` shows
/// them.
fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(petit_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET)
}

/// `grpc.reflection.v1`, built at its first call (see `lazy`).
fn reflection_v1() -> Lazy<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    Lazy::new(|| {
        reflection()
            .build_v1()
            .expect("the embedded descriptor sets are valid (a unit test builds them)")
    })
}

/// `grpc.reflection.v1alpha`, as `reflection_v1`.
fn reflection_v1alpha() -> Lazy<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
> {
    Lazy::new(|| {
        reflection()
            .build_v1alpha()
            .expect("the embedded descriptor sets are valid (a unit test builds them)")
    })
}

/// A path no service answers: gRPC clients get UNIMPLEMENTED, anyone else a 404 that
/// says where the API lives.
async fn unknown_path(request: Request) -> Response {
    let path = request.uri().path().to_string();
    let is_grpc = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if is_grpc {
        let status = tonic::Status::unimplemented(format!("unknown gRPC method {path}"));
        let (parts, ()) = status.into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    let body = serde_json::json!({
        "code": tonic::Code::NotFound as i32,
        "message": format!("no such path: {path} (the REST API is under /api, e.g. GET /api/jobs)"),
        "details": [],
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
