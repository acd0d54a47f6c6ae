//! Runs one DAG run.
