//! berth's runtime: from an image config and run options to an isolated process.
//!
//! - [`spec::RunSpec`] gathers what the engine decided (argv, env, user, limits, mounts) and
//!   [`spec::RunSpec::to_oci`] turns it into an OCI runtime [`oci::spec::runtime::Spec`] with
//!   Docker's default confinement.
//! - [`user`] resolves `-u name[:group]` through the image's `/etc/passwd` and `/etc/group`.
//! - [`shim`] is the process that sits between the daemon and one container (or one exec
//!   session): it creates the container with the runtime, holds its stdio, writes its log, serves
//!   attach/resize/kill/wait on a Unix socket, and records the exit code in a file so a daemon
//!   killed with -9 finds it again. [`shim::proto`] is the wire protocol the engine speaks to it.
//! - [`Runtime`] is the seam to the OCI runtime proper; [`libct::Libcontainer`] drives youki's
//!   libcontainer in-process.
//!
//! Everything here is synchronous: clone/fork/setns never happen on async worker threads.

pub mod cgroups;
pub mod libct;
pub mod process;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod user;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use oci::ErrorKind;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("create container `{id}`: {message}")]
    Create { id: String, message: String },
    #[error("start container `{id}`: {message}")]
    Start { id: String, message: String },
    #[error("exec in container `{id}`: {message}")]
    Exec { id: String, message: String },
    #[error("signal container `{id}`: {message}")]
    Kill { id: String, message: String },
    #[error("delete container `{id}`: {message}")]
    Delete { id: String, message: String },
    #[error("{op} container `{id}`: {message}")]
    Other { op: &'static str, id: String, message: String },
    #[error("invalid user `{user}`: {message}")]
    User { user: String, message: String },
    #[error("write `{path}`: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl RuntimeError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::User { .. } => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        }
    }
}

/// Standard streams handed to a container's first process.
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    /// Path of a listening Unix socket that receives the pty master when the process has a
    /// terminal.
    pub console_socket: Option<PathBuf>,
}

/// The OCI runtime operations the shim needs, in lifecycle order:
/// `create` (process set up, waiting) → `start` (it execs the user's program) → the shim
/// waits for it → `delete` (cgroups and state removed). `exec` joins a created or running
/// container with a new process. Implementations must return the pid of the process whose
/// parent is the caller, so that the caller can wait for it.
pub trait Runtime {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError>;
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    fn exec(&self, id: &str, process: &Path, stdio: Stdio) -> Result<i32, RuntimeError>;
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError>;
    fn pause(&self, id: &str) -> Result<(), RuntimeError>;
    fn resume(&self, id: &str) -> Result<(), RuntimeError>;
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
}
