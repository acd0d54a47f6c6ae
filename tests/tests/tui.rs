//! `petit-tui` end to end: the real binary in an 80×24 tmux pane against the real
//! `petitd`. Keys go in with `tmux send-keys`, the screen comes back with
//! `tmux capture-pane`; every wait polls the screen (or the API) up to a deadline.

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use petit_proto::v1::job_service_client::JobServiceClient;
use petit_proto::v1::{ListJobRunsRequest, Run, TriggerReason};
use petit_tests::{bin, eventually, jobs_dir, trigger, Daemon};
use tonic::transport::Channel;

/// Longest any screen or API state is waited for.
const WAIT: Duration = Duration::from_secs(10);

const ALPHA: &str = r#"
id: alpha
name: Alpha
tasks:
  - id: greet
    type: command
    command: echo
    args: ["hello from alpha"]
"#;

const BETA: &str = r#"
id: beta
name: Beta
schedule: "0 0 3 * * *"
tasks:
  - id: first
    type: command
    command: echo
    args: ["one"]
  - id: second
    type: command
    command: echo
    args: ["two"]
    depends_on: [first]
"#;

/// A tmux server of our own (its own socket), with one 80×24 session; killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Starts `command` (run by tmux through `sh -c`) in a new 80×24 session.
    fn start(command: &str) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "petit-tui-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Tmux { socket };
        tmux.run(&[
            "new-session",
            "-d",
            "-x",
            "80",
            "-y",
            "24",
            "-s",
            "main",
            command,
        ]);
        tmux
    }

    /// A session running a plain shell, for checking what is left after the program;
    /// returns once the shell shows its prompt, so that what is typed next is read as
    /// a command line after it (typed earlier, the line is echoed before the prompt and
    /// the command's output lands on the prompt's line).
    fn shell() -> Tmux {
        let tmux = Tmux::start("env PS1='$ ' sh");
        tmux.wait_for("the shell's prompt", |s| s.trim_end() == "$");
        tmux
    }

    fn run(&self, args: &[&str]) -> Output {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .expect("run tmux");
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        self.run(&["send-keys", "-t", "main", "-l", text]);
    }

    /// Sends tmux key names (`Enter`, `Escape`, `q`...).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "main"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "main"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A pane variable, e.g. `pane_pid` or `alternate_on`.
    fn pane(&self, variable: &str) -> String {
        let format = format!("#{{{variable}}}");
        let out = self.run(&["display-message", "-p", "-t", "main", &format]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Polls the screen until `done` holds; panics with the last screen after `WAIT`.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_for_up_to(WAIT, what, done)
    }

    /// As `wait_for`, with its own deadline.
    fn wait_for_up_to(&self, limit: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let screen = self.screen();
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// Whether tmux is here. Without it the dashboard tests cannot run: under CI (which
/// installs tmux, see .ci/run) that is a failure; on a developer's machine the test
/// says so loudly and passes without checking anything.
fn tmux_available() -> bool {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    let message = "tmux is not installed: the petit-tui end-to-end tests drive the dashboard \
                   in tmux (install it: apt-get install -y tmux)";
    if !found && std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    if !found {
        eprintln!("SKIPPED: {message}");
    }
    found
}

fn tui_command(server: &str) -> String {
    format!("{} --server {server}", shell_quote(&bin("petit-tui")))
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', r"'\''"))
}

/// The run id as the dashboard's tables show it.
fn short_id(id: &str) -> &str {
    let chars = id.chars().count();
    if chars <= 10 {
        return id;
    }
    let skip = id.char_indices().nth(chars - 8).map_or(0, |(at, _)| at);
    &id[skip..]
}

async fn runs_of(channel: &Channel, job_id: &str) -> Vec<Run> {
    JobServiceClient::new(channel.clone())
        .list_job_runs(ListJobRunsRequest {
            job_id: job_id.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|s| panic!("list runs of {job_id}: {s}"))
        .into_inner()
        .runs
}

#[tokio::test]
async fn dashboard_shows_jobs_and_live_runs_triggers_and_quits_cleanly() {
    if !tmux_available() {
        return;
    }
    let jobs = jobs_dir(&[("alpha.yaml", ALPHA), ("beta.yaml", BETA)]);
    let daemon = Daemon::start(jobs.path());
    let channel = daemon.channel().await;

    let tmux = Tmux::shell();
    // The shell reports how the program ended and whether the terminal was left raw.
    tmux.type_text(&format!(
        "{}; echo \"exit=$?\"; stty -a | grep -q -- -icanon && echo RAW || echo COOKED",
        tui_command(&daemon.url())
    ));
    tmux.keys(&["Enter"]);

    // The jobs appear, with beta's next fire time in its zone (UTC, the default),
    // named: "03:00:00 UTC" today or "12-02 03:00 UTC".
    tmux.wait_for("the jobs", |s| {
        s.contains("alpha") && s.contains("beta") && s.contains("connected")
    });
    let beta_fires_at = |s: &str| {
        s.lines()
            .any(|l| l.contains("beta") && l.contains("03:00") && l.contains(" UTC "))
    };
    tmux.wait_for("beta's next fire time in UTC", beta_fires_at);
    // `z` switches to local time for every time, and says so.
    tmux.keys(&["z"]);
    tmux.wait_for("the zone notice", |s| {
        s.contains("times: every time in local time")
    });
    tmux.keys(&["z", "z"]);
    tmux.wait_for("the job's zone again", |s| {
        s.contains("times: next fire times in each job's zone") && beta_fires_at(s)
    });

    // A run triggered elsewhere shows up, live, in the Runs tab.
    tmux.keys(&["2"]);
    let run = trigger(&channel, "beta", &[]).await;
    let shown = short_id(&run.id).to_string();
    tmux.wait_for("the run triggered through the API, succeeded", |s| {
        s.lines()
            .any(|l| l.contains(&shown) && l.contains("beta") && l.contains("succeeded"))
    });

    // Its tasks, one Enter away.
    tmux.keys(&["Enter"]);
    tmux.wait_for("the run's tasks", |s| {
        s.contains(&run.id) && s.contains("first") && s.contains("second")
    });

    // `t` then `y` on alpha (the first job) triggers it.
    tmux.keys(&["1", "g", "t"]);
    tmux.wait_for("the confirmation", |s| s.contains("Trigger job alpha now?"));
    assert!(
        runs_of(&channel, "alpha").await.is_empty(),
        "nothing runs before the answer"
    );
    tmux.keys(&["y"]);
    let runs = eventually(WAIT, "alpha's run, started by the dashboard", || {
        let channel = channel.clone();
        async move {
            let runs = runs_of(&channel, "alpha").await;
            (!runs.is_empty()).then_some(runs)
        }
    })
    .await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger(), TriggerReason::Manual);
    tmux.wait_for("the trigger's notice", |s| s.contains("triggered alpha"));

    // `q` quits: the program exits 0 and the shell gets its terminal back.
    tmux.keys(&["q"]);
    // (Whole lines: the typed command line holds these words too.)
    let line = |s: &str, want: &str| s.lines().any(|l| l.trim() == want);
    let screen = tmux.wait_for("the shell after quitting", |s| {
        line(s, "COOKED") || line(s, "RAW")
    });
    assert!(line(&screen, "exit=0"), "{screen}");
    assert!(line(&screen, "COOKED"), "raw mode left on:\n{screen}");
    assert!(
        !screen.contains("2 Runs"),
        "the dashboard is still on screen:\n{screen}"
    );
    assert_eq!(
        tmux.pane("alternate_on"),
        "0",
        "still on the alternate screen"
    );
}

#[tokio::test]
async fn dashboard_says_it_is_reconnecting_and_recovers() {
    if !tmux_available() {
        return;
    }
    let jobs = jobs_dir(&[("alpha.yaml", ALPHA)]);
    let daemon = Daemon::start(jobs.path());
    let addr = daemon.addr;
    let tmux = Tmux::start(&tui_command(&daemon.url()));
    tmux.wait_for("the jobs", |s| {
        s.contains("alpha") && s.contains("connected")
    });

    let (data, db) = daemon.crash();
    tmux.wait_for("the reconnecting notice", |s| s.contains("reconnecting"));

    // Back on the same address and database: the dashboard is whole again by itself.
    let daemon = Daemon::start_at(jobs.path(), data, db, addr, &[]);
    tmux.wait_for("the reconnection", |s| {
        s.contains("connected") && !s.contains("reconnecting") && s.contains("alpha")
    });
    // And live again: a trigger elsewhere shows up.
    let channel = daemon.channel().await;
    tmux.keys(&["2"]);
    let run = trigger(&channel, "alpha", &[]).await;
    let shown = short_id(&run.id).to_string();
    tmux.wait_for("the run after reconnecting", |s| s.contains(&shown));
}

/// A daemon that hangs without closing its connections (SIGSTOP) is noticed by the
/// client's HTTP/2 keepalive: the dashboard says it is reconnecting, and recovers when
/// the daemon runs again.
#[tokio::test]
async fn dashboard_notices_a_hung_daemon() {
    if !tmux_available() {
        return;
    }
    let jobs = jobs_dir(&[("alpha.yaml", ALPHA)]);
    let daemon = Daemon::start(jobs.path());
    let tmux = Tmux::start(&tui_command(&daemon.url()));
    tmux.wait_for("the jobs", |s| {
        s.contains("alpha") && s.contains("connected")
    });

    daemon.signal("STOP");
    // Keepalive: a ping every 5 s, 5 s to answer it.
    let noticed = std::panic::catch_unwind(|| {
        tmux.wait_for_up_to(Duration::from_secs(20), "the reconnecting notice", |s| {
            s.contains("reconnecting")
        })
    });
    daemon.signal("CONT");
    if let Err(panic) = noticed {
        std::panic::resume_unwind(panic);
    }
    tmux.wait_for_up_to(Duration::from_secs(20), "the reconnection", |s| {
        s.contains("connected") && !s.contains("reconnecting")
    });
}

/// Resident memory with a thousand jobs loaded stays under 20 MiB.
#[tokio::test]
async fn dashboard_memory_with_a_thousand_jobs() {
    if !tmux_available() {
        return;
    }
    const JOBS: usize = 1000;
    const LIMIT_KIB: u64 = 20 * 1024;
    let files: Vec<(String, String)> = (0..JOBS)
        .map(|i| {
            let yaml = format!(
                "id: job{i:04}\nname: Generated job {i}\nschedule: \"0 {m} * * * *\"\n\
                 tasks:\n  - id: one\n    type: command\n    command: echo\n    args: [\"{i}\"]\n\
                 \x20 - id: two\n    type: command\n    command: echo\n    args: [\"done\"]\n    depends_on: [one]\n",
                m = i % 60
            );
            (format!("job{i:04}.yaml"), yaml)
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(n, y)| (n.as_str(), y.as_str()))
        .collect();
    let jobs = jobs_dir(&refs);
    let daemon = Daemon::start(jobs.path());

    let tmux = Tmux::start(&format!("exec {}", tui_command(&daemon.url())));
    tmux.wait_for("a thousand jobs", |s| s.contains("1/1000"));
    // Walk the lists so that every view has been drawn at least once.
    tmux.keys(&["G", "2", "4", "1"]);
    tmux.wait_for("the last job selected", |s| s.contains("1000/1000"));

    let pid = tmux.pane("pane_pid");
    let rss_kib = petit_tests::rss_kib(pid.trim().parse().expect("a pane pid"));
    eprintln!("petit-tui resident memory with {JOBS} jobs: {rss_kib} KiB");
    assert!(
        rss_kib < LIMIT_KIB,
        "petit-tui uses {rss_kib} KiB with {JOBS} jobs (limit {LIMIT_KIB} KiB)"
    );
}

/// Makes a token with the real `petitd token create`.
fn create_token(file: &Path, name: &str, role: &str) -> String {
    let out = petit_tests::run_to_exit(
        Command::new(bin("petitd"))
            .args(["token", "create", name, "--role", role, "--tokens"])
            .arg(file),
        WAIT,
    );
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[tokio::test]
async fn dashboard_with_a_viewer_token_reads_and_is_told_it_may_not_trigger() {
    if !tmux_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    let viewer = create_token(&file, "wall", "viewer");
    let operator = create_token(&file, "ops", "operator");
    let jobs = jobs_dir(&[("alpha.yaml", ALPHA), ("beta.yaml", BETA)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);

    let tmux = Tmux::start(&format!(
        "env PETIT_TOKEN={viewer} {}",
        tui_command(&daemon.url())
    ));
    tmux.wait_for("the jobs, read with the viewer token", |s| {
        s.contains("alpha") && s.contains("beta") && s.contains("connected")
    });
    tmux.keys(&["g", "t"]);
    tmux.wait_for("the confirmation", |s| s.contains("Trigger job alpha now?"));
    tmux.keys(&["y"]);
    tmux.wait_for("the refusal, on screen", |s| {
        s.contains("role viewer") && s.contains("needs operator")
    });

    // An operator's run shows who started it in its task view.
    let channel = daemon.channel().await;
    let mut client = JobServiceClient::new(channel.clone());
    let mut request = tonic::Request::new(petit_proto::v1::TriggerJobRequest {
        job_id: "beta".into(),
        ..Default::default()
    });
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {operator}").parse().unwrap(),
    );
    let run = client
        .trigger_job(request)
        .await
        .unwrap()
        .into_inner()
        .run
        .unwrap();
    tmux.keys(&["2"]);
    let shown = short_id(&run.id).to_string();
    tmux.wait_for("the operator's run", |s| s.contains(&shown));
    tmux.keys(&["g", "Enter"]);
    tmux.wait_for("who triggered it", |s| s.contains("(succeeded) by ops"));
}

#[tokio::test]
async fn dashboard_without_a_token_says_what_to_set_and_waits_before_trying_again() {
    if !tmux_available() {
        return;
    }
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    create_token(&file, "ops", "operator");
    let jobs = jobs_dir(&[("alpha.yaml", ALPHA)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);
    let tmux = Tmux::start(&format!(
        "env -u PETIT_TOKEN {}",
        tui_command(&daemon.url())
    ));
    let screen = tmux.wait_for("the refusal", |s| s.contains("a token is required"));
    assert!(
        screen.contains("set PETIT_TOKEN or --token-file"),
        "{screen}"
    );
    // Not a tight loop: the next try is half a minute away, not the usual backoff.
    let wait = screen
        .split("reconnecting in ")
        .nth(1)
        .and_then(|rest| rest.split('s').next())
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no countdown on screen:\n{screen}"));
    assert!(wait >= 20, "retries in {wait}s:\n{screen}");
}
