//! The process's output: into the json-file log and out to every attached client.

use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Mutex;

/// Longest log line kept whole; longer runs are split, as Docker does at 16 KiB.
const MAX_LINE: usize = 16 * 1024;

pub struct Attacher {
    conn: UnixStream,
    stdout: bool,
    stderr: bool,
}

impl Attacher {
    pub fn new(conn: UnixStream, stdout: bool, stderr: bool) -> Self {
        Self { conn, stdout, stderr }
    }
}

pub struct Output {
    tty: bool,
    log: Option<Mutex<std::io::BufWriter<File>>>,
    attachers: Mutex<Vec<Attacher>>,
}

impl Output {
    pub fn new(tty: bool, log: Option<&Path>) -> Result<Self, String> {
        let log = match log {
            Some(p) => Some(Mutex::new(std::io::BufWriter::new(
                File::options()
                    .create(true)
                    .append(true)
                    .open(p)
                    .map_err(|e| format!("open log `{}`: {e}", p.display()))?,
            ))),
            None => None,
        };
        Ok(Self { tty, log, attachers: Mutex::new(Vec::new()) })
    }

    /// Adds an attacher, running `first` on its connection under the lock that output
    /// takes, so nothing is sent to it before `first` has written.
    pub fn add(&self, a: Attacher, first: impl FnOnce(&UnixStream)) {
        if let Ok(mut v) = self.attachers.lock() {
            first(&a.conn);
            if a.stdout || a.stderr {
                v.push(a);
            }
        }
    }

    /// Copies `src` (stream 1 = stdout, 2 = stderr) until EOF.
    pub fn pump(&self, mut src: File, stream: u8) {
        let mut buf = vec![0u8; 32 * 1024];
        let mut partial: Vec<u8> = Vec::new();
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: the terminal's last holder is gone.
                Err(_) => break,
            };
            let chunk = &buf[..n];
            // The log first: what a client was shown is already in the log.
            if self.log.is_some() {
                partial.extend_from_slice(chunk);
                let mut start = 0;
                while let Some(i) = partial[start..].iter().position(|&b| b == b'\n') {
                    self.log_line(&partial[start..start + i + 1], stream);
                    start += i + 1;
                }
                partial.drain(..start);
                while partial.len() >= MAX_LINE {
                    let rest = partial.split_off(MAX_LINE);
                    self.log_line(&partial, stream);
                    partial = rest;
                }
                // `logs -f` readers see each chunk as soon as it is written.
                self.flush();
            }
            self.send(chunk, stream);
        }
        if !partial.is_empty() {
            self.log_line(&partial, stream);
        }
        self.flush();
    }

    fn send(&self, chunk: &[u8], stream: u8) {
        let Ok(mut list) = self.attachers.lock() else { return };
        list.retain_mut(|a| {
            let wanted = if stream == 2 { a.stderr } else { a.stdout };
            if !wanted {
                return true;
            }
            let r = if self.tty {
                a.conn.write_all(chunk)
            } else {
                let mut frame = Vec::with_capacity(8 + chunk.len());
                frame.extend_from_slice(&[stream, 0, 0, 0]);
                frame.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
                frame.extend_from_slice(chunk);
                a.conn.write_all(&frame)
            };
            r.is_ok()
        });
    }

    fn log_line(&self, line: &[u8], stream: u8) {
        let Some(log) = &self.log else { return };
        let entry = serde_json::json!({
            "log": String::from_utf8_lossy(line),
            "stream": if stream == 2 { "stderr" } else { "stdout" },
            "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        });
        if let Ok(mut w) = log.lock() {
            let _ = serde_json::to_writer(&mut *w, &entry);
            let _ = w.write_all(b"\n");
        }
    }

    pub fn flush(&self) {
        if let Some(log) = &self.log
            && let Ok(mut w) = log.lock()
        {
            let _ = w.flush();
        }
    }

    /// Ends every attach stream: the clients see EOF.
    pub fn close_attachers(&self) {
        if let Ok(mut v) = self.attachers.lock() {
            for a in v.drain(..) {
                let _ = a.conn.shutdown(Shutdown::Both);
            }
        }
    }
}
