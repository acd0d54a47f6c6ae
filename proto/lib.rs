//! The Petit contract: protobuf types of package `petit.v1`, tonic clients (feature
//! `client`) and servers (feature `server`), and the encoded file descriptor set that
//! server reflection and the REST shim read.

/// Package `petit.v1`.
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("petit.v1");
}

/// proto3 JSON of the messages above, written from the prost types (the REST API's).
#[cfg(feature = "json")]
pub mod json;

/// The encoded `FileDescriptorSet` of every Petit proto and its imports
/// (`google/api/*`, `google/protobuf/*`).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/petit_descriptor.bin"));

/// [`FILE_DESCRIPTOR_SET`] without source info (the protos' comments and positions):
/// the same types, services and options in less than half the bytes, for what needs
/// the descriptors but not their documentation (the REST shim's request messages).
pub const FILE_DESCRIPTOR_SET_LEAN: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/petit_descriptor_lean.bin"));

/// Fully-qualified names of the Petit services.
pub const SERVICES: &[&str] = &[
    "petit.v1.SchedulerService",
    "petit.v1.JobService",
    "petit.v1.RunService",
];

pub use prost_types;
