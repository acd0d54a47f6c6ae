//! The live set of tokens petitd accepts: the tokens file as last read, read again as
//! soon as the file changes (checked with one `stat` per authenticated request, so a
//! revocation applies to the very next call, with no watcher thread). A file that can
//! no longer be read or parsed refuses every token until it is fixed: failing closed
//! is what keeps a revoked token out while an edit is half done.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use http::HeaderValue;
use subtle::ConstantTimeEq;
use tonic::Status;

use super::tokens::{self, TokenEntry};
use super::Caller;

/// What identifies one version of the file on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
    ctime_nsec: i64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: meta.mtime(),
            mtime_nsec: meta.mtime_nsec(),
            ctime_nsec: meta.ctime_nsec(),
        }
    }
}

struct Loaded {
    /// `None` when the file could not be stat'ed.
    stamp: Option<Stamp>,
    /// The hashes as raw bytes, or why the file is unusable.
    tokens: Result<Vec<(TokenEntry, [u8; 32])>, String>,
}

/// The tokens petitd accepts, following the tokens file.
pub struct Keyring {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl Keyring {
    /// Reads the tokens file at `path`. Errors when it cannot be read or is invalid, so
    /// that petitd refuses to start on a bad file rather than refusing every caller.
    pub fn open(path: &Path) -> Result<Keyring, tokens::TokensError> {
        let meta = std::fs::metadata(path).map_err(|source| tokens::TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let entries = tokens::list_tokens(path)?;
        Ok(Keyring {
            path: path.to_path_buf(),
            loaded: RwLock::new(Loaded {
                stamp: Some(Stamp::of(&meta)),
                tokens: Ok(with_hashes(entries)),
            }),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many tokens are accepted now.
    pub fn len(&self) -> usize {
        self.refresh();
        let loaded = self.loaded.read().expect("keyring lock");
        loaded.tokens.as_ref().map_or(0, Vec::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The caller a request's `authorization` header names, or UNAUTHENTICATED.
    pub fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Caller, Status> {
        let Some(token) = header.and_then(bearer) else {
            // Short, the fix first: the dashboard shows it on one 80-column line.
            return Err(Status::unauthenticated(
                "a token is required: set PETIT_TOKEN or --token-file (authorization: Bearer …)",
            ));
        };
        self.refresh();
        let presented = tokens::digest(token);
        let loaded = self.loaded.read().expect("keyring lock");
        let entries = match &loaded.tokens {
            Ok(entries) => entries,
            Err(reason) => {
                return Err(Status::unauthenticated(format!(
                    "petitd cannot check tokens now: {reason}"
                )))
            }
        };
        // Every entry is compared, in constant time each, so neither the time nor the
        // path taken says which token came close.
        let mut found: Option<&TokenEntry> = None;
        for (entry, hash) in entries {
            if bool::from(hash.ct_eq(&presented)) {
                found = Some(entry);
            }
        }
        match found {
            Some(entry) => Ok(Caller {
                name: entry.name.clone(),
                role: entry.role,
            }),
            None => Err(Status::unauthenticated(
                "token not valid (unknown or revoked): check PETIT_TOKEN or --token-file",
            )),
        }
    }

    /// Reads the file again if it changed since it was last read.
    fn refresh(&self) {
        let meta = std::fs::metadata(&self.path);
        let stamp = meta.as_ref().ok().map(Stamp::of);
        if self.loaded.read().expect("keyring lock").stamp == stamp && stamp.is_some() {
            return;
        }
        let mut loaded = self.loaded.write().expect("keyring lock");
        if loaded.stamp == stamp && stamp.is_some() {
            return; // another request reloaded it meanwhile
        }
        let tokens = match meta {
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
            Ok(_) => tokens::list_tokens(&self.path)
                .map(with_hashes)
                .map_err(|e| e.to_string()),
        };
        match &tokens {
            Ok(entries) => {
                tracing::info!(file = %self.path.display(), tokens = entries.len(), "tokens file reloaded")
            }
            Err(reason) => tracing::error!(
                "tokens file unusable, refusing every token until it is fixed: {reason}"
            ),
        }
        *loaded = Loaded { stamp, tokens };
    }
}

fn with_hashes(entries: Vec<TokenEntry>) -> Vec<(TokenEntry, [u8; 32])> {
    entries
        .into_iter()
        .map(|entry| {
            let mut raw = [0u8; 32];
            for (i, byte) in raw.iter_mut().enumerate() {
                *byte = u8::from_str_radix(&entry.sha256[2 * i..2 * i + 2], 16).unwrap_or(0);
            }
            (entry, raw)
        })
        .collect()
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, as RFC 6750 says).
fn bearer(value: &HeaderValue) -> Option<&str> {
    let value = value.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{create_token, revoke_token, Role};

    fn header(token: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap()
    }

    #[test]
    fn follows_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let ci = create_token(&path, "ci", Role::Operator).unwrap();
        let keyring = Keyring::open(&path).unwrap();
        let caller = keyring.authenticate(Some(&header(&ci))).unwrap();
        assert_eq!(caller.name, "ci");
        assert_eq!(caller.role, Role::Operator);
        assert_eq!(
            keyring.authenticate(None).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            keyring
                .authenticate(Some(&header("petit_nope")))
                .unwrap_err()
                .code(),
            tonic::Code::Unauthenticated
        );

        // Added and revoked without reopening.
        let dash = create_token(&path, "dash", Role::Viewer).unwrap();
        assert_eq!(
            keyring.authenticate(Some(&header(&dash))).unwrap().name,
            "dash"
        );
        revoke_token(&path, "ci").unwrap();
        assert!(keyring.authenticate(Some(&header(&ci))).is_err());

        // A broken file refuses everyone; fixed, it accepts again.
        std::fs::write(&path, "tokens: [").unwrap();
        assert!(keyring.authenticate(Some(&header(&dash))).is_err());
        std::fs::remove_file(&path).unwrap();
        assert!(keyring.authenticate(Some(&header(&dash))).is_err());
        let again = create_token(&path, "again", Role::Admin).unwrap();
        assert_eq!(
            keyring.authenticate(Some(&header(&again))).unwrap().role,
            Role::Admin
        );
    }

    #[test]
    fn bearer_values() {
        let cases = [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Basic abc", None),
            ("Bearer", None),
            ("Bearer ", None),
            ("abc", None),
        ];
        for (value, token) in cases {
            assert_eq!(bearer(&HeaderValue::from_static(value)), token, "{value}");
        }
    }
}
