//! Helpers for the end-to-end tests: start the real `petitd` binary on an ephemeral
//! loopback port with a temp SQLite file, wait until it serves, connect clients.
//!
//! The binaries come from the workspace's target directory (`cargo test --workspace`
//! builds them before running any test; `make test` does too).

pub mod postgres;
pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The path of a workspace binary (`petitd`, `petitctl`, `petit-tui`), next to the
/// test executable's `deps/` directory.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins, or make test)",
        path.display()
    );
    path
}

/// Writes `files` (name, YAML) into a fresh directory.
pub fn jobs_dir(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write job file");
    }
    dir
}

/// A job `hello` whose one task, `greet`, echoes `hi`: the smallest valid job.
pub const HELLO_JOB: &str = r#"
id: hello
name: Hello
tasks:
  - id: greet
    type: command
    command: echo
    args: ["hi"]
"#;

/// A job `slow` whose one task, `nap`, sleeps 30 s: something running to cancel,
/// interrupt or crash under.
pub const SLOW_JOB: &str = r#"
id: slow
name: Slow
tasks:
  - id: nap
    type: command
    command: sleep
    args: ["30"]
"#;

/// A running `petitd` child process; killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub addr: std::net::SocketAddr,
    pub db: PathBuf,
    pub jobs: PathBuf,
    /// Keeps the temp directory (database, logs) alive.
    pub data: TempDir,
    pub stderr_path: PathBuf,
}

impl Daemon {
    /// Starts petitd on `jobs` with a new temp database, and waits until it answers.
    pub fn start(jobs: &Path) -> Daemon {
        Self::start_with(jobs, &[])
    }

    /// As `start`, with extra command-line arguments.
    pub fn start_with(jobs: &Path, extra: &[&str]) -> Daemon {
        let data = tempfile::tempdir().expect("tempdir");
        let db = data.path().join("petit.db");
        Self::start_on(jobs, data, db, extra)
    }

    /// Starts petitd on an existing data directory and database (for restarts), on a
    /// port the kernel picks: a port chosen here and handed over could be taken by
    /// another test's daemon or connection before petitd binds it.
    pub fn start_on(jobs: &Path, data: TempDir, db: PathBuf, extra: &[&str]) -> Daemon {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_at(jobs, data, db, addr, extra)
    }

    /// As `start_on`, listening on `addr` (a restart where clients already point; port
    /// 0 for any).
    pub fn start_at(
        jobs: &Path,
        data: TempDir,
        db: PathBuf,
        addr: std::net::SocketAddr,
        extra: &[&str],
    ) -> Daemon {
        Self::spawn(jobs, data, db, addr, extra, None, &[])
    }

    /// As `start_with`, under an open-file limit (soft and hard) of `open_files`.
    pub fn start_with_open_files(jobs: &Path, open_files: u32, extra: &[&str]) -> Daemon {
        let data = tempfile::tempdir().expect("tempdir");
        let db = data.path().join("petit.db");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn(jobs, data, db, addr, extra, Some(open_files), &[])
    }

    /// As `start_on`, with extra environment variables for petitd (a cluster node on
    /// a shared database: `db` is its `postgres://` URL).
    pub fn start_on_with_env(
        jobs: &Path,
        data: TempDir,
        db: PathBuf,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn(jobs, data, db, addr, extra, None, env)
    }

    /// As `start_with`, with extra environment variables for petitd.
    pub fn start_with_env(jobs: &Path, extra: &[&str], env: &[(&str, &str)]) -> Daemon {
        let data = tempfile::tempdir().expect("tempdir");
        let db = data.path().join("petit.db");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        Self::spawn(jobs, data, db, addr, extra, None, env)
    }

    fn spawn(
        jobs: &Path,
        data: TempDir,
        db: PathBuf,
        addr: std::net::SocketAddr,
        extra: &[&str],
        open_files: Option<u32>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let stderr_path = (0..)
            .map(|n| data.path().join(format!("petitd-{n}.log")))
            .find(|path| !path.exists())
            .expect("a free log file name");
        let stderr = std::fs::File::create(&stderr_path).expect("log file");
        let child = petitd_command(open_files)
            .arg("--jobs")
            .arg(jobs)
            .arg("--db")
            .arg(&db)
            .arg("--listen")
            .arg(addr.to_string())
            .args(extra)
            .env_remove("PETIT_JOBS")
            .env_remove("PETIT_DB")
            .env_remove("PETIT_LISTEN")
            .env_remove("PETIT_TOKENS")
            .env_remove("PETIT_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn petitd");
        let mut daemon = Daemon {
            child,
            addr,
            db,
            jobs: jobs.to_path_buf(),
            data,
            stderr_path,
        };
        daemon.wait_ready(Duration::from_secs(20));
        daemon
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits for petitd's "listening" log line, which it writes once its port accepts
    /// connections, and takes the address from it.
    fn wait_ready(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(addr) = listening_addr(&self.stderr()) {
                self.addr = addr;
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("petitd exited early ({status}):\n{}", self.stderr());
            }
            assert!(
                Instant::now() < deadline,
                "petitd did not listen on {} in {timeout:?}:\n{}",
                self.addr,
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a signal (e.g. `libc::SIGTERM`-like number via `kill`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the daemon to exit, up to `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "petitd did not exit in {timeout:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the daemon (SIGKILL) and hands back its data directory and database path.
    pub fn crash(mut self) -> (TempDir, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("tempdir"));
        (data, self.db.clone())
    }

    /// Stops the daemon with SIGTERM and hands back its data directory and database path.
    pub fn stop(mut self) -> (TempDir, PathBuf) {
        self.signal("TERM");
        let _ = self.wait_exit(Duration::from_secs(60));
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("tempdir"));
        (data, self.db.clone())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// petitd, run directly or, with an open-file limit, through `sh -c 'ulimit -n N; exec
/// petitd "$@"'` (the shell's `ulimit` sets the soft and hard limits both).
fn petitd_command(open_files: Option<u32>) -> Command {
    match open_files {
        None => Command::new(bin("petitd")),
        Some(n) => {
            let mut command = Command::new("sh");
            command
                .arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin("petitd"));
            command
        }
    }
}

/// The address in petitd's "listening" log line (text or JSON format).
fn listening_addr(log: &str) -> Option<std::net::SocketAddr> {
    let line = log.lines().find(|l| l.contains("listening (gRPC"))?;
    let text = if let Some((_, rest)) = line.split_once("addr=") {
        rest.split_whitespace().next()?
    } else {
        line.split_once("\"addr\":\"")?.1.split('"').next()?
    };
    text.parse().ok()
}

/// A loopback address where nothing listens, and stays so while the returned socket
/// lives: it is bound (so no one else gets the port) but not listening, so connections
/// to it are refused.
pub fn refusing_addr() -> (tokio::net::TcpSocket, std::net::SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    (socket, addr)
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Daemon {
    /// A gRPC channel to the daemon (HTTP/2 over plain TCP, as every gRPC client).
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(self.url())
            .expect("daemon url")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to petitd at {}: {e}", self.addr))
    }
}

/// Runs petitctl against `server` with `args` (no colour, no inherited `PETIT_SERVER`)
/// to its end, within `timeout`: its exit code, stdout and stderr.
pub fn petitctl_run(server: &str, args: &[&str], timeout: Duration) -> (i32, String, String) {
    let out = run_to_exit(
        Command::new(bin("petitctl"))
            .arg("--server")
            .arg(server)
            .args(args)
            .env_remove("PETIT_SERVER")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
        timeout,
    );
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that should exit by itself (e.g. `petitd validate`), capturing its
/// output; kills it and panics if it is still running after `timeout`.
pub fn run_to_exit(command: &mut Command, timeout: Duration) -> std::process::Output {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + timeout;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("wait");
            panic!(
                "{command:?} still running after {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait")
}

/// Triggers `job_id` over gRPC with `params`; the new run.
pub async fn trigger(
    channel: &tonic::transport::Channel,
    job_id: &str,
    params: &[(&str, &str)],
) -> petit_proto::v1::Run {
    petit_proto::v1::job_service_client::JobServiceClient::new(channel.clone())
        .trigger_job(petit_proto::v1::TriggerJobRequest {
            job_id: job_id.into(),
            params: params
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            force: false,
        })
        .await
        .unwrap_or_else(|s| panic!("trigger {job_id}: {s}"))
        .into_inner()
        .run
        .expect("triggered run")
}

/// A run, as `GetRun` returns it.
pub async fn get_run(channel: &tonic::transport::Channel, run_id: &str) -> petit_proto::v1::Run {
    petit_proto::v1::run_service_client::RunServiceClient::new(channel.clone())
        .get_run(petit_proto::v1::GetRunRequest {
            run_id: run_id.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("get_run {run_id}: {s}"))
        .into_inner()
        .run
        .expect("run")
}

/// A run's task runs, as `ListTaskRuns` returns them.
pub async fn task_runs(
    channel: &tonic::transport::Channel,
    run_id: &str,
) -> Vec<petit_proto::v1::TaskRun> {
    petit_proto::v1::run_service_client::RunServiceClient::new(channel.clone())
        .list_task_runs(petit_proto::v1::ListTaskRunsRequest {
            run_id: run_id.into(),
        })
        .await
        .unwrap_or_else(|s| panic!("list_task_runs {run_id}: {s}"))
        .into_inner()
        .task_runs
}

/// The resident memory (VmRSS) of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// The process groups petitd's ledger directory `ledger` (`<db>.pids`) lists as
/// running: its file `groups` holds `+ <pgid> ...` when a group starts and `- <pgid>`
/// when it ends.
pub fn ledger_groups(ledger: &std::path::Path) -> Vec<i32> {
    let text = std::fs::read_to_string(ledger.join("groups")).unwrap_or_default();
    let mut listed = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match (fields.next(), fields.next().and_then(|p| p.parse().ok())) {
            (Some("+"), Some(pid)) => listed.push(pid),
            (Some("-"), Some(pid)) => listed.retain(|&p| p != pid),
            _ => {}
        }
    }
    listed
}

/// Whether `pid` is a live process (a zombie awaiting its parent counts as dead).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')))
}

/// Every run of `job_id`, newest first, paged through `ListJobRuns`.
pub async fn job_runs(
    channel: &tonic::transport::Channel,
    job_id: &str,
) -> Vec<petit_proto::v1::Run> {
    let mut client = petit_proto::v1::job_service_client::JobServiceClient::new(channel.clone());
    let mut runs = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_job_runs(petit_proto::v1::ListJobRunsRequest {
                job_id: job_id.into(),
                page_size: 500,
                page_token,
            })
            .await
            .expect("list runs")
            .into_inner();
        runs.extend(page.runs);
        if page.next_page_token.is_empty() {
            return runs;
        }
        page_token = page.next_page_token;
    }
}

/// Every stored log line of a run (all its tasks), paged through `GetTaskLogs`.
pub async fn run_log(channel: &tonic::transport::Channel, run_id: &str) -> Vec<String> {
    let mut client = petit_proto::v1::run_service_client::RunServiceClient::new(channel.clone());
    let mut lines = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .get_task_logs(petit_proto::v1::GetTaskLogsRequest {
                run_id: run_id.into(),
                page_token,
                ..Default::default()
            })
            .await
            .expect("logs")
            .into_inner();
        lines.extend(page.lines.into_iter().map(|l| l.line));
        if page.next_page_token.is_empty() {
            return lines;
        }
        page_token = page.next_page_token;
    }
}
