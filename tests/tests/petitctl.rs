//! petitctl end to end: the real `petitctl` binary against the real `petitd`. Checks
//! each command's output (tables for people, proto3 JSON for scripts) and exit codes:
//! 0 success, 1 failed operation or run, 3 unreachable server.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use petit_tests::{bin, jobs_dir, refusing_addr, Daemon, SLOW_JOB};
use serde_json::Value;

/// Longest any petitctl call below may take (runs of these jobs last milliseconds).
const LIMIT: Duration = Duration::from_secs(15);

const HELLO: &str = r#"
id: hello
name: Hello
schedule: "0 0 2 * * *"
config:
  greeting: hi
tasks:
  - id: greet
    command: echo
    args: ["${config.greeting} from petit"]
  - id: shout
    command: sh
    args: ["-c", "echo loud >&2"]
    depends_on: [greet]
"#;

const FAILING: &str = r#"
id: failing
tasks:
  - id: boom
    command: sh
    args: ["-c", "echo about to fail; exit 3"]
"#;

/// More output than a pipe holds, so that a reader that stops early breaks the pipe.
const CHATTY: &str = r#"
id: chatty
tasks:
  - id: count
    command: seq
    args: ["1", "15000"]
"#;

fn daemon() -> (Daemon, tempfile::TempDir) {
    let jobs = jobs_dir(&[
        ("hello.yaml", HELLO),
        ("failing.yaml", FAILING),
        ("slow.yaml", SLOW_JOB),
        ("chatty.yaml", CHATTY),
    ]);
    (Daemon::start(jobs.path()), jobs)
}

/// A petitctl command aimed at `server`, with a clean environment for its output.
fn petitctl(server: &str, args: &[&str]) -> Command {
    let mut command = Command::new(bin("petitctl"));
    command
        .arg("--server")
        .arg(server)
        .args(args)
        .env_remove("PETIT_SERVER")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs petitctl to its end (reading its output while it runs, so a large output
/// cannot block it), and kills it if it outlives `LIMIT`.
fn run(server: &str, args: &[&str]) -> Output {
    run_command(petitctl(server, args), args)
}

fn run_command(mut command: Command, args: &[&str]) -> Output {
    let mut child = command.spawn().expect("spawn petitctl");
    let stdout = drain(child.stdout.take().expect("stdout"));
    let stderr = drain(child.stderr.take().expect("stderr"));
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("petitctl {args:?} still running after {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs petitctl and asserts it exited with `code`.
fn expect(server: &str, args: &[&str], code: i32) -> Output {
    let output = run(server, args);
    assert_eq!(
        output.status.code(),
        Some(code),
        "petitctl {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Runs petitctl with `-o json`, expects success and one JSON document.
fn json(server: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let output = expect(server, &args, 0);
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("petitctl {args:?}: not JSON ({e}):\n{}", stdout(&output)))
}

/// The lines a running petitctl prints, as they come.
struct Lines {
    child: Child,
    rx: mpsc::Receiver<String>,
}

impl Lines {
    fn spawn(server: &str, args: &[&str]) -> Lines {
        let mut child = petitctl(server, args).spawn().expect("spawn petitctl");
        let out = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines { child, rx }
    }

    /// The next line, waiting at most `LIMIT`.
    fn next(&mut self, what: &str) -> String {
        self.rx
            .recv_timeout(LIMIT)
            .unwrap_or_else(|e| panic!("no line while waiting for {what}: {e}"))
    }

    /// Lines until one matches `pred` (returned), panicking after `LIMIT`.
    fn until(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(_) => continue,
                Err(e) => panic!("no line with {what}: {e}"),
            }
        }
    }

    /// Waits for petitctl to exit by itself, returning its exit code and stderr.
    fn wait(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let mut err = String::new();
                if let Some(mut pipe) = self.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut err);
                }
                return (status.code(), err);
            }
            assert!(Instant::now() < deadline, "petitctl did not exit");
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Triggers `job` and waits for its end; returns the run id.
fn run_to_end(server: &str, job: &str, code: i32) -> String {
    let output = expect(server, &["trigger", job, "--wait"], code);
    let id = stdout(&output).trim().to_string();
    assert!(
        !id.is_empty() && !id.contains(char::is_whitespace),
        "{id:?}"
    );
    id
}

fn find<'a>(items: &'a Value, key: &str, value: &str) -> &'a Value {
    items
        .as_array()
        .and_then(|a| a.iter().find(|item| item[key] == value))
        .unwrap_or_else(|| panic!("no item with {key} = {value} in {items}"))
}

#[test]
fn jobs_and_job_as_tables_and_json() {
    let (d, _jobs) = daemon();
    let server = d.url();

    let table = stdout(&expect(&server, &["jobs"], 0));
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "NAME", "SCHEDULE", "NEXT", "FIRE", "LAST", "RUN", "ENABLED"]
    );
    let hello = table
        .lines()
        .find(|l| l.starts_with("hello "))
        .expect("hello row");
    assert!(
        hello.contains("0 0 2 * * *") && hello.ends_with("yes"),
        "{hello}"
    );
    let slow = table
        .lines()
        .find(|l| l.starts_with("slow "))
        .expect("slow row");
    assert!(slow.contains("manual"), "{slow}");

    let doc = json(&server, &["jobs"]);
    let hello = find(&doc["jobs"], "id", "hello");
    assert_eq!(hello["name"], "Hello");
    assert_eq!(hello["enabled"], true);
    assert_eq!(hello["maxConcurrency"], 1);
    assert_eq!(hello["schedule"]["expression"], "0 0 2 * * *");
    let fires = hello["schedule"]["nextFireTimes"]
        .as_array()
        .expect("nextFireTimes");
    assert_eq!(fires.len(), 5, "{fires:?}");
    assert!(fires
        .iter()
        .all(|t| t.as_str().is_some_and(|t| t.ends_with('Z'))));
    assert_eq!(
        find(&hello["tasks"], "id", "shout")["dependsOn"][0],
        "greet"
    );

    let show = stdout(&expect(&server, &["job", "hello"], 0));
    for want in [
        "Job:",
        "Schedule:         0 0 2 * * *",
        "Config:           greeting=hi",
        "Tasks:",
        "  greet",
        "  └─ shout",
        "Next fires:",
        "Recent runs:",
    ] {
        assert!(show.contains(want), "{want:?} not in:\n{show}");
    }
    let doc = json(&server, &["job", "hello"]);
    assert_eq!(doc["job"]["config"]["greeting"], "hi");
}

const PARIS: &str = r#"
id: paris
schedule: {cron: "0 0 2 * * *", timezone: Europe/Paris}
tasks:
  - id: greet
    command: echo
    args: ["bonjour"]
"#;

/// petitctl in the zone `TZ` names, expecting success; its stdout.
fn in_zone(server: &str, tz: &str, args: &[&str]) -> String {
    let mut command = petitctl(server, args);
    command.env("TZ", tz);
    let output = run_command(command, args);
    assert_eq!(
        output.status.code(),
        Some(0),
        "TZ={tz} petitctl {args:?}\nstdout:\n{}\nstderr:\n{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

/// Next fire times in the job's zone with its abbreviation by default, in local time
/// with `--local`, in UTC with `--utc`; run times in local time or UTC, named too.
/// (Tokyo as the local zone: no DST, nine hours east, so every 02:00 in Paris is 09:00
/// or 10:00 there on the same date.)
#[test]
fn times_name_their_zone() {
    let jobs = jobs_dir(&[("paris.yaml", PARIS)]);
    let d = Daemon::start(jobs.path());
    let server = d.url();

    let doc = json(&server, &["job", "paris"]);
    assert_eq!(doc["job"]["schedule"]["timezone"], "Europe/Paris");
    // A fire as its UTC date and hour: "2026-12-02T01:00:00Z" is 01:00 UTC in winter
    // (02:00 CET), 00:00 in summer (02:00 CEST).
    type Fire = (String, u32);
    let fires: Vec<Fire> = doc["job"]["schedule"]["nextFireTimes"]
        .as_array()
        .expect("nextFireTimes")
        .iter()
        .map(|t| {
            let t = t.as_str().expect("a timestamp");
            assert!(t.ends_with(":00:00Z"), "{t}");
            (t[..10].to_string(), t[11..13].parse().expect("hour"))
        })
        .collect();
    assert_eq!(fires.len(), 5, "{fires:?}");
    // How each choice of zone shows a fire.
    let shown = |options: &[&str], (date, hour): &Fire| match options {
        ["--local"] => format!("{date} {:02}:00 JST", hour + 9),
        ["--utc"] => format!("{date} {hour:02}:00 UTC"),
        _ => format!("{date} 02:00 {}", if *hour == 1 { "CET" } else { "CEST" }),
    };
    for options in [&[][..], &["--local"], &["--utc"]] {
        let mut args = vec!["jobs"];
        args.extend_from_slice(options);
        let table = in_zone(&server, "Asia/Tokyo", &args);
        let row = table
            .lines()
            .find(|l| l.starts_with("paris "))
            .expect("paris row");
        assert!(row.contains("0 0 2 * * * (Europe/Paris)"), "{row}");
        assert!(
            row.contains(&shown(options, &fires[0])),
            "{options:?}: {row}"
        );

        let mut args = vec!["job", "paris"];
        args.extend_from_slice(options);
        let show = in_zone(&server, "Asia/Tokyo", &args);
        let listed: Vec<&str> = show
            .lines()
            .skip_while(|l| *l != "Next fires:")
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect();
        let want: Vec<String> = fires
            .iter()
            .map(|f| format!("  {}", shown(options, f)))
            .collect();
        assert_eq!(listed, want, "{options:?}:\n{show}");
    }

    // Run times: local (Tokyo) unless --utc, always named.
    let id = run_to_end(&server, "paris", 0);
    let run_lines = |show: &str| -> Vec<String> {
        show.lines()
            .filter(|l| {
                ["Created:", "Started:", "Ended:"]
                    .iter()
                    .any(|f| l.starts_with(f))
            })
            .map(str::to_string)
            .collect()
    };
    for (options, abbreviation) in [
        (&[][..], " JST"),
        (&["--local"], " JST"),
        (&["--utc"], " UTC"),
    ] {
        let mut args = vec!["run", id.as_str()];
        args.extend_from_slice(options);
        let lines = run_lines(&in_zone(&server, "Asia/Tokyo", &args));
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.ends_with(abbreviation)),
            "{options:?}: {lines:?}"
        );
        let mut args = vec!["runs", "paris"];
        args.extend_from_slice(options);
        let runs = in_zone(&server, "Asia/Tokyo", &args);
        let row = runs
            .lines()
            .find(|l| l.starts_with(&id))
            .expect("the run's row");
        assert!(row.contains(abbreviation), "{options:?}: {row}");
    }
    // The JSON is the contract's, whatever the zone options: instants in UTC.
    let doc = json(&server, &["job", "paris", "--local"]);
    assert!(doc["job"]["schedule"]["nextFireTimes"][0]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
}

#[test]
fn trigger_wait_and_run_views() {
    let (d, _jobs) = daemon();
    let server = d.url();

    let output = expect(
        &server,
        &["trigger", "hello", "--wait", "-p", "greeting=yo"],
        0,
    );
    let id = stdout(&output).trim().to_string();
    assert!(
        stderr(&output).starts_with(&format!("run {id} succeeded in ")),
        "{}",
        stderr(&output)
    );

    // `run`: details and the task table.
    let show = stdout(&expect(&server, &["run", &id], 0));
    assert!(show.contains("Status:        succeeded"), "{show}");
    assert!(show.contains("Params:        greeting=yo"), "{show}");
    // Without tokens, the caller is recorded as anonymous.
    assert!(show.contains("Triggered by:  anonymous"), "{show}");
    let task = show
        .lines()
        .find(|l| l.starts_with("greet "))
        .expect("greet row");
    let cells: Vec<&str> = task.split_whitespace().collect();
    assert_eq!(
        (cells[1], cells[2], cells[4]),
        ("succeeded", "1", "0"),
        "{task}"
    );

    let doc = json(&server, &["run", &id]);
    assert_eq!(doc["run"]["id"], id.as_str());
    assert_eq!(doc["run"]["jobId"], "hello");
    assert_eq!(doc["run"]["status"], "RUN_STATUS_SUCCEEDED");
    assert_eq!(doc["run"]["trigger"], "TRIGGER_REASON_MANUAL");
    assert_eq!(doc["run"]["params"]["greeting"], "yo");
    assert_eq!(
        find(&doc["taskRuns"], "taskId", "shout")["status"],
        "TASK_STATUS_SUCCEEDED"
    );

    let tasks = stdout(&expect(&server, &["tasks", &id], 0));
    assert!(tasks.starts_with("TASK "), "{tasks}");
    assert_eq!(tasks.lines().count(), 3, "{tasks}");
    let doc = json(&server, &["tasks", &id]);
    assert_eq!(doc["taskRuns"].as_array().map(Vec::len), Some(2));

    // `logs`: every task prefixed by its id; one task bare.
    let all = stdout(&expect(&server, &["logs", &id], 0));
    assert!(all.contains("greet | yo from petit"), "{all}");
    assert!(all.contains("shout | loud"), "{all}");
    let one = stdout(&expect(&server, &["logs", &id, "greet"], 0));
    assert_eq!(one, "yo from petit\n");
    let doc = json(&server, &["logs", &id, "shout"]);
    let line = &doc["lines"][0];
    assert_eq!(line["line"], "loud");
    assert_eq!(line["stream"], "LOG_STREAM_STDERR");
    assert_eq!(line["seq"], "1", "uint64 is a string in proto3 JSON");
    // A finished task's log, followed, is the stored lines and then the end.
    let followed = stdout(&expect(&server, &["logs", &id, "greet", "-f"], 0));
    assert_eq!(followed, "yo from petit\n");

    // `runs`: newest first.
    let second = run_to_end(&server, "hello", 0);
    let runs = stdout(&expect(&server, &["runs", "hello"], 0));
    let ids: Vec<&str> = runs
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(ids, [second.as_str(), id.as_str()]);
    let doc = json(&server, &["runs", "hello", "--limit", "1"]);
    assert_eq!(doc["runs"].as_array().map(Vec::len), Some(1));
    assert_eq!(doc["runs"][0]["id"], second.as_str());

    // `-o json` prints the response (with --wait, the run as it ended); plain
    // `trigger` the id alone.
    let doc = json(&server, &["trigger", "hello", "--wait"]);
    assert_eq!(doc["run"]["status"], "RUN_STATUS_SUCCEEDED");
    let plain = stdout(&expect(&server, &["trigger", "hello"], 0));
    assert_eq!(plain.lines().count(), 1, "{plain}");
}

#[test]
fn failed_run_and_unknown_job_exit_1() {
    let (d, _jobs) = daemon();
    let server = d.url();

    let output = expect(&server, &["trigger", "failing", "--wait"], 1);
    let id = stdout(&output).trim().to_string();
    assert!(
        stderr(&output).starts_with(&format!("run {id} failed after ")),
        "{}",
        stderr(&output)
    );
    let tasks = stdout(&expect(&server, &["tasks", &id], 0));
    let boom = tasks
        .lines()
        .find(|l| l.starts_with("boom "))
        .expect("boom row");
    let cells: Vec<&str> = boom.split_whitespace().collect();
    assert_eq!((cells[1], cells[4]), ("failed", "3"), "{boom}");

    for args in [
        &["trigger", "nope"][..],
        &["job", "nope"],
        &["runs", "nope"],
    ] {
        let output = expect(&server, args, 1);
        assert_eq!(stderr(&output), "error: job 'nope' not found\n", "{args:?}");
        assert!(output.stdout.is_empty());
    }
    let output = expect(&server, &["run", "no-such-run"], 1);
    assert!(
        stderr(&output).starts_with("error: run 'no-such-run' not found"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn unreachable_server_exits_3() {
    let (_reserved, addr) = refusing_addr();
    let server = format!("http://{addr}");
    for args in [&["jobs"][..], &["trigger", "hello", "--wait"], &["watch"]] {
        let output = expect(&server, args, 3);
        assert_eq!(
            stderr(&output),
            format!("error: cannot reach petitd at {server}: connection refused\n"),
            "{args:?}"
        );
    }
}

#[test]
fn trigger_follow_streams_output_before_the_run_ends() {
    let gate = tempfile::tempdir().expect("tempdir");
    let go = gate.path().join("go");
    let job = format!(
        r#"
id: gated
tasks:
  - id: extract
    command: sh
    args: ["-c", "echo first; while [ ! -e '{}' ]; do sleep 0.05; done; echo second"]
"#,
        go.display()
    );
    let jobs = jobs_dir(&[("gated.yaml", &job)]);
    let d = Daemon::start(jobs.path());

    let mut lines = Lines::spawn(&d.url(), &["trigger", "gated", "--follow"]);
    let id = lines.next("the run id");
    assert!(!id.is_empty() && !id.contains(' '), "{id:?}");
    assert_eq!(lines.next("the first line"), "extract | first");
    // The task is now blocked on the file: the line came while the run was running.
    let state = json(&d.url(), &["run", &id]);
    assert_eq!(state["run"]["status"], "RUN_STATUS_RUNNING");
    // `logs -f` on the same task: the stored line at once, then live ones.
    let mut logs = Lines::spawn(&d.url(), &["logs", &id, "extract", "-f"]);
    assert_eq!(logs.next("the stored line"), "first");
    touch(&go);
    assert_eq!(lines.next("the second line"), "extract | second");
    let (code, err) = lines.wait();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("succeeded"), "{err}");
    assert_eq!(logs.next("the live line"), "second");
    let (code, err) = logs.wait();
    assert_eq!(code, Some(0), "{err}");
}

fn touch(path: &Path) {
    std::fs::write(path, b"").expect("create file");
}

#[test]
fn cancel_a_running_run() {
    let (d, _jobs) = daemon();
    let server = d.url();

    let id = stdout(&expect(&server, &["trigger", "slow"], 0))
        .trim()
        .to_string();
    let started = Instant::now();
    let output = expect(&server, &["cancel", &id], 0);
    assert!(
        stdout(&output).starts_with(&format!("run {id} cancelled")),
        "{}",
        stdout(&output)
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let doc = json(&server, &["run", &id]);
    assert_eq!(doc["run"]["status"], "RUN_STATUS_CANCELLED");

    // A run that has ended cannot be cancelled again.
    let output = expect(&server, &["cancel", &id], 1);
    assert!(
        stderr(&output).starts_with("error: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn pause_resume_state_and_health() {
    let (d, _jobs) = daemon();
    let server = d.url();

    let state = stdout(&expect(&server, &["state"], 0));
    assert!(
        state.contains("Scheduler:  running") || state.contains("running"),
        "{state}"
    );
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("Jobs:") && l.ends_with(" 4")),
        "{state}"
    );

    assert_eq!(
        stdout(&expect(&server, &["pause"], 0)),
        "scheduler paused\n"
    );
    let doc = json(&server, &["state"]);
    assert_eq!(doc["state"]["status"], "SCHEDULER_STATUS_PAUSED");
    assert_eq!(doc["state"]["jobCount"], 4);

    let doc = json(&server, &["resume"]);
    assert_eq!(doc["state"]["status"], "SCHEDULER_STATUS_RUNNING");
    assert_eq!(
        stdout(&expect(&server, &["resume"], 0)),
        "scheduler running\n"
    );

    let health = stdout(&expect(&server, &["health"], 0));
    assert!(health.starts_with("SERVING (petitd "), "{health}");
    let doc = json(&server, &["health"]);
    assert_eq!(doc["status"], "SERVING");
}

#[test]
fn watch_prints_a_summary_then_events() {
    let (d, _jobs) = daemon();
    let server = d.url();

    let mut table = Lines::spawn(&server, &["watch"]);
    assert_eq!(
        table.next("the snapshot summary"),
        "connected: 4 jobs, scheduler running"
    );
    let mut ndjson = Lines::spawn(&server, &["watch", "--job", "hello", "-o", "json"]);
    let first: Value = serde_json::from_str(&ndjson.next("the snapshot")).expect("JSON line");
    assert!(first["snapshot"]["jobs"].is_array(), "{first}");

    let id = run_to_end(&server, "hello", 0);
    let started = table.until("run_started", |l| l.contains("run_started"));
    let cells: Vec<&str> = started.split_whitespace().collect();
    assert_eq!(
        &cells[1..4],
        ["run_started", "hello", id.as_str()],
        "{started}"
    );
    table.until("the greeting log line", |l| {
        l.contains("log_line") && l.ends_with("greet  hi from petit")
    });
    table.until("run_succeeded", |l| l.contains("run_succeeded"));

    let event = ndjson.until("a run event in JSON", |l| {
        l.contains("EVENT_TYPE_RUN_SUCCEEDED")
    });
    let event: Value = serde_json::from_str(&event).expect("JSON line");
    assert_eq!(event["event"]["runId"], id.as_str());
    assert_eq!(event["event"]["jobId"], "hello");
}

#[test]
fn logs_into_a_closed_pipe_exit_quietly() {
    let (d, _jobs) = daemon();
    let server = d.url();
    let id = run_to_end(&server, "chatty", 0);

    // `petitctl logs RUN | head -1`: head leaves after one line, the pipe breaks.
    let script = r#""$0" --server "$1" logs "$2" | head -1; exit "${PIPESTATUS[0]}""#;
    let mut command = Command::new("bash");
    command
        .args(["-c", script])
        .arg(bin("petitctl"))
        .arg(&server)
        .arg(&id)
        .env_remove("PETIT_SERVER");
    let output = petit_tests::run_to_exit(&mut command, LIMIT);
    assert_eq!(stdout(&output), "count | 1\n");
    assert_eq!(stderr(&output), "", "no error, no panic message");
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn completions() {
    let output = expect("http://127.0.0.1:1", &["completions", "bash"], 0);
    let script = stdout(&output);
    assert!(
        script.contains("petitctl") && script.len() > 1000,
        "{script}"
    );
}
