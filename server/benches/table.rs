//! The last step of `make bench`: prints the rows the benches before it recorded
//! (`support/table.rs`) as one table (every figure beside the raw limit measured in the
//! same run, their ratio, the target and the original Petit's figure from the issue
//! that set the target) and appends it to BENCHMARKS.md with the date, the machine
//! (cores, memory) and the commit. `PETIT_BENCH_APPEND=0` prints only.

use std::io::Write;
use std::process::Command;

#[path = "support/table.rs"]
mod table;

fn main() {
    let path = table::path();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            println!(
                "table: no rows at {} ({e}): run the other benches first (make bench)",
                path.display()
            );
            return;
        }
    };
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "\n## {} — `make bench` summary ({}, commit {})\n\n",
        today(),
        machine(),
        commit()
    ));
    out.push_str("| figure | Petit | raw limit, same run | ratio | target | original Petit |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    let mut section = "";
    for row in &rows {
        let cell = |i: usize| match row.get(i).map(|s| s.trim()) {
            Some("") | None => "—",
            Some(s) => s,
        };
        if cell(0) != section {
            section = row.first().copied().unwrap_or_default();
            out.push_str(&format!("| **{section}** | | | | | |\n"));
        }
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            cell(5),
            cell(6)
        ));
    }
    print!("{out}");
    if std::env::var("PETIT_BENCH_APPEND").as_deref() == Ok("0") {
        return;
    }
    let benchmarks = concat!(env!("CARGO_MANIFEST_DIR"), "/../BENCHMARKS.md");
    match std::fs::OpenOptions::new().append(true).open(benchmarks) {
        Ok(mut file) => match file.write_all(out.as_bytes()) {
            Ok(()) => println!("\ntable: appended to BENCHMARKS.md"),
            Err(e) => println!("\ntable: cannot append to BENCHMARKS.md: {e}"),
        },
        Err(e) => println!("\ntable: cannot open BENCHMARKS.md: {e}"),
    }
    // The next `make bench` starts a new table (the Makefile also clears it first).
    let _ = std::fs::rename(&path, path.with_extension("last.tsv"));
}

fn today() -> String {
    let out = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output();
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Err(_) => "(date unknown)".to_string(),
    }
}

/// `2 cores, 23.4 GiB`.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    format!("{cores} cores, {:.1} GiB", kib as f64 / 1024.0 / 1024.0)
}

/// The commit benched, `+dirty` when the tree had changes.
fn commit() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let hash = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty =
        git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    if dirty {
        format!("{hash}+dirty")
    } else {
        hash
    }
}
