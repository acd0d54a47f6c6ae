//! The floor under petitd's memory and API figures: the crates petitd is built from,
//! doing the least a petitd does and nothing of Petit's own. A tokio runtime as petitd
//! starts it, glibc's allocator set as petitd sets it, one SQLite database open (WAL),
//! and one port answering HTTP/1.1 and h2c as petitd's does: `grpc.health.v1` (tonic
//! and tonic-health), server reflection v1 and v1alpha (of health's and reflection's own
//! descriptors) and an axum `GET /api/health`.
//!
//! `make bench` builds it (`cargo build --release --example stack_floor`) and the
//! `idle` and `rest` benches measure it beside petitd (`PETIT_STACK_FLOOR`): whatever
//! petitd uses beyond this process is Petit's. It takes petitd's `--db` and `--listen`
//! (and `--jobs`, which it ignores, so that the benches start both alike) and logs the
//! `listening (gRPC …) addr=…` line petitd logs. Not part of Petit.

use std::net::SocketAddr;
use std::path::PathBuf;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;

fn main() -> anyhow::Result<()> {
    let mut db = PathBuf::from("stack_floor.db");
    let mut listen: SocketAddr = "127.0.0.1:0".parse()?;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        match (arg.as_str(), value) {
            ("--db", Some(v)) => db = v.into(),
            ("--listen", Some(v)) => listen = v.parse()?,
            ("--jobs", Some(_)) => {}
            _ => anyhow::bail!("usage: stack_floor [--db PATH] [--listen ADDR] [--jobs IGNORED]"),
        }
    }
    // As petitd's `alloc::tune` sets glibc's allocator, before any thread exists.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's malloc parameters, before other threads.
    unsafe {
        use nix::libc::{mallopt, M_ARENA_MAX, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD};
        mallopt(M_ARENA_MAX, 2);
        mallopt(M_MMAP_THRESHOLD, 128 * 1024);
        mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);
    }
    // Private, as petitd's database is (SQLite gives its WAL files the same mode).
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&db)?;
    }
    let sqlite = rusqlite::Connection::open(&db)?;
    let mode: String = sqlite.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    sqlite.execute_batch("CREATE TABLE IF NOT EXISTS runs (id TEXT PRIMARY KEY, status TEXT)")?;
    anyhow::ensure!(mode == "wal", "journal mode {mode}");

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(listen))?;
    drop(sqlite);
    Ok(())
}

async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let app = tonic::service::Routes::new(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .prepare()
        .into_axum_router()
        .route(
            "/api/health",
            axum::routing::get(|| async { axum::Json(serde_json::json!({"status": "SERVING"})) }),
        );

    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!(
        "stack_floor listening (gRPC and REST) addr={}",
        listener.local_addr()?
    );
    let builder = std::sync::Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let service = TowerToHyperService::new(app.clone());
        let builder = builder.clone();
        tokio::spawn(async move {
            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
        });
    }
}
