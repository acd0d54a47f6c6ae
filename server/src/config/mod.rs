//! Job files (the original Petit YAML format) and the global `petit.yaml`, parsed into
//! validated definitions. Every error names its file and line; all errors of a
//! directory are reported at once: each file is parsed on its own, then the checks
//! that span files (duplicate ids, job dependencies and their cycles) run over all of
//! them. Loading is linear in the size of the input: files have a size and a nesting
//! limit (`limits`), and the checks over a job's tasks are linear in tasks + edges.

mod de;
mod depth;
mod global;
mod job;
mod limits;
mod notify;
pub mod placeholder;
mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::core::{Dag, DagError, JobDef};

pub use global::{is_postgres_url, GlobalConfig};
pub use limits::JobFileLimits;

/// One thing wrong with one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; `None` when the error concerns the whole file.
    pub line: Option<usize>,
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(file: &Path, line: Option<usize>, message: impl Into<String>) -> Self {
        ConfigError {
            file: file.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// Every error found, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

/// Parses one job file on its own: everything but the checks that need the other
/// jobs of the directory (unknown upstream jobs, duplicate ids, cycles between jobs).
pub fn parse_job(text: &str, file: &Path, global: &GlobalConfig) -> Result<JobDef, ConfigErrors> {
    let parsed = job::parse_file(text, file, global);
    match parsed.job {
        Some(job) if parsed.errors.is_empty() => Ok(job),
        _ => Err(ConfigErrors(parsed.errors)),
    }
}

/// Loads every `*.yaml`/`*.yml` file of `dir` (hidden files skipped) as one job each,
/// sorted by id. An empty directory holds zero jobs.
pub fn load_jobs_dir(dir: &Path, global: &GlobalConfig) -> Result<Vec<JobDef>, ConfigErrors> {
    let files = job_files(dir)?;
    let mut errors = Vec::new();
    let mut parsed = Vec::with_capacity(files.len());
    for file in files {
        match global.job_files.read(&file, limits::Bounded::JobFile) {
            Ok(text) => parsed.push(job::parse_file(&text, &file, global)),
            Err(unread) => match unread.head {
                Some(head) => parsed.push(job::ParsedFile::unread(
                    &head,
                    &file,
                    unread.error,
                    global.job_files.max_depth,
                )),
                None => errors.push(unread.error),
            },
        }
    }
    errors.extend(cross_file_errors(&parsed));
    let mut jobs = Vec::with_capacity(parsed.len());
    for file in parsed {
        errors.extend(file.errors);
        jobs.extend(file.job);
    }
    if !errors.is_empty() {
        // By file then line; the sort is stable so one line's errors keep their order.
        errors.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        return Err(ConfigErrors(errors));
    }
    jobs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(jobs)
}

/// The job files of `dir`, sorted by path so that errors come out in a stable order.
fn job_files(dir: &Path) -> Result<Vec<PathBuf>, ConfigErrors> {
    let unreadable = |e: std::io::Error| {
        ConfigErrors::from(ConfigError::new(
            dir,
            None,
            format!("cannot read the jobs directory: {e}"),
        ))
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        // `metadata` follows symlinks: a link to a job file is a job file.
        if name.starts_with('.') || !is_yaml || !path.metadata().is_ok_and(|m| m.is_file()) {
            continue;
        }
        files.push(path);
    }
    files.sort();
    Ok(files)
}

/// Duplicate job ids, dependencies on jobs no file defines, and cycles between jobs.
/// Files that failed to parse still take part with what could be read of them (their
/// id at least), so that one broken file does not cause a cascade of "unknown job".
fn cross_file_errors(files: &[job::ParsedFile]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    // The first file of each id; later ones are the duplicates.
    let mut owners: BTreeMap<&str, &job::ParsedFile> = BTreeMap::new();
    for file in files {
        let Some(id) = file.id.as_deref() else {
            continue;
        };
        match owners.get(id) {
            Some(first) => errors.push(ConfigError::new(
                &file.path,
                file.id_line,
                format!(
                    "duplicate job id '{id}': {} defines it too",
                    first.path.display()
                ),
            )),
            None => {
                owners.insert(id, file);
            }
        }
    }

    let mut graph: Vec<(&str, Vec<&str>)> = Vec::with_capacity(owners.len());
    for (&id, file) in &owners {
        let mut upstreams = Vec::new();
        for dep in &file.depends_on {
            if dep.job_id == id {
                continue; // reported by the file's own parse
            }
            if owners.contains_key(dep.job_id.as_str()) {
                upstreams.push(dep.job_id.as_str());
            } else {
                errors.push(ConfigError::new(
                    &file.path,
                    dep.line,
                    format!("job '{id}' depends on unknown job '{}'", dep.job_id),
                ));
            }
        }
        graph.push((id, upstreams));
    }
    // Job dependencies form a DAG like tasks do; only the cycle report is new here.
    if let Err(dag_errors) = Dag::build(&graph) {
        for error in dag_errors {
            let DagError::Cycle(cycle) = error else {
                continue;
            };
            let Some(file) = cycle.first().and_then(|id| owners.get(id.as_str())) else {
                continue;
            };
            // The cycle lists upstreams first and ends with its first job repeated, so
            // the first job depends on the one before that repeat: point at that entry.
            let line = cycle
                .len()
                .checked_sub(2)
                .and_then(|i| cycle.get(i))
                .and_then(|upstream| file.depends_on.iter().find(|d| &d.job_id == upstream))
                .and_then(|d| d.line)
                .or(file.id_line);
            errors.push(ConfigError::new(
                &file.path,
                line,
                format!(
                    "job dependency cycle: {} (each job waits for the one before it)",
                    cycle.join(" -> ")
                ),
            ));
        }
    }
    errors
}

#[cfg(test)]
mod tests;
