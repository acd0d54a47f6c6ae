//! The tokens file: one entry per API token with its name, role, creation time and the
//! SHA-256 of the token (never the token itself). A token is 256 random bits, so a fast
//! hash is enough: there is nothing to guess from it. The file is YAML, created 0600,
//! and rewritten whole through a temporary file and a rename, so a reader (petitd
//! following its changes) never sees half of it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, SecondsFormat, Utc};
use rand::TryRngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do. Ordered: a higher role may do everything a lower one may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads, lists, watches and follows logs.
    Viewer,
    /// Also triggers, cancels, pauses and resumes.
    Operator,
    /// Everything, the audit record included.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role '{other}' (expected viewer, operator or admin)"
            )),
        }
    }
}

/// One token as the file keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<TokenEntry>,
}

const HEADER: &str = "# Petit API tokens: managed with `petitd token create|list|revoke`.\n\
# Only a hash of each token is kept; the token itself was shown once, when created.\n";

/// A token is this prefix and 64 hex digits (256 bits).
const TOKEN_PREFIX: &str = "petit_";

/// Longest token name accepted.
const MAX_NAME: usize = 64;

/// Tokens files are small; a bigger one is not a tokens file.
const MAX_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write the tokens file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the tokens file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("a token named '{0}' already exists (revoke it first, or choose another name)")]
    Exists(String),
    #[error("no token named '{0}'")]
    NotFound(String),
    #[error("invalid token name '{0}': use 1 to 64 letters, digits, '_', '-', '.' or '@'")]
    BadName(String),
    #[error("cannot get random bytes for a token: {0}")]
    Random(String),
}

/// The SHA-256 of `token`.
pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The hex SHA-256 of `token`, as the file keeps it.
pub fn hash(token: &str) -> String {
    hex(&digest(token))
}

/// `bytes` as lowercase hex digits.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// The entries of the tokens file at `path`.
pub fn list_tokens(path: &Path) -> Result<Vec<TokenEntry>, TokensError> {
    let read_error = |source| TokensError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(TokensError::Invalid {
            path: path.to_path_buf(),
            message: format!("it is larger than {MAX_FILE_BYTES} bytes"),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read_error)?;
    parse(path, &text)
}

fn parse(path: &Path, text: &str) -> Result<Vec<TokenEntry>, TokensError> {
    let invalid = |message: String| TokensError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    // An empty file (or one with only comments) holds no tokens.
    let file: TokensFile = if text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        TokensFile::default()
    } else {
        serde_yaml::from_str(text).map_err(|e| invalid(e.to_string()))?
    };
    let mut seen = std::collections::HashSet::new();
    for entry in &file.tokens {
        if !seen.insert(entry.name.as_str()) {
            return Err(invalid(format!("the name '{}' is used twice", entry.name)));
        }
        if entry.sha256.len() != 64 || !entry.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid(format!(
                "token '{}': sha256 is not 64 hex digits",
                entry.name
            )));
        }
    }
    Ok(file.tokens)
}

/// Adds a token named `name` with `role` to the file at `path` (created if missing)
/// and returns the token, which exists nowhere else: the file keeps only its hash.
pub fn create_token(path: &Path, name: &str, role: Role) -> Result<String, TokensError> {
    check_name(name)?;
    let mut tokens = match list_tokens(path) {
        Ok(tokens) => tokens,
        Err(TokensError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    if tokens.iter().any(|t| t.name == name) {
        return Err(TokensError::Exists(name.to_string()));
    }
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| TokensError::Random(e.to_string()))?;
    let token = format!("{TOKEN_PREFIX}{}", hex(&bytes));
    tokens.push(TokenEntry {
        name: name.to_string(),
        role,
        sha256: hash(&token),
        // Whole seconds: the file is read by people too.
        created_at: DateTime::from_timestamp(Utc::now().timestamp(), 0).unwrap_or_else(Utc::now),
    });
    write(path, &tokens)?;
    Ok(token)
}

/// Removes the token named `name`. petitd refuses it from its next request on.
pub fn revoke_token(path: &Path, name: &str) -> Result<(), TokensError> {
    let mut tokens = list_tokens(path)?;
    let before = tokens.len();
    tokens.retain(|t| t.name != name);
    if tokens.len() == before {
        return Err(TokensError::NotFound(name.to_string()));
    }
    write(path, &tokens)
}

fn check_name(name: &str) -> Result<(), TokensError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(TokensError::BadName(name.to_string()))
    }
}

/// Writes the whole file: a private temporary file beside it, synced, then renamed over
/// it (atomic for readers), then the directory synced.
fn write(path: &Path, tokens: &[TokenEntry]) -> Result<(), TokensError> {
    let write_error = |source| TokensError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut text = String::from(HEADER);
    text.push_str("tokens:\n");
    for t in tokens {
        // Names are checked to be plain words; the rest is ours. Written by hand so
        // the layout stays one short block per token.
        text.push_str(&format!(
            "  - name: \"{}\"\n    role: {}\n    sha256: {}\n    created_at: {}\n",
            t.name,
            t.role,
            t.sha256,
            t.created_at.to_rfc3339_opts(SecondsFormat::Secs, true)
        ));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokens".to_string());
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        crate::private_files::create_dir_all(&dir)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        // `mode` applies only when the file is created; a leftover temp file keeps its
        // mode otherwise.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_list_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let a = create_token(&path, "ci", Role::Operator).unwrap();
        let b = create_token(&path, "dash", Role::Viewer).unwrap();
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() == TOKEN_PREFIX.len() + 64);
        assert_ne!(a, b);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(&a) && !text.contains(&b),
            "the file keeps no token"
        );
        let listed = list_tokens(&path).unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0].name, "ci");
        assert_eq!(listed[0].role, Role::Operator);
        assert_eq!(listed[0].sha256, hash(&a));
        assert!(matches!(
            create_token(&path, "ci", Role::Admin),
            Err(TokensError::Exists(_))
        ));
        revoke_token(&path, "ci").unwrap();
        let listed = list_tokens(&path).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "dash");
        assert!(matches!(
            revoke_token(&path, "ci"),
            Err(TokensError::NotFound(_))
        ));
    }

    #[test]
    fn names_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        for bad in ["", "a b", "x\"y", "é", &"n".repeat(65), "a\nrole: admin"] {
            assert!(
                matches!(
                    create_token(&path, bad, Role::Viewer),
                    Err(TokensError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        create_token(&path, "ci-bot_1.prod@host", Role::Viewer).unwrap();
    }

    #[test]
    fn invalid_files_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.yaml");
        let cases = [
            "tokens: [{name: a, role: root, sha256: x, created_at: 2026-01-01T00:00:00Z}]",
            "tokens: [{name: a, role: admin, sha256: xyz, created_at: 2026-01-01T00:00:00Z}]",
            "nonsense: 1",
        ];
        for text in cases {
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(list_tokens(&path), Err(TokensError::Invalid { .. })),
                "{text}"
            );
        }
        std::fs::write(&path, "# nothing yet\n").unwrap();
        assert!(list_tokens(&path).unwrap().is_empty());
    }

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().is_err());
    }
}
