//! `make bench`'s summary table: each bench records the figures it measured as rows
//! (the figure, Petit's value, the raw limit measured in the same run, their ratio,
//! the target, the original Petit's figure where the issue measured one), and the last
//! bench (`table`) prints them as one table and appends it to BENCHMARKS.md.
//!
//! Rows go to `PETIT_BENCH_TABLE` (default `target/bench-table.tsv` at the workspace
//! root), one tab-separated line each; a bench run on its own just adds to the file.

#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// Where rows go.
pub fn path() -> PathBuf {
    match std::env::var_os("PETIT_BENCH_TABLE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-table.tsv"),
    }
}

/// One row of the summary table. `section` groups rows (`REST`, `tasks`, `logs`...);
/// empty strings print as `—`.
pub struct Row<'a> {
    pub section: &'a str,
    pub figure: &'a str,
    pub petit: String,
    pub raw: String,
    pub ratio: String,
    pub target: &'a str,
    pub original: &'a str,
}

/// Appends `row` to the table file (never fails the bench: a row that cannot be written
/// is reported and dropped).
pub fn record(row: Row<'_>) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let line = [
        row.section,
        row.figure,
        &row.petit,
        &row.raw,
        &row.ratio,
        row.target,
        row.original,
    ]
    .map(clean)
    .join("\t");
    let path = path();
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let result = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = result {
        eprintln!("bench table: cannot write {}: {e}", path.display());
    }
}

/// `x` as a ratio: `1.23×`.
pub fn ratio(petit: f64, raw: f64) -> String {
    if raw > 0.0 {
        format!("{:.2}×", petit / raw)
    } else {
        String::new()
    }
}

/// A duration in milliseconds, to two decimals.
pub fn ms(d: std::time::Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}
