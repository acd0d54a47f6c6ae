//! The gRPC services of `petit.v1` (`SchedulerService`, `JobService`, `RunService`)
//! over the engine: request checks, paging, conversions to the wire types, and the
//! streams that send a snapshot first and then every change.

mod audit;
pub mod convert;
mod direct;
mod error;
mod job_cache;
mod jobs;
mod log_page;
mod page;
mod runs;
mod scheduler;
mod stream;

use petit_proto::v1::job_service_server::JobServiceServer;
use petit_proto::v1::run_service_server::RunServiceServer;
use petit_proto::v1::scheduler_service_server::SchedulerServiceServer;
use std::sync::Arc;

use tonic::service::Routes;

use crate::engine::Engine;

/// The three Petit services, all answered by one engine. Cheap to clone.
#[derive(Clone)]
pub struct PetitApi {
    engine: Engine,
    streams: tokio_util::sync::CancellationToken,
    exposure: Arc<Exposure>,
    /// The jobs as the API shows them, kept between calls.
    jobs: Arc<job_cache::JobCache>,
}

/// How the daemon is reachable, as `GetSchedulerState` reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exposure {
    pub tokens_required: bool,
    pub tls: bool,
    /// Said at start-up and in every scheduler state.
    pub warnings: Vec<String>,
}

impl Exposure {
    fn apply(&self, state: &mut petit_proto::v1::SchedulerState) {
        state.tokens_required = self.tokens_required;
        state.tls = self.tls;
        state.warnings = self.warnings.clone();
    }
}

impl PetitApi {
    /// `streams` ends the open streams when the server stops (see `stream::spawn`).
    pub fn new(engine: Engine, streams: tokio_util::sync::CancellationToken) -> PetitApi {
        PetitApi {
            engine,
            streams,
            exposure: Arc::default(),
            jobs: Arc::default(),
        }
    }

    /// What `GetSchedulerState` says about authentication and TLS.
    pub fn with_exposure(mut self, exposure: Exposure) -> PetitApi {
        self.exposure = Arc::new(exposure);
        self
    }

    /// The scheduler state as the API shows it.
    fn scheduler_state(
        &self,
        info: &crate::engine::SchedulerInfo,
    ) -> petit_proto::v1::SchedulerState {
        let mut state = convert::scheduler_state(info);
        self.exposure.apply(&mut state);
        if let Some((node_id, epoch)) = self.engine.node() {
            state.node_id = node_id;
            state.node_epoch = epoch;
        }
        state
    }

    /// Cluster mode: the cluster's nodes, as the API shows them (none alone).
    async fn nodes(&self) -> Result<Vec<petit_proto::v1::Node>, tonic::Status> {
        let this = self.engine.node().map(|(id, _)| id);
        Ok(self
            .engine
            .nodes()
            .await?
            .unwrap_or_default()
            .into_iter()
            .map(|n| convert::node(n, this.as_deref()))
            .collect())
    }

    /// `GetJob` and `ListJobs` written from the job cache's bytes (see `direct`): routes
    /// to merge beside [`PetitApi::routes`], whose own answers they take over.
    pub fn direct_routes(self) -> axum::Router {
        direct::routes(self)
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
