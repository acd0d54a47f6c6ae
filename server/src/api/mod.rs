//! The API over the engine: the gRPC services (`grpc`, the contract's own transport)
//! and the REST shim (`rest`), which answers `/api/...` by calling the same service
//! methods in process.

pub mod grpc;
pub mod rest;
