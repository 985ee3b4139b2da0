//! The Docker Engine API as berth speaks it, on both sides.
//!
//! - [`types`]: request and response bodies (serde, Docker's PascalCase field names). Types
//!   keep fields they do not know in an `extra` map so that what a client sent comes back
//!   unchanged in `inspect`.
//! - [`client::Client`]: an HTTP/1.1 client over a Unix socket (or TCP), with the hijacked
//!   upgrade that attach and exec use, and the 8-byte stream framing ([`frame`]).
//!
//! No daemon logic lives here: the CLI depends on this crate only, so it drives a real
//! Docker daemon as well as berth's.

pub mod client;
pub mod frame;
pub mod types;
pub mod units;

/// The API version berth advertises.
pub const API_VERSION: &str = "1.45";
/// The oldest API version berth accepts in a path prefix.
pub const MIN_API_VERSION: &str = "1.24";
