//! `petit-tui`: a live dashboard for petitd over gRPC. [`conn`] owns the streams and
//! reconnects, [`state`] folds server messages and key presses into one state, [`view`]
//! draws it, [`term`] owns the terminal; `main.rs` runs the loop that joins them.

pub mod conn;
pub mod state;
pub mod term;
pub mod view;
