//! The gRPC services of `petit.v1` (`SchedulerService`, `JobService`, `RunService`)
//! over the engine: request checks, paging, conversions to the wire types, and the
//! streams that send a snapshot first and then every change.

pub mod convert;
mod error;
mod jobs;
mod log_page;
mod page;
mod runs;
mod scheduler;
mod stream;

use petit_proto::v1::job_service_server::JobServiceServer;
use petit_proto::v1::run_service_server::RunServiceServer;
use petit_proto::v1::scheduler_service_server::SchedulerServiceServer;
use tonic::service::Routes;

use crate::engine::Engine;

pub use stream::StreamShutdown;

/// The three Petit services, all answered by one engine. Cheap to clone.
#[derive(Clone)]
pub struct PetitApi {
    engine: Engine,
    streams: StreamShutdown,
}

impl PetitApi {
    /// `streams` ends the open streams when the server stops (see `StreamShutdown`).
    pub fn new(engine: Engine, streams: StreamShutdown) -> PetitApi {
        PetitApi { engine, streams }
    }

    /// The three services, routed by their gRPC paths (`/petit.v1.JobService/...`).
    pub fn routes(self) -> Routes {
        Routes::new(SchedulerServiceServer::new(self.clone()))
            .add_service(JobServiceServer::new(self.clone()))
            .add_service(RunServiceServer::new(self))
    }
}

#[cfg(test)]
mod tests;
