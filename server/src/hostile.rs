//! Hostile input, as a short seeded property pass that `make test` runs: every parser
//! that reads what users or the network send (job files, cron expressions, durations,
//! REST JSON bodies, `${...}` placeholders) answers arbitrary input with a value or an
//! error, never a panic. The inputs are the seed corpus kept in `server/fuzz/corpus/`
//! (shared with the cargo-fuzz targets in `server/fuzz/`), mutated, plus text built
//! from each format's own punctuation. The RNG is seeded, so a failure repeats.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Cases per parser in `make test` (`PETIT_HOSTILE_CASES` for a longer pass).
fn cases() -> u32 {
    std::env::var("PETIT_HOSTILE_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(300)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the seed corpus {}: {e}", dir.display()))
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// A seed with a few bytes replaced, inserted or cut, or text made of `alphabet`.
fn inputs(target: &str, alphabet: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    let mutated = (
        0..seeds.len(),
        proptest::collection::vec((any::<u16>(), any::<u8>(), 0u8..3), 0..12),
    )
        .prop_map(move |(i, edits)| {
            let mut bytes = seeds[i].clone();
            for (at, byte, kind) in edits {
                let at = if bytes.is_empty() {
                    0
                } else {
                    at as usize % (bytes.len() + 1)
                };
                match kind {
                    0 if at < bytes.len() => bytes[at] = byte,
                    1 => bytes.insert(at, byte),
                    _ if at < bytes.len() => {
                        bytes.truncate(at);
                    }
                    _ => bytes.push(byte),
                }
            }
            bytes
        });
    let built = proptest::collection::vec(proptest::sample::select(alphabet), 0..200)
        .prop_map(|pieces| pieces.concat().into_bytes());
    prop_oneof![
        mutated,
        built,
        proptest::collection::vec(any::<u8>(), 0..300)
    ]
}

fn run(target: &str, alphabet: &'static [&'static str], check: impl Fn(&[u8])) {
    let config = Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    runner
        .run(&inputs(target, alphabet), |input| {
            check(&input);
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{target}: {e}"));
}

const YAML: &[&str] = &[
    "id: j\n",
    "tasks:\n",
    "  - id: t\n",
    "    command: echo\n",
    "    args: [",
    "]",
    "{",
    "}",
    "[",
    ",",
    ": ",
    "- ",
    "\n",
    "  ",
    "&a ",
    "*a",
    "!!str ",
    "'",
    "\"",
    "#",
    "|\n",
    ">\n",
    "${config.x}",
    "${tasks.t.outputs.o}",
    "depends_on: [t]\n",
    "schedule: \"* * * * *\"\n",
    "\t",
    "\r",
    "\u{feff}",
    "é",
    "---\n",
    "...\n",
    "? ",
    "%YAML 1.2\n",
];

#[test]
fn job_files() {
    let global = crate::config::GlobalConfig::default();
    run("job", YAML, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = crate::config::parse_job(&text, Path::new("fuzz.yaml"), &global);
        let _ = crate::config::GlobalConfig::parse(&text, Path::new("petit.yaml"));
    });
}

const CRON: &[&str] = &[
    "*",
    "/",
    "-",
    ",",
    " ",
    "0",
    "1",
    "7",
    "59",
    "60",
    "99999999999",
    "MON",
    "SUN",
    "JAN",
    "?",
    "L",
    "#",
    "@every ",
    "@daily",
    "@",
    "s",
    "m",
    "h",
    "d",
    "1h30m",
    "\t",
];

#[test]
fn schedules_and_durations() {
    run("cron", CRON, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = crate::core::Schedule::parse(&text, chrono_tz::Tz::Europe__Paris);
    });
    run("duration", CRON, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = crate::core::schedule::parse_duration(&text);
    });
}

const JSON: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "\"params\"",
    "\"force\"",
    "\"jobId\"",
    "true",
    "null",
    "1e999",
    "-0",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"x\"",
    " ",
    "18446744073709551616",
];

#[test]
fn rest_bodies() {
    let pool =
        prost_reflect::DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).expect("pool");
    let messages: Vec<_> = pool
        .all_messages()
        .filter(|m| m.full_name().starts_with("petit.v1."))
        .collect();
    run("json", JSON, |input| {
        for message in &messages {
            let _ = crate::api::rest::from_json_body_for_tests(message, input);
        }
    });
}

const PLACEHOLDER: &[&str] = &[
    "$",
    "{",
    "}",
    "${",
    "$${",
    "params.",
    "config.",
    "tasks.",
    ".outputs.",
    "x",
    ".",
    " ",
    "'",
    "\"",
    "`",
    "\\",
    "$(",
    ")",
    "\n",
];

#[test]
fn placeholders() {
    run("placeholder", PLACEHOLDER, |input| {
        let text = String::from_utf8_lossy(input);
        let _ = crate::config::placeholder::tokens(&text);
    });
}
