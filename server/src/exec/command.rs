//! `CommandTask`: spawns a program (no shell) in its own process group, with the
//! environment `environment.rs` composes and petitd's original umask, streams its
//! stdout and stderr (in chunks of lines, `capture.rs`) while waiting for it, and on timeout or cancel sends
//! SIGTERM to the whole group, then SIGKILL after a grace period.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::unix::fs::OpenOptionsExt;
use tokio::process::Command;

use std::ffi::OsString;

use super::capture::read_chunks;
use super::environment::{denied, resolve_program};
use super::ledger::{Ledger, StartSpan};
use super::substitute::parse_outputs;
use super::task::{Task, TaskContext, TaskOutcome};
use crate::core::{EnvPolicy, LogStream};

/// How long stdout/stderr may stay open after the main process exits (a background
/// child holding the pipes) before the rest of the process group is terminated.
const PIPE_DRAIN: Duration = Duration::from_secs(2);

/// Exit code of a temporary failure (sysexits.h `EX_TEMPFAIL`): retried by
/// `transient_only`.
const EX_TEMPFAIL: i32 = 75;

/// One attempt of a command, fully resolved (placeholders substituted).
#[derive(Debug, Clone)]
pub struct CommandTask {
    pub program: String,
    pub args: Vec<String>,
    /// What the task takes from petitd's own environment.
    pub env_policy: EnvPolicy,
    /// The run's values (`PETIT_PARAM_*`, `PETIT_OUTPUT_*`), under `environment`.
    pub exported: BTreeMap<String, String>,
    /// The task's own `environment:`, placeholders substituted.
    pub environment: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Where the task may write `key=value` outputs (`$PETIT_OUTPUT`).
    pub output_file: PathBuf,
    /// Where the process group is recorded while it runs.
    pub ledger: Option<Arc<Ledger>>,
}

/// The most a task may write to `$PETIT_OUTPUT`. Outputs travel with every task run
/// (ListTaskRuns, WatchRun, events), so they are for small values handed to later
/// tasks, not for data.
pub const MAX_OUTPUTS_BYTES: u64 = 64 * 1024;

/// The text of an outputs file, read no further than the limit: `Ok(Err(why))` when it
/// is over the limit or not UTF-8 (the task's fault), `Err` when it cannot be read.
///
/// Synchronous, like the file's creation: a file in petitd's own scratch directory of
/// at most 64 KiB, read in microseconds, where a trip through the blocking pool costs
/// two thread wake-ups per call (see `CommandTask::run`).
fn read_outputs(path: &std::path::Path) -> std::io::Result<Result<String, String>> {
    use std::io::Read;
    // Most tasks write no outputs: one stat says so, where an open, a read and a close
    // would find the file empty (and a task that left a FIFO there is not waited on).
    if std::fs::metadata(path)?.len() == 0 {
        return Ok(Ok(String::new()));
    }
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUTS_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_OUTPUTS_BYTES {
        return Ok(Err(format!(
            "$PETIT_OUTPUT holds more than {} KiB: outputs are small values for later tasks \
             (write data to a file and pass its path instead)",
            MAX_OUTPUTS_BYTES / 1024
        )));
    }
    Ok(String::from_utf8(bytes).map_err(|_| "$PETIT_OUTPUT is not UTF-8 text".to_string()))
}

/// Creates (or empties) the outputs file, 0600 whatever the umask. Non-blocking: a
/// FIFO at the path (left by a process that outlived an earlier attempt) is an error
/// (ENXIO, no reader), not an open that waits for one on a runtime thread; a regular
/// file ignores the flag.
fn create_outputs_file(path: &std::path::Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)
}

#[async_trait::async_trait]
impl Task for CommandTask {
    async fn run(&self, ctx: TaskContext) -> TaskOutcome {
        // 0600 whatever the umask: other users must not read a task's outputs.
        // Synchronous on purpose, as the outputs' read and the removal below: each is
        // one system call on a small file in petitd's own scratch directory (a few
        // microseconds), where `tokio::fs` would make each a trip through the blocking
        // pool, two thread wake-ups apiece, more than the work itself.
        if let Err(e) = create_outputs_file(&self.output_file) {
            return TaskOutcome::Failed {
                exit_code: None,
                error: format!(
                    "cannot create output file {}: {e}",
                    self.output_file.display()
                ),
                transient: true,
            };
        }
        let outcome = self.spawn_and_wait(&ctx).await;
        let outcome = match outcome {
            TaskOutcome::Succeeded { exit_code, .. } => match read_outputs(&self.output_file) {
                Ok(Err(too_big)) => TaskOutcome::Failed {
                    exit_code,
                    error: too_big,
                    transient: false,
                },
                Ok(Ok(text)) => match parse_outputs(&text) {
                    Ok(outputs) => TaskOutcome::Succeeded { outputs, exit_code },
                    Err(error) => TaskOutcome::Failed {
                        exit_code,
                        error,
                        transient: false,
                    },
                },
                Err(e) => TaskOutcome::Failed {
                    exit_code,
                    error: format!(
                        "cannot read output file {}: {e}",
                        self.output_file.display()
                    ),
                    transient: true,
                },
            },
            other => other,
        };
        let _ = std::fs::remove_file(&self.output_file);
        outcome
    }
}

impl CommandTask {
    async fn spawn_and_wait(&self, ctx: &TaskContext) -> TaskOutcome {
        let removed = denied(&self.env_policy, std::env::vars_os());
        // Where the task's PATH is not petitd's, the program is looked up in the task's
        // own PATH here, so that the spawn still takes the posix_spawn path (see
        // `denied`): 1.4 ms a spawn instead of 3.6 ms at 16 MiB resident.
        let own_path = self
            .environment
            .iter()
            .chain(&self.exported)
            .find(|(k, _)| k.as_str() == "PATH")
            .map(|(_, v)| OsString::from(v));
        let path_changed = own_path.is_some() || removed.iter().any(|n| n == "PATH");
        let program = match path_changed {
            true => {
                let path = own_path.or_else(|| {
                    (!removed.iter().any(|n| n == "PATH"))
                        .then(|| std::env::var_os("PATH"))
                        .flatten()
                });
                resolve_program(&self.program, path.as_deref())
                    .map_or_else(|| OsString::from(&self.program), OsString::from)
            }
            false => OsString::from(&self.program),
        };
        let mark = super::marked::new_mark();
        let mut cmd = Command::new(program);
        for name in &removed {
            cmd.env_remove(name);
        }
        cmd.args(&self.args)
            .envs(&self.exported)
            .envs(&self.environment)
            .env("PETIT_OUTPUT", &self.output_file)
            .env("PETIT_RUN_ID", &ctx.run_id)
            .env("PETIT_JOB_ID", &ctx.job_id)
            .env("PETIT_TASK_ID", &ctx.task_id)
            .env("PETIT_ATTEMPT", ctx.attempt.to_string())
            .env(super::marked::MARK, &mark)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            cmd.current_dir(dir);
        }
        // The span the leader's start time lies in, for the ledger (see `StartSpan`).
        let (spawned, started) = StartSpan::around(|| cmd.spawn());
        let child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let place = self
                    .working_dir
                    .as_ref()
                    .map(|d| format!(" in {}", d.display()))
                    .unwrap_or_default();
                return TaskOutcome::Failed {
                    exit_code: None,
                    error: format!("cannot start '{}'{place}: {e}", self.program),
                    transient: true,
                };
            }
        };
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        let recorded = self.ledger.as_deref().zip(child.id());
        if let (Some((ledger, pid)), Some(started)) = (recorded, started) {
            ledger.record(pid, started, &mark);
        }
        let outcome = self.wait(ctx, child, pgid, &mark).await;
        if let Some((ledger, pid)) = recorded {
            ledger.remove(pid);
        }
        outcome
    }

    /// Streams the output of `child` and waits for it, or stops it when asked to.
    async fn wait(
        &self,
        ctx: &TaskContext,
        mut child: tokio::process::Child,
        pgid: Option<Pid>,
        mark: &str,
    ) -> TaskOutcome {
        let mut readers = tokio::task::JoinSet::new();
        if let Some(out) = child.stdout.take() {
            readers.spawn(read_chunks(out, LogStream::Stdout, ctx.log_sender()));
        }
        if let Some(err) = child.stderr.take() {
            readers.spawn(read_chunks(err, LogStream::Stderr, ctx.log_sender()));
        }

        let status = tokio::select! {
            status = child.wait() => status,
            reason = ctx.stopped() => {
                terminate(&mut child, pgid, mark, self.kill_grace).await;
                drain(&mut readers, pgid, mark).await;
                return TaskOutcome::Stopped(reason);
            }
        };
        drain(&mut readers, pgid, mark).await;
        match status {
            Ok(status) if status.success() => TaskOutcome::Succeeded {
                outputs: BTreeMap::new(),
                exit_code: Some(0),
            },
            Ok(status) => match status.code() {
                Some(code) => TaskOutcome::Failed {
                    exit_code: Some(code),
                    error: format!("exited with code {code}"),
                    transient: code == EX_TEMPFAIL,
                },
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let signal = status
                        .signal()
                        .and_then(|s| Signal::try_from(s).ok())
                        .map_or_else(|| "a signal".to_string(), |s| s.as_str().to_string());
                    TaskOutcome::Failed {
                        exit_code: None,
                        error: format!("killed by {signal}"),
                        transient: true,
                    }
                }
            },
            Err(e) => TaskOutcome::Failed {
                exit_code: None,
                error: format!("cannot wait for '{}': {e}", self.program),
                transient: true,
            },
        }
    }
}

/// SIGTERM to the group and to the attempt's processes that left it (see `marked`),
/// then SIGKILL once `grace` has passed without the main process exiting; all of them
/// are SIGKILLed in the end either way so no straggler survives.
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: Option<Pid>,
    mark: &str,
    grace: Duration,
) {
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGTERM);
        // A stopped process (SIGSTOP, ^Z) only acts on its SIGTERM once continued.
        let _ = killpg(pgid, Signal::SIGCONT);
    }
    super::marked::signal_marked_async(mark, Signal::SIGTERM).await;
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let _ = child.kill().await;
    }
    if let Some(pgid) = pgid {
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    super::marked::signal_marked_async(mark, Signal::SIGKILL).await;
}

/// Waits for both output readers to reach end of file. If a leftover process of the
/// group keeps the pipes open past `PIPE_DRAIN`, the group is killed.
async fn drain(readers: &mut tokio::task::JoinSet<()>, pgid: Option<Pid>, mark: &str) {
    let all = async { while readers.join_next().await.is_some() {} };
    if tokio::time::timeout(PIPE_DRAIN, all).await.is_err() {
        if let Some(pgid) = pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        // A process that left the group may be the one holding the pipes.
        super::marked::signal_marked_async(mark, Signal::SIGKILL).await;
        readers.abort_all();
        while readers.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_read_unless_the_file_is_empty_and_a_fifo_is_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.out");
        std::fs::write(&path, "").unwrap();
        assert_eq!(read_outputs(&path).unwrap(), Ok(String::new()));
        std::fs::write(&path, "a=1\n").unwrap();
        assert_eq!(read_outputs(&path).unwrap(), Ok("a=1\n".to_string()));
        std::fs::write(&path, vec![b'x'; MAX_OUTPUTS_BYTES as usize + 1]).unwrap();
        assert!(read_outputs(&path).unwrap().is_err(), "over the limit");
        std::fs::remove_file(&path).unwrap();
        assert!(read_outputs(&path).is_err(), "removed by the task");
        // A task that left a FIFO in its place: no writer will come, an open would wait.
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert_eq!(read_outputs(&path).unwrap(), Ok(String::new()));
    }

    #[test]
    fn the_outputs_file_is_created_private_and_a_fifo_there_is_refused_not_waited_on() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.out");
        std::fs::write(&path, "left over").unwrap();
        create_outputs_file(&path).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 0, "emptied");
        std::fs::remove_file(&path).unwrap();
        create_outputs_file(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::remove_file(&path).unwrap();
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let refused = create_outputs_file(&path).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(nix::libc::ENXIO), "{refused}");
    }
}
