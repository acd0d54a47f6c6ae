//! `petitd --watch`: reload the jobs when the jobs directory or `petit.yaml` changes.
//! Linux inotify on the directories (so an editor's write-to-temp-then-rename is
//! seen), debounced: a burst of changes (a `git pull`, a save that writes twice) makes
//! one reload, once the files have been quiet for `QUIET`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::engine::{Engine, ReloadDiff};
use crate::EngineError;

/// How long the watched files must be still before a reload.
pub const QUIET: Duration = Duration::from_millis(300);

/// How much earlier than the load a file's time may read and still count as changed
/// after it: the kernel stamps files from a coarse clock (a tick behind the one
/// `SystemTime::now` reads), and some filesystems keep whole or even seconds.
const STAMP_SLACK: Duration = Duration::from_secs(2);

/// Starts watching `jobs` (and the directory of `config`, for that file only);
/// `report` gets each reload's outcome. Fails if the watch cannot be set up.
///
/// `loaded_at` is when the running jobs were read (before `petit.yaml`): a change
/// between then and the watch being set up has no event, so once the watch is in
/// place the files are checked against it (see [`changed_since`]) and, if any is
/// newer, the jobs reload at once (logged before this returns).
pub fn start(
    engine: &Engine,
    jobs: &Path,
    config: Option<&Path>,
    loaded_at: SystemTime,
    report: fn(Result<ReloadDiff, EngineError>),
) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::start(engine, jobs, config, loaded_at, report)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (engine, jobs, config, loaded_at, report);
        Err(std::io::Error::other(
            "--watch needs inotify (Linux); send SIGHUP or call ReloadJobs instead",
        ))
    }
}

/// Whether a change to `name` (in a watched directory) concerns the jobs: a job file
/// of the jobs directory, or the config file itself.
fn concerns(name: &Path, config_name: Option<&std::ffi::OsStr>, in_jobs_dir: bool) -> bool {
    if in_jobs_dir {
        let ext = name.extension().and_then(|e| e.to_str());
        return matches!(ext, Some("yaml" | "yml"));
    }
    config_name.is_some_and(|c| name.file_name() == Some(c))
}

/// Whether the jobs directory, a job file in it, `config` or the directory holding it
/// was modified at `since` or after (less [`STAMP_SLACK`]). A directory's time moves
/// when a file is added, removed or renamed in it; a file's when it is written. A
/// file that cannot be read counts as changed: the reload will say why.
fn changed_since(jobs: &Path, config: Option<&Path>, since: SystemTime) -> bool {
    let since = since
        .checked_sub(STAMP_SLACK)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let newer = |path: &Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .map_or(true, |t| t >= since)
    };
    if newer(jobs) || config.is_some_and(|c| newer(c) || newer(&parent_dir(c))) {
        return true;
    }
    let Ok(entries) = std::fs::read_dir(jobs) else {
        return true;
    };
    entries.flatten().any(|entry| {
        let path = entry.path();
        concerns(&path, None, true) && newer(&path)
    })
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    use std::os::fd::{AsFd, AsRawFd, RawFd};

    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
    use tokio::io::unix::AsyncFd;

    use super::*;

    struct Fd(Inotify);

    impl AsRawFd for Fd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    pub fn start(
        engine: &Engine,
        jobs: &Path,
        config: Option<&Path>,
        loaded_at: SystemTime,
        report: fn(Result<ReloadDiff, EngineError>),
    ) -> std::io::Result<()> {
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        let flags = AddWatchFlags::IN_CLOSE_WRITE
            | AddWatchFlags::IN_CREATE
            | AddWatchFlags::IN_DELETE
            | AddWatchFlags::IN_MOVED_FROM
            | AddWatchFlags::IN_MOVED_TO
            | AddWatchFlags::IN_MODIFY;
        let jobs_wd = inotify.add_watch(jobs, flags)?;
        let config_dir: Option<PathBuf> = config.map(parent_dir);
        let config_wd: Option<WatchDescriptor> = match &config_dir {
            Some(dir) if dir.canonicalize().ok() != jobs.canonicalize().ok() => {
                Some(inotify.add_watch(dir.as_path(), flags)?)
            }
            _ => None,
        };
        let config_name = config.and_then(|c| c.file_name()).map(|n| n.to_os_string());
        // SAFETY: `Fd` owns the descriptor (an `OwnedFd` inside `Inotify`), so it stays
        // open for as long as the `AsyncFd` that wraps it.
        let fd = unsafe { AsyncFd::register(Fd(inotify)) }?;
        let engine = engine.clone();
        // Armed: from here on every change has an event. One made since the load had
        // none (the watch was not there yet). Checked here, before petitd says it is
        // ready: a stat per job file, as the load itself read each.
        let missed = changed_since(jobs, config, loaded_at);
        if missed {
            tracing::info!("job files modified since petitd read them at start: reloading");
        }
        tokio::spawn(async move {
            if missed {
                report(engine.reload().await);
            }
            loop {
                // Wait for a change that concerns the jobs...
                if !wait_change(&fd, jobs_wd, config_wd, config_name.as_deref(), None).await {
                    return;
                }
                // ...then for the files to be quiet.
                while wait_change(&fd, jobs_wd, config_wd, config_name.as_deref(), Some(QUIET))
                    .await
                {}
                tracing::info!("job files changed: reloading");
                report(engine.reload().await);
            }
        });
        Ok(())
    }

    /// Waits for a change that concerns the jobs: `true` when one came, `false` when
    /// `within` passed first (or the watch failed).
    async fn wait_change(
        fd: &AsyncFd<Fd>,
        jobs_wd: WatchDescriptor,
        config_wd: Option<WatchDescriptor>,
        config_name: Option<&std::ffi::OsStr>,
        within: Option<Duration>,
    ) -> bool {
        let wait = async {
            loop {
                let mut ready = match fd.readable().await {
                    Ok(ready) => ready,
                    Err(e) => {
                        tracing::error!("--watch stopped: {e}");
                        return false;
                    }
                };
                let events = match ready
                    .try_io(|fd| fd.get_ref().0.read_events().map_err(std::io::Error::from))
                {
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Ok(Err(e)) => {
                        tracing::error!("--watch stopped: {e}");
                        return false;
                    }
                    Err(_would_block) => continue,
                };
                let relevant = events.iter().any(|e| {
                    let Some(name) = e.name.as_deref() else {
                        return false;
                    };
                    let name = Path::new(name);
                    if e.wd == jobs_wd {
                        concerns(name, config_name, true)
                            || concerns(name, config_name, false) && config_wd.is_none()
                    } else {
                        Some(e.wd) == config_wd && concerns(name, config_name, false)
                    }
                });
                if relevant {
                    return true;
                }
            }
        };
        match within {
            None => wait.await,
            Some(t) => tokio::time::timeout(t, wait).await.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_files_and_the_config_concern_the_watch() {
        let config = Some(std::ffi::OsStr::new("petit.yaml"));
        assert!(concerns(Path::new("backup.yaml"), config, true));
        assert!(concerns(Path::new("backup.yml"), config, true));
        assert!(!concerns(Path::new(".backup.yaml.swp"), config, true));
        assert!(!concerns(Path::new("notes.txt"), config, true));
        assert!(concerns(Path::new("petit.yaml"), config, false));
        assert!(!concerns(Path::new("other.yaml"), config, false));
    }

    #[test]
    fn a_change_since_the_load_is_seen_and_an_older_state_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let jobs = dir.path().join("jobs");
        std::fs::create_dir(&jobs).unwrap();
        std::fs::write(jobs.join("a.yaml"), "id: a\n").unwrap();
        std::fs::write(jobs.join("notes.txt"), "").unwrap();
        let config = dir.path().join("petit.yaml");
        std::fs::write(&config, "").unwrap();
        let now = SystemTime::now();
        // Loaded well after every file was last touched: nothing missed.
        let later = now + Duration::from_secs(60);
        assert!(!changed_since(&jobs, Some(&config), later));
        // Loaded just before the files were written (within the stamp slack).
        assert!(changed_since(&jobs, Some(&config), now));

        // Each kind of change, made after a load at `load`, one at a time.
        let age = |path: &Path| {
            let old = SystemTime::now() - Duration::from_secs(3600);
            std::fs::File::options()
                .write(true)
                .open(path)
                .or_else(|_| std::fs::File::open(path))
                .unwrap()
                .set_modified(old)
                .unwrap();
        };
        let settle = || {
            for path in [
                &jobs,
                &jobs.join("a.yaml"),
                &jobs.join("notes.txt"),
                &config,
            ] {
                age(path);
            }
            age(dir.path());
        };
        let load = SystemTime::now() - Duration::from_secs(60);
        settle();
        assert!(!changed_since(&jobs, Some(&config), load));
        std::fs::write(jobs.join("a.yaml"), "id: a\ndescription: new\n").unwrap();
        assert!(
            changed_since(&jobs, Some(&config), load),
            "a job file written"
        );
        settle();
        std::fs::write(jobs.join("notes.txt"), "not a job").unwrap();
        age(&jobs);
        assert!(!changed_since(&jobs, Some(&config), load), "not a job file");
        std::fs::remove_file(jobs.join("a.yaml")).unwrap();
        assert!(
            changed_since(&jobs, Some(&config), load),
            "a job file removed"
        );
        std::fs::write(jobs.join("a.yaml"), "id: a\n").unwrap();
        settle();
        std::fs::write(&config, "max_concurrent_runs: 2\n").unwrap();
        assert!(
            changed_since(&jobs, Some(&config), load),
            "petit.yaml written"
        );
        settle();
        assert!(!changed_since(&jobs, None, load));
        assert!(
            changed_since(&dir.path().join("gone"), None, load),
            "unreadable"
        );
    }
}
