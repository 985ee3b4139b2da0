//! The process's output: into the json-file log and out to every attached client.

use std::fs::File;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
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
    log: Option<Mutex<LogFile>>,
    attachers: Mutex<Vec<Attacher>>,
}

/// The json-file log and its rotation: when a line would take the file past `max_size`, the
/// file becomes `<name>.1` (`.1` becomes `.2`…, the oldest beyond `max_files` goes) and a new
/// one is started, as Docker's json-file driver does with `max-size`/`max-file`.
pub struct LogFile {
    path: PathBuf,
    w: std::io::BufWriter<File>,
    size: u64,
    rotate: Option<(u64, u32)>,
}

impl LogFile {
    pub fn open(path: &Path, rotate: Option<(u64, u32)>) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let f = File::options()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("open log `{}`: {e}", path.display()))?;
        let size = f.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Self { path: path.to_owned(), w: std::io::BufWriter::new(f), size, rotate })
    }

    pub fn write_entry(&mut self, entry: &[u8]) {
        if let Some((max, files)) = self.rotate
            && max > 0
            && self.size > 0
            && self.size + entry.len() as u64 > max
        {
            self.rotate_now(files);
        }
        if self.w.write_all(entry).is_ok() {
            self.size += entry.len() as u64;
        }
    }

    fn rotate_now(&mut self, files: u32) {
        let _ = self.w.flush();
        let name = |n: u32| {
            let mut s = self.path.clone().into_os_string();
            s.push(format!(".{n}"));
            PathBuf::from(s)
        };
        if files <= 1 {
            // One file kept: start it again.
            if let Ok(f) = File::create(&self.path) {
                self.w = std::io::BufWriter::new(f);
                self.size = 0;
            }
            return;
        }
        let _ = std::fs::remove_file(name(files - 1));
        for n in (1..files - 1).rev() {
            let _ = std::fs::rename(name(n), name(n + 1));
        }
        let _ = std::fs::rename(&self.path, name(1));
        if let Ok(f) = File::options().create(true).append(true).open(&self.path) {
            self.w = std::io::BufWriter::new(f);
            self.size = 0;
        }
    }

    pub fn flush(&mut self) {
        let _ = self.w.flush();
    }
}

impl Output {
    pub fn new(tty: bool, log: Option<&Path>, rotate: Option<(u64, u32)>) -> Result<Self, String> {
        let log = match log {
            Some(p) => Some(Mutex::new(LogFile::open(p, rotate)?)),
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
        if let Ok(mut w) = log.lock()
            && let Ok(mut line) = serde_json::to_vec(&entry)
        {
            line.push(b'\n');
            w.write_entry(&line);
        }
    }

    pub fn flush(&self) {
        if let Some(log) = &self.log
            && let Ok(mut w) = log.lock()
        {
            w.flush();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_rotates_and_keeps_max_files() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("c-json.log");
        let mut l = LogFile::open(&p, Some((100, 3))).expect("open");
        for i in 0..20 {
            l.write_entry(format!("{{\"log\":\"line {i:02}\"}}\n").as_bytes());
        }
        l.flush();
        let mut names: Vec<String> = std::fs::read_dir(d.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["c-json.log", "c-json.log.1", "c-json.log.2"]);
        for n in &names {
            assert!(std::fs::metadata(d.path().join(n)).expect("stat").len() <= 100);
        }
        let newest = std::fs::read_to_string(&p).expect("read");
        assert!(newest.contains("line 19"), "{newest}");
    }
}
