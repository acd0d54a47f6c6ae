//! The scratch directory of an engine: where tasks' `$PETIT_OUTPUT` files live.

use super::*;

/// A scratch directory that could not be made ready: what, and the I/O error.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct ScratchError {
    pub context: String,
    pub source: std::io::Error,
}

impl ScratchError {
    fn new(context: String, source: std::io::Error) -> ScratchError {
        ScratchError { context, source }
    }
}

/// The directory of an engine's `$PETIT_OUTPUT` files.
pub enum Scratch {
    /// A new temporary directory, removed when dropped.
    Temp(tempfile::TempDir),
    /// A directory the engine owns alone, kept between starts.
    Owned(PathBuf),
}

impl Scratch {
    /// `dir` emptied (what a crashed predecessor left there goes) and created, or a
    /// new temporary directory when `None`. Blocking file system work; the error says
    /// what could not be done to which directory, and why.
    pub fn create(dir: Option<PathBuf>) -> Result<Scratch, ScratchError> {
        let Some(dir) = dir else {
            return tempfile::Builder::new()
                .prefix(&format!("petit-{}-", std::process::id()))
                .tempdir()
                .map(Scratch::Temp)
                .map_err(|e| {
                    ScratchError::new(
                        format!(
                            "cannot create a scratch directory in {}",
                            std::env::temp_dir().display()
                        ),
                        e,
                    )
                });
        };
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(ScratchError::new(
                    format!("cannot empty the scratch directory {}", dir.display()),
                    e,
                ))
            }
        }
        crate::private_files::create_dir_all(&dir).map_err(|e| {
            ScratchError::new(
                format!("cannot create the scratch directory {}", dir.display()),
                e,
            )
        })?;
        Ok(Scratch::Owned(dir))
    }

    pub fn path(&self) -> &Path {
        match self {
            Scratch::Temp(dir) => dir.path(),
            Scratch::Owned(dir) => dir,
        }
    }
}
