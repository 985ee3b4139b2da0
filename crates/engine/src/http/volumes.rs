//! `/volumes/…`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::parse_filters;
use super::{AppState, Query, qbool};
use crate::error::{EngineError, Result};

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(EngineError::internal)?
}

/// `GET /volumes`: filters `name`, `label`, `dangling`, `driver`.
pub async fn list(State(e): State<AppState>, q: Query) -> Result<axum::Json<Value>> {
    let filters = parse_filters(q.get("filters"))?;
    for k in filters.keys() {
        if !matches!(k.as_str(), "name" | "label" | "dangling" | "driver") {
            return Err(EngineError::BadRequest(format!("invalid filter '{k}'")));
        }
    }
    let e2 = e.clone();
    let all = blocking(move || e2.volumes.all()).await?;
    let mut out = Vec::new();
    for v in all {
        if let Some(names) = filters.get("name")
            && !names.iter().any(|n| v.name.contains(n.as_str()))
        {
            continue;
        }
        if let Some(d) = filters.get("driver")
            && !d.contains(&v.driver)
        {
            continue;
        }
        if let Some(d) = filters.get("dangling") {
            let want = d.iter().any(|x| x == "true" || x == "1");
            if want != e.volume_users(&v.name).is_empty() {
                continue;
            }
        }
        if let Some(ls) = filters.get("label")
            && !ls.iter().all(|l| match l.split_once('=') {
                Some((k, val)) => v.labels.get(k).is_some_and(|x| x == val),
                None => v.labels.contains_key(l),
            })
        {
            continue;
        }
        out.push(e.volumes.to_json(&v));
    }
    Ok(axum::Json(json!({"Volumes": out, "Warnings": null})))
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    name: String,
    driver: String,
    driver_opts: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

/// `POST /volumes/create`.
pub async fn create(State(e): State<AppState>, body: Bytes) -> Result<Response> {
    let b: CreateBody = super::parse_json(&body)?;
    let e2 = e.clone();
    let existed = !b.name.is_empty() && e.volumes.get(&b.name)?.is_some();
    let v = blocking(move || {
        e2.volumes.create(
            Some(b.name.as_str()).filter(|n| !n.is_empty()),
            &b.driver,
            b.driver_opts.unwrap_or_default(),
            b.labels.unwrap_or_default(),
        )
    })
    .await?;
    if !existed {
        e.events.emit("volume", "create", &v.name, vec![("driver".into(), "local".into())]);
    }
    Ok((StatusCode::CREATED, axum::Json(e.volumes.to_json(&v))).into_response())
}

/// `GET /volumes/{name}`.
pub async fn inspect(State(e): State<AppState>, Path(name): Path<String>) -> Result<axum::Json<Value>> {
    let e2 = e.clone();
    let v = blocking(move || e2.volumes.must_get(&name)).await?;
    Ok(axum::Json(e.volumes.to_json(&v)))
}

/// `DELETE /volumes/{name}`: refused while a container uses it.
pub async fn remove(State(e): State<AppState>, Path(name): Path<String>, q: Query) -> Result<StatusCode> {
    let force = qbool(&q, "force");
    blocking(move || e.remove_volume(&name, force)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /volumes/prune`.
pub async fn prune(State(e): State<AppState>, q: Query) -> Result<axum::Json<Value>> {
    let filters = parse_filters(q.get("filters"))?;
    Ok(axum::Json(e.prune_volumes(&filters).await?))
}
