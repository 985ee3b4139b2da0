//! A container's files (`/containers/{id}/archive`, `/export`), images as files
//! (`/images/get`, `/images/{name}/get`, `/images/load`), and disk (`/system/df`, the prunes).

use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use serde_json::{Value, json};

use super::parse_filters;
use super::{AppState, Query, channel_body, qbool};
use crate::archive::{ChannelWriter, encode_stat, extract_into, path_stat, write_path_tar, write_rootfs_tar};
use crate::error::{EngineError, Result};

const STAT_HEADER: &str = "X-Docker-Container-Path-Stat";

fn path_param(q: &Query) -> Result<String> {
    q.get("path")
        .filter(|p| !p.is_empty())
        .cloned()
        .ok_or_else(|| EngineError::BadRequest("bad parameter: path cannot be empty".into()))
}

fn stat_response(st: &Value) -> Result<Response> {
    let mut resp = Response::new(Body::empty());
    let v = HeaderValue::from_str(&encode_stat(st)).map_err(EngineError::internal)?;
    resp.headers_mut().insert(STAT_HEADER, v);
    Ok(resp)
}

/// `HEAD /containers/{id}/archive?path=`: the path's stat in a header.
pub async fn archive_head(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<Response> {
    let c = e.lookup(&id)?;
    let path = path_param(&q)?;
    let st = e.with_view(&c, move |v| path_stat(v, &path).map(|(s, _)| s)).await?;
    stat_response(&st)
}

/// `GET /containers/{id}/archive?path=`: a tar of the path, its stat in a header.
pub async fn archive_get(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<Response> {
    let c = e.lookup(&id)?;
    let path = path_param(&q)?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (stx, srx) = tokio::sync::oneshot::channel();
    let e2 = e.clone();
    tokio::spawn(async move {
        let r = e2
            .with_view(&c, move |v| {
                match path_stat(v, &path) {
                    Ok((st, _)) => {
                        let _ = stx.send(Ok(st));
                    }
                    Err(err) => {
                        let _ = stx.send(Err(err));
                        return Ok(());
                    }
                }
                write_path_tar(v, &path, ChannelWriter::new(tx))
            })
            .await;
        if let Err(err) = r {
            tracing::warn!("archive: {err}");
        }
    });
    let st = srx.await.map_err(|_| EngineError::Internal("archive: the copy ended early".into()))??;
    if let Ok(c) = e.lookup(&id) {
        e.container_event(&c, "archive-path", Vec::new());
    }
    let mut resp = stat_response(&st)?;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-tar"));
    *resp.body_mut() = channel_body(rx);
    Ok(resp)
}

/// `PUT /containers/{id}/archive?path=`: unpacks the body (a tar) into a directory.
pub async fn archive_put(
    State(e): State<AppState>,
    Path(id): Path<String>,
    q: Query,
    req: Request,
) -> Result<StatusCode> {
    let c = e.lookup(&id)?;
    let path = path_param(&q)?;
    let no_overwrite = qbool(&q, "noOverwriteDirNonDir");
    let reader = body_reader(req);
    e.with_view(&c, move |v| extract_into(v, &path, no_overwrite, reader)).await?;
    e.container_event(&c, "extract-to-dir", Vec::new());
    Ok(StatusCode::OK)
}

/// The request body as a blocking reader (for a blocking thread).
fn body_reader(req: Request) -> impl std::io::Read + Send + 'static {
    let body = req.into_body().into_data_stream().map_err(std::io::Error::other);
    Drain(tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(body)))
}

/// A request body read in a blocking task. What the handler leaves unread (an archive refused
/// halfway) is read and dropped before the answer goes out, so a client still uploading gets
/// the error rather than a broken connection.
struct Drain<R: std::io::Read>(R);

impl<R: std::io::Read> std::io::Read for Drain<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: std::io::Read> Drop for Drain<R> {
    fn drop(&mut self) {
        let _ = std::io::copy(&mut self.0, &mut std::io::sink());
    }
}

/// `GET /containers/{id}/export`.
pub async fn export(State(e): State<AppState>, Path(id): Path<String>) -> Result<Response> {
    let c = e.lookup(&id)?;
    e.container_event(&c, "export", Vec::new());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let e2 = e.clone();
    tokio::spawn(async move {
        if let Err(err) = e2.with_view(&c, move |v| write_rootfs_tar(&v.rootfs, ChannelWriter::new(tx))).await {
            tracing::warn!("export: {err}");
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], channel_body(rx)).into_response())
}

/// Every value of `key` in a raw query string (`names=a&names=b`).
pub(super) fn query_all(raw: Option<&str>, key: &str) -> Vec<String> {
    let dec = |s: &str| -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    match std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(v) => {
                            out.push(v);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| dec(k) == key)
        .map(|(_, v)| dec(v))
        .filter(|v| !v.is_empty())
        .collect()
}

/// `GET /images/get?names=…`.
pub async fn save_many(State(e): State<AppState>, RawQuery(raw): RawQuery) -> Result<Response> {
    save(e, query_all(raw.as_deref(), "names")).await
}

/// Streams `docker save` of `names`; a name that does not resolve is a 404 before any byte.
pub async fn save(e: AppState, names: Vec<String>) -> Result<Response> {
    if names.is_empty() {
        return Err(EngineError::BadRequest("no images named: give at least one image to save".into()));
    }
    let e2 = e.clone();
    let check = names.clone();
    let ids = tokio::task::spawn_blocking(move || {
        check.iter().map(|n| e2.images.resolve(n).map(|r| r.id.to_string())).collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(EngineError::internal)??;
    for (id, n) in ids.iter().zip(&names) {
        e.image_event("save", id, n);
    }
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::task::spawn_blocking(move || {
        if let Err(err) = image::transfer::save(&e.images, &names, ChannelWriter::new(tx)) {
            tracing::warn!("save: {err}");
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], channel_body(rx)).into_response())
}

/// `POST /images/load`: a docker-archive or OCI layout tar in the body.
pub async fn load(State(e): State<AppState>, q: Query, req: Request) -> Result<Response> {
    let quiet = qbool(&q, "quiet");
    let reader = body_reader(req);
    let e2 = e.clone();
    let loaded = tokio::task::spawn_blocking(move || image::transfer::load(&e2.images, reader))
        .await
        .map_err(EngineError::internal)??;
    let mut out = String::new();
    for l in &loaded {
        e.image_event("load", &l.id.to_string(), l.tags.first().map(String::as_str).unwrap_or(&l.id.to_string()));
        let lines: Vec<String> = if l.tags.is_empty() {
            vec![format!("Loaded image ID: {}\n", l.id)]
        } else {
            l.tags.iter().map(|t| format!("Loaded image: {t}\n")).collect()
        };
        for s in lines {
            if !quiet {
                out.push_str(&json!({"stream": s}).to_string());
                out.push_str("\r\n");
            } else {
                out.push_str(&json!({"stream": s}).to_string());
                out.push('\n');
            }
        }
    }
    Ok(([(header::CONTENT_TYPE, "application/json")], out).into_response())
}

pub async fn prune_containers(State(e): State<AppState>, q: Query) -> Result<axum::Json<Value>> {
    Ok(axum::Json(e.prune_containers(&parse_filters(q.get("filters"))?).await?))
}

pub async fn prune_images(State(e): State<AppState>, q: Query) -> Result<axum::Json<Value>> {
    Ok(axum::Json(e.prune_images(&parse_filters(q.get("filters"))?).await?))
}

pub async fn df(State(e): State<AppState>) -> Result<axum::Json<Value>> {
    Ok(axum::Json(e.disk_usage().await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_query_values() {
        assert_eq!(query_all(Some("names=a%3A1&x=2&names=b+c"), "names"), vec!["a:1", "b c"]);
        assert!(query_all(None, "names").is_empty());
    }
}
