//! STUB
pub struct MemoryStore;
