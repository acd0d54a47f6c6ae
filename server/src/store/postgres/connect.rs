//! How the PostgreSQL store reaches its database: the URL (with the parameters libpq
//! knows and the driver does not: `passfile`, `sslrootcert`, `verify-*` modes), where
//! the password comes from, TLS, and the URL as it may be shown (without password).
//!
//! The password is looked up in this order: a password file given to the store
//! (`--db-password-file`: the file holds the password alone), the URL, the URL's
//! `passfile=`, `PGPASSFILE`, `~/.pgpass` (the last three in libpq's format, ignored,
//! as by libpq, when group or others may read them). It never appears in an error or
//! a log: every message names the database by [`DatabaseUrl::redacted`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::store::{StoreError, StoreResult};

/// How long a new connection may take before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The driver's default idle time before TCP keepalives start (left alone when the
/// URL sets another).
const DEFAULT_KEEPALIVES_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
const KEEPALIVES_IDLE: Duration = Duration::from_secs(15);
const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVES_RETRIES: u32 = 3;
/// Data (keepalive probes included) unacknowledged this long: the connection is lost.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// A parsed database URL, ready to connect with.
pub(super) struct DatabaseUrl {
    pub(super) config: tokio_postgres::Config,
    pub(super) tls: MakeRustlsConnect,
    /// The URL without its password, for messages.
    pub(super) redacted: String,
}

/// What the store needs to reach its database.
#[derive(Debug, Clone, Default)]
pub struct PostgresConfig {
    /// `postgres://user@host:port/db?sslmode=require` (or the `key=value` form).
    pub url: String,
    /// A file that holds the password alone (trailing newline ignored); wins over a
    /// password in the URL and over password files in libpq's format.
    pub password_file: Option<PathBuf>,
}

impl DatabaseUrl {
    pub(super) fn parse(settings: &PostgresConfig) -> StoreResult<DatabaseUrl> {
        let redacted = redact(&settings.url);
        let unusable = |reason: String| StoreError::PostgresUnavailable {
            context: format!("cannot use database URL {redacted}"),
            reason,
        };
        let (url, extra) = split_extra_parameters(&settings.url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| unusable(e.to_string()))?;
        // TLS only when the URL asks for it, and then always verified (`require`
        // included, unlike libpq): a password must not go to a server nobody checked.
        let tls_asked = matches!(
            extra.sslmode.as_deref(),
            Some("require" | "verify-ca" | "verify-full")
        ) || config.get_ssl_mode() == SslMode::Require;
        config.ssl_mode(if tls_asked {
            SslMode::Require
        } else {
            SslMode::Disable
        });
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        // A peer that vanished (a cut network, a database host gone) is noticed within
        // about half a minute, not the system's two hours: the notes connection idles,
        // and a node must hear that it lost it (then it resynchronises).
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVES_IDLE {
            config.keepalives_idle(KEEPALIVES_IDLE);
        }
        if config.get_keepalives_interval().is_none() {
            config.keepalives_interval(KEEPALIVES_INTERVAL);
        }
        if config.get_keepalives_retries().is_none() {
            config.keepalives_retries(KEEPALIVES_RETRIES);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("petitd");
        }
        if let Some(file) = &settings.password_file {
            config.password(read_password_file(file).map_err(unusable)?);
        } else if config.get_password().is_none() {
            let passfile = extra
                .passfile
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("PGPASSFILE").map(PathBuf::from))
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".pgpass")));
            if let Some(password) = passfile.and_then(|file| pgpass_lookup(&file, &config)) {
                config.password(password);
            }
        }
        let tls = tls_connector(extra.sslrootcert.as_deref()).map_err(unusable)?;
        Ok(DatabaseUrl {
            config,
            tls,
            redacted,
        })
    }
}

/// The parameters libpq knows that the driver refuses, taken out of the URL.
#[derive(Default)]
struct ExtraParameters {
    passfile: Option<String>,
    sslrootcert: Option<String>,
    sslmode: Option<String>,
}

/// Takes `passfile`, `sslrootcert` and a `verify-*` `sslmode` out of a URL's query (the
/// driver knows `disable`, `prefer` and `require` only).
fn split_extra_parameters(url: &str) -> (String, ExtraParameters) {
    let mut extra = ExtraParameters::default();
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), extra);
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let decoded = percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned();
        match key {
            "passfile" => extra.passfile = Some(decoded),
            "sslrootcert" => extra.sslrootcert = Some(decoded),
            "sslmode" => {
                if decoded == "verify-ca" || decoded == "verify-full" {
                    kept.push("sslmode=require".to_owned());
                } else {
                    kept.push(pair.to_owned());
                }
                extra.sslmode = Some(decoded);
            }
            _ => kept.push(pair.to_owned()),
        }
    }
    if kept.is_empty() {
        (base.to_owned(), extra)
    } else {
        (format!("{base}?{}", kept.join("&")), extra)
    }
}

/// The URL with any password taken out (of the user part and of a `password=`
/// parameter), for messages and logs.
pub fn redact(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            // The user part ends at the last '@' before the path.
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            let authority = match authority.rsplit_once('@') {
                Some((user, host)) => {
                    let user = user.split_once(':').map_or(user, |(name, _)| name);
                    format!("{user}@{host}")
                }
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        // The `key=value` form: drop the password pair.
        None => base
            .split_whitespace()
            .filter(|pair| !pair.starts_with("password="))
            .collect::<Vec<_>>()
            .join(" "),
    };
    if let Some(query) = query {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.starts_with("password="))
            .collect();
        if !kept.is_empty() {
            out.push('?');
            out.push_str(&kept.join("&"));
        }
    }
    out
}

fn read_password_file(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the password file {}: {e}", file.display()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(format!("the password file {} is empty", file.display()));
    }
    Ok(password.to_owned())
}

/// The password for this connection in a libpq password file
/// (`host:port:database:user:password`, `*` matching anything, `\` escaping), if the
/// file exists, is private, and has a matching line.
fn pgpass_lookup(file: &Path, config: &tokio_postgres::Config) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(file).ok()?;
    if meta.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %file.display(),
            "password file ignored: group or others may read it (chmod 0600 it)"
        );
        return None;
    }
    let text = std::fs::read_to_string(file).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        // As libpq: a socket directory matches `localhost`.
        Some(Host::Unix(_)) => "localhost".to_owned(),
        None => "localhost".to_owned(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = config.get_user().unwrap_or_default().to_owned();
    let database = config
        .get_dbname()
        .map_or_else(|| user.clone(), str::to_owned);
    pgpass_match(&text, [&host, &port, &database, &user])
}

fn pgpass_match(text: &str, wanted: [&str; 4]) -> Option<String> {
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = pgpass_fields(line);
        if fields.len() != 5 {
            continue;
        }
        let matches = fields[..4]
            .iter()
            .zip(wanted)
            .all(|(field, want)| field == "*" || field == want);
        if matches {
            return Some(fields[4].clone());
        }
    }
    None
}

/// A password file line's fields, split at unescaped `:`, escapes removed.
fn pgpass_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(field)) = (chars.next(), fields.last_mut()) {
                    field.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

/// rustls with the ring provider, trusting the system's roots, or the CA file given
/// by `sslrootcert`.
fn tls_connector(root_file: Option<&str>) -> Result<MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_file {
        Some(file) => {
            use rustls_pki_types::pem::PemObject;
            let pem =
                std::fs::read(file).map_err(|e| format!("cannot read sslrootcert {file}: {e}"))?;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| format!("sslrootcert {file}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {file}: {e}"))?;
            }
            if roots.is_empty() {
                return Err(format!("sslrootcert {file} holds no certificate"));
            }
        }
        None => {
            // Unreadable system certificates leave the store empty: a TLS connection
            // then fails with a certificate error, which says what is wrong.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_every_password() {
        let cases = [
            ("postgres://u:s3cret@h:5432/db", "postgres://u@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgresql://h/db?password=s3cret&sslmode=require",
                "postgresql://h/db?sslmode=require",
            ),
            ("postgres://u:p%40ss@h/db?password=x", "postgres://u@h/db"),
            (
                "host=h user=u password=s3cret dbname=d",
                "host=h user=u dbname=d",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }

    #[test]
    fn extra_parameters_leave_the_url() {
        let (url, extra) = split_extra_parameters(
            "postgres://h/db?passfile=%2Ftmp%2Fpw&sslmode=verify-full&sslrootcert=/ca.pem&x=1",
        );
        assert_eq!(url, "postgres://h/db?sslmode=require&x=1");
        assert_eq!(extra.passfile.as_deref(), Some("/tmp/pw"));
        assert_eq!(extra.sslrootcert.as_deref(), Some("/ca.pem"));
        assert_eq!(extra.sslmode.as_deref(), Some("verify-full"));
        let (url, _) = split_extra_parameters("postgres://h/db?passfile=/p");
        assert_eq!(url, "postgres://h/db");
    }

    #[test]
    fn pgpass_lines_match_like_libpq() {
        let text = "# comment\n\
                    other:5432:db:u:nope\n\
                    h:5432:d\\:b:u:with\\:colon\n\
                    *:*:*:u:fallback\n";
        let cases = [
            (["h", "5432", "d:b", "u"], Some("with:colon")),
            (["x", "1", "y", "u"], Some("fallback")),
            (["x", "1", "y", "someone"], None),
        ];
        for (wanted, password) in cases {
            assert_eq!(
                pgpass_match(text, wanted).as_deref(),
                password,
                "{wanted:?}"
            );
        }
    }
}
