//! The audit record of mutating calls: each trigger, cancel, pause and resume is
//! stored with its caller, target and outcome once it has been answered, and logged.

use chrono::Utc;
use tonic::Status;

use super::PetitApi;
use crate::auth::Caller;
use crate::store::AuditRecord;

impl PetitApi {
    /// Records that `caller` made `call` on `target` and how it ended. A failure to
    /// store the entry is logged, not returned: the call itself has already happened.
    pub(super) async fn audit<T>(
        &self,
        caller: &Caller,
        call: &str,
        target: &str,
        result: &Result<T, Status>,
        note: impl FnOnce(&T) -> String,
    ) {
        let (outcome, message) = match result {
            Ok(value) => ("OK".to_string(), note(value)),
            Err(status) => (code_name(status.code()), status.message().to_string()),
        };
        tracing::info!(actor = %caller.name, call, target, outcome = %outcome, "audit");
        let record = AuditRecord {
            time: Utc::now(),
            actor: caller.name.clone(),
            call: call.to_string(),
            target: target.to_string(),
            outcome,
            message,
        };
        if let Err(e) = self.engine.store().append_audit(record).await {
            tracing::error!(actor = %caller.name, call, target, "cannot record the audit entry: {e}");
        }
    }
}

/// `NOT_FOUND`, as gRPC's status codes are spelled.
fn code_name(code: tonic::Code) -> String {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
    .to_string()
}
