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
/// Docker's exit code for a process that could not be started, from the error text:
/// 127 when the executable is not found, 126 when it cannot be run; None otherwise (the
/// CLI then exits 125, a container's State.ExitCode is 128).
pub fn start_error_code(msg: &str) -> Option<i32> {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file or directory") {
        Some(127)
    } else if m.contains("permission denied") {
        Some(126)
    } else {
        None
    }
}

/// The oldest API version berth accepts in a path prefix.
pub const MIN_API_VERSION: &str = "1.24";
