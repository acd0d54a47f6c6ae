//! One daemon per database. A second petitd on the same file would fire every job a
//! second time, and at its start it would take the first one's running tasks for a
//! crash's orphans and kill them. So the daemon holds an exclusive `flock` on
//! `<db>.lock` for as long as it lives; the kernel lets go of it when the process ends,
//! however it ends, so a `kill -9` never leaves a stale lock behind.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock, held until dropped.
#[derive(Debug)]
pub struct DataLock {
    _file: Flock<File>,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{db} is in use by another petitd{}; one database serves one daemon (stop it, or give this one another --db)", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
    Busy { db: String, pid: Option<u32> },
    #[error("cannot lock {path}: {source}")]
    Io { path: String, source: io::Error },
}

impl DataLock {
    /// Takes the lock of the database at `db` (creating its directory and the lock
    /// file if needed), without waiting, and writes this process's id in it.
    pub fn acquire(db: &Path) -> Result<DataLock, LockError> {
        let path = lock_path(db);
        let io_error = |source: io::Error| LockError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(dir).map_err(io_error)?;
        }
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_error)?;
        let mut file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Busy {
                    db: db.display().to_string(),
                    pid: text.trim().parse().ok(),
                });
            }
            Err((_, errno)) => return Err(io_error(io::Error::from(errno))),
        };
        // Who holds it, for the message a second daemon prints.
        let written = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        written.map_err(io_error)?;
        Ok(DataLock { _file: file })
    }
}

/// `<db>.lock`, beside the database.
fn lock_path(db: &Path) -> PathBuf {
    beside(db, ".lock")
}

/// `<db><suffix>`, beside the database: where petitd keeps what belongs to one
/// database (`.lock`, `.pids`, `.scratch`).
pub fn beside(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state").join("petit.db");
        let held = DataLock::acquire(&db).expect("first lock");
        // A second open file description: refused, as another process would be.
        let error = DataLock::acquire(&db).expect_err("second lock");
        let message = error.to_string();
        assert!(
            message.contains(&db.display().to_string()),
            "names the database: {message}"
        );
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "names the holder: {message}"
        );
        drop(held);
        DataLock::acquire(&db).expect("free again once dropped");
    }
}
