//! `cp`, `save`, `load`, `export`: files in and out of containers and images.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use api::client::{Client, ClientError, full, reader_body};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::commands::enc;
use crate::volume::report;

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Archive mode (copy all uid/gid information)
    #[arg(short = 'a', long)]
    pub archive: bool,
    /// Always follow symbol links in SRC_PATH
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// Suppress progress output during copy
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// CONTAINER:SRC_PATH or SRC_PATH or -
    pub src: String,
    /// CONTAINER:DEST_PATH or DEST_PATH or -
    pub dst: String,
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    #[arg(required = true)]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read from tar archive file, instead of STDIN
    #[arg(short = 'i', long)]
    pub input: Option<String>,
    /// Suppress the load output
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write to a file, instead of STDOUT
    #[arg(short = 'o', long)]
    pub output: Option<String>,
    pub container: String,
}

/// `ctr:path` → Some((ctr, path)); a local path (absolute, `.`-relative, or without `:`) → None.
fn split_cp(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty())
}

/// The stat Docker sends in `X-Docker-Container-Path-Stat`.
fn decode_stat(h: Option<&hyper::header::HeaderValue>) -> Value {
    use base64::Engine as _;
    h.and_then(|v| v.to_str().ok())
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

fn is_dir_mode(st: &Value) -> bool {
    st["mode"].as_u64().is_some_and(|m| m & (1 << 31) != 0)
}

async fn stat(c: &Client, ctr: &str, path: &str) -> Result<Option<Value>, ClientError> {
    match c
        .request(
            Method::HEAD,
            &format!("/containers/{}/archive?path={}", enc(ctr), enc(path)),
            Vec::new(),
            api::client::empty(),
        )
        .await
    {
        Ok(r) => Ok(Some(decode_stat(r.headers().get("X-Docker-Container-Path-Stat")))),
        Err(e) if e.status() == Some(404) => Ok(None),
        Err(e) => Err(e),
    }
}

fn last_name(p: &str) -> String {
    if p.ends_with("/.") {
        return ".".into();
    }
    Path::new(p.trim_end_matches('/'))
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".".into())
}

pub async fn cp(c: &Client, a: CpArgs) -> i32 {
    let r = match (split_cp(&a.src), split_cp(&a.dst)) {
        (Some((ctr, p)), None) => copy_out(c, ctr, p, &a.dst, a.quiet).await,
        (None, Some((ctr, p))) => copy_in(c, &a.src, ctr, p, a.archive).await,
        (Some(_), Some(_)) => Err("copying between containers is not supported".into()),
        (None, None) => Err("must specify at least one container source".into()),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error response from daemon: {e}");
            1
        }
    }
}

async fn copy_out(c: &Client, ctr: &str, src: &str, dst: &str, quiet: bool) -> Result<(), String> {
    let resp = c
        .request(
            Method::GET,
            &format!("/containers/{}/archive?path={}", enc(ctr), enc(src)),
            Vec::new(),
            api::client::empty(),
        )
        .await
        .map_err(|e| msg(&e))?;
    let st = decode_stat(resp.headers().get("X-Docker-Container-Path-Stat"));
    let data = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    if dst == "-" {
        let mut out = tokio::io::stdout();
        out.write_all(&data).await.map_err(|e| e.to_string())?;
        let _ = out.flush().await;
        return Ok(());
    }
    let src_name = last_name(src);
    let dst_path = PathBuf::from(dst);
    let (dir, rename) = match std::fs::metadata(&dst_path) {
        Ok(m) if m.is_dir() => (dst_path.clone(), None),
        Ok(_) if is_dir_mode(&st) => return Err(format!("cannot copy a directory to a file: {dst}")),
        _ => {
            if dst.ends_with('/') {
                return Err(format!("destination directory {dst} does not exist"));
            }
            let parent =
                dst_path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
            if !parent.is_dir() {
                return Err(format!("destination directory {} does not exist", parent.display()));
            }
            let new = dst_path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (parent, Some(new))
        }
    };
    let n = extract(&data, &dir, &src_name, rename.as_deref())?;
    if !quiet && crate::stream::stdout_is_tty() {
        eprintln!("Successfully copied {n}B to {dst}");
    }
    Ok(())
}

/// Unpacks a tar from the daemon into `dir`, its top entry `src_name` renamed to `rename`.
/// `..` and absolute names are refused, and nothing is written through a symlink the archive
/// made.
fn extract(data: &[u8], dir: &Path, src_name: &str, rename: Option<&str>) -> Result<u64, String> {
    let mut ar = tar::Archive::new(data);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut total = 0;
    for entry in ar.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let raw = entry.path().map_err(|e| e.to_string())?.into_owned();
        let mut parts: Vec<std::ffi::OsString> = Vec::new();
        for comp in raw.components() {
            match comp {
                Component::Normal(n) => parts.push(n.to_owned()),
                Component::CurDir => {}
                _ => return Err(format!("refusing unsafe path `{}` in the archive", raw.display())),
            }
        }
        if let (Some(new), Some(first)) = (rename, parts.first_mut())
            && first.to_string_lossy() == src_name
        {
            *first = new.into();
        }
        if src_name == "." && rename.is_some() {
            parts.insert(0, rename.unwrap_or_default().into());
        }
        if parts.is_empty() {
            continue;
        }
        let rel: PathBuf = parts.iter().collect();
        // No component below `dir` may be a symlink (one the archive made earlier).
        let mut p = dir.to_path_buf();
        for comp in rel.parent().into_iter().flat_map(Path::components) {
            p.push(comp);
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(format!("refusing to write `{}` through a symlink", rel.display()));
            }
        }
        let target = dir.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("create {}: {e}", parent.display()))?;
        }
        total += entry.header().size().unwrap_or(0);
        entry.unpack(&target).map_err(|e| format!("write {}: {e}", target.display()))?;
    }
    Ok(total)
}

async fn copy_in(c: &Client, src: &str, ctr: &str, dst: &str, _archive: bool) -> Result<(), String> {
    let st = stat(c, ctr, dst).await.map_err(|e| msg(&e))?;
    if src == "-" {
        if !st.as_ref().is_some_and(is_dir_mode) {
            return Err(format!("destination \"{ctr}:{dst}\" must be a directory"));
        }
        return put(c, ctr, dst, reader_body(tokio::io::stdin())).await;
    }
    let meta = std::fs::symlink_metadata(src).map_err(|_| format!("could not find the file {src} on the host"))?;
    let src_name = last_name(src);
    let (dir, name) = match &st {
        Some(s) if is_dir_mode(s) => (dst.to_owned(), src_name.clone()),
        Some(_) if meta.is_dir() => return Err(format!("cannot copy a directory to a file: {dst}")),
        _ => {
            if st.is_none() && dst.ends_with('/') {
                return Err(format!("destination directory {dst} does not exist"));
            }
            let p = Path::new(dst);
            let parent = p.parent().map(|p| p.display().to_string()).filter(|p| !p.is_empty()).unwrap_or("/".into());
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (parent, name)
        }
    };
    let src_path = if src_name == "." { PathBuf::from(src.trim_end_matches("/.")) } else { PathBuf::from(src) };
    let tar = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let mut b = tar::Builder::new(Vec::new());
        b.follow_symlinks(false);
        let r = if src_name == "." {
            // The contents, not the directory.
            (|| {
                for e in std::fs::read_dir(&src_path)? {
                    let e = e?;
                    let p = e.path();
                    if e.file_type()?.is_dir() {
                        b.append_dir_all(e.file_name(), &p)?;
                    } else {
                        b.append_path_with_name(&p, e.file_name())?;
                    }
                }
                Ok::<_, std::io::Error>(())
            })()
        } else if meta.is_dir() {
            b.append_dir_all(&name, &src_path)
        } else {
            b.append_path_with_name(&src_path, &name)
        };
        r.map_err(|e| format!("read {}: {e}", src_path.display()))?;
        b.into_inner().map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    put(c, ctr, &dir, full(tar)).await
}

async fn put(c: &Client, ctr: &str, path: &str, body: api::client::Body) -> Result<(), String> {
    let headers = vec![("Content-Type", "application/x-tar".to_owned())];
    c.request(
        Method::PUT,
        &format!("/containers/{}/archive?path={}&noOverwriteDirNonDir=true", enc(ctr), enc(path)),
        headers,
        body,
    )
    .await
    .map(|_| ())
    .map_err(|e| msg(&e))
}

fn msg(e: &ClientError) -> String {
    match e {
        ClientError::Status { message, status } if message.is_empty() => format!("status {status}"),
        ClientError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Streams a response body to `-o FILE` or to stdout (never to a terminal).
async fn body_to(resp: hyper::Response<hyper::body::Incoming>, output: Option<&str>) -> Result<(), String> {
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match output {
        Some(p) => Box::new(tokio::fs::File::create(p).await.map_err(|e| format!("create {p}: {e}"))?),
        None => {
            if crate::stream::stdout_is_tty() {
                return Err("cowardly refusing to save to a terminal. Use the -o flag or redirect".into());
            }
            Box::new(tokio::io::stdout())
        }
    };
    let mut body = resp.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Ok(d) = frame.into_data() {
            out.write_all(&d).await.map_err(|e| e.to_string())?;
        }
    }
    out.flush().await.map_err(|e| e.to_string())?;
    Ok(())
}

pub async fn save(c: &Client, a: SaveArgs) -> i32 {
    if a.output.is_none() && crate::stream::stdout_is_tty() {
        eprintln!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return 1;
    }
    let q: Vec<String> = a.images.iter().map(|n| format!("names={}", enc(n))).collect();
    let resp =
        match c.request(Method::GET, &format!("/images/get?{}", q.join("&")), Vec::new(), api::client::empty()).await {
            Ok(r) => r,
            Err(e) => {
                report(&e);
                return 1;
            }
        };
    match body_to(resp, a.output.as_deref()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

pub async fn export(c: &Client, a: ExportArgs) -> i32 {
    if a.output.is_none() && crate::stream::stdout_is_tty() {
        eprintln!("cowardly refusing to save to a terminal. Use the -o flag or redirect");
        return 1;
    }
    let resp = match c
        .request(Method::GET, &format!("/containers/{}/export", enc(&a.container)), Vec::new(), api::client::empty())
        .await
    {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    match body_to(resp, a.output.as_deref()).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{e}");
            1
        }
    }
}

pub async fn load(c: &Client, a: LoadArgs) -> i32 {
    let body = match &a.input {
        Some(p) => match tokio::fs::File::open(p).await {
            Ok(f) => reader_body(f),
            Err(e) => {
                eprintln!("open {p}: {e}");
                return 1;
            }
        },
        None => {
            if crate::stream::stdin_is_tty() {
                eprintln!("requested load from stdin, but stdin is empty");
                return 1;
            }
            reader_body(tokio::io::stdin())
        }
    };
    let headers = vec![("Content-Type", "application/x-tar".to_owned())];
    let resp = match c.request(Method::POST, &format!("/images/load?quiet={}", u8::from(a.quiet)), headers, body).await
    {
        Ok(r) => r,
        Err(e) => {
            report(&e);
            return 1;
        }
    };
    let data = match resp.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let mut code = 0;
    for line in data.split(|b| *b == b'\n') {
        let Ok(v) = serde_json::from_slice::<Value>(line.trim_ascii()) else { continue };
        if let Some(e) = v.get("error").and_then(Value::as_str) {
            eprintln!("{e}");
            code = 1;
        } else if let Some(s) = v.get("stream").and_then(Value::as_str) {
            print!("{s}");
        }
    }
    let _ = std::io::stdout().flush();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cp_arguments() {
        assert_eq!(split_cp("web:/etc/hosts"), Some(("web", "/etc/hosts")));
        assert_eq!(split_cp("/a:b"), None);
        assert_eq!(split_cp("./x:y"), None);
        assert_eq!(split_cp("file"), None);
        assert_eq!(last_name("/a/b/"), "b");
        assert_eq!(last_name("/a/b/."), ".");
    }

    #[test]
    fn extract_refuses_escapes_and_renames() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(2);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "hosts", &b"hi"[..]).expect("append");
        let data = b.into_inner().expect("finish");
        extract(&data, d.path(), "hosts", Some("copy")).expect("extract");
        assert_eq!(std::fs::read(d.path().join("copy")).expect("read"), b"hi");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "l", "/").expect("link");
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, "l/tmp/x", &b"x"[..]).expect("append");
        let data = b.into_inner().expect("finish");
        assert!(extract(&data, d.path(), "l", None).is_err());
    }
}
