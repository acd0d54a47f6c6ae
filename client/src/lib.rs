//! Petit client.
