//! The client side of Petit, shared by `petitctl` and the TUI: connecting to `petitd`
//! (address forms, TLS, time limits: [`ConnectOptions`] and its flags [`ConnectArgs`]),
//! one method per RPC, [`ClientError`] with what a caller
//! can do about a failure, [`vocab`]: the words and tones of the contract's enums, and
//! [`render`]: tables, durations, times, the task tree and the proto3 JSON form of
//! responses.
//!
//! ```no_run
//! # async fn demo() -> Result<(), petit_client::ClientError> {
//! let options = petit_client::ConnectOptions::new("127.0.0.1:8565", std::time::Duration::from_secs(10));
//! let client = petit_client::connect(&options).await?;
//! for job in client.list_jobs().await?.jobs {
//!     println!("{}", job.id);
//! }
//! # Ok(())
//! # }
//! ```

mod connect;
mod error;
mod options;
pub mod render;
pub mod vocab;

pub use connect::{
    connect, connect_lazy, normalize_server, Client, LogPages, Stream, DEFAULT_SERVER,
};
pub use error::ClientError;
pub use options::{ConnectArgs, ConnectOptions, TlsOptions, Token, TOKEN_VARIABLE};
/// The generated messages and enums of package `petit.v1`.
pub use petit_proto::v1 as proto;
