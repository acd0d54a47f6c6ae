//! The database's file system fills up under a running petitd (a small tmpfs the test
//! mounts, so it needs root): writes are refused with UNAVAILABLE, health says
//! NOT_SERVING and why, reads keep working, the daemon neither panics nor starts runs
//! it could not record, and it recovers by itself once space returns. (A read-only
//! remount cannot be tested so: Linux refuses it while petitd holds the database open
//! for writing; SQLite's READONLY and I/O errors are classed as the full disk is.) Without root the
//! test is skipped loudly (and fails under CI, which runs as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::scheduler_service_client::SchedulerServiceClient;
use petit_proto::v1::*;
use petit_tests::{eventually, get_run, jobs_dir, Daemon, HELLO_JOB};
use tonic::transport::Channel;

const WAIT: Duration = Duration::from_secs(30);

/// A tmpfs of `size` mounted at a new directory; unmounted when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let root = Command::new("id").arg("-u").output().ok()?;
        if String::from_utf8_lossy(&root.stdout).trim() != "0" {
            let message = "SKIPPED: the full-disk test mounts a tmpfs, which needs root";
            if std::env::var_os("CI").is_some() {
                panic!("{message}");
            }
            eprintln!("{message}");
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount a tmpfs");
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the file system refuses more.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).expect("filler");
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        // The last partial block: byte by byte up to the very end.
        while file.write_all(&[0]).is_ok() {}
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn health(channel: &Channel) -> GetHealthResponse {
    SchedulerServiceClient::new(channel.clone())
        .get_health(GetHealthRequest {})
        .await
        .expect("health")
        .into_inner()
}

async fn try_trigger(channel: &Channel) -> Result<Run, tonic::Status> {
    JobServiceClient::new(channel.clone())
        .trigger_job(TriggerJobRequest {
            job_id: "hello".into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().run.expect("run"))
}

#[tokio::test]
async fn a_full_disk_refuses_writes_reports_it_and_recovers_by_itself() {
    let Some(disk) = SmallDisk::mount("8m") else {
        return;
    };
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let data = tempfile::tempdir().expect("tempdir");
    let db = disk.path().join("petit.db");
    let mut daemon = Daemon::start_on(jobs.path(), data, db.clone(), &[]);
    let channel = daemon.channel().await;
    let before = try_trigger(&channel)
        .await
        .expect("a trigger before the disk fills");
    let before = eventually(WAIT, "the first run to succeed", || async {
        let run = get_run(&channel, &before.id).await;
        (run.status() == RunStatus::Succeeded).then_some(run)
    })
    .await;
    assert_eq!(health(&channel).await.status, "SERVING");

    let filler = disk.fill();
    // SQLite may still fit a few writes in pages it already has: trigger until refused.
    let refused = eventually(WAIT, "a write to be refused on the full disk", || async {
        try_trigger(&channel).await.err()
    })
    .await;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    let sick = health(&channel).await;
    assert_eq!(sick.status, "NOT_SERVING");
    assert!(sick.reason.contains("full"), "{sick:?}");
    // Reads still work, and the first run is intact.
    assert_eq!(get_run(&channel, &before.id).await, before);
    assert!(
        daemon.child.try_wait().expect("try_wait").is_none(),
        "petitd died"
    );
    let log = daemon.stderr();
    let reports = log.matches("writes to the database fail").count();
    assert_eq!(
        reports, 1,
        "one report of the failure, not one per write:\n{log}"
    );

    std::fs::remove_file(&filler).expect("free the space");
    let after = eventually(WAIT, "writes to work again", || async {
        try_trigger(&channel).await.ok()
    })
    .await;
    eventually(WAIT, "the run after the outage to succeed", || async {
        (get_run(&channel, &after.id).await.status() == RunStatus::Succeeded).then_some(())
    })
    .await;
    eventually(WAIT, "health to come back", || async {
        (health(&channel).await.status == "SERVING").then_some(())
    })
    .await;
    assert!(daemon
        .stderr()
        .contains("writes to the database work again"));

    // Nothing is left half-written.
    let (_data, db) = daemon.stop();
    let conn = rusqlite::Connection::open(&db).expect("open");
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
    let unfinished: i64 = conn
        .query_row(
            "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')",
            [],
            |row| row.get(0),
        )
        .expect("count");
    assert_eq!(unfinished, 0, "a run was left unfinished");
}

/// The database file deleted under a running petitd: health says so (what petitd writes
/// from then on would be lost when it stops), and says it once in the log.
#[tokio::test]
async fn a_database_file_deleted_under_petitd_is_reported() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    assert_eq!(health(&channel).await.status, "SERVING");
    std::fs::remove_file(&daemon.db).expect("delete the database");
    let sick = eventually(WAIT, "health to notice", || async {
        let h = health(&channel).await;
        (h.status == "NOT_SERVING").then_some(h)
    })
    .await;
    assert!(sick.reason.contains("was deleted"), "{sick:?}");
    // Asked again: still reported, logged once.
    assert_eq!(health(&channel).await.status, "NOT_SERVING");
    eventually(WAIT, "the log line", || async {
        daemon
            .stderr()
            .contains("was deleted while petitd runs")
            .then_some(())
    })
    .await;
    assert_eq!(
        daemon
            .stderr()
            .matches("was deleted while petitd runs")
            .count(),
        1
    );
}
