//! The connection settings both clients take, in one struct ([`ConnectOptions`]) with
//! one set of flags ([`ConnectArgs`], flattened into petitctl's and petit-tui's command
//! lines): the server address, the time limit, the API token (`PETIT_TOKEN` or
//! `--token-file`, never a flag of its own: a command line is visible to every user of
//! the machine), and for `https://` the CA to trust and the client certificate for
//! mutual TLS.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::{ClientError, DEFAULT_SERVER};

/// How to reach petitd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `http://HOST:PORT`, `https://HOST:PORT` or `HOST:PORT` (plain HTTP).
    pub server: String,
    /// Bounds connecting and each unary call.
    pub timeout: Duration,
    pub tls: TlsOptions,
    /// Sent as `authorization: Bearer <token>` on every call.
    pub token: Option<Token>,
}

/// An API token. Its `Debug` says only that there is one.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token as given; surrounding whitespace (a file's newline) is not part of it.
    pub fn new(token: &str) -> Option<Token> {
        let token = token.trim();
        (!token.is_empty()).then(|| Token(token.to_string()))
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(…)")
    }
}

/// What `https://` servers are checked against, and what this client shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// A CA certificate (PEM) to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for a server that requires one.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl ConnectOptions {
    /// Plain settings: the system's roots for `https://`, no client certificate.
    pub fn new(server: impl Into<String>, timeout: Duration) -> ConnectOptions {
        ConnectOptions {
            server: server.into(),
            timeout,
            tls: TlsOptions::default(),
            token: None,
        }
    }

    /// The same settings, sending `token` on every call.
    pub fn with_token(mut self, token: Token) -> ConnectOptions {
        self.token = Some(token);
        self
    }
}

/// The variable a token is read from; `--token-file` wins over it.
pub const TOKEN_VARIABLE: &str = "PETIT_TOKEN";

/// The connection flags, for a clap command line (`#[command(flatten)]`).
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectArgs {
    /// petitd's address: http://HOST:PORT, https://HOST:PORT (TLS) or HOST:PORT
    #[arg(
        long,
        global = true,
        env = "PETIT_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,

    /// For https://: the CA certificate (PEM) that signed petitd's certificate, trusted
    /// instead of the system's roots
    #[arg(long, global = true, env = "PETIT_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// For https:// servers that require one: this client's certificate (PEM); needs
    /// --client-key
    #[arg(
        long,
        global = true,
        env = "PETIT_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,

    /// The private key (PEM) of --client-cert
    #[arg(
        long,
        global = true,
        env = "PETIT_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,

    /// A file holding the API token for a petitd that requires one (`petitd token
    /// create` makes them). Or set PETIT_TOKEN; a token is never taken on the command
    /// line, where other users of the machine could read it
    #[arg(long, global = true, env = "PETIT_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl ConnectArgs {
    /// The settings these flags give, with `timeout`, and the token from
    /// `--token-file` or `PETIT_TOKEN`.
    pub fn options(&self, timeout: Duration) -> Result<ConnectOptions, ClientError> {
        let token = match &self.token_file {
            Some(path) => Some(read_token(path)?),
            None => std::env::var(TOKEN_VARIABLE)
                .ok()
                .and_then(|t| Token::new(&t)),
        };
        Ok(ConnectOptions {
            server: self.server.clone(),
            timeout,
            tls: TlsOptions {
                ca: self.ca.clone(),
                client_cert: self.client_cert.clone(),
                client_key: self.client_key.clone(),
            },
            token,
        })
    }
}

fn read_token(path: &Path) -> Result<Token, ClientError> {
    let error = |reason: String| ClientError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            std::io::ErrorKind::InvalidData => "not text".to_string(),
            _ => e.to_string(),
        })
    })?;
    let token = Token::new(&text).ok_or_else(|| error("it is empty".to_string()))?;
    if token.0.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(error(
            "it holds more than one word (it should hold the token alone)".to_string(),
        ));
    }
    Ok(token)
}

impl TlsOptions {
    /// The TLS settings of an `https://` connection. The files are read and checked
    /// here, so that a wrong path is reported as such rather than as a failed
    /// handshake.
    pub(crate) fn client_config(&self) -> Result<ClientTlsConfig, ClientError> {
        let mut config = ClientTlsConfig::new();
        config = match &self.ca {
            Some(path) => {
                let pem = read_pem(path, "the CA file (--ca, PETIT_CA)")?;
                let certs = CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>();
                if !certs.is_ok_and(|c| !c.is_empty()) {
                    return Err(file_error(
                        path,
                        "the CA file (--ca, PETIT_CA)",
                        "no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                    ));
                }
                config.ca_certificate(Certificate::from_pem(pem))
            }
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            let cert_what = "the client certificate (--client-cert, PETIT_CLIENT_CERT)";
            let key_what = "the client key (--client-key, PETIT_CLIENT_KEY)";
            let cert_pem = read_pem(cert, cert_what)?;
            let has_cert = CertificateDer::pem_slice_iter(&cert_pem)
                .collect::<Result<Vec<_>, _>>()
                .is_ok_and(|c| !c.is_empty());
            if !has_cert {
                return Err(file_error(
                    cert,
                    cert_what,
                    "no PEM certificate in it (-----BEGIN CERTIFICATE-----)",
                ));
            }
            let key_pem = read_pem(key, key_what)?;
            if PrivateKeyDer::from_pem_slice(&key_pem).is_err() {
                return Err(file_error(
                    key,
                    key_what,
                    "no PEM private key in it (-----BEGIN PRIVATE KEY-----)",
                ));
            }
            config = config.identity(Identity::from_pem(cert_pem, key_pem));
        }
        Ok(config)
    }
}

fn read_pem(path: &Path, what: &'static str) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
            _ => e.to_string(),
        };
        file_error(path, what, &reason)
    })
}

fn file_error(path: &Path, what: &'static str, reason: &str) -> ClientError {
    ClientError::TlsFile {
        what,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}
