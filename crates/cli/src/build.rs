//! `berth build`, `commit` and `diff` (`builder prune` is in `disk.rs`).

use std::path::{Path, PathBuf};

use api::client::{Client, ClientError, reader_body};
use clap::Args;
use http_body_util::BodyExt;
use hyper::Method;
use serde_json::Value;

use crate::commands::enc;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name and optionally a tag (format: "name:tag")
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Name of the Dockerfile (default: "PATH/Dockerfile")
    #[arg(short = 'f', long = "file")]
    pub file: Option<String>,
    /// Set build-time variables
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// Set the target build stage to build
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use cache when building the image
    #[arg(long)]
    pub no_cache: bool,
    /// Set metadata for an image
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Suppress the build output and print image ID on success
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Images to consider as cache sources
    #[arg(long = "cache-from")]
    pub cache_from: Vec<String>,
    /// Networking mode for the RUN instructions during build
    #[arg(long)]
    pub network: Option<String>,
    /// Write the image ID to the file
    #[arg(long)]
    pub iidfile: Option<String>,
    /// Always attempt to pull a newer version of the image (accepted; berth builds from local images)
    #[arg(long)]
    pub pull: bool,
    /// Remove intermediate containers after a successful build (always done)
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rm: bool,
    /// Build context directory
    pub context: String,
}

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")
    #[arg(short = 'a', long)]
    pub author: Option<String>,
    /// Apply Dockerfile instruction to the created image
    #[arg(short = 'c', long = "change")]
    pub changes: Vec<String>,
    /// Commit message
    #[arg(short = 'm', long)]
    pub message: Option<String>,
    /// Pause container during commit
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub pause: bool,
    pub container: String,
    pub reference: Option<String>,
}

fn report(e: &ClientError) -> i32 {
    match e {
        ClientError::Status { message, .. } => eprintln!("Error response from daemon: {message}"),
        other => eprintln!("{other}"),
    }
    1
}

/// Writes the context directory (and a Dockerfile outside it, under a generated name) as a
/// tar to `w`.
fn write_context(dir: &Path, outside: Option<(&Path, &str)>, w: impl std::io::Write) -> std::io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    for entry in std::fs::read_dir(dir)? {
        let e = entry?;
        let name = e.file_name();
        let p = e.path();
        if e.file_type()?.is_dir() {
            b.append_dir_all(&name, &p)?;
        } else {
            b.append_path_with_name(&p, &name)?;
        }
    }
    if let Some((file, name)) = outside {
        b.append_path_with_name(file, name)?;
    }
    b.finish()
}

pub async fn build(c: &Client, a: BuildArgs) -> i32 {
    let dir = PathBuf::from(&a.context);
    if !dir.is_dir() {
        eprintln!("unable to prepare context: path \"{}\" not found", a.context);
        return 1;
    }
    let mut q: Vec<String> = Vec::new();
    let mut outside = None;
    if let Some(f) = &a.file {
        let fp = PathBuf::from(f);
        let abs = std::fs::canonicalize(&fp).unwrap_or(fp.clone());
        let ctx = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
        match abs.strip_prefix(&ctx) {
            Ok(rel) => q.push(format!("dockerfile={}", enc(&rel.to_string_lossy()))),
            Err(_) => {
                if !abs.is_file() {
                    eprintln!(
                        "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {f}: no such file or directory"
                    );
                    return 1;
                }
                let name = format!(
                    ".dockerfile.{:x}",
                    std::process::id() as u64 * 7919 + chrono::Utc::now().timestamp_subsec_nanos() as u64
                );
                q.push(format!("dockerfile={}", enc(&name)));
                outside = Some((abs, name));
            }
        }
    }
    for t in &a.tags {
        q.push(format!("t={}", enc(t)));
    }
    let mut args = serde_json::Map::new();
    for ba in &a.build_args {
        match ba.split_once('=') {
            Some((k, v)) => {
                args.insert(k.to_owned(), Value::String(v.to_owned()));
            }
            None => {
                // `--build-arg NAME` takes the value from the environment, when set.
                if let Ok(v) = std::env::var(ba) {
                    args.insert(ba.clone(), Value::String(v));
                }
            }
        }
    }
    if !args.is_empty() {
        q.push(format!("buildargs={}", enc(&Value::Object(args).to_string())));
    }
    if !a.labels.is_empty() {
        let m: serde_json::Map<String, Value> = a
            .labels
            .iter()
            .map(|l| match l.split_once('=') {
                Some((k, v)) => (k.to_owned(), Value::String(v.to_owned())),
                None => (l.clone(), Value::String(String::new())),
            })
            .collect();
        q.push(format!("labels={}", enc(&Value::Object(m).to_string())));
    }
    if !a.cache_from.is_empty() {
        q.push(format!("cachefrom={}", enc(&serde_json::to_string(&a.cache_from).unwrap_or_default())));
    }
    if let Some(t) = &a.target {
        q.push(format!("target={}", enc(t)));
    }
    if let Some(n) = &a.network {
        q.push(format!("networkmode={}", enc(n)));
    }
    if a.no_cache {
        q.push("nocache=1".into());
    }
    if a.quiet {
        q.push("q=1".into());
    }
    q.push(format!("rm={}", if a.rm { 1 } else { 0 }));
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let tar_dir = dir.clone();
    let writer_task = tokio::task::spawn_blocking(move || {
        let w = tokio_util_bridge(writer);
        let outside = outside.as_ref().map(|(p, n)| (p.as_path(), n.as_str()));
        write_context(&tar_dir, outside, w)
    });
    let headers = vec![("Content-Type", "application/x-tar".to_owned())];
    let resp = c.request(Method::POST, &format!("/build?{}", q.join("&")), headers, reader_body(reader)).await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            writer_task.abort();
            return report(&e);
        }
    };
    if let Ok(Err(e)) = writer_task.await {
        eprintln!("send build context: {e}");
        return 1;
    }
    let mut body = resp.into_body();
    let mut buf = Vec::new();
    let mut id = None;
    let mut code = 0;
    use std::io::Write;
    let mut out = std::io::stdout();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(d) = frame.into_data() {
            buf.extend_from_slice(&d);
        }
        while let Some(i) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=i).collect();
            let Ok(v) = serde_json::from_slice::<Value>(line.trim_ascii()) else { continue };
            if let Some(s) = v.get("stream").and_then(Value::as_str)
                && !a.quiet
            {
                let _ = out.write_all(s.as_bytes());
                let _ = out.flush();
            }
            if let Some(i) = v.pointer("/aux/ID").and_then(Value::as_str) {
                id = Some(i.to_owned());
            }
            if let Some(e) = v.get("error").and_then(Value::as_str) {
                eprintln!("{e}");
                code = 1;
            }
        }
    }
    if code == 0 {
        match &id {
            Some(i) => {
                if a.quiet {
                    println!("{i}");
                }
                if let Some(f) = &a.iidfile
                    && let Err(e) = std::fs::write(f, i)
                {
                    eprintln!("write iidfile {f}: {e}");
                    return 1;
                }
            }
            None => {
                eprintln!("the build ended without an image");
                return 1;
            }
        }
    }
    code
}

/// A blocking writer over an async one (the tar crate writes synchronously).
fn tokio_util_bridge(w: tokio::io::DuplexStream) -> impl std::io::Write {
    tokio_util::io::SyncIoBridge::new(w)
}

pub async fn commit(c: &Client, a: CommitArgs) -> i32 {
    let mut q = vec![format!("container={}", enc(&a.container)), format!("pause={}", a.pause)];
    if let Some(r) = &a.reference {
        let (repo, tag) = match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => (r[..i].to_owned(), Some(r[i + 1..].to_owned())),
            _ => (r.clone(), None),
        };
        q.push(format!("repo={}", enc(&repo)));
        if let Some(t) = tag {
            q.push(format!("tag={}", enc(&t)));
        }
    }
    if let Some(m) = &a.message {
        q.push(format!("comment={}", enc(m)));
    }
    if let Some(au) = &a.author {
        q.push(format!("author={}", enc(au)));
    }
    for ch in &a.changes {
        q.push(format!("changes={}", enc(ch)));
    }
    match c.post::<Value, Value>(&format!("/commit?{}", q.join("&")), None).await {
        Ok(v) => {
            println!("{}", v.get("Id").and_then(Value::as_str).unwrap_or_default());
            0
        }
        Err(e) => report(&e),
    }
}

pub async fn diff(c: &Client, container: &str) -> i32 {
    match c.get::<Value>(&format!("/containers/{}/changes", enc(container))).await {
        Ok(v) => {
            for ch in v.as_array().into_iter().flatten() {
                let kind = match ch.get("Kind").and_then(Value::as_i64) {
                    Some(0) => 'C',
                    Some(1) => 'A',
                    _ => 'D',
                };
                println!("{kind} {}", ch.get("Path").and_then(Value::as_str).unwrap_or_default());
            }
            0
        }
        Err(e) => report(&e),
    }
}
