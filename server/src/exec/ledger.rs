//! The process ledger: a directory (beside the database) with one file per running task
//! process group, named by the group id and holding the leader's start time. A daemon
//! killed with `kill -9` cannot stop its tasks; the next one reads the ledger and kills
//! the groups still listed before it resumes their runs, so a retried task never runs
//! beside its orphaned predecessor.
//!
//! A group is killed only when it is provably ours: while any member of a process group
//! lives, Linux never hands its id out as a new pid, so a group whose leader is gone is
//! still the recorded one; a live leader must have the recorded start time.

use std::io;
use std::path::{Path, PathBuf};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// A ledger directory.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
}

impl Ledger {
    /// Opens (creating) the ledger directory.
    pub fn open(dir: &Path) -> io::Result<Ledger> {
        crate::private_files::create_dir_all(dir)?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
        })
    }

    /// Records a process group that just started (its leader is `pid`).
    ///
    /// Synchronous on purpose, and called right after the (equally synchronous)
    /// fork/exec: until the record is on disk a crash orphans the process unseen, so the
    /// window is kept to one procfs read and one small file write, microseconds beside
    /// the spawn itself, instead of two trips through the blocking pool.
    /// `mark` is the attempt's mark (see `marked`): its processes that left the group
    /// are killed with it.
    pub fn record(&self, pid: u32, mark: &str) {
        let Some(start) = start_time(pid) else {
            return;
        };
        let file = self.dir.join(pid.to_string());
        if let Err(e) = crate::private_files::write(&file, format!("{start} {mark}").as_bytes()) {
            tracing::warn!(
                pid,
                "cannot record the task process in {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Forgets a process group that has ended.
    pub async fn remove(&self, pid: u32) {
        let _ = tokio::fs::remove_file(self.dir.join(pid.to_string())).await;
    }

    /// Kills (SIGKILL) every recorded group that is still ours, empties the ledger, and
    /// returns how many groups were killed.
    pub fn kill_orphans(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut killed = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            // "<start time> <mark>" (older ledgers: the start time alone).
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let mut fields = text.split_whitespace();
            let recorded = fields.next().and_then(|s| s.parse::<u64>().ok());
            if let Some(mark) = fields.next() {
                let escaped = super::marked::signal_marked(mark, Signal::SIGKILL);
                if escaped > 0 {
                    tracing::warn!(
                        processes = escaped,
                        "killed task processes that had left their group, left running by a crashed daemon"
                    );
                }
            }
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<i32>().ok());
            if let (Some(pid), Some(recorded)) = (pid, recorded) {
                let ours = match start_time(pid as u32) {
                    Some(now) => now == recorded,
                    // The leader is gone; members left in its group are still ours.
                    None => true,
                };
                if ours && pid > 1 && killpg(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
                    tracing::warn!(
                        pgid = pid,
                        "killed a task process group left running by a crashed daemon"
                    );
                    killed += 1;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
        killed
    }
}

/// The start time of process `pid` (clock ticks since boot, field 22 of
/// `/proc/PID/stat`).
fn start_time(pid: u32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of a `/proc/PID/stat` line.
fn parse_start_time(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip past its end.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kills_recorded_groups_and_spares_recycled_pids() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("pids")).unwrap();
        let mut child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        ledger.record(child.id(), "no-such-mark");
        // A file whose start time does not match: a pid recycled by someone else (our
        // own test process here, which must survive).
        let me = std::process::id();
        std::fs::write(dir.path().join("pids").join(me.to_string()), "1").unwrap();

        assert_eq!(ledger.kill_orphans(), 1);
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9));
        assert_eq!(
            std::fs::read_dir(dir.path().join("pids")).unwrap().count(),
            0
        );
        assert_eq!(ledger.kill_orphans(), 0);
    }

    #[test]
    fn reads_start_times() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
