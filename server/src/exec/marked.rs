//! Processes that leave their task's process group (`setsid`, a double fork, a program
//! that daemonizes) are still the task's: each attempt's processes carry a mark in
//! their environment (`PETIT_TASK_MARK=<attempt id>`), which children inherit whatever
//! group or session they move to. Stopping a task signals its group and then every
//! process of this user that carries its mark (found in `/proc/PID/environ`).
//!
//! Why a mark rather than a cgroup or a subreaper: a cgroup needs a delegated hierarchy
//! (root, or systemd's `Delegate=`), which a user's petitd on a Raspberry Pi does not
//! have; a subreaper keeps orphans as our children but cannot tell one task's orphans
//! from another's, and cannot find them again after a crash. The mark is found again by
//! the next start (it is in the process ledger) and costs nothing until a stop. A
//! process that clears its environment on purpose escapes it; nothing short of a cgroup
//! catches that one.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The environment variable that marks a task attempt's processes.
pub const MARK: &str = "PETIT_TASK_MARK";

/// A new mark, unique to one attempt.
pub fn new_mark() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// Sends `signal` to every process (but this one) whose environment holds `mark`;
/// returns how many. Blocking work (a walk of `/proc`): off the async executor.
pub fn signal_marked(mark: &str, signal: Signal) -> usize {
    let needle = format!("{MARK}={mark}");
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut sent = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || pid <= 1 {
            continue;
        }
        // Unreadable (another user's process, or gone): not ours to signal.
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let marked = environ
            .split(|&b| b == 0)
            .any(|var| var == needle.as_bytes());
        if marked && kill(Pid::from_raw(pid as i32), signal).is_ok() {
            sent += 1;
        }
    }
    sent
}

/// As [`signal_marked`], on a blocking thread.
pub async fn signal_marked_async(mark: &str, signal: Signal) -> usize {
    let mark = mark.to_string();
    tokio::task::spawn_blocking(move || signal_marked(&mark, signal))
        .await
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_marked_process_that_left_its_group_is_found_and_an_unmarked_one_is_not() {
        let mark = new_mark();
        // `setsid` puts the sleeper in a session (and group) of its own.
        let mut marked = std::process::Command::new("setsid")
            .args(["sleep", "30"])
            .env(MARK, &mark)
            .spawn()
            .expect("spawn");
        let mut other = std::process::Command::new("sleep")
            .arg("30")
            .env(MARK, new_mark())
            .spawn()
            .expect("spawn");
        // The environment is the child's once it has exec'd: wait for that.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::read(format!("/proc/{}/environ", marked.id())).map_or(true, |e| {
            !e.windows(mark.len()).any(|w| w == mark.as_bytes())
        }) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never exec'd"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(signal_marked(&mark, Signal::SIGKILL), 1);
        let status = marked.wait().expect("wait");
        assert!(!status.success());
        assert_eq!(
            other.try_wait().expect("try_wait"),
            None,
            "the unmarked one lives"
        );
        let _ = other.kill();
        let _ = other.wait();
    }
}
