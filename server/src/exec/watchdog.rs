//! petitd's watchdog: a child process that outlives a petitd killed with `kill -9` (or
//! by the out-of-memory killer) just long enough to kill the task process groups the
//! process ledger still lists, so that a crash leaves no task running until the next
//! start.
//!
//! It is forked, not executed: forked first thing, while petitd is one thread with
//! almost nothing allocated, it shares petitd's pages (its relocated read-only data
//! above all, which a second exec of the binary writes afresh: 3 MiB of the 3.3 MiB a
//! separate `petitd watchdog` process cost). It waits on a pipe whose write end only
//! petitd holds (close-on-exec, so no task holds it), and reads end of file when petitd
//! is gone, however it went.
//!
//! It acts only once armed: petitd sends it the ledger's directory once it holds the
//! database's lock ([`Watchdog::arm`]). A petitd that stops before that (a busy port, a
//! database locked by another daemon, bad job files) leaves a ledger that is not its
//! own, and its watchdog exits without touching it.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::libc;

use super::ledger::Ledger;

/// The name the watchdog process goes by (`ps -e`, `top`, `/proc/PID/comm`).
pub const NAME: &str = "petitd-watchdog";

/// The longest message the watchdog reads: a ledger path and its length.
const MAX_MESSAGE: usize = 64 * 1024;

/// petitd's end of its watchdog.
#[derive(Debug)]
pub struct Watchdog {
    pid: libc::pid_t,
    pipe: Option<std::fs::File>,
}

impl Watchdog {
    /// Forks the watchdog.
    ///
    /// # Safety
    ///
    /// The process must have one thread: the child runs ordinary code (it allocates),
    /// which only a single-threaded parent makes safe after `fork`.
    pub unsafe fn fork() -> io::Result<Watchdog> {
        let (read, write) = pipe()?;
        // SAFETY: single-threaded (this function's contract).
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                drop(write);
                watch(read)
            }
            pid => {
                drop(read);
                Ok(Watchdog {
                    pid,
                    pipe: Some(std::fs::File::from(write)),
                })
            }
        }
    }

    /// Hands the watchdog the ledger to act on once petitd is gone. Call it once this
    /// petitd holds the lock on its data, so that the ledger is its own.
    pub fn arm(&mut self, ledger: &Path) -> io::Result<()> {
        let Some(pipe) = self.pipe.as_mut() else {
            return Err(io::Error::other("the watchdog is stopped"));
        };
        pipe.write_all(&message(ledger.as_os_str()))
    }

    /// Ends the watchdog (it acts on its ledger, if armed, which a clean stop has
    /// emptied) and waits for it.
    pub fn stop(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if self.pipe.take().is_some() {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` is a valid out-pointer.
            while unsafe { libc::waitpid(self.pid, &mut status, 0) } == -1
                && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
            {}
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.end();
    }
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just opened both; nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The arming message: the path's length (4 bytes, little-endian), then the path.
fn message(path: &OsStr) -> Vec<u8> {
    let bytes = path.as_bytes();
    let mut message = Vec::with_capacity(4 + bytes.len());
    message.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    message.extend_from_slice(bytes);
    message
}

/// The ledger path of a whole arming message; none for anything else (petitd went
/// before it armed the watchdog, or mid-message).
fn armed(received: &[u8]) -> Option<&Path> {
    let (length, path) = received.split_first_chunk::<4>()?;
    (u32::from_le_bytes(*length) as usize == path.len() && !path.is_empty())
        .then(|| Path::new(OsStr::from_bytes(path)))
}

/// The watchdog's life, in the forked child: never returns.
fn watch(pipe: OwnedFd) -> ! {
    // SAFETY: plain system calls on this process's own descriptors and attributes.
    unsafe {
        // A Ctrl-C meant for petitd does not reach it.
        libc::setpgid(0, 0);
        libc::prctl(libc::PR_SET_NAME, c"petitd-watchdog".as_ptr());
        // The pipe is its stdin; stdout goes nowhere; stderr is petitd's (its one line
        // goes where petitd's log goes). Nothing else of petitd's stays open.
        libc::dup3(pipe.as_raw_fd(), 0, 0);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_WRONLY);
        if null >= 0 {
            libc::dup2(null, 1);
        }
        close_from(3);
    }
    std::mem::forget(pipe);
    let mut received = Vec::new();
    let mut stdin = io::stdin().lock();
    let mut buf = [0u8; 512];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if received.len() + n <= MAX_MESSAGE => received.extend_from_slice(&buf[..n]),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if let Some(dir) = armed(&received) {
        match Ledger::open(dir) {
            Ok(ledger) => {
                let killed = ledger.kill_orphans();
                if killed > 0 {
                    eprintln!("{NAME}: petitd is gone; killed {killed} task process group(s) it left running");
                }
            }
            Err(e) => eprintln!(
                "{NAME}: cannot open the process ledger {}: {e}",
                dir.display()
            ),
        }
    }
    // SAFETY: ends this process at once, running none of petitd's exit handlers.
    unsafe { libc::_exit(0) }
}

/// Closes every descriptor from `first` up.
///
/// # Safety
///
/// Nothing may use those descriptors afterwards.
unsafe fn close_from(first: libc::c_int) {
    // SAFETY: close_range(2) (Linux 5.9); on an older kernel, one close(2) each.
    unsafe {
        if libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            0,
        ) == 0
        {
            return;
        }
        let max = match libc::sysconf(libc::_SC_OPEN_MAX) {
            n if n > 0 => n.min(1 << 16) as libc::c_int,
            _ => 1024,
        };
        for fd in first..max {
            libc::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_whole_message_arms_it() {
        let path = Path::new("/var/lib/petit/petit.db.pids");
        assert_eq!(armed(&message(path.as_os_str())), Some(path));
    }

    #[test]
    fn a_path_that_is_not_utf8_arms_it_too() {
        let path = Path::new(OsStr::from_bytes(b"/data/\xff\xfe.pids"));
        assert_eq!(armed(&message(path.as_os_str())), Some(path));
    }

    #[test]
    fn nothing_or_part_of_a_message_does_not() {
        let whole = message(OsStr::new("/var/lib/petit/petit.db.pids"));
        assert_eq!(armed(&[]), None);
        for cut in 0..whole.len() {
            assert_eq!(armed(&whole[..cut]), None, "cut at {cut}");
        }
        // Nor a message followed by more.
        let mut longer = whole.clone();
        longer.push(b'x');
        assert_eq!(armed(&longer), None);
        assert_eq!(armed(&message(OsStr::new(""))), None);
    }
}
