//! Petit's engine and daemon: job files, schedules, DAG runs, SQLite storage, and the
//! gRPC/REST API. `petitd` (src/main.rs) only parses flags and calls into this.

pub mod alloc;
pub mod api;
pub mod auth;
pub mod config;
pub mod core;
pub mod engine;
pub mod events;
pub mod exec;
pub mod metrics;
pub mod notify;
pub mod private_files;
pub mod serve;
pub mod store;
pub mod systemd;
pub mod watch;

#[cfg(test)]
mod hostile;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use engine::{Engine, EngineError, EngineOptions, SchedulerInfo};
