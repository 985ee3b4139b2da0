//! `/images/…`.

use std::collections::HashMap;

use api::types::{DeleteItem, HistoryItem, ImageInspect, ImageSummary, ProgressLine};
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::TryStreamExt;
use image::store::{ImageRecord, ImportOptions, Removed};
use oci::Reference;
use serde_json::{Value, json};

use super::{AppState, Query, qbool};
use crate::error::{EngineError, Result};

fn ts(s: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(s).map(|d| d.timestamp()).unwrap_or(0)
}

fn familiar_tags(e: &AppState, rec: &ImageRecord) -> Vec<String> {
    e.images.tags_of(&rec.id).unwrap_or_default().iter().map(Reference::familiar).collect()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(EngineError::internal)?
}

/// `POST /images/create`: `fromSrc` imports a tar; `fromImage` pulls.
pub async fn create(State(e): State<AppState>, q: Query, req: Request) -> Result<Response> {
    if q.get("fromImage").is_some_and(|i| !i.is_empty()) {
        return super::distribution::pull(e, &q, req.headers()).await;
    }
    if let Some(src) = q.get("fromSrc") {
        return import(e, &q, src.clone(), req).await;
    }
    Err(EngineError::BadRequest("one of `fromSrc` or `fromImage` is required".into()))
}

async fn import(e: AppState, q: &HashMap<String, String>, src: String, req: Request) -> Result<Response> {
    let from_url = src.starts_with("http://") || src.starts_with("https://");
    if src != "-" && !from_url {
        return Err(EngineError::BadRequest(format!(
            "import source `{src}`: give `-` (the archive in the request body) or an http(s) URL"
        )));
    }
    let tag = match q.get("repo").filter(|r| !r.is_empty()) {
        Some(repo) => {
            let full = match q.get("tag").filter(|t| !t.is_empty()) {
                Some(t) => format!("{repo}:{t}"),
                None => repo.clone(),
            };
            Some(Reference::parse_with_default_tag(&full).map_err(|err| EngineError::BadRequest(err.to_string()))?)
        }
        None => None,
    };
    // `changes` may be given many times (`import -c A -c B`): all of them apply.
    let changes: Vec<String> = super::files::query_all(req.uri().query(), "changes");
    let opts = ImportOptions { tag, changes, message: q.get("message").cloned(), source: src.clone() };
    let body: std::pin::Pin<Box<dyn futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send>> = if from_url {
        let resp = reqwest::get(&src)
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|err| EngineError::BadRequest(format!("import from `{src}`: {err}")))?;
        Box::pin(resp.bytes_stream().map_err(std::io::Error::other))
    } else {
        Box::pin(req.into_body().into_data_stream().map_err(std::io::Error::other))
    };
    let reader = tokio_util::io::StreamReader::new(body);
    let e2 = e.clone();
    let rec = blocking(move || {
        let sync = tokio_util::io::SyncIoBridge::new(reader);
        e2.images.import(sync, &opts).map_err(EngineError::from)
    })
    .await?;
    e.image_event("import", &rec.id.to_string(), &rec.id.to_string());
    let line = serde_json::to_string(&ProgressLine { status: Some(rec.id.to_string()), ..Default::default() })
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "application/json")], format!("{line}\r\n")).into_response())
}

pub async fn list(State(e): State<AppState>, q: Query) -> Result<axum::Json<Vec<ImageSummary>>> {
    let filters: HashMap<String, Vec<String>> = match q.get("filters").filter(|f| !f.is_empty()) {
        Some(f) => {
            let v: Value =
                serde_json::from_str(f).map_err(|err| EngineError::BadRequest(format!("invalid filters: {err}")))?;
            v.as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| {
                    let vals = match v {
                        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
                        Value::Object(o) => o.keys().cloned().collect(),
                        _ => Vec::new(),
                    };
                    (k.clone(), vals)
                })
                .collect()
        }
        None => HashMap::new(),
    };
    let e2 = e.clone();
    let recs = blocking(move || e2.images.all().map_err(EngineError::from)).await?;
    let mut out = Vec::new();
    let all = qbool(&q, "all");
    let parents: std::collections::HashSet<String> =
        recs.iter().filter_map(|r| r.parent.as_ref().map(ToString::to_string)).collect();
    for rec in recs.iter().cloned() {
        let tags = familiar_tags(&e, &rec);
        // A build's intermediate images (untagged parents of others) show with --all only.
        if !all && tags.is_empty() && parents.contains(&rec.id.to_string()) {
            continue;
        }
        if let Some(d) = filters.get("dangling")
            && d.iter().any(|v| v == "true" || v == "1") != tags.is_empty()
        {
            continue;
        }
        if let Some(refs) = filters.get("reference")
            && !refs.iter().any(|p| tags.iter().any(|t| t == p || t.split(':').next() == Some(p.as_str())))
        {
            continue;
        }
        let labels =
            rec.run_config().get("Labels").and_then(|l| serde_json::from_value(l.clone()).ok()).unwrap_or_default();
        let containers = e.list().iter().filter(|c| c.lock().image == rec.id.to_string()).count() as i64;
        out.push(ImageSummary {
            id: rec.id.to_string(),
            parent_id: rec.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
            repo_tags: tags,
            repo_digests: rec.repo_digests.clone(),
            created: ts(&rec.created()),
            size: rec.size() as i64,
            shared_size: -1,
            labels,
            containers,
        });
    }
    Ok(axum::Json(out))
}

/// GET `/images/{name}/json` and `/images/{name}/history` (names may contain `/`).
pub async fn get_dispatch(State(e): State<AppState>, Path(rest): Path<String>) -> Result<Response> {
    if let Some(name) = rest.strip_suffix("/json") {
        return inspect(e, name.to_owned()).await.map(IntoResponse::into_response);
    }
    if let Some(name) = rest.strip_suffix("/get") {
        return super::files::save(e, vec![name.to_owned()]).await;
    }
    if let Some(name) = rest.strip_suffix("/history") {
        return history(e, name.to_owned()).await.map(IntoResponse::into_response);
    }
    Err(EngineError::BadRequest(format!("page not found: /images/{rest}")))
}

pub async fn post_dispatch(
    State(e): State<AppState>,
    Path(rest): Path<String>,
    q: Query,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    if let Some(name) = rest.strip_suffix("/tag") {
        return tag(e, name.to_owned(), q).await.map(IntoResponse::into_response);
    }
    if let Some(name) = rest.strip_suffix("/push") {
        return super::distribution::push(e, name.to_owned(), &q, &headers).await;
    }
    Err(EngineError::BadRequest(format!("page not found: /images/{rest}")))
}

async fn resolve(e: &AppState, name: String) -> Result<ImageRecord> {
    let e = e.clone();
    blocking(move || e.images.resolve(&name).map_err(EngineError::from)).await
}

async fn inspect(e: AppState, name: String) -> Result<axum::Json<ImageInspect>> {
    let rec = resolve(&e, name).await?;
    let c = &rec.config;
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    Ok(axum::Json(ImageInspect {
        id: rec.id.to_string(),
        repo_tags: familiar_tags(&e, &rec),
        repo_digests: rec.repo_digests.clone(),
        parent: rec.parent.as_ref().map(ToString::to_string).unwrap_or_default(),
        comment: c
            .get("history")
            .and_then(Value::as_array)
            .and_then(|h| h.last())
            .and_then(|h| h.get("comment"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        created: s("created"),
        docker_version: String::new(),
        author: s("author"),
        config: rec.run_config().clone(),
        architecture: s("architecture"),
        os: s("os"),
        size: rec.size() as i64,
        graph_driver: json!({"Name": "overlay2", "Data": {"LowerDir": e.images.layer_dirs(&rec).unwrap_or_default().iter().rev().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":")}}),
        root_fs: json!({"Type": "layers", "Layers": rec.layers.iter().map(|l| l.diff_id.to_string()).collect::<Vec<_>>()}),
        metadata: json!({"LastTagTime": "0001-01-01T00:00:00Z"}),
    }))
}

async fn history(e: AppState, name: String) -> Result<axum::Json<Vec<HistoryItem>>> {
    let rec = resolve(&e, name).await?;
    let tags = familiar_tags(&e, &rec);
    // Entries made by a local build or commit show the image of that step, as Docker's do.
    let mut ids: std::collections::HashMap<usize, String> = std::collections::HashMap::new();
    let total = rec.config.get("history").and_then(Value::as_array).map_or(0, Vec::len);
    let mut cur = Some(rec.clone());
    while let Some(r) = cur {
        let n = r.config.get("history").and_then(Value::as_array).map_or(0, Vec::len);
        if n == 0 || n > total {
            break;
        }
        ids.entry(total - n).or_insert_with(|| r.id.to_string());
        let e2 = e.clone();
        cur = match r.parent.clone() {
            Some(p) => blocking(move || e2.images.get(&p).map_err(EngineError::from)).await.ok().flatten(),
            None => None,
        };
    }
    let items = e
        .images
        .history(&rec)
        .into_iter()
        .enumerate()
        .map(|(i, h)| HistoryItem {
            id: h.id.map(|d| d.to_string()).or_else(|| ids.get(&i).cloned()).unwrap_or_else(|| "<missing>".into()),
            created: ts(&h.created),
            created_by: h.created_by,
            tags: if i == 0 { tags.clone() } else { Vec::new() },
            size: h.size as i64,
            comment: h.comment,
        })
        .collect();
    Ok(axum::Json(items))
}

async fn tag(e: AppState, name: String, q: Query) -> Result<StatusCode> {
    let repo = q
        .get("repo")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| EngineError::BadRequest("repository name must have at least one component".into()))?;
    let full = match q.get("tag").filter(|t| !t.is_empty()) {
        Some(t) => format!("{repo}:{t}"),
        None => repo.clone(),
    };
    let r = Reference::parse_with_default_tag(&full).map_err(|err| EngineError::BadRequest(err.to_string()))?;
    if r.digest().is_some() {
        return Err(EngineError::BadRequest("refusing to create a tag with a digest reference".into()));
    }
    let rec = resolve(&e, name).await?;
    let e2 = e.clone();
    let familiar = r.familiar();
    let id = rec.id.clone();
    blocking(move || e2.images.tag(&rec.id, &r).map_err(EngineError::from)).await?;
    e.image_event("tag", &id.to_string(), &familiar);
    Ok(StatusCode::CREATED)
}

pub async fn remove(
    State(e): State<AppState>,
    Path(name): Path<String>,
    q: Query,
) -> Result<axum::Json<Vec<DeleteItem>>> {
    let force = qbool(&q, "force");
    let e2 = e.clone();
    let (id, out) = blocking(move || {
        let id = e2.images.resolve(&name).map(|r| r.id.to_string()).unwrap_or_default();
        let user = |id: &oci::Digest| e2.image_user(&id.to_string());
        Ok((id, e2.images.remove(&name, force, &user).map_err(EngineError::from)?))
    })
    .await?;
    for r in &out {
        match r {
            Removed::Untagged(_) => e.image_event("untag", &id, &id),
            Removed::Deleted(d) => e.image_event("delete", &d.to_string(), &d.to_string()),
        }
    }
    Ok(axum::Json(
        out.into_iter()
            .map(|r| match r {
                Removed::Untagged(t) => DeleteItem { untagged: Some(t), deleted: None },
                Removed::Deleted(d) => DeleteItem { untagged: None, deleted: Some(d.to_string()) },
            })
            .collect(),
    ))
}
