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

/// Streams the log into `tx` until done (or, following, until the container stops).
pub fn stream(path: PathBuf, c: Arc<Container>, o: LogOptions, tx: mpsc::Sender<Bytes>) {
    let Ok(file) = std::fs::File::open(&path) else { return };
    let mut reader = BufReader::new(file);
    let mut lines: Vec<Bytes> = Vec::new();
    let mut buf = String::new();
    while read_whole_line(&mut reader, &mut buf) {
        if let Ok(l) = serde_json::from_str::<Line>(&buf)
            && let Some(b) = render(&l, &o)
        {
            lines.push(b);
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
        while read_whole_line(&mut reader, &mut buf) {
            progressed = true;
            if let Ok(l) = serde_json::from_str::<Line>(&buf)
                && let Some(b) = render(&l, &o)
                && tx.blocking_send(b).is_err()
            {
                return;
            }
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
