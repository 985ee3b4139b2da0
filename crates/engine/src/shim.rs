//! The daemon's side of the shim protocol ([`runtime::shim::proto`]), async.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use runtime::shim::proto::{Request, Response, ShimConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use crate::error::{EngineError, Result};

/// Spawns `berth shim CONFIG` and waits for its ready line: the pid it reports.
pub async fn spawn(config: &ShimConfig, config_path: &Path, shim_log: &Path) -> Result<i32> {
    let data = serde_json::to_vec(config).map_err(EngineError::internal)?;
    tokio::fs::write(config_path, data)
        .await
        .map_err(|e| EngineError::Internal(format!("write `{}`: {e}", config_path.display())))?;
    let log = std::fs::File::create(shim_log)
        .map_err(|e| EngineError::Internal(format!("create `{}`: {e}", shim_log.display())))?;
    // The daemon's own binary, even once a package upgrade has replaced (unlinked) the file it
    // was started from: the shim must speak this daemon's protocol, and the path would be gone.
    let mut child = tokio::process::Command::new("/proc/self/exe")
        .arg0("berth")
        .arg("shim")
        .arg(config_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| EngineError::Internal(format!("spawn shim: {e}")))?;
    let stdout = child.stdout.take().ok_or_else(|| EngineError::internal("shim has no stdout"))?;
    // Reap the shim whenever it ends, so it never lingers as a zombie of the daemon.
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let mut line = String::new();
    let read = tokio::time::timeout(Duration::from_secs(60), BufReader::new(stdout).read_line(&mut line)).await;
    match read {
        Err(_) => return Err(EngineError::internal("shim did not report ready within 60s")),
        Ok(Err(e)) => return Err(EngineError::Internal(format!("read from shim: {e}"))),
        Ok(Ok(_)) => {}
    }
    let resp: Response = serde_json::from_str(&line).map_err(|_| {
        let log = std::fs::read_to_string(shim_log).unwrap_or_default();
        EngineError::Internal(format!("shim failed: {}", log.trim()))
    })?;
    if let Some(e) = resp.error {
        return Err(EngineError::Internal(e));
    }
    Ok(resp.pid.unwrap_or(0))
}

/// Reads one line byte by byte, so nothing after it is consumed from the stream.
async fn read_line_exact(s: &mut UnixStream) -> std::io::Result<String> {
    let mut v = Vec::new();
    loop {
        let b = s.read_u8().await?;
        if b == b'\n' {
            break;
        }
        v.push(b);
        if v.len() > 1 << 20 {
            return Err(std::io::Error::other("shim response too long"));
        }
    }
    Ok(String::from_utf8_lossy(&v).into_owned())
}

/// Sends a request and returns the connection with the response (for attach and wait).
pub async fn open(socket: &Path, req: &Request) -> std::io::Result<(UnixStream, Response)> {
    let mut s = UnixStream::connect(socket).await?;
    let mut line = serde_json::to_vec(req).map_err(std::io::Error::other)?;
    line.push(b'\n');
    s.write_all(&line).await?;
    let resp = read_line_exact(&mut s).await?;
    let resp: Response = serde_json::from_str(&resp).map_err(std::io::Error::other)?;
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
