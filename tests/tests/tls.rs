//! petitd over TLS, with certificates made here: a private CA, a server certificate for
//! 127.0.0.1 and localhost, client certificates from that CA and from another. Driven
//! by petitctl (gRPC over https://) and curl (REST over HTTPS/1.1 and HTTP/2).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use petit_tests::{bin, jobs_dir, run_to_exit, Daemon, HELLO_JOB};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tempfile::TempDir;

const EXIT_FAILURE: i32 = 1;

/// The PEM files of one test: `ca.pem`, `server.{pem,key}`, `client.{pem,key}` (signed
/// by the CA) and `stranger.{pem,key}` (signed by another CA).
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();

        let ca = ca("Petit test CA");
        write("ca.pem", &ca.pem());
        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = server.signed_by(&server_key, &ca).unwrap();
        write("server.pem", &server.pem());
        write("server.key", &server_key.serialize_pem());

        let client = |name: &str, issuer: &CertifiedIssuer<'_, KeyPair>| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let cert = params.signed_by(&key, issuer).unwrap();
            write(&format!("{name}.pem"), &cert.pem());
            write(&format!("{name}.key"), &key.serialize_pem());
        };
        client("client", &ca);
        client("stranger", &self::ca("Another CA"));
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// petitd's flags for TLS with the server certificate.
    fn server_flags(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.arg("server.pem"),
            "--tls-key".into(),
            self.arg("server.key"),
        ]
    }
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn start(jobs: &Path, flags: &[String]) -> Daemon {
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Daemon::start_with(jobs, &flags)
}

/// `petitctl ARGS` with none of the PETIT_* settings of the environment.
fn petitctl(args: &[&str], env: &[(&str, &Path)]) -> std::process::Output {
    let mut command = Command::new(bin("petitctl"));
    command.args(args);
    for var in [
        "PETIT_SERVER",
        "PETIT_CA",
        "PETIT_CLIENT_CERT",
        "PETIT_CLIENT_KEY",
    ] {
        command.env_remove(var);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    run_to_exit(&mut command, Duration::from_secs(30))
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The error petitctl printed: exactly one line, `error: ...`.
fn one_line_error(output: &std::process::Output) -> String {
    let text = stderr(output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {text:?}");
    assert!(lines[0].starts_with("error: "), "{text:?}");
    lines[0].to_string()
}

#[test]
fn petitctl_speaks_grpc_over_https_with_a_private_ca() {
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = start(jobs.path(), &pki.server_flags());
    assert!(daemon.stderr().contains("TLS on"), "{}", daemon.stderr());
    let https = format!("https://{}", daemon.addr);

    let ca = pki.arg("ca.pem");
    let listed = petitctl(&["--server", &https, "--ca", &ca, "jobs"], &[]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("hello"), "{}", stdout(&listed));

    // The CA from the environment, and the host name the certificate also names.
    let localhost = format!("https://localhost:{}", daemon.addr.port());
    let health = petitctl(
        &["--server", &localhost, "health"],
        &[("PETIT_CA", &pki.path("ca.pem"))],
    );
    assert!(health.status.success(), "{}", stderr(&health));
}

#[test]
fn an_untrusted_certificate_is_one_clear_line() {
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = start(jobs.path(), &pki.server_flags());
    let https = format!("https://{}", daemon.addr);

    // The system's roots do not know the test CA.
    let refused = petitctl(&["--server", &https, "jobs"], &[]);
    assert_eq!(
        refused.status.code(),
        Some(EXIT_FAILURE),
        "{}",
        stderr(&refused)
    );
    let line = one_line_error(&refused);
    assert!(
        line.contains(&format!("TLS with petitd at {https} failed")),
        "{line}"
    );
    assert!(line.contains("--ca"), "says what to do: {line}");

    // Another CA is no better.
    let other = pki.path("stranger.pem");
    let refused = petitctl(&["--server", &https, "jobs"], &[("PETIT_CA", &other)]);
    assert_eq!(refused.status.code(), Some(EXIT_FAILURE));
    assert!(
        one_line_error(&refused).contains("not signed by a CA this client trusts"),
        "{}",
        stderr(&refused)
    );

    // A CA file that is not one.
    let key = pki.arg("server.key");
    let bad = petitctl(&["--server", &https, "--ca", &key, "jobs"], &[]);
    assert_eq!(bad.status.code(), Some(EXIT_FAILURE));
    let line = one_line_error(&bad);
    assert!(
        line.contains(&key) && line.contains("no PEM certificate"),
        "{line}"
    );
}

#[test]
fn plain_http_and_tls_do_not_mix() {
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let tls = start(jobs.path(), &pki.server_flags());
    let plain = Daemon::start(jobs.path());

    // http:// to the TLS port: not served, and said in one line.
    let http = format!("http://{}", tls.addr);
    let refused = petitctl(&["--server", &http, "jobs"], &[]);
    assert_eq!(
        refused.status.code(),
        Some(EXIT_FAILURE),
        "{}",
        stderr(&refused)
    );
    let line = one_line_error(&refused);
    assert!(
        line.contains(&http) && line.contains("use https://"),
        "{line}"
    );
    assert!(stdout(&refused).is_empty());

    // https:// to a plain port.
    let https = format!("https://{}", plain.addr);
    let ca = pki.arg("ca.pem");
    let refused = petitctl(&["--server", &https, "--ca", &ca, "jobs"], &[]);
    assert_eq!(refused.status.code(), Some(EXIT_FAILURE));
    let line = one_line_error(&refused);
    assert!(
        line.contains("does not speak TLS") && line.contains("http://"),
        "{line}"
    );

    // The TLS daemon still serves TLS clients after the noise.
    let ok = petitctl(
        &[
            "--server",
            &format!("https://{}", tls.addr),
            "--ca",
            &ca,
            "health",
        ],
        &[],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
}

/// curl, or `None` (said loudly) where it is not installed.
fn curl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("curl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: curl is not installed, so REST over HTTPS is not checked here");
    }
    found
}

#[test]
fn rest_over_https_with_curl() {
    let Some(curl) = curl() else { return };
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let daemon = start(jobs.path(), &pki.server_flags());
    let url = format!("https://{}/api/jobs", daemon.addr);
    for (flag, version) in [("--http1.1", "1.1"), ("--http2", "2")] {
        let output = run_to_exit(
            Command::new(&curl)
                .args(["--silent", "--show-error", "--fail", flag])
                .args(["--cacert", &pki.arg("ca.pem")])
                .args(["--write-out", "\n%{http_version}"])
                .arg(&url),
            Duration::from_secs(30),
        );
        assert!(output.status.success(), "{flag}: {}", stderr(&output));
        let text = stdout(&output);
        let (body, got) = text.rsplit_once('\n').expect("version line");
        assert_eq!(got, version, "{flag}");
        let json: serde_json::Value = serde_json::from_str(body).expect("JSON");
        assert_eq!(json["jobs"][0]["id"], "hello", "{body}");
    }

    // Plain HTTP to the TLS port gets no HTTP answer at all.
    let plain = run_to_exit(
        Command::new(&curl)
            .args(["--silent", "--max-time", "10"])
            .arg(format!("http://{}/api/jobs", daemon.addr)),
        Duration::from_secs(30),
    );
    assert!(!plain.status.success());
    assert!(stdout(&plain).is_empty(), "{}", stdout(&plain));
}

#[test]
fn mutual_tls_requires_a_client_certificate_from_the_ca() {
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let mut flags = pki.server_flags();
    flags.extend(["--tls-client-ca".to_string(), pki.arg("ca.pem")]);
    let daemon = start(jobs.path(), &flags);
    let https = format!("https://{}", daemon.addr);
    let ca = pki.arg("ca.pem");

    let without = petitctl(&["--server", &https, "--ca", &ca, "jobs"], &[]);
    assert_eq!(
        without.status.code(),
        Some(EXIT_FAILURE),
        "{}",
        stderr(&without)
    );
    let line = one_line_error(&without);
    assert!(line.contains("client certificate"), "{line}");

    let (stranger, stranger_key) = (pki.arg("stranger.pem"), pki.arg("stranger.key"));
    let stranger = petitctl(
        &[
            "--server",
            &https,
            "--ca",
            &ca,
            "--client-cert",
            &stranger,
            "--client-key",
            &stranger_key,
            "jobs",
        ],
        &[],
    );
    assert_eq!(
        stranger.status.code(),
        Some(EXIT_FAILURE),
        "{}",
        stderr(&stranger)
    );
    let line = one_line_error(&stranger);
    assert!(line.contains("TLS with petitd"), "{line}");

    let (cert, key) = (pki.arg("client.pem"), pki.arg("client.key"));
    let with = petitctl(
        &[
            "--server",
            &https,
            "--ca",
            &ca,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            "jobs",
        ],
        &[],
    );
    assert!(with.status.success(), "{}", stderr(&with));
    assert!(stdout(&with).contains("hello"));

    // The same from the environment.
    let with_env = petitctl(
        &["--server", &https, "health"],
        &[
            ("PETIT_CA", &pki.path("ca.pem")),
            ("PETIT_CLIENT_CERT", &pki.path("client.pem")),
            ("PETIT_CLIENT_KEY", &pki.path("client.key")),
        ],
    );
    assert!(with_env.status.success(), "{}", stderr(&with_env));
}

#[test]
fn bad_tls_files_stop_petitd_at_start_naming_the_file() {
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    let data = tempfile::tempdir().unwrap();
    let missing = pki.arg("missing.pem");
    let cases = [
        (
            pki.arg("server.pem"),
            missing.clone(),
            missing.clone(),
            "cannot read",
        ),
        (
            missing.clone(),
            pki.arg("server.key"),
            missing.clone(),
            "cannot read",
        ),
        (
            pki.arg("server.key"),
            pki.arg("server.key"),
            pki.arg("server.key"),
            "no certificate",
        ),
        (
            pki.arg("server.pem"),
            pki.arg("server.pem"),
            pki.arg("server.pem"),
            "no private key",
        ),
        // A key that is not the certificate's.
        (
            pki.arg("server.pem"),
            pki.arg("client.key"),
            pki.arg("client.key"),
            "does not go with",
        ),
    ];
    for (cert, key, named, want) in cases {
        let output = run_to_exit(
            Command::new(bin("petitd"))
                .arg("--jobs")
                .arg(jobs.path())
                .arg("--db")
                .arg(data.path().join("petit.db"))
                .args([
                    "--listen",
                    "127.0.0.1:0",
                    "--tls-cert",
                    &cert,
                    "--tls-key",
                    &key,
                ])
                .env_remove("PETIT_CONFIG"),
            Duration::from_secs(30),
        );
        assert_eq!(output.status.code(), Some(1), "{cert} {key}");
        let text = stderr(&output);
        let line = text
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{text}"));
        assert!(
            line.contains(&named) && line.contains(want),
            "{cert} {key}: {line}"
        );
    }
}

#[test]
fn tls_from_petit_yaml() {
    let pki = Pki::new();
    let jobs = jobs_dir(&[("hello.yaml", HELLO_JOB)]);
    // Relative paths are read beside petit.yaml.
    let config = pki.path("petit.yaml");
    std::fs::write(&config, "tls:\n  cert: server.pem\n  key: server.key\n").unwrap();
    let daemon = start(
        jobs.path(),
        &["--config".into(), config.display().to_string()],
    );
    assert!(daemon.stderr().contains("TLS on"), "{}", daemon.stderr());
    let https = format!("https://{}", daemon.addr);
    let ok = petitctl(
        &["--server", &https, "--ca", &pki.arg("ca.pem"), "health"],
        &[],
    );
    assert!(ok.status.success(), "{}", stderr(&ok));
}
