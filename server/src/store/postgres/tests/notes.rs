//! Notes between nodes: what each write sends, from whom, own notes dropped, and a
//! lost notes connection coming back with a Resync.

use super::{at, node, note_where, run, stores};
use crate::core::{LogStream, TaskStatus};
use crate::store::{ClusterStore, LogLine, Note, NoteKind, Store, StoreResult, TaskRun};

/// A write on one node is a note on the other, sent by the writer's node id; a
/// store's own notes are dropped; a lost notes connection comes back with a Resync.
#[tokio::test]
async fn notes_reach_the_other_nodes() -> StoreResult<()> {
    let Some(stores) = stores("notes", 2).await else {
        return Ok(());
    };
    let (a, b) = (&stores[0], &stores[1]);
    a.join(&node("a")).await?;
    b.join(&node("b")).await?;
    let mut a_notes = a.notes();
    let mut b_notes = b.notes();
    // The joins' notes may still be on their way: each check below skips them.
    let not_join = |n: &Note| n.what != NoteKind::Nodes;

    a.create_run(run("r1", "j", 1), vec![TaskRun::pending("r1", "t")])
        .await?;
    let from_a = |what: NoteKind| Note {
        from: "a".into(),
        what,
    };
    assert_eq!(
        note_where(&mut b_notes, not_join).await,
        from_a(NoteKind::Run {
            run_id: "r1".into()
        })
    );
    assert_eq!(
        note_where(&mut b_notes, not_join).await,
        from_a(NoteKind::Queue)
    );
    a.claim_run("r1", at(2)).await?;
    a.update_task_run(TaskRun {
        status: TaskStatus::Running,
        ..TaskRun::pending("r1", "t")
    })
    .await?;
    a.append_logs(vec![LogLine {
        run_id: "r1".into(),
        seq: 1,
        task_id: "t".into(),
        attempt: 1,
        stream: LogStream::Stdout,
        line: "hello".into(),
        time: at(3),
    }])
    .await?;
    for what in [
        NoteKind::Run {
            run_id: "r1".into(),
        },
        NoteKind::Task {
            run_id: "r1".into(),
            task_id: "t".into(),
        },
        NoteKind::Logs {
            run_id: "r1".into(),
        },
    ] {
        assert_eq!(note_where(&mut b_notes, not_join).await, from_a(what));
    }
    // a's own notes were dropped: the first note a hears is b's, sent after them all.
    b.set_job_paused("j", true).await?;
    assert_eq!(
        note_where(&mut a_notes, not_join).await,
        Note {
            from: "b".into(),
            what: NoteKind::Paused
        }
    );

    // Cut b's notes connection (its last statement was LISTEN): b reconnects and says
    // that notes may have been lost, then hears notes again.
    let cut = a
        .sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'
               AND pid <> pg_backend_pid()",
        )
        .await?;
    assert_eq!(cut.len(), 2, "both stores' listeners");
    note_where(&mut b_notes, |n| n.what == NoteKind::Resync).await;
    a.set_scheduler_paused(true).await?;
    assert_eq!(
        note_where(&mut b_notes, |n| n.what != NoteKind::Resync).await,
        from_a(NoteKind::Paused)
    );
    Ok(())
}
