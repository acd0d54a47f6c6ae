//! `GET /api/openapi.json` on the real petitd: every REST route of the contract is in
//! it, a real validator (Python's openapi-spec-validator) accepts it, and a short
//! seeded schemathesis pass against the daemon finds no 5xx and no response that
//! breaks the document. The Python tools come from `make test-tools` (a venv under
//! target/); without them these tests say so and are skipped, except under CI.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use petit_tests::{bin, jobs_dir, run_to_exit, Daemon, HELLO_JOB, SLOW_JOB};
use prost_reflect::DescriptorPool;

/// The venv `make test-tools` makes, or `PETIT_TEST_VENV`.
fn venv() -> Option<PathBuf> {
    let dir = match std::env::var_os("PETIT_TEST_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            // target/debug/deps/openapi-… -> target/test-venv
            exe.ancestors().nth(3)?.join("test-venv")
        }
    };
    if dir.join("bin/openapi-spec-validator").exists() && dir.join("bin/schemathesis").exists() {
        return Some(dir);
    }
    let message = format!(
        "openapi-spec-validator and schemathesis not found in {}: run `make test-tools`",
        dir.display()
    );
    assert!(
        std::env::var_os("CI").is_none(),
        "{message} (required under CI)"
    );
    eprintln!("SKIPPED: {message}");
    None
}

/// (method, path) of every `google.api.http` rule in the contract.
fn contract_routes() -> Vec<(String, String)> {
    let pool = DescriptorPool::decode(petit_proto::FILE_DESCRIPTOR_SET).unwrap();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let mut routes = Vec::new();
    for service in pool.services() {
        for rpc in service.methods() {
            let options = rpc.options();
            if !options.has_extension(&http) {
                continue;
            }
            let rule = options.get_extension(&http);
            let rule = rule.as_message().unwrap();
            for verb in ["get", "post", "put", "delete", "patch"] {
                if rule.has_field_by_name(verb) {
                    let path = rule.get_field_by_name(verb).unwrap();
                    routes.push((verb.to_string(), path.as_str().unwrap().to_string()));
                }
            }
        }
    }
    routes
}

fn admin_token(dir: &std::path::Path) -> (PathBuf, String) {
    let file = dir.join("tokens.yaml");
    let out = run_to_exit(
        Command::new(bin("petitd"))
            .args([
                "token",
                "create",
                "schemathesis",
                "--role",
                "admin",
                "--tokens",
            ])
            .arg(&file),
        Duration::from_secs(20),
    );
    assert!(out.status.success());
    (
        file,
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
    )
}

#[tokio::test]
async fn the_document_lists_every_route_and_is_valid() {
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start(jobs.path());
    let response = reqwest::get(format!("{}/api/openapi.json", daemon.url()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.0.3");
    let routes = contract_routes();
    assert!(routes.len() >= 10);
    for (verb, path) in &routes {
        assert!(
            doc["paths"][path][verb].is_object(),
            "{verb} {path} is not in the document"
        );
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    // Operations carry the protos' comments: the document is written from the full
    // descriptor set, not from the copy without comments the routes are read from.
    let list = &doc["paths"]["/api/jobs"]["get"];
    let view = list["parameters"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "view"))
        .unwrap_or_else(|| panic!("GET /api/jobs has no view parameter: {list}"));
    assert!(
        view["description"].as_str().is_some_and(|d| d.len() > 10),
        "the view parameter has no description: {view}"
    );

    let Some(venv) = venv() else { return };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let out = run_to_exit(
        Command::new(venv.join("bin/openapi-spec-validator")).arg(&file),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_document_needs_a_token_when_tokens_are_on() {
    let keys = tempfile::tempdir().unwrap();
    let (file, token) = admin_token(keys.path());
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);
    let url = format!("{}/api/openapi.json", daemon.url());
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        http.get(&url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A short, seeded pass: every operation, a few examples each, checked for 5xx and
/// for responses the document does not describe. `make test-long` runs a longer one.
#[tokio::test]
async fn schemathesis_finds_no_server_error() {
    let Some(venv) = venv() else { return };
    let examples = std::env::var("PETIT_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "10".into());
    let keys = tempfile::tempdir().unwrap();
    let (file, token) = admin_token(keys.path());
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB), ("slow.yaml", SLOW_JOB)]);
    let daemon = Daemon::start_with(jobs.path(), &["--tokens", file.to_str().unwrap()]);
    let work = tempfile::tempdir().unwrap();
    let out = run_to_exit(
        Command::new(venv.join("bin/schemathesis"))
            .current_dir(work.path())
            .arg("run")
            .arg(format!("{}/api/openapi.json", daemon.url()))
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_schema_conformance,response_headers_conformance,negative_data_rejection",
            ])
            .args(["--max-examples", &examples, "--seed", "8565"])
            .env("NO_COLOR", "1"),
        Duration::from_secs(600),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found failures:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(!daemon.stderr().contains("panicked"), "{}", daemon.stderr());
}
