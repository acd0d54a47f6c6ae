//! STUB
pub struct SqliteStore;
