//! How petitd gives memory back to the system after a burst of large responses (many
//! pages of a long log, several clients at once). With glibc's defaults a daemon that
//! served six whole reads of a 2,000,000-line log kept about 60 MiB more than before,
//! for good: each thread's arena keeps its free memory, and glibc raises its mmap
//! threshold after the first large free, so big buffers land in those arenas too.
//! Fewer arenas, fixed thresholds and a trim shortly after such a burst bring it back
//! near the idle figure (`make bench`, log_memory, has the numbers; mimalloc, tried
//! too, kept more).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Set by the code that just built a large response; the trimmer clears it.
static LARGE_RESPONSE: AtomicBool = AtomicBool::new(false);

/// How often the trimmer looks for a burst that ended.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Sets the allocator up and starts the trimmer thread; once, at start, before the
/// runtime's threads exist (arena settings apply to threads made afterwards).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use nix::libc::{mallopt, M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        // SAFETY: mallopt only changes glibc's malloc parameters; it is called before
        // any other thread of ours allocates.
        unsafe {
            mallopt(M_ARENA_MAX, 2);
            mallopt(M_MMAP_THRESHOLD, 128 * 1024);
            // Free memory at the top of an arena is kept up to 4 MiB: at 128 KiB, a
            // flood of log output gave back and faulted in pages at every batch (a
            // 1,000,000-line task took 89-99 ms instead of 78-83, `make bench`, logs);
            // the trimmer returns it after a burst, and a log flood counts as one.
            mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
        }
        let trimmer = std::thread::Builder::new()
            .name("petit-trim".into())
            .spawn(trim_after_bursts);
        match trimmer {
            Ok(handle) => {
                let _ = TRIMMER.set(handle.thread().clone());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the memory trimmer; memory is returned later");
            }
        }
    }
}

/// Notes that a large response was just built: its memory is trimmed back soon after.
pub fn large_response_built() {
    LARGE_RESPONSE.store(true, Ordering::Relaxed);
    wake();
}

/// Notes that a lot of memory was just freed (a client connection ended, with its
/// buffers and streams): trimmed back soon after, as after a large response. Cheap:
/// one relaxed store and an unpark; the trim itself happens at most once a second.
pub fn memory_freed() {
    LARGE_RESPONSE.store(true, Ordering::Relaxed);
    wake();
}

/// The trimmer thread, once started.
static TRIMMER: std::sync::OnceLock<std::thread::Thread> = std::sync::OnceLock::new();

/// Wakes the trimmer if it is parked (a no-op while it is already counting down).
fn wake() {
    if let Some(thread) = TRIMMER.get() {
        thread.unpark();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_after_bursts() {
    // Parked until something is freed (an unpark of `wake`): an idle petitd never
    // wakes this thread. After a burst, a trim once a `TRIM_EVERY` while bursts go on,
    // and once more after the last.
    let mut once_more = false;
    loop {
        if !once_more {
            std::thread::park();
        }
        std::thread::sleep(TRIM_EVERY);
        let seen = LARGE_RESPONSE.swap(false, Ordering::Relaxed);
        if seen || once_more {
            // SAFETY: malloc_trim only returns free memory to the system.
            unsafe {
                nix::libc::malloc_trim(0);
            }
        }
        once_more = seen;
    }
}
