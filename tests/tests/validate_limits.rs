//! The limits on job files, through the real `petitd validate` and petitd's start-up:
//! a file nested too deep or too big is refused with its `file:line`, every error of
//! the directory at once; a 20,000-task chain validates and a 20,000-task cycle is
//! reported. (How long they take is measured by `make bench`, not asserted here.)

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use petit_tests::{bin, jobs_dir, HELLO_JOB};

/// Long enough for a debug build on a busy machine; the point is only not to hang.
const EXIT: Duration = Duration::from_secs(60);

fn petitd() -> Command {
    let mut command = Command::new(bin("petitd"));
    for var in ["PETIT_JOBS", "PETIT_DB", "PETIT_LISTEN", "PETIT_CONFIG"] {
        command.env_remove(var);
    }
    command
}

/// Runs `command` to its exit, reading its output while it runs (a long error list
/// must not fill the pipe and stall it), within `EXIT`.
fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn petitd");
    let pid = child.id();
    let (done, output) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match output.recv_timeout(EXIT) {
        Ok(output) => output.expect("wait for petitd"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            panic!("{command:?} did not exit within {EXIT:?}");
        }
    }
}

fn validate(jobs: &Path, config: Option<&Path>) -> Output {
    let mut command = petitd();
    command.arg("validate").arg(jobs);
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    run(command)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A job whose task's first argument opens `depth` lists, on line 5.
fn deep_job(depth: usize) -> String {
    format!(
        "id: deep\ntasks:\n  - id: t\n    command: echo\n    args: {}\n",
        "[".repeat(depth)
    )
}

/// A valid job `big` (42 bytes, 3 lines) padded with comment lines of 100 bytes to
/// `size` bytes or more: the 1 MiB limit falls on line 3 + 10,485 + 1 = 10,489
/// (1,048,576 - 42 = 10,485 lines of 100 bytes and 34 more).
fn big_job(size: usize) -> String {
    let mut text = String::from("id: big\ntasks:\n  - {id: t, command: echo}\n");
    let comment = format!("#{}\n", "x".repeat(98));
    while text.len() < size {
        text.push_str(&comment);
    }
    text
}

/// `tasks` tasks, each depending on the one before; with `cycle`, the first on the
/// last. Written compactly, so that 20,000 of them stay under the 1 MiB limit.
fn chain_job(tasks: usize, cycle: bool) -> String {
    let mut text = String::from("id: chain\ntasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("- id: t{i}\n  command: echo\n"));
        if i > 0 || cycle {
            let before = (i + tasks - 1) % tasks;
            text.push_str(&format!("  depends_on: [t{before}]\n"));
        }
    }
    text
}

#[test]
fn a_deeply_nested_file_is_refused_at_its_line() {
    let jobs = jobs_dir(&[("deep.yaml", &deep_job(100_000)), ("hello.yaml", HELLO_JOB)]);
    let output = validate(jobs.path(), None);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:5: lists and mappings are nested more than 64 deep here; \
             job_files.max_depth in petit.yaml raises it",
            jobs.path().join("deep.yaml").display()
        )
    );
    assert!(text(&output.stdout).is_empty());
}

#[test]
fn a_file_over_the_size_limit_is_refused_at_the_line_the_limit_falls_on() {
    let big = big_job(2 << 20);
    // A job that depends on the big one: its id still counts, so no "unknown job".
    let downstream = "id: after_big\ndepends_on: [big]\ntasks:\n  - {id: t, command: echo}\n";
    let jobs = jobs_dir(&[("big.yaml", &big), ("after.yaml", downstream)]);
    let output = validate(jobs.path(), None);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:10489: the file is larger than the limit of 1 MiB (it has {} bytes; the \
             limit falls on this line); job_files.max_bytes in petit.yaml raises it",
            jobs.path().join("big.yaml").display(),
            big.len()
        )
    );

    // petit.yaml raises the limit, and the same file is a job like any other.
    let config = tempfile::tempdir().expect("tempdir");
    let petit_yaml = config.path().join("petit.yaml");
    std::fs::write(&petit_yaml, "job_files:\n  max_bytes: 4MiB\n").expect("write");
    let output = validate(jobs.path(), Some(&petit_yaml));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "2 jobs OK");
}

#[test]
fn a_chain_of_20000_tasks_validates() {
    let chain = chain_job(20_000, false);
    assert!(chain.len() < 1 << 20, "{} bytes", chain.len());
    let jobs = jobs_dir(&[("chain.yaml", &chain)]);
    let output = validate(jobs.path(), None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "1 jobs OK");
}

#[test]
fn a_cycle_through_20000_tasks_is_reported() {
    let jobs = jobs_dir(&[("cycle.yaml", &chain_job(20_000, true))]);
    let output = validate(jobs.path(), None);
    let stderr = text(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        &stderr[..stderr.len().min(500)]
    );
    // The cycle, from t0 round to t0 again, at t0's `depends_on`.
    let ids: Vec<String> = (0..20_000).chain([0]).map(|i| format!("t{i}")).collect();
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:5: task dependency cycle: {} (each task waits for the one before it)",
            jobs.path().join("cycle.yaml").display(),
            ids.join(" -> ")
        )
    );
}

/// 10,000 chained tasks, each reading the outputs of the task two before it: all of
/// them upstream, but one, which reads a task downstream of it.
#[test]
fn output_placeholders_along_a_10000_task_chain() {
    let mut job = String::from("id: outputs\ntasks:\n");
    for i in 0..10_000 {
        job.push_str(&format!("- id: t{i}\n  command: echo\n"));
        if i > 0 {
            job.push_str(&format!("  depends_on: [t{}]\n", i - 1));
        }
        let from = match i {
            5_000 => 9_000,
            i if i >= 2 => i - 2,
            _ => continue,
        };
        job.push_str(&format!("  args: [\"${{tasks.t{from}.outputs.x}}\"]\n"));
    }
    let line = 1 + job
        .lines()
        .position(|l| l.contains("${tasks.t9000.outputs.x}"))
        .expect("the bad reference");
    let jobs = jobs_dir(&[("outputs.yaml", &job)]);
    let output = validate(jobs.path(), None);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}:{line}: task 't5000': '${{tasks.t9000.outputs.x}}': task 't9000' is not \
             upstream of 't5000', so its outputs may not exist yet (add it to depends_on)",
            jobs.path().join("outputs.yaml").display()
        )
    );
}

/// Start-up runs the same checks: the same errors, and petitd does not start.
#[test]
fn start_up_refuses_the_same_files_with_the_same_errors() {
    let jobs = jobs_dir(&[
        ("big.yaml", &big_job(2 << 20)),
        ("deep.yaml", &deep_job(100_000)),
        ("hello.yaml", HELLO_JOB),
    ]);
    let validated = text(&validate(jobs.path(), None).stderr);
    let errors: Vec<&str> = validated.lines().collect();
    assert_eq!(errors.len(), 2, "{validated}");
    assert!(
        errors[0].contains("big.yaml:10489: the file is larger"),
        "{validated}"
    );
    assert!(
        errors[1].contains("deep.yaml:5: lists and mappings"),
        "{validated}"
    );

    let data = tempfile::tempdir().expect("tempdir");
    let mut command = petitd();
    command
        .arg("--jobs")
        .arg(jobs.path())
        .arg("--db")
        .arg(data.path().join("petit.db"))
        .args(["--listen", "127.0.0.1:0"]);
    let output = run(command);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for error in errors {
        assert!(
            stderr.lines().any(|l| l == error),
            "{error} not in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("listening"), "{stderr}");
}
