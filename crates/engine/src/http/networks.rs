//! `/networks/…`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AppState, Query, parse_filters, parse_json};
use crate::error::{EngineError, Result};
use crate::network::api::{CreateRequest, matches};

pub async fn list(State(e): State<AppState>, q: Query) -> Result<axum::Json<Vec<Value>>> {
    let filters = parse_filters(q.get("filters"))?;
    let mut out = Vec::new();
    let mut nets = e.net.list();
    nets.sort_by(|a, b| a.name.cmp(&b.name));
    for n in nets {
        let used = !e.net.members(&n.id).is_empty();
        if matches(&n, used, &filters)? {
            out.push(e.net.inspect_json(&n, false));
        }
    }
    Ok(axum::Json(out))
}

pub async fn inspect(State(e): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<Value>> {
    let n = e.net.lookup(&id)?;
    Ok(axum::Json(e.net.inspect_json(&n, true)))
}

pub async fn create(State(e): State<AppState>, body: Bytes) -> Result<Response> {
    let req: CreateRequest = parse_json(&body)?;
    let name = req.name.clone();
    let net = e.net.clone();
    let id = tokio::task::spawn_blocking(move || net.create(req)).await.map_err(EngineError::internal)??;
    e.events.emit("network", "create", &id, vec![("name".into(), name), ("type".into(), "bridge".into())]);
    Ok((StatusCode::CREATED, axum::Json(json!({"Id": id, "Warning": ""}))).into_response())
}

pub async fn remove(State(e): State<AppState>, Path(id): Path<String>) -> Result<StatusCode> {
    let n = e.net.lookup(&id)?;
    let net = e.net.clone();
    tokio::task::spawn_blocking(move || net.remove(&id)).await.map_err(EngineError::internal)??;
    e.events.emit("network", "destroy", &n.id, vec![("name".into(), n.name), ("type".into(), n.driver)]);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
struct ConnectRequest {
    container: String,
    endpoint_config: Option<Value>,
    force: Option<bool>,
}

pub async fn connect(State(e): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<StatusCode> {
    let req: ConnectRequest = parse_json(&body)?;
    if req.container.is_empty() {
        return Err(EngineError::BadRequest("connect: no container given".into()));
    }
    e.network_connect(&id, &req.container, req.endpoint_config).await?;
    Ok(StatusCode::OK)
}

pub async fn disconnect(State(e): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<StatusCode> {
    let req: ConnectRequest = parse_json(&body)?;
    let _ = req.force;
    if req.container.is_empty() {
        return Err(EngineError::BadRequest("disconnect: no container given".into()));
    }
    e.network_disconnect(&id, &req.container).await?;
    Ok(StatusCode::OK)
}

pub async fn prune(State(e): State<AppState>, q: Query) -> Result<axum::Json<Value>> {
    let filters = parse_filters(q.get("filters"))?;
    let e2 = e.clone();
    let deleted =
        tokio::task::spawn_blocking(move || e2.network_prune(&filters)).await.map_err(EngineError::internal)??;
    Ok(axum::Json(json!({"NetworksDeleted": deleted})))
}
