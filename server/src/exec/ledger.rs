//! The process ledger: a directory (beside the database) holding one append-only file,
//! `groups`, where each running task process group is recorded: a line
//! `+ <group id> <earliest>-<latest> <mark>` when it starts (the span of clock ticks
//! since boot the leader's start time lies in), `- <group id>` when it
//! ends. A daemon killed with `kill -9` cannot stop its tasks; its watchdog, or the
//! next start, reads the ledger and kills the groups still listed (a `+` without its
//! `-`) before the runs resume, so a retried task never runs beside its orphaned
//! predecessor.
//!
//! One file per daemon rather than one per task: a start and an end are one `write`
//! each on a descriptor kept open (no `openat` or `unlink` per task). A write that has
//! returned is in the kernel's page cache, which is what outlives a killed process;
//! the file is emptied whenever no group is listed and it has grown, and rewritten
//! (atomically, by a rename) if it grows large while groups stay listed. Files an older
//! petitd left (one per group, named by its id) are still read.
//!
//! A group is killed only when it is provably ours: while any member of a process group
//! lives, Linux never hands its id out as a new pid, so a group whose leader is gone is
//! still the recorded one; a live leader must have started within the recorded span.
//!
//! The span is read off `CLOCK_BOOTTIME` just before and just after the spawn, the
//! clock the kernel stamps a new process with (and `/proc/PID/stat` reports, in ticks):
//! a `clock_gettime` in the vDSO where reading the leader's own start time took an
//! `openat` and a `read` of procfs on the task's critical path, and left procfs entries
//! the kernel had to tear down at its exit (~35 µs a task). A pid is only handed out
//! again after it has gone round the whole pid space, which no system does within the
//! span's few milliseconds. An exact start time (an older petitd's) still reads.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The ledger file in the ledger directory.
const FILE: &str = "groups";
/// Emptied when no group is listed and it holds more than this.
const EMPTY_OVER: u64 = 64 * 1024;
/// Rewritten with only the listed groups when it holds more than this.
const REWRITE_OVER: u64 = 4 * 1024 * 1024;

/// A ledger directory.
#[derive(Debug)]
pub struct Ledger {
    dir: PathBuf,
    file: Mutex<Open>,
}

/// The ledger file as this daemon writes it.
#[derive(Debug, Default)]
struct Open {
    /// Opened (created) at the first record.
    file: Option<File>,
    /// Bytes written since it was last emptied.
    len: u64,
    /// The listed groups and their `+` lines.
    listed: HashMap<u32, String>,
}

impl Ledger {
    /// Opens (creating) the ledger directory. What it lists stays until
    /// [`Ledger::kill_orphans`] reads it.
    pub fn open(dir: &Path) -> io::Result<Ledger> {
        crate::private_files::create_dir_all(dir)?;
        Ok(Ledger {
            dir: dir.to_path_buf(),
            file: Mutex::new(Open::default()),
        })
    }

    /// The ledger file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Records a process group that just started (its leader is `pid`).
    ///
    /// Synchronous on purpose, and called right after the (equally synchronous)
    /// fork/exec: until the record is written a crash orphans the process unseen, so the
    /// window is kept to one `write`, microseconds beside the spawn itself, instead of
    /// trips through the blocking pool. `started`: [`StartSpan::around`] the spawn.
    /// `mark` is the attempt's mark (see `marked`): its processes that left the group
    /// are killed with it.
    pub fn record(&self, pid: u32, started: StartSpan, mark: &str) {
        let line = format!("+ {pid} {}-{} {mark}\n", started.earliest, started.latest);
        let Ok(mut open) = self.file.lock() else {
            return;
        };
        if let Err(e) = open.append(&self.dir, &line) {
            tracing::warn!(
                pid,
                "cannot record the task process in {}: {e}",
                self.dir.display()
            );
        }
        open.listed.insert(pid, line);
    }

    /// Forgets a process group that has ended.
    pub fn remove(&self, pid: u32) {
        let Ok(mut open) = self.file.lock() else {
            return;
        };
        if open.listed.remove(&pid).is_none() {
            return;
        }
        let written = match (open.listed.is_empty(), open.len) {
            // Nothing listed: an empty file says as much as a `-` line.
            (true, len) if len > EMPTY_OVER => open.empty(),
            (false, len) if len > REWRITE_OVER => open.rewrite(&self.dir),
            _ => open.append(&self.dir, &format!("- {pid}\n")),
        };
        if let Err(e) = written {
            tracing::warn!(
                pid,
                "cannot record the end of a task process in {}: {e}",
                self.dir.display()
            );
        }
    }

    /// Kills (SIGKILL) every recorded group that is still ours, empties the ledger, and
    /// returns how many groups were killed.
    pub fn kill_orphans(&self) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return 0;
        };
        // By group id: the span of the leader's start time and the mark, as recorded.
        let mut listed: HashMap<i32, (Option<StartSpan>, Option<String>)> = HashMap::new();
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if entry.file_name() == FILE {
                for line in text.lines() {
                    let mut fields = line.split_whitespace();
                    let (op, pid) = (fields.next(), fields.next().and_then(|p| p.parse().ok()));
                    match (op, pid) {
                        (Some("+"), Some(pid)) => {
                            let start = fields.next().and_then(StartSpan::parse);
                            let mark = fields.next().map(str::to_string);
                            listed.insert(pid, (start, mark));
                        }
                        (Some("-"), Some(pid)) => {
                            listed.remove(&pid);
                        }
                        // A line cut short by a power loss: nothing to act on.
                        _ => {}
                    }
                }
            } else if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                // An older petitd's file per group: "<start time> <mark>" (or the start
                // time alone).
                let mut fields = text.split_whitespace();
                let start = fields.next().and_then(StartSpan::parse);
                let mark = fields.next().map(str::to_string);
                listed.insert(pid, (start, mark));
            }
            files.push(path);
        }
        let mut killed = 0;
        for (pid, (recorded, mark)) in listed {
            if let Some(mark) = mark {
                let escaped = super::marked::signal_marked(&mark, Signal::SIGKILL);
                if escaped > 0 {
                    tracing::warn!(
                        processes = escaped,
                        "killed task processes that had left their group, left running by a crashed daemon"
                    );
                }
            }
            let Some(recorded) = recorded else {
                continue;
            };
            let ours = match start_time(pid as u32) {
                Some(now) => recorded.holds(now),
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
        for path in files {
            let _ = std::fs::remove_file(&path);
        }
        if let Ok(mut open) = self.file.lock() {
            *open = Open::default();
        }
        killed
    }
}

impl Open {
    /// Appends `line` (opening the file first if needed).
    fn append(&mut self, dir: &Path, line: &str) -> io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self.file.insert(open_append(&dir.join(FILE))?),
        };
        // One `write` of a short line to a file opened `O_APPEND`: all of it or none.
        file.write_all(line.as_bytes())?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Empties the file (nothing is listed).
    fn empty(&mut self) -> io::Result<()> {
        if let Some(file) = &self.file {
            file.set_len(0)?;
        }
        self.len = 0;
        Ok(())
    }

    /// Replaces the file with one listing only the groups listed now: written beside
    /// it, then renamed over it, so that a crash leaves one or the other whole.
    fn rewrite(&mut self, dir: &Path) -> io::Result<()> {
        let path = dir.join(FILE);
        let new = dir.join(format!("{FILE}.new"));
        let text: String = self.listed.values().map(String::as_str).collect();
        crate::private_files::write(&new, text.as_bytes())?;
        std::fs::rename(&new, &path)?;
        self.file = Some(open_append(&path)?);
        self.len = text.len() as u64;
        Ok(())
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

/// The clock ticks since boot (`CLOCK_BOOTTIME` in the unit of `/proc/PID/stat`'s
/// start times, `sysconf(_SC_CLK_TCK)` a second) a process group leader started within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartSpan {
    pub earliest: u64,
    pub latest: u64,
}

impl StartSpan {
    /// The span of a process spawned by `spawn`: the clock read before and after it,
    /// widened by a tick each way (the kernel's stamp and the vDSO's clock may round
    /// at different instants of the same tick).
    pub fn around<T>(spawn: impl FnOnce() -> T) -> (T, Option<StartSpan>) {
        let before = boot_ticks();
        let spawned = spawn();
        let span = before.zip(boot_ticks()).map(|(b, a)| StartSpan {
            earliest: b.saturating_sub(1),
            latest: a + 1,
        });
        (spawned, span)
    }

    /// `<earliest>-<latest>`, or an exact start time as an older petitd wrote it.
    fn parse(text: &str) -> Option<StartSpan> {
        let (earliest, latest) = match text.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let exact = text.parse().ok()?;
                (exact, exact)
            }
        };
        (earliest <= latest).then_some(StartSpan { earliest, latest })
    }

    fn holds(&self, start: u64) -> bool {
        (self.earliest..=self.latest).contains(&start)
    }
}

/// Now, in clock ticks since boot, as `/proc/PID/stat` counts a start time.
fn boot_ticks() -> Option<u64> {
    use nix::time::{clock_gettime, ClockId};
    use nix::unistd::{sysconf, SysconfVar};
    use std::sync::OnceLock;
    static TICKS_PER_SECOND: OnceLock<Option<u64>> = OnceLock::new();
    let per_second = (*TICKS_PER_SECOND.get_or_init(|| {
        sysconf(SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .and_then(|t| u64::try_from(t).ok())
            .filter(|&t| (1..=1_000_000_000).contains(&t))
    }))?;
    let now = clock_gettime(ClockId::CLOCK_BOOTTIME).ok()?;
    let nanos = u64::try_from(now.tv_sec()).ok()? * 1_000_000_000 + now.tv_nsec() as u64;
    Some(nanos / (1_000_000_000 / per_second))
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

    /// A `sleep 30` in a group of its own, and the span its start lies in.
    fn sleeper() -> (std::process::Child, StartSpan) {
        use std::os::unix::process::CommandExt;
        let (child, span) = StartSpan::around(|| {
            std::process::Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap()
        });
        (child, span.expect("CLOCK_BOOTTIME"))
    }

    /// A span that holds nothing recent: for records that are removed again.
    const LONG_AGO: StartSpan = StartSpan {
        earliest: 0,
        latest: 0,
    };

    fn killed(child: &mut std::process::Child) -> bool {
        use std::os::unix::process::ExitStatusExt;
        child.wait().unwrap().signal() == Some(9)
    }

    #[test]
    fn kills_recorded_groups_and_spares_recycled_pids() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("pids")).unwrap();
        let (mut child, span) = sleeper();
        ledger.record(child.id(), span, "no-such-mark");
        // A record whose start time does not match: a pid recycled by someone else
        // (our own test process here, which must survive).
        let me = std::process::id();
        let mut file = open_append(&ledger.path()).unwrap();
        writeln!(file, "+ {me} 1 no-such-mark").unwrap();

        // Another daemon's start reads what this one left.
        let next = Ledger::open(&dir.path().join("pids")).unwrap();
        assert_eq!(next.kill_orphans(), 1);
        assert!(killed(&mut child));
        assert_eq!(
            std::fs::read_dir(dir.path().join("pids")).unwrap().count(),
            0
        );
        assert_eq!(next.kill_orphans(), 0);
    }

    #[test]
    fn an_ended_group_is_not_killed_and_the_file_empties_when_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let (mut ended, ended_span) = sleeper();
        let (mut running, running_span) = sleeper();
        ledger.record(ended.id(), ended_span, "m1");
        ledger.record(running.id(), running_span, "m2");
        ledger.remove(ended.id());
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert_eq!(
            text.lines().last(),
            Some(format!("- {}", ended.id()).as_str())
        );

        assert_eq!(Ledger::open(dir.path()).unwrap().kill_orphans(), 1);
        assert!(killed(&mut running));
        assert_eq!(ended.try_wait().unwrap(), None, "an ended group is spared");
        let _ = ended.kill();
        let _ = ended.wait();

        // Thousands of tasks one after the other: the file does not grow past its bound.
        let ledger = Ledger::open(dir.path()).unwrap();
        let me = std::process::id();
        for _ in 0..2000 {
            ledger.record(me, LONG_AGO, "x");
            ledger.remove(me);
        }
        let len = std::fs::metadata(ledger.path()).unwrap().len();
        assert!(len <= EMPTY_OVER + 64, "{len}");
    }

    #[test]
    fn a_large_file_with_groups_listed_is_rewritten_whole() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let (mut child, span) = sleeper();
        ledger.record(child.id(), span, "kept");
        let me = std::process::id();
        let mut open = ledger.file.lock().unwrap();
        open.len = REWRITE_OVER;
        drop(open);
        ledger.record(me, LONG_AGO, "gone");
        ledger.remove(me);
        let text = std::fs::read_to_string(ledger.path()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("kept"), "{text}");
        assert_eq!(Ledger::open(dir.path()).unwrap().kill_orphans(), 1);
        assert!(killed(&mut child));
    }

    #[test]
    fn reads_an_older_petitds_files() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(dir.path()).unwrap();
        let (mut child, _) = sleeper();
        let start = start_time(child.id()).unwrap();
        std::fs::write(
            dir.path().join(child.id().to_string()),
            format!("{start} no-such-mark"),
        )
        .unwrap();
        assert_eq!(ledger.kill_orphans(), 1);
        assert!(killed(&mut child));
    }

    #[test]
    fn the_span_around_a_spawn_holds_the_start_time_procfs_reports() {
        for _ in 0..50 {
            let (mut child, span) =
                StartSpan::around(|| std::process::Command::new("/bin/true").spawn().unwrap());
            let span = span.expect("CLOCK_BOOTTIME");
            let start = start_time(child.id()).expect("the child is not reaped yet");
            assert!(span.holds(start), "{start} outside {span:?}");
            // Two ticks of widening and the spawn's own (well under a second).
            assert!(span.latest - span.earliest < 100, "{span:?}");
            child.wait().unwrap();
        }
    }

    #[test]
    fn parses_spans_and_an_older_petitds_exact_start_times() {
        let span = |earliest, latest| Some(StartSpan { earliest, latest });
        assert_eq!(StartSpan::parse("120-123"), span(120, 123));
        assert_eq!(StartSpan::parse("77"), span(77, 77));
        assert_eq!(StartSpan::parse("9-3"), None);
        assert_eq!(StartSpan::parse("-3"), None);
        assert_eq!(StartSpan::parse("1-"), None);
        assert_eq!(StartSpan::parse("x"), None);
        assert!(span(5, 7).unwrap().holds(5) && span(5, 7).unwrap().holds(7));
        assert!(!span(5, 7).unwrap().holds(8) && !span(5, 7).unwrap().holds(4));
    }

    #[test]
    fn reads_start_times() {
        assert!(start_time(std::process::id()).is_some());
        assert_eq!(start_time(u32::MAX), None);
    }
}
