//! petitd at rest, as a small board sees it: start-up to healthy, resident memory once
//! started (with what it is made of: the binary's pages, libraries, heap and stacks, from
//! `/proc/PID/smaps`), and the CPU time and wake-ups (context switches of all its
//! threads) over `IDLE_BENCH_SECONDS` (default 10; the issue measured one minute) of
//! idleness, with 4 jobs and with 1,000 (each with a daily schedule). The raw limit for
//! memory is the crates petitd is made of doing the least a petitd does
//! (`PETIT_STACK_FLOOR`, the `stack_floor` example `make bench` builds, measured as
//! petitd is), beside a process that does nothing (`sleep`); for start-up a process
//! start (`petitd --version`). `PETITD=/a/petitd:/b/petitd` compares builds. Nothing
//! asserts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "support/table.rs"]
mod table;

fn job_yaml(id: &str) -> String {
    format!(
        "id: {id}\nname: Job {id}\nschedule: \"0 0 2 * * *\"\ntasks:\n  - id: a\n    command: \"true\"\n  - id: b\n    command: \"true\"\n    depends_on: [a]\n"
    )
}

struct Daemon {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts petitd on `jobs` generated jobs; returns it once `/api/health` answers, how
/// long that took from the spawn, and the CPU time (ms) it had used by then.
fn start(petitd: &Path, jobs: usize) -> (Daemon, Duration, f64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let jobs_dir = dir.path().join("jobs");
    std::fs::create_dir_all(&jobs_dir).expect("jobs dir");
    for i in 0..jobs {
        let id = format!("job_{i:04}");
        std::fs::write(jobs_dir.join(format!("{id}.yaml")), job_yaml(&id)).expect("job");
    }
    let port = free_port();
    let started = Instant::now();
    let child = Command::new(petitd)
        .arg("--jobs")
        .arg(&jobs_dir)
        .arg("--db")
        .arg(dir.path().join("petit.db"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn petitd");
    let daemon = Daemon { child, _dir: dir };
    let deadline = started + Duration::from_secs(30);
    loop {
        if healthy(port) {
            let took = started.elapsed();
            let (cpu, _) = cpu_and_switches(daemon.child.id());
            return (daemon, took, cpu);
        }
        assert!(Instant::now() < deadline, "petitd did not get healthy");
        std::thread::sleep(Duration::from_micros(500));
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

fn healthy(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let request = "GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut reply = String::new();
    let _ = stream.read_to_string(&mut reply);
    reply.starts_with("HTTP/1.1 200") && reply.contains("SERVING")
}

/// Resident KiB of `pid` by kind of mapping.
#[derive(Default, Debug, Clone, Copy)]
struct Resident {
    total: u64,
    binary: u64,
    libraries: u64,
    heap_and_anon: u64,
    stacks: u64,
}

fn resident(pid: u32, binary: &Path) -> Resident {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("petitd");
    let mut r = Resident::default();
    let mut kind = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && !first.ends_with(':') {
            let path = line.split_whitespace().nth(5).unwrap_or("");
            kind = if path.ends_with(name) {
                1
            } else if path.starts_with('/') {
                2
            } else if path.starts_with("[stack") {
                4
            } else {
                3
            };
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.trim().trim_end_matches(" kB").trim().parse().unwrap_or(0);
            r.total += kib;
            match kind {
                1 => r.binary += kib,
                2 => r.libraries += kib,
                4 => r.stacks += kib,
                _ => r.heap_and_anon += kib,
            }
        }
    }
    r
}

/// The binary's code resident in `pid`, in KiB: in all, and outside `.text.hot` (the
/// functions build.rs lays out first, from server/hot-text.txt), with that section's
/// size. Read from the binary's section headers and `/proc/PID/pagemap`'s present bits;
/// `None` when either cannot be read. Code resident outside `.text.hot` beyond a few
/// 64 KiB windows says that the list has aged: `make hot-text` renews it.
fn code_layout(pid: u32, binary: &Path) -> Option<(u64, u64, u64)> {
    let elf = std::fs::read(binary).ok()?;
    let u16_at = |o: usize| Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?));
    let (shoff, shentsize) = (u64_at(0x28)? as usize, u16_at(0x3a)?);
    let (shnum, shstrndx) = (u16_at(0x3c)?, u16_at(0x3e)?);
    let names = u64_at(shoff + shstrndx * shentsize + 24)? as usize;
    let mut hot = (0, 0);
    for i in 0..shnum {
        let header = shoff + i * shentsize;
        let name = &elf.get(names + u32_at(header)?..)?;
        if name.starts_with(b".text.hot\0") {
            hot = (u64_at(header + 16)?, u64_at(header + 32)?);
        }
    }
    // A position-independent petitd: its first mapping (offset 0) is its base address.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let real = std::fs::canonicalize(binary).ok()?;
    let mut base = None;
    let mut code = Vec::new();
    for line in maps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < 6 || Path::new(fields[5]) != real {
            continue;
        }
        let (start, end) = fields[0].split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        if fields[2].trim_start_matches('0').is_empty() && base.is_none() {
            base = Some(start);
        }
        if fields[1].contains('x') {
            code.push((start, end));
        }
    }
    let base = base?;
    let mut pagemap = std::fs::File::open(format!("/proc/{pid}/pagemap")).ok()?;
    let (mut all, mut outside) = (0, 0);
    for (start, end) in code {
        let mut entries = vec![0u8; ((end - start) / 4096 * 8) as usize];
        std::io::Seek::seek(&mut pagemap, std::io::SeekFrom::Start(start / 4096 * 8)).ok()?;
        pagemap.read_exact(&mut entries).ok()?;
        for (i, entry) in entries.chunks_exact(8).enumerate() {
            if u64::from_le_bytes(entry.try_into().ok()?) >> 63 == 1 {
                let at = start + i as u64 * 4096 - base;
                all += 4;
                if !(hot.0..hot.0 + hot.1).contains(&at) {
                    outside += 4;
                }
            }
        }
    }
    Some((all, outside, hot.1 / 1024))
}

/// How `code_layout` reads in a report line.
fn code_words(pid: u32, binary: &Path) -> String {
    match code_layout(pid, binary) {
        Some((all, _, 0)) => format!("code {}, no .text.hot", mib(all)),
        Some((all, outside, hot)) => format!(
            "code {} of which {} outside the {} of .text.hot",
            mib(all),
            mib(outside),
            mib(hot)
        ),
        None => "code: unread".to_string(),
    }
}

/// petitd's watchdog (`petitd-watchdog`, a child the daemon forks): its resident KiB and
/// proportional KiB (PSS: the pages it shares with the daemon counted half).
fn watchdog(pid: u32) -> Option<(u64, u64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let child = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|child| {
            std::fs::read_to_string(format!("/proc/{child}/comm"))
                .is_ok_and(|comm| comm.trim_end() == petit_server::exec::watchdog::NAME)
        })?;
    let rollup = std::fs::read_to_string(format!("/proc/{child}/smaps_rollup")).ok()?;
    let field = |name: &str| {
        rollup.lines().find_map(|line| {
            let value = line.strip_prefix(name)?.trim().trim_end_matches(" kB");
            value.trim().parse::<u64>().ok()
        })
    };
    Some((field("Rss:")?, field("Pss:")?))
}

/// utime + stime in ms, and each thread's context switches (by thread id).
fn cpu_and_switches(pid: u32) -> (f64, std::collections::HashMap<String, u64>) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    let mut switches = std::collections::HashMap::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            let n: u64 = status
                .lines()
                .filter_map(|line| {
                    line.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .sum();
            switches.insert(task.file_name().to_string_lossy().into_owned(), n);
        }
    }
    (ticks * 1000.0 / hz, switches)
}

/// Context switches between two looks: of the threads alive at the second, since the
/// first (all of a thread's own for one born meanwhile; a thread that ended in between
/// counts as one).
fn wakeups(
    before: &std::collections::HashMap<String, u64>,
    after: &std::collections::HashMap<String, u64>,
) -> u64 {
    let alive: u64 = after
        .iter()
        .map(|(tid, n)| n.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    let ended = before
        .keys()
        .filter(|tid| !after.contains_key(*tid))
        .count() as u64;
    alive + ended
}

fn threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn binaries() -> Vec<PathBuf> {
    match std::env::var_os("PETITD") {
        Some(list) => std::env::split_paths(&list).collect(),
        None => vec![PathBuf::from(env!("CARGO_BIN_EXE_petitd"))],
    }
}

/// The `stack_floor` example's binary, when `PETIT_STACK_FLOOR` names it.
fn stack_floor() -> Option<PathBuf> {
    let Some(path) = std::env::var_os("PETIT_STACK_FLOOR").map(PathBuf::from) else {
        println!("idle: PETIT_STACK_FLOOR unset (make bench sets it): the crates' floor skipped");
        return None;
    };
    if path.exists() {
        return Some(path);
    }
    println!(
        "idle: PETIT_STACK_FLOOR={} does not exist: the crates' floor skipped",
        path.display()
    );
    None
}

fn main() {
    let seconds: u64 = std::env::var("IDLE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let rounds = 5;
    // The floor of memory: a process that does nothing.
    let mut sleeper = Command::new("sleep").arg("30").spawn().expect("sleep");
    std::thread::sleep(Duration::from_millis(100));
    let floor = resident(sleeper.id(), Path::new("sleep"));
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    println!(
        "idle: a process doing nothing (sleep): {} resident; {seconds} s of idleness each",
        mib(floor.total)
    );
    // The floor of a petitd's memory: its crates serving health, with nothing of Petit.
    let stack = stack_floor().map(|binary| {
        let (daemon, _, _) = start(&binary, 0);
        std::thread::sleep(Duration::from_secs(2));
        let mem = resident(daemon.child.id(), &binary);
        println!(
            "idle: the crates alone ({}): {} resident (binary {}, libraries {}, heap and anonymous {}, stacks {}; {} threads)",
            binary.display(),
            mib(mem.total),
            mib(mem.binary),
            mib(mem.libraries),
            mib(mem.heap_and_anon),
            mib(mem.stacks),
            threads(daemon.child.id()),
        );
        mem
    });
    let list = binaries();
    for (b, petitd) in list.iter().enumerate() {
        println!("  petitd {}", petitd.display());
        let version_start = {
            let mut times: Vec<Duration> = (0..rounds)
                .map(|_| {
                    let t = Instant::now();
                    let _ = Command::new(petitd).arg("--version").output();
                    t.elapsed()
                })
                .collect();
            times.sort();
            times[rounds / 2]
        };
        for jobs in [4usize, 1000] {
            let mut starts = Vec::new();
            let mut cpus = Vec::new();
            for _ in 0..rounds {
                let (daemon, took, cpu) = start(petitd, jobs);
                starts.push(took);
                cpus.push(cpu);
                drop(daemon);
            }
            starts.sort();
            cpus.sort_by(f64::total_cmp);
            let startup = starts[rounds / 2];
            let startup_cpu = cpus[rounds / 2];
            let (daemon, _, _) = start(petitd, jobs);
            let pid = daemon.child.id();
            // Let start-up work (the first health answers, the trimmer) finish.
            std::thread::sleep(Duration::from_secs(2));
            let mem = resident(pid, petitd);
            let (cpu0, sw0) = cpu_and_switches(pid);
            std::thread::sleep(Duration::from_secs(seconds));
            let (cpu1, sw1) = cpu_and_switches(pid);
            let after = resident(pid, petitd);
            println!(
                "    {jobs:>4} jobs: start-up to healthy {:.1} ms, {:.0} ms CPU (a bare process start: {:.1} ms); \
                 resident {} (binary {} ({}), libraries {}, heap and anonymous {}, stacks {}; {} threads), \
                 {} after {seconds} s; idle: {:.0} ms CPU, {} wake-ups; its watchdog {}",
                startup.as_secs_f64() * 1e3,
                startup_cpu,
                version_start.as_secs_f64() * 1e3,
                mib(mem.total),
                mib(mem.binary),
                code_words(pid, petitd),
                mib(mem.libraries),
                mib(mem.heap_and_anon),
                mib(mem.stacks),
                threads(pid),
                mib(after.total),
                cpu1 - cpu0,
                wakeups(&sw0, &sw1),
                match watchdog(pid) {
                    Some((rss, pss)) => format!("{} resident, {} PSS", mib(rss), mib(pss)),
                    None => "not found".to_string(),
                },
            );
            if b + 1 == list.len() {
                let (target, original) = match jobs {
                    4 => ("≤ 8 MiB", "12.5 MiB"),
                    _ => ("≤ 10 MiB", "19.4 MiB"),
                };
                table::record(table::Row {
                    section: "idle",
                    figure: &format!("resident memory idle, {jobs} jobs"),
                    petit: format!(
                        "{} (binary {}, heap {})",
                        mib(mem.total),
                        mib(mem.binary),
                        mib(mem.heap_and_anon)
                    ),
                    raw: match stack {
                        Some(stack) => format!(
                            "{} (its crates alone: binary {}, heap {}); sleep {}",
                            mib(stack.total),
                            mib(stack.binary),
                            mib(stack.heap_and_anon),
                            mib(floor.total)
                        ),
                        None => format!("{} (sleep)", mib(floor.total)),
                    },
                    ratio: table::ratio(mem.total as f64, stack.unwrap_or(floor).total as f64),
                    target,
                    original,
                });
                if let (4, Some((rss, pss))) = (jobs, watchdog(pid)) {
                    table::record(table::Row {
                        section: "idle",
                        figure: "resident memory idle, its watchdog process",
                        petit: format!("{} ({} PSS)", mib(rss), mib(pss)),
                        raw: String::new(),
                        ratio: String::new(),
                        target: "—",
                        original: "none",
                    });
                }
                if jobs == 1000 {
                    table::record(table::Row {
                        section: "idle",
                        figure: "start-up to healthy, 1,000 jobs",
                        petit: format!("{} ({startup_cpu:.0} ms CPU)", table::ms(startup)),
                        raw: format!("{} (a process start)", table::ms(version_start)),
                        ratio: table::ratio(startup.as_secs_f64(), version_start.as_secs_f64()),
                        target: "keep ≤ 100 ms",
                        original: "289 ms",
                    });
                    table::record(table::Row {
                        section: "idle",
                        figure: &format!("idle CPU, 1,000 jobs, {seconds} s"),
                        petit: format!("{:.0} ms, {} wake-ups", cpu1 - cpu0, wakeups(&sw0, &sw1)),
                        raw: String::new(),
                        ratio: String::new(),
                        target: "keep 0 ms, 0 wake-ups",
                        original: "90 ms a minute",
                    });
                }
            }
        }
    }
}
