//! What can go wrong in a store, typed so that a caller can tell a refusal it can act
//! on (a fire already taken, a run not found, bad input) from a failure of the storage
//! itself, which keeps its cause (`source`) for the log.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};

/// A storage failure or refusal. Every message starts with `storage:`.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A SQLite call failed; `context` says what was being done ("cannot read runs").
    #[error("storage: {context}: {source}")]
    Sqlite {
        context: String,
        #[source]
        source: rusqlite::Error,
    },
    /// The transaction of a batch of writes could not be committed: every write of the
    /// batch fails with the same cause, hence shared.
    #[error("storage: cannot commit writes: {source}")]
    Commit {
        #[source]
        source: Arc<rusqlite::Error>,
    },
    /// A file system call failed (the database's directory, a scratch directory).
    #[error("storage: {context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A stored value that this binary cannot read back: a status from a newer version,
    /// a damaged row or log chunk.
    #[error("storage: {context}: a stored value does not parse: {detail}")]
    Corrupt { context: String, detail: String },
    /// The database is at a schema version this binary does not know.
    #[error(
        "storage: database {} has schema version {found}, newer than this petitd knows \
         (up to {known}); use a newer petitd or another database file",
        .path.display()
    )]
    SchemaTooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    /// SQLite would not switch the database to write-ahead logging.
    #[error(
        "storage: cannot open database {}: cannot switch to WAL journal mode (got '{mode}')",
        .path.display()
    )]
    NotWal { path: PathBuf, mode: String },
    /// The writer thread is gone (it panicked, or the store is closing).
    #[error("storage: the database writer has stopped")]
    WriterStopped,
    /// A read's blocking task did not finish (it panicked, or the runtime is stopping).
    #[error("storage: database read failed: {reason}")]
    ReadAborted { reason: String },
    /// The in-memory store's lock was poisoned: its maps may be half-updated.
    #[error("storage: the in-memory store is unusable after an earlier panic")]
    Poisoned,
    #[error("storage: run '{run_id}' not found")]
    RunNotFound { run_id: String },
    #[error("storage: task run '{task_id}' of run '{run_id}' not found")]
    TaskRunNotFound { run_id: String, task_id: String },
    /// A new run with the id of a stored one.
    #[error("storage: run '{run_id}' already exists")]
    RunExists { run_id: String },
    /// A PostgreSQL call failed; `context` says what was being done. Never holds the
    /// database password: contexts name the database by its redacted URL, and the
    /// driver's errors do not quote connection parameters.
    #[error("storage: {context}: {}", with_causes(.source))]
    Postgres {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// No PostgreSQL connection could be had (the pool timed out or is closed, the
    /// connection settings are unusable): `reason` says which, without secrets.
    #[error("storage: {context}: {reason}")]
    PostgresUnavailable { context: String, reason: String },
    /// The PostgreSQL database is at a schema version this binary does not know.
    #[error(
        "storage: database {database} has schema version {found}, newer than this petitd \
         knows (up to {known}); upgrade every node"
    )]
    PostgresSchemaTooNew {
        /// The database's URL, without its password.
        database: String,
        found: i64,
        known: i64,
    },
    /// A claim or takeover by a node whose lease is gone (cluster mode): its epoch was
    /// declared dead or it left. It stops its runs and joins again as a new epoch.
    #[error(
        "storage: node '{node_id}' epoch {epoch} no longer holds its lease (taken over or \
         left); join again"
    )]
    LeaseLost { node_id: String, epoch: u64 },
    /// The refusal of a second run for one fire instant (`(job_id, scheduled_for)` is
    /// unique): someone else already started this fire.
    #[error(
        "storage: job '{job_id}' already has a run for the fire at {}",
        .at.to_rfc3339_opts(SecondsFormat::Millis, true)
    )]
    FireTaken { job_id: String, at: DateTime<Utc> },
    /// A write of a run that this node no longer owns (cluster mode): its lease was
    /// taken over and the run moved to another node.
    #[error(
        "storage: run '{run_id}' now belongs to another node (this node's lease was taken over)"
    )]
    Fenced { run_id: String },
    /// Input the store refuses (a new run's task runs naming another run, say).
    #[error("storage: {0}")]
    Invalid(String),
}

/// An error and its causes, `a: b: c`: the PostgreSQL driver's errors say only their
/// kind ("db error", "error performing TLS handshake") and keep the server's message or
/// the TLS failure as their cause.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let more = next.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = next.source();
    }
    text
}

impl StoreError {
    /// Whether this is the refusal of a duplicate fire, not a failure.
    pub fn is_fire_taken(&self) -> bool {
        matches!(self, StoreError::FireTaken { .. })
    }

    /// Whether the database cannot be reached now (a shared store's server is down or
    /// out of reach): retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::PostgresUnavailable { .. } => true,
            StoreError::Sqlite { source, .. } => sqlite_unavailable(source),
            StoreError::Commit { source } => sqlite_unavailable(source),
            // No answer from the server at all (the connection broke or never came).
            StoreError::Postgres { source, .. } => {
                source.is_closed()
                    || std::error::Error::source(source)
                        .is_some_and(|cause| cause.downcast_ref::<std::io::Error>().is_some())
            }
            _ => false,
        }
    }

    /// Whether the run or task run asked for is not stored (see also `is_unavailable`).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::RunNotFound { .. } | StoreError::TaskRunNotFound { .. }
        )
    }

    /// A failed SQLite call, doing `context`. A value SQLite holds but that does not
    /// convert (the row conversions report those as conversion failures) is `Corrupt`.
    pub(crate) fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> StoreError {
        let context = context.into();
        match source {
            rusqlite::Error::FromSqlConversionFailure(_, _, detail) => StoreError::Corrupt {
                context,
                detail: detail.to_string(),
            },
            rusqlite::Error::IntegralValueOutOfRange(column, value) => StoreError::Corrupt {
                context,
                detail: format!("column {column}: {value} is out of range"),
            },
            source => StoreError::Sqlite { context, source },
        }
    }

    /// A failed PostgreSQL call, doing `context`.
    pub(crate) fn postgres(
        context: impl Into<String>,
        source: tokio_postgres::Error,
    ) -> StoreError {
        StoreError::Postgres {
            context: context.into(),
            source,
        }
    }

    /// A failed file system call, doing `context`.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A SQLite failure of the file system rather than of the request: full, read-only,
/// gone, or failing I/O. Retrying once the disk is fixed succeeds.
pub(crate) fn sqlite_unavailable(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode;
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if matches!(
            f.code,
            ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::CannotOpen
        )
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_cross_threads() {
        fn send_sync<T: Send + Sync + 'static>() {}
        send_sync::<StoreError>();
    }

    #[test]
    fn messages_keep_what_failed() {
        let at = DateTime::from_timestamp(1_700_000_000, 5_000_000).expect("time");
        let bad_value = rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            "column status: unknown RunStatus 'frobbed'".into(),
        );
        let cases = [
            (
                StoreError::FireTaken {
                    job_id: "j".into(),
                    at,
                },
                "storage: job 'j' already has a run for the fire at 2023-11-14T22:13:20.005Z",
            ),
            (
                StoreError::sqlite("cannot read run", bad_value),
                "storage: cannot read run: a stored value does not parse: \
                 column status: unknown RunStatus 'frobbed'",
            ),
            (
                StoreError::sqlite("cannot read run", rusqlite::Error::QueryReturnedNoRows),
                "storage: cannot read run: Query returned no rows",
            ),
            (
                StoreError::TaskRunNotFound {
                    run_id: "r".into(),
                    task_id: "t".into(),
                },
                "storage: task run 't' of run 'r' not found",
            ),
            (
                StoreError::SchemaTooNew {
                    path: "/var/lib/petit.db".into(),
                    found: 9,
                    known: 5,
                },
                "storage: database /var/lib/petit.db has schema version 9, newer than this \
                 petitd knows (up to 5); use a newer petitd or another database file",
            ),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        assert!(StoreError::FireTaken {
            job_id: "j".into(),
            at
        }
        .is_fire_taken());
        assert!(!StoreError::WriterStopped.is_fire_taken());
        assert!(StoreError::RunNotFound { run_id: "r".into() }.is_not_found());
        assert!(matches!(
            StoreError::sqlite("x", rusqlite::Error::IntegralValueOutOfRange(3, -1)),
            StoreError::Corrupt { .. }
        ));
    }
}
