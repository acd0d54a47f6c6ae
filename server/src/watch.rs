//! `petitd --watch`: reload the jobs when the jobs directory or `petit.yaml` changes.
//! Linux inotify on the directories (so an editor's write-to-temp-then-rename is
//! seen), debounced: a burst of changes (a `git pull`, a save that writes twice) makes
//! one reload, once the files have been quiet for `QUIET`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::engine::{Engine, ReloadDiff};
use crate::EngineError;

/// How long the watched files must be still before a reload.
pub const QUIET: Duration = Duration::from_millis(300);

/// Starts watching `jobs` (and the directory of `config`, for that file only);
/// `report` gets each reload's outcome. Fails if the watch cannot be set up.
pub fn start(
    engine: &Engine,
    jobs: &Path,
    config: Option<&Path>,
    report: fn(Result<ReloadDiff, EngineError>),
) -> std::io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        linux::start(engine, jobs, config, report)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (engine, jobs, config, report);
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
        let config_dir: Option<PathBuf> = config.map(|c| match c.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        });
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
        tokio::spawn(async move {
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
}
