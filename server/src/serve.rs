//! One listener for gRPC, reflection, health and REST.
