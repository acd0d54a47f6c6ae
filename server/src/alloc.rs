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
            mallopt(M_TRIM_THRESHOLD, 128 * 1024);
        }
        let trimmer = std::thread::Builder::new()
            .name("petit-trim".into())
            .spawn(trim_after_bursts);
        if let Err(e) = trimmer {
            tracing::warn!(error = %e, "cannot start the memory trimmer; memory is returned later");
        }
    }
}

/// Notes that a large response was just built: its memory is trimmed back soon after.
pub fn large_response_built() {
    LARGE_RESPONSE.store(true, Ordering::Relaxed);
}

/// Notes that a lot of memory was just freed (a client connection ended, with its
/// buffers and streams): trimmed back soon after, as after a large response. Cheap:
/// one relaxed store; the trim itself happens at most once a second.
pub fn memory_freed() {
    LARGE_RESPONSE.store(true, Ordering::Relaxed);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_after_bursts() {
    // A response is encoded and freed after its handler returns: trimming on the tick
    // after the flag is seen too catches what the last one of a burst left.
    let mut once_more = false;
    loop {
        std::thread::sleep(TRIM_EVERY);
        let seen = LARGE_RESPONSE.swap(false, Ordering::Relaxed);
        if seen || once_more {
            // SAFETY: malloc_trim is thread-safe; it only returns free pages.
            unsafe {
                nix::libc::malloc_trim(0);
            }
        }
        once_more = seen;
    }
}
