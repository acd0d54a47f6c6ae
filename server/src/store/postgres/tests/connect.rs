//! Connecting: concurrent migrations, passwords kept out of errors, password files,
//! the index plans of the hot queries, and free text PostgreSQL cannot hold.

use super::super::PostgresStore;
use super::{at, run, stores};
use crate::core::RunStatus;
use crate::store::tests::{postgres_database, test_options};
use crate::store::{Run, Store, StoreResult};

#[tokio::test]
async fn nodes_starting_at_once_migrate_once() -> StoreResult<()> {
    let Some(url) = postgres_database("migrate") else {
        return Ok(());
    };
    let connects = (0..3).map(|_| PostgresStore::connect(&url, test_options()));
    let stores = futures::future::join_all(connects).await;
    let stores: Vec<PostgresStore> = stores.into_iter().collect::<StoreResult<_>>()?;
    let versions = stores[0]
        .sql("SELECT version FROM schema_migrations ORDER BY version")
        .await?;
    let versions: Vec<i64> = versions.iter().map(|row| row.get(0)).collect();
    assert_eq!(
        versions,
        (1..=super::super::schema::MIGRATIONS.len() as i64).collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test]
async fn passwords_never_appear_in_errors() {
    let secret = "s3cret-Pa55";
    let urls = [
        format!("postgres://petit:{secret}@127.0.0.1:1/petit"),
        format!("postgres://petit@127.0.0.1:1/petit?password={secret}&connect_timeout=5"),
        format!("postgres://petit:{secret}@127.0.0.1:notaport/petit"),
        format!("postgres://petit:{secret}@127.0.0.1:1/petit?sslmode=bogus"),
    ];
    for url in urls {
        let error = match PostgresStore::connect(&url, test_options()).await {
            Ok(_) => panic!("{url}: nothing listens on port 1"),
            Err(error) => error,
        };
        let text = format!("{error} {error:?}");
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("127.0.0.1"), "says which database: {text}");
    }
}

/// A password file (`--db-password-file`) is read; an unreadable one is a clear error.
#[tokio::test]
async fn password_files_are_read_and_their_errors_are_clear() -> StoreResult<()> {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let config = super::super::PostgresConfig {
        url: "postgres://petit@127.0.0.1:1/petit".into(),
        password_file: Some(missing.clone()),
    };
    let error = match PostgresStore::connect_with(&config, test_options()).await {
        Ok(_) => panic!("a missing password file"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains("cannot read the password file") && error.contains("missing"),
        "{error}"
    );
    let Some(url) = postgres_database("password_file") else {
        return Ok(());
    };
    let file = dir.path().join("password");
    std::fs::write(&file, "any-password-trust-accepts\n").expect("write");
    let config = super::super::PostgresConfig {
        url,
        password_file: Some(file),
    };
    let store = PostgresStore::connect_with(&config, test_options()).await?;
    assert!(!store.scheduler_paused().await?);
    Ok(())
}

/// Appends, trims, pages and tails, and the claim's reads, each go through an index
/// in its order: none scans a table or sorts (issue 11's rule, on PostgreSQL).
#[tokio::test]
async fn log_and_claim_queries_use_their_indexes() -> StoreResult<()> {
    use super::super::{logs, queue};
    let Some(stores) = stores("plans", 1).await else {
        return Ok(());
    };
    let store = &stores[0];
    let cases = [
        (logs::PAGE_OF_RUN, "'r', 1, 0, 10", "log_lines_pkey"),
        (
            logs::PAGE_OF_TASK,
            "'r', 't', 1, 0, 10",
            "log_lines_of_task",
        ),
        (logs::TAIL_OF_RUN, "'r', 5", "log_lines_pkey"),
        (logs::TAIL_OF_TASK, "'r', 't', 5", "log_lines_of_task"),
        (
            logs::OLDEST_OF_STREAM,
            "'r', 't', 'stdout', 1, 0, 10",
            "Index Only Scan using log_lines_of_stream",
        ),
        (
            logs::CUT_STREAM,
            "'r', 't', 'stdout', 1, 0",
            "log_lines_of_stream",
        ),
        // Any index of the running runs only: a count costs them, not the history.
        (queue::NODE_SHARE, "'n', 1", "runs_running_by"),
        (queue::RUNNING_OF_JOBS, "'{a,b}'", "runs_running_by"),
        (queue::RUNNING_OF_JOB, "'a'", "runs_running_by"),
        (queue::QUEUE_HEAD, "'{a,b}'", "runs_by_status"),
    ];
    for (sql, args, index) in cases {
        let plan = store.plan(sql, args).await?;
        assert!(plan.contains(index), "{sql}\n{plan}");
        assert!(!plan.contains("Seq Scan"), "{sql}\n{plan}");
        assert!(!plan.contains("Sort"), "{sql}\n{plan}");
    }
    Ok(())
}

/// PostgreSQL's text cannot hold NUL: an error text with one is kept with U+FFFD in
/// its place rather than failing the write (log lines keep NUL: the suite checks).
#[tokio::test]
async fn nul_in_free_text_does_not_fail_a_write() -> StoreResult<()> {
    let Some(stores) = stores("nul", 1).await else {
        return Ok(());
    };
    let store = &stores[0];
    store.create_run(run("r1", "j", 1), vec![]).await?;
    let failed = Run {
        status: RunStatus::Failed,
        ended_at: Some(at(2)),
        error: Some("exit 1: \0garbage".into()),
        ..run("r1", "j", 1)
    };
    store.update_run(failed).await?;
    let stored = store.get_run("r1").await?.expect("stored");
    assert_eq!(stored.error.as_deref(), Some("exit 1: \u{FFFD}garbage"));
    Ok(())
}

/// TLS when the URL asks for it, verified against `sslrootcert` (or the system's
/// roots, which do not know a private CA): a real handshake with a private server.
#[tokio::test]
async fn tls_is_used_and_verified_when_the_url_asks() -> StoreResult<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Petit test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let Some(server) =
        petit_tests::postgres::TestPostgres::start_tls(&server.pem(), &key.serialize_pem())
    else {
        return Ok(());
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("write the CA");
    let url = server.url();

    for mode in ["require", "verify-full"] {
        let tls = format!("{url}?sslmode={mode}&sslrootcert={}", ca_file.display());
        let store = PostgresStore::connect(&tls, test_options()).await?;
        let rows = store
            .sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .await?;
        assert!(rows[0].get::<_, bool>(0), "{mode}: the connection is TLS");
    }
    // No sslmode: no TLS, as before.
    let plain = PostgresStore::connect(&url, test_options()).await?;
    let rows = plain
        .sql("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .await?;
    assert!(!rows[0].get::<_, bool>(0));
    // The system's roots do not know the test CA: refused, and said so.
    let untrusted = PostgresStore::connect(&format!("{url}?sslmode=require"), test_options())
        .await
        .err()
        .map(|e| e.to_string())
        .expect("an unknown CA is refused");
    assert!(
        untrusted.contains("cannot connect to") && untrusted.contains("UnknownIssuer"),
        "{untrusted}"
    );
    // A missing CA file is a clear error too.
    let missing = PostgresStore::connect(
        &format!("{url}?sslmode=require&sslrootcert=/nonexistent/ca.pem"),
        test_options(),
    )
    .await
    .err()
    .map(|e| e.to_string())
    .expect("a missing CA file");
    assert!(
        missing.contains("cannot read sslrootcert /nonexistent/ca.pem"),
        "{missing}"
    );
    Ok(())
}

/// The server's own message reaches the error (the driver's says only "db error").
#[tokio::test]
async fn the_servers_message_is_in_the_error() -> StoreResult<()> {
    let Some(url) = postgres_database("server_message") else {
        return Ok(());
    };
    let (base, _) = url.rsplit_once('/').expect("a database in the URL");
    let error = match PostgresStore::connect(&format!("{base}/no_such_db"), test_options()).await {
        Ok(_) => panic!("a database that does not exist"),
        Err(error) => error.to_string(),
    };
    assert!(
        error.contains(r#"database "no_such_db" does not exist"#),
        "{error}"
    );
    Ok(())
}
