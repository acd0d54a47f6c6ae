//! petitctl against a petitd that requires tokens: the token from PETIT_TOKEN or
//! --token-file (never a flag), one-line errors that say what to set for a missing or
//! wrong token and for a role that is not enough (exit code 1), and the audit record
//! and a run's "triggered by" as petitctl shows them.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use petit_tests::{bin, jobs_dir, run_to_exit, Daemon, HELLO_JOB};

const LIMIT: Duration = Duration::from_secs(20);

fn create(file: &Path, name: &str, role: &str) -> String {
    let out = run_to_exit(
        Command::new(bin("petitd"))
            .args(["token", "create", name, "--role", role, "--tokens"])
            .arg(file),
        LIMIT,
    );
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// petitctl with a clean environment plus `env`.
fn petitctl(server: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_to_exit(
        Command::new(bin("petitctl"))
            .arg("--server")
            .arg(server)
            .args(args)
            .env_remove("PETIT_SERVER")
            .env_remove("PETIT_TOKEN")
            .env_remove("PETIT_TOKEN_FILE")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdin(Stdio::null()),
        LIMIT,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn petitctl_takes_the_token_from_the_environment_or_a_file() {
    let keys = tempfile::tempdir().unwrap();
    let file = keys.path().join("tokens.yaml");
    let viewer = create(&file, "dash", "viewer");
    let operator = create(&file, "ops", "operator");
    let admin = create(&file, "root", "admin");
    let operator_file = keys.path().join("ops.token");
    std::fs::write(&operator_file, format!("{operator}\n")).unwrap();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);
    let url = daemon.url();

    // No token: one line that says what to set; exit 1.
    let out = petitctl(&url, &["jobs"], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = text(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("a token is required") && stderr.contains("PETIT_TOKEN"),
        "{stderr}"
    );

    // A wrong one.
    let out = petitctl(&url, &["jobs"], &[("PETIT_TOKEN", "petit_wrong")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not valid"),
        "{}",
        text(&out.stderr)
    );

    // The viewer reads, and may not trigger.
    let out = petitctl(&url, &["jobs"], &[("PETIT_TOKEN", &viewer)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("hello"));
    let out = petitctl(&url, &["trigger", "hello"], &[("PETIT_TOKEN", &viewer)]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("role viewer") && stderr.contains("needs operator"),
        "{stderr}"
    );

    // The operator's token from a file (it wins over PETIT_TOKEN).
    let out = petitctl(
        &url,
        &[
            "--token-file",
            operator_file.to_str().unwrap(),
            "trigger",
            "hello",
            "--wait",
        ],
        &[("PETIT_TOKEN", &viewer)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let run_id = text(&out.stdout).trim().to_string();
    let out = petitctl(
        &url,
        &["run", &run_id],
        &[("PETIT_TOKEN_FILE", operator_file.to_str().unwrap())],
    );
    let shown = text(&out.stdout);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Triggered by") && l.trim_end().ends_with("ops")),
        "{shown}"
    );

    // The audit record needs the admin.
    let out = petitctl(&url, &["audit"], &[("PETIT_TOKEN", &operator)]);
    assert_eq!(out.status.code(), Some(1));
    let out = petitctl(&url, &["audit"], &[("PETIT_TOKEN", &admin)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let line = table
        .lines()
        .find(|l| l.contains("TriggerJob"))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(
        line.contains("ops") && line.contains("hello") && line.contains("OK"),
        "{line}"
    );
    assert!(
        !table.contains("dash"),
        "refused calls never reached the services: {table}"
    );
    let out = petitctl(&url, &["audit", "-o", "json"], &[("PETIT_TOKEN", &admin)]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["records"][0]["actor"], "ops");

    // No token ever in petitd's log.
    let log = daemon.stderr();
    for token in [&viewer, &operator, &admin] {
        assert!(!log.contains(token.as_str()));
    }
}

#[test]
fn a_token_is_never_a_flag_and_a_bad_token_file_is_one_line() {
    let out = petitctl("http://127.0.0.1:1", &["--token", "petit_x", "jobs"], &[]);
    assert_eq!(out.status.code(), Some(2), "a usage error: {out:?}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let out = petitctl(
        "http://127.0.0.1:1",
        &["--token-file", missing.to_str().unwrap(), "jobs"],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot use the token file") && stderr.contains("no such file"),
        "{stderr}"
    );
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let out = petitctl(
        "http://127.0.0.1:1",
        &["--token-file", empty.to_str().unwrap(), "jobs"],
        &[],
    );
    assert!(
        text(&out.stderr).contains("it is empty"),
        "{}",
        text(&out.stderr)
    );
}
