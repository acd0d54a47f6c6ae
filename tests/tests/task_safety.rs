//! What tasks receive, end to end on the real `petitd`: hostile params substituted into
//! `sh -c`, `bash -c` and inline Python scripts are printed, never run; params and
//! upstream outputs are exported as `PETIT_PARAM_*`/`PETIT_OUTPUT_*`; petitd's secrets
//! never reach a task's environment, and `environment_policy` narrows the rest; every
//! file petitd makes is private under umask 022 while tasks keep umask 022.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use petit_proto::v1::run_service_client::RunServiceClient;
use petit_proto::v1::{GetTaskLogsRequest, RunStatus};
use petit_tests::{bin, eventually, get_run, jobs_dir, trigger, Daemon};

/// Longest a run of these jobs may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything that would run a command if it were code: `$(...)`, backticks, `;`,
/// quotes of both kinds, a backslash. Each would create `PWNED` in the working directory.
const HOSTILE: &str =
    r#"$(touch PWNED) `touch PWNED` ; touch PWNED ' ; touch PWNED ; ' " ; touch PWNED ; " \ end"#;

/// A job whose tasks print `${params.x}` from shell and Python scripts, in `dir`.
fn quoting_job(dir: &Path) -> String {
    let dir = dir.display();
    format!(
        r#"
id: quoting
config:
  x: harmless
  flag: "-e"
tasks:
  - id: sh_flag
    command: sh
    args: ["${{config.flag}}", "echo ${{params.x}}"]
    working_dir: {dir}
  - id: sh_plain
    command: sh
    args: ["-c", "echo ${{params.x}}"]
    working_dir: {dir}
  - id: sh_double
    command: sh
    args: ["-ec", "echo \"${{params.x}}\""]
    working_dir: {dir}
  - id: bash_single
    command: /bin/bash
    args: ["-euo", "pipefail", "-c", "printf '%s\n' '${{params.x}}'"]
    working_dir: {dir}
  - id: py_inline
    type: python
    inline: true
    script: |
      # it's ${{params.x}}
      print(${{params.x}})
      print("${{params.x}}")
      print(f'{{1}} ${{params.x}}'[2:])
    working_dir: {dir}
  - id: python_c
    command: python3
    args: ["-c", "print('${{params.x}}')"]
    working_dir: {dir}
"#
    )
}

#[tokio::test]
async fn hostile_params_are_printed_not_run() {
    let work = tempfile::tempdir().unwrap();
    let jobs = jobs_dir(&[("quoting.yaml", &quoting_job(work.path()))]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    // `flag` set to `-c` by the trigger makes the next argument a script: seen too.
    let run = trigger(&channel, "quoting", &[("x", HOSTILE), ("flag", "-c")]).await;
    let run = wait_for_end(&channel, &run.id).await;
    assert_eq!(
        run.status(),
        RunStatus::Succeeded,
        "{run:?}\n{}",
        daemon.stderr()
    );
    for task in [
        "sh_flag",
        "sh_plain",
        "sh_double",
        "bash_single",
        "python_c",
    ] {
        assert_eq!(logs(&channel, &run.id, task).await, [HOSTILE], "{task}");
    }
    assert_eq!(
        logs(&channel, &run.id, "py_inline").await,
        [HOSTILE, HOSTILE, HOSTILE]
    );
    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "a value ran as code: {left:?}");

    // `petitd validate` notes each placeholder written inside a script, and passes.
    let note = run_validate(jobs.path());
    assert!(note.status.success());
    let stderr = String::from_utf8_lossy(&note.stderr);
    assert!(
        stderr.contains(
            "quoting.yaml:13: note: ${params.x} inside a shell script is substituted as a \
             quoted literal"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "note: ${params.x} inside a Python script is substituted as a quoted literal"
        ),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_placeholder_the_lexer_cannot_vouch_for_fails_the_task() {
    let work = tempfile::tempdir().unwrap();
    let job = format!(
        r#"
id: backticks
config:
  x: harmless
tasks:
  - id: old_style
    command: sh
    args: ["-c", "echo `echo ${{params.x}}`"]
    working_dir: {}
"#,
        work.path().display()
    );
    let jobs = jobs_dir(&[("backticks.yaml", &job)]);
    let validated = run_validate(jobs.path());
    assert!(validated.status.success(), "existing files still validate");
    let stderr = String::from_utf8_lossy(&validated.stderr);
    assert!(stderr.contains("stands inside backticks"), "{stderr}");

    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "backticks", &[("x", HOSTILE)]).await;
    let run = wait_for_end(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Failed);
    assert!(run.error.contains("inside backticks"), "{}", run.error);
    assert!(std::fs::read_dir(work.path()).unwrap().next().is_none());
}

#[tokio::test]
async fn params_and_upstream_outputs_are_exported() {
    const JOB: &str = r#"
id: exports
config:
  batch-size: "10"
tasks:
  - id: extract
    command: sh
    args: ["-c", "echo 'rows=$(not run)' >> \"$PETIT_OUTPUT\""]
  - id: load
    command: sh
    args: ["-c", "echo \"$PETIT_PARAM_BATCH_SIZE|$PETIT_OUTPUT_EXTRACT_ROWS\""]
    depends_on: [extract]
"#;
    let jobs = jobs_dir(&[("exports.yaml", JOB)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let run = trigger(&channel, "exports", &[("batch-size", "25")]).await;
    let run = wait_for_end(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    assert_eq!(logs(&channel, &run.id, "load").await, ["25|$(not run)"]);
}

/// petitd's environment in the environment tests: Petit's secrets, a denied cloud
/// credential, and ordinary variables.
const DAEMON_ENV: &[(&str, &str)] = &[
    ("PETIT_TOKEN", "secret-client-token"),
    ("PETIT_DB", "postgres://petit:secret-db-password@db/petit"),
    ("PETIT_WEBHOOK_SECRET", "secret-webhook"),
    ("PGPASSWORD", "secret-pg"),
    ("AWS_SECRET_ACCESS_KEY", "secret-aws"),
    ("KEEP_ME", "kept"),
];

#[tokio::test]
async fn secrets_never_reach_a_task_and_policies_narrow_the_rest() {
    const ALL: &str = r#"
id: all
tasks:
  - id: env
    command: env
"#;
    const NONE: &str = r#"
id: none
environment_policy:
  inherit: none
tasks:
  - id: env
    command: /usr/bin/env
    environment:
      OWN: mine
"#;
    const NAMES: &str = r#"
id: names
environment_policy:
  inherit: [PATH, "KEEP_*", "AWS_*"]
  deny: [PATH]
tasks:
  - id: env
    command: /usr/bin/env
"#;
    let jobs = jobs_dir(&[
        ("all.yaml", ALL),
        ("none.yaml", NONE),
        ("names.yaml", NAMES),
    ]);
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(config.path(), "environment_policy:\n  deny: [\"AWS_*\"]\n").unwrap();
    let config_arg = config.path().display().to_string();
    let daemon = start_daemon(jobs.path(), None, DAEMON_ENV, &["--config", &config_arg]);
    let channel = daemon.channel().await;
    let mut envs = BTreeMap::new();
    for job in ["all", "none", "names"] {
        let run = trigger(&channel, job, &[]).await;
        let run = wait_for_end(&channel, &run.id).await;
        assert_eq!(run.status(), RunStatus::Succeeded, "{job}: {run:?}");
        let vars: BTreeMap<String, String> = logs(&channel, &run.id, "env")
            .await
            .into_iter()
            .filter_map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        for (name, value) in &vars {
            assert!(
                !value.contains("secret"),
                "{job}: {name}={value} reached the task"
            );
        }
        envs.insert(job, vars);
    }
    let names = |job: &str| -> Vec<&str> {
        envs[job]
            .keys()
            .map(String::as_str)
            .filter(|k| !k.starts_with("PETIT_"))
            .collect()
    };
    let all = &envs["all"];
    assert!(
        all.contains_key("PATH") && all.contains_key("HOME"),
        "{all:?}"
    );
    assert_eq!(all.get("KEEP_ME").map(String::as_str), Some("kept"));
    assert!(!all.contains_key("AWS_SECRET_ACCESS_KEY") && !all.contains_key("PETIT_TOKEN"));
    assert!(all.contains_key("PETIT_RUN_ID") && all.contains_key("PETIT_OUTPUT"));
    assert_eq!(names("none"), ["OWN"]);
    assert!(envs["none"].contains_key("PETIT_TASK_ID"));
    // The job's list, less its own deny and petit.yaml's.
    assert_eq!(names("names"), ["KEEP_ME"]);
}

#[tokio::test]
async fn files_are_private_under_umask_022_and_tasks_keep_it() {
    const JOB: &str = r#"
id: files
tasks:
  - id: write
    command: sh
    args: ["-c", "stat -c %a \"$PETIT_OUTPUT\"; echo made=yes >> \"$PETIT_OUTPUT\"; touch \"$WORK/made\"; mkdir \"$WORK/dir\"; umask"]
    environment:
      WORK: ${config.work}
config:
  work: "."
"#;
    let work = tempfile::tempdir().unwrap();
    let jobs = jobs_dir(&[("files.yaml", JOB)]);
    let data = tempfile::tempdir().unwrap();
    // A directory petitd makes for its database.
    let db = data.path().join("state").join("petit.db");
    let daemon = start_daemon(jobs.path(), Some(&db), &[], &[]);
    let channel = daemon.channel().await;
    let work_dir = work.path().display().to_string();
    let run = trigger(&channel, "files", &[("work", &work_dir)]).await;
    let run = wait_for_end(&channel, &run.id).await;
    assert_eq!(run.status(), RunStatus::Succeeded, "{run:?}");
    // The output file was petitd's (0600); the task's own files follow umask 022.
    assert_eq!(logs(&channel, &run.id, "write").await, ["600", "0022"]);
    assert_eq!(mode(&work.path().join("made")), 0o644);
    assert_eq!(mode(&work.path().join("dir")), 0o755);

    let found = modes_under(&data.path().join("state"));
    let names: Vec<String> = found.iter().map(|(p, _)| file_name(p)).collect();
    for want in [
        "state",
        "petit.db",
        "petit.db-wal",
        "petit.db.lock",
        "petit.db.pids",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    for (path, mode) in &found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{} is {mode:o}", path.display());
    }
}

#[tokio::test]
async fn an_older_database_readable_by_others_is_tightened() {
    let jobs = jobs_dir(&[("hello.yaml", petit_tests::HELLO_JOB)]);
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join("old.db");
    // An empty file is an empty SQLite database.
    std::fs::write(&db, "").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let daemon = start_daemon(jobs.path(), Some(&db), &[], &[]);
    assert_eq!(mode(&db), 0o600);
    let log = daemon.stderr();
    assert!(
        log.contains("was readable by others (0644): now 0600"),
        "{log}"
    );
}

/// Starts petitd under umask 022 (set by the shell that execs it) with `env` added to
/// this process's environment, on a temp database unless `db` is given.
fn start_daemon(jobs: &Path, db: Option<&Path>, env: &[(&str, &str)], extra: &[&str]) -> Daemon {
    let data = tempfile::tempdir().unwrap();
    let db = db.map_or_else(|| data.path().join("petit.db"), Path::to_path_buf);
    let stderr_path = data.path().join("petitd.log");
    let stderr = std::fs::File::create(&stderr_path).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg("umask 022; exec \"$0\" \"$@\"")
        .arg(bin("petitd"))
        .arg("--jobs")
        .arg(jobs)
        .arg("--db")
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env_remove("PETIT_JOBS")
        .env_remove("PETIT_LISTEN")
        .env_remove("PETIT_CONFIG")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn petitd");
    let mut daemon = Daemon {
        child,
        addr: "127.0.0.1:0".parse().unwrap(),
        db,
        jobs: jobs.to_path_buf(),
        data,
        stderr_path,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = daemon.stderr();
        let addr = log
            .lines()
            .find(|l| l.contains("listening (gRPC"))
            .and_then(|l| {
                l.split_once("addr=")?
                    .1
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
        if let Some(addr) = addr {
            daemon.addr = addr;
            return daemon;
        }
        if let Ok(Some(status)) = daemon.child.try_wait() {
            panic!("petitd exited early ({status}):\n{log}");
        }
        assert!(Instant::now() < deadline, "petitd did not start:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run_validate(jobs: &Path) -> std::process::Output {
    petit_tests::run_to_exit(
        Command::new(bin("petitd")).arg("validate").arg(jobs),
        Duration::from_secs(20),
    )
}

async fn wait_for_end(channel: &tonic::transport::Channel, run_id: &str) -> petit_proto::v1::Run {
    eventually(RUN_TIMEOUT, "the run to end", || async {
        let run = get_run(channel, run_id).await;
        matches!(
            run.status(),
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
        .then_some(run)
    })
    .await
}

/// The stored output lines of one task, through the API (one page: these tasks print
/// a few lines).
// The request is growing paging fields; their defaults are what this wants.
#[allow(clippy::needless_update)]
async fn logs(channel: &tonic::transport::Channel, run_id: &str, task_id: &str) -> Vec<String> {
    RunServiceClient::new(channel.clone())
        .get_task_logs(GetTaskLogsRequest {
            run_id: run_id.into(),
            task_id: task_id.into(),
            ..Default::default()
        })
        .await
        .expect("logs")
        .into_inner()
        .lines
        .into_iter()
        .map(|l| l.line)
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

fn file_name(path: &Path) -> String {
    path.file_name().unwrap().to_string_lossy().into_owned()
}

/// `dir` and everything under it, with modes.
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = vec![(dir.to_path_buf(), mode(dir))];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(modes_under(&path));
        } else {
            found.push((path.clone(), mode(&path)));
        }
    }
    found
}

/// Outputs travel with every task run, so they are bounded: a task that writes more
/// than 64 KiB (or bytes that are not text) to `$PETIT_OUTPUT` fails, saying why, and
/// what it wrote is not served.
#[tokio::test]
async fn outputs_are_bounded_and_text() {
    let jobs = jobs_dir(&[
        (
            "big.yaml",
            "id: big\ntasks:\n  - id: dump\n    command: sh\n    args: [\"-c\", \"head -c 70000 /dev/zero | tr '\\\\0' x | sed 's/^/k=/' > $PETIT_OUTPUT\"]\n",
        ),
        (
            "binary.yaml",
            "id: binary\ntasks:\n  - id: dump\n    command: sh\n    args: [\"-c\", \"printf 'k=\\\\377\\\\n' > $PETIT_OUTPUT\"]\n",
        ),
        (
            "small.yaml",
            "id: small\ntasks:\n  - id: put\n    command: sh\n    args: [\"-c\", \"echo rows=42 >> $PETIT_OUTPUT\"]\n",
        ),
    ]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;
    let task_error = |job: &'static str| {
        let channel = channel.clone();
        async move {
            let run = trigger(&channel, job, &[]).await;
            let run = wait_for_end(&channel, &run.id).await;
            let tasks = RunServiceClient::new(channel.clone())
                .list_task_runs(petit_proto::v1::ListTaskRunsRequest { run_id: run.id })
                .await
                .unwrap()
                .into_inner()
                .task_runs;
            (run.status, tasks[0].error.clone(), tasks[0].outputs.clone())
        }
    };
    let (status, error, outputs) = task_error("big").await;
    assert_eq!(status, RunStatus::Failed as i32);
    assert!(error.contains("more than 64 KiB"), "{error}");
    assert!(outputs.is_empty());
    let (status, error, _) = task_error("binary").await;
    assert_eq!(status, RunStatus::Failed as i32);
    assert!(error.contains("not UTF-8"), "{error}");
    let (status, _, outputs) = task_error("small").await;
    assert_eq!(status, RunStatus::Succeeded as i32);
    assert_eq!(outputs.get("rows").map(String::as_str), Some("42"));
}
