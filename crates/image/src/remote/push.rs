//! Push: every blob the registry lacks, then the manifest.
//!
//! For each layer (5 at a time by default): `HEAD` the blob — present: "Layer already exists";
//! else, when another repository of the same registry is known to hold it (it was pulled from
//! or pushed there), `POST …/uploads/?mount=<digest>&from=<repo>` — 201: "Mounted from"; else
//! (or on 202) the blob is streamed from the content store with one `PATCH` and closed with
//! `PUT ?digest=`. Then the config, then the manifest bytes exactly as stored, so the digest
//! a pull of the same image produced is the digest pushed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt;
use oci::{Digest, Reference, media_type};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::pull::Desc;
use super::session::{Session, chain, error_text};
use super::{Credentials, Event, Events, Registries, RemoteError, Result, api_host};
use crate::store::ImageStore;

/// What a push did.
#[derive(Debug, Clone)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
}

fn descs(m: &Value) -> Result<(Desc, Vec<Desc>)> {
    let d = |v: &Value| -> Result<Desc> {
        let digest = v
            .get("digest")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| RemoteError::Invalid("stored manifest: descriptor without a digest".into()))?;
        Ok(Desc {
            media_type: v.get("mediaType").and_then(Value::as_str).unwrap_or_default().to_owned(),
            digest,
            size: v.get("size").and_then(Value::as_u64).unwrap_or(0),
        })
    };
    let config = d(m.get("config").unwrap_or(&Value::Null))?;
    let layers = m.get("layers").and_then(Value::as_array).into_iter().flatten().map(d).collect::<Result<_>>()?;
    Ok((config, layers))
}

/// Pushes the image tagged `r` to its registry.
pub async fn push(
    store: Arc<ImageStore>,
    regs: Arc<Registries>,
    r: &Reference,
    creds: Option<Credentials>,
    ev: Events,
) -> Result<Pushed> {
    let tag = r.tag().unwrap_or("latest").to_owned();
    let st = store.clone();
    let name = r.to_string();
    let (rec, manifest) = tokio::task::spawn_blocking(move || -> Result<_> {
        let rec = st.resolve(&name)?;
        let manifest = st.content().read(&rec.manifest)?;
        Ok((rec, manifest))
    })
    .await
    .map_err(|e| RemoteError::Invalid(e.to_string()))??;
    let m: Value =
        serde_json::from_slice(&manifest).map_err(|e| RemoteError::Invalid(format!("stored manifest: {e}")))?;
    let (config, layers) = descs(&m)?;
    let host = api_host(r.domain()).to_owned();
    let repo = r.path().to_owned();

    // Where each blob could be mounted from.
    let mut sources: Vec<Option<String>> = Vec::new();
    for l in &layers {
        let s = store.blob_sources(&l.digest, &host)?.into_iter().find(|x| *x != repo && !x.is_empty());
        sources.push(s);
    }
    let mut extra: Vec<String> = sources.iter().flatten().map(|s| format!("repository:{s}:pull")).collect();
    extra.sort();
    extra.dedup();
    ev.send(Event::status(format!("The push refers to repository [{}]", r.name())));
    let s = Arc::new(Session::new(&regs, &host, None, &repo, creds, extra).await?.for_push());

    let sem = Arc::new(Semaphore::new(regs.config.max_uploads.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    // Docker lists the top layer first.
    let order: Vec<usize> = (0..layers.len()).rev().collect();
    for &i in &order {
        ev.send(Event::layer(layers[i].digest.short(), "Preparing"));
    }
    for (n, &i) in order.iter().enumerate() {
        let l = layers[i].clone();
        if n >= regs.config.max_uploads.max(1) {
            ev.send(Event::layer(l.digest.short(), "Waiting"));
        }
        let (s, store, ev, sem, src) = (s.clone(), store.clone(), ev.clone(), sem.clone(), sources[i].clone());
        tasks.spawn(async move {
            let _permit = sem.acquire_owned().await.map_err(|e| RemoteError::Invalid(e.to_string()))?;
            push_blob(&s, &store, &l, src.as_deref(), Some(&ev)).await
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| RemoteError::Invalid(format!("layer upload: {e}")))??;
    }
    push_blob(&s, &store, &config, None, None).await?;

    let mt = m.get("mediaType").and_then(Value::as_str).unwrap_or(media_type::OCI_MANIFEST).to_owned();
    let url = s.url(&format!("manifests/{tag}"));
    let body = bytes::Bytes::from(manifest);
    let b2 = body.clone();
    let resp = s.send(Method::PUT, &url, &|rb| rb.header(CONTENT_TYPE, &mt).body(b2.clone())).await?;
    if !resp.status().is_success() {
        return Err(refused(&url, resp).await);
    }
    let digest = Digest::sha256_of(&body);
    let size = body.len() as u64;
    ev.send(Event::status(format!("{tag}: digest: {digest} size: {size}")));
    ev.send(Event {
        id: None,
        status: String::new(),
        progress: None,
        aux: Some(json!({"Tag": tag, "Digest": digest.to_string(), "Size": size})),
    });
    let id = rec.id.clone();
    let rd = format!("{}@{digest}", r.familiar_name());
    let all: Vec<Digest> = layers.iter().map(|l| l.digest.clone()).chain([config.digest.clone()]).collect();
    tokio::task::spawn_blocking(move || -> Result<()> {
        store.add_repo_digest(&id, rd)?;
        for d in &all {
            store.add_blob_source(d, &host, &repo)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| RemoteError::Invalid(e.to_string()))??;
    Ok(Pushed { digest, size })
}

async fn refused(url: &str, resp: reqwest::Response) -> RemoteError {
    let (status, _, text) = error_text(resp).await;
    match status {
        StatusCode::UNAUTHORIZED => RemoteError::Unauthorized(text),
        StatusCode::FORBIDDEN => RemoteError::Denied(text),
        StatusCode::NOT_FOUND => RemoteError::NotFound(text),
        _ => RemoteError::Http { method: "PUT".into(), url: url.to_owned(), message: text },
    }
}

/// One blob: exists → skip; mountable → mount; else upload. `ev` is None for the config.
async fn push_blob(s: &Session, store: &ImageStore, d: &Desc, from: Option<&str>, ev: Option<&Events>) -> Result<()> {
    let id = d.digest.short().to_owned();
    let say = |status: &str| {
        if let Some(ev) = ev {
            ev.send(Event::layer(&id, status));
        }
    };
    let url = s.url(&format!("blobs/{}", d.digest));
    let head = s.send(Method::HEAD, &url, &|b| b).await?;
    if head.status().is_success() {
        say("Layer already exists");
        return Ok(());
    }
    if head.status() == StatusCode::UNAUTHORIZED || head.status() == StatusCode::FORBIDDEN {
        return Err(refused(&url, head).await);
    }
    let path = store.content().path(&d.digest);
    let missing = || {
        RemoteError::NotFound(format!(
            "blob {} is not in the local content store and the registry does not have it (the layer's snapshot came from another blob of the same content)",
            d.digest
        ))
    };
    if !path.is_file() && from.is_none() {
        return Err(missing());
    }
    let uploads = s.url("blobs/uploads/");
    let post_url = match from {
        Some(src) => format!("{uploads}?mount={}&from={src}", d.digest),
        None => uploads.clone(),
    };
    let resp = s.send(Method::POST, &post_url, &|b| b.header(CONTENT_LENGTH, "0")).await?;
    if resp.status() == StatusCode::CREATED && from.is_some() {
        say(&format!("Mounted from {}", from.unwrap_or_default()));
        return Ok(());
    }
    if resp.status() != StatusCode::ACCEPTED {
        return Err(refused(&post_url, resp).await);
    }
    if !path.is_file() {
        return Err(missing());
    }
    let location = location(s, &resp)?;
    say("Pushing");
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(d.size);
    let sent = Arc::new(AtomicU64::new(0));
    let ev2 = ev.cloned();
    let id2 = id.clone();
    let path2 = path.clone();
    let sent2 = sent.clone();
    let build = move |rb: reqwest::RequestBuilder| {
        sent2.store(0, Ordering::Relaxed);
        let file = std::fs::File::open(&path2);
        let (ev, id, sent) = (ev2.clone(), id2.clone(), sent2.clone());
        let body = match file {
            Ok(f) => {
                let last = Arc::new(AtomicU64::new(0));
                let stream = tokio_util::io::ReaderStream::with_capacity(tokio::fs::File::from_std(f), 256 * 1024).map(
                    move |chunk| {
                        if let Ok(c) = &chunk {
                            let n = sent.fetch_add(c.len() as u64, Ordering::Relaxed) + c.len() as u64;
                            if let Some(ev) = &ev
                                && (n - last.load(Ordering::Relaxed) >= 512 * 1024 || n == size)
                            {
                                last.store(n, Ordering::Relaxed);
                                ev.send(Event {
                                    id: Some(id.clone()),
                                    status: "Pushing".into(),
                                    progress: Some((n, size)),
                                    aux: None,
                                });
                            }
                        }
                        chunk
                    },
                );
                reqwest::Body::wrap_stream(stream)
            }
            Err(e) => reqwest::Body::wrap_stream(futures_util::stream::once(async move { Err::<bytes::Bytes, _>(e) })),
        };
        rb.header(CONTENT_TYPE, "application/octet-stream").header(CONTENT_LENGTH, size).body(body)
    };
    let resp = s.send(Method::PATCH, location.as_str(), &build).await?;
    if !resp.status().is_success() {
        return Err(refused(location.as_str(), resp).await);
    }
    let mut done = self::location(s, &resp).unwrap_or(location);
    done.query_pairs_mut().append_pair("digest", &d.digest.to_string());
    let resp = s.send(Method::PUT, done.as_str(), &|b| b.header(CONTENT_LENGTH, "0")).await?;
    if !resp.status().is_success() {
        return Err(refused(done.as_str(), resp).await);
    }
    say("Pushed");
    Ok(())
}

/// The `Location` of an upload session, made absolute.
fn location(s: &Session, resp: &reqwest::Response) -> Result<reqwest::Url> {
    let loc = resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| RemoteError::Invalid(format!("{}: upload without a Location", s.host)))?;
    let base = reqwest::Url::parse(&format!("{}/", s.base))
        .map_err(|e| RemoteError::Invalid(format!("{}: {}", s.base, chain(&e))))?;
    base.join(loc).map_err(|e| RemoteError::Invalid(format!("upload location `{loc}`: {e}")))
}
