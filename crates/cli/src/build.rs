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
    /// Always attempt to pull a newer version of the image
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

/// What `berth build` sends as the context.
enum Context {
    /// A directory, tarred with what `.dockerignore` excludes left out (as the docker CLI does),
    /// plus a Dockerfile from outside it (`-f` elsewhere, `-f -`) under a generated name.
    Dir { dir: PathBuf, ignore: oci::dockerignore::Ignore, extra: Option<(String, Vec<u8>)> },
    /// `berth build - < ctx.tar`: stdin is the context, sent as it is (tar, gzip, …).
    Stdin,
    /// `berth build - < Dockerfile`: a context with just that Dockerfile.
    Dockerfile(Vec<u8>),
}

/// Whether `head` starts an archive the daemon takes as a context (tar, gzip, bzip2, xz, zstd).
fn is_archive(head: &[u8]) -> bool {
    head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(b"BZh")
        || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00])
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || (head.len() >= 262 && &head[257..262] == b"ustar")
}

/// Appends `dir`'s entries under `rel` (sorted), leaving out what `ig` excludes; the
/// Dockerfile and `.dockerignore` themselves always go (docker's TrimBuildFilesFromExcludes).
fn append_dir<W: std::io::Write>(
    b: &mut tar::Builder<W>,
    dir: &Path,
    rel: &str,
    ig: &oci::dockerignore::Ignore,
    keep: &[String],
) -> std::io::Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let is_dir = e.file_type()?.is_dir();
        let excluded = !ig.is_empty() && !keep.contains(&r) && ig.excluded(&r);
        if excluded && !(is_dir && ig.may_reinclude_below(&r)) {
            continue;
        }
        if is_dir {
            if !excluded {
                b.append_path_with_name(e.path(), &r)?;
            }
            append_dir(b, &e.path(), &r, ig, keep)?;
        } else {
            b.append_path_with_name(e.path(), &r)?;
        }
    }
    Ok(())
}

/// Writes the context as a tar to `w`.
fn write_context<W: std::io::Write>(ctx: Context, dockerfile: &str, w: W) -> std::io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    b.mode(tar::HeaderMode::Complete);
    let add_file = |b: &mut tar::Builder<_>, name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data)
    };
    match ctx {
        Context::Dir { dir, ignore, extra } => {
            let keep = vec![dockerfile.to_owned(), ".dockerignore".to_owned()];
            append_dir(&mut b, &dir, "", &ignore, &keep)?;
            if let Some((name, data)) = extra {
                add_file(&mut b, &name, &data)?;
            }
        }
        Context::Dockerfile(data) => add_file(&mut b, "Dockerfile", &data)?,
        Context::Stdin => return Err(std::io::Error::other("a context from stdin is sent as it is")),
    }
    let mut w = b.into_inner()?;
    w.flush()
}

/// `.dockerignore` of a context: `<Dockerfile>.dockerignore` when the Dockerfile is in the
/// context and has one, else the context's `.dockerignore`.
fn read_ignore(dir: &Path, dockerfile: Option<&str>) -> std::io::Result<oci::dockerignore::Ignore> {
    let own = dockerfile.map(|f| dir.join(format!("{f}.dockerignore")));
    let text = match own.as_deref().map(std::fs::read_to_string) {
        Some(Ok(t)) => t,
        _ => match std::fs::read_to_string(dir.join(".dockerignore")) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e),
        },
    };
    Ok(oci::dockerignore::Ignore::parse(&text))
}

fn generated_name() -> String {
    format!(
        ".dockerfile.{:012x}",
        std::process::id() as u64 * 7919 + chrono::Utc::now().timestamp_subsec_nanos() as u64
    )
}

fn read_stdin() -> std::io::Result<Vec<u8>> {
    let mut v = Vec::new();
    std::io::Read::read_to_end(&mut std::io::stdin(), &mut v)?;
    Ok(v)
}

pub async fn build(c: &Client, a: BuildArgs) -> i32 {
    let mut q: Vec<String> = Vec::new();
    let mut stdin_head: Vec<u8> = Vec::new();
    let ctx = if a.context == "-" {
        if a.file.as_deref() == Some("-") {
            eprintln!("invalid argument: can't use stdin for both build context and dockerfile");
            return 1;
        }
        // Peek: an archive is the context, anything else is a Dockerfile (docker's rule).
        let mut head = vec![0u8; 512];
        let mut n = 0;
        let mut stdin = std::io::stdin();
        while n < head.len() {
            match std::io::Read::read(&mut stdin, &mut head[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => {
                    eprintln!("read build context from stdin: {e}");
                    return 1;
                }
            }
        }
        head.truncate(n);
        if is_archive(&head) {
            if let Some(f) = &a.file {
                q.push(format!("dockerfile={}", enc(f)));
            }
            stdin_head = head;
            Context::Stdin
        } else {
            let mut data = head;
            match read_stdin() {
                Ok(rest) => data.extend_from_slice(&rest),
                Err(e) => {
                    eprintln!("read Dockerfile from stdin: {e}");
                    return 1;
                }
            }
            Context::Dockerfile(data)
        }
    } else {
        let dir = PathBuf::from(&a.context);
        if !dir.is_dir() {
            eprintln!("unable to prepare context: path \"{}\" not found", a.context);
            return 1;
        }
        let mut extra = None;
        let mut rel_dockerfile = None;
        match a.file.as_deref() {
            Some("-") => {
                let data = match read_stdin() {
                    Ok(d) => d,
                    Err(e) => {
                        eprintln!("read Dockerfile from stdin: {e}");
                        return 1;
                    }
                };
                let name = generated_name();
                q.push(format!("dockerfile={}", enc(&name)));
                extra = Some((name, data));
            }
            Some(f) => {
                let fp = PathBuf::from(f);
                let abs = std::fs::canonicalize(&fp).unwrap_or(fp.clone());
                let cdir = std::fs::canonicalize(&dir).unwrap_or(dir.clone());
                match abs.strip_prefix(&cdir) {
                    Ok(rel) => {
                        let rel = rel.to_string_lossy().into_owned();
                        q.push(format!("dockerfile={}", enc(&rel)));
                        rel_dockerfile = Some(rel);
                    }
                    Err(_) => {
                        let data = match std::fs::read(&abs) {
                            Ok(d) => d,
                            Err(_) => {
                                eprintln!(
                                    "unable to prepare context: unable to evaluate symlinks in Dockerfile path: lstat {f}: no such file or directory"
                                );
                                return 1;
                            }
                        };
                        let name = generated_name();
                        q.push(format!("dockerfile={}", enc(&name)));
                        extra = Some((name, data));
                    }
                }
            }
            None => rel_dockerfile = Some("Dockerfile".to_owned()),
        }
        let ignore = match read_ignore(&dir, rel_dockerfile.as_deref()) {
            Ok(i) => i,
            Err(e) => {
                eprintln!("unable to prepare context: read .dockerignore: {e}");
                return 1;
            }
        };
        Context::Dir { dir, ignore, extra }
    };
    let dockerfile_name = match (&ctx, a.file.as_deref()) {
        (Context::Dir { .. }, Some(f)) if f != "-" => f.to_owned(),
        _ => "Dockerfile".to_owned(),
    };
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
    if a.pull {
        q.push("pull=1".into());
    }
    if a.quiet {
        q.push("q=1".into());
    }
    q.push(format!("rm={}", if a.rm { 1 } else { 0 }));
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let writer_task = tokio::task::spawn_blocking(move || {
        let mut w = tokio_util_bridge(writer);
        match ctx {
            Context::Stdin => {
                std::io::Write::write_all(&mut w, &stdin_head)?;
                std::io::copy(&mut std::io::stdin(), &mut w)?;
                std::io::Write::flush(&mut w)
            }
            // Large writes: each one crosses into the async side of the duplex.
            ctx => write_context(ctx, &dockerfile_name, std::io::BufWriter::with_capacity(1 << 20, w)),
        }
    });
    let mut headers = vec![("Content-Type", "application/x-tar".to_owned())];
    if let Some(h) = crate::credentials::registry_config() {
        headers.push(("X-Registry-Config", h));
    }
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
            // A base image's pull: its status lines (the bars are left to `berth pull`).
            if let Some(st) = v.get("status").and_then(Value::as_str)
                && !a.quiet
                && v.get("progressDetail").and_then(|d| d.get("current")).is_none()
            {
                let line = match v.get("id").and_then(Value::as_str) {
                    Some(id) => format!("{id}: {st}\n"),
                    None => format!("{st}\n"),
                };
                let _ = out.write_all(line.as_bytes());
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
