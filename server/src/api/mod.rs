//! The gRPC services and the REST shim.
