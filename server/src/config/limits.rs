//! The bounds on what a YAML file may ask of the loader: its size, checked before the
//! file is read (and enforced while reading, should it grow), and its nesting depth,
//! checked by a linear scan before the parser sees the text (see `depth`). Both keep
//! loading linear in the size of the input, whatever the input.

use std::fmt;
use std::io::Read;
use std::path::Path;

use super::depth::check_depth;
use super::ConfigError;

/// The limits of `petit.yaml`'s `job_files:` (also applied to `petit.yaml` itself,
/// with the defaults, since it is read before it can say otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobFileLimits {
    /// Largest job file, in bytes. Default 1 MiB.
    pub max_bytes: u64,
    /// Deepest nesting of lists and mappings. Default 64.
    pub max_depth: usize,
}

impl Default for JobFileLimits {
    fn default() -> Self {
        JobFileLimits {
            max_bytes: 1 << 20,
            max_depth: 64,
        }
    }
}

/// A byte count the way people write it: `1 MiB`, `1536 KiB`, `100 bytes`.
struct Size(u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
            if n >= 1 << shift && n % (1 << shift) == 0 {
                return write!(f, "{} {unit}", n >> shift);
            }
        }
        write!(f, "{n} bytes")
    }
}

/// Why a file was not read, and its first `max_bytes` when it was too big (what
/// it says its id is still counts, so that other jobs depending on it do not fail too).
#[derive(Debug)]
pub(super) struct Unread {
    pub error: ConfigError,
    pub head: Option<String>,
}

/// Which file a limit applies to: what the error says raises it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bounded {
    JobFile,
    /// `petit.yaml` itself, read with the default limits (nothing raises them).
    GlobalConfig,
}

impl Bounded {
    fn hint(self, key: &str) -> String {
        match self {
            Bounded::JobFile => format!("; job_files.{key} in petit.yaml raises it"),
            Bounded::GlobalConfig => String::new(),
        }
    }
}

impl JobFileLimits {
    /// The error for a text of `size` bytes over the size limit, at the line where the
    /// limit falls (`head` is the text up to the limit).
    fn too_big(&self, file: &Path, head: &[u8], size: u64, what: Bounded) -> ConfigError {
        let line = 1 + head.iter().filter(|&&b| b == b'\n').count();
        ConfigError::new(
            file,
            Some(line),
            format!(
                "the file is larger than the limit of {} (it has {size} bytes; the limit \
                 falls on this line){}",
                Size(self.max_bytes),
                what.hint("max_bytes")
            ),
        )
    }

    /// Reads `file` as UTF-8 text, never more than the size limit (plus one byte to
    /// tell that there is more), so that a huge file costs no more than a big one.
    pub(super) fn read(&self, file: &Path, what: Bounded) -> Result<String, Unread> {
        let cannot = |e: std::io::Error| Unread {
            error: ConfigError::new(file, None, format!("cannot read: {e}")),
            head: None,
        };
        let handle = std::fs::File::open(file).map_err(cannot)?;
        let size = handle.metadata().map_err(cannot)?.len();
        let mut bytes = Vec::with_capacity(size.min(self.max_bytes) as usize);
        handle
            .take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        if bytes.len() as u64 > self.max_bytes {
            // The size on disk, or what was read if the file grew since.
            let size = size.max(bytes.len() as u64);
            bytes.truncate(self.max_bytes as usize);
            return Err(Unread {
                error: self.too_big(file, &bytes, size, what),
                head: Some(String::from_utf8_lossy(&bytes).into_owned()),
            });
        }
        String::from_utf8(bytes).map_err(|_| Unread {
            error: ConfigError::new(file, None, "the file is not UTF-8"),
            head: None,
        })
    }

    /// Checks a text already in memory against both limits.
    pub(super) fn check(&self, text: &str, file: &Path, what: Bounded) -> Result<(), ConfigError> {
        if text.len() as u64 > self.max_bytes {
            let head = &text.as_bytes()[..self.max_bytes as usize];
            return Err(self.too_big(file, head, text.len() as u64, what));
        }
        check_depth(text, self.max_depth).map_err(|deep| {
            ConfigError::new(
                file,
                Some(deep.line),
                format!(
                    "lists and mappings are nested more than {} deep here{}",
                    deep.limit,
                    what.hint("max_depth")
                ),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_written() {
        for (n, want) in [
            (1 << 20, "1 MiB"),
            (3 << 30, "3 GiB"),
            (1536 << 10, "1536 KiB"),
            (1000, "1000 bytes"),
            (0, "0 bytes"),
        ] {
            assert_eq!(Size(n).to_string(), want);
        }
    }

    #[test]
    fn a_file_over_the_limit_is_refused_at_the_line_that_passes_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("big.yaml");
        // 10 lines of 10 bytes: the 64th byte is on line 7.
        std::fs::write(&file, "# 4567890\n".repeat(10)).unwrap();
        let limits = JobFileLimits {
            max_bytes: 64,
            ..JobFileLimits::default()
        };
        let unread = limits.read(&file, Bounded::JobFile).unwrap_err();
        assert_eq!(
            unread.head.as_deref(),
            Some(&"# 4567890\n".repeat(10)[..64])
        );
        let err = unread.error;
        assert_eq!((err.file.as_path(), err.line), (file.as_path(), Some(7)));
        assert!(
            err.message
                == "the file is larger than the limit of 64 bytes (it has 100 bytes; the \
                    limit falls on this line); job_files.max_bytes in petit.yaml raises it",
            "{}",
            err.message
        );
        // The same from a text in memory.
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(limits.check(&text, &file, Bounded::JobFile), Err(err));

        // At the limit exactly, it is read.
        let limits = JobFileLimits {
            max_bytes: 100,
            ..JobFileLimits::default()
        };
        assert_eq!(limits.read(&file, Bounded::JobFile).unwrap(), text);
        assert_eq!(limits.check(&text, &file, Bounded::JobFile), Ok(()));
    }

    #[test]
    fn unreadable_and_non_utf8_files() {
        let dir = tempfile::tempdir().unwrap();
        let limits = JobFileLimits::default();
        let missing = limits
            .read(&dir.path().join("nope.yaml"), Bounded::JobFile)
            .unwrap_err()
            .error;
        assert!(missing.message.starts_with("cannot read: "), "{missing}");
        assert_eq!(missing.line, None);
        let latin1 = dir.path().join("latin1.yaml");
        std::fs::write(&latin1, b"id: caf\xe9\n").unwrap();
        assert_eq!(
            limits
                .read(&latin1, Bounded::GlobalConfig)
                .unwrap_err()
                .error
                .message,
            "the file is not UTF-8"
        );
    }

    #[test]
    fn too_deep_names_its_line() {
        let text = format!("id: x\ntasks: {}\n", "[".repeat(100));
        let err = JobFileLimits::default()
            .check(&text, Path::new("/jobs/deep.yaml"), Bounded::JobFile)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "/jobs/deep.yaml:2: lists and mappings are nested more than 64 deep here; \
             job_files.max_depth in petit.yaml raises it"
        );
    }
}
