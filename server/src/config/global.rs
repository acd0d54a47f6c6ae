//! The global `petit.yaml`: default time zone, concurrency limits, resource pools,
//! storage and log caps, and what tasks inherit from petitd's environment
//! (`environment_policy`, which jobs may narrow further). Every field is optional. The
//! original Petit's own names (`default_timezone`, `max_concurrent_jobs`,
//! `storage: {type, path}`, `default_retry`, `environment`) are accepted too, so its
//! files keep working; `environment` keeps the original's meaning (variables given to
//! every task), which is why the inheritance rules have a key of their own.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::de::{ByteSize, DurationText, ScalarText};
use super::job::{retry_policy, RawRetry};
use super::limits::{Bounded, JobFileLimits};
use super::notify::{notify_rule, RawNotify};
use super::yaml::{self, lenient, Doc};
use super::{ConfigError, ConfigErrors};
use crate::core::notify::NotifyRule;
use crate::core::{EnvPolicy, Inherit, RetryPolicy};

/// Settings of the whole daemon, from `petit.yaml`.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    /// The zone of schedules that name none. Default UTC.
    pub timezone: Tz,
    /// Runs executing at once across all jobs. Default 16.
    pub max_concurrent_runs: usize,
    /// Tasks executing at once within one run. Default 8.
    pub max_concurrent_tasks: usize,
    /// Named resource pools and their slot counts (`resources: {pools: {gpu: 2}}`).
    pub pools: BTreeMap<String, u32>,
    /// The SQLite database (`storage: {path: ...}`), relative paths resolved against
    /// the directory of `petit.yaml`. `None`: the daemon's default.
    pub storage_path: Option<PathBuf>,
    /// A shared PostgreSQL (`storage: {type: postgres, url: ...}`): cluster mode.
    pub storage_url: Option<String>,
    /// The PostgreSQL password's file (`storage.password_file`), resolved like `path`.
    pub storage_password_file: Option<PathBuf>,
    /// Bytes of stdout (and of stderr) kept per task attempt. Default 1 MiB.
    pub max_log_bytes_per_stream: usize,
    /// Days of finished runs' logs to keep; `None` keeps them forever.
    pub log_retention_days: Option<u32>,
    /// The run history jobs keep unless they say otherwise (`history:`).
    pub history: crate::core::job::History,
    /// The retry policy of tasks that declare none (the original's `default_retry`).
    pub default_retry: Option<RetryPolicy>,
    /// Environment variables given to every task; a task's own values win.
    pub environment: BTreeMap<String, String>,
    /// Size and nesting limits of job files (`job_files: {max_bytes, max_depth}`).
    pub job_files: JobFileLimits,
    /// What tasks inherit from petitd's own environment (default: all but Petit's
    /// secrets).
    pub environment_policy: EnvPolicy,
    /// The notifications of jobs that declare none (`notify:`).
    pub notify: Option<NotifyRule>,
    /// The tokens file that turns authentication on (`auth: {tokens: FILE}`), relative
    /// paths resolved against the directory of `petit.yaml`.
    pub auth_tokens: Option<PathBuf>,
    /// TLS for the listener (`tls: {cert, key, client_ca}`), paths resolved like
    /// `storage.path`. `None`: plain HTTP/2 and HTTP/1.1.
    pub tls: Option<TlsSettings>,
    /// Limits on client connections (`connections: ...`); unset ones take the
    /// daemon's defaults.
    pub connections: ConnectionSettings,
}

/// The listener's certificate, key and optional client CA (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// `connections: {max, max_streams, header_timeout, idle_timeout}`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionSettings {
    pub max: Option<usize>,
    pub max_streams: Option<u32>,
    pub header_timeout: Option<Duration>,
    pub idle_timeout: Option<Duration>,
}

impl Default for GlobalConfig {
    fn default() -> Self {
        GlobalConfig {
            timezone: Tz::UTC,
            max_concurrent_runs: 16,
            max_concurrent_tasks: 8,
            pools: BTreeMap::new(),
            storage_path: None,
            storage_url: None,
            storage_password_file: None,
            max_log_bytes_per_stream: 1 << 20,
            log_retention_days: None,
            history: crate::core::job::History::default(),
            default_retry: None,
            environment: BTreeMap::new(),
            auth_tokens: None,
            tls: None,
            connections: ConnectionSettings::default(),
            environment_policy: EnvPolicy::default(),
            notify: None,
            job_files: JobFileLimits::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    #[serde(default, deserialize_with = "lenient")]
    timezone: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    default_timezone: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    max_concurrent_runs: Option<usize>,
    #[serde(default, deserialize_with = "lenient")]
    max_concurrent_jobs: Option<usize>,
    #[serde(default, deserialize_with = "lenient")]
    max_concurrent_tasks: Option<usize>,
    #[serde(default, deserialize_with = "lenient")]
    resources: Option<RawResources>,
    #[serde(default, deserialize_with = "lenient")]
    storage: Option<RawStorage>,
    #[serde(default, deserialize_with = "lenient")]
    logs: Option<RawLogs>,
    #[serde(default, deserialize_with = "lenient")]
    default_retry: Option<RawRetry>,
    #[serde(default, deserialize_with = "lenient")]
    environment: BTreeMap<String, ScalarText>,
    #[serde(default, deserialize_with = "lenient")]
    environment_policy: Option<RawEnvPolicy>,
    #[serde(default, deserialize_with = "lenient")]
    notify: Option<RawNotify>,
    #[serde(default, deserialize_with = "lenient")]
    auth: Option<RawAuth>,
    #[serde(default, deserialize_with = "lenient")]
    tls: Option<RawTls>,
    #[serde(default, deserialize_with = "lenient")]
    connections: Option<RawConnections>,
    #[serde(default, deserialize_with = "lenient")]
    job_files: Option<RawJobFiles>,
    #[serde(default, deserialize_with = "lenient")]
    history: Option<RawHistory>,
}

/// `history: {max_runs: 1000, max_age: 30d}`, in `petit.yaml` and in a job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    #[serde(default, deserialize_with = "lenient")]
    pub max_runs: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    pub max_age: Option<DurationText>,
}

/// The checked policy, or why not.
pub(super) fn history(raw: &RawHistory) -> Result<crate::core::job::History, String> {
    if raw.max_runs == Some(0) {
        return Err("history.max_runs must be at least 1 (leave it out to keep every run)".into());
    }
    if raw.max_age.as_ref().is_some_and(|d| d.0.is_zero()) {
        return Err(
            "history.max_age must be more than 0 (leave it out to keep runs of any age)".into(),
        );
    }
    Ok(crate::core::job::History {
        max_runs: raw.max_runs,
        max_age: raw.max_age.as_ref().map(|d| d.0),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default, deserialize_with = "lenient")]
    tokens: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    #[serde(default, deserialize_with = "lenient")]
    cert: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient")]
    key: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient")]
    client_ca: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnections {
    #[serde(default, deserialize_with = "lenient")]
    max: Option<usize>,
    #[serde(default, deserialize_with = "lenient")]
    max_streams: Option<u32>,
    #[serde(default, deserialize_with = "lenient")]
    header_timeout: Option<DurationText>,
    #[serde(default, deserialize_with = "lenient")]
    idle_timeout: Option<DurationText>,
}

/// `environment_policy: {inherit: all | none | [NAMES…], deny: [PATTERNS…]}`, in
/// `petit.yaml` and in a job file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnvPolicy {
    #[serde(default, deserialize_with = "lenient")]
    inherit: Option<RawInherit>,
    #[serde(default, deserialize_with = "lenient")]
    deny: Vec<String>,
}

#[derive(Debug)]
enum RawInherit {
    Word(String),
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for RawInherit {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InheritVisitor;
        impl<'de> Visitor<'de> for InheritVisitor {
            type Value = RawInherit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("all, none or a list of variable names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawInherit, E> {
                Ok(RawInherit::Word(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawInherit, A::Error> {
                let mut names = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    names.push(name);
                }
                Ok(RawInherit::Names(names))
            }
        }
        deserializer.deserialize_any(InheritVisitor)
    }
}

/// The policy an `environment_policy:` block describes (shared with job files).
pub(super) fn env_policy(raw: &RawEnvPolicy) -> Result<EnvPolicy, String> {
    let inherit = match &raw.inherit {
        None => Inherit::All,
        Some(RawInherit::Word(w)) if w == "all" => Inherit::All,
        Some(RawInherit::Word(w)) if w == "none" => Inherit::None,
        Some(RawInherit::Word(w)) => {
            return Err(format!(
                "environment_policy.inherit: '{w}' is not all, none or a list of names"
            ))
        }
        Some(RawInherit::Names(names)) => Inherit::Names(names.clone()),
    };
    let empty = match &inherit {
        Inherit::Names(names) => names.iter().chain(&raw.deny).any(|n| n.trim().is_empty()),
        _ => raw.deny.iter().any(|n| n.trim().is_empty()),
    };
    if empty {
        return Err("environment_policy: a name or pattern is empty".to_string());
    }
    Ok(EnvPolicy {
        inherit,
        deny: raw.deny.clone(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobFiles {
    #[serde(default, deserialize_with = "lenient")]
    max_bytes: Option<ByteSize>,
    #[serde(default, deserialize_with = "lenient")]
    max_depth: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResources {
    #[serde(default, deserialize_with = "lenient")]
    pools: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    /// The original's `sqlite` or `memory`.
    #[serde(rename = "type", default, deserialize_with = "lenient")]
    kind: Option<String>,
    #[serde(default, deserialize_with = "lenient")]
    path: Option<PathBuf>,
    /// `postgres://user@host:port/db`: cluster mode on a shared PostgreSQL.
    #[serde(default, deserialize_with = "lenient")]
    url: Option<String>,
    /// A file holding the PostgreSQL password (instead of writing it in the URL).
    #[serde(default, deserialize_with = "lenient")]
    password_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLogs {
    #[serde(default, deserialize_with = "lenient")]
    max_bytes_per_stream: Option<ByteSize>,
    #[serde(default, deserialize_with = "lenient")]
    retention_days: Option<u32>,
}

impl GlobalConfig {
    /// Reads and validates `petit.yaml`; a missing file is an error (callers that make
    /// it optional check for it first).
    pub fn load(path: &Path) -> Result<GlobalConfig, ConfigErrors> {
        let text = JobFileLimits::default()
            .read(path, Bounded::GlobalConfig)
            .map_err(|unread| unread.error)?;
        GlobalConfig::parse(&text, path)
    }

    /// Parses the text of `petit.yaml`; `path` names it in errors and anchors a
    /// relative storage path.
    pub fn parse(text: &str, path: &Path) -> Result<GlobalConfig, ConfigErrors> {
        JobFileLimits::default().check(text, path, Bounded::GlobalConfig)?;
        let doc = Doc::parse(text).map_err(|e| ConfigError::new(path, Some(e.line), e.message))?;
        // Unknown fields and values of the wrong type do not stop the reading: they are
        // reported with everything else.
        let (raw, mut errors) = if super::job::is_blank(text) {
            (Some(RawGlobal::default()), Vec::new())
        } else {
            let reading = yaml::read::<RawGlobal>(&doc, path);
            (reading.value, reading.errors)
        };
        let Some(raw) = raw else {
            return Err(ConfigErrors(errors));
        };
        let root = doc.root();
        let key = |key: &str| root.key_line(key);
        let nested_key = |top: &str, key: &str| root.get(top).and_then(|at| at.key_line(key));
        let mut error = |line: Option<usize>, message: String| {
            errors.push(ConfigError::new(path, line, message));
        };
        let mut config = GlobalConfig::default();

        match (&raw.timezone, &raw.default_timezone) {
            (Some(_), Some(_)) => error(
                key("default_timezone"),
                "give either `timezone` or `default_timezone`, not both".to_string(),
            ),
            (Some(name), None) | (None, Some(name)) => match name.parse::<Tz>() {
                Ok(tz) => config.timezone = tz,
                Err(_) => error(
                    key("timezone").or(key("default_timezone")),
                    format!("unknown time zone '{name}' (use an IANA name such as Europe/Paris)"),
                ),
            },
            (None, None) => {}
        }

        match (raw.max_concurrent_runs, raw.max_concurrent_jobs) {
            (Some(_), Some(_)) => error(
                key("max_concurrent_jobs"),
                "give either `max_concurrent_runs` or `max_concurrent_jobs`, not both".to_string(),
            ),
            (Some(0), _) | (_, Some(0)) => error(
                key("max_concurrent_runs").or(key("max_concurrent_jobs")),
                "max_concurrent_runs must be at least 1".to_string(),
            ),
            (Some(n), None) | (None, Some(n)) => config.max_concurrent_runs = n,
            (None, None) => {}
        }
        match raw.max_concurrent_tasks {
            Some(0) => error(
                key("max_concurrent_tasks"),
                "max_concurrent_tasks must be at least 1".to_string(),
            ),
            Some(n) => config.max_concurrent_tasks = n,
            None => {}
        }

        if let Some(resources) = raw.resources {
            for (name, slots) in resources.pools {
                let line = root
                    .get("resources")
                    .and_then(|r| r.get("pools"))
                    .and_then(|pools| pools.key_line(&name));
                if name.trim().is_empty() {
                    error(line, "a resource pool needs a name".to_string());
                } else if slots == 0 {
                    error(
                        line,
                        format!("resource pool '{name}' must have at least 1 slot"),
                    );
                } else {
                    config.pools.insert(name, slots);
                }
            }
        }

        if let Some(storage) = raw.storage {
            let line = key("storage");
            let resolve = |p: PathBuf| match path.parent() {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p,
            };
            let postgres_url = storage.url.clone().filter(|u| is_postgres_url(u));
            match (storage.kind.as_deref(), &storage.url) {
                (Some("postgres") | None, Some(_)) if postgres_url.is_some() => {
                    config.storage_url = postgres_url;
                    config.storage_password_file = storage.password_file.clone().map(resolve);
                }
                (Some("postgres"), Some(_)) | (None, Some(_)) => error(
                    nested_key("storage", "url").or(line),
                    "storage url must start with postgres:// or postgresql://".to_string(),
                ),
                (Some("postgres"), None) => {
                    error(line, "storage of type postgres needs a url".to_string())
                }
                _ => {}
            }
            match (storage.kind.as_deref(), storage.path) {
                (Some("postgres"), None) => {}
                (Some("postgres"), Some(_)) => error(
                    nested_key("storage", "path").or(line),
                    "storage of type postgres takes a url, not a path".to_string(),
                ),
                (Some("memory"), Some(_)) => {
                    error(line, "storage of type memory takes no path".to_string())
                }
                (Some("memory"), None) => {}
                (Some("sqlite") | None, Some(p)) => config.storage_path = Some(resolve(p)),
                (Some("sqlite"), None) => {
                    error(line, "storage of type sqlite needs a path".to_string())
                }
                (None, None) => {}
                (Some(other), _) => error(
                    nested_key("storage", "type").or(line),
                    format!("unknown storage type '{other}' (expected sqlite, memory or postgres)"),
                ),
            }
        }

        if let Some(h) = &raw.history {
            match history(h) {
                Ok(policy) => config.history = policy,
                Err(message) => error(key("history"), message),
            }
        }

        if let Some(tokens) = raw.auth.and_then(|a| a.tokens) {
            config.auth_tokens = Some(match path.parent() {
                Some(dir) if tokens.is_relative() => dir.join(tokens),
                _ => tokens,
            });
        }

        if let Some(logs) = raw.logs {
            if let Some(ByteSize(bytes)) = logs.max_bytes_per_stream {
                match usize::try_from(bytes) {
                    Ok(0) | Err(_) => error(
                        nested_key("logs", "max_bytes_per_stream"),
                        format!("max_bytes_per_stream must be between 1 and {}", usize::MAX),
                    ),
                    Ok(n) => config.max_log_bytes_per_stream = n,
                }
            }
            match logs.retention_days {
                Some(0) => error(
                    nested_key("logs", "retention_days"),
                    "retention_days must be at least 1 (leave it out to keep logs forever)"
                        .to_string(),
                ),
                days => config.log_retention_days = days,
            }
        }

        if let Some(tls) = raw.tls {
            let line = key("tls");
            let resolve = |p: PathBuf| match path.parent() {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p,
            };
            match (tls.cert, tls.key) {
                (Some(cert), Some(key)) => {
                    config.tls = Some(TlsSettings {
                        cert: resolve(cert),
                        key: resolve(key),
                        client_ca: tls.client_ca.map(resolve),
                    })
                }
                _ => error(
                    line,
                    "tls needs both `cert` and `key` (PEM files)".to_string(),
                ),
            }
        }
        if let Some(c) = raw.connections {
            let key = |name: &str| nested_key("connections", name);
            if c.max == Some(0) {
                error(key("max"), "connections.max must be at least 1".to_string());
            }
            if c.max_streams == Some(0) {
                error(
                    key("max_streams"),
                    "connections.max_streams must be at least 1".to_string(),
                );
            }
            for (name, value) in [
                ("header_timeout", c.header_timeout),
                ("idle_timeout", c.idle_timeout),
            ] {
                if value.is_some_and(|d| d.0.is_zero()) {
                    error(
                        key(name),
                        format!("connections.{name} must be longer than zero"),
                    );
                }
            }
            config.connections = ConnectionSettings {
                max: c.max,
                max_streams: c.max_streams,
                header_timeout: c.header_timeout.map(|d| d.0),
                idle_timeout: c.idle_timeout.map(|d| d.0),
            };
        }

        if let Some(retry) = &raw.default_retry {
            match retry_policy(retry) {
                Ok(policy) => config.default_retry = Some(policy),
                Err(message) => error(key("default_retry"), message),
            }
        }
        config.environment = raw.environment.into_iter().map(|(k, v)| (k, v.0)).collect();
        if let Some(notify) = &raw.notify {
            match notify_rule(notify) {
                Ok(rule) => config.notify = Some(rule),
                Err(message) => error(key("notify"), message),
            }
        }

        if let Some(policy) = &raw.environment_policy {
            match env_policy(policy) {
                Ok(policy) => config.environment_policy = policy,
                Err(message) => error(key("environment_policy"), message),
            }
        }

        if let Some(limits) = raw.job_files {
            if let Some(ByteSize(bytes)) = limits.max_bytes {
                match bytes {
                    0 => error(
                        nested_key("job_files", "max_bytes"),
                        "max_bytes must be at least 1".to_string(),
                    ),
                    n => config.job_files.max_bytes = n,
                }
            }
            match limits.max_depth {
                Some(0) => error(
                    nested_key("job_files", "max_depth"),
                    "max_depth must be at least 1".to_string(),
                ),
                Some(n) => config.job_files.max_depth = n,
                None => {}
            }
        }

        if errors.is_empty() {
            Ok(config)
        } else {
            // In file order; the sort is stable so one line's errors keep their order.
            errors.sort_by_key(|e| e.line);
            Err(ConfigErrors(errors))
        }
    }
}

/// Whether a database address names PostgreSQL (cluster mode) rather than a file.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<GlobalConfig, ConfigErrors> {
        GlobalConfig::parse(text, Path::new("/etc/petit/petit.yaml"))
    }

    #[test]
    fn defaults() {
        for text in ["", "# nothing\n", "{}"] {
            assert_eq!(parse(text).unwrap(), GlobalConfig::default(), "{text:?}");
        }
        let d = GlobalConfig::default();
        assert_eq!(d.timezone, Tz::UTC);
        assert_eq!(
            (
                d.max_concurrent_runs,
                d.max_concurrent_tasks,
                d.max_log_bytes_per_stream
            ),
            (16, 8, 1 << 20)
        );
    }

    #[test]
    fn every_field() {
        let text = "\
timezone: Europe/Paris
max_concurrent_runs: 4
max_concurrent_tasks: 2
resources:
  pools:
    gpu: 2
    db: 1
storage:
  path: data/petit.db
logs:
  max_bytes_per_stream: 512KiB
  retention_days: 30
job_files:
  max_bytes: 4MiB
  max_depth: 100
default_retry:
  max_attempts: 2
  delay: 5s
environment:
  LOG_LEVEL: info
  DEBUG: true
environment_policy:
  inherit: [PATH, HOME, \"LC_*\"]
  deny: [\"AWS_*\"]
";
        let c = parse(text).unwrap();
        assert_eq!(c.timezone, chrono_tz::Europe::Paris);
        assert_eq!((c.max_concurrent_runs, c.max_concurrent_tasks), (4, 2));
        assert_eq!(
            c.pools,
            BTreeMap::from([("db".to_string(), 1), ("gpu".to_string(), 2)])
        );
        assert_eq!(
            c.storage_path,
            Some(PathBuf::from("/etc/petit/data/petit.db"))
        );
        assert_eq!(c.max_log_bytes_per_stream, 512 * 1024);
        assert_eq!(c.log_retention_days, Some(30));
        assert_eq!(
            c.job_files,
            JobFileLimits {
                max_bytes: 4 << 20,
                max_depth: 100
            }
        );
        let retry = c.default_retry.unwrap();
        assert_eq!(
            (retry.max_attempts, retry.delay),
            (2, Duration::from_secs(5))
        );
        assert_eq!(c.environment.get("DEBUG").map(String::as_str), Some("true"));
        assert_eq!(
            c.environment_policy,
            EnvPolicy {
                inherit: Inherit::Names(vec!["PATH".into(), "HOME".into(), "LC_*".into()]),
                deny: vec!["AWS_*".into()],
            }
        );
        let none = parse("environment_policy: {inherit: none}\n").unwrap();
        assert_eq!(none.environment_policy.inherit, Inherit::None);
    }

    #[test]
    fn listener_settings() {
        let text = "\
tls:
  cert: tls/cert.pem
  key: /etc/ssl/petit.key
  client_ca: tls/clients.pem
connections:
  max: 200
  max_streams: 20
  header_timeout: 5s
  idle_timeout: 1m
";
        let c = parse(text).unwrap();
        assert_eq!(
            c.tls,
            Some(TlsSettings {
                cert: PathBuf::from("/etc/petit/tls/cert.pem"),
                key: PathBuf::from("/etc/ssl/petit.key"),
                client_ca: Some(PathBuf::from("/etc/petit/tls/clients.pem")),
            })
        );
        assert_eq!(
            c.connections,
            ConnectionSettings {
                max: Some(200),
                max_streams: Some(20),
                header_timeout: Some(Duration::from_secs(5)),
                idle_timeout: Some(Duration::from_secs(60)),
            }
        );
        let bad = [
            (
                "tls:\n  cert: c.pem\n",
                1,
                "tls needs both `cert` and `key`",
            ),
            (
                "tls:\n  cert: c\n  key: k\n  ca: x\n",
                4,
                "unknown field `ca`",
            ),
            (
                "connections:\n  max: 0\n",
                2,
                "connections.max must be at least 1",
            ),
            ("connections:\n  max_streams: 0\n", 2, "at least 1"),
            ("connections:\n  idle_timeout: 0s\n", 2, "longer than zero"),
            ("connections:\n  header_timeout: soon\n", 2, "soon"),
        ];
        for (text, line, want) in bad {
            let errors = parse(text).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert_eq!(errors[0].line, Some(line), "{text}: {errors:?}");
            assert!(errors[0].message.contains(want), "{text}: {errors:?}");
        }
    }

    #[test]
    fn original_names() {
        let text = "\
default_timezone: America/New_York
max_concurrent_jobs: 10
storage:
  type: sqlite
  path: /var/lib/petit/petit.db
";
        let c = parse(text).unwrap();
        assert_eq!(c.timezone, chrono_tz::America::New_York);
        assert_eq!(c.max_concurrent_runs, 10);
        assert_eq!(
            c.storage_path,
            Some(PathBuf::from("/var/lib/petit/petit.db"))
        );
        let memory = parse("storage: {type: memory}\n").unwrap();
        assert_eq!(memory.storage_path, None);
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "timezone: Mars/Olympus\n",
                1,
                "unknown time zone 'Mars/Olympus'",
            ),
            (
                "max_concurrent_runs: 0\n",
                1,
                "max_concurrent_runs must be at least 1",
            ),
            (
                "\nmax_concurrent_tasks: 0\n",
                2,
                "max_concurrent_tasks must be at least 1",
            ),
            (
                "resources:\n  pools:\n    gpu: 0\n",
                3,
                "pool 'gpu' must have at least 1 slot",
            ),
            (
                "logs:\n  retention_days: 0\n",
                2,
                "retention_days must be at least 1",
            ),
            (
                "logs:\n  max_bytes_per_stream: 0\n",
                2,
                "max_bytes_per_stream must be",
            ),
            (
                "logs:\n  max_bytes_per_stream: 5 parsecs\n",
                2,
                "unknown unit 'parsecs'",
            ),
            ("storage:\n  type: s3\n", 2, "unknown storage type 's3'"),
            (
                "environment_policy:\n  inherit: some\n",
                1,
                "'some' is not all, none or a list of names",
            ),
            (
                "environment_policy:\n  deny: [\"\"]\n",
                1,
                "a name or pattern is empty",
            ),
            (
                "environment_policy:\n  allow: [PATH]\n",
                2,
                "unknown field `allow`",
            ),
            (
                "job_files:\n  max_bytes: 0\n",
                2,
                "max_bytes must be at least 1",
            ),
            (
                "job_files:\n  max_depth: 0\n",
                2,
                "max_depth must be at least 1",
            ),
            ("job_files:\n  max_depth: -1\n", 2, "invalid type"),
            (
                "a: [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\n",
                1,
                "nested more than 64 deep here",
            ),
            ("storage: {type: sqlite}\n", 1, "needs a path"),
            ("timezone: UTC\ndefault_timezone: UTC\n", 2, "not both"),
            ("workers: 3\n", 1, "unknown field `workers`"),
            ("logs:\n  max_lines: 3\n", 2, "unknown field `max_lines`"),
            ("max_concurrent_runs: many\n", 1, "invalid type"),
            (
                "default_retry:\n  delay: 5s\n",
                2,
                "missing field `max_attempts`",
            ),
        ];
        for (text, line, want) in cases {
            let errors = parse(text).unwrap_err().0;
            assert_eq!(errors.len(), 1, "{text}: {errors:?}");
            assert_eq!(errors[0].line, Some(line), "{text}: {errors:?}");
            assert!(errors[0].message.contains(want), "{text}: {errors:?}");
            assert_eq!(errors[0].file, PathBuf::from("/etc/petit/petit.yaml"));
        }
    }

    #[test]
    fn every_unknown_field_with_the_other_errors() {
        let text =
            "workers: 3\ntimezone: Mars/Olympus\nlogs:\n  max_lines: 3\n  retention_days: 0\n";
        let errors = parse(text).unwrap_err().0;
        let got: Vec<(Option<usize>, &str)> = errors
            .iter()
            .map(|e| (e.line, e.message.split(',').next().unwrap_or_default()))
            .collect();
        assert_eq!(
            got,
            [
                (Some(1), "unknown field `workers`"),
                (
                    Some(2),
                    "unknown time zone 'Mars/Olympus' (use an IANA name such as Europe/Paris)"
                ),
                (Some(4), "logs: unknown field `max_lines`"),
                (
                    Some(5),
                    "retention_days must be at least 1 (leave it out to keep logs forever)"
                ),
            ]
        );
    }

    #[test]
    fn missing_file() {
        let err = GlobalConfig::load(Path::new("/nonexistent/petit.yaml")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/petit.yaml: cannot read"),
            "{err}"
        );
    }
}
