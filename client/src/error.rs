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
    /// A TLS file given to this client (CA, client certificate or key) cannot be used.
    #[error("cannot use {what} {path}: {reason}")]
    TlsFile {
        what: &'static str,
        path: String,
        reason: String,
    },
    /// The token file (`--token-file`, PETIT_TOKEN_FILE) cannot be used.
    #[error("cannot use the token file {path}: {reason}")]
    TokenFile { path: String, reason: String },
    /// The TLS handshake failed: petitd's certificate is not trusted, petitd wants a
    /// client certificate, or one side does not speak TLS. Retrying cannot help.
    #[error("TLS with petitd at {server} failed: {reason}")]
    Tls { server: String, reason: String },
    /// The server refused the request; `message` is the server's own explanation.
    #[error("{}", rpc_text(*.code, .message))]
    Rpc { code: Code, message: String },
}

impl ClientError {
    /// Whether retrying the same request cannot help (vector's `is_fatal`): a missing
    /// job or a bad argument stays so, while an unreachable or busy server may recover.
    pub fn is_fatal(&self) -> bool {
        match self {
            ClientError::InvalidAddress { .. }
            | ClientError::TlsFile { .. }
            | ClientError::TokenFile { .. }
            | ClientError::Tls { .. } => true,
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

    /// Whether petitd refused this client's credentials: no token where one is needed,
    /// an unknown one, or one whose role does not allow the call. Retrying soon cannot
    /// help; a fixed tokens file or a new token can.
    pub fn is_denied(&self) -> bool {
        matches!(
            self.code(),
            Some(Code::Unauthenticated | Code::PermissionDenied)
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
        if let Some(reason) = tls_failure(&chain, server) {
            return ClientError::Tls {
                server: server.to_string(),
                reason,
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
        if let Some(reason) = tls_failure(&chain, server) {
            return ClientError::Tls {
                server: server.to_string(),
                reason,
            };
        }
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

/// What went wrong in a failed TLS handshake, for a person, when the chain holds one.
/// rustls errors hide inside `io::Error`s, whose `source()` skips them.
fn tls_failure(chain: &[&(dyn StdError + 'static)], server: &str) -> Option<String> {
    let tls = chain.iter().find_map(|e| {
        e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        })
    });
    if let Some(err) = tls {
        return Some(describe_tls(err));
    }
    // tonic's own TLS errors are private types, and h2 keeps only the text of the I/O
    // errors it meets (an alert the server sends after the handshake, as TLS 1.3 does
    // when it refuses a client certificate): known by their text.
    let texts: Vec<String> = chain.iter().map(|e| e.to_string()).collect();
    if let Some(alert) = texts
        .iter()
        .find_map(|t| t.split_once("received fatal alert: ").map(|(_, a)| a))
    {
        let alert = alert.split_whitespace().next().unwrap_or_default();
        return Some(describe_alert(alert));
    }
    if texts.iter().any(|t| t.contains("no native certs found")) {
        return Some(
            "this system has no CA certificates to check petitd's with (give its CA with --ca FILE or PETIT_CA)"
                .to_string(),
        );
    }
    if texts
        .iter()
        .any(|t| t.contains("HTTP/2 was not negotiated"))
    {
        return Some("the server did not agree to HTTP/2 (is it petitd?)".to_string());
    }
    if server.starts_with("http://")
        && texts
            .iter()
            .any(|t| t.contains("frame with invalid size") || t.contains("FRAME_SIZE_ERROR"))
    {
        // A TLS server answers a plain HTTP/2 preface with a TLS alert, which reads as
        // an oversized frame.
        return Some("the port expects TLS: use https://".to_string());
    }
    None
}

fn describe_tls(err: &rustls::Error) -> String {
    use rustls::{CertificateError as Cert, Error};
    const GIVE_CA: &str = "give the CA that signed it with --ca FILE or PETIT_CA";
    match err {
        Error::InvalidCertificate(Cert::UnknownIssuer) => {
            format!("its certificate is not signed by a CA this client trusts ({GIVE_CA})")
        }
        Error::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            "its certificate is not valid for the host in the address".to_string()
        }
        Error::InvalidCertificate(Cert::Expired | Cert::ExpiredContext { .. }) => {
            "its certificate has expired".to_string()
        }
        Error::InvalidCertificate(Cert::NotValidYet | Cert::NotValidYetContext { .. }) => {
            "its certificate is not valid yet (is this machine's clock right?)".to_string()
        }
        Error::InvalidCertificate(other) => format!("its certificate was refused: {other}"),
        Error::AlertReceived(alert) => describe_alert(&format!("{alert:?}")),
        Error::InvalidMessage(_) | Error::InappropriateMessage { .. } => {
            "the server does not speak TLS on this port (try http://)".to_string()
        }
        other => other.to_string(),
    }
}

/// A TLS alert from petitd, by its rustls name (`CertificateRequired`).
fn describe_alert(alert: &str) -> String {
    match alert {
        "CertificateRequired" => {
            "petitd requires a client certificate (give --client-cert and --client-key)".to_string()
        }
        "BadCertificate" | "UnknownCA" | "CertificateUnknown" | "DecryptError" => {
            "petitd refused this client's certificate (is it signed by the CA petitd trusts?)"
                .to_string()
        }
        other => format!("petitd ended the handshake ({other})"),
    }
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
            // (error, is_fatal, is_connection, is_denied)
            (rpc(Code::NotFound, "job 'x' not found"), true, false, false),
            (
                rpc(Code::InvalidArgument, "job_id is empty"),
                true,
                false,
                false,
            ),
            (
                rpc(Code::FailedPrecondition, "dependency unmet"),
                true,
                false,
                false,
            ),
            (rpc(Code::Unauthenticated, "no token"), true, false, true),
            (rpc(Code::PermissionDenied, "viewer"), true, false, true),
            (rpc(Code::ResourceExhausted, "limit"), false, false, false),
            (rpc(Code::Unavailable, "shutting down"), false, true, false),
            (rpc(Code::DeadlineExceeded, ""), false, true, false),
            (unreachable, false, true, false),
        ];
        for (err, fatal, connection, denied) in cases {
            assert_eq!(err.is_fatal(), fatal, "{err:?}");
            assert_eq!(err.is_connection(), connection, "{err:?}");
            assert_eq!(err.is_denied(), denied, "{err:?}");
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
    fn tls_failures_are_one_line_and_fatal() {
        use rustls::{AlertDescription, CertificateError};
        let https = "https://127.0.0.1:8565";
        let cases = [
            (
                rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
                "TLS with petitd at https://127.0.0.1:8565 failed: its certificate is not signed by a CA this client trusts (give the CA that signed it with --ca FILE or PETIT_CA)",
            ),
            (
                rustls::Error::InvalidCertificate(CertificateError::Expired),
                "TLS with petitd at https://127.0.0.1:8565 failed: its certificate has expired",
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                "TLS with petitd at https://127.0.0.1:8565 failed: petitd requires a client certificate (give --client-cert and --client-key)",
            ),
            (
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                "TLS with petitd at https://127.0.0.1:8565 failed: the server does not speak TLS on this port (try http://)",
            ),
        ];
        for (tls, want) in cases {
            // As tonic reports it: the rustls error inside an io::Error.
            let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
            let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
            let err = ClientError::from_status(https, Duration::from_secs(1), status);
            assert_eq!(err.to_string(), want);
            assert!(err.is_fatal() && !err.is_connection(), "{err:?}");
        }
    }

    #[test]
    fn a_tls_alert_known_only_by_its_text() {
        let io = std::io::Error::other("received fatal alert: UnknownCA");
        let status = Status::from_error(Box::new(tonic::ConnectError(Box::new(io))));
        let err = ClientError::from_status("https://x:1", Duration::from_secs(1), status);
        assert_eq!(
            err.to_string(),
            "TLS with petitd at https://x:1 failed: petitd refused this client's certificate (is it signed by the CA petitd trusts?)"
        );
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
