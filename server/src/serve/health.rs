//! The standard gRPC health service (`grpc.health.v1.Health`), answered from the engine
//! as it stands: SERVING, or NOT_SERVING while the store's writes fail (a full disk, a
//! database file deleted or replaced) and once the daemon is stopping. A `Check` looks
//! then; a `Watch` looks once a `STORAGE_CHECK` while it is open and sends each change.
//! Nothing polls while nobody asks: an idle petitd has no timer for it.
//!
//! The services known are the server as a whole (`""`) and each Petit service; others
//! are NOT_FOUND, as tonic-health answers.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tonic::{Request, Response, Status};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

use crate::engine::Engine;

/// How often an open `Watch` looks at the store.
const STORAGE_CHECK: Duration = Duration::from_secs(1);

/// The health service; `stop` turns it NOT_SERVING for good.
#[derive(Clone)]
pub struct HealthService {
    engine: Engine,
    stopping: Arc<AtomicBool>,
}

impl HealthService {
    pub fn new(engine: Engine) -> HealthService {
        HealthService {
            engine,
            stopping: Arc::default(),
        }
    }

    /// From now on every service is NOT_SERVING (the daemon is shutting down: load
    /// balancers and `grpc_health_probe` stop sending work first).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    pub fn server(self) -> HealthServer<HealthService> {
        HealthServer::new(self)
    }

    fn status(&self) -> ServingStatus {
        if self.stopping.load(Ordering::Relaxed) || self.engine.store().write_failure().is_some() {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        }
    }
}

fn known(service: &str) -> Result<(), Status> {
    if service.is_empty() || petit_proto::SERVICES.contains(&service) {
        Ok(())
    } else {
        Err(Status::not_found("service not registered"))
    }
}

fn response(status: ServingStatus) -> HealthCheckResponse {
    HealthCheckResponse {
        status: status.into(),
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        known(&request.get_ref().service)?;
        Ok(Response::new(response(self.status())))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        known(&request.get_ref().service)?;
        let first = (self.clone(), None::<ServingStatus>);
        let stream = futures::stream::unfold(first, |(service, last)| async move {
            loop {
                let now = service.status();
                if last != Some(now) {
                    return Some((Ok(response(now)), (service, Some(now))));
                }
                tokio::time::sleep(STORAGE_CHECK).await;
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
