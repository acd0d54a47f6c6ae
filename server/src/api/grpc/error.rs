//! How engine and store errors, and bad requests, become gRPC statuses: one `From` per
//! domain error, each code chosen so a client knows whether retrying can help.

use tonic::{Code, Status};

use crate::engine::EngineError;
use crate::store::StoreError;

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Status {
        let code = match &e {
            EngineError::JobNotFound(_) | EngineError::RunNotFound(_) => Code::NotFound,
            // The caller can act: satisfy the dependency or pass `force`.
            EngineError::DependencyUnmet { .. } => Code::FailedPrecondition,
            // Retrying later may succeed, once a run of the job has ended.
            EngineError::ConcurrencyLimit { .. } | EngineError::QueueFull { .. } => {
                Code::ResourceExhausted
            }
            EngineError::RunEnded { .. } | EngineError::DefinitionMismatch(_) => {
                Code::FailedPrecondition
            }
            EngineError::InvalidArgument(_) | EngineError::ReloadRefused(_) => {
                Code::InvalidArgument
            }
            EngineError::ShuttingDown => Code::Unavailable,
            EngineError::Store(_) | EngineError::Io { .. } => Code::Internal,
        };
        match e {
            EngineError::Store(e) => Status::from(e),
            e @ EngineError::Io { .. } => {
                tracing::error!(error = %e, "request failed on the daemon's files");
                Status::new(code, format!("{e} (see the petitd log)"))
            }
            e => Status::new(code, e.to_string()),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        if e.is_fire_taken() {
            return Status::already_exists(e.to_string());
        }
        if e.is_not_found() {
            return Status::not_found(e.to_string());
        }
        if e.is_unavailable() {
            tracing::warn!(error = %e, "request failed: the database is out of reach");
            return Status::unavailable(e.to_string());
        }
        // Nothing the caller can fix: say so, and keep the detail in the daemon's log.
        tracing::error!(error = %e, "request failed on storage");
        Status::internal(format!("{e} (see the petitd log)"))
    }
}

/// A required string field: INVALID_ARGUMENT naming it when empty.
pub fn required<'a>(field: &str, value: &'a str) -> Result<&'a str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument(format!("{field} is required")))
    } else {
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_map_to_codes() {
        let cases = [
            (EngineError::JobNotFound("j".into()), Code::NotFound),
            (EngineError::RunNotFound("r".into()), Code::NotFound),
            (
                EngineError::DependencyUnmet {
                    job_id: "j".into(),
                    dependency: "up".into(),
                    reason: "its last run failed".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                EngineError::ConcurrencyLimit {
                    job_id: "j".into(),
                    limit: 1,
                },
                Code::ResourceExhausted,
            ),
            (
                EngineError::RunEnded {
                    run_id: "r".into(),
                    status: "succeeded".into(),
                },
                Code::FailedPrecondition,
            ),
            (
                EngineError::InvalidArgument("no config value 'x'".into()),
                Code::InvalidArgument,
            ),
            (EngineError::ShuttingDown, Code::Unavailable),
            (
                EngineError::Store(StoreError::io(
                    "cannot append logs",
                    std::io::Error::other("disk full"),
                )),
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let message = err.to_string();
            let status = Status::from(err);
            assert_eq!(status.code(), code, "{message}");
            assert!(
                status.message().contains(&message),
                "{message} vs {}",
                status.message()
            );
        }
    }

    #[test]
    fn required_names_the_field() {
        let err = required("job_id", "")
            .err()
            .map(|s| s.message().to_string());
        assert_eq!(err.as_deref(), Some("job_id is required"));
        assert_eq!(required("job_id", "x").ok(), Some("x"));
    }
}
