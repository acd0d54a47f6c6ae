//! petit-tui's command line, run as a user runs it: the help names the keys and the
//! connection flags, and contradictory flags are a usage error before any terminal
//! or network is touched. (Being an integration test, it also makes `cargo test`
//! build the petit-tui binary with the test profile's features, which the end-to-end
//! dashboard test in tests/ then drives; `make test` builds nothing else first.)

use std::process::Command;

fn tui() -> Command {
    Command::new(env!("CARGO_BIN_EXE_petit-tui"))
}

#[test]
fn help_lists_the_keys_and_the_connection_flags() {
    let out = tui().arg("--help").output().expect("run petit-tui --help");
    assert!(out.status.success(), "{out:?}");
    let help = String::from_utf8(out.stdout).expect("utf-8 help");
    assert!(help.contains("A live dashboard for petitd"), "{help}");
    assert!(help.contains("Keys:"), "{help}");
    assert!(help.contains("--utc") && help.contains("--local"), "{help}");
    assert!(help.contains("--server"), "{help}");
}

#[test]
fn utc_and_local_together_are_a_usage_error() {
    let out = tui()
        .args(["--utc", "--local"])
        .output()
        .expect("run petit-tui");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");
    assert!(out.stdout.is_empty(), "nothing drawn: {out:?}");
}
