//! Which store a daemon uses, from its flags and `petit.yaml`: SQLite (the default, a
//! file), memory (`--in-memory`), or a shared PostgreSQL (cluster mode).

use std::path::PathBuf;
use std::sync::Arc;

use super::{ClusterStore, MemoryStore, SqliteStore, Store, StoreOptions, StoreResult};
use crate::config::{is_postgres_url, GlobalConfig};

/// Where the history is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    Memory,
    Sqlite(PathBuf),
    /// Cluster mode. The URL may hold a password: never log it (see [`super::redact_database_url`]).
    Postgres {
        url: String,
        password_file: Option<PathBuf>,
    },
}

/// An open store: a node's own, or one shared with a cluster (the same store, seen
/// through both traits).
pub enum Opened {
    Alone(Arc<dyn Store>),
    Shared(Arc<dyn Store>, Arc<dyn ClusterStore>),
}

impl Storage {
    /// `--in-memory` wins; then `--db` (a path, or a `postgres://` URL); then
    /// `storage.url` or `storage.path`; else `./petit.db`.
    pub fn choose(
        in_memory: bool,
        db: Option<&str>,
        password_file: Option<PathBuf>,
        global: &GlobalConfig,
    ) -> Storage {
        if in_memory {
            return Storage::Memory;
        }
        let password_file = password_file.or_else(|| global.storage_password_file.clone());
        match db {
            Some(url) if is_postgres_url(url) => Storage::Postgres {
                url: url.to_string(),
                password_file,
            },
            Some(path) => Storage::Sqlite(PathBuf::from(path)),
            None => match (&global.storage_url, &global.storage_path) {
                (Some(url), _) => Storage::Postgres {
                    url: url.clone(),
                    password_file,
                },
                (None, Some(path)) => Storage::Sqlite(path.clone()),
                (None, None) => Storage::Sqlite(PathBuf::from("./petit.db")),
            },
        }
    }

    /// Opens (and migrates) the store.
    pub async fn open(&self, options: StoreOptions) -> StoreResult<Opened> {
        match self {
            Storage::Memory => {
                tracing::info!("history kept in memory only (--in-memory)");
                Ok(Opened::Alone(Arc::new(MemoryStore::new(options))))
            }
            Storage::Sqlite(path) => {
                // Blocking work (migrations): off the executor.
                let at = path.clone();
                let store = tokio::task::spawn_blocking(move || SqliteStore::open(&at, options))
                    .await
                    .map_err(|e| super::StoreError::ReadAborted {
                        reason: e.to_string(),
                    })??;
                tracing::info!(db = %path.display(), "database open");
                Ok(Opened::Alone(Arc::new(store)))
            }
            Storage::Postgres { url, password_file } => {
                let config = super::PostgresConfig {
                    url: url.clone(),
                    password_file: password_file.clone(),
                };
                let store = Arc::new(super::PostgresStore::connect_with(&config, options).await?);
                tracing::info!(db = %store.database(), "connected to the cluster's database");
                Ok(Opened::Shared(store.clone(), store))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_selects_cluster_mode() {
        let global = GlobalConfig::default();
        assert_eq!(
            Storage::choose(false, Some("postgres://h/d"), None, &global),
            Storage::Postgres {
                url: "postgres://h/d".into(),
                password_file: None
            }
        );
        assert_eq!(
            Storage::choose(false, Some("x.db"), None, &global),
            Storage::Sqlite("x.db".into())
        );
        assert_eq!(
            Storage::choose(true, Some("postgres://h/d"), None, &global),
            Storage::Memory
        );
        assert_eq!(
            Storage::choose(false, None, None, &global),
            Storage::Sqlite("./petit.db".into())
        );
    }
}
