//! The shim's wire protocol: one JSON request line per connection, one JSON response line.
//!
//! After a successful `attach` response the connection carries the process's output as the
//! Docker attach wire format expects it (raw bytes with a TTY, 8-byte-header frames without),
//! and whatever the client writes goes to the process's stdin; a client half-close ends stdin
//! when the process was started with `stdin_once`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What the daemon writes to a shim's configuration file before spawning it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The runtime's id of the container (for exec sessions, the container's id too).
    pub container_id: String,
    pub kind: ShimKind,
    /// libcontainer's state directory.
    pub runtime_root: PathBuf,
    /// The control socket. The daemon binds it and hands the listener over as the shim's
    /// stdin (inetd-style), so that it can queue requests (attach, start) before the shim has
    /// created the process.
    pub socket: PathBuf,
    /// A container's lock file: its shim holds it for its whole life, and removes the runtime's
    /// state of the container after it has reported the exit. A new shim for the same container
    /// (a restart) and the daemon's removal of the container wait for it first.
    #[serde(default)]
    pub lock: Option<PathBuf>,
    /// Where the console socket is bound when `tty` is set.
    pub console_socket: PathBuf,
    /// json-file log; None keeps no log (exec sessions, `--log-driver none`).
    pub log: Option<PathBuf>,
    /// Rotation of the log: (max bytes per file, files kept including the current one).
    #[serde(default)]
    pub log_rotate: Option<(u64, u32)>,
    /// Written atomically with the exit status when the process ends.
    pub exit_file: PathBuf,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// The container's cgroup path (as in the spec), read for OOM kills before it is removed.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// A compiled seccomp program to load just before the process execs.
    #[serde(default)]
    pub seccomp: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShimKind {
    /// A container's first process, from the bundle.
    Init { bundle: PathBuf },
    /// An exec session: the process.json to run in the container.
    Exec { process: PathBuf },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Attach { stdin: bool, stdout: bool, stderr: bool },
    Start,
    Wait,
    Resize { height: u16, width: u16 },
    Kill { signal: i32, all: bool },
    State,
    CloseStdin,
    Pause,
    Resume,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<ExitStatus>,
}

impl Response {
    pub fn ok() -> Self {
        Self::default()
    }
    pub fn error(msg: impl Into<String>) -> Self {
        Self { error: Some(msg.into()), ..Self::default() }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub exit_code: i32,
    /// RFC 3339 with nanoseconds.
    pub finished_at: String,
    #[serde(default)]
    pub oom_killed: bool,
}

/// Writes one request and reads one response, synchronously.
pub fn call(socket: &std::path::Path, req: &Request) -> std::io::Result<Response> {
    let mut s = UnixStream::connect(socket)?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line)?;
    let mut r = BufReader::new(s);
    let mut resp = String::new();
    r.read_line(&mut resp)?;
    serde_json::from_str(&resp).map_err(std::io::Error::other)
}

/// The name of a container's lock file in its directory (see [`ShimConfig::lock`]).
pub const LOCK_FILE: &str = "shim.lock";

/// Waits until no shim holds the container lock at `path` (one that is still removing the
/// container's runtime state after its exit) and returns the lock, held; `None` when its
/// directory is gone. Gives up after `timeout`: a shim that hangs must not block a removal
/// for ever.
pub fn lock_container(path: &std::path::Path, timeout: std::time::Duration) -> Result<Option<std::fs::File>, String> {
    let f = match std::fs::File::options().read(true).write(true).create(true).truncate(false).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("open container lock `{}`: {e}", path.display())),
    };
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match f.try_lock() {
            Ok(()) => return Ok(Some(f)),
            Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(2))
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(format!(
                    "the previous shim of this container still holds `{}` after {timeout:?}",
                    path.display()
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(format!("lock `{}`: {e}", path.display()));
            }
        }
    }
}

/// Reads the exit status a shim left behind, if any.
pub fn read_exit_file(path: &std::path::Path) -> Option<ExitStatus> {
    std::fs::read(path).ok().and_then(|b| serde_json::from_slice(&b).ok())
}
