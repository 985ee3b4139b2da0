//! `/containers/{id}/exec` and `/exec/…`.

use api::types::{ExecConfig, ExecInspect, ExecStart, IdResponse};
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{AppState, Query, bridge_then, hijack, parse_json, qint};
use crate::error::Result;

pub async fn create(State(e): State<AppState>, Path(id): Path<String>, body: Bytes) -> Result<Response> {
    let c = e.lookup(&id)?;
    let cfg: ExecConfig = parse_json(&body)?;
    let id = e.exec_create(&c, cfg)?;
    Ok((StatusCode::CREATED, axum::Json(IdResponse { id })).into_response())
}

pub async fn start(State(e): State<AppState>, Path(id): Path<String>, req: Request) -> Result<Response> {
    let x = e.exec_lookup(&id)?;
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 1 << 20)
        .await
        .map_err(|err| crate::error::EngineError::BadRequest(err.to_string()))?;
    let opts: ExecStart = parse_json(&bytes)?;
    let req = Request::from_parts(parts, axum::body::Body::empty());
    let tty = opts.tty || x.config.tty;
    if opts.detach {
        e.exec_start(&x, tty, false).await?;
        return Ok(StatusCode::OK.into_response());
    }
    let stream = e.exec_start(&x, tty, true).await?;
    let mut done = x.done.subscribe();
    Ok(hijack(req, !tty, move |client| async move {
        if let Some(s) = stream {
            // The exit code is recorded before the client sees the end of the stream.
            let recorded = async move {
                let _ = tokio::time::timeout(std::time::Duration::from_secs(5), done.wait_for(|d| *d)).await;
            };
            bridge_then(client, s, recorded).await;
        }
    }))
}

pub async fn resize(State(e): State<AppState>, Path(id): Path<String>, q: Query) -> Result<StatusCode> {
    let x = e.exec_lookup(&id)?;
    let h = qint(&q, "h")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    let w = qint(&q, "w")?.unwrap_or(0).clamp(0, u16::MAX as i64) as u16;
    e.exec_resize(&x, h, w).await?;
    Ok(StatusCode::OK)
}

pub async fn inspect(State(e): State<AppState>, Path(id): Path<String>) -> Result<axum::Json<ExecInspect>> {
    Ok(axum::Json(e.exec_lookup(&id)?.inspect()))
}
