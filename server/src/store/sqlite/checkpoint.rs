//! Checkpoints off the writer's path. SQLite's automatic checkpoint runs inside the
//! commit that crosses its threshold, on the committing connection: the writer thread
//! would copy the WAL into the database (and sync both) before it answers the batch,
//! and every write queued behind it would wait. Under a flood of log lines that was
//! about 40 % of the time a task's output took to store (`make bench`, logs). Instead
//! the writer notes, after each commit, how many pages the WAL holds (its WAL hook),
//! and past [`CHECKPOINT_PAGES`] wakes this thread, which checkpoints on its own
//! connection (PASSIVE: it never blocks the writer, and the writer starts the WAL over
//! once all of it is copied). Parked otherwise: an idle daemon never wakes it.
//!
//! A checkpoint that runs beside a writer that keeps committing may never catch up
//! with it, and the WAL starts over only once all of it is copied: so past
//! [`FALLBACK_PAGES`] (or if this thread never started) the writer checkpoints itself,
//! which finishes what this thread copied already, and the WAL stays bounded.

use std::cell::Cell;
use std::os::raw::c_int;
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use rusqlite::hooks::Wal;
use rusqlite::{Connection, OpenFlags};

/// WAL pages after which a checkpoint is due: SQLite's own default threshold.
const CHECKPOINT_PAGES: i32 = 1000;
/// WAL pages after which the writer checkpoints itself.
const FALLBACK_PAGES: i32 = 4 * CHECKPOINT_PAGES;

thread_local! {
    /// The WAL's pages after the writer's last commit (the hook runs on the writer's
    /// thread, inside the commit).
    static WAL_PAGES: Cell<i32> = const { Cell::new(0) };
}

fn note_wal_pages(_: &Wal, pages: c_int) -> rusqlite::Result<()> {
    WAL_PAGES.with(|p| p.set(pages));
    Ok(())
}

/// Replaces the writer connection's automatic checkpoint with the WAL hook.
pub(super) fn hook(conn: &Connection) {
    conn.wal_hook(Some(note_wal_pages));
}

/// After the writer's commit: a checkpoint when one is due, on the checkpoint thread
/// or, past the fallback or without that thread, here. Here, it first waits for the
/// thread's checkpoint under way (SQLite runs one at a time, and would refuse this one
/// at once), then copies what is left: nothing commits meanwhile, so all of it.
pub(super) fn after_commit(conn: &Connection, checkpointer: Option<&Checkpointer>) {
    let pages = WAL_PAGES.with(Cell::take);
    match checkpointer {
        _ if pages < CHECKPOINT_PAGES => {}
        Some(checkpointer) if pages < FALLBACK_PAGES => checkpointer.wake(),
        Some(checkpointer) => {
            let _alone = checkpointer.running.lock();
            checkpoint(conn);
        }
        None => checkpoint(conn),
    }
}

/// After a commit made inline, on its caller's thread ([`super::writer::Shared`]): a
/// checkpoint when one is due, always on the checkpoint thread (the caller is not
/// held up by one; without that thread, the writer thread's next commit sees the
/// same WAL and checkpoints).
pub(super) fn after_inline_commit(checkpointer: Option<&Checkpointer>) {
    let pages = WAL_PAGES.with(Cell::take);
    if let (true, Some(checkpointer)) = (pages >= CHECKPOINT_PAGES, checkpointer) {
        checkpointer.wake();
    }
}

/// Copies as much of the WAL into the database as readers allow.
fn checkpoint(conn: &Connection) {
    let done = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    if let Err(e) = done {
        tracing::debug!(error = %e, "checkpoint failed; the next one retries");
    }
}

/// The checkpoint thread: woken by the writer, it stops (and closes its connection)
/// when dropped.
pub(super) struct Checkpointer {
    wake: Option<mpsc::SyncSender<()>>,
    /// Held by the thread while it checkpoints.
    running: Arc<Mutex<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path`; `None` (the writer then
    /// checkpoints itself) when either cannot be had.
    pub(super) fn start(path: &Path) -> Option<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = match Connection::open_with_flags(path, flags) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the checkpoint connection; the writer checkpoints");
                return None;
            }
        };
        // At most one wake-up waits: a checkpoint covers every commit before it.
        let (wake, woken) = mpsc::sync_channel(1);
        let running = Arc::new(Mutex::new(()));
        let held = running.clone();
        let thread = std::thread::Builder::new()
            .name("petit-checkpoint".into())
            .spawn(move || {
                while woken.recv().is_ok() {
                    let _running = held.lock();
                    checkpoint(&conn);
                }
            });
        match thread {
            Ok(thread) => Some(Checkpointer {
                wake: Some(wake),
                running,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpoint thread; the writer checkpoints");
                None
            }
        }
    }

    /// Asks for a checkpoint (a no-op while one is already asked for).
    pub(super) fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.try_send(());
        }
    }
}

impl Drop for Checkpointer {
    /// Waits for a checkpoint under way, so that the writer's connection closes last
    /// (the last connection to close removes the WAL).
    fn drop(&mut self) {
        self.wake = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
