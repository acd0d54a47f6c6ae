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
use petit_server::engine::ClusterOptions;
use petit_server::exec::watchdog::Watchdog;
use petit_server::metrics::Metrics;
use petit_server::private_files;
use petit_server::serve::{self, ConnectionLimits, ServeOptions, TlsFiles};
use petit_server::store::{beside, DataLock, NodeInfo, Opened, Storage, StoreOptions};
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
    /// Copies a history (runs, task runs, outputs, logs, notifications, audit record,
    /// pauses) into another database, e.g. a SQLite file into the PostgreSQL of a new
    /// cluster. Stop the petitd using the source first. Runs already in the target are
    /// left alone, so a migration cut short can be run again.
    #[command(
        after_help = "Example: petitd migrate --from sqlite:/var/lib/petit/petit.db --to postgres://petit@db.internal/petit --db-password-file /etc/petit/db-password"
    )]
    /// Copies a run history from one store to another (a SQLite file to a cluster's
    /// PostgreSQL, or back): runs with their tasks, logs and notifications, the audit
    /// record, the pauses. Runs the target already has are left alone, so it can run
    /// again; a SQLite side must not be in use by a petitd
    Migrate {
        /// The source: `sqlite:PATH` (or a plain path), or a postgres:// URL.
        #[arg(long, value_name = "DB")]
        from: String,
        /// The target: a postgres:// URL, or `sqlite:PATH`.
        #[arg(long, value_name = "DB")]
        to: String,
        /// A file holding the PostgreSQL password (for whichever side is PostgreSQL).
        #[arg(long, env = "PETIT_DB_PASSWORD_FILE", value_name = "FILE")]
        db_password_file: Option<PathBuf>,
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

    /// Where the run history is kept: a SQLite file (created if missing), or
    /// `postgres://user@host:port/db` for cluster mode (several petitd sharing one
    /// PostgreSQL; add `?sslmode=require` for TLS to it). Default: the config file's
    /// `storage.path` or `storage.url`, else `./petit.db`. Beside a SQLite file petitd
    /// keeps `<db>.lock` (one daemon per database), `<db>.pids` (task processes to kill
    /// after a crash) and `<db>.scratch` (tasks' `$PETIT_OUTPUT` files); a cluster node
    /// keeps them in --node-dir.
    #[arg(long, env = "PETIT_DB", value_name = "PATH|URL")]
    db: Option<String>,

    #[command(flatten)]
    cluster: ClusterArgs,

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

/// Cluster mode (`--db postgres://...`).
#[derive(clap::Args, Debug)]
#[command(next_help_heading = "Cluster mode (--db postgres://...)")]
struct ClusterArgs {
    /// A file holding the PostgreSQL password, so that it is neither in the URL nor in
    /// the environment (`PGPASSFILE` and `~/.pgpass` work too). Default: the config
    /// file's `storage.password_file`. Never logged, never passed to tasks.
    #[arg(long, env = "PETIT_DB_PASSWORD_FILE", value_name = "FILE")]
    db_password_file: Option<PathBuf>,

    /// This node's name in the cluster, stable across restarts (a restarted node takes
    /// back what it left). Default: the host name.
    #[arg(long, env = "PETIT_NODE_ID", value_name = "NAME")]
    node_id: Option<String>,

    /// This node's own files (lock, process ledger, `$PETIT_OUTPUT` scratch), one
    /// directory per node. Default: `./petit-node-<node id>`.
    #[arg(long, env = "PETIT_NODE_DIR", value_name = "DIR")]
    node_dir: Option<PathBuf>,

    /// How often this node renews its lease (default 2s).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    heartbeat: Option<Duration>,

    /// A node that has not renewed its lease for this long is dead: the others take
    /// its runs over, and it stops its own runs (default 10s).
    #[arg(long, value_name = "DURATION", value_parser = positive_duration)]
    lease: Option<Duration>,
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
        Some(Command::Migrate {
            from,
            to,
            db_password_file,
        }) => migrate(&from, &to, db_password_file),
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

/// `petitd migrate`: opens both stores and copies the history across.
fn migrate(from: &str, to: &str, password_file: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    init_logging(LogFormat::Text);
    let storage = |db: &str| {
        let db = db.strip_prefix("sqlite:").unwrap_or(db);
        Storage::choose(
            false,
            Some(db),
            password_file.clone(),
            &GlobalConfig::default(),
        )
    };
    let (source, target) = (storage(from), storage(to));
    if source == target {
        anyhow::bail!("--from and --to are the same database");
    }
    // A SQLite source or target is this process's alone while it copies.
    let _locks: Vec<DataLock> = [&source, &target]
        .into_iter()
        .filter_map(|s| match s {
            Storage::Sqlite(path) => Some(DataLock::acquire(path)),
            _ => None,
        })
        .collect::<Result<_, _>>()?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let done = runtime.block_on(async {
        let options = StoreOptions::default();
        let from = match source.open(options.clone()).await? {
            Opened::Alone(store) | Opened::Shared(store, _) => store,
        };
        let to = match target.open(options).await? {
            Opened::Alone(store) | Opened::Shared(store, _) => store,
        };
        petit_server::store::migrate(&*from, &*to, |done| {
            eprintln!(
                "migrate: {} runs copied, {} already there",
                done.runs, done.skipped
            );
        })
        .await
    })?;
    println!(
        "migrated {} runs ({} task runs, {} log lines, {} notifications), {} audit records, {} paused jobs; {} runs were already in the target",
        done.runs,
        done.task_runs,
        done.log_lines,
        done.notifications,
        done.audit_records,
        done.paused_jobs,
        done.skipped
    );
    Ok(ExitCode::SUCCESS)
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
    // First, while this process has one thread and has allocated next to nothing: the
    // watchdog shares its pages (see `exec::watchdog`). It acts once armed, below.
    // SAFETY: nothing has started a thread yet (the trimmer starts next).
    let mut watchdog = Some(unsafe { Watchdog::fork() }.context("cannot start petitd's watchdog")?);
    petit_server::alloc::tune();
    init_logging(args.log_format);
    // While this process has one thread: it changes the environment.
    let systemd = petit_server::systemd::Notifier::from_env();
    // Before anything slow, so that a busy port fails at once.
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {}", args.listen, bind_error(&e)))?;
    // What `--watch` checks the files against once its watch is set up (see
    // `watch::start`): a change before that has no event.
    let loaded_at = std::time::SystemTime::now();
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
    let storage = Storage::choose(
        args.in_memory,
        args.db.as_deref(),
        args.cluster.db_password_file.clone(),
        &global,
    );
    let cluster = match &storage {
        Storage::Postgres { .. } => Some(cluster_options(&args.cluster, bound)?),
        _ => None,
    };
    // The files of this daemon alone: beside the SQLite file, or in the node's
    // directory.
    let db: Option<PathBuf> = match (&storage, &cluster) {
        (Storage::Sqlite(path), _) => Some(path.clone()),
        (Storage::Postgres { .. }, Some((_, dir))) => Some(dir.join("node")),
        _ => None,
    };
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
        cluster: cluster.map(|(options, _)| options),
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
    // Now the ledger is this daemon's own. Its directory exists once the engine opens
    // it; the watchdog only reads it after petitd is gone. Without one (`--in-memory`)
    // there is nothing for a watchdog to do.
    match &options.process_ledger {
        Some(ledger) => watchdog
            .as_mut()
            .map_or(Ok(()), |watchdog| watchdog.arm(ledger))
            .context("petitd's watchdog is gone")?,
        None => {
            if let Some(watchdog) = watchdog.take() {
                watchdog.stop();
            }
        }
    }
    let store_options = StoreOptions {
        max_log_bytes_per_stream: global.max_log_bytes_per_stream,
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let mut signals = shutdown_signals()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let job_count = jobs.len();
        // The store's errors name the file or the server (never a password).
        let engine = match storage.open(store_options).await? {
            Opened::Alone(store) => Engine::start(jobs, store, options).await?,
            Opened::Shared(store, cluster) => {
                Engine::start_cluster(jobs, store, cluster, options).await?
            }
        };
        seed_metrics(&engine, &metrics);
        deliveries.start(engine.clone(), api_base(addr, serve_options.tls.is_some()));
        if let Some(systemd) = systemd {
            let systemd = systemd.start(&engine);
            signals = notify_stopping(signals, systemd);
        }
        tracing::info!(jobs = job_count, dir = %args.jobs.display(), "jobs loaded");
        // Before "listening", which says petitd is ready: a SIGHUP or a changed job
        // file right after it must reload, not be lost (or, for SIGHUP, stop petitd).
        reload_on_sighup(&engine)?;
        if args.watch {
            petit_server::watch::start(
                &engine,
                &args.jobs,
                args.config.as_deref(),
                loaded_at,
                log_reload,
            )
            .with_context(|| format!("cannot watch {}", args.jobs.display()))?;
            tracing::info!(dir = %args.jobs.display(), "watching the job files");
        }
        let tls = serve_options.tls.is_some();
        tracing::info!(%addr, tls, "listening (gRPC, REST under /api)");
        serve::serve(listener, engine, signals, serve_options).await
    })?;
    if let Some(watchdog) = watchdog {
        // A clean stop: its pipe closes now, it finds the ledger empty and exits.
        watchdog.stop();
    }
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

/// This node's part in the cluster, and its own directory.
fn cluster_options(
    args: &ClusterArgs,
    bound: SocketAddr,
) -> anyhow::Result<(ClusterOptions, PathBuf)> {
    let id = match &args.node_id {
        Some(id) => id.clone(),
        None => nix::unistd::gethostname()
            .context("cannot read the host name for the node id (give --node-id)")?
            .to_string_lossy()
            .into_owned(),
    };
    if id.is_empty()
        || id.len() > 128
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        anyhow::bail!(
            "invalid node id '{id}': use 1 to 128 letters, digits, '-', '_' or '.' (--node-id)"
        );
    }
    let dir = args
        .node_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("./petit-node-{id}")));
    private_files::create_dir_all(&dir)
        .with_context(|| format!("cannot create the node directory {}", dir.display()))?;
    let mut options = ClusterOptions::new(NodeInfo {
        id,
        address: bound.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
    });
    if let Some(heartbeat) = args.heartbeat {
        options.heartbeat = heartbeat;
    }
    if let Some(lease) = args.lease {
        options.lease = lease;
    }
    if options.lease < options.heartbeat * 2 {
        anyhow::bail!(
            "--lease ({:?}) must be at least twice --heartbeat ({:?}): a node must be able to miss a heartbeat without being taken over",
            options.lease,
            options.heartbeat
        );
    }
    Ok((options, dir))
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
