//! The systemd notify protocol (`Type=notify` services): `READY=1` once petitd serves,
//! `STATUS=` lines as runs come and go, `WATCHDOG=1` at half the watchdog interval
//! while the engine answers, `STOPPING=1` when a shutdown starts. Only active when
//! systemd (or anything playing its part) sets `NOTIFY_SOCKET`; the variables are taken
//! out of petitd's environment so that no task can speak for the daemon.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

use crate::engine::Engine;
use crate::events::EventKind;

/// A connection to the service manager's notify socket.
#[derive(Debug)]
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads (and removes) `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`. Call it
    /// while the process has one thread (before the async runtime starts).
    pub fn from_env() -> Option<Notifier> {
        let path = std::env::var_os("NOTIFY_SOCKET");
        let usec = std::env::var("WATCHDOG_USEC").ok();
        let pid = std::env::var("WATCHDOG_PID").ok();
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(name);
        }
        let path = path?;
        let addr = match path.to_str().and_then(|p| p.strip_prefix('@')) {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name.as_bytes())
            }
            None => SocketAddr::from_pathname(&path),
        };
        let addr = match addr {
            Ok(addr) => addr,
            Err(e) => {
                tracing::warn!("NOTIFY_SOCKET is not a usable socket address: {e}");
                return None;
            }
        };
        // Non-blocking: a manager that stops reading (its queue is ten datagrams) must
        // cost a dropped ping, never a blocked executor thread.
        let socket = match UnixDatagram::unbound().and_then(|s| s.set_nonblocking(true).map(|()| s))
        {
            Ok(socket) => socket,
            Err(e) => {
                tracing::warn!("cannot create a socket for NOTIFY_SOCKET: {e}");
                return None;
            }
        };
        // The watchdog is for this process only when WATCHDOG_PID says so (or is unset).
        let ours = pid.is_none_or(|p| p.trim() == std::process::id().to_string());
        let watchdog = usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Some(Notifier {
            socket,
            addr,
            watchdog,
        })
    }

    fn send(&self, message: &str) {
        // Best effort: systemd may be gone during shutdown.
        if let Err(e) = self.socket.send_to_addr(message.as_bytes(), &self.addr) {
            tracing::debug!("cannot notify the service manager: {e}");
        }
    }

    /// Says petitd serves, then keeps `STATUS=` current and feeds the watchdog, until
    /// the engine's event bus closes.
    pub fn start(self, engine: &Engine) -> std::sync::Arc<Notifier> {
        let notifier = std::sync::Arc::new(self);
        notifier.send(&format!("READY=1\nSTATUS={}", status(engine)));
        tracing::info!("told the service manager petitd is ready");
        let mut events = engine.subscribe_with(crate::events::Logs::None);
        let watched = engine.clone();
        let n = notifier.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(event)
                        if matches!(
                            event.kind(),
                            EventKind::RunStarted
                                | EventKind::RunSucceeded
                                | EventKind::RunFailed
                                | EventKind::RunCancelled
                                | EventKind::RunInterrupted
                                | EventKind::SchedulerPaused
                                | EventKind::SchedulerResumed
                        ) =>
                    {
                        n.send(&format!("STATUS={}", status(&watched)))
                    }
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return,
                }
            }
        });
        if let Some(interval) = notifier.watchdog {
            let n = notifier.clone();
            let engine = engine.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval / 2);
                loop {
                    tick.tick().await;
                    // Reading the state takes the engine's lock: a wedged engine stops
                    // the pings, and systemd restarts the service.
                    let _ = engine.state();
                    n.send("WATCHDOG=1");
                }
            });
        }
        notifier
    }

    /// Says a shutdown has started.
    pub fn stopping(&self) {
        self.send("STOPPING=1\nSTATUS=stopping: running tasks get the grace period");
    }
}

fn status(engine: &Engine) -> String {
    let state = engine.state();
    format!(
        "{} jobs, {} runs going, scheduler {}",
        state.job_count,
        state.running_runs,
        if state.paused { "paused" } else { "running" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manager_that_stops_reading_costs_dropped_datagrams_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let receiver = UnixDatagram::bind(&path).unwrap();
        let socket = UnixDatagram::unbound().unwrap();
        socket.set_nonblocking(true).unwrap();
        let notifier = Notifier {
            socket,
            addr: SocketAddr::from_pathname(&path).unwrap(),
            watchdog: None,
        };
        // Far more than the socket queues; with a blocking socket this never returns.
        for _ in 0..1000 {
            notifier.send("WATCHDOG=1");
        }
        let mut buf = [0u8; 64];
        let n = receiver.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
    }
}
