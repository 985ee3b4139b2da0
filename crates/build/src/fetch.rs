//! ADD's remote sources: a plain HTTP/1.1 GET (redirects followed, chunked or sized bodies),
//! the file named after the URL's last path component, its mtime from Last-Modified.
//! `https://` is the engine's (its `StepRunner::fetch`, with a TLS client); here it is refused
//! by name.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::BuildError;

fn bad(url: &str, m: impl std::fmt::Display) -> BuildError {
    BuildError::Invalid(format!("ADD {url}: {m}"))
}

/// `sha256:<hex>` of a file.
pub fn sha256_file(p: &Path) -> Result<String, BuildError> {
    let mut f = std::fs::File::open(p).map_err(|e| BuildError::Io { op: "open", path: p.to_owned(), source: e })?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf).map_err(|e| BuildError::Io { op: "read", path: p.to_owned(), source: e })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// Gives a downloaded file Docker's mtime: the Last-Modified header's, else the epoch (moby
/// sets the zero time, which its Chtimes turns into 1970-01-01).
pub fn set_mtime(file: &Path, last_modified: Option<&str>) {
    let secs = last_modified
        .and_then(|lm| chrono::DateTime::parse_from_rfc2822(lm).ok())
        .map(|t| t.timestamp().max(0) as u64)
        .unwrap_or(0);
    if let Ok(f) = std::fs::File::options().write(true).open(file) {
        let _ = f.set_modified(std::time::UNIX_EPOCH + Duration::from_secs(secs));
    }
}

/// Downloads `url` into the directory `dir` (created); returns the file and its name.
pub fn download(url: &str, dir: &Path) -> Result<(PathBuf, String), BuildError> {
    let mut current = url.to_owned();
    for _ in 0..5 {
        if current.starts_with("https://") {
            return Err(BuildError::Unsupported(format!("ADD {url}: https sources need the engine's TLS client")));
        }
        let rest = current.strip_prefix("http://").ok_or_else(|| bad(url, "not an http URL"))?;
        let (hostport, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = if hostport.contains(':') { hostport.to_owned() } else { format!("{hostport}:80") };
        let path_only = path.split(['?', '#']).next().unwrap_or("/");
        let name = path_only.rsplit('/').next().unwrap_or_default().to_owned();
        let mut s = TcpStream::connect(&addr).map_err(|e| bad(url, format!("connect to {addr}: {e}")))?;
        s.set_read_timeout(Some(Duration::from_secs(60))).map_err(|e| bad(url, e))?;
        write!(s, "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: berth-builder\r\nConnection: close\r\n\r\n")
            .map_err(|e| bad(url, e))?;
        let mut r = BufReader::new(s);
        let mut status = String::new();
        r.read_line(&mut status).map_err(|e| bad(url, e))?;
        let code: u16 = status
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| bad(url, "not an HTTP response"))?;
        let mut headers = Vec::new();
        loop {
            let mut l = String::new();
            if r.read_line(&mut l).map_err(|e| bad(url, e))? == 0 {
                break;
            }
            let l = l.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let header = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if matches!(code, 301 | 302 | 303 | 307 | 308) {
            let loc = header("location").ok_or_else(|| bad(url, format!("redirect {code} without Location")))?;
            current = if loc.starts_with("http://") || loc.starts_with("https://") {
                loc
            } else {
                format!("http://{hostport}{loc}")
            };
            continue;
        }
        if code != 200 {
            return Err(bad(url, format!("server answered {}", status.trim())));
        }
        if name.is_empty() {
            return Err(bad(url, "cannot determine a file name from the URL"));
        }
        std::fs::create_dir_all(dir).map_err(|e| BuildError::Io { op: "create", path: dir.to_owned(), source: e })?;
        let out = dir.join(&name);
        let mut f =
            std::fs::File::create(&out).map_err(|e| BuildError::Io { op: "create", path: out.clone(), source: e })?;
        let werr = |e: std::io::Error| bad(url, format!("download: {e}"));
        if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            loop {
                let mut l = String::new();
                r.read_line(&mut l).map_err(werr)?;
                let n =
                    usize::from_str_radix(l.trim().split(';').next().unwrap_or("0"), 16).map_err(|e| bad(url, e))?;
                if n == 0 {
                    break;
                }
                let mut chunk = (&mut r).take(n as u64);
                let copied = std::io::copy(&mut chunk, &mut f).map_err(werr)?;
                if copied != n as u64 {
                    return Err(bad(url, "connection closed in the middle of a chunk"));
                }
                let mut crlf = String::new();
                r.read_line(&mut crlf).map_err(werr)?;
            }
        } else if let Some(len) = header("content-length").and_then(|l| l.parse::<u64>().ok()) {
            let copied = std::io::copy(&mut (&mut r).take(len), &mut f).map_err(werr)?;
            if copied != len {
                return Err(bad(url, format!("got {copied} of {len} bytes")));
            }
        } else {
            std::io::copy(&mut r, &mut f).map_err(werr)?;
        }
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o600));
        set_mtime(&out, header("last-modified").as_deref());
        return Ok((out, name));
    }
    Err(bad(url, "too many redirects"))
}
