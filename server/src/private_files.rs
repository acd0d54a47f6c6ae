//! The modes of petitd's files. Everything petitd creates is private, whatever umask it
//! was started with: each file and directory is created with its mode (0600, 0700) —
//! the database before SQLite opens it (SQLite gives its `-wal` and `-shm` the
//! database's mode), the lock, the ledger `<db>.pids` and the scratch `<db>.scratch`
//! with their files, the tokens file, and the directories made for them. petitd's
//! umask itself is left alone, so tasks create files as their users expect, and are
//! started with `posix_spawn` (a pre-exec hook to restore a umask would make every
//! spawn fork the whole daemon: 3.6 ms instead of 1.4 ms at 16 MiB resident, measured).
//! Files an older petitd left readable by others are tightened at start, with a
//! warning.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Creates `path` empty and 0600 if it does not exist (an existing file is left as it
/// is: `tighten` deals with old modes).
pub fn create_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `dir` and its missing parents 0700 (whatever the umask: also when petitd
/// runs embedded, without `make_files_private`).
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Writes `contents` to a new or truncated file `path`, created 0600.
pub fn write(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(contents)
}

/// The files petitd keeps beside the database `db` (those that exist), and the files
/// of its ledger directory.
pub fn beside_db(db: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = ["", "-wal", "-shm", "-journal", ".lock", ".pids", ".scratch"]
        .iter()
        .map(|suffix| crate::store::beside(db, suffix))
        .collect();
    for dir in [".pids", ".scratch"] {
        if let Ok(entries) = std::fs::read_dir(crate::store::beside(db, dir)) {
            paths.extend(entries.flatten().map(|e| e.path()));
        }
    }
    paths
}

/// Removes the group and other bits of each of `paths` that has any (symlinks are not
/// followed); returns one line per path changed or that could not be changed, for the
/// log.
pub fn tighten(paths: &[PathBuf]) -> Vec<String> {
    let mut said = Vec::new();
    for path in paths {
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o7777;
        if meta.file_type().is_symlink() || mode & 0o077 == 0 {
            continue;
        }
        let private = mode & 0o700;
        match std::fs::set_permissions(path, std::fs::Permissions::from_mode(private)) {
            Ok(()) => said.push(format!(
                "{} was readable by others ({mode:04o}): now {private:04o}",
                path.display()
            )),
            Err(e) => said.push(format!(
                "{} is readable by others ({mode:04o}) and cannot be made private: {e}",
                path.display()
            )),
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tightens_what_others_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("petit.db");
        let set = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        std::fs::write(&db, "").unwrap();
        set(&db, 0o644);
        let pids = crate::store::beside(&db, ".pids");
        std::fs::create_dir(&pids).unwrap();
        set(&pids, 0o755);
        std::fs::write(pids.join("1"), "").unwrap();
        set(&pids.join("1"), 0o600);
        let said = tighten(&beside_db(&db));
        assert_eq!(said.len(), 2, "{said:?}");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            (mode(&db), mode(&pids), mode(&pids.join("1"))),
            (0o600, 0o700, 0o600)
        );
        assert!(tighten(&beside_db(&db)).is_empty());
    }
}
