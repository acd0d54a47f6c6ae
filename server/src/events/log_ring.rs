//! A broadcast of log batches bounded in bytes as well as in number: a batch under a
//! flood holds thousands of lines and a quiet task's holds one, so a ring of a fixed
//! number of batches would hold either far too many bytes for a stalled subscriber or
//! far too few lines for a slightly slow one. The ring keeps the newest batches whose
//! text fits in its byte budget (always the newest one), and up to a number of them; a
//! subscriber behind the oldest it keeps lags, as with `tokio::sync::broadcast`, and
//! the publisher never waits.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Event, RecvError};

#[derive(Debug)]
pub(super) struct LogRing {
    max_items: usize,
    max_bytes: usize,
    state: Mutex<State>,
    /// Woken at each send and at close.
    sent: Notify,
}

#[derive(Debug, Default)]
struct State {
    /// The position of `items[0]` in everything ever sent.
    first: u64,
    /// The batches kept, each with its size.
    items: VecDeque<(Arc<Event>, usize)>,
    bytes: usize,
    receivers: usize,
    closed: bool,
}

impl State {
    fn end(&self) -> u64 {
        self.first + self.items.len() as u64
    }
}

impl LogRing {
    pub(super) fn new(max_items: usize, max_bytes: usize) -> Arc<LogRing> {
        Arc::new(LogRing {
            max_items: max_items.max(1),
            max_bytes,
            state: Mutex::new(State::default()),
            sent: Notify::new(),
        })
    }

    /// Sends a log event (`bytes`: what it holds) to every receiver; kept only while
    /// someone may read it.
    pub(super) fn send(&self, event: Arc<Event>, bytes: usize) {
        {
            let mut state = self.state.lock().expect("log ring lock");
            if state.receivers == 0 {
                return;
            }
            state.items.push_back((event, bytes));
            state.bytes += bytes;
            while state.items.len() > self.max_items
                || (state.bytes > self.max_bytes && state.items.len() > 1)
            {
                let (_, gone) = state.items.pop_front().expect("an item");
                state.bytes -= gone;
                state.first += 1;
            }
        }
        self.sent.notify_waiters();
    }

    /// No more sends: receivers get what is kept, then `Closed`.
    pub(super) fn close(&self) {
        self.state.lock().expect("log ring lock").closed = true;
        self.sent.notify_waiters();
    }

    pub(super) fn receiver_count(&self) -> usize {
        self.state.lock().expect("log ring lock").receivers
    }

    /// A receiver of what is sent from now on.
    pub(super) fn subscribe(self: &Arc<Self>) -> LogReceiver {
        let mut state = self.state.lock().expect("log ring lock");
        state.receivers += 1;
        LogReceiver {
            ring: self.clone(),
            next: state.end(),
        }
    }
}

/// One subscriber's place in a [`LogRing`].
#[derive(Debug)]
pub(super) struct LogReceiver {
    ring: Arc<LogRing>,
    /// The position of the next event to receive.
    next: u64,
}

impl LogReceiver {
    fn try_recv(&mut self) -> Option<Result<Arc<Event>, RecvError>> {
        let state = self.ring.state.lock().expect("log ring lock");
        if self.next < state.first {
            let missed = state.first - self.next;
            self.next = state.first;
            return Some(Err(RecvError::Lagged(missed)));
        }
        if self.next < state.end() {
            let (event, _) = &state.items[(self.next - state.first) as usize];
            self.next += 1;
            return Some(Ok(event.clone()));
        }
        state.closed.then_some(Err(RecvError::Closed))
    }

    /// The next event; `Lagged` when this receiver fell behind what the ring keeps.
    /// Cancel-safe: an event is taken only when this returns it.
    pub(super) async fn recv(&mut self) -> Result<Arc<Event>, RecvError> {
        let ring = self.ring.clone();
        loop {
            let mut sent = pin!(ring.sent.notified());
            // Registered before looking, so a send in between is not missed.
            sent.as_mut().enable();
            if let Some(got) = self.try_recv() {
                return got;
            }
            sent.await;
        }
    }
}

impl Drop for LogReceiver {
    fn drop(&mut self) {
        let mut state = self.ring.state.lock().expect("log ring lock");
        state.receivers -= 1;
        if state.receivers == 0 {
            // Nobody left to read them.
            state.first = state.end();
            state.items.clear();
            state.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn event(n: u64) -> Arc<Event> {
        Arc::new(Event::Scheduler {
            time: DateTime::from_timestamp_nanos(n as i64),
            paused: false,
        })
    }

    fn time_of(e: &Event) -> u64 {
        e.time().timestamp_nanos_opt().expect("nanos") as u64
    }

    #[tokio::test]
    async fn every_receiver_gets_every_event_in_order() {
        let ring = LogRing::new(8, 1 << 20);
        let mut a = ring.subscribe();
        let mut b = ring.subscribe();
        for n in 0..5 {
            ring.send(event(n), 10);
        }
        for rx in [&mut a, &mut b] {
            for n in 0..5 {
                assert_eq!(time_of(&rx.recv().await.expect("an event")), n);
            }
        }
    }

    #[tokio::test]
    async fn a_stalled_receiver_keeps_at_most_the_byte_budget() {
        let ring = LogRing::new(1000, 100);
        let mut rx = ring.subscribe();
        for n in 0..50 {
            ring.send(event(n), 30);
        }
        {
            let state = ring.state.lock().unwrap();
            assert_eq!(state.items.len(), 3, "three of 30 bytes fit in 100");
            assert_eq!(state.bytes, 90);
        }
        assert!(matches!(rx.recv().await, Err(RecvError::Lagged(47))));
        assert_eq!(time_of(&rx.recv().await.unwrap()), 47);
        // One batch larger than the budget is kept alone, and still delivered.
        ring.send(event(99), 1000);
        assert!(matches!(rx.recv().await, Err(RecvError::Lagged(2))));
        assert_eq!(time_of(&rx.recv().await.unwrap()), 99);
    }

    #[tokio::test]
    async fn the_count_is_bounded_too() {
        let ring = LogRing::new(4, 1 << 20);
        let mut rx = ring.subscribe();
        for n in 0..10 {
            ring.send(event(n), 1);
        }
        assert!(matches!(rx.recv().await, Err(RecvError::Lagged(6))));
        assert_eq!(time_of(&rx.recv().await.unwrap()), 6);
    }

    #[tokio::test]
    async fn a_waiting_receiver_wakes_at_a_send_and_ends_at_close() {
        let ring = LogRing::new(8, 1 << 20);
        let mut rx = ring.subscribe();
        let sender = ring.clone();
        let waiter = tokio::spawn(async move {
            let first = rx.recv().await.map(|e| time_of(&e));
            let then = rx.recv().await.map(|e| time_of(&e));
            (first, then, rx.recv().await.is_err())
        });
        tokio::task::yield_now().await;
        sender.send(event(7), 1);
        sender.send(event(8), 1);
        sender.close();
        let (first, then, closed) = waiter.await.unwrap();
        assert_eq!((first.unwrap(), then.unwrap(), closed), (7, 8, true));
    }

    #[test]
    fn nothing_is_kept_without_receivers() {
        let ring = LogRing::new(8, 1 << 20);
        ring.send(event(1), 10);
        assert!(ring.state.lock().unwrap().items.is_empty());
        let rx = ring.subscribe();
        ring.send(event(2), 10);
        assert_eq!(ring.receiver_count(), 1);
        drop(rx);
        assert_eq!(ring.receiver_count(), 0);
        assert!(ring.state.lock().unwrap().items.is_empty());
        let mut rx = ring.subscribe();
        ring.send(event(3), 10);
        assert_eq!(time_of(&rx.try_recv().unwrap().unwrap()), 3);
    }
}
