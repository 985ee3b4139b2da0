//! Reading a container's json-file log: tail, since/until, timestamps, follow.

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::container::Container;

#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub follow: bool,
    pub timestamps: bool,
    /// Lines from the end; None is all.
    pub tail: Option<usize>,
    /// Unix seconds (fractional).
    pub since: Option<f64>,
    pub until: Option<f64>,
    /// Raw output (the container has a TTY) rather than multiplexed frames.
    pub raw: bool,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

fn parse_time(t: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(t).ok().map(|d| d.timestamp() as f64 + d.timestamp_subsec_nanos() as f64 / 1e9)
}

/// Parses Docker's `since`/`until`: unix seconds with optional fraction, or RFC 3339.
pub fn parse_since(s: &str) -> Option<f64> {
    if s.is_empty() {
        return None;
    }
    s.parse::<f64>().ok().or_else(|| parse_time(s))
}

fn render(line: &Line, o: &LogOptions) -> Option<Bytes> {
    let stream = if line.stream == "stderr" { 2 } else { 1 };
    if (stream == 1 && !o.stdout) || (stream == 2 && !o.stderr) {
        return None;
    }
    if o.since.is_some() || o.until.is_some() {
        let t = parse_time(&line.time)?;
        if o.since.is_some_and(|s| t < s) || o.until.is_some_and(|u| t > u) {
            return None;
        }
    }
    let mut text = Vec::new();
    if o.timestamps {
        text.extend_from_slice(line.time.as_bytes());
        text.push(b' ');
    }
    text.extend_from_slice(line.log.as_bytes());
    Some(if o.raw { Bytes::from(text) } else { Bytes::from(api::frame::encode(stream, &text)) })
}

/// Reads the next complete line into `buf`; a line still being written is left for later.
fn read_whole_line(reader: &mut BufReader<std::fs::File>, buf: &mut String) -> bool {
    buf.clear();
    match reader.read_line(buf) {
        Ok(0) | Err(_) => false,
        Ok(_) if buf.ends_with('\n') => true,
        Ok(_) => {
            let _ = reader.seek(SeekFrom::Current(-(buf.len() as i64)));
            false
        }
    }
}

/// Streams the log into `tx` until done (or, following, until the container stops). The
/// rotated files are read first, oldest first; a rotation while following is noticed (the
/// name points at a new file) and the new file is read from its start.
pub fn stream(path: PathBuf, c: Arc<Container>, o: LogOptions, tx: mpsc::Sender<Bytes>) {
    use std::os::unix::fs::MetadataExt;
    let mut lines: Vec<Bytes> = Vec::new();
    let mut buf = String::new();
    let mut current: Option<BufReader<std::fs::File>> = None;
    for p in log_files(&path) {
        let Ok(file) = std::fs::File::open(&p) else { continue };
        let mut reader = BufReader::new(file);
        while read_whole_line(&mut reader, &mut buf) {
            if let Ok(l) = serde_json::from_str::<Line>(&buf)
                && let Some(b) = render(&l, &o)
            {
                lines.push(b);
            }
        }
        if p == path {
            current = Some(reader);
        }
    }
    let skip = o.tail.map(|t| lines.len().saturating_sub(t)).unwrap_or(0);
    for b in lines.into_iter().skip(skip) {
        if tx.blocking_send(b).is_err() {
            return;
        }
    }
    if !o.follow {
        return;
    }
    loop {
        let live = c.status().is_live();
        let mut progressed = false;
        if let Some(reader) = current.as_mut() {
            while read_whole_line(reader, &mut buf) {
                progressed = true;
                if let Ok(l) = serde_json::from_str::<Line>(&buf)
                    && let Some(b) = render(&l, &o)
                    && tx.blocking_send(b).is_err()
                {
                    return;
                }
            }
        }
        // Rotated: the name now points at another file; what was left in the old one has
        // just been read.
        let ours = current.as_ref().and_then(|r| r.get_ref().metadata().ok()).map(|m| m.ino());
        let now = std::fs::metadata(&path).ok().map(|m| m.ino());
        if now.is_some() && now != ours {
            if let Ok(f) = std::fs::File::open(&path) {
                current = Some(BufReader::new(f));
            }
            continue;
        }
        if !live && !progressed {
            return;
        }
        if tx.is_closed() {
            return;
        }
        // Nothing new yet: look again shortly (the loop ends once the container has stopped
        // and everything it wrote has been sent).
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The log drivers berth has: `json-file` (the default), `local` (the same line format in
/// `local-logs/container.log`, rotated by default as Docker's local driver is) and `none`.
pub const DRIVERS: [&str; 3] = ["json-file", "local", "none"];

/// Default rotation: 20 MB per file, 5 files (Docker's `local` defaults; berth applies them to
/// json-file too, so a chatty container cannot fill the disk).
pub const DEFAULT_MAX_SIZE: u64 = 20 * 1024 * 1024;
pub const DEFAULT_MAX_FILE: u32 = 5;

/// Fills a new container's LogConfig with the daemon's defaults and checks it.
pub fn fill_log_config(h: &mut api::types::HostConfig, s: &crate::engine::Settings) -> crate::error::Result<()> {
    use crate::error::EngineError;
    let lc = &mut h.log_config;
    if lc.kind.is_empty() {
        lc.kind = s.log_driver.clone().unwrap_or_else(|| "json-file".into());
        for (k, v) in &s.log_opts {
            lc.config.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    if !DRIVERS.contains(&lc.kind.as_str()) {
        return Err(EngineError::BadRequest(format!(
            "failed to create container: logger: no log driver named '{}' is registered",
            lc.kind
        )));
    }
    for (k, v) in &lc.config {
        match (lc.kind.as_str(), k.as_str()) {
            ("none", _) => {
                return Err(EngineError::BadRequest(format!("unknown log opt '{k}' for log driver none")));
            }
            (_, "max-size") => {
                parse_size(v)
                    .ok_or_else(|| EngineError::BadRequest(format!("invalid max-size for log driver: {v}")))?;
            }
            (_, "max-file") => {
                if !v.parse::<u32>().is_ok_and(|n| n >= 1) {
                    return Err(EngineError::BadRequest(format!("invalid value for max-file: {v}: must be 1 or more")));
                }
            }
            (_, "compress" | "labels" | "labels-regex" | "env" | "env-regex" | "tag") => {}
            (d, other) => {
                return Err(EngineError::BadRequest(format!("unknown log opt '{other}' for {d} log driver")));
            }
        }
    }
    Ok(())
}

/// `10m`, `1g`, `512k`, bytes.
fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    num.parse::<f64>().ok().filter(|n| *n > 0.0).map(|n| (n * mult as f64) as u64)
}

/// The log file a container's driver writes, None for `none`.
pub fn log_file(paths: &crate::engine::Paths, id: &str, lc: &api::types::LogConfig) -> Option<PathBuf> {
    match lc.kind.as_str() {
        "none" => None,
        "local" => Some(paths.container_dir(id).join("local-logs").join("container.log")),
        _ => Some(paths.log_path(id)),
    }
}

/// (max bytes per file, files) for the shim.
pub fn rotation(lc: &api::types::LogConfig) -> crate::error::Result<Option<(u64, u32)>> {
    if lc.kind == "none" {
        return Ok(None);
    }
    let size = lc.config.get("max-size").and_then(|v| parse_size(v)).unwrap_or(DEFAULT_MAX_SIZE);
    let files = lc.config.get("max-file").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MAX_FILE);
    Ok(Some((size, files.max(1))))
}

/// The rotated files of a log, oldest first, then the current one.
fn log_files(path: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in (1..=1000u32).rev() {
        let mut s = path.as_os_str().to_owned();
        s.push(format!(".{n}"));
        let p = PathBuf::from(s);
        if p.exists() {
            out.push(p);
        }
    }
    out.push(path.to_owned());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_config_defaults_and_checks() {
        let s = crate::engine::Settings::default();
        let mut h = api::types::HostConfig::default();
        fill_log_config(&mut h, &s).expect("default");
        assert_eq!(h.log_config.kind, "json-file");
        assert_eq!(rotation(&h.log_config).expect("rotation"), Some((DEFAULT_MAX_SIZE, DEFAULT_MAX_FILE)));
        let s = crate::engine::Settings {
            log_opts: [("max-size".to_owned(), "1k".to_owned()), ("max-file".to_owned(), "2".to_owned())].into(),
            ..Default::default()
        };
        let mut h = api::types::HostConfig::default();
        fill_log_config(&mut h, &s).expect("daemon opts");
        assert_eq!(rotation(&h.log_config).expect("rotation"), Some((1024, 2)));
        let mut h = api::types::HostConfig::default();
        h.log_config.kind = "syslog".into();
        assert!(fill_log_config(&mut h, &s).is_err());
        let mut h = api::types::HostConfig::default();
        h.log_config.kind = "json-file".into();
        h.log_config.config.insert("max-file".into(), "0".into());
        assert!(fill_log_config(&mut h, &s).is_err());
        assert_eq!(parse_size("10m"), Some(10 << 20));
    }
}
