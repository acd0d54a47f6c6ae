//! The `petitd` binary itself: start-up failures (invalid jobs, busy port), `petitd
//! validate`, and `--help`.

use std::process::Command;
use std::time::Duration;

use petit_tests::{bin, jobs_dir, run_to_exit, trigger, Daemon, HELLO_JOB};

const EXIT: Duration = Duration::from_secs(10);

const GOOD_SCHEDULED: &str = r#"
id: nightly
name: Nightly
schedule: "0 0 2 * * *"
tasks:
  - id: work
    type: command
    command: "true"
"#;

/// Line 4: the schedule is not a cron expression.
const BAD_CRON: &str = r#"
id: bad_cron
name: Bad cron
schedule: "every blue moon"
tasks:
  - id: t
    type: command
    command: "true"
"#;

/// Line 9: a dependency on a task that does not exist.
const BAD_DEPENDENCY: &str = r#"
id: bad_dep
name: Bad dependency
tasks:
  - id: first
    type: command
    command: "true"
  - id: second
    depends_on: [nowhere]
    type: command
    command: "true"
"#;

/// Whether `text` reports an error at `file:LINE:` for some line number.
fn has_error_with_line(text: &str, file: &str) -> bool {
    text.match_indices(&format!("{file}:")).any(|(i, m)| {
        text[i + m.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_digit())
    })
}

fn petitd() -> Command {
    let mut command = Command::new(bin("petitd"));
    for var in ["PETIT_JOBS", "PETIT_DB", "PETIT_LISTEN", "PETIT_CONFIG"] {
        command.env_remove(var);
    }
    command
}

#[test]
fn invalid_jobs_stop_start_up_with_every_error() {
    let jobs = jobs_dir(&[
        ("good.yaml", HELLO_JOB),
        ("bad_cron.yaml", BAD_CRON),
        ("bad_dep.yaml", BAD_DEPENDENCY),
    ]);
    let output = run_to_exit(
        petitd()
            .arg("--jobs")
            .arg(jobs.path())
            .arg("--in-memory")
            .args(["--listen", "127.0.0.1:0"]),
        EXIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "petitd started:\n{stderr}");
    for file in ["bad_cron.yaml", "bad_dep.yaml"] {
        assert!(
            has_error_with_line(&stderr, file),
            "no {file}:LINE error in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("good.yaml"), "{stderr}");
}

#[test]
fn busy_port_fails_fast_naming_the_address() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let jobs = jobs_dir(&[("good.yaml", HELLO_JOB)]);
    let output = run_to_exit(
        petitd()
            .arg("--jobs")
            .arg(jobs.path())
            .arg("--in-memory")
            .args(["--listen", &addr]),
        EXIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: cannot listen on {addr}: address already in use"
        )),
        "{stderr}"
    );
}

/// A second daemon on a database in use refuses to start, naming the first one, and
/// leaves the first one's running tasks alone.
#[tokio::test]
async fn a_database_serves_one_daemon() {
    let jobs = jobs_dir(&[("good.yaml", HELLO_JOB)]);
    let first = Daemon::start(jobs.path());
    let output = run_to_exit(
        petitd()
            .arg("--jobs")
            .arg(jobs.path())
            .arg("--db")
            .arg(&first.db)
            .args(["--listen", "127.0.0.1:0"]),
        EXIT,
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let want = format!(
        "error: {} is in use by another petitd (pid {});",
        first.db.display(),
        first.child.id()
    );
    assert!(stderr.contains(&want), "want {want:?} in:\n{stderr}");

    // The first daemon goes on: it answers and runs jobs.
    let channel = first.channel().await;
    let run = trigger(&channel, "hello", &[]).await;
    assert_eq!(run.job_id, "hello");
}

#[test]
fn validate_accepts_a_good_directory() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB), ("nightly.yaml", GOOD_SCHEDULED)]);
    let output = run_to_exit(petitd().arg("validate").arg(jobs.path()), EXIT);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.trim(), "2 jobs OK");
}

#[test]
fn validate_lists_every_error_of_a_bad_directory() {
    let jobs = jobs_dir(&[
        ("hello.yaml", HELLO_JOB),
        ("bad_cron.yaml", BAD_CRON),
        ("bad_dep.yaml", BAD_DEPENDENCY),
    ]);
    let output = run_to_exit(petitd().arg("validate").arg(jobs.path()), EXIT);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{all}");
    for file in ["bad_cron.yaml", "bad_dep.yaml"] {
        assert!(has_error_with_line(&all, file), "no {file}:LINE in:\n{all}");
    }
    assert!(!all.contains("jobs OK"), "{all}");
}

#[test]
fn validate_reports_a_missing_directory() {
    let output = run_to_exit(petitd().args(["validate", "/nonexistent/petit-jobs"]), EXIT);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("/nonexistent/petit-jobs"), "{stderr}");
}

#[test]
fn help_explains_every_flag() {
    let output = run_to_exit(petitd().arg("--help"), EXIT);
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for needle in [
        "--jobs",
        "--db",
        "--in-memory",
        "--listen",
        "--config",
        "--max-jobs",
        "--max-tasks",
        "--log-format",
        "--shutdown-grace",
        "validate",
        "PETIT_JOBS",
        "PETIT_DB",
        "PETIT_LISTEN",
        "PETIT_CONFIG",
        "127.0.0.1:8565",
        "./petit.db",
        "30s",
    ] {
        assert!(
            help.contains(needle),
            "--help does not mention {needle}:\n{help}"
        );
    }
}

#[test]
fn bad_flag_values_are_refused_without_starting() {
    let jobs = jobs_dir(&[("good.yaml", HELLO_JOB)]);
    for bad in [
        ["--shutdown-grace", "soon"],
        ["--max-jobs", "0"],
        ["--log-format", "xml"],
    ] {
        let output = run_to_exit(
            petitd()
                .arg("--jobs")
                .arg(jobs.path())
                .arg("--in-memory")
                .args(["--listen", "127.0.0.1:0"])
                .args(bad),
            EXIT,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{bad:?} accepted");
        assert!(stderr.contains(bad[0]), "{bad:?}: {stderr}");
    }
}
