//! `ClientError`: every way a call to petitd can fail, sorted into what a caller can act
//! on (retry later, or give up), each with a one-line message for a person.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tonic::{Code, Status};

/// Why a call to petitd failed.
///
/// `Display` is one line meant for a person (`job 'x' not found`,
/// `cannot reach petitd at http://127.0.0.1:8565: connection refused`), never a dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The server address cannot be used (not a URL, or a scheme we do not speak).
    #[error("invalid server address '{address}': {reason}")]
    InvalidAddress { address: String, reason: String },
    /// No connection could be made, or the connection broke.
    #[error("cannot reach petitd at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The server answered that it cannot serve now (e.g. it is shutting down).
    #[error("petitd at {server} is unavailable: {message}")]
    Unavailable { server: String, message: String },
    /// No answer within the time limit.
    #[error("petitd at {server} did not answer within {}", seconds(*.after))]
    Timeout { server: String, after: Duration },
    /// The server refused the request; `message` is the server's own explanation.
    #[error("{}", rpc_text(*.code, .message))]
    Rpc { code: Code, message: String },
}

impl ClientError {
    /// Whether retrying the same request cannot help (vector's `is_fatal`): a missing
    /// job or a bad argument stays so, while an unreachable or busy server may recover.
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::InvalidAddress { .. } => true,
            ClientError::Unreachable { .. }
            | ClientError::Unavailable { .. }
            | ClientError::Timeout { .. } => false,
            ClientError::Rpc { code, .. } => !matches!(
                code,
                Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::ResourceExhausted
                    | Code::Aborted
                    | Code::Cancelled
            ),
        }
    }

    /// Whether the server could not be reached or did not answer, as opposed to having
    /// answered with a refusal. `petitctl` exits 3 for these.
    pub fn is_connection(&self) -> bool {
        matches!(
            self,
            ClientError::Unreachable { .. }
                | ClientError::Unavailable { .. }
                | ClientError::Timeout { .. }
        )
    }

    /// The gRPC code the server answered with, for refusals.
    pub fn code(&self) -> Option<Code> {
        match self {
            ClientError::Rpc { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Sorts a failed call's status. A status that carries a source error was made on
    /// this side from a transport failure; one without came from the server.
    pub fn from_status(server: &str, timeout: Duration, status: Status) -> ClientError {
        let chain = source_chain(&status);
        let timed_out = chain
            .iter()
            .any(|e| e.downcast_ref::<tonic::TimeoutExpired>().is_some());
        if timed_out || status.code() == Code::DeadlineExceeded {
            return ClientError::Timeout {
                server: server.to_string(),
                after: timeout,
            };
        }
        if !chain.is_empty() {
            return ClientError::Unreachable {
                server: server.to_string(),
                reason: describe_chain(&chain, status.message()),
            };
        }
        match status.code() {
            Code::Unavailable => ClientError::Unavailable {
                server: server.to_string(),
                message: non_empty(status.message(), "service unavailable"),
            },
            code => ClientError::Rpc {
                code,
                message: status.message().to_string(),
            },
        }
    }

    /// A failed connection attempt (`Endpoint::connect`).
    pub fn unreachable(server: &str, err: &(dyn StdError + 'static)) -> ClientError {
        let mut chain = vec![err];
        chain.extend(source_chain(err));
        ClientError::Unreachable {
            server: server.to_string(),
            reason: describe_chain(&chain, &err.to_string()),
        }
    }
}

/// The errors below `err`, nearest first.
fn source_chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut chain = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        chain.push(e);
        next = e.source();
    }
    chain
}

/// The most telling part of a transport error chain: the OS error if there is one
/// ("connection refused"), else the innermost message.
fn describe_chain(chain: &[&(dyn StdError + 'static)], fallback: &str) -> String {
    if let Some(io) = chain
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>())
    {
        return describe_io(io);
    }
    match chain.last() {
        Some(innermost) => innermost.to_string(),
        None => non_empty(fallback, "transport error"),
    }
}

fn describe_io(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let text = match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused",
        ErrorKind::ConnectionReset => "connection reset",
        ErrorKind::ConnectionAborted => "connection aborted",
        ErrorKind::TimedOut => "connection timed out",
        ErrorKind::AddrNotAvailable => "address not available",
        ErrorKind::BrokenPipe | ErrorKind::UnexpectedEof => "connection closed",
        _ => {
            // "Name or service not known (os error -2)" -> "name or service not known"
            let raw = err.to_string();
            let trimmed = match raw.find(" (os error") {
                Some(at) => raw[..at].to_string(),
                None => raw,
            };
            return lowercase_first(&trimmed);
        }
    };
    text.to_string()
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn non_empty(s: &str, default: &str) -> String {
    if s.is_empty() {
        default.to_string()
    } else {
        s.to_string()
    }
}

fn rpc_text(code: Code, message: &str) -> String {
    if message.is_empty() {
        // `Code::description` reads "Some requested entity was not found": lowercase it
        // so it sits after "error: " like the server's own messages.
        lowercase_first(code.description())
    } else {
        message.to_string()
    }
}

/// "10s", "1.5s", "250ms"
fn seconds(d: Duration) -> impl fmt::Display {
    crate::render::format_duration(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVER: &str = "http://127.0.0.1:8565";

    fn rpc(code: Code, message: &str) -> ClientError {
        ClientError::from_status(SERVER, Duration::from_secs(10), Status::new(code, message))
    }

    #[test]
    fn display_is_one_human_line() {
        let cases = [
            (
                rpc(Code::NotFound, "job 'x' not found"),
                "job 'x' not found",
            ),
            (
                rpc(Code::NotFound, ""),
                "some requested entity was not found",
            ),
            (
                ClientError::Unreachable {
                    server: SERVER.into(),
                    reason: "connection refused".into(),
                },
                "cannot reach petitd at http://127.0.0.1:8565: connection refused",
            ),
            (
                rpc(Code::Unavailable, "the scheduler is shutting down"),
                "petitd at http://127.0.0.1:8565 is unavailable: the scheduler is shutting down",
            ),
            (
                rpc(Code::DeadlineExceeded, "deadline"),
                "petitd at http://127.0.0.1:8565 did not answer within 10.0s",
            ),
            (
                ClientError::InvalidAddress {
                    address: "ftp://x".into(),
                    reason: "only http:// is supported".into(),
                },
                "invalid server address 'ftp://x': only http:// is supported",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn fatal_and_connection_classes() {
        let unreachable = ClientError::Unreachable {
            server: SERVER.into(),
            reason: "connection refused".into(),
        };
        let cases = [
            // (error, is_fatal, is_connection)
            (rpc(Code::NotFound, "job 'x' not found"), true, false),
            (rpc(Code::InvalidArgument, "job_id is empty"), true, false),
            (
                rpc(Code::FailedPrecondition, "dependency unmet"),
                true,
                false,
            ),
            (rpc(Code::ResourceExhausted, "limit"), false, false),
            (rpc(Code::Unavailable, "shutting down"), false, true),
            (rpc(Code::DeadlineExceeded, ""), false, true),
            (unreachable, false, true),
        ];
        for (err, fatal, connection) in cases {
            assert_eq!(err.is_fatal(), fatal, "{err:?}");
            assert_eq!(err.is_connection(), connection, "{err:?}");
        }
    }

    #[test]
    fn local_transport_status_is_unreachable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        let err = ClientError::from_status(SERVER, Duration::from_secs(1), status);
        assert_eq!(
            err.to_string(),
            "cannot reach petitd at http://127.0.0.1:8565: connection refused"
        );
    }

    #[test]
    fn local_timeout_is_timeout() {
        let status = Status::from_error(Box::new(tonic::TimeoutExpired(())));
        let err = ClientError::from_status(SERVER, Duration::from_millis(500), status);
        assert!(matches!(err, ClientError::Timeout { .. }), "{err:?}");
        assert!(err.is_connection());
    }

    #[test]
    fn io_errors_read_like_prose() {
        use std::io::{Error, ErrorKind};
        let cases = [
            (
                Error::new(ErrorKind::ConnectionRefused, "x"),
                "connection refused",
            ),
            (Error::new(ErrorKind::TimedOut, "x"), "connection timed out"),
            (
                Error::other("Name or service not known (os error -2)"),
                "name or service not known",
            ),
        ];
        for (err, want) in cases {
            assert_eq!(describe_io(&err), want);
        }
    }
}
