//! Pull: tag → manifest (index → the platform's manifest) → config → layers.
//!
//! Each missing layer streams from the registry through one blocking thread that writes the
//! blob to `content/ingest/` (hashing it) and unpacks it under `snapshots/tmp-*` at the same
//! time. Only when the blob digest and the layer's diff_id both check are the blob and the
//! snapshot renamed into place, and only when every layer is in place is the image recorded.
//! A pull killed at any point leaves ingest files and `tmp-*` directories, removed at the next
//! start, and verified layers, which the next pull finds and does not fetch again.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use oci::{Digest, Reference, media_type};
use reqwest::StatusCode;
use reqwest::header::ACCEPT;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::session::{Session, error_text};
use super::{Credentials, Event, Events, Registries, RemoteError, Result, api_host};
use crate::ImageError;
use crate::snapshot::chain_id;
use crate::store::{ImageStore, LayerRecord};

/// Manifests are small; Distribution refuses more than 4 MiB too.
const MAX_MANIFEST: usize = 4 << 20;

pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The host's platform, in Go's names (`linux/amd64`).
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform { os: "linux".into(), arch: arch.into(), variant: None }
    }

    pub fn parse(s: &str) -> Result<Platform> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(Platform::host());
        }
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || RemoteError::Invalid(format!("invalid platform `{s}`: expected os/arch[/variant]"));
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => {
                Ok(Platform { os: os.to_ascii_lowercase(), arch: arch.to_ascii_lowercase(), variant: None })
            }
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_ascii_lowercase(),
                arch: arch.to_ascii_lowercase(),
                variant: Some(v.to_ascii_lowercase()),
            }),
            _ => Err(bad()),
        }
    }

    fn matches(&self, p: &Value) -> bool {
        let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
        s("os") == self.os
            && s("architecture") == self.arch
            && self.variant.as_deref().is_none_or(|v| s("variant") == v)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A content descriptor from a manifest.
#[derive(Debug, Clone)]
pub struct Desc {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

fn desc(v: &Value, what: &str) -> Result<Desc> {
    let bad = |m: &str| RemoteError::Invalid(format!("manifest: {what}: {m}"));
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no digest"))?
        .parse::<Digest>()
        .map_err(|e| bad(&e.to_string()))?;
    let size = v.get("size").and_then(Value::as_u64).ok_or_else(|| bad("no size"))?;
    let media_type = v.get("mediaType").and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(Desc { media_type, digest, size })
}

/// What a pull did.
#[derive(Debug, Clone)]
pub struct Pulled {
    pub id: Digest,
    /// `name@sha256:…` of what the tag named (the index for a multi-platform image).
    pub repo_digest: String,
    /// Whether anything changed (new layers or the tag moved).
    pub updated: bool,
}

fn short(d: &Digest) -> String {
    d.short().to_owned()
}

/// Fetches a manifest or index; verifies it against `expected` when pulling by digest.
async fn fetch_manifest(
    s: &Session,
    r: &Reference,
    what: &str,
    expected: Option<&Digest>,
) -> Result<(Bytes, Digest, String)> {
    let url = s.url(&format!("manifests/{what}"));
    let resp = s.get(&url, &|b| b.header(ACCEPT, MANIFEST_ACCEPT)).await.map_err(|e| denied(r, e))?;
    let status = resp.status();
    if !status.is_success() {
        let (status, _, text) = error_text(resp).await;
        return Err(match status {
            StatusCode::NOT_FOUND => RemoteError::NotFound(format!("manifest for {} not found: {text}", r.familiar())),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => denied(r, RemoteError::Unauthorized(text)),
            _ => RemoteError::Http { method: "GET".into(), url, message: text },
        });
    }
    let ct = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    if resp.content_length().is_some_and(|n| n as usize > MAX_MANIFEST) {
        return Err(RemoteError::Invalid(format!("manifest {what} of {} is larger than 4 MiB", r.familiar_name())));
    }
    let body = resp.bytes().await.map_err(|e| RemoteError::Http {
        method: "GET".into(),
        url: url.clone(),
        message: super::session::chain(&e),
    })?;
    if body.len() > MAX_MANIFEST {
        return Err(RemoteError::Invalid(format!("manifest {what} of {} is larger than 4 MiB", r.familiar_name())));
    }
    let digest = Digest::sha256_of(&body);
    if let Some(exp) = expected
        && *exp != digest
    {
        return Err(RemoteError::Digest {
            what: "manifest".into(),
            digest: exp.to_string(),
            actual: digest.to_string(),
        });
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| RemoteError::Invalid(format!("manifest {what}: {e}")))?;
    let mt = v.get("mediaType").and_then(Value::as_str).map(str::to_owned).unwrap_or(ct);
    Ok((body, digest, mt))
}

/// Docker's answer when a pull is refused: the repository may not exist or need a login.
fn denied(r: &Reference, e: RemoteError) -> RemoteError {
    match e {
        RemoteError::Unauthorized(m) | RemoteError::Denied(m) => RemoteError::Denied(format!(
            "pull access denied for {}, repository does not exist or may require 'docker login': {m}",
            r.familiar_name()
        )),
        other => other,
    }
}

/// Pulls `r` for `platform` into `store` and tags it (when `r` has a tag).
pub async fn pull(
    store: Arc<ImageStore>,
    regs: Arc<Registries>,
    r: &Reference,
    platform: &Platform,
    creds: Option<Credentials>,
    ev: Events,
) -> Result<Pulled> {
    let host = api_host(r.domain()).to_owned();
    let what = match (r.digest(), r.tag()) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.to_owned(),
        (None, None) => "latest".to_owned(),
    };
    // Mirrors first, then the registry itself.
    let mut endpoints: Vec<Option<String>> = regs.mirrors_for(&host).into_iter().map(Some).collect();
    endpoints.push(None);
    let mut found = None;
    let mut last_err = None;
    for ep in endpoints {
        let s = match Session::new(&regs, &host, ep.as_deref(), r.path(), creds.clone(), Vec::new()).await {
            Ok(s) => s,
            Err(e) if ep.is_some() => {
                tracing::info!("mirror {}: {e}; trying the next endpoint", ep.as_deref().unwrap_or_default());
                last_err = Some(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        match fetch_manifest(&s, r, &what, r.digest()).await {
            Ok(m) => {
                found = Some((s, m));
                break;
            }
            Err(e) if ep.is_some() => {
                tracing::info!("mirror {}: {e}; trying the next endpoint", s.base);
                last_err = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    let Some((s, (mut body, top_digest, mut mt))) = found else {
        return Err(last_err.unwrap_or_else(|| RemoteError::NotFound(format!("{} not found", r.familiar()))));
    };
    let s = Arc::new(s);
    ev.send(Event::layer(&what, format!("Pulling from {}", r.path())));
    if mt == media_type::OCI_INDEX || mt == media_type::DOCKER_MANIFEST_LIST {
        let v: Value = serde_json::from_slice(&body).map_err(|e| RemoteError::Invalid(format!("index: {e}")))?;
        let entry = v
            .get("manifests")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|m| m.get("platform").is_some_and(|p| platform.matches(p)))
            .ok_or_else(|| {
                RemoteError::NotFound(format!("no matching manifest for {platform} in the manifest list entries"))
            })?;
        let d = desc(entry, "index entry")?;
        let (b, _, m) = fetch_manifest(&s, r, &d.digest.to_string(), Some(&d.digest)).await?;
        body = b;
        mt = m;
    }
    if mt != media_type::OCI_MANIFEST && mt != media_type::DOCKER_MANIFEST {
        return Err(RemoteError::Invalid(format!(
            "{}: unsupported manifest media type `{mt}` (berth pulls OCI and Docker schema 2 images)",
            r.familiar()
        )));
    }
    let m: Value = serde_json::from_slice(&body).map_err(|e| RemoteError::Invalid(format!("manifest: {e}")))?;
    let config = desc(m.get("config").unwrap_or(&Value::Null), "config")?;
    let layers: Vec<Desc> = m
        .get("layers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|l| desc(l, "layer"))
        .collect::<Result<_>>()?;
    for l in &layers {
        if l.media_type.contains("foreign") || l.media_type.contains("nondistributable") {
            return Err(RemoteError::Invalid(format!("layer {}: foreign layers are not supported", l.digest)));
        }
    }

    let config_bytes = fetch_config(&s, &store, &config).await?;
    let cfg: Value =
        serde_json::from_slice(&config_bytes).map_err(|e| RemoteError::Invalid(format!("image config: {e}")))?;
    let diff_ids: Vec<Digest> = cfg
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| d.as_str().and_then(|d| d.parse().ok()))
        .collect::<Option<_>>()
        .ok_or_else(|| RemoteError::Invalid("image config: invalid rootfs.diff_ids".into()))?;
    if diff_ids.len() != layers.len() {
        return Err(RemoteError::Invalid(format!(
            "image config lists {} layers, the manifest {}",
            diff_ids.len(),
            layers.len()
        )));
    }

    let sem = Arc::new(Semaphore::new(regs.config.max_downloads.max(1)));
    let mut chains = Vec::new();
    let mut parent: Option<Digest> = None;
    for d in &diff_ids {
        let c = chain_id(parent.as_ref(), d);
        chains.push(c.clone());
        parent = Some(c);
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut records: Vec<Option<LayerRecord>> = vec![None; layers.len()];
    let mut waiting = 0usize;
    for (i, l) in layers.iter().enumerate() {
        let id = short(&l.digest);
        if store.snapshots().exists(&chains[i]) {
            ev.send(Event::layer(&id, "Already exists"));
            let size = store.layer_size(&chains[i]);
            records[i] = Some(LayerRecord {
                diff_id: diff_ids[i].clone(),
                chain_id: chains[i].clone(),
                blob: l.digest.clone(),
                media_type: l.media_type.clone(),
                blob_size: l.size,
                size,
            });
            continue;
        }
        ev.send(Event::layer(&id, "Pulling fs layer"));
        waiting += 1;
        if waiting > regs.config.max_downloads.max(1) {
            ev.send(Event::layer(&id, "Waiting"));
        }
        let job = LayerJob {
            session: s.clone(),
            store: store.clone(),
            desc: l.clone(),
            diff_id: diff_ids[i].clone(),
            parent: if i == 0 { None } else { Some(chains[i - 1].clone()) },
            ev: ev.clone(),
        };
        let sem = sem.clone();
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| RemoteError::Invalid(e.to_string()))?;
            job.run().await.map(|rec| (i, rec))
        });
    }
    let downloaded = !tasks.is_empty();
    while let Some(res) = tasks.join_next().await {
        let (i, rec) = res.map_err(|e| RemoteError::Invalid(format!("layer download: {e}")))??;
        records[i] = Some(rec);
    }
    let layers: Vec<LayerRecord> = records.into_iter().flatten().collect();
    let repo_digest = format!("{}@{top_digest}", r.familiar_name());
    ev.send(Event::status(format!("Digest: {top_digest}")));
    let tag = r.tag().map(|_| r.clone());
    let st = store.clone();
    let mb = body.to_vec();
    let rd = repo_digest.clone();
    let repo = r.path().to_owned();
    let (rec, before) = tokio::task::spawn_blocking(move || -> Result<_> {
        let before = match &tag {
            Some(t) => st.resolve(&t.to_string()).ok().map(|x| x.id),
            None => None,
        };
        let rec = st.create_pulled(&config_bytes, &mb, layers, Some(rd))?;
        if let Some(t) = &tag {
            st.tag(&rec.id, t)?;
        }
        // A later push to another repository of this registry can mount these blobs.
        for l in &rec.layers {
            st.add_blob_source(&l.blob, &host, &repo)?;
        }
        Ok((rec, before))
    })
    .await
    .map_err(|e| RemoteError::Invalid(e.to_string()))??;
    let updated = downloaded || before.as_ref() != Some(&rec.id);
    let shown = r.familiar();
    ev.send(Event::status(if updated {
        format!("Status: Downloaded newer image for {shown}")
    } else {
        format!("Status: Image is up to date for {shown}")
    }));
    Ok(Pulled { id: rec.id, repo_digest, updated })
}

/// The tags of `r`'s repository (`docker pull -a`), following `Link` pages.
pub async fn list_tags(regs: Arc<Registries>, r: &Reference, creds: Option<Credentials>) -> Result<Vec<String>> {
    let host = api_host(r.domain()).to_owned();
    let s = Session::new(&regs, &host, None, r.path(), creds, Vec::new()).await?;
    let mut url = s.url("tags/list?n=1000");
    let mut tags = Vec::new();
    loop {
        let resp = s.get(&url, &|b| b).await.map_err(|e| denied(r, e))?;
        if !resp.status().is_success() {
            let (status, _, text) = error_text(resp).await;
            return Err(match status {
                StatusCode::NOT_FOUND => {
                    RemoteError::NotFound(format!("repository {} not found: {text}", r.familiar_name()))
                }
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => denied(r, RemoteError::Unauthorized(text)),
                _ => RemoteError::Http { method: "GET".into(), url, message: text },
            });
        }
        let next = resp
            .headers()
            .get(reqwest::header::LINK)
            .and_then(|v| v.to_str().ok())
            .and_then(|l| l.split_once('<').and_then(|(_, rest)| rest.split_once('>')).map(|(u, _)| u.to_owned()));
        let v: Value = serde_json::from_slice(&resp.bytes().await.unwrap_or_default())
            .map_err(|e| RemoteError::Invalid(format!("tags of {}: {e}", r.familiar_name())))?;
        tags.extend(
            v.get("tags").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned),
        );
        match next {
            Some(n) if n.starts_with('/') => url = format!("{}{n}", s.base),
            Some(n) => url = n,
            None => break,
        }
    }
    Ok(tags)
}

/// The config blob: from the content store when present, else fetched and verified.
async fn fetch_config(s: &Session, store: &Arc<ImageStore>, d: &Desc) -> Result<Vec<u8>> {
    if store.content().exists(&d.digest)
        && let Ok(b) = store.content().read(&d.digest)
    {
        return Ok(b);
    }
    if d.size > MAX_MANIFEST as u64 * 2 {
        return Err(RemoteError::Invalid(format!("image config {} is {} bytes: too large", d.digest, d.size)));
    }
    let url = s.url(&format!("blobs/{}", d.digest));
    let resp = s.get(&url, &|b| b).await?;
    if !resp.status().is_success() {
        let (_, _, text) = error_text(resp).await;
        return Err(RemoteError::Http { method: "GET".into(), url, message: text });
    }
    let body = resp.bytes().await.map_err(|e| RemoteError::Http {
        method: "GET".into(),
        url: url.clone(),
        message: super::session::chain(&e),
    })?;
    let got = Digest::sha256_of(&body);
    if got != d.digest {
        return Err(RemoteError::Digest {
            what: "image config".into(),
            digest: d.digest.to_string(),
            actual: got.to_string(),
        });
    }
    Ok(body.to_vec())
}

/// One layer to fetch, verify and unpack.
struct LayerJob {
    session: Arc<Session>,
    store: Arc<ImageStore>,
    desc: Desc,
    diff_id: Digest,
    parent: Option<Digest>,
    ev: Events,
}

impl LayerJob {
    async fn run(self) -> Result<LayerRecord> {
        let id = short(&self.desc.digest);
        let url = self.session.url(&format!("blobs/{}", self.desc.digest));
        let resp = self.session.get(&url, &|b| b).await?;
        if !resp.status().is_success() {
            let (status, _, text) = error_text(resp).await;
            return Err(if status == StatusCode::NOT_FOUND {
                RemoteError::NotFound(format!("layer {}: {text}", self.desc.digest))
            } else {
                RemoteError::Http { method: "GET".into(), url, message: text }
            });
        }
        let stream = resp.bytes_stream().map_err(std::io::Error::other);
        let reader = tokio_util::io::StreamReader::new(stream);
        let bridge = tokio_util::io::SyncIoBridge::new(reader);
        tokio::task::spawn_blocking(move || self.unpack(bridge, &id))
            .await
            .map_err(|e| RemoteError::Invalid(format!("layer {url}: {e}")))?
    }

    /// Download, digest and unpack in one pass; commit only what checks.
    fn unpack(self, body: impl Read, id: &str) -> Result<LayerRecord> {
        let total = self.desc.size;
        let content = self.store.content();
        let snapshots = self.store.snapshots();
        let mut ingest = content.ingest()?;
        let counting = Counting { inner: body.take(total + 1), n: 0, last: 0, total, ev: &self.ev, id };
        let mut tee = TeeReader { inner: counting, out: ingest.writer() };
        let unpacked = snapshots.unpack(&mut tee);
        // Whatever the tar reader left (padding, or everything after a broken archive) still
        // belongs to the blob and its digest.
        let drained = std::io::copy(&mut tee, &mut std::io::sink());
        let got = tee.inner.n;
        if let Err(e) = drained {
            ingest.abort();
            if let Ok(u) = unpacked {
                snapshots.discard(u);
            }
            return Err(RemoteError::Http {
                method: "GET".into(),
                url: self.desc.digest.to_string(),
                message: format!("read layer: {e}"),
            });
        }
        self.ev.send(Event::layer(id, "Verifying Checksum"));
        let committed = ingest.commit(content, Some(&self.desc.digest));
        let blob_size = match committed {
            Ok((_, n)) => n,
            Err(ImageError::DigestMismatch { actual, .. }) => {
                if let Ok(u) = unpacked {
                    snapshots.discard(u);
                }
                return Err(RemoteError::Digest { what: "layer".into(), digest: self.desc.digest.to_string(), actual });
            }
            Err(e) => {
                if let Ok(u) = unpacked {
                    snapshots.discard(u);
                }
                return Err(e.into());
            }
        };
        if got != total {
            if let Ok(u) = unpacked {
                snapshots.discard(u);
            }
            return Err(RemoteError::Invalid(format!(
                "layer {}: {got} bytes, the manifest says {total}",
                self.desc.digest
            )));
        }
        self.ev.send(Event::layer(id, "Download complete"));
        let u = unpacked?;
        if u.applied.diff_id != self.diff_id {
            let actual = u.applied.diff_id.to_string();
            snapshots.discard(u);
            return Err(RemoteError::Digest { what: "layer diff_id".into(), digest: self.diff_id.to_string(), actual });
        }
        let size = u.applied.tar_size;
        let chain = snapshots.commit(u, self.parent.as_ref())?;
        self.ev.send(Event::layer(id, "Pull complete"));
        Ok(LayerRecord {
            diff_id: self.diff_id,
            chain_id: chain,
            blob: self.desc.digest,
            media_type: self.desc.media_type,
            blob_size,
            size,
        })
    }
}

/// Counts bytes read and reports "Downloading" progress about every 512 KiB.
struct Counting<'a, R> {
    inner: R,
    n: u64,
    last: u64,
    total: u64,
    ev: &'a Events,
    id: &'a str,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.n += k as u64;
        if self.n - self.last >= 512 * 1024 || (k > 0 && self.n >= self.total && self.last < self.total) {
            self.last = self.n;
            self.ev.send(Event {
                id: Some(self.id.to_owned()),
                status: "Downloading".into(),
                progress: Some((self.n, self.total)),
                aux: None,
            });
        }
        Ok(k)
    }
}

struct TeeReader<'a, R, W> {
    inner: R,
    out: &'a mut W,
}

impl<R: Read, W: Write> Read for TeeReader<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_match() {
        let p = Platform::parse("linux/arm64/v8").expect("parse");
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert!(p.matches(&serde_json::json!({"os":"linux","architecture":"arm64","variant":"v8"})));
        assert!(!p.matches(&serde_json::json!({"os":"linux","architecture":"amd64"})));
        assert!(Platform::parse("linux").is_err());
        assert_eq!(Platform::parse("").expect("host").os, "linux");
    }
}
