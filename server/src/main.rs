//! `petitd`, the Petit daemon: parses flags, loads the config and the job files, opens
//! the store, starts the engine, and serves the API until SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use petit_server::api::grpc::Exposure;
use petit_server::auth::{self, Authenticator, Keyring, Role};
use petit_server::config::{self, GlobalConfig};
use petit_server::core::schedule::parse_duration;
use petit_server::metrics::Metrics;
use petit_server::private_files;
use petit_server::serve::{self, ConnectionLimits, ServeOptions, TlsFiles};
use petit_server::store::{beside, DataLock, MemoryStore, SqliteStore, Store, StoreOptions};
use petit_server::{Engine, EngineOptions};
use tokio::sync::mpsc;
use tracing_subscriber::EnvFilter;

/// Petit's daemon: runs the jobs of a directory on their schedules and serves the gRPC
/// and REST API (for petitctl, petit-tui, grpcurl and curl) on one port.
#[derive(Parser, Debug)]
#[command(name = "petitd", version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    daemon: DaemonArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Checks the job files of DIR without starting: prints every error as
    /// `file:line: message` and exits 1 if there is any, else prints `N jobs OK`.
    Validate {
        /// The job directory to check.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Global config file (its time zone applies to the schedules).
        #[arg(long, env = "PETIT_CONFIG", value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Manages the API tokens of a tokens file (see `--tokens`). petitd follows the
    /// file's changes: a new or revoked token applies to the next call, no restart.
    Token {
        #[command(subcommand)]
        action: TokenCommand,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Creates a token named NAME and prints it, once: only its hash is stored. Give it
    /// to the client as PETIT_TOKEN or in a file for `--token-file`.
    Create {
        /// A name for the token (who or what uses it: `ci`, `alice`, `dashboard`);
        /// runs it triggers and calls it makes are recorded under this name.
        #[arg(value_name = "NAME")]
        name: String,
        /// What the token may do: `viewer` reads, lists, watches and follows logs;
        /// `operator` also triggers, cancels, pauses and resumes; `admin` everything
        /// (the audit record included).
        #[arg(long, value_name = "ROLE")]
        role: Role,
        #[command(flatten)]
        file: TokensFileArgs,
    },
    /// Lists the tokens (name, role, creation time; never the tokens themselves).
    List {
        #[command(flatten)]
        file: TokensFileArgs,
    },
    /// Revokes the token named NAME: petitd refuses it from its next call on.
    Revoke {
        #[arg(value_name = "NAME")]
        name: String,
        #[command(flatten)]
        file: TokensFileArgs,
    },
}

#[derive(clap::Args, Debug)]
struct TokensFileArgs {
    /// The tokens file (created 0600 if missing). Default: the config file's
    /// `auth.tokens`.
    #[arg(long, env = "PETIT_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Global config file, for its `auth.tokens`.
    #[arg(long, env = "PETIT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct DaemonArgs {
    /// Directory of job files (`*.yaml`, `*.yml`).
    #[arg(long, env = "PETIT_JOBS", value_name = "DIR", default_value = "./jobs")]
    jobs: PathBuf,

    /// SQLite database holding the run history (created if missing). Default: the
    /// config file's `storage.path` if set, else `./petit.db`. Beside it petitd keeps
    /// `<db>.lock` (one daemon per database), `<db>.pids` (task processes to kill after
    /// a crash) and `<db>.scratch` (tasks' `$PETIT_OUTPUT` files).
    #[arg(long, env = "PETIT_DB", value_name = "PATH")]
    db: Option<PathBuf>,

    /// Keep the run history in memory only: it is lost when petitd stops. Wins over
    /// `--db` (so that it also works when PETIT_DB is set).
    #[arg(long)]
    in_memory: bool,

    /// Address to serve gRPC, REST, reflection and health on. An address beyond
    /// loopback (`0.0.0.0:8565`, a LAN address) needs `--tokens` (or
    /// `--allow-unauthenticated`).
    #[arg(
        long,
        env = "PETIT_LISTEN",
        value_name = "ADDR",
        default_value = "127.0.0.1:8565"
    )]
    listen: String,

    /// Global config file (`petit.yaml`): time zone, concurrency limits, resource
    /// pools, storage path, log limits. Flags given here override it.
    #[arg(long, env = "PETIT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Tokens file (`petitd token create` makes one): every call except health then
    /// needs `authorization: Bearer <token>` with a role that allows it. Changes to the
    /// file apply at once. Default: the config file's `auth.tokens`; without either,
    /// anyone who reaches the port may do anything, which is only allowed on loopback.
    #[arg(long, env = "PETIT_TOKENS", value_name = "FILE")]
    tokens: Option<PathBuf>,

    /// Serve a non-loopback address without tokens anyway: anyone who reaches the port
    /// can trigger, cancel and pause. petitd warns at start and reports it in the
    /// scheduler state. For a network you trust completely, or a proxy that
    /// authenticates.
    #[arg(long)]
    allow_unauthenticated: bool,

    /// Reload the jobs when a file in the jobs directory (or the config file) changes,
    /// once the files have been quiet for 300 ms. Invalid files keep the previous
    /// definitions and are logged with every error. SIGHUP and `petitctl reload` do
    /// the same on demand.
    #[arg(long)]
    watch: bool,

    /// Runs executing at once across all jobs; more wait queued. Overrides the
    /// config file's `max_concurrent_runs` (default 16).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_jobs: Option<u32>,

    /// Tasks executing at once within one run. Overrides the config file's
    /// `max_concurrent_tasks` (default 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_tasks: Option<u32>,

    /// Log format on stderr; the level comes from `RUST_LOG` (default `info`).
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,

    /// On SIGTERM or SIGINT, how long running tasks may take to finish before they are
    /// killed and their runs marked interrupted: `30s`, `1m`, or a number of seconds.
    /// A second signal ends the grace period at once.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    shutdown_grace: Duration,

    #[command(flatten)]
    listener: ListenerArgs,
}

/// TLS and the limits on client connections; each overrides its `petit.yaml` key
/// (`tls: {cert, key, client_ca}`, `connections: {max, max_streams, header_timeout,
/// idle_timeout}`).
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "TLS and connections")]
struct ListenerArgs {
    /// Serve everything (gRPC, REST, health) over TLS with this certificate chain (PEM,
    /// leaf first); needs --tls-key. Plain HTTP is then not served on the port.
    #[arg(
        long,
        env = "PETIT_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(
        long,
        env = "PETIT_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,

    /// Require a client certificate signed by this CA (PEM) on every connection
    /// (mutual TLS); needs TLS on.
    #[arg(long, env = "PETIT_TLS_CLIENT_CA", value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,

    /// Client connections open at once (default 1024); one more is closed as soon as it
    /// is accepted. Lowered if the open-file limit cannot also cover the runs.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,

    /// Concurrent calls (HTTP/2 streams) on one connection (default 100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_streams: Option<u32>,

    /// Time a client has for the TLS handshake, for sending a request's headers, and to
    /// start its first request on a new connection (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    header_timeout: Option<Duration>,

    /// A connection with no call in progress for this long is closed (default 2m).
    /// Streams in progress (watch, follow) keep their connection however quiet.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    idle_timeout: Option<Duration>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Validate { dir, config }) => validate(&dir, config.as_deref()),
        Some(Command::Token { action }) => token(action),
        None => run(cli.daemon),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn validate(dir: &Path, config: Option<&Path>) -> anyhow::Result<ExitCode> {
    let global = load_config(config)?;
    match config::load_jobs_dir(dir, &global) {
        Ok(jobs) => {
            for job in &jobs {
                let text = std::fs::read_to_string(&job.source).unwrap_or_default();
                for note in config::placeholder::script_notes(job, &text) {
                    eprintln!("{note}");
                }
            }
            println!("{} jobs OK", jobs.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn token(action: TokenCommand) -> anyhow::Result<ExitCode> {
    let path = |file: &TokensFileArgs| -> anyhow::Result<PathBuf> {
        if let Some(path) = &file.tokens {
            return Ok(path.clone());
        }
        load_config(file.config.as_deref())?
            .auth_tokens
            .ok_or_else(|| {
                anyhow::anyhow!("which tokens file? give --tokens FILE (or PETIT_TOKENS, or auth.tokens in --config)")
            })
    };
    match action {
        TokenCommand::Create { name, role, file } => {
            let path = path(&file)?;
            let token = auth::create_token(&path, &name, role)?;
            eprintln!(
                "created token '{name}' ({role}) in {}; it is shown only this once:",
                path.display()
            );
            println!("{token}");
        }
        TokenCommand::List { file } => {
            let path = path(&file)?;
            let tokens = auth::list_tokens(&path)?;
            if tokens.is_empty() {
                eprintln!("no tokens in {}", path.display());
            } else {
                let width = tokens
                    .iter()
                    .map(|t| t.name.len())
                    .max()
                    .unwrap_or(4)
                    .max(4);
                println!("{:width$}  {:8}  CREATED", "NAME", "ROLE");
                for t in tokens {
                    println!(
                        "{:width$}  {:8}  {}",
                        t.name,
                        t.role.as_str(),
                        t.created_at
                            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                }
            }
        }
        TokenCommand::Revoke { name, file } => {
            let path = path(&file)?;
            auth::revoke_token(&path, &name)?;
            eprintln!("revoked token '{name}' in {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    petit_server::alloc::tune();
    init_logging(args.log_format);
    // While this process has one thread: it changes the environment.
    let systemd = petit_server::systemd::Notifier::from_env();
    // Before anything slow, so that a busy port fails at once.
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {}", args.listen, bind_error(&e)))?;
    let global = load_config(args.config.as_deref())?;
    let bound = listener.local_addr()?;
    let tokens = args.tokens.clone().or_else(|| global.auth_tokens.clone());
    let keyring = match &tokens {
        Some(path) => {
            let keyring = Keyring::open(path).map_err(|e| {
                anyhow::anyhow!(
                    "{e} (create it with `petitd token create NAME --role ROLE --tokens {}`)",
                    path.display()
                )
            })?;
            if keyring.is_empty() {
                tracing::warn!(file = %path.display(), "the tokens file has no tokens: every call but health will be refused");
            }
            tracing::info!(file = %path.display(), tokens = keyring.len(), "authentication on: calls need a token");
            Some(Arc::new(keyring))
        }
        None => None,
    };
    let mut serve_options = serve_options(&args, &global)?;
    let exposure = exposure(
        bound,
        keyring.is_some(),
        serve_options.tls.is_some(),
        args.allow_unauthenticated,
    )?;
    for warning in &exposure.warnings {
        tracing::warn!("{warning}");
    }
    serve_options.auth = Authenticator::new(keyring);
    serve_options.exposure = exposure;
    let jobs = match config::load_jobs_dir(&args.jobs, &global) {
        Ok(jobs) => jobs,
        Err(errors) => {
            eprintln!("{errors}");
            anyhow::bail!(
                "the job files in {} have errors (listed above); `petitd validate {}` checks them without starting",
                args.jobs.display(),
                args.jobs.display()
            );
        }
    };
    let db = db_path(&args, &global);
    let metrics = Arc::new(Metrics::new());
    let (notifier, deliveries) = petit_server::notify::channel();
    serve_options.metrics = metrics.clone();
    let options = EngineOptions {
        max_concurrent_runs: args
            .max_jobs
            .map_or(global.max_concurrent_runs, |n| n as usize),
        max_concurrent_tasks: args
            .max_tasks
            .map_or(global.max_concurrent_tasks, |n| n as usize),
        pools: global.pools.clone(),
        log_retention: global
            .log_retention_days
            .map(|days| Duration::from_secs(u64::from(days) * 86_400)),
        process_ledger: db.as_deref().map(|db| beside(db, ".pids")),
        // Under the database lock: the next start empties what a crash left there.
        scratch_dir: db.as_deref().map(|db| beside(db, ".scratch")),
        observers: vec![metrics.clone(), notifier],
        loader: Some(job_loader(args.jobs.clone(), args.config.clone())),
        ..EngineOptions::default()
    };

    // One daemon per database, held until petitd exits. Before the store opens and
    // before the engine reads the process ledger, whose orphans would otherwise be
    // another live daemon's tasks.
    let _lock = db.as_deref().map(DataLock::acquire).transpose()?;
    if let Some(db) = db.as_deref() {
        for change in private_files::tighten(&private_files::beside_db(db)) {
            tracing::warn!("{change}");
        }
    }
    // Opening the database (and migrating it) is blocking work: before the runtime.
    let store = open_store(db.as_deref(), &global)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut signals = shutdown_signals()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let job_count = jobs.len();
        let engine = Engine::start(jobs, store, options).await?;
        seed_metrics(&engine, &metrics);
        deliveries.start(engine.clone(), api_base(addr, serve_options.tls.is_some()));
        if let Some(systemd) = systemd {
            let systemd = systemd.start(&engine);
            signals = notify_stopping(signals, systemd);
        }
        tracing::info!(jobs = job_count, dir = %args.jobs.display(), "jobs loaded");
        let tls = serve_options.tls.is_some();
        tracing::info!(%addr, tls, "listening (gRPC, REST under /api)");
        reload_on_sighup(&engine)?;
        if args.watch {
            petit_server::watch::start(&engine, &args.jobs, args.config.as_deref(), log_reload)
                .with_context(|| format!("cannot watch {}", args.jobs.display()))?;
            tracing::info!(dir = %args.jobs.display(), "watching the job files");
        }
        serve::serve(listener, engine, signals, serve_options).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// How the daemon is exposed, or the refusal to serve a network without tokens.
fn exposure(
    bound: SocketAddr,
    tokens: bool,
    tls: bool,
    allow_unauthenticated: bool,
) -> anyhow::Result<Exposure> {
    let mut warnings = Vec::new();
    let loopback = bound.ip().is_loopback();
    if !loopback && !tokens {
        if !allow_unauthenticated {
            anyhow::bail!(
                "refusing to serve {bound} without authentication: anyone who reaches it could trigger, cancel and pause jobs. \
                 Create a token (`petitd token create NAME --role operator --tokens tokens.yaml`) and start with \
                 `--tokens tokens.yaml`, listen on 127.0.0.1, or pass --allow-unauthenticated if this is intended"
            );
        }
        warnings.push(format!(
            "listening on {bound} without authentication (--allow-unauthenticated): anyone who reaches it can trigger, cancel and pause jobs"
        ));
    }
    if !loopback && tokens && !tls {
        warnings.push(format!(
            "listening on {bound} without TLS: tokens and job output travel in clear (use --tls-cert and --tls-key)"
        ));
    }
    Ok(Exposure {
        tokens_required: tokens,
        tls,
        warnings,
    })
}

/// Where notifications' links to runs point: this daemon's REST API, by the address
/// it listens on (the host's name when that is every address).
fn api_base(addr: SocketAddr, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host = if addr.ip().is_unspecified() {
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".to_string())
    } else if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    format!("{scheme}://{host}:{}", addr.port())
}

/// Each job's last success, read once in the background: the alert signal is right
/// from the first scrapes on, and start-up does not wait for a query per job.
fn seed_metrics(engine: &Engine, metrics: &Arc<Metrics>) {
    let engine = engine.clone();
    let metrics = metrics.clone();
    tokio::spawn(async move {
        for job in engine.jobs() {
            match engine
                .store()
                .last_run(&job.id, &[petit_server::core::RunStatus::Succeeded])
                .await
            {
                Ok(Some(run)) => {
                    metrics.seed_last_success(&job.id, run.ended_at.unwrap_or(run.created_at))
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(job = %job.id, "cannot read the last success for the metrics: {e}")
                }
            }
        }
    });
}

/// TLS and connection limits from the flags, else `petit.yaml`, else the defaults.
/// Raises the open-file limit, and keeps the connection limit within what it leaves
/// once the runs' descriptors are set aside.
fn serve_options(args: &DaemonArgs, global: &GlobalConfig) -> anyhow::Result<ServeOptions> {
    let flags = &args.listener;
    let from_config = global.tls.as_ref();
    let tls_files = match (&flags.tls_cert, &flags.tls_key, from_config) {
        (Some(cert), Some(key), _) => Some(TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: flags.tls_client_ca.clone(),
        }),
        (_, _, Some(tls)) => Some(TlsFiles {
            cert: tls.cert.clone(),
            key: tls.key.clone(),
            client_ca: flags.tls_client_ca.clone().or(tls.client_ca.clone()),
        }),
        _ => None,
    };
    if tls_files.is_none() && flags.tls_client_ca.is_some() {
        anyhow::bail!("--tls-client-ca needs TLS on: give --tls-cert and --tls-key too");
    }
    let tls = match &tls_files {
        Some(files) => {
            let acceptor = serve::tls_acceptor(files).context("cannot set up TLS")?;
            tracing::info!(
                cert = %files.cert.display(),
                client_certificates = if files.client_ca.is_some() { "required" } else { "not asked" },
                "TLS on"
            );
            Some(acceptor)
        }
        None => {
            tracing::info!(
                "TLS off: plain HTTP/2 and HTTP/1.1 (give --tls-cert and --tls-key to turn it on)"
            );
            None
        }
    };

    let settings = &global.connections;
    let asked = flags
        .max_connections
        .map(|n| n as usize)
        .or(settings.max)
        .unwrap_or(serve::DEFAULT_MAX_CONNECTIONS);
    let runs = args
        .max_jobs
        .map_or(global.max_concurrent_runs, |n| n as usize);
    let tasks = args
        .max_tasks
        .map_or(global.max_concurrent_tasks, |n| n as usize);
    let open_files = match serve::raise_open_file_limit() {
        Ok(files) => files,
        Err(e) => {
            tracing::warn!("cannot read or raise the open-file limit: {e}");
            serve::OpenFiles {
                before: 1024,
                now: 1024,
            }
        }
    };
    let (max_connections, warning) = serve::connection_budget(
        asked,
        open_files.now,
        serve::descriptors_for_runs(runs, tasks),
    );
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    let limits = ConnectionLimits {
        max_connections,
        max_streams_per_connection: flags
            .max_streams
            .or(settings.max_streams)
            .unwrap_or(serve::DEFAULT_MAX_STREAMS),
        header_timeout: flags
            .header_timeout
            .or(settings.header_timeout)
            .unwrap_or(serve::DEFAULT_HEADER_TIMEOUT),
        idle_timeout: flags
            .idle_timeout
            .or(settings.idle_timeout)
            .unwrap_or(serve::DEFAULT_IDLE_TIMEOUT),
        ..ConnectionLimits::default()
    };
    tracing::info!(
        max_connections,
        max_streams = limits.max_streams_per_connection,
        header_timeout = ?limits.header_timeout,
        idle_timeout = ?limits.idle_timeout,
        open_files = open_files.now,
        "connection limits"
    );
    Ok(ServeOptions {
        grace: args.shutdown_grace,
        tls,
        limits,
        // Set by the caller once tokens are read.
        auth: Authenticator::default(),
        exposure: Exposure::default(),
        metrics: Arc::default(),
    })
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be longer than zero".to_string()),
        d => Ok(d),
    }
}

/// How the engine reads the job set again: `petit.yaml` (its job defaults: zone,
/// environment, notify; limits and the listener need a restart) and the jobs directory.
fn job_loader(dir: PathBuf, config: Option<PathBuf>) -> petit_server::engine::JobLoader {
    petit_server::engine::JobLoader(Arc::new(move || {
        let global = load_config(config.as_deref()).map_err(|e| vec![e.to_string()])?;
        config::load_jobs_dir(&dir, &global)
            .map_err(|errors| errors.0.iter().map(|e| e.to_string()).collect())
    }))
}

/// SIGHUP reloads the jobs (as `ReloadJobs` does); the outcome goes to the log.
fn reload_on_sighup(engine: &Engine) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    let engine = engine.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the jobs");
            log_reload(engine.reload().await);
        }
    });
    Ok(())
}

/// One reload's outcome, in the log: what changed, or every error.
fn log_reload(outcome: Result<petit_server::engine::ReloadDiff, petit_server::EngineError>) {
    match outcome {
        Ok(diff) => tracing::info!(
            added = %diff.added.join(","),
            removed = %diff.removed.join(","),
            changed = %diff.changed.join(","),
            unchanged = diff.unchanged.len(),
            "reload done"
        ),
        Err(petit_server::EngineError::ReloadRefused(errors)) => {
            for error in &errors {
                tracing::error!("reload refused: {error}");
            }
        }
        Err(e) => tracing::error!("reload failed: {e}"),
    }
}

/// The global config: the file given, or the defaults.
fn load_config(path: Option<&Path>) -> anyhow::Result<GlobalConfig> {
    match path {
        Some(path) => GlobalConfig::load(path).map_err(|e| anyhow::anyhow!("{e}")),
        None => Ok(GlobalConfig::default()),
    }
}

/// The SQLite file to use, or `None` with `--in-memory`.
fn db_path(args: &DaemonArgs, global: &GlobalConfig) -> Option<PathBuf> {
    if args.in_memory {
        return None;
    }
    Some(
        args.db
            .clone()
            .or_else(|| global.storage_path.clone())
            .unwrap_or_else(|| PathBuf::from("./petit.db")),
    )
}

/// The SQLite store at `db`, or the in-memory store when `None` (`--in-memory`).
fn open_store(db: Option<&Path>, global: &GlobalConfig) -> anyhow::Result<Arc<dyn Store>> {
    let options = StoreOptions {
        max_log_bytes_per_stream: global.max_log_bytes_per_stream,
    };
    let Some(path) = db else {
        tracing::info!("history kept in memory only (--in-memory)");
        return Ok(Arc::new(MemoryStore::new(options)));
    };
    // The store's error names the path.
    let store = SqliteStore::open(path, options).map_err(anyhow::Error::new)?;
    tracing::info!(db = %path.display(), "database open");
    Ok(Arc::new(store))
}

/// The reason a bind failed, in words that say what to do.
fn bind_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            "address already in use (is another petitd running? choose another with --listen)"
                .to_string()
        }
        std::io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    }
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a person at a terminal, not for log files and journald.
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Passes the shutdown signals on, telling the service manager at the first one.
fn notify_stopping(
    mut signals: mpsc::Receiver<()>,
    systemd: Arc<petit_server::systemd::Notifier>,
) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let mut first = true;
        while let Some(()) = signals.recv().await {
            if std::mem::take(&mut first) {
                systemd.stopping();
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// A message for every SIGTERM or SIGINT: the first starts the shutdown, a second cuts
/// its grace period short.
fn shutdown_signals() -> anyhow::Result<mpsc::Receiver<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!("{name} received");
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
