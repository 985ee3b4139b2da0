//! The daemon's side of the shim protocol ([`runtime::shim::proto`]), async.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use runtime::shim::proto::{Request, Response, ShimConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{EngineError, Result};

/// A shim whose process has started, with the connections of the requests queued before it.
pub struct Launched {
    /// The process's pid: the container's init, or the exec'd process.
    pub pid: i32,
    /// One connection per queued request, in order, their responses unread: an attach's
    /// acknowledgement comes first on its connection ([`read_response`]), a wait answers at
    /// the exit.
    pub conns: Vec<UnixStream>,
}

/// Why a launch failed: the shim could not create the container (or did not run), or the
/// runtime refused to start the process.
#[derive(Debug)]
pub enum LaunchError {
    Shim(EngineError),
    Start(String),
}

impl From<LaunchError> for EngineError {
    fn from(e: LaunchError) -> Self {
        match e {
            LaunchError::Shim(e) => e,
            LaunchError::Start(m) => EngineError::Internal(m),
        }
    }
}

/// Spawns `berth shim CONFIG` and starts its process, with `before` (attachers, an exec's
/// wait) queued ahead of the start.
///
/// The control socket is bound here and handed to the shim as its stdin, so every request is
/// written at once, before the shim has even created the container; the shim takes them in
/// order once it has, and starts the process with no round trip to the daemon in between.
pub async fn launch(
    config: &ShimConfig,
    config_path: &Path,
    shim_log: &Path,
    before: &[Request],
) -> std::result::Result<Launched, LaunchError> {
    let shim_err = |e: EngineError| LaunchError::Shim(e);
    let data = serde_json::to_vec(config).map_err(|e| shim_err(EngineError::internal(e)))?;
    tokio::fs::write(config_path, data)
        .await
        .map_err(|e| shim_err(EngineError::Internal(format!("write `{}`: {e}", config_path.display()))))?;
    let log = std::fs::File::create(shim_log)
        .map_err(|e| shim_err(EngineError::Internal(format!("create `{}`: {e}", shim_log.display()))))?;
    let _ = std::fs::remove_file(&config.socket);
    let listener = std::os::unix::net::UnixListener::bind(&config.socket)
        .map_err(|e| shim_err(EngineError::Internal(format!("bind `{}`: {e}", config.socket.display()))))?;
    let stdout = spawn(config_path, listener, log).map_err(|e| {
        let _ = std::fs::remove_file(&config.socket);
        shim_err(EngineError::Internal(format!("spawn shim: {e}")))
    })?;
    let talk =
        |e: std::io::Error| shim_err(EngineError::Internal(format!("talk to shim `{}`: {e}", config.socket.display())));
    // A shim that failed at once (before listening) has its reason on stdout: a failed send
    // reports only after that line is read.
    let mut conns = Vec::with_capacity(before.len());
    let mut start = None;
    let mut send_err = None;
    for req in before.iter().chain(std::iter::once(&Request::Start)) {
        match send(&config.socket, req).await {
            Ok(s) if matches!(req, Request::Start) => start = Some(s),
            Ok(s) => conns.push(s),
            Err(e) => {
                send_err = Some(e);
                break;
            }
        }
    }

    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), BufReader::new(stdout).read_line(&mut line)).await;
    match read {
        Err(_) => return Err(shim_err(EngineError::internal("shim did not report ready within 60s"))),
        Ok(Err(e)) => return Err(shim_err(EngineError::Internal(format!("read from shim: {e}")))),
        Ok(Ok(_)) => {}
    }
    let ready: Response = serde_json::from_str(&line).map_err(|_| {
        let log = std::fs::read_to_string(shim_log).unwrap_or_default();
        shim_err(EngineError::Internal(format!("shim failed: {}", log.trim())))
    })?;
    if let Some(e) = ready.error {
        return Err(shim_err(EngineError::Internal(e)));
    }
    let mut start = match (start, send_err) {
        (Some(s), None) => s,
        (_, e) => return Err(talk(e.unwrap_or_else(|| std::io::Error::other("the start was not sent")))),
    };
    let started = read_response(&mut start).await.map_err(talk)?;
    if let Some(e) = started.error {
        return Err(LaunchError::Start(e));
    }
    Ok(Launched { pid: started.pid.or(ready.pid).unwrap_or(0), conns })
}

/// The shim spawner forked at the daemon's start ([`runtime::shim::spawner`]), if any.
static SPAWNER: std::sync::OnceLock<runtime::shim::spawner::Spawner> = std::sync::OnceLock::new();

/// Set once the spawner has exited (killed, say): shims are exec'd from then on.
static SPAWNER_GONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Makes [`launch`] fork shims from `s` rather than exec them. A thread waits for the
/// spawner, so that one that dies is reaped (no zombie) and no longer asked.
pub fn use_spawner(s: runtime::shim::spawner::Spawner) {
    let pid = nix::unistd::Pid::from_raw(s.pid());
    if SPAWNER.set(s).is_err() {
        return;
    }
    let _ = std::thread::Builder::new().name("spawner-reaper".into()).spawn(move || {
        let _ = nix::sys::wait::waitpid(pid, None);
        SPAWNER_GONE.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("the shim spawner (pid {pid}) has exited: shims are exec'd from now on");
    });
}

/// Starts a shim for `config_path` with `listener` as its stdin and `log` as its stderr;
/// returns the read end of its stdout. Forked by the spawner when there is one (no exec of
/// the daemon's binary); otherwise, or if the spawner has gone, `berth shim CONFIG` is exec'd.
fn spawn(
    config_path: &Path,
    listener: std::os::unix::net::UnixListener,
    log: std::fs::File,
) -> std::io::Result<tokio::net::unix::pipe::Receiver> {
    let listener = std::os::fd::OwnedFd::from(listener);
    let log = std::os::fd::OwnedFd::from(log);
    if let Some(sp) = SPAWNER.get().filter(|_| !SPAWNER_GONE.load(std::sync::atomic::Ordering::Relaxed)) {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK)
            .map_err(std::io::Error::from)?;
        match sp.spawn(config_path, &listener, &w, &log) {
            Ok(_) => {
                drop(w);
                return tokio::net::unix::pipe::Receiver::from_owned_fd(r);
            }
            Err(e) => tracing::warn!("shim spawner: {e}; executing the shim instead"),
        }
    }
    // The daemon's own binary, even once a package upgrade has replaced (unlinked) the file it
    // was started from: the shim must speak this daemon's protocol, and the path would be gone.
    let mut child = tokio::process::Command::new("/proc/self/exe")
        .arg0("berth")
        .arg("shim")
        .arg(config_path)
        .stdin(Stdio::from(listener))
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(false)
        .spawn()?;
    let stdout = child.stdout.take().ok_or_else(|| std::io::Error::other("shim has no stdout"))?;
    // Reap the shim whenever it ends, so it never lingers as a zombie of the daemon.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    tokio::net::unix::pipe::Receiver::from_owned_fd(stdout.into_owned_fd()?)
}

/// Connects to a shim and writes one request.
async fn send(socket: &Path, req: &Request) -> std::io::Result<UnixStream> {
    let mut s = UnixStream::connect(socket).await?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await?;
    Ok(s)
}

/// Reads a shim's response line from a connection, leaving what follows it unread.
pub async fn read_response(s: &mut UnixStream) -> std::io::Result<Response> {
    let line = read_line_exact(s).await?;
    serde_json::from_str(&line).map_err(std::io::Error::other)
}

/// Reads one line and nothing after it (an attach stream may follow on the same connection):
/// looks at what has arrived without consuming it (`MSG_PEEK`), then reads exactly up to the
/// newline. Two syscalls for a response that has arrived whole, not one per byte.
async fn read_line_exact(s: &mut UnixStream) -> std::io::Result<String> {
    use std::os::fd::AsRawFd;
    let mut v = Vec::new();
    let mut buf = vec![0u8; 4096];
    loop {
        s.readable().await?;
        let fd = s.as_raw_fd();
        let peeked = s.try_io(tokio::io::Interest::READABLE, || {
            // SAFETY: recv into a buffer we own, of its length, on the stream's open socket.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_PEEK) };
            if n < 0 { Err(std::io::Error::last_os_error()) } else { Ok(n as usize) }
        });
        let n = match peeked {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        let end = buf[..n].iter().position(|&b| b == b'\n');
        let take = end.map_or(n, |i| i + 1);
        s.read_exact(&mut buf[..take]).await?;
        v.extend_from_slice(&buf[..take]);
        if end.is_some() {
            v.pop();
            break;
        }
        if v.len() > 1 << 20 {
            return Err(std::io::Error::other("shim response too long"));
        }
    }
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// Sends a request and returns the connection with the response (for attach and wait).
pub async fn open(socket: &Path, req: &Request) -> std::io::Result<(UnixStream, Response)> {
    let mut s = send(socket, req).await?;
    let resp = read_response(&mut s).await?;
    Ok((s, resp))
}

/// One request, one response.
pub async fn call(socket: &Path, req: &Request) -> Result<Response> {
    let (_, resp) = open(socket, req)
        .await
        .map_err(|e| EngineError::Internal(format!("talk to shim `{}`: {e}", socket.display())))?;
    match resp.error {
        Some(e) => Err(EngineError::Internal(e)),
        None => Ok(resp),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_response_line_is_read_whole_and_nothing_after_it() {
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        // A line split across writes, then the stream that follows it on the same connection.
        let writer = tokio::spawn(async move {
            b.write_all(b"{\"pid\":").await.expect("write");
            tokio::time::sleep(Duration::from_millis(20)).await;
            b.write_all(b"7}\nattach bytes").await.expect("write");
            b
        });
        let line = read_line_exact(&mut a).await.expect("line");
        assert_eq!(line, "{\"pid\":7}");
        let mut rest = vec![0u8; 12];
        a.read_exact(&mut rest).await.expect("rest");
        assert_eq!(rest, b"attach bytes");
        drop(writer.await.expect("writer"));
        let mut end = Vec::new();
        a.read_to_end(&mut end).await.expect("eof");
        assert!(end.is_empty());
        // A connection that closes before the newline is an error, not an empty line.
        let (mut a, mut b) = UnixStream::pair().expect("pair");
        b.write_all(b"{\"pid\"").await.expect("write");
        drop(b);
        assert_eq!(read_line_exact(&mut a).await.expect_err("eof").kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
