//! One job file: the original Petit YAML format parsed once into a tree that keeps
//! every node's line (`yaml`), read into the structs of `raw` (every unknown field and
//! every value of the wrong type reported), then validated into a `JobDef` by `check`,
//! collecting every semantic error of the file with the line of the item it is about,
//! asked of the same tree.

mod check;
mod raw;

use std::path::{Path, PathBuf};

use super::limits::Bounded;
use super::yaml::{self, top_level_id, At, Doc};
use super::{ConfigError, GlobalConfig};
use crate::core::JobDef;

pub(super) use check::retry_policy;
pub(super) use raw::RawRetry;

/// A job dependency as read, for the checks across files.
#[derive(Debug, Clone)]
pub(super) struct FileDependency {
    pub job_id: String,
    pub line: Option<usize>,
}

/// What one file yielded: the job when it is valid, and what the checks across files
/// need even when it is not.
#[derive(Debug)]
pub(super) struct ParsedFile {
    pub path: PathBuf,
    pub id: Option<String>,
    pub id_line: Option<usize>,
    pub depends_on: Vec<FileDependency>,
    pub job: Option<JobDef>,
    pub errors: Vec<ConfigError>,
}

impl ParsedFile {
    /// A file that could not be parsed whole because of `error`: only its id, as far
    /// as `text` (a part of it, perhaps) can be read.
    pub(super) fn unread(
        text: &str,
        file: &Path,
        error: ConfigError,
        max_depth: usize,
    ) -> ParsedFile {
        let id = top_level_id(text, max_depth);
        ParsedFile {
            path: file.to_path_buf(),
            id_line: id.as_ref().map(|(_, line)| *line),
            id: id.map(|(id, _)| id),
            depends_on: Vec::new(),
            job: None,
            errors: vec![error],
        }
    }
}

/// Whether `text` holds nothing but blank lines, comments and document markers.
pub(super) fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    })
}

/// Parses and validates one file, collecting all of its errors.
pub(super) fn parse_file(text: &str, file: &Path, global: &GlobalConfig) -> ParsedFile {
    if is_blank(text) {
        let error = ConfigError::new(
            file,
            None,
            "the file is empty (a job needs at least `id` and `tasks`)",
        );
        return ParsedFile::unread("", file, error, 0);
    }
    let max_depth = global.job_files.max_depth;
    // Before the parser sees the text: scanning deep flow collections is quadratic in
    // their depth.
    if let Err(error) = global.job_files.check(text, file, Bounded::JobFile) {
        return ParsedFile::unread(text, file, error, max_depth);
    }
    let doc = match Doc::parse(text) {
        Ok(doc) => doc,
        Err(e) => {
            let error = ConfigError::new(file, Some(e.line), e.message);
            return ParsedFile::unread(text, file, error, max_depth);
        }
    };
    // Unknown fields and values of the wrong type do not stop the reading: they are
    // reported with everything else.
    let reading = yaml::read::<raw::RawJob>(&doc, file);
    let root = doc.root();
    let Some(raw) = reading.value else {
        // Still name the job, so that the other files' checks know it exists.
        return ParsedFile {
            path: file.to_path_buf(),
            id: root.get("id").and_then(At::scalar).map(str::to_string),
            id_line: root.key_line("id"),
            depends_on: Vec::new(),
            job: None,
            errors: reading.errors,
        };
    };
    let mut parsed = ParsedFile {
        path: file.to_path_buf(),
        id: Some(raw.id.clone()),
        id_line: root.key_line("id"),
        depends_on: Vec::new(),
        job: None,
        errors: reading.errors,
    };
    let checked = check::job(raw, root, text, &reading.unreadable, file, global);
    parsed.depends_on = checked.depends_on;
    parsed.errors.extend(checked.errors);
    // In file order; the sort is stable so one line's errors keep their order.
    parsed.errors.sort_by_key(|e| e.line);
    parsed.job = checked
        .job
        .filter(|_| parsed.errors.is_empty())
        .map(|job| JobDef {
            definition: definition_hash(text),
            ..job
        });
    parsed
}

/// A job's definition hash: the first 16 hex digits of the SHA-256 of its file.
pub(super) fn definition_hash(text: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}
