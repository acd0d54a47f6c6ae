//! `petitd`, the Petit daemon: parses flags, loads the config and the job files, opens
//! the store, starts the engine, and serves the API until SIGTERM or SIGINT.

use std::io::IsTerminal;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use petit_server::config::{self, GlobalConfig};
use petit_server::core::schedule::parse_duration;
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

    /// Address to serve gRPC, REST, reflection and health on.
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

    /// Runs executing at once across all jobs; more wait as pending. Overrides the
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
            println!("{} jobs OK", jobs.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn run(args: DaemonArgs) -> anyhow::Result<ExitCode> {
    petit_server::alloc::tune();
    init_logging(args.log_format);
    // Before anything slow, so that a busy port fails at once.
    let listener = TcpListener::bind(&args.listen)
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {}", args.listen, bind_error(&e)))?;
    let global = load_config(args.config.as_deref())?;
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
        ..EngineOptions::default()
    };

    // One daemon per database, held until petitd exits. Before the store opens and
    // before the engine reads the process ledger, whose orphans would otherwise be
    // another live daemon's tasks.
    let _lock = db.as_deref().map(DataLock::acquire).transpose()?;
    // Opening the database (and migrating it) is blocking work: before the runtime.
    let store = open_store(db.as_deref(), &global)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let signals = shutdown_signals()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let job_count = jobs.len();
        let engine = Engine::start(jobs, store, options).await?;
        tracing::info!(jobs = job_count, dir = %args.jobs.display(), "jobs loaded");
        tracing::info!(%addr, "listening (gRPC, REST under /api)");
        petit_server::serve::serve(listener, engine, signals, args.shutdown_grace).await
    })?;
    Ok(ExitCode::SUCCESS)
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
