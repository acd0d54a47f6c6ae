//! Notes between nodes over `LISTEN/NOTIFY`: the payload of each [`Note`], the notes
//! a write sends (inside its transaction, so they are delivered on commit and never
//! for a write rolled back), and the listener: one dedicated connection (not from the
//! pool: a pooled connection is shared and recycled) that feeds a broadcast channel,
//! drops what this store sent itself, and reconnects with backoff when the connection
//! is lost, then sends [`NoteKind::Resync`] because notes may have been missed.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use deadpool_postgres::GenericClient;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

use super::connect::DatabaseUrl;
use super::rows::pg;
use crate::store::{Lease, Note, NoteKind, StoreResult};

/// The channel every node listens on (channels are per database).
pub(super) const CHANNEL: &str = "petit_notes";
/// A payload must stay under PostgreSQL's 8000 bytes; a note that would not (ids of
/// absurd length) goes as a `Resync`, which makes the receivers read everything again.
const MAX_PAYLOAD: usize = 7000;
/// Notes kept for a receiver that lags; one that falls further behind gets
/// `RecvError::Lagged` and should read everything again, as after a `Resync`.
pub(super) const CAPACITY: usize = 4096;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A note as it travels: short keys, because every write sends one.
#[derive(Serialize, Deserialize)]
struct Payload {
    /// The sending store (not node: two stores of one node id are two senders).
    s: String,
    /// The sending node's id (empty before it joined).
    f: String,
    k: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    r: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    t: Option<String>,
}

/// Who sends: this store's instance id, and its node id once joined.
#[derive(Clone)]
pub(super) struct Sender {
    pub(super) instance: Arc<str>,
    pub(super) lease: Arc<RwLock<Option<Lease>>>,
}

impl Sender {
    /// This store's sender as it will be once `lease` is its own (the notes of a join,
    /// sent before the join commits and the store takes the lease).
    pub(super) fn as_node(&self, lease: &Lease) -> Sender {
        Sender {
            instance: Arc::clone(&self.instance),
            lease: Arc::new(RwLock::new(Some(lease.clone()))),
        }
    }

    /// The node id notes are sent as (empty before a join).
    pub(super) fn node_id(&self) -> String {
        self.lease
            .read()
            .ok()
            .and_then(|lease| lease.as_ref().map(|l| l.node_id.clone()))
            .unwrap_or_default()
    }

    pub(super) fn encode(&self, what: &NoteKind) -> String {
        let (k, r, t) = match what {
            NoteKind::Run { run_id } => ("run", Some(run_id.clone()), None),
            NoteKind::Task { run_id, task_id } => {
                ("task", Some(run_id.clone()), Some(task_id.clone()))
            }
            NoteKind::Logs { run_id } => ("logs", Some(run_id.clone()), None),
            NoteKind::Queue => ("queue", None, None),
            NoteKind::Paused => ("paused", None, None),
            NoteKind::Cancel { run_id } => ("cancel", Some(run_id.clone()), None),
            NoteKind::Definitions => ("definitions", None, None),
            NoteKind::Nodes => ("nodes", None, None),
            NoteKind::Resync => ("resync", None, None),
        };
        let mut payload = Payload {
            s: self.instance.to_string(),
            f: self.node_id(),
            k: k.to_owned(),
            r,
            t,
        };
        let text = serde_json::to_string(&payload).unwrap_or_default();
        if text.len() <= MAX_PAYLOAD {
            return text;
        }
        payload.k = "resync".into();
        payload.r = None;
        payload.t = None;
        payload.f = String::new();
        serde_json::to_string(&payload).unwrap_or_default()
    }
}

/// A payload as a note, unless this store sent it (or it is not a note of ours).
fn decode(instance: &str, text: &str) -> Option<Note> {
    let p: Payload = serde_json::from_str(text).ok()?;
    if p.s == instance {
        return None;
    }
    let what = match (p.k.as_str(), p.r, p.t) {
        ("run", Some(run_id), _) => NoteKind::Run { run_id },
        ("task", Some(run_id), Some(task_id)) => NoteKind::Task { run_id, task_id },
        ("logs", Some(run_id), _) => NoteKind::Logs { run_id },
        ("queue", _, _) => NoteKind::Queue,
        ("paused", _, _) => NoteKind::Paused,
        ("cancel", Some(run_id), _) => NoteKind::Cancel { run_id },
        ("definitions", _, _) => NoteKind::Definitions,
        ("nodes", _, _) => NoteKind::Nodes,
        ("resync", _, _) => NoteKind::Resync,
        _ => return None,
    };
    Some(Note { from: p.f, what })
}

/// Sends `notes` from inside the caller's transaction (one round trip for all).
pub(super) async fn send<C: GenericClient + Sync>(
    client: &C,
    sender: &Sender,
    notes: &[NoteKind],
) -> StoreResult<()> {
    if notes.is_empty() {
        return Ok(());
    }
    let payloads: Vec<String> = notes.iter().map(|n| sender.encode(n)).collect();
    let statement = client
        .prepare_cached("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p")
        .await
        .map_err(pg("cannot notify the other nodes"))?;
    client
        .execute(&statement, &[&CHANNEL, &payloads])
        .await
        .map_err(pg("cannot notify the other nodes"))?;
    Ok(())
}

/// The listener's connection, open and listening.
pub(super) struct Listening {
    client: tokio_postgres::Client,
    messages: futures::stream::BoxStream<'static, Result<AsyncMessage, tokio_postgres::Error>>,
}

/// Connects and issues `LISTEN` (driving the connection meanwhile, as the driver
/// delivers a query's answer only while its connection is polled).
pub(super) async fn listen(url: &DatabaseUrl) -> StoreResult<Listening> {
    let context = || format!("cannot listen for notes on {}", url.redacted);
    let (client, mut connection) = url
        .config
        .connect(url.tls.clone())
        .await
        .map_err(|e| pg(context())(e))?;
    let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx)).boxed();
    let statement = format!("LISTEN {CHANNEL}");
    {
        let listen = client.batch_execute(&statement);
        tokio::pin!(listen);
        loop {
            tokio::select! {
                done = &mut listen => {
                    done.map_err(|e| pg(context())(e))?;
                    break;
                }
                message = messages.next() => match message {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(pg(context())(e)),
                    None => {
                        return Err(crate::store::StoreError::PostgresUnavailable {
                            context: context(),
                            reason: "the connection closed".into(),
                        })
                    }
                },
            }
        }
    }
    Ok(Listening { client, messages })
}

/// The listener task: forwards notes until the store is dropped (which aborts it),
/// reconnecting with backoff when the connection is lost.
pub(super) async fn run(
    url: Arc<DatabaseUrl>,
    mut listening: Listening,
    instance: Arc<str>,
    notes: broadcast::Sender<Note>,
) {
    loop {
        while let Some(message) = listening.messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) if n.channel() == CHANNEL => {
                    if let Some(note) = decode(&instance, n.payload()) {
                        // No receiver at the moment is not an error.
                        let _ = notes.send(note);
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the notes connection failed");
                    break;
                }
            }
        }
        drop(listening.client);
        let mut backoff = FIRST_BACKOFF;
        listening = loop {
            tokio::time::sleep(backoff).await;
            match listen(&url).await {
                Ok(back) => break back,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reconnect for notes yet");
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        };
        tracing::info!("the notes connection is back: resynchronising");
        let _ = notes.send(Note {
            from: String::new(),
            what: NoteKind::Resync,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_round_trip_and_own_notes_are_dropped() {
        let sender = Sender {
            instance: Arc::from("me"),
            lease: Arc::new(RwLock::new(Some(Lease {
                node_id: "node-a".into(),
                epoch: 3,
            }))),
        };
        let kinds = [
            NoteKind::Run { run_id: "r".into() },
            NoteKind::Task {
                run_id: "r".into(),
                task_id: "t".into(),
            },
            NoteKind::Logs { run_id: "r".into() },
            NoteKind::Queue,
            NoteKind::Paused,
            NoteKind::Cancel { run_id: "r".into() },
            NoteKind::Definitions,
            NoteKind::Nodes,
            NoteKind::Resync,
        ];
        for what in kinds {
            let text = sender.encode(&what);
            assert!(text.len() < 100, "{text}");
            assert_eq!(decode("me", &text), None, "own note");
            assert_eq!(
                decode("other", &text),
                Some(Note {
                    from: "node-a".into(),
                    what
                })
            );
        }
        let huge = sender.encode(&NoteKind::Run {
            run_id: "x".repeat(10_000),
        });
        assert_eq!(
            decode("other", &huge).map(|n| n.what),
            Some(NoteKind::Resync)
        );
        assert_eq!(decode("other", "not json"), None);
    }
}
