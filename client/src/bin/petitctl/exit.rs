//! What petitctl's exit code says (documented in `petitctl --help`), and the errors a
//! command can end with.

use std::io;

use petit_client::proto::RunStatus;
use petit_client::render::JsonError;
use petit_client::ClientError;

pub const SUCCESS: u8 = 0;
/// The operation failed, or the awaited run did not succeed.
pub const FAILURE: u8 = 1;
// 2 is clap's usage error, left as it is.
/// petitd is unreachable or unavailable.
pub const UNREACHABLE: u8 = 3;

/// Why a command stopped short.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot write output: {0}")]
    Output(#[from] io::Error),
    #[error(transparent)]
    Json(#[from] JsonError),
    /// The server answered without a field it always sends (a server bug).
    #[error("petitd's answer has no {0}")]
    Missing(&'static str),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Client(err) if err.is_connection() => UNREACHABLE,
            // The reader went away (`petitctl logs RUN | head -1`): nothing failed.
            CliError::Output(err) if err.kind() == io::ErrorKind::BrokenPipe => SUCCESS,
            _ => FAILURE,
        }
    }

    /// Whether to print `error: ...`: not when nobody is left to read it.
    pub fn should_report(&self) -> bool {
        !matches!(self, CliError::Output(err) if err.kind() == io::ErrorKind::BrokenPipe)
    }
}

/// The exit code of `trigger --wait`: 0 only for a run that succeeded.
pub fn run_exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Succeeded => SUCCESS,
        _ => FAILURE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tonic::Code;

    #[test]
    fn run_outcomes() {
        let cases = [
            (RunStatus::Succeeded, SUCCESS),
            (RunStatus::Failed, FAILURE),
            (RunStatus::Cancelled, FAILURE),
            (RunStatus::Interrupted, FAILURE),
            (RunStatus::Unspecified, FAILURE),
        ];
        for (status, code) in cases {
            assert_eq!(run_exit_code(status), code, "{status:?}");
        }
    }

    #[test]
    fn error_exit_codes() {
        let server = "http://127.0.0.1:1";
        let cases: Vec<(CliError, u8, bool)> = vec![
            (
                ClientError::Rpc {
                    code: Code::NotFound,
                    message: "job 'nope' not found".into(),
                }
                .into(),
                FAILURE,
                true,
            ),
            (
                ClientError::Rpc {
                    code: Code::FailedPrecondition,
                    message: "dependency unmet".into(),
                }
                .into(),
                FAILURE,
                true,
            ),
            (
                ClientError::Unreachable {
                    server: server.into(),
                    reason: "connection refused".into(),
                }
                .into(),
                UNREACHABLE,
                true,
            ),
            (
                ClientError::Unavailable {
                    server: server.into(),
                    message: "shutting down".into(),
                }
                .into(),
                UNREACHABLE,
                true,
            ),
            (
                ClientError::Timeout {
                    server: server.into(),
                    after: Duration::from_secs(1),
                }
                .into(),
                UNREACHABLE,
                true,
            ),
            (
                io::Error::from(io::ErrorKind::BrokenPipe).into(),
                SUCCESS,
                false,
            ),
            (
                io::Error::from(io::ErrorKind::PermissionDenied).into(),
                FAILURE,
                true,
            ),
            (CliError::Missing("run"), FAILURE, true),
        ];
        for (err, code, report) in cases {
            assert_eq!(err.exit_code(), code, "{err:?}");
            assert_eq!(err.should_report(), report, "{err:?}");
        }
    }
}
