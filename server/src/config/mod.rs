//! Job files (the original Petit YAML format) and the global `petit.yaml`, parsed into
//! validated definitions. Every error names its file and line; all errors of a
//! directory are reported at once.
//!
//! STUB: the real implementation replaces this file.
