//! `/build` (the legacy builder protocol: a tar context in, JSON lines out), `/build/prune`,
//! `/commit` and `/containers/{id}/changes`.

use std::collections::BTreeMap;
use std::io::Read;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use oci::Reference;
use serde_json::{Value, json};

use super::{AppState, channel_body};
use crate::build::{ChannelProgress, CommitOptions};
use crate::error::{EngineError, Result};

/// The query as (key, value) pairs: `t` and `changes` may repeat.
fn pairs(q: &Option<String>) -> Vec<(String, String)> {
    q.as_deref().map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default()
}

fn get<'a>(p: &'a [(String, String)], k: &str) -> Option<&'a str> {
    p.iter().rev().find(|(n, _)| n == k).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn truthy(p: &[(String, String)], k: &str) -> bool {
    get(p, k).is_some_and(|v| matches!(v, "1" | "true" | "True" | "TRUE"))
}

fn reference(s: &str) -> Result<Reference> {
    Reference::parse_with_default_tag(s).map_err(|e| EngineError::BadRequest(format!("invalid tag `{s}`: {e}")))
}

/// Unpacks the request's tar (plain or gzip) into `dir`; returns the sha256 of each regular
/// file's contents, taken while writing it (the builder's COPY hashes then never re-read the
/// context).
fn unpack_context(src: impl Read, dir: &std::path::Path) -> Result<build::fsutil::KnownDigests> {
    use sha2::Digest as _;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let mut br = std::io::BufReader::with_capacity(1 << 20, src);
    let head =
        std::io::BufRead::fill_buf(&mut br).map_err(|e| EngineError::BadRequest(format!("read build context: {e}")))?;
    let r: Box<dyn Read> =
        if head.starts_with(&[0x1f, 0x8b]) { Box::new(flate2::read::GzDecoder::new(br)) } else { Box::new(br) };
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    let bad = |e: std::io::Error| EngineError::BadRequest(format!("build context is not a valid tar archive: {e}"));
    let outside = |p: &std::path::Path| {
        EngineError::BadRequest(format!("build context entry `{}` would be written outside the context", p.display()))
    };
    let canon_dir = std::fs::canonicalize(dir).map_err(EngineError::internal)?;
    let mut known = build::fsutil::KnownDigests::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut old_buf = vec![0u8; 1 << 20];
    let mut made_dirs: std::collections::HashSet<std::path::PathBuf> = std::collections::HashSet::new();
    // Every path the archive has, with its parents: what else is in `dir` (a reused one) goes.
    let mut present: std::collections::HashSet<std::path::PathBuf> = std::collections::HashSet::new();
    for entry in ar.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let t = entry.header().entry_type();
        if t.is_character_special() || t.is_block_special() {
            continue;
        }
        let path = entry.path().map_err(bad)?.into_owned();
        if let Some(rel) = build::fsutil::clean_rel(&path.to_string_lossy()) {
            let mut p = rel.as_path();
            while !p.as_os_str().is_empty() && present.insert(p.to_path_buf()) {
                p = p.parent().unwrap_or(std::path::Path::new(""));
            }
        }
        if t.is_file() {
            // Regular files: written and hashed in one pass (the common case by far).
            let rel = build::fsutil::clean_rel(&path.to_string_lossy()).ok_or_else(|| outside(&path))?;
            let Some(parent) = rel.parent() else { continue };
            let dest = canon_dir.join(&rel);
            let pdir = canon_dir.join(parent);
            if !made_dirs.contains(&pdir) {
                if std::fs::create_dir_all(&pdir).is_err() {
                    // A reused directory with a file where this context has a directory.
                    let mut cur = canon_dir.clone();
                    for c in parent.components() {
                        cur.push(c);
                        if std::fs::symlink_metadata(&cur).is_ok_and(|m| !m.is_dir() && !m.file_type().is_symlink()) {
                            std::fs::remove_file(&cur).map_err(bad)?;
                        }
                    }
                    std::fs::create_dir_all(&pdir).map_err(bad)?;
                }
                // A symlink in the context must not lead the write out of it.
                if !std::fs::canonicalize(&pdir).map_err(bad)?.starts_with(&canon_dir) {
                    return Err(outside(&path));
                }
                made_dirs.insert(pdir);
            }
            let mode = entry.header().mode().map_err(bad)? & 0o7777;
            let mtime = entry.header().mtime().unwrap_or(0);
            match std::fs::symlink_metadata(&dest) {
                Ok(m) if m.is_dir() => std::fs::remove_dir_all(&dest).map_err(bad)?,
                Ok(m) if !m.is_file() || m.nlink() > 1 => std::fs::remove_file(&dest).map_err(bad)?,
                _ => {}
            }
            // Over a file of a reused directory: compared as it comes and rewritten only from
            // the first difference, never truncated to zero first (ext4 flushes a file
            // truncated to zero and rewritten when it is closed: auto_da_alloc).
            let mut f = std::os::unix::fs::OpenOptionsExt::custom_flags(
                std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false),
                libc::O_NOFOLLOW,
            )
            .open(&dest)
            .map_err(bad)?;
            let mut h = sha2::Sha256::new();
            let mut same = f.metadata().map_err(bad)?.len() > 0;
            let mut pos: u64 = 0;
            loop {
                let n = entry.read(&mut buf).map_err(bad)?;
                if n == 0 {
                    break;
                }
                h.update(&buf[..n]);
                if same {
                    let old = &mut old_buf[..n];
                    same = std::io::Read::read_exact(&mut f, old).is_ok() && *old == buf[..n];
                    if !same {
                        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(pos)).map_err(bad)?;
                    }
                }
                if !same {
                    f.write_all(&buf[..n]).map_err(bad)?;
                }
                pos += n as u64;
            }
            if f.metadata().map_err(bad)?.len() != pos {
                f.set_len(pos).map_err(bad)?;
            }
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(bad)?;
            let _ = f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime));
            known.insert(dest, h.finalize().into());
            continue;
        }
        // In a reused directory, an entry of another type at the same path goes first.
        if let Some(rel) = build::fsutil::clean_rel(&path.to_string_lossy())
            && !rel.as_os_str().is_empty()
            && let Ok(m) = std::fs::symlink_metadata(dir.join(&rel))
        {
            if m.is_dir() && !t.is_dir() {
                std::fs::remove_dir_all(dir.join(&rel)).map_err(bad)?;
            } else if !m.is_dir() && (t.is_dir() || m.nlink() > 1) {
                std::fs::remove_file(dir.join(&rel)).map_err(bad)?;
            }
        }
        if !entry.unpack_in(dir).map_err(bad)? {
            return Err(outside(&path));
        }
    }
    remove_absent(&canon_dir, std::path::Path::new(""), &present).map_err(bad)?;
    // Paths as the builder sees them (under `dir`, which may differ from its canonical form).
    if canon_dir != dir {
        known =
            known.into_iter().filter_map(|(p, d)| p.strip_prefix(&canon_dir).ok().map(|r| (dir.join(r), d))).collect();
    }
    Ok(known)
}

/// Removes from a reused context directory what the new context does not have.
fn remove_absent(
    root: &std::path::Path,
    rel: &std::path::Path,
    present: &std::collections::HashSet<std::path::PathBuf>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let r = rel.join(e.file_name());
        let is_dir = e.file_type()?.is_dir();
        if !present.contains(&r) {
            if is_dir { std::fs::remove_dir_all(e.path())? } else { std::fs::remove_file(e.path())? }
        } else if is_dir {
            remove_absent(root, &r, present)?;
        }
    }
    Ok(())
}

/// `POST /build`.
pub async fn build(State(e): State<AppState>, RawQuery(q): RawQuery, req: Request) -> Result<Response> {
    let p = pairs(&q);
    if get(&p, "remote").is_some() {
        return Err(EngineError::Unsupported("builds from a remote context are not supported yet".into()));
    }
    let mut opts = build::BuildOptions {
        dockerfile: get(&p, "dockerfile").unwrap_or("Dockerfile").to_owned(),
        target: get(&p, "target").map(str::to_owned),
        no_cache: truthy(&p, "nocache"),
        pull: truthy(&p, "pull"),
        network: match get(&p, "networkmode") {
            Some("none") => "none".into(),
            Some("host") => "host".into(),
            _ => "default".into(),
        },
        ..Default::default()
    };
    for (k, v) in &p {
        if k == "t" && !v.is_empty() {
            opts.tags.push(reference(v)?);
        }
    }
    if let Some(a) = get(&p, "buildargs") {
        let m: BTreeMap<String, Option<String>> =
            serde_json::from_str(a).map_err(|err| EngineError::BadRequest(format!("invalid buildargs: {err}")))?;
        opts.build_args = m;
    }
    if let Some(l) = get(&p, "labels") {
        opts.labels =
            serde_json::from_str(l).map_err(|err| EngineError::BadRequest(format!("invalid labels: {err}")))?;
    }
    if let Some(c) = get(&p, "cachefrom") {
        opts.cache_from =
            serde_json::from_str(c).map_err(|err| EngineError::BadRequest(format!("invalid cachefrom: {err}")))?;
    }
    let quiet = truthy(&p, "q");
    let auth = match req.headers().get("x-registry-config").and_then(|v| v.to_str().ok()) {
        Some(h) => crate::build::registry_config(h)?,
        None => Default::default(),
    };
    let ctx = e.new_context_dir()?;
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(body);
    let (ctx2, dockerfile) = (ctx.clone(), opts.dockerfile.clone());
    let t0 = std::time::Instant::now();
    let prepared = tokio::task::spawn_blocking(move || -> Result<build::fsutil::KnownDigests> {
        let known = unpack_context(tokio_util::io::SyncIoBridge::new(reader), &ctx2)?;
        tracing::debug!("build: context received and unpacked in {:?}", t0.elapsed());
        // Syntax errors answer the request itself, before anything runs.
        build::builder::load_dockerfile(&ctx2, &dockerfile)?;
        Ok(known)
    })
    .await
    .map_err(EngineError::internal)?;
    let known = match prepared {
        Ok(k) => k,
        Err(err) => {
            crate::build::release_context_dir(&ctx);
            return Err(err);
        }
    };
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let progress = ChannelProgress { tx: tx.clone(), quiet };
    tokio::spawn(async move {
        if let Err(err) = e.build(ctx, opts, auth, known, progress).await {
            let msg = err.to_string();
            let mut detail = json!({"message": msg});
            if let build::BuildError::RunFailed { code, .. } = &err {
                detail["code"] = json!(code);
            }
            let mut line = serde_json::to_vec(&json!({"errorDetail": detail, "error": msg})).unwrap_or_default();
            line.extend_from_slice(b"\r\n");
            let _ = tx.send(bytes::Bytes::from(line)).await;
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/json")], channel_body(rx)).into_response())
}

/// `POST /build/prune`.
pub async fn prune(State(e): State<AppState>) -> Result<axum::Json<Value>> {
    let (ids, space) = e.prune_build_cache().await?;
    Ok(axum::Json(json!({"CachesDeleted": ids, "SpaceReclaimed": space})))
}

/// `POST /commit`.
pub async fn commit(State(e): State<AppState>, RawQuery(q): RawQuery) -> Result<Response> {
    let p = pairs(&q);
    let name = get(&p, "container").ok_or_else(|| EngineError::BadRequest("container is required".into()))?;
    let c = e.lookup(name)?;
    let tag = match get(&p, "repo") {
        Some(repo) => Some(reference(&match get(&p, "tag") {
            Some(t) => format!("{repo}:{t}"),
            None => repo.to_owned(),
        })?),
        None => None,
    };
    let tag_name = tag.as_ref().map(Reference::familiar);
    let o = CommitOptions {
        tag,
        comment: get(&p, "comment").unwrap_or_default().to_owned(),
        author: get(&p, "author").unwrap_or_default().to_owned(),
        changes: p.iter().filter(|(k, v)| k == "changes" && !v.is_empty()).map(|(_, v)| v.clone()).collect(),
        pause: get(&p, "pause").is_none_or(|v| matches!(v, "1" | "true" | "True" | "TRUE")),
    };
    let comment = o.comment.clone();
    let id = e.commit(&c, o).await?;
    e.container_event(&c, "commit", vec![("comment".into(), comment), ("imageID".into(), id.to_string())]);
    if let Some(t) = tag_name {
        e.image_event("tag", &id.to_string(), &t);
    }
    Ok((StatusCode::CREATED, axum::Json(json!({"Id": id.to_string()}))).into_response())
}

/// `GET /containers/{id}/changes`.
pub async fn changes(State(e): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let c = e.lookup(&id)?;
    let ch = e.changes(&c).await?;
    Ok(axum::Json(json!(ch.iter().map(|c| json!({"Path": c.path, "Kind": c.kind})).collect::<Vec<_>>())))
}
