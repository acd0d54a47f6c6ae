//! Pure domain types: job and task definitions, schedules, the task DAG, retry and
//! condition policies, run and task statuses. No I/O lives here.

pub mod clock;
pub mod dag;
pub mod duration;
pub mod environment;
pub mod event;
pub mod job;
pub mod log_batch;
pub mod notify;
pub mod run;
pub mod schedule;
pub mod status;

pub use dag::{Dag, DagError, Readiness};
pub use environment::{EnvPolicy, Inherit};
pub use job::{
    Backoff, Condition, DepCondition, JobDef, JobDependency, RetryCondition, RetryPolicy, TaskDef,
    TaskKind,
};
pub use log_batch::{LogBatch, LogChunk, LogLineRef};
pub use run::{LogLine, Run, TaskRun};
pub use schedule::{Schedule, ScheduleError};
pub use status::{LogStream, RunStatus, TaskStatus, TriggerReason};
