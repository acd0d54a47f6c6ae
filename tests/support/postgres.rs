//! A private PostgreSQL for tests: a cluster made by `initdb` and started by `pg_ctl`
//! from the installed server binaries (`pg_config --bindir`, or Debian's
//! `/usr/lib/postgresql/*/bin`) in a temp directory, on a free loopback port, with
//! trust authentication and durability off (tests need speed, not crash safety). As
//! root, the binaries run as the `postgres` user (PostgreSQL refuses root).
//!
//! With `PETIT_TEST_POSTGRES_URL` set, that server is used instead. Either way each
//! test takes a fresh database ([`TestPostgres::fresh_database`]), so tests share one
//! server per test process ([`TestPostgres::shared`]) and stay independent.
//!
//! Without PostgreSQL binaries the tests skip, loudly, and fail under CI (`CI` set),
//! which installs them (see `.ci/run`).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use tempfile::TempDir;

/// The environment variable naming a server to use instead of a private one.
pub const URL_VARIABLE: &str = "PETIT_TEST_POSTGRES_URL";

/// A PostgreSQL server for tests: private (stopped on drop) or external.
pub struct TestPostgres {
    server: Server,
    /// Numbers the databases this process creates, so their names never repeat.
    databases: AtomicUsize,
}

enum Server {
    Private(Private),
    External { url: String },
}

struct Private {
    bin: Binaries,
    data: PathBuf,
    port: u16,
    /// `pg_ctl start -o` options, to start it again after a stop.
    options: String,
    /// Holding this pipe keeps the watchdog waiting; when this process ends, however
    /// it ends, the pipe closes and the watchdog stops the server.
    watchdog: Option<(ChildStdin, Child)>,
    /// Last, so that the directory goes after the server stopped.
    dir: TempDir,
}

/// A certificate and key for a server that speaks TLS.
struct Tls {
    cert_pem: String,
    key_pem: String,
}

/// The server's binaries, run as the postgres user when we are root.
struct Binaries {
    dir: PathBuf,
    as_postgres: bool,
}

impl Binaries {
    fn command(&self, program: &str, cwd: &Path) -> Command {
        let path = self.dir.join(program);
        let mut command = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        };
        command.current_dir(cwd);
        command
    }
}

impl TestPostgres {
    /// Starts a private server (or takes the external one); `None`, after a loud
    /// `SKIPPED` on stderr, when there are no PostgreSQL binaries. Panics under CI
    /// rather than skip, and when a server that should start does not.
    pub fn start() -> Option<TestPostgres> {
        if let Ok(url) = std::env::var(URL_VARIABLE) {
            return Some(TestPostgres {
                server: Server::External { url },
                databases: AtomicUsize::new(0),
            });
        }
        let Some(bindir) = find_bindir() else {
            return skip_without_binaries();
        };
        Some(TestPostgres {
            server: Server::Private(Private::start(bindir, None)),
            databases: AtomicUsize::new(0),
        })
    }

    /// A private server of its own that also speaks TLS with this certificate and key
    /// (PEM); `None` as [`TestPostgres::start`] (an external server is not used: its
    /// TLS is not the test's to choose).
    pub fn start_tls(cert_pem: &str, key_pem: &str) -> Option<TestPostgres> {
        let Some(bindir) = find_bindir() else {
            return skip_without_binaries();
        };
        let tls = Tls {
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        };
        Some(TestPostgres {
            server: Server::Private(Private::start(bindir, Some(tls))),
            databases: AtomicUsize::new(0),
        })
    }

    /// One server for the whole test process, started on first use (see
    /// [`TestPostgres::start`]). It is stopped when the process exits.
    /// Stops a private server (fast shutdown: connections are cut), as a database
    /// outage; `false` for an external one, which a test cannot stop.
    pub fn stop_server(&self) -> bool {
        let Server::Private(private) = &self.server else {
            return false;
        };
        private
            .bin
            .command("pg_ctl", private.dir.path())
            .arg("-D")
            .arg(&private.data)
            .args(["-w", "-m", "fast", "stop"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl")
            .success()
    }

    /// Starts a private server stopped by [`TestPostgres::stop_server`] again, on the
    /// same port.
    pub fn start_server(&self) {
        let Server::Private(private) = &self.server else {
            return;
        };
        let log = private.dir.path().join("server.log");
        let started = private
            .bin
            .command("pg_ctl", private.dir.path())
            .arg("-D")
            .arg(&private.data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60", "-o", &private.options, "start"])
            .stdout(Stdio::null())
            .status()
            .expect("run pg_ctl");
        assert!(started.success(), "PostgreSQL did not start again");
    }

    pub fn shared() -> Option<&'static TestPostgres> {
        static SHARED: OnceLock<Option<TestPostgres>> = OnceLock::new();
        SHARED.get_or_init(TestPostgres::start).as_ref()
    }

    /// The URL of the server's `petit` database (the external URL as given).
    pub fn url(&self) -> String {
        match &self.server {
            Server::Private(p) => p.url("petit"),
            Server::External { url } => url.clone(),
        }
    }

    /// Creates database `name` and returns its URL.
    pub fn create_database(&self, name: &str) -> String {
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && !name.is_empty()
                && name.len() <= 63,
            "database name {name:?}: lowercase letters, digits and _ only, at most 63"
        );
        let sql = format!("CREATE DATABASE {name}");
        match &self.server {
            Server::Private(p) => {
                psql(&p.bin.dir.join("psql"), &p.url("postgres"), &sql);
                p.url(name)
            }
            Server::External { url } => {
                psql(&psql_path(), url, &sql);
                with_database(url, name)
            }
        }
    }

    /// A new database with a name no other test (of any process) has, for one test;
    /// `hint` (lowercase, digits, _) goes into the name for whoever looks at the server.
    pub fn fresh_database(&self, hint: &str) -> String {
        let n = self.databases.fetch_add(1, Ordering::Relaxed);
        let hint: String = hint
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        self.create_database(&format!("t{}_{n}_{hint}", std::process::id()))
    }
}

impl Private {
    fn start(bindir: PathBuf, tls: Option<Tls>) -> Private {
        let dir = tempfile::Builder::new()
            .prefix("petit-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let bin = Binaries {
            dir: bindir,
            as_postgres: running_as_root(),
        };
        if bin.as_postgres {
            let (uid, gid) = (id_of("-u"), id_of("-g"));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("give the temp dir to the postgres user");
        }
        let data = dir.path().join("data");
        let out = bin
            .command("initdb", dir.path())
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let mut tls_options = String::new();
        if let Some(tls) = tls {
            // PostgreSQL wants its key private and owned by the user it runs as.
            let (cert, key) = (dir.path().join("server.pem"), dir.path().join("server.key"));
            std::fs::write(&cert, &tls.cert_pem).expect("write the certificate");
            std::fs::write(&key, &tls.key_pem).expect("write the key");
            std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod the key");
            if bin.as_postgres {
                for file in [&cert, &key] {
                    std::os::unix::fs::chown(file, Some(id_of("-u")), Some(id_of("-g")))
                        .expect("give the TLS files to the postgres user");
                }
            }
            tls_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            );
        }
        let log = dir.path().join("server.log");
        // A free port may be taken between finding it and binding it: try a few.
        let mut port = None;
        let mut chosen = String::new();
        for _ in 0..3 {
            let candidate = free_port();
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {candidate} -k {} -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200{tls_options}",
                dir.path().display()
            );
            let started = bin
                .command("pg_ctl", dir.path())
                .arg("-D")
                .arg(&data)
                .arg("-l")
                .arg(&log)
                .args(["-w", "-t", "60", "-o", &options, "start"])
                .stdout(Stdio::null())
                .status()
                .expect("run pg_ctl");
            if started.success() {
                port = Some(candidate);
                chosen = options;
                break;
            }
        }
        let Some(port) = port else {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("PostgreSQL did not start:\n{text}");
        };
        let mut private = Private {
            bin,
            data,
            port,
            options: chosen,
            watchdog: None,
            dir,
        };
        private.watchdog = Some(private.start_watchdog());
        psql(
            &private.bin.dir.join("psql"),
            &private.url("postgres"),
            "CREATE DATABASE petit",
        );
        private
    }

    fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// A shell that waits for its stdin to close (this process gone), then stops the
    /// server: a shared server lives in a static, which is never dropped.
    fn start_watchdog(&self) -> (ChildStdin, Child) {
        let stop = format!(
            "read _; {} '{}' -D '{}' -m immediate stop; rm -rf '{}'",
            if self.bin.as_postgres {
                "runuser -u postgres --"
            } else {
                ""
            },
            self.bin.dir.join("pg_ctl").display(),
            self.data.display(),
            self.dir.path().display()
        );
        let mut child = Command::new("sh")
            .args(["-c", &stop])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the PostgreSQL watchdog");
        let stdin = child.stdin.take().expect("watchdog stdin");
        (stdin, child)
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        let _ = self
            .bin
            .command("pg_ctl", self.dir.path())
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Closing the pipe lets the watchdog go (its stop finds nothing left to do).
        if let Some((stdin, mut child)) = self.watchdog.take() {
            drop(stdin);
            let _ = child.wait();
        }
    }
}

/// Without PostgreSQL binaries: a loud skip, or under CI (which installs them) a
/// failure.
fn skip_without_binaries() -> Option<TestPostgres> {
    let message = "PostgreSQL server binaries (initdb, pg_ctl) are not installed: the \
                   PostgreSQL store tests need them (apt-get install -y postgresql, or set \
                   PETIT_TEST_POSTGRES_URL)";
    if std::env::var_os("CI").is_some() {
        panic!("{message}");
    }
    eprintln!("SKIPPED: {message}");
    None
}

/// Runs one SQL statement with psql; panics with psql's message when it fails.
fn psql(psql: &Path, url: &str, sql: &str) {
    let out = Command::new(psql)
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", psql.display()));
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// psql for an external server: the server binaries' one, or the one on `PATH`.
fn psql_path() -> PathBuf {
    find_bindir()
        .map(|dir| dir.join("psql"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("psql"))
}

/// `url` with its database replaced by `name`.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Where `initdb` and `pg_ctl` are.
fn find_bindir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").exists() && dir.join("pg_ctl").exists();
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        .filter(|dir| has_server(dir));
    from_pg_config.or_else(|| {
        // Debian installs the server's binaries outside PATH, one directory a version.
        let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|dir| has_server(dir))
            .collect();
        dirs.sort();
        dirs.pop()
    })
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// The postgres user's uid (`-u`) or gid (`-g`).
fn id_of(flag: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, "postgres"])
        .output()
        .expect("run id");
    assert!(
        out.status.success(),
        "running as root needs a postgres user to run PostgreSQL as: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric id")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn database_urls_swap_their_database() {
        let cases = [
            ("postgres://u:p@h:5/a", "postgres://u:p@h:5/x"),
            ("postgres://h", "postgres://h/x"),
            (
                "postgres://h/a?sslmode=require",
                "postgres://h/x?sslmode=require",
            ),
        ];
        for (url, expected) in cases {
            assert_eq!(with_database(url, "x"), expected);
        }
    }
}
